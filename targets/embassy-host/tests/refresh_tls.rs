//! R14 on the device's refresh lane (R11), with real TLS: `accessgate-embassy check
//! --token-url ... --refresh-token ...` runs the embassy driver with both lanes. The check
//! endpoint is a healthy reference backend (a well-formed certificate under the trusted anchor,
//! `Scenario::trusted_peer`); the token endpoint is a separate server with a broken certificate
//! (the reference backend serving a tlskit case) or a rogue TLS 1.3 server that skips a step.
//! `--expires-in 30s` puts the token inside the refresh skew (60 s), so the refresh starts at
//! sign-in (R11).
//!
//! Every refused row asserts what a user observes: the check is still granted (exit 0), each
//! refresh ends in a `refresh_failed` event of class `tls` whose detail names the TLS step
//! (R13), no `refreshed` event, and the token server received nothing: no request counted by
//! the reference backend, no application data (so no refresh-token byte) at the rogue server.
//! Three controls show those assertions can fail: a valid chain on the token endpoint refreshes
//! (on the check's server, and on a server of its own), and the rogue server's correct
//! handshake receives the refresh request.

use std::process::Output;
use std::time::{Duration, Instant};

use accessgate_backend::{Backend, BackendConfig, Endpoint};
use accessgate_tlskit::{Case, Flow, RogueServer, Scenario, SilentServer};

mod common;

/// Refreshes each refused row waits for: the first at sign-in, the second at R11's retry floor
/// (about 1 s later), so a retry is shown to be refused as well.
const REFUSED_REFRESHES: &str = "2";

/// An HTTPS reference backend serving `identity`.
async fn https_backend(identity: accessgate_backend::TlsIdentity) -> Backend {
    Backend::start(BackendConfig {
        https_port: Some(0),
        tls_identity: Some(identity),
        ..BackendConfig::default()
    })
    .await
    .expect("backend starts")
}

/// `https://localhost:PORT/path` of `backend` (the trusted peer is issued for `localhost`).
fn localhost_url(backend: &Backend, path: &str) -> String {
    let port = backend.https_addr().expect("https listener").port();
    format!("https://localhost:{port}{path}")
}

/// Runs `check` with the refresh lane: `url` checked with `token`, `token_url` refreshed with
/// `refresh_token`, trusting `trust_pem` only, waiting for `refreshes` refreshes to end.
async fn run_refresh(
    url: &str,
    token: &str,
    token_url: &str,
    refresh_token: &str,
    trust_pem: &str,
    refreshes: &str,
) -> (Output, Duration) {
    run_refresh_timed(url, token, token_url, refresh_token, trust_pem, refreshes, "5s").await
}

/// [`run_refresh`] with `--timeout` (per check and per refresh attempt) set to `timeout`.
async fn run_refresh_timed(
    url: &str,
    token: &str,
    token_url: &str,
    refresh_token: &str,
    trust_pem: &str,
    refreshes: &str,
    timeout: &str,
) -> (Output, Duration) {
    let mut ca = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut ca, trust_pem.as_bytes()).expect("write --ca");
    let ca_path = ca.path().to_str().expect("utf-8 temp path").to_string();
    let args = [
        "check",
        "--url",
        url,
        "--token",
        token,
        "--ca",
        &ca_path,
        "--json",
        "--timeout",
        timeout,
        "--budget",
        "10s",
        "--token-url",
        token_url,
        "--refresh-token",
        refresh_token,
        "--expires-in",
        "30s",
        "--refreshes",
        refreshes,
    ];
    let started = Instant::now();
    let out = common::run(&args).await;
    (out, started.elapsed())
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `--json` output: one JSON object per line.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// The events named `name`.
fn events<'a>(lines: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["event"] == name).collect()
}

/// The exit code; a signal or a panic (101) fails the row (R14: never a panic).
#[track_caller]
fn exit_code(out: &Output) -> i32 {
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {}", describe(out)));
    assert_ne!(code, 101, "the binary panicked: {}", describe(out));
    code
}

/// A refused refresh lane, as the user sees it: the check still granted (exit 0, a healthy
/// check endpoint), two refreshes started and both failed with class `tls` and `detail`
/// (R13), none refreshed, the session still signed in.
#[track_caller]
fn assert_refresh_refused_by_tls(out: &Output, detail: &str) {
    assert_eq!(
        exit_code(out),
        0,
        "the check endpoint is healthy: {}",
        describe(out)
    );
    let lines = json_lines(out);
    let failed = events(&lines, "refresh_failed");
    assert!(
        failed.len() >= 2,
        "two refreshes ended in refresh_failed: {}",
        describe(out)
    );
    for f in &failed {
        assert_eq!(f["class"], "tls", "a TLS failure (R4, R14): {}", describe(out));
        assert_eq!(
            f["detail"],
            detail,
            "the TLS step that failed (R13): {}",
            describe(out)
        );
    }
    assert!(events(&lines, "refresh_started").len() >= 2, "{}", describe(out));
    assert!(events(&lines, "refreshed").is_empty(), "{}", describe(out));
    assert!(events(&lines, "refresh_rejected").is_empty(), "{}", describe(out));
    let last = lines.last().expect("a final line");
    assert_eq!(last["final"], true, "{}", describe(out));
    assert_eq!(last["verdict"], "granted", "{}", describe(out));
    assert_eq!(last["signed_in"], true, "{}", describe(out));
}

/// One certificate row: the token endpoint serves `case`'s chain, the check endpoint a
/// well-formed certificate under the same anchor. The refresh must fail with `detail` and the
/// token server must see no request at all.
async fn token_endpoint_certificate_row(case: Case, detail: &str) {
    let s: Scenario = case.scenario().expect("certificates generate");
    let peer = s.trusted_peer.clone().expect("a trusted peer for this case");
    let check = https_backend(peer).await;
    let tokens = https_backend(s.identity()).await;
    let pair = check.control().issue_token("alice", Duration::from_secs(3600));
    let check_url = localhost_url(&check, Backend::check_path());
    let token_port = tokens.https_addr().expect("https listener").port();
    let token_url = s.url(token_port, Backend::token_path());
    let (out, took) = run_refresh(
        &check_url,
        &pair.access_token,
        &token_url,
        &pair.refresh_token,
        &s.trust_pem,
        REFUSED_REFRESHES,
    )
    .await;
    assert_refresh_refused_by_tls(&out, detail);
    let token_counts = tokens.control().counts();
    // R14: refused before any request, so the refresh token never left the device.
    assert_eq!(
        token_counts.total(),
        0,
        "{case:?}: a request reached the token endpoint: {token_counts:?}"
    );
    assert!(
        check.control().counts().get(Endpoint::Check, 200) >= 1,
        "{case:?}: the healthy check endpoint answered"
    );
    eprintln!("{case:?}: refused in {took:?}");
    check.shutdown().await;
    tokens.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_an_expired_certificate_is_refused_and_no_refresh_token_sent() {
    token_endpoint_certificate_row(Case::Expired, "certificate expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_wrong_name_is_refused_and_no_refresh_token_sent() {
    token_endpoint_certificate_row(Case::WrongName, "certificate not valid for this host name").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_under_an_untrusted_ca_is_refused_and_no_refresh_token_sent() {
    // Same issuer name, another key: webpki reports the candidate issuer's signature (the
    // desktop's tls_detail row accepts the same detail).
    token_endpoint_certificate_row(Case::UntrustedCa, "TLS signature did not verify").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_not_yet_valid_certificate_is_refused_and_no_refresh_token_sent() {
    token_endpoint_certificate_row(Case::NotYetValid, "certificate not valid yet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_whose_san_mismatches_despite_its_cn_is_refused_and_no_refresh_token_sent(
) {
    token_endpoint_certificate_row(
        Case::SanMismatchCnMatch,
        "certificate not valid for this host name",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_client_auth_only_leaf_is_refused_and_no_refresh_token_sent() {
    token_endpoint_certificate_row(
        Case::ClientAuthOnlyEku,
        "certificate not valid for server authentication",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_whose_leaf_is_a_ca_is_refused_and_no_refresh_token_sent() {
    token_endpoint_certificate_row(Case::LeafIsCa, "CA certificate used as server certificate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_chained_through_an_end_entity_is_refused_and_no_refresh_token_sent() {
    token_endpoint_certificate_row(Case::EndEntityAsIntermediate, "certificate issuer is not a CA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_an_ed25519_leaf_is_refused_and_no_refresh_token_sent() {
    // R14: a P-256 anchor the device accepts, but the token server's key is Ed25519, which the
    // device cannot check a CertificateVerify with. The check endpoint (a P-256 leaf under the
    // same CA) stays healthy.
    token_endpoint_certificate_row(Case::Ed25519LeafUnderP256Ca, "unsupported signature algorithm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_an_rsa_leaf_is_refused_by_its_alert_and_no_refresh_token_sent() {
    // R14: the token server's key is RSA under the device's P-256 anchor; the device offers no
    // RSA signature scheme, so the server ends the handshake with an alert (R13: named so).
    token_endpoint_certificate_row(Case::RsaLeafUnderP256Ca, "TLS alert from the server").await;
}

/// One rogue row: the token endpoint is the rogue server with `flow` and `case`'s chain; the
/// check endpoint the trusted peer. The handshake must reach the rogue step and go no further.
async fn token_endpoint_rogue_row(flow: Flow, case: Case, detail: &str) {
    let s = case.scenario().expect("certificates generate");
    let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
    let rogue = RogueServer::start(flow, s.chain.clone(), &s.key_pkcs8).expect("rogue server starts");
    let pair = check.control().issue_token("alice", Duration::from_secs(3600));
    let check_url = localhost_url(&check, Backend::check_path());
    let token_url = s.url(rogue.addr().port(), Backend::token_path());
    let (out, _) = run_refresh(
        &check_url,
        &pair.access_token,
        &token_url,
        &pair.refresh_token,
        &s.trust_pem,
        REFUSED_REFRESHES,
    )
    .await;
    let report = rogue.report();
    assert!(
        report.server_hellos >= 2,
        "{flow:?}/{case:?}: both refreshes reached the rogue step: {report:?}"
    );
    assert_refresh_refused_by_tls(&out, detail);
    assert_eq!(
        report.application_bytes, 0,
        "{flow:?}/{case:?}: application data (the refresh form) reached a rogue server: {report:?}"
    );
    assert_eq!(report.responses, 0, "{flow:?}/{case:?}: {report:?}");
    check.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_skipping_certificate_is_refused_and_no_refresh_token_sent() {
    token_endpoint_rogue_row(
        Flow::SkipCertificate,
        Case::ValidP256,
        "server sent no certificate",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_skipping_certificate_verify_is_refused_and_no_refresh_token_sent()
{
    token_endpoint_rogue_row(
        Flow::SkipCertificateVerify,
        Case::ValidP256,
        "server did not prove its key (no CertificateVerify)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_sending_certificate_verify_first_is_refused_and_no_refresh_token_sent(
) {
    token_endpoint_rogue_row(
        Flow::CertificateVerifyFirst,
        Case::ValidP256,
        "server sent no certificate",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_with_an_ed25519_signed_leaf_is_refused_and_no_refresh_token_sent()
{
    token_endpoint_rogue_row(
        Flow::WellBehaved,
        Case::Ed25519SignedLeaf,
        "unsupported signature algorithm",
    )
    .await;
}

/// Control for the rogue rows: the rogue server's correct handshake is accepted on the
/// refresh lane and the refresh request reaches it (so "no application data" above can
/// fail). Its answer (`{"has_access":true}`) is no token response: the refresh fails, but
/// not as TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_the_rogue_server_with_a_correct_handshake_sends_the_refresh_request() {
    let s = Case::ValidP256.scenario().expect("certificates generate");
    let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
    let rogue = RogueServer::start(Flow::WellBehaved, s.chain.clone(), &s.key_pkcs8).expect("rogue starts");
    let pair = check.control().issue_token("alice", Duration::from_secs(3600));
    let check_url = localhost_url(&check, Backend::check_path());
    let token_url = s.url(rogue.addr().port(), Backend::token_path());
    let (out, _) = run_refresh(
        &check_url,
        &pair.access_token,
        &token_url,
        &pair.refresh_token,
        &s.trust_pem,
        "1",
    )
    .await;
    let report = rogue.report();
    assert_eq!(exit_code(&out), 0, "{}", describe(&out));
    assert!(report.handshakes_completed >= 1, "{report:?}");
    // The form's head and body: at least the fixed form text and the refresh token.
    let form =
        "grant_type=refresh_token&refresh_token=&client_id=accessgate".len() + pair.refresh_token.len();
    assert!(
        report.application_bytes > form,
        "the refresh request reached the verified server: {report:?}"
    );
    assert!(
        !report.bearer_seen,
        "a refresh carries no bearer header: {report:?}"
    );
    let lines = json_lines(&out);
    let failed = events(&lines, "refresh_failed");
    assert_eq!(failed.len(), 1, "{}", describe(&out));
    assert_ne!(failed[0]["class"], "tls", "{}", describe(&out));
    check.shutdown().await;
}

/// Control for the certificate rows: a valid chain on the token endpoint (here the same
/// reference backend as the check, so the new access token is one it knows) refreshes, and
/// the new token's check is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_valid_chain_refreshes_and_the_new_token_is_granted() {
    let s = Case::ValidP256.scenario().expect("certificates generate");
    let backend = https_backend(s.identity()).await;
    let pair = backend.control().issue_token("alice", Duration::from_secs(3600));
    let port = backend.https_addr().expect("https listener").port();
    let (out, _) = run_refresh(
        &s.url(port, Backend::check_path()),
        &pair.access_token,
        &s.url(port, Backend::token_path()),
        &pair.refresh_token,
        &s.trust_pem,
        "1",
    )
    .await;
    assert_eq!(exit_code(&out), 0, "{}", describe(&out));
    let lines = json_lines(&out);
    assert!(events(&lines, "refresh_failed").is_empty(), "{}", describe(&out));
    let refreshed = events(&lines, "refreshed");
    assert_eq!(refreshed.len(), 1, "{}", describe(&out));
    let generation = refreshed[0]["generation"].as_u64().expect("a generation");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "first_check_settled" && l["generation"] == generation),
        "the new token's check settled: {}",
        describe(&out)
    );
    let last = lines.last().expect("a final line");
    assert_eq!(last["verdict"], "granted", "{}", describe(&out));
    let counts = backend.control().counts();
    assert_eq!(
        counts.get(Endpoint::Token, 200),
        1,
        "one refresh answered: {counts:?}"
    );
    assert!(counts.get(Endpoint::Check, 200) >= 1, "{counts:?}");
    backend.shutdown().await;
}

/// Control for the certificate rows in their own topology (check and token endpoint on two
/// servers, the check server's certificate the trusted peer): with a valid chain on the token
/// server the refresh request reaches it and is answered, so "no request reached the token
/// endpoint" above can fail. The two reference backends do not share state, so the check
/// server does not know the new access token: its 401 ends the session (R8, exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_separate_token_server_with_a_valid_chain_reaches_it() {
    let s = Case::ValidP256.scenario().expect("certificates generate");
    let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
    let tokens = https_backend(s.identity()).await;
    let pair = check.control().issue_token("alice", Duration::from_secs(3600));
    // The token server knows this refresh token (the user's pair on the token side).
    let token_side = tokens.control().issue_token("alice", Duration::from_secs(3600));
    let token_port = tokens.https_addr().expect("https listener").port();
    let (out, _) = run_refresh(
        &localhost_url(&check, Backend::check_path()),
        &pair.access_token,
        &s.url(token_port, Backend::token_path()),
        &token_side.refresh_token,
        &s.trust_pem,
        "1",
    )
    .await;
    let lines = json_lines(&out);
    assert_eq!(events(&lines, "refreshed").len(), 1, "{}", describe(&out));
    assert!(events(&lines, "refresh_failed").is_empty(), "{}", describe(&out));
    assert_eq!(exit_code(&out), 3, "{}", describe(&out));
    let counts = tokens.control().counts();
    assert_eq!(counts.get(Endpoint::Token, 200), 1, "{counts:?}");
    check.shutdown().await;
    tokens.shutdown().await;
}

/// A token endpoint that accepts the connection and never answers the ClientHello: the refresh
/// ends at its timeout (R4, bounded), as a timeout, and nothing is written after the hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_silent_token_endpoint_times_out_within_its_bound() {
    let s = Case::ValidP256.scenario().expect("certificates generate");
    let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
    let silent = SilentServer::start().expect("silent server listens");
    let port = silent.addr().port();
    let pair = check.control().issue_token("alice", Duration::from_secs(3600));
    let (out, took) = run_refresh_timed(
        &localhost_url(&check, Backend::check_path()),
        &pair.access_token,
        &s.url(port, Backend::token_path()),
        &pair.refresh_token,
        &s.trust_pem,
        "1",
        "1s",
    )
    .await;
    assert_eq!(exit_code(&out), 0, "{}", describe(&out));
    let lines = json_lines(&out);
    let failed = events(&lines, "refresh_failed");
    assert_eq!(failed.len(), 1, "{}", describe(&out));
    assert_eq!(failed[0]["class"], "timeout", "{}", describe(&out));
    assert!(
        took < Duration::from_secs(5),
        "bounded by --timeout 1s: took {took:?}"
    );
    let got = silent.received();
    // One TLS record (the ClientHello, content type 22), and nothing of the form.
    assert_eq!(got.first(), Some(&22), "a TLS handshake record first: {got:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains(&pair.refresh_token) && !text.contains("grant_type"),
        "{text}"
    );
    check.shutdown().await;
}

/// A plain-HTTP server behind an `https://` token URL: no downgrade (R14). The handshake fails
/// as TLS and the server never receives a request it could read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_plain_http_server_behind_an_https_url_is_refused_as_tls() {
    let s = Case::ValidP256.scenario().expect("certificates generate");
    let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
    let plain = Backend::start(BackendConfig::default())
        .await
        .expect("backend starts");
    let pair = check.control().issue_token("alice", Duration::from_secs(3600));
    let token_url = s.url(plain.http_addr().port(), Backend::token_path());
    let (out, _) = run_refresh(
        &localhost_url(&check, Backend::check_path()),
        &pair.access_token,
        &token_url,
        &pair.refresh_token,
        &s.trust_pem,
        "1",
    )
    .await;
    assert_eq!(exit_code(&out), 0, "{}", describe(&out));
    let lines = json_lines(&out);
    let failed = events(&lines, "refresh_failed");
    assert_eq!(failed.len(), 1, "{}", describe(&out));
    assert_eq!(failed[0]["class"], "tls", "{}", describe(&out));
    assert_eq!(
        failed[0]["detail"],
        "unexpected TLS handshake message",
        "{}",
        describe(&out)
    );
    assert!(events(&lines, "refreshed").is_empty(), "{}", describe(&out));
    let counts = plain.control().counts();
    assert_eq!(counts.endpoint_total(Endpoint::Token), 0, "{counts:?}");
    check.shutdown().await;
    plain.shutdown().await;
}
