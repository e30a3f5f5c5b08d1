//! `accessgate-embassy check` against the reference backend, over HTTP and HTTPS: the built
//! binary runs the embassy driver on the host, the backend runs in this test's tokio
//! runtime. Every run is bounded in time.

use std::process::Output;
use std::time::{Duration, Instant};

use accessgate_backend::{Backend, BackendConfig, Endpoint, Fault};

mod common;
use common::{assert_exit, ca_file, code, path};

async fn backend(https: bool) -> Backend {
    Backend::start(BackendConfig {
        https_port: https.then_some(0),
        ..BackendConfig::default()
    })
    .await
    .expect("backend starts")
}

fn check_url(base: &str) -> String {
    format!("{base}{}", Backend::check_path())
}

/// Runs the binary with `args`; returns its output and how long it took.
async fn run(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = common::run(args).await;
    (out, started.elapsed())
}

/// `--json` output: one JSON object per line.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn granted_over_http_exits_0() {
    let b = backend(false).await;
    let t = b.control().issue_token("alice", Duration::from_secs(3600));
    let (out, took) = run(&[
        "check",
        "--url",
        &check_url(&b.http_url()),
        "--token",
        &t.access_token,
    ])
    .await;
    assert_exit(&out, 0);
    assert!(
        took < Duration::from_secs(5),
        "healthy path is synchronous (R3): {took:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("access unknown -> granted (server_granted)"),
        "{text}"
    );
    assert!(text.contains("verdict: granted (exit 0)"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_denial_exits_1() {
    let b = backend(false).await;
    let t = b.control().issue_token("bob", Duration::from_secs(3600));
    b.control().set_access("bob", false);
    let (out, _) = run(&[
        "check",
        "--url",
        &check_url(&b.http_url()),
        "--token",
        &t.access_token,
    ])
    .await;
    assert_exit(&out, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connections_fail_closed_at_the_budget_with_exit_2() {
    let b = backend(false).await;
    let t = b.control().issue_token("carol", Duration::from_secs(3600));
    b.control().set_fault(Endpoint::Check, Some(Fault::Refused));
    let url = check_url(&b.http_url());
    let (out, took) = run(&[
        "check",
        "--url",
        &url,
        "--token",
        &t.access_token,
        "--budget",
        "2s",
        "--timeout",
        "300ms",
        "--json",
    ])
    .await;
    assert_exit(&out, 2);
    // R5: the deadline is the first failure + 2 s, to the tick; process start-up is extra.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "failed closed after {took:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""class":"connect""#), "{text}");
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["verdict"], "failed_closed");
    let elapsed = last["elapsed_ms"].as_u64().unwrap();
    assert!((2000..2500).contains(&elapsed), "elapsed_ms {elapsed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_token_is_unauthorized_with_exit_3() {
    let b = backend(false).await;
    let t = b.control().issue_token("dave", Duration::from_secs(3600));
    b.control().expire_token(&t.access_token);
    let (out, _) = run(&[
        "check",
        "--url",
        &check_url(&b.http_url()),
        "--token",
        &t.access_token,
    ])
    .await;
    assert_exit(&out, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn captive_portal_never_grants() {
    let b = backend(false).await;
    let t = b.control().issue_token("erin", Duration::from_secs(3600));
    b.control().set_fault(Endpoint::Check, Some(Fault::HtmlPortal));
    let (out, _) = run(&[
        "check",
        "--url",
        &check_url(&b.http_url()),
        "--token",
        &t.access_token,
        "--budget",
        "2s",
        "--timeout",
        "300ms",
        "--retry-spread",
        "700ms",
        "--json",
    ])
    .await;
    assert_exit(&out, 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""class":"invalid_body""#), "{text}");
    assert!(!text.contains(r#""to":"granted""#), "{text}");
}

/// R1: every hostile body the backend can produce is transient; none may grant. All run at
/// once, each against its own backend (faults are per server).
#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_and_hangs_never_grant() {
    let faults = [
        Fault::WrongType,
        Fault::NullValue,
        Fault::MissingField,
        Fault::DuplicateKey,
        Fault::TrailingGarbage,
        Fault::Truncated,
        Fault::Oversized,
        Fault::BrokenChunked,
        Fault::Hang,
        Fault::Status {
            code: 403,
            retry_after: None,
        },
        Fault::Status {
            code: 503,
            retry_after: Some(1),
        },
    ];
    let runs = faults.into_iter().map(|fault| async move {
        let b = backend(false).await;
        let t = b.control().issue_token("frank", Duration::from_secs(3600));
        b.control().set_fault(Endpoint::Check, Some(fault.clone()));
        let url = check_url(&b.http_url());
        let (out, _) = run(&[
            "check",
            "--url",
            &url,
            "--token",
            &t.access_token,
            "--budget",
            "1500ms",
            "--timeout",
            "300ms",
            "--retry-spread",
            "700ms",
            "--json",
        ])
        .await;
        (fault, out)
    });
    for (fault, out) in futures_join_all(runs).await {
        assert_eq!(
            code(&out),
            2,
            "{fault:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_then_recovery_grants_within_the_budget() {
    let b = backend(false).await;
    let t = b.control().issue_token("gina", Duration::from_secs(3600));
    b.control().set_fault(
        Endpoint::Check,
        Some(Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    // The outage ends once the device has met it (the backend answered a 503), not at a fixed
    // moment: a slow process start must not let the first attempt find the backend healthy.
    let control = b.control();
    tokio::spawn(async move {
        while control.counts().get(Endpoint::Check, 503) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        control.set_fault(Endpoint::Check, None);
    });
    let url = check_url(&b.http_url());
    let (out, _) = run(&[
        "check",
        "--url",
        &url,
        "--token",
        &t.access_token,
        "--budget",
        "10s",
        "--timeout",
        "1s",
        "--retry-spread",
        "5s",
        "--final-window",
        "1s",
        "--json",
    ])
    .await;
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(last["attempts"].as_u64().unwrap() >= 2, "{text}");
    assert_eq!(last["cause"], "server_granted");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_parse_and_the_last_is_final() {
    let b = backend(false).await;
    let t = b.control().issue_token("hank", Duration::from_secs(3600));
    let (out, _) = run(&[
        "check",
        "--url",
        &check_url(&b.http_url()),
        "--token",
        &t.access_token,
        "--json",
    ])
    .await;
    assert_exit(&out, 0);
    let lines = json_lines(&out);
    let (last, events) = lines.split_last().expect("output");
    assert_eq!(last["final"], true);
    assert_eq!(last["verdict"], "granted");
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["attempts"], 1);
    assert!(events
        .iter()
        .all(|e| e.get("final").is_none() && e["t_ms"].is_u64()));
    assert_eq!(events.first().unwrap()["event"], "check_started");
    assert!(events
        .iter()
        .any(|e| e["event"] == "access_changed" && e["to"] == "granted"));
}

#[tokio::test(flavor = "multi_thread")]
async fn granted_over_https_verified_against_the_ca() {
    let b = backend(true).await;
    let t = b.control().issue_token("ivy", Duration::from_secs(3600));
    let ca = ca_file(&b);
    let url = check_url(&b.https_url().unwrap());
    assert!(url.starts_with("https://localhost:"), "{url}");
    let (out, _) = run(&[
        "check",
        "--url",
        &url,
        "--token",
        &t.access_token,
        "--ca",
        &path(&ca),
    ])
    .await;
    assert_exit(&out, 0);
    b.control().set_access("ivy", false);
    let (out, _) = run(&[
        "check",
        "--url",
        &url,
        "--token",
        &t.access_token,
        "--ca",
        &path(&ca),
    ])
    .await;
    assert_exit(&out, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_never_grants() {
    let b = backend(true).await;
    let other = backend(true).await; // same CN, different CA key
    let t = b.control().issue_token("jack", Duration::from_secs(3600));
    let wrong = ca_file(&other);
    let url = check_url(&b.https_url().unwrap());
    let (out, _) = run(&[
        "check",
        "--url",
        &url,
        "--token",
        &t.access_token,
        "--ca",
        &path(&wrong),
        "--budget",
        "1500ms",
        "--timeout",
        "500ms",
        "--json",
    ])
    .await;
    assert_exit(&out, 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""class":"tls""#), "{text}");
    // R13: why. The other CA has the same name, so the chain's signature is what fails.
    assert!(
        text.contains(r#""detail":"TLS signature did not verify""#),
        "{text}"
    );
    // The token never reached the server: the handshake failed before any request.
    assert_eq!(b.control().counts().endpoint_total(Endpoint::Check), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_by_ip_matches_the_ip_san_and_grants() {
    // R14: an IP URL is matched against the certificate's iPAddress SAN (the backend's leaf
    // has 127.0.0.1), not its CN.
    let b = backend(true).await;
    let t = b.control().issue_token("kate", Duration::from_secs(3600));
    let ca = ca_file(&b);
    let port = b.https_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}{}", Backend::check_path());
    let (out, _) = run(&[
        "check",
        "--url",
        &url,
        "--token",
        &t.access_token,
        "--ca",
        &path(&ca),
        "--budget",
        "1s",
        "--timeout",
        "500ms",
    ])
    .await;
    assert_exit(&out, 0);
    assert_eq!(b.control().counts().endpoint_total(Endpoint::Check), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_64() {
    let b = backend(true).await;
    let http = check_url(&b.http_url());
    let https = check_url(&b.https_url().unwrap());
    let ca = ca_file(&b);
    let mut not_pem = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut not_pem, b"not a certificate").unwrap();
    let cases: [&[&str]; 8] = [
        &["check", "--url", &http],                                           // no token
        &["check", "--url", &http, "--token", "t", "--timeout", "soon"],      // bad duration
        &["check", "--url", &http, "--token", "t", "--bogus"],                // unknown flag
        &["frobnicate"],                                                      // unknown command
        &["check", "--url", &https, "--token", "t"],                          // https without --ca
        &["check", "--url", &https, "--token", "t", "--ca", &path(&not_pem)], // no certificate
        &["check", "--url", "ftp://x/", "--token", "t"],                      // not http(s)
        &[
            "check",
            "--url",
            &http,
            "--token",
            "t",
            "--timeout",
            "5s",
            "--budget",
            "5s",
        ], // timeout >= budget
    ];
    for args in cases {
        let (out, took) = run(args).await;
        assert_eq!(
            code(&out),
            64,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(took < Duration::from_secs(5));
    }
    let _ = ca;
    // --help is an answer, not an error.
    let (out, _) = run(&["check", "--help"]).await;
    assert_exit(&out, 0);
    // Nothing above reached the backend.
    assert_eq!(b.control().counts().total(), 0);
}

/// `--retries N` (R6) on the device path: a run of failures gets exactly N retries before the
/// gate fails closed (the `check_started` events before the `failed_closed` change).
#[tokio::test(flavor = "multi_thread")]
async fn retries_flag_sets_how_many_retries_come_before_failing_closed() {
    let b = backend(false).await;
    let t = b.control().issue_token("gina", Duration::from_secs(3600));
    b.control().set_fault(
        Endpoint::Check,
        Some(Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    let url = check_url(&b.http_url());
    for retries in [1usize, 3] {
        let n = retries.to_string();
        let (out, _) = run(&[
            "check",
            "--url",
            &url,
            "--token",
            &t.access_token,
            "--budget",
            "1s",
            "--timeout",
            "300ms",
            "--retry-spread",
            "400ms",
            "--retries",
            &n,
            "--json",
        ])
        .await;
        assert_exit(&out, 2);
        let text = String::from_utf8_lossy(&out.stdout);
        let lines = json_lines(&out);
        let closed = lines
            .iter()
            .position(|l| l["event"] == "access_changed" && l["cause"] == "failed_closed")
            .unwrap_or_else(|| panic!("failed closed: {text}"));
        let started = lines[..closed]
            .iter()
            .filter(|l| l["event"] == "check_started")
            .count();
        assert_eq!(started, 1 + retries, "--retries {retries}: {text}");
    }
}
