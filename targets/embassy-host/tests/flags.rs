//! Property test of `accessgate-embassy check` (issue 14): any value of any flag either
//! runs or exits 64 with a message that names the flag; never a panic (101). The same
//! seeded generator as the desktop CLI's test; every case runs with `--dry-run`, every
//! sixth also for real against a loopback port nothing listens on, with a 1.5 s limit.

#[path = "../../cli/tests/flaggen/mod.rs"]
mod flaggen;

use std::time::Duration;

use accessgate_backend::{Backend, BackendConfig};
use flaggen::{case, run, seed, verdict, Ending, Files, Kind, Rng};

const BIN: &str = env!("CARGO_BIN_EXE_accessgate-embassy");
const NOWHERE: &str = "http://127.0.0.1:1/api/code/invites/check-access/";
const CASES: usize = 240;
const REAL_EVERY: usize = 6;

const CHECK_FLAGS: [(&str, Kind); 13] = [
    ("--url", Kind::Url),
    ("--token", Kind::Text),
    ("--ca", Kind::CaPath),
    ("--no-system-roots", Kind::Switch),
    ("--timeout", Kind::Duration),
    ("--budget", Kind::Duration),
    ("--retry-spread", Kind::Duration),
    ("--final-window", Kind::Duration),
    ("--retries", Kind::Number),
    ("--seed", Kind::Number),
    ("--json", Kind::Switch),
    ("--quiet", Kind::Switch),
    ("--color", Kind::Color),
];

#[tokio::test(flavor = "multi_thread")]
async fn check_flags_run_or_name_the_flag_never_panic() {
    let b = Backend::start(BackendConfig {
        https_port: Some(0),
        ..BackendConfig::default()
    })
    .await
    .expect("backend");
    let dir = tempfile::tempdir().expect("temp dir");
    let files = Files::create(dir.path(), b.ca_pem().expect("https"));
    b.shutdown().await;
    let mut rng = Rng::new(seed());
    let base = [
        ("--url", Some(NOWHERE)),
        ("--token", Some("at_1")),
        ("--timeout", Some("100ms")),
        ("--budget", Some("300ms")),
        ("--retry-spread", Some("50ms")),
    ];
    let mut failures = Vec::new();
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..CASES {
        let c = case("check", &base, &CHECK_FLAGS, &mut rng, &files);
        let mut dry = c.args.clone();
        dry.push("--dry-run".into());
        let ending = run(BIN, &dry, Duration::from_secs(10)).await;
        match &ending {
            Ending::Exit(code, _) => *tally.entry(format!("dry exit {code}")).or_default() += 1,
            Ending::Running => failures.push(format!("{dry:?}: --dry-run still running after 10 s")),
        }
        if let Err(e) = verdict(&c, &ending, &[0]) {
            failures.push(format!("{dry:?}: {e}"));
        }
        if i % REAL_EVERY == 0 {
            let ending = run(BIN, &c.args, Duration::from_millis(1500)).await;
            *tally
                .entry(match &ending {
                    Ending::Exit(code, _) => format!("real exit {code}"),
                    Ending::Running => "real running".into(),
                })
                .or_default() += 1;
            if let Err(e) = verdict(&c, &ending, &[0, 1, 2, 3]) {
                failures.push(format!("{:?}: {e}", c.args));
            }
        }
    }
    eprintln!("endings: {tally:?}");
    assert!(
        failures.is_empty(),
        "seed {}: {} violation(s):\n{}",
        seed(),
        failures.len(),
        failures.join("\n")
    );
}
