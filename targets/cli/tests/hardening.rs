//! Issue 14, items 3, 4 and 6: hostile or careless flag values are usage errors (exit 64)
//! whose message names the flag, never a panic (exit 101) or a request storm.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(20);
/// A loopback port nothing listens on: a check that does run fails fast.
const NOWHERE: &str = "http://127.0.0.1:1/api/code/invites/check-access/";

/// Runs `accessgate ARGS` and asserts exit 64 with every needle in stderr.
async fn usage(args: &[&str], needles: &[&str]) {
    let out = accessgate(args, LIMIT).await;
    let err = stderr(&out);
    assert_eq!(code(&out), 64, "accessgate {args:?}: {}{err}", stdout(&out));
    for n in needles {
        assert!(err.contains(n), "accessgate {args:?}: {n:?} not in {err:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn check<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["check", "--url", NOWHERE, "--token", "at_1"];
    v.extend_from_slice(extra);
    v
}

fn watch<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "watch",
        "--url",
        "http://127.0.0.1:1",
        "--token",
        "at_1",
        "--refresh-token",
        "rt_1",
    ];
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_durations_are_usage_errors_not_panics() {
    usage(
        &check(&["--budget", "18446744073709551615s"]),
        &["--budget", "too long"],
    )
    .await;
    usage(&check(&["--budget", "1000000years"]), &["--budget", "too long"]).await;
    usage(&check(&["--timeout", "18446744073709551615s"]), &["--timeout"]).await;
    usage(
        &check(&["--final-window", "18446744073709551615s"]),
        &["--final-window"],
    )
    .await;
    usage(
        &watch(&["--recheck-every", "18446744073709551615s"]),
        &["--recheck-every", "too long"],
    )
    .await;
    usage(
        &watch(&["--expires-in", "18446744073709551615s"]),
        &["--expires-in"],
    )
    .await;
    usage(
        &watch(&["--refresh-skew", "18446744073709551615s"]),
        &["--refresh-skew"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recheck_every_below_the_floor_is_refused() {
    for every in ["0s", "1ms", "999ms"] {
        usage(
            &watch(&["--recheck-every", every]),
            &["--recheck-every", "at least 1s"],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_say_which_flag_and_what_is_wrong() {
    usage(
        &[
            "check",
            "--url",
            "localhost:8080/api/code/invites/check-access/",
            "--token",
            "t",
        ],
        &[
            "--url",
            "no scheme",
            "http://localhost:8080/api/code/invites/check-access/",
            "https://",
        ],
    )
    .await;
    usage(
        &check(&["--retry-spread", "100s", "--final-window", "20s"]),
        &["--retry-spread 1m 40s", "--final-window 20s"],
    )
    .await;
    usage(
        &check(&["--timeout", "1ns", "--budget", "2ns"]),
        &["--timeout", "too short"],
    )
    .await;
    usage(
        &check(&["--timeout", "10s", "--budget", "10s"]),
        &["--timeout 10s", "--budget 10s"],
    )
    .await;
    usage(&check(&["--budget", "0s"]), &["--budget", "longer than zero"]).await;
    usage(&check(&["--retries", "0"]), &["--retries 0", "at least 1"]).await;
    usage(&check(&["--retries", "9"]), &["--retries 9", "at most 8"]).await;
    usage(&check(&["--retries", "-1"]), &["--retries"]).await;
    usage(&check(&["--budget", "90"]), &["--budget", "no unit", "90s"]).await;
    usage(&check(&["--token", ""]), &["--token"]).await;
    usage(&check(&["--token", "a b"]), &["--token"]).await;
    usage(
        &["watch", "--url", "127.0.0.1:8080", "--issue-user", "alice"],
        &["--url", "no scheme", "http://127.0.0.1:8080"],
    )
    .await;
    usage(&watch(&["--check-path", "api"]), &["--check-path", "/"]).await;
    usage(&watch(&["--timeout", "2m"]), &["--timeout 2m", "--budget 2m"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_takes_the_same_durations_as_check() {
    usage(
        &["simulate", "outage", "--outage", "90"],
        &["--outage", "no unit", "90s"],
    )
    .await;
    usage(
        &["simulate", "outage", "--outage", "400d"],
        &["--outage", "too long"],
    )
    .await;
    let out = accessgate(
        &[
            "simulate",
            "outage",
            "--quiet",
            "--devices",
            "20",
            "--policies",
            "ours",
            "--outage",
            "1m30s",
            "--outage-start",
            "1m",
            "--horizon",
            "5m",
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("for 1 min 30 s"), "{}", stdout(&out));
}

/// `accessgate ARGS` with `RUST_LOG` set to `filter` (or unset).
async fn with_log(args: &[&str], filter: Option<&str>) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessgate"));
    cmd.args(args).env("NO_COLOR", "1").kill_on_drop(true);
    match filter {
        Some(f) => cmd.env("RUST_LOG", f),
        None => cmd.env_remove("RUST_LOG"),
    };
    tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("finishes")
        .expect("runs")
}

/// Issue 14 item 7: a logger is installed, configured by RUST_LOG, quiet by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_debug_prints_log_lines_and_the_default_is_quiet() {
    let args = check(&[
        "--timeout",
        "100ms",
        "--budget",
        "300ms",
        "--retry-spread",
        "50ms",
    ]);
    let out = with_log(&args, Some("debug")).await;
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("DEBUG") && err.contains("accessgate"), "{err}");
    let out = with_log(&args, None).await;
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stderr(&out).is_empty(), "quiet by default: {}", stderr(&out));
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `detail` of the first `check_failed` event of a `check --json` run.
fn first_detail(out: &std::process::Output) -> String {
    json_lines(out)
        .iter()
        .find(|e| e["event"] == "check_failed")
        .unwrap_or_else(|| panic!("no check_failed: {}", stdout(out)))["detail"]
        .as_str()
        .expect("detail is a string")
        .to_string()
}

const FAST: [&str; 6] = ["--timeout", "300ms", "--budget", "1s", "--retry-spread", "100ms"];

/// R13 (issue 14 item 7): every failed check's JSON event says why, and the timeline too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_carry_their_detail() {
    let b = backend().await;
    let c = b.control();
    let alice = token(&c, "alice");
    let https = https_check_url(&b);
    // No --ca (system roots only): the test CA is unknown.
    let mut args = vec!["check", "--url", &https, "--token", &alice, "--json"];
    args.extend(FAST);
    let out = accessgate(&args, LIMIT).await;
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert_eq!(
        first_detail(&out),
        "certificate: unknown issuer",
        "{}",
        stdout(&out)
    );

    // A CA that did not sign the server. Both test CAs carry the same name, so webpki tries
    // the wrong one's key and reports the signature; either way the reason is a TLS one.
    let other = backend().await;
    let wrong = temp_file("other-ca.pem", other.ca_pem().expect("https"));
    let wrong = wrong.to_str().expect("utf-8").to_string();
    let mut args = vec![
        "check",
        "--url",
        &https,
        "--token",
        &alice,
        "--json",
        "--no-system-roots",
        "--ca",
        &wrong,
    ];
    args.extend(FAST);
    let out = accessgate(&args, LIMIT).await;
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let d = first_detail(&out);
    assert!(d.contains("signature") || d.contains("unknown issuer"), "{d}");

    // Without --ca at all (system roots only): the same, and the timeline hints at --ca.
    let mut args = vec!["check", "--url", &https, "--token", &alice];
    args.extend(FAST);
    let out = accessgate(&args, LIMIT).await;
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("tls (certificate: unknown issuer)"), "{text}");
    assert!(text.contains("hint:") && text.contains("pass --ca"), "{text}");

    let out = accessgate(&check(&["--json", "--timeout", "300ms", "--budget", "1s"]), LIMIT).await;
    assert_eq!(first_detail(&out), "connection refused", "{}", stdout(&out));

    c.set_fault(
        accessgate_backend::Endpoint::Check,
        Some(accessgate_backend::Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    let http = http_check_url(&b);
    let mut args = vec!["check", "--url", &http, "--token", &alice, "--json"];
    args.extend(FAST);
    let out = accessgate(&args, LIMIT).await;
    assert_eq!(first_detail(&out), "HTTP 503", "{}", stdout(&out));
}

/// `watch --issue-user` against HTTPS without --ca says "unknown issuer" and suggests --ca
/// (it used to say "error sending request ... is `accessgate serve` running there?").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_issue_without_ca_hints_at_ca() {
    let b = backend().await;
    let url = b.https_url().expect("https");
    let out = accessgate(&["watch", "--url", &url, "--issue-user", "alice"], LIMIT).await;
    let err = stderr(&out);
    assert_eq!(code(&out), 70, "{err}");
    assert!(
        err.contains("unknown issuer") && err.contains("pass --ca"),
        "{err}"
    );
    assert!(!err.contains("running there"), "{err}");
}

/// Issue 12: `watch --json` ends with a summary line carrying the last failure's detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_json_ends_with_a_summary_line() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessgate"))
        .args(watch(&["--json", "--timeout", "200ms", "--budget", "1s"]))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    // Interrupt once a retry has started, not at a fixed moment: the first check's events are
    // printed from the loop that waits for Ctrl-C, so by a retry's `check_started` the handler
    // is in place and a failure has been recorded, however slowly the process started.
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut text = String::new();
    let retried = tokio::time::timeout(LIMIT, async {
        let mut started = 0;
        while started < 2 {
            let mut line = String::new();
            if reader.read_line(&mut line).await.expect("read stdout") == 0 {
                return false;
            }
            started += usize::from(line.contains(r#""event":"check_started""#));
            text.push_str(&line);
        }
        true
    })
    .await;
    assert_eq!(retried, Ok(true), "a retry before the interrupt: {text}");
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill")
        .success());
    let status = tokio::time::timeout(LIMIT, async {
        reader.read_to_string(&mut text).await.expect("read stdout");
        child.wait().await.expect("wait")
    })
    .await
    .expect("exits after SIGINT");
    assert_eq!(status.code(), Some(0), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let last = lines.last().expect("some output");
    assert_eq!(last["final"], true, "{last}");
    assert_eq!(last["command"], "watch");
    assert_eq!(last["ended"], "interrupted");
    assert_eq!(last["exit_code"], 0);
    assert!(last["attempts"].as_u64().expect("attempts") >= 1, "{last}");
    assert_eq!(last["last_failure"]["detail"], "connection refused", "{last}");
    assert_eq!(last["last_failure"]["class"], "connect", "{last}");
    // Every line before it is an event.
    assert!(
        lines[..lines.len() - 1].iter().all(|l| l["event"].is_string()),
        "{text}"
    );
}
