//! R13 on the desktop: every certificate the R14 matrix refuses is refused with a detail that
//! names the reason, in the `check --json` events. Certificates come from `accessgate-tlskit`;
//! the reference backend serves them.

use std::time::Duration;

use accessgate_backend::{Backend, BackendConfig};
use accessgate_tlskit::matrix::run_check;
use accessgate_tlskit::{Case, Expect};

const BIN: &str = env!("CARGO_BIN_EXE_accessgate");

/// The `detail` of every `check_failed` event when `case`'s chain is checked against its
/// anchor.
async fn details(case: Case) -> Vec<String> {
    let s = case.scenario().expect("certificates generate");
    let backend = Backend::start(BackendConfig {
        https_port: Some(0),
        tls_identity: Some(s.identity()),
        ..BackendConfig::default()
    })
    .await
    .expect("backend starts");
    let token = backend
        .control()
        .issue_token("alice", Duration::from_secs(3600))
        .access_token;
    let port = backend.https_addr().expect("https").port();
    let out = run_check(
        BIN,
        &s.url(port, Backend::check_path()),
        &token,
        &s.trust_pem,
        Expect::Refused,
    )
    .await;
    backend.shutdown().await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{case:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let d: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "check_failed")
        .map(|v| v["detail"].as_str().unwrap_or("(none)").to_string())
        .collect();
    assert!(!d.is_empty(), "{case:?}: no failed check");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_certificate_says_why() {
    let rows: [(Case, &[&str]); 8] = [
        (Case::Expired, &["certificate expired"]),
        (Case::NotYetValid, &["certificate not valid yet"]),
        (Case::WrongName, &["certificate not valid for this host name"]),
        (
            Case::SanMismatchCnMatch,
            &["certificate not valid for this host name"],
        ),
        (
            Case::ClientAuthOnlyEku,
            &["certificate not valid for server authentication"],
        ),
        (Case::LeafIsCa, &["CA certificate used as server certificate"]),
        (Case::EndEntityAsIntermediate, &["certificate issuer is not a CA"]),
        // Same issuer name, another key: webpki reports the signature of the candidate.
        (
            Case::UntrustedCa,
            &["TLS signature did not verify", "certificate: unknown issuer"],
        ),
    ];
    let mut wrong = Vec::new();
    for (case, want) in rows {
        let got = details(case).await;
        if !got.iter().all(|d| want.contains(&d.as_str())) {
            wrong.push(format!("{case:?}: got {got:?}, want one of {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
