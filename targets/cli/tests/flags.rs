//! Property test of the command line (issue 14): for every flag of `check` and `watch`,
//! any value either runs or exits 64 with a message that names the flag; never a panic
//! (101). Seeded (`ACCESSGATE_FLAGS_SEED` replays another seed); every case runs with
//! `--dry-run` (flags checked, nothing sent), and every sixth also for real against a
//! loopback port nothing listens on, with small budgets and a 1.5 s limit (still running
//! then counts as running).

mod common;
mod flaggen;

use std::time::Duration;

use flaggen::{case, run, seed, verdict, Case, Ending, Files, Kind, Rng};
use tokio::task::JoinSet;

const BIN: &str = env!("CARGO_BIN_EXE_accessgate");
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

const WATCH_FLAGS: [(&str, Kind); 17] = [
    ("--url", Kind::Url),
    ("--token", Kind::Text),
    ("--refresh-token", Kind::Text),
    ("--expires-in", Kind::Duration),
    ("--check-path", Kind::UrlPath),
    ("--token-path", Kind::UrlPath),
    ("--client-id", Kind::Text),
    ("--ca", Kind::CaPath),
    ("--no-system-roots", Kind::Switch),
    ("--timeout", Kind::Duration),
    ("--budget", Kind::Duration),
    ("--retries", Kind::Number),
    ("--refresh-skew", Kind::Duration),
    ("--recheck-every", Kind::Duration),
    ("--seed", Kind::Number),
    ("--json", Kind::Switch),
    ("--color", Kind::Color),
];

/// `watch --issue-user` mode: the token flags give way to these.
const ISSUE_FLAGS: [(&str, Kind); 2] = [("--issue-user", Kind::Text), ("--token-lifetime", Kind::Duration)];

struct Job {
    case: Case,
    real: bool,
    allowed_real: &'static [i32],
}

async fn files() -> (Files, std::path::PathBuf) {
    let b = common::backend().await;
    let dir = std::env::temp_dir().join(format!("accessgate-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let files = Files::create(&dir, b.ca_pem().expect("https backend"));
    b.shutdown().await;
    (files, dir)
}

/// Runs the jobs four at a time; returns every violation with its command line.
async fn run_all(jobs: Vec<Job>) -> Vec<String> {
    let mut set = JoinSet::new();
    let mut failures = Vec::new();
    let mut jobs = jobs.into_iter();
    loop {
        while set.len() < 4 {
            let Some(job) = jobs.next() else { break };
            set.spawn(async move {
                let mut out = Vec::new();
                let mut dry = job.case.args.clone();
                dry.push("--dry-run".into());
                let ending = run(BIN, &dry, Duration::from_secs(10)).await;
                if let Ending::Exit(code, _) = &ending {
                    out.push(format!("#dry exit {code}"));
                }
                if matches!(ending, Ending::Running) {
                    out.push(format!("{dry:?}: --dry-run still running after 10 s"));
                } else if let Err(e) = verdict(&job.case, &ending, &[0]) {
                    out.push(format!("{dry:?}: {e}"));
                }
                if job.real {
                    let ending = run(BIN, &job.case.args, Duration::from_millis(1500)).await;
                    out.push(match &ending {
                        Ending::Exit(code, _) => format!("#real exit {code}"),
                        Ending::Running => "#real running".into(),
                    });
                    if let Err(e) = verdict(&job.case, &ending, job.allowed_real) {
                        out.push(format!("{:?}: {e}", job.case.args));
                    }
                }
                out
            });
        }
        match set.join_next().await {
            Some(r) => failures.extend(r.expect("job")),
            None => break,
        }
    }
    // Lines starting with '#' are tallies, not failures: print them, so a run shows how
    // the cases ended (a generator that only ever hits one exit code tests little).
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for t in failures.iter().filter(|f| f.starts_with('#')) {
        *tally.entry(t.clone()).or_default() += 1;
    }
    eprintln!("endings: {tally:?}");
    failures.retain(|f| !f.starts_with('#'));
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_flags_run_or_name_the_flag_never_panic() {
    let (files, dir) = files().await;
    let mut rng = Rng::new(seed());
    let base = [
        ("--url", Some(NOWHERE)),
        ("--token", Some("at_1")),
        ("--timeout", Some("100ms")),
        ("--budget", Some("300ms")),
        ("--retry-spread", Some("50ms")),
    ];
    let jobs = (0..CASES)
        .map(|i| Job {
            case: case("check", &base, &CHECK_FLAGS, &mut rng, &files),
            real: i % REAL_EVERY == 0,
            allowed_real: &[0, 1, 2, 3],
        })
        .collect();
    let failures = run_all(jobs).await;
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        failures.is_empty(),
        "seed {}: {} violation(s):\n{}",
        seed(),
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_flags_run_or_name_the_flag_never_panic() {
    let (files, dir) = files().await;
    let mut rng = Rng::new(seed() ^ 0x77);
    let with_tokens = [
        ("--url", Some("http://127.0.0.1:1")),
        ("--token", Some("at_1")),
        ("--refresh-token", Some("rt_1")),
        ("--timeout", Some("100ms")),
        ("--budget", Some("300ms")),
    ];
    let issued = [
        ("--url", Some("http://127.0.0.1:1")),
        ("--issue-user", Some("alice")),
    ];
    let mut issue_flags: Vec<(&str, Kind)> = WATCH_FLAGS
        .iter()
        .copied()
        .filter(|(f, _)| !matches!(*f, "--token" | "--refresh-token" | "--expires-in"))
        .collect();
    issue_flags.extend(ISSUE_FLAGS);
    let jobs = (0..CASES)
        .map(|i| {
            if i % 4 == 3 {
                // Issuing needs a server: checked with --dry-run only.
                Job {
                    case: case("watch", &issued, &issue_flags, &mut rng, &files),
                    real: false,
                    allowed_real: &[],
                }
            } else {
                Job {
                    case: case("watch", &with_tokens, &WATCH_FLAGS, &mut rng, &files),
                    real: i % REAL_EVERY == 0,
                    allowed_real: &[0, 3],
                }
            }
        })
        .collect();
    let failures = run_all(jobs).await;
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        failures.is_empty(),
        "seed {}: {} violation(s):\n{}",
        seed(),
        failures.len(),
        failures.join("\n")
    );
}
