//! `accessgate check` against a reference backend started in the test: exit codes over HTTP
//! and HTTPS, trust (a wrong CA never grants), usage errors, and the `--json` output.

mod common;

use std::time::Duration;

use accessgate_backend::{Endpoint, Fault};
use common::*;

/// Generous bound for one `check` run (the slowest cases use a 1 s budget).
const LIMIT: Duration = Duration::from_secs(30);

/// Flags that make a failing check fail closed quickly.
const FAST: [&str; 6] = ["--timeout", "300ms", "--budget", "1s", "--retry-spread", "400ms"];

async fn check(url: &str, token: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["check", "--url", url, "--token", token];
    args.extend_from_slice(extra);
    accessgate(&args, LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exit_codes_granted_denied_failed_closed_unauthorized() {
    let b = backend().await;
    let c = b.control();
    let url = http_check_url(&b);
    let alice = token(&c, "alice");
    let bob = token(&c, "bob");
    c.set_access("bob", false);

    let out = check(&url, &alice, &[]).await;
    assert_eq!(code(&out), 0, "granted: {}", stdout(&out));
    assert!(
        stdout(&out).contains("verdict: granted (exit 0)"),
        "{}",
        stdout(&out)
    );

    let out = check(&url, &bob, &[]).await;
    assert_eq!(code(&out), 1, "denied: {}", stdout(&out));

    let out = check(&url, "at_unknown", &[]).await;
    assert_eq!(code(&out), 3, "unauthorized: {}", stdout(&out));

    c.set_fault(
        Endpoint::Check,
        Some(Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    let started = std::time::Instant::now();
    let out = check(&url, &alice, &FAST).await;
    assert_eq!(code(&out), 2, "failed closed: {}", stdout(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails closed at the 1 s budget"
    );
    assert!(
        c.counts().get(Endpoint::Check, 503) >= 2,
        "retried before failing closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_exit_codes_with_the_test_ca() {
    let b = backend().await;
    let c = b.control();
    let ca = temp_file("ca.pem", b.ca_pem().expect("https"));
    let ca = ca.to_str().expect("utf-8 path");
    let url = https_check_url(&b);
    let alice = token(&c, "alice");
    let bob = token(&c, "bob");
    c.set_access("bob", false);

    let out = check(&url, &alice, &["--ca", ca, "--no-system-roots"]).await;
    assert_eq!(code(&out), 0, "granted: {}", stdout(&out));
    let out = check(&url, &alice, &["--ca", ca]).await;
    assert_eq!(code(&out), 0, "granted with system roots too: {}", stdout(&out));
    let out = check(&url, &bob, &["--ca", ca]).await;
    assert_eq!(code(&out), 1, "denied: {}", stdout(&out));
    let out = check(&url, "at_unknown", &["--ca", ca]).await;
    assert_eq!(code(&out), 3, "unauthorized: {}", stdout(&out));
    c.set_fault(Endpoint::Check, Some(Fault::HtmlPortal));
    let mut args = vec!["--ca", ca];
    args.extend_from_slice(&FAST);
    let out = check(&url, &alice, &args).await;
    assert_eq!(
        code(&out),
        2,
        "a captive portal is never a grant: {}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("invalid_body"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_ca_never_grants() {
    let b = backend().await;
    let other = backend().await; // its own, unrelated test CA
    let c = b.control();
    let alice = token(&c, "alice");
    let url = https_check_url(&b);
    let wrong = temp_file("wrong-ca.pem", other.ca_pem().expect("https"));
    let wrong = wrong.to_str().expect("utf-8 path");

    let mut args = vec!["--ca", wrong, "--no-system-roots"];
    args.extend_from_slice(&FAST);
    let out = check(&url, &alice, &args).await;
    assert_eq!(code(&out), 2, "wrong CA: {}", stdout(&out));
    assert!(!stdout(&out).contains("granted (exit 0)"));

    let out = check(&url, &alice, &FAST).await;
    assert_eq!(code(&out), 2, "system roots only: {}", stdout(&out));
    // The TLS handshakes failed: the backend never answered a check.
    assert_eq!(c.counts().endpoint_total(Endpoint::Check), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_64_help_and_version_exit_0() {
    let limit = Duration::from_secs(20);
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["check"],
        vec!["check", "--url", "http://127.0.0.1:1/"],
        vec![
            "check",
            "--url",
            "http://127.0.0.1:1/",
            "--token",
            "t",
            "--budget",
            "soon",
        ],
        vec!["check", "--url", "http://127.0.0.1:1/", "--token", "t", "--bogus"],
        vec![
            "check",
            "--url",
            "http://127.0.0.1:1/",
            "--token",
            "t",
            "--ca",
            "/nonexistent/ca.pem",
        ],
        vec!["check", "--url", "ftp://127.0.0.1:1/", "--token", "t"],
        vec![
            "check",
            "--url",
            "http://127.0.0.1:1/",
            "--token",
            "t",
            "--timeout",
            "5s",
            "--budget",
            "1s",
        ],
        vec!["serve", "--http-port", "99999"],
    ] {
        let out = accessgate(&args, limit).await;
        assert_eq!(
            code(&out),
            64,
            "accessgate {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let bad_ca = temp_file("not-a-cert.pem", "hello\n");
    let out = accessgate(
        &[
            "check",
            "--url",
            "https://localhost:1/",
            "--token",
            "t",
            "--ca",
            bad_ca.to_str().expect("utf-8"),
        ],
        limit,
    )
    .await;
    assert_eq!(code(&out), 64, "invalid PEM: {}", stderr(&out));
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["check", "--help"],
        vec!["demo", "--help"],
        vec!["help", "watch"],
    ] {
        let out = accessgate(&args, limit).await;
        assert_eq!(code(&out), 0, "accessgate {args:?}: {}", stderr(&out));
        assert!(!stdout(&out).is_empty());
    }
    let out = accessgate(&["check", "--help"], limit).await;
    assert!(stdout(&out).contains("Exit codes"), "{}", stdout(&out));
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    let text = stdout(out);
    assert!(!text.is_empty(), "no output; stderr: {}", stderr(out));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// Events come in order: times never go back, the first is attempt 0, attempts count up.
fn assert_event_order(lines: &[serde_json::Value]) {
    let events = &lines[..lines.len() - 1];
    assert!(!events.is_empty());
    assert_eq!(events[0]["event"], "check_started");
    assert_eq!(events[0]["attempt"], 0);
    let mut t = 0;
    let mut next_attempt = 0;
    for e in events {
        assert!(e.get("final").is_none(), "only the last line is final: {e}");
        let t_ms = e["t_ms"].as_u64().expect("t_ms");
        assert!(t_ms >= t, "time goes forward: {e}");
        t = t_ms;
        if e["event"] == "check_started" {
            assert_eq!(e["attempt"], next_attempt, "attempts in order: {e}");
            next_attempt += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_granted() {
    let b = backend().await;
    let c = b.control();
    let alice = token(&c, "alice");
    let out = check(&http_check_url(&b), &alice, &["--json"]).await;
    assert_eq!(code(&out), 0);
    let lines = json_lines(&out);
    assert_event_order(&lines);
    assert!(lines
        .iter()
        .any(|l| l["event"] == "access_changed" && l["to"] == "granted" && l["cause"] == "server_granted"));
    let last = lines.last().expect("a final line");
    assert_eq!(last["final"], true);
    assert_eq!(last["verdict"], "granted");
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["access"], "granted");
    assert_eq!(last["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_failed_closed_and_unauthorized() {
    let b = backend().await;
    let c = b.control();
    let alice = token(&c, "alice");
    let url = http_check_url(&b);
    c.set_fault(Endpoint::Check, Some(Fault::WrongType));
    let mut args = vec!["--json"];
    args.extend_from_slice(&FAST);
    let out = check(&url, &alice, &args).await;
    assert_eq!(code(&out), 2);
    let lines = json_lines(&out);
    assert_event_order(&lines);
    let failures: Vec<_> = lines.iter().filter(|l| l["event"] == "check_failed").collect();
    assert!(failures.len() >= 2, "retried: {lines:?}");
    assert!(failures.iter().all(|f| f["class"] == "invalid_body"));
    let deadline = failures[0]["deadline_ms"]
        .as_u64()
        .expect("deadline while retrying");
    assert!(
        failures
            .iter()
            .all(|f| f["deadline_ms"].as_u64().is_none_or(|d| d == deadline)),
        "the deadline never moves"
    );
    let closed = lines
        .iter()
        .find(|l| l["event"] == "access_changed" && l["cause"] == "failed_closed")
        .expect("failed closed");
    assert!(closed["t_ms"].as_u64().expect("t_ms") >= deadline);
    let last = lines.last().expect("a final line");
    assert_eq!(last["final"], true);
    assert_eq!(last["verdict"], "failed_closed");
    assert_eq!(last["exit_code"], 2);
    assert_eq!(last["access"], "denied");

    c.set_fault(Endpoint::Check, None);
    let out = check(&url, "at_unknown", &["--json"]).await;
    assert_eq!(code(&out), 3);
    let lines = json_lines(&out);
    assert_event_order(&lines);
    assert!(lines
        .iter()
        .any(|l| l["event"] == "session_ended" && l["cause"] == "unauthorized"));
    let last = lines.last().expect("a final line");
    assert_eq!(last["final"], true);
    assert_eq!(last["exit_code"], 3);
    assert_eq!(last["signed_in"], false);
}

/// `--retries N` (R6): a run of failures gets exactly N retries before the gate fails closed,
/// counted from the `check_started` events before the `failed_closed` change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_flag_sets_how_many_retries_come_before_failing_closed() {
    let b = backend().await;
    let c = b.control();
    let alice = token(&c, "alice");
    let url = http_check_url(&b);
    c.set_fault(
        Endpoint::Check,
        Some(Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    for retries in ["1", "3"] {
        let mut args = vec!["--json", "--retries", retries];
        args.extend_from_slice(&FAST);
        let out = check(&url, &alice, &args).await;
        assert_eq!(code(&out), 2, "failed closed: {}", stdout(&out));
        let lines = json_lines(&out);
        assert_event_order(&lines);
        let closed = lines
            .iter()
            .position(|l| l["event"] == "access_changed" && l["cause"] == "failed_closed")
            .expect("failed closed");
        let started = lines[..closed]
            .iter()
            .filter(|l| l["event"] == "check_started")
            .count();
        let expected = 1 + retries.parse::<usize>().expect("a number");
        assert_eq!(started, expected, "--retries {retries}: {lines:?}");
    }
}
