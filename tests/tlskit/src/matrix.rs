//! Runs one matrix row against a built `check` binary and asserts what R14 demands of it.
//!
//! Both binaries (`accessgate`, `accessgate-embassy`) take the same `check` flags and exit
//! codes (0 granted, 1 denied, 2 failed closed, 3 unauthorized, 64 usage), so one runner
//! serves both test crates; each crate states its own expectation per row.

use std::process::Output;
use std::time::Duration;

use accessgate_backend::{Backend, BackendConfig, Endpoint};

use crate::{Case, Flow, RogueServer, Scenario};

/// What a row must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exit 0, and the server answered the check.
    Granted,
    /// Exit 2 after TLS failures only, and no request (so no token) reached the server.
    Refused,
    /// A key type the platform does not support (RSA on the device): refused either like
    /// [`Expect::Refused`], or at start-up with exit 64 and an error naming RSA, before any
    /// connection (R14: "refused rather than skipped"). No request reaches the server.
    RefusedAsUnsupportedRsa,
    /// Refused like [`Expect::Refused`], and every failed attempt's R13 `detail` is this text.
    RefusedWithDetail(&'static str),
    /// A trust anchor whose key type the platform does not support: exit 64 at start-up with
    /// an error naming this key type, before any connection (R14: a configuration error, not a
    /// failure at every attempt). No request reaches the server.
    UnsupportedAnchor(&'static str),
}

/// No run may take longer than this, whatever happens.
const RUN_BOUND: Duration = Duration::from_secs(30);

/// Flags per expectation: a grant must come from the first attempt, a refusal fails closed
/// after a short budget.
fn budget_flags(expect: Expect) -> &'static [&'static str] {
    match expect {
        Expect::Granted => &["--timeout", "5s", "--budget", "10s"],
        Expect::Refused
        | Expect::RefusedAsUnsupportedRsa
        | Expect::RefusedWithDetail(_)
        | Expect::UnsupportedAnchor(_) => &["--timeout", "1s", "--budget", "2s", "--retry-spread", "200ms"],
    }
}

/// Runs `bin check` against `url` trusting `trust_pem` only; returns the output.
pub async fn run_check(bin: &str, url: &str, token: &str, trust_pem: &str, expect: Expect) -> Output {
    let mut ca = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut ca, trust_pem.as_bytes()).expect("write --ca");
    let ca_path = ca.path().to_str().expect("utf-8 temp path").to_string();
    let mut args = vec![
        "check",
        "--url",
        url,
        "--token",
        token,
        "--ca",
        &ca_path,
        "--no-system-roots",
        "--json",
    ];
    args.extend_from_slice(budget_flags(expect));
    let child = tokio::process::Command::new(bin)
        .args(&args)
        .env_remove("ACCESSGATE_TOKEN")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(RUN_BOUND, child)
        .await
        .unwrap_or_else(|_| panic!("{bin} {args:?} did not finish within {RUN_BOUND:?}"))
        .expect("the binary runs")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The exit code; a death by signal or a panic (101) fails the test: hostile handshakes
/// never panic (R14).
#[track_caller]
fn exit_code(out: &Output) -> i32 {
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {}", describe(out)));
    assert_ne!(code, 101, "the binary panicked: {}", describe(out));
    code
}

/// Asserts a refusal: exit 2, at least one failed attempt, and every failure a TLS failure
/// (R14: a transient TLS failure, R4; not a timeout or a parse error). Returns each failed
/// attempt's `detail` (R13).
#[track_caller]
fn assert_refused_by_tls(out: &Output) -> Vec<String> {
    assert_eq!(exit_code(out), 2, "{}", describe(out));
    let text = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "check_failed")
        .map(|v| {
            let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
            (field("class"), field("detail"))
        })
        .collect();
    assert!(!failed.is_empty(), "no failed attempt: {}", describe(out));
    assert!(
        failed.iter().all(|(c, _)| c == "tls"),
        "non-TLS failures {failed:?}: {}",
        describe(out)
    );
    failed.into_iter().map(|(_, d)| d).collect()
}

/// One certificate row: the reference backend serves the case's chain, `bin` checks with the
/// case's anchor.
pub async fn certificate_case(bin: &str, case: Case, expect: Expect) {
    let s: Scenario = case.scenario().expect("certificates generate");
    let backend = Backend::start(BackendConfig {
        https_port: Some(0),
        tls_identity: Some(s.identity()),
        ..BackendConfig::default()
    })
    .await
    .expect("backend starts");
    let control = backend.control();
    let token = control
        .issue_token("alice", Duration::from_secs(3600))
        .access_token;
    let port = backend.https_addr().expect("https listener").port();
    let url = s.url(port, Backend::check_path());
    let out = run_check(bin, &url, &token, &s.trust_pem, expect).await;
    let counts = control.counts();
    match expect {
        Expect::Granted => {
            assert_eq!(exit_code(&out), 0, "{case:?} must be granted: {}", describe(&out));
            assert!(
                counts.get(Endpoint::Check, 200) >= 1,
                "{case:?}: the backend answered"
            );
        }
        Expect::Refused => {
            assert_refused_by_tls(&out);
        }
        Expect::RefusedWithDetail(want) => {
            let details = assert_refused_by_tls(&out);
            assert!(
                details.iter().all(|d| d == want),
                "{case:?}: every failure says {want:?} (R13), got {details:?}: {}",
                describe(&out)
            );
        }
        Expect::UnsupportedAnchor(key_type) => {
            assert_eq!(exit_code(&out), 64, "{case:?}: {}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("--ca") && stderr.contains(key_type),
                "{case:?}: the error names the CA and {key_type}: {}",
                describe(&out)
            );
        }
        Expect::RefusedAsUnsupportedRsa => {
            if exit_code(&out) == 64 {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("RSA"),
                    "{case:?}: the error names RSA: {}",
                    describe(&out)
                );
            } else {
                assert_refused_by_tls(&out);
            }
        }
    }
    if expect != Expect::Granted {
        // R14: refused before any request, so the token never left.
        assert_eq!(counts.total(), 0, "{case:?}: a request reached the server");
    }
    backend.shutdown().await;
}

/// One rogue-server row: `flow` with the chain of `case` (a valid P-256 chain, or the
/// Ed25519-signed leaf for mode (d)).
pub async fn rogue_case(bin: &str, flow: Flow, case: Case, expect: Expect) {
    assert!(
        !matches!(expect, Expect::UnsupportedAnchor(_)),
        "{flow:?}/{case:?}: a rogue row needs a handshake, not a start-up refusal"
    );
    let s = case.scenario().expect("certificates generate");
    let server = RogueServer::start(flow, s.chain.clone(), &s.key_pkcs8).expect("rogue server starts");
    let url = s.url(server.addr().port(), Backend::check_path());
    let token = "at_rogue_must_never_see_this";
    let out = run_check(bin, &url, token, &s.trust_pem, expect).await;
    let report = server.report();
    assert!(
        report.server_hellos >= 1,
        "{flow:?}/{case:?}: no handshake reached the rogue step: {report:?}"
    );
    match expect {
        Expect::Granted => {
            assert_eq!(
                exit_code(&out),
                0,
                "{flow:?}/{case:?}: {}\n{report:?}",
                describe(&out)
            );
            assert!(report.bearer_seen, "{flow:?}: the request arrived: {report:?}");
        }
        Expect::Refused | Expect::RefusedAsUnsupportedRsa | Expect::RefusedWithDetail(_) => {
            let details = assert_refused_by_tls(&out);
            if let Expect::RefusedWithDetail(want) = expect {
                assert!(
                    details.iter().all(|d| d == want),
                    "{flow:?}/{case:?}: every failure says {want:?} (R13), got {details:?}"
                );
            }
            assert!(
                !report.bearer_seen,
                "{flow:?}/{case:?}: the token reached a rogue server: {report:?}"
            );
            assert_eq!(
                report.application_bytes, 0,
                "{flow:?}/{case:?}: application data: {report:?}"
            );
        }
        Expect::UnsupportedAnchor(_) => unreachable!("ruled out before the run"),
    }
}
