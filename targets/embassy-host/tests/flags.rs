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

/// A change to a flag: `(flag, Some(value))` sets it, `(flag, None)` leaves it out.
type FlagChange<'a> = (&'a str, Option<&'a str>);

/// A `check --dry-run` command line with the refresh lane, `changes` applied to its flags.
fn refresh_command(changes: &[FlagChange<'_>]) -> Vec<String> {
    let mut flags: Vec<(&str, Option<&str>)> = vec![
        ("--url", Some(NOWHERE)),
        ("--token", Some("at_1")),
        ("--token-url", Some("http://127.0.0.1:1/oauth/token")),
        ("--refresh-token", Some("rt_1")),
        ("--expires-in", Some("30s")),
    ];
    for &(flag, value) in changes {
        match flags.iter_mut().find(|(f, _)| *f == flag) {
            Some(slot) => slot.1 = value,
            None => flags.push((flag, value)),
        }
    }
    let mut args = vec!["check".to_string(), "--dry-run".to_string()];
    for (flag, value) in flags {
        if let Some(v) = value {
            args.push(flag.to_string());
            args.push(v.to_string());
        }
    }
    args
}

/// The refresh-lane flags: each refusal is a usage error (64) naming the flag, before anything
/// is sent (`--dry-run` would exit 0 otherwise).
#[tokio::test(flavor = "multi_thread")]
async fn refresh_flags_are_refused_naming_the_flag() {
    let long_id = "x".repeat(100);
    let rows: [(&[FlagChange<'_>], &str); 10] = [
        (&[("--refresh-token", None)], "--refresh-token"),
        (&[("--token-url", None), ("--expires-in", None)], "--token-url"),
        (&[("--expires-in", None)], "--expires-in"),
        (&[("--token-url", Some("127.0.0.1:1/oauth/token"))], "--token-url"),
        // R14: one transport for both endpoints; the refresh token never takes plain HTTP
        // next to an https check (and the other way round).
        (
            &[("--token-url", Some("https://127.0.0.1:1/oauth/token"))],
            "--token-url",
        ),
        (&[("--refresh-token", Some("rt 1"))], "--refresh-token"),
        (&[("--refreshes", Some("9"))], "--refreshes"),
        (&[("--refreshes", Some("0"))], "--refreshes"),
        (&[("--client-id", Some(&long_id))], "--client-id"),
        // Due only after the run would stop waiting for it (10 s + 120 s by default).
        (&[("--expires-in", Some("1h"))], "--expires-in"),
    ];
    for (changes, named) in rows {
        let args = refresh_command(changes);
        match run(BIN, &args, Duration::from_secs(10)).await {
            Ending::Exit(64, err) => assert!(err.contains(named), "{changes:?}: names {named}: {err}"),
            Ending::Exit(code, err) => panic!("{changes:?}: exit {code}, want 64 naming {named}: {err}"),
            Ending::Running => panic!("{changes:?}: still running after 10 s"),
        }
    }
    let valid = refresh_command(&[
        ("--client-id", Some("kiosk 1")),
        ("--refreshes", Some("8")),
        ("--expires-in", Some("3m")),
    ]);
    match run(BIN, &valid, Duration::from_secs(10)).await {
        Ending::Exit(0, _) => {}
        Ending::Exit(code, err) => panic!("valid refresh flags: exit {code}: {err}"),
        Ending::Running => panic!("valid refresh flags: --dry-run still running after 10 s"),
    }
}
