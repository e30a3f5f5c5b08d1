//! The end-to-end proof: `accessgate demo` plays all twelve chapters against the in-process
//! reference backend over HTTPS and exits 0 only if each ended in the expected state.
//! Takes about 30 s; it has a test binary of its own so other tests do not disturb its timing.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_to_completion() {
    let started = std::time::Instant::now();
    let out = accessgate(&["demo"], Duration::from_secs(90)).await;
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "demo failed:\n{text}\n{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the demo takes under a minute"
    );
    for n in 1..=12 {
        assert!(
            text.contains(&format!("── {n}. ")),
            "chapter {n} missing:\n{text}"
        );
    }
    assert_eq!(text.matches("✔ as expected").count(), 12, "{text}");
    assert!(
        text.contains("all 12 chapters ended in the expected state"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colours when stdout is not a terminal");
}
