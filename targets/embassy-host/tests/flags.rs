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

const CHECK_FLAGS: [(&str, Kind); 18] = [
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
    // The refresh lane (device only).
    ("--token-url", Kind::Url),
    ("--refresh-token", Kind::Text),
    ("--client-id", Kind::Text),
    ("--expires-in", Kind::Duration),
    ("--refreshes", Kind::Number),
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

/// The refresh-lane flags: each refusal is a usage error (64) naming the flag, before anything
/// is sent (`--dry-run` would exit 0 otherwise).
#[tokio::test(flavor = "multi_thread")]
async fn refresh_flags_are_refused_naming_the_flag() {
    let long_id = "x".repeat(100);
    let rows: [(&[&str], &str); 7] = [
        (
            &["--token-url", "http://127.0.0.1:1/oauth/token"],
            "--refresh-token",
        ),
        (&["--refresh-token", "rt_1"], "--token-url"),
        (
            &[
                "--token-url",
                "127.0.0.1:1/oauth/token",
                "--refresh-token",
                "rt_1",
            ],
            "--token-url",
        ),
        // R14: one transport for both endpoints; the refresh token never takes plain HTTP
        // next to an https check (and the other way round).
        (
            &[
                "--token-url",
                "https://127.0.0.1:1/oauth/token",
                "--refresh-token",
                "rt_1",
            ],
            "--token-url",
        ),
        (
            &["--token-url", "http://127.0.0.1:1/t", "--refresh-token", "rt 1"],
            "--refresh-token",
        ),
        (
            &[
                "--token-url",
                "http://127.0.0.1:1/t",
                "--refresh-token",
                "rt_1",
                "--refreshes",
                "9",
            ],
            "--refreshes",
        ),
        (
            &[
                "--token-url",
                "http://127.0.0.1:1/t",
                "--refresh-token",
                "rt_1",
                "--client-id",
                &long_id,
            ],
            "--client-id",
        ),
    ];
    for (extra, named) in rows {
        let mut args: Vec<String> = ["check", "--url", NOWHERE, "--token", "at_1", "--dry-run"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        match run(BIN, &args, Duration::from_secs(10)).await {
            Ending::Exit(64, err) => assert!(err.contains(named), "{extra:?}: names {named}: {err}"),
            Ending::Exit(code, err) => panic!("{extra:?}: exit {code}, want 64 naming {named}: {err}"),
            Ending::Running => panic!("{extra:?}: still running after 10 s"),
        }
    }
    let ok = [
        "check",
        "--url",
        NOWHERE,
        "--token",
        "at_1",
        "--dry-run",
        "--token-url",
        "http://127.0.0.1:1/oauth/token",
        "--refresh-token",
        "rt_1",
        "--client-id",
        "kiosk 1",
        "--expires-in",
        "30s",
        "--refreshes",
        "8",
    ];
    let args: Vec<String> = ok.iter().map(|s| s.to_string()).collect();
    match run(BIN, &args, Duration::from_secs(10)).await {
        Ending::Exit(0, _) => {}
        Ending::Exit(code, err) => panic!("valid refresh flags: exit {code}: {err}"),
        Ending::Running => panic!("valid refresh flags: --dry-run still running after 10 s"),
    }
}
