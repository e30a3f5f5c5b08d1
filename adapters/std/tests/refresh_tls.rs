//! R14 on the desktop's refresh lane (R11), with real TLS: [`AccessGate`] refreshes its token
//! over reqwest + rustls, verified by webpki and the adapter's own pinning verifier
//! (`src/tls.rs`). The check endpoint is a healthy reference backend (a well-formed certificate
//! under the trusted anchor, `Scenario::trusted_peer`); the token endpoint is a separate server
//! with a broken certificate (the reference backend serving a tlskit case) or a rogue TLS 1.3
//! server that skips a step. Tokens that expire in 30 s with a 60 s refresh skew put the
//! refresh at sign-in (R11). The device's refresh lane runs the same rows in
//! `targets/embassy-host/tests/refresh_tls.rs`.
//!
//! Every refused row asserts what a user observes: access stays granted by the check, each
//! refresh ends in `RefreshFailed` of class `Tls` whose detail names the TLS step (R13, also in
//! `Status::last_failure`), no `Refreshed` (nor `RefreshRejected`), the session still signed in,
//! and the token server received nothing: no request counted by the reference backend, no
//! application data (so no refresh-token byte) at the rogue server. Controls show those
//! assertions can fail: valid chains on the token endpoint refresh (on the check's server, and
//! on a server of their own), the rogue server's correct handshake receives the refresh
//! request, and a pinned self-signed certificate on the token endpoint refreshes.
//!
//! Two rows check the handshake signature on its own: a server that presents the trusted
//! certificate (or the pinned one) without holding its key signs CertificateVerify with
//! another key, and is refused as a bad signature.
//!
//! The desktop-only rows pin a self-signed certificate (`extra_ca_pem`, R14's pinning): the
//! pinned certificate works, another self-signed certificate for the same name is refused, the
//! pin is still matched against the URL's host, and turning the OS root store on as well
//! (`system_roots`, off in every other row: then `extra_ca_pem` is the only anchor) changes
//! neither outcome. Loopback only; every test is bounded by [`ROW_BOUND`].

mod common;

use std::future::Future;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use accessgate::{
    Access, Duration, Event, FailureDetail, Generation, NetFailure, SessionConfig, SessionEvent, Status,
    TlsFailure, TransientClass,
};
use accessgate_backend::{Backend, BackendConfig, Endpoint, TlsIdentity, TokenPair};
use accessgate_std::{AccessGate, GateClientConfig, Tokens};
use accessgate_tlskit::{Case, Flow, RogueServer, Scenario, SilentServer};
use common::{fast_session, Recorder, USER};

/// No test may take longer than this, whatever happens (a hang fails the row).
const ROW_BOUND: StdDuration = StdDuration::from_secs(30);
/// Refreshes each refused row waits for: the first at sign-in, the next ones at R11's retry
/// floor (100 ms, 200 ms later), so retries are shown to be refused as well.
const REFUSED_REFRESHES: usize = 3;
/// How long the refreshes a row waits for may take in all.
const REFRESH_WAIT: StdDuration = StdDuration::from_secs(15);
/// What the gate is told about the access token's life: inside the 60 s refresh skew, so the
/// refresh starts at sign-in, and longer than any row.
const EXPIRES_IN: StdDuration = StdDuration::from_secs(30);

/// Runs a test body with [`ROW_BOUND`].
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(ROW_BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("the row exceeded its {ROW_BOUND:?} bound"));
}

/// The harness' short timings with room for TLS on a busy machine: 2 s per check (budget 10 s),
/// 5 s per refresh, a 60 s refresh skew (R11), refresh retries 100 ms ×2 capped at 400 ms.
fn session() -> SessionConfig {
    let mut s = fast_session();
    s.gate.attempt_timeout = Duration::from_secs(2);
    s.gate.budget = Duration::from_secs(10);
    s.refresh_skew = Duration::from_secs(60);
    s.refresh_timeout = Duration::from_secs(5);
    s
}

/// A gate checking `check_url` and refreshing at `token_url`, trusting `anchors_pem` and the OS
/// roots only if `system_roots`.
fn gate_config(check_url: &str, token_url: &str, anchors_pem: &str, system_roots: bool) -> GateClientConfig {
    let mut c = GateClientConfig::new("https://localhost");
    c.check_url = check_url.to_string();
    c.token_url = token_url.to_string();
    c.session = session();
    c.extra_ca_pem = Some(anchors_pem.to_string());
    c.system_roots = system_roots;
    c.proxy_from_env = false;
    c.seed = Some(0x5eed);
    c
}

/// An HTTPS reference backend serving `identity`.
async fn https_backend(identity: TlsIdentity) -> Backend {
    Backend::start(BackendConfig {
        https_port: Some(0),
        tls_identity: Some(identity),
        ..BackendConfig::default()
    })
    .await
    .expect("backend starts")
}

/// `https://localhost:PORT/path` of `backend` (trusted peers are issued for `localhost`).
fn localhost_url(backend: &Backend, path: &str) -> String {
    let port = backend.https_addr().expect("https listener").port();
    format!("https://localhost:{port}{path}")
}

/// A signed-in gate: its event recorder (from before the sign-in) and the sign-in's status.
struct Lane {
    gate: AccessGate,
    rec: Recorder,
    signed_in: Status,
}

/// Spawns a gate for `cfg` and signs in with `access_token` (valid at the check endpoint) and
/// `refresh_token`, told they expire in [`EXPIRES_IN`], so the refresh starts at once.
async fn sign_in(cfg: GateClientConfig, access_token: &str, refresh_token: &str) -> Lane {
    let gate = AccessGate::spawn(cfg).expect("gate spawns");
    let rec = Recorder::new(&gate);
    let signed_in = gate
        .sign_in(Tokens::new(access_token, refresh_token, EXPIRES_IN))
        .await
        .expect("sign_in");
    Lane { gate, rec, signed_in }
}

fn ends_a_refresh(e: &SessionEvent) -> bool {
    matches!(
        e,
        SessionEvent::RefreshFailed { .. } | SessionEvent::Refreshed { .. } | SessionEvent::RefreshRejected
    )
}

impl Lane {
    /// Waits until `n` refreshes have ended, or one ended other than by a transient failure
    /// (refreshed or rejected: no further refresh is due, and a refused row's assertions then
    /// say what went wrong instead of a timeout).
    async fn refreshes_ended(&mut self, n: usize) {
        let mut ended = 0;
        if self.count(|e| ends_a_refresh(e) && !matches!(e, SessionEvent::RefreshFailed { .. })) > 0 {
            return;
        }
        while ended < n {
            let e = self.rec.next(REFRESH_WAIT, ends_a_refresh).await;
            if !matches!(e.event, SessionEvent::RefreshFailed { .. }) {
                return;
            }
            ended += 1;
        }
    }

    /// Class and detail of every `RefreshFailed` recorded.
    fn refresh_failures(&mut self) -> Vec<(TransientClass, FailureDetail)> {
        self.rec.poll();
        self.rec
            .seen
            .iter()
            .filter_map(|e| match e.event {
                SessionEvent::RefreshFailed { class, detail, .. } => Some((class, detail)),
                _ => None,
            })
            .collect()
    }

    /// How many recorded events satisfy `pred`.
    fn count(&mut self, pred: impl Fn(&SessionEvent) -> bool) -> usize {
        self.rec.poll();
        self.rec.seen.iter().filter(|e| pred(&e.event)).count()
    }

    /// Waits (at most [`REFRESH_WAIT`]) until an event satisfying `pred` has been recorded,
    /// whether it already was or is still to come.
    async fn wait_event(&mut self, pred: impl Fn(&SessionEvent) -> bool) {
        self.rec.poll();
        if !self.rec.seen.iter().any(|e| pred(&e.event)) {
            self.rec.next(REFRESH_WAIT, pred).await;
        }
    }

    /// The generation the first `Refreshed` moved to.
    fn refreshed_generation(&mut self) -> Option<Generation> {
        self.rec.poll();
        self.rec.seen.iter().find_map(|e| match e.event {
            SessionEvent::Refreshed { generation, .. } => Some(generation),
            _ => None,
        })
    }

    fn refreshed(&mut self) -> usize {
        self.count(|e| matches!(e, SessionEvent::Refreshed { .. }))
    }

    /// What the events say, for failure messages.
    fn describe(&mut self) -> String {
        self.rec.poll();
        let events: Vec<String> = self.rec.seen.iter().map(|e| format!("{:?}", e.event)).collect();
        format!(
            "events:\n  {}\nstatus: {:?}",
            events.join("\n  "),
            self.gate.status()
        )
    }

    /// A refused refresh lane, as the user sees it: the check granted at sign-in and still,
    /// at least [`REFUSED_REFRESHES`] refreshes started and every one failed as TLS with
    /// `detail`, shown as `text` (R13), also the status' last failure; none refreshed or was
    /// rejected; the session still signed in (R4: a TLS failure is transient).
    #[track_caller]
    fn assert_refused_by_tls(&mut self, detail: TlsFailure, text: &str) {
        let d = self.describe();
        assert_eq!(
            self.refreshed(),
            0,
            "no refresh may succeed: the refresh token reached the server (R14): {d}"
        );
        assert_eq!(
            self.count(|e| matches!(e, SessionEvent::RefreshRejected)),
            0,
            "no refresh may be answered: the refresh token reached the server (R14): {d}"
        );
        assert_eq!(
            self.signed_in.access,
            Access::Granted,
            "the check endpoint is healthy: {d}"
        );
        let failed = self.refresh_failures();
        assert!(
            failed.len() >= REFUSED_REFRESHES,
            "every refresh ended failed: {d}"
        );
        for &(class, got) in &failed {
            assert_eq!(class, TransientClass::Tls, "a TLS failure (R4, R14): {d}");
            assert_eq!(
                got,
                FailureDetail::Tls(detail),
                "the TLS step that failed (R13): {d}"
            );
        }
        assert_eq!(
            FailureDetail::Tls(detail).to_string(),
            text,
            "what an operator reads (R13)"
        );
        let started = self.count(|e| matches!(e, SessionEvent::RefreshStarted { .. }));
        assert!(started >= REFUSED_REFRESHES, "{d}");
        let status = self.gate.status();
        assert_eq!(status.access, Access::Granted, "access held by the check: {d}");
        assert!(status.signed_in, "{d}");
        let last = status
            .last_failure
            .expect("the refresh failure is recorded (R13)");
        assert_eq!(
            (last.class, last.detail),
            (TransientClass::Tls, FailureDetail::Tls(detail)),
            "{d}"
        );
    }
}

/// One certificate row: the token endpoint (a server of its own) serves `case`'s chain, the
/// check endpoint a well-formed certificate under the same anchor. Every refresh must fail
/// with `detail` (`text`) and the token server must see no request at all.
async fn token_endpoint_certificate_row(case: Case, detail: TlsFailure, text: &str) {
    let s: Scenario = case.scenario().expect("certificates generate");
    let check = https_backend(s.trusted_peer.clone().expect("a trusted peer for this case")).await;
    let tokens = https_backend(s.identity()).await;
    let pair = check.control().issue_token(USER, StdDuration::from_secs(3600));
    let token_port = tokens.https_addr().expect("https listener").port();
    let cfg = gate_config(
        &localhost_url(&check, Backend::check_path()),
        &s.url(token_port, Backend::token_path()),
        &s.trust_pem,
        false,
    );
    let started = StdInstant::now();
    let mut lane = sign_in(cfg, &pair.access_token, &pair.refresh_token).await;
    lane.refreshes_ended(REFUSED_REFRESHES).await;
    let took = started.elapsed();
    lane.assert_refused_by_tls(detail, text);
    lane.gate.shutdown().await;
    // R14: refused before any request, so the refresh token never left the client.
    let token_counts = tokens.control().counts();
    assert_eq!(
        token_counts.total(),
        0,
        "{case:?}: a request reached the token endpoint: {token_counts:?}"
    );
    assert!(
        check.control().counts().get(Endpoint::Check, 200) >= 1,
        "{case:?}: the healthy check endpoint answered"
    );
    eprintln!("{case:?}: {REFUSED_REFRESHES} refreshes refused in {took:?}");
    check.shutdown().await;
    tokens.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_an_expired_certificate_is_refused_and_no_refresh_token_sent() {
    bounded(token_endpoint_certificate_row(
        Case::Expired,
        TlsFailure::Expired,
        "certificate expired",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_not_yet_valid_certificate_is_refused_and_no_refresh_token_sent() {
    bounded(token_endpoint_certificate_row(
        Case::NotYetValid,
        TlsFailure::NotYetValid,
        "certificate not valid yet",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_wrong_name_is_refused_and_no_refresh_token_sent() {
    bounded(token_endpoint_certificate_row(
        Case::WrongName,
        TlsFailure::NameMismatch,
        "certificate not valid for this host name",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_whose_san_mismatches_despite_its_cn_is_refused_and_no_refresh_token_sent(
) {
    // The SAN decides; the adapter's common-name fallback applies only without a SAN.
    bounded(token_endpoint_certificate_row(
        Case::SanMismatchCnMatch,
        TlsFailure::NameMismatch,
        "certificate not valid for this host name",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_client_auth_only_leaf_is_refused_and_no_refresh_token_sent() {
    bounded(token_endpoint_certificate_row(
        Case::ClientAuthOnlyEku,
        TlsFailure::NotServerAuth,
        "certificate not valid for server authentication",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_whose_leaf_is_a_ca_is_refused_and_no_refresh_token_sent() {
    bounded(token_endpoint_certificate_row(
        Case::LeafIsCa,
        TlsFailure::CaUsedAsEndEntity,
        "CA certificate used as server certificate",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_chained_through_an_end_entity_is_refused_and_no_refresh_token_sent() {
    bounded(token_endpoint_certificate_row(
        Case::EndEntityAsIntermediate,
        TlsFailure::IssuerNotCa,
        "certificate issuer is not a CA",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_under_an_untrusted_ca_is_refused_and_no_refresh_token_sent() {
    // Same issuer name, another key: with one anchor of that name webpki reports the
    // candidate issuer's signature, as the device does.
    bounded(token_endpoint_certificate_row(
        Case::UntrustedCa,
        TlsFailure::BadSignature,
        "TLS signature did not verify",
    ))
    .await;
}

/// One rogue row: the token endpoint is the rogue server with `flow` and `case`'s chain, the
/// check endpoint the trusted peer. Every refresh's handshake must reach the rogue step and go
/// no further.
async fn token_endpoint_rogue_row(flow: Flow, case: Case, detail: TlsFailure, text: &str) {
    let s = case.scenario().expect("certificates generate");
    let peer = s.trusted_peer.clone().expect("a trusted peer");
    rogue_row(flow, &s, &s.key_pkcs8, peer, detail, text).await;
}

/// A rogue row with the parts given: the rogue token server runs `flow` with `s`'s chain and
/// signs with `key_pkcs8`; the check server serves `check_identity`; the gate trusts
/// `s.trust_pem` only.
async fn rogue_row(
    flow: Flow,
    s: &Scenario,
    key_pkcs8: &[u8],
    check_identity: TlsIdentity,
    detail: TlsFailure,
    text: &str,
) {
    let case = s.case;
    let check = https_backend(check_identity).await;
    let rogue = RogueServer::start(flow, s.chain.clone(), key_pkcs8).expect("rogue server starts");
    let pair = check.control().issue_token(USER, StdDuration::from_secs(3600));
    let cfg = gate_config(
        &localhost_url(&check, Backend::check_path()),
        &s.url(rogue.addr().port(), Backend::token_path()),
        &s.trust_pem,
        false,
    );
    let mut lane = sign_in(cfg, &pair.access_token, &pair.refresh_token).await;
    lane.refreshes_ended(REFUSED_REFRESHES).await;
    lane.gate.shutdown().await;
    let report = rogue.report();
    let d = lane.describe();
    assert!(
        report.server_hellos as usize >= REFUSED_REFRESHES,
        "{flow:?}/{case:?}: every refresh reached the rogue step: {report:?}\n{d}"
    );
    lane.assert_refused_by_tls(detail, text);
    assert_eq!(report.handshakes_completed, 0, "{flow:?}/{case:?}: {report:?}");
    assert_eq!(
        report.application_bytes, 0,
        "{flow:?}/{case:?}: application data (the refresh form) reached a rogue server: {report:?}"
    );
    assert!(!report.bearer_seen, "{flow:?}/{case:?}: {report:?}");
    assert_eq!(report.responses, 0, "{flow:?}/{case:?}: {report:?}");
    check.shutdown().await;
}

// rustls rejects a handshake message that comes out of order before it reaches the verifier;
// the adapter names the step the server skipped from what rustls expected (src/failure.rs),
// with the same details as the device (targets/embassy-host/tests/refresh_tls.rs).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_skipping_certificate_is_refused_and_no_refresh_token_sent() {
    bounded(token_endpoint_rogue_row(
        Flow::SkipCertificate,
        Case::ValidP256,
        TlsFailure::MissingCertificate,
        "server sent no certificate",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_skipping_certificate_verify_is_refused_and_no_refresh_token_sent()
{
    bounded(token_endpoint_rogue_row(
        Flow::SkipCertificateVerify,
        Case::ValidP256,
        TlsFailure::MissingCertificateVerify,
        "server did not prove its key (no CertificateVerify)",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_sending_certificate_verify_first_is_refused_and_no_refresh_token_sent(
) {
    bounded(token_endpoint_rogue_row(
        Flow::CertificateVerifyFirst,
        Case::ValidP256,
        TlsFailure::MissingCertificate,
        "server sent no certificate",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_rogue_token_endpoint_with_an_ed25519_signed_leaf_is_refused_and_no_refresh_token_sent()
{
    bounded(token_endpoint_rogue_row(
        Flow::WellBehaved,
        Case::Ed25519SignedLeaf,
        TlsFailure::UnsupportedAlgorithm,
        "unsupported signature algorithm",
    ))
    .await;
}

/// The token server presents the trusted chain (a copy of a real server's certificate) but
/// does not hold its key: its CertificateVerify is signed with another P-256 key. The chain
/// verifies; the handshake signature must not (R14: checked with the certificate's key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_copied_certificate_but_another_key_is_refused_and_no_refresh_token_sent(
) {
    bounded(async {
        let s = Case::ValidP256.scenario().expect("certificates generate");
        let other = Case::ValidP256.scenario().expect("certificates generate");
        assert_ne!(s.key_pkcs8, other.key_pkcs8, "two different keys");
        let peer = s.trusted_peer.clone().expect("a trusted peer");
        rogue_row(
            Flow::WellBehaved,
            &s,
            &other.key_pkcs8,
            peer,
            TlsFailure::BadSignature,
            "TLS signature did not verify",
        )
        .await;
    })
    .await;
}

/// The same on the pinning path: the pinned self-signed certificate, served by a server
/// without its key. The pin accepts the certificate (byte-identical); the handshake signature
/// is still checked with its key (src/tls.rs) and refuses the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_the_pinned_certificate_served_without_its_key_is_refused_and_no_refresh_token_sent() {
    bounded(async {
        let pinned = Case::SelfSignedPinned.scenario().expect("certificates generate");
        let other = Case::SelfSignedPinned.scenario().expect("certificates generate");
        assert_ne!(pinned.key_pkcs8, other.key_pkcs8, "two different keys");
        rogue_row(
            Flow::WellBehaved,
            &pinned,
            &other.key_pkcs8,
            pinned.identity(),
            TlsFailure::BadSignature,
            "TLS signature did not verify",
        )
        .await;
    })
    .await;
}

/// Control for the rogue rows: the rogue server's correct handshake is accepted on the
/// refresh lane and the refresh request reaches it (so "no application data" above can
/// fail). Its answer (`{"has_access":true}`) is no token response: the refresh fails, but
/// not as TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_the_rogue_server_with_a_correct_handshake_sends_the_refresh_request() {
    bounded(async {
        let s = Case::ValidP256.scenario().expect("certificates generate");
        let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
        let rogue =
            RogueServer::start(Flow::WellBehaved, s.chain.clone(), &s.key_pkcs8).expect("rogue starts");
        let pair = check.control().issue_token(USER, StdDuration::from_secs(3600));
        let cfg = gate_config(
            &localhost_url(&check, Backend::check_path()),
            &s.url(rogue.addr().port(), Backend::token_path()),
            &s.trust_pem,
            false,
        );
        let mut lane = sign_in(cfg, &pair.access_token, &pair.refresh_token).await;
        lane.refreshes_ended(1).await;
        lane.gate.shutdown().await;
        let report = rogue.report();
        let d = lane.describe();
        assert!(report.handshakes_completed >= 1, "{report:?}\n{d}");
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
        let failed = lane.refresh_failures();
        assert_eq!(failed.len(), 1, "{d}");
        assert_ne!(failed[0].0, TransientClass::Tls, "{d}");
        assert!(!matches!(failed[0].1, FailureDetail::Tls(_)), "{d}");
        assert_eq!(lane.refreshed(), 0, "{d}");
        check.shutdown().await;
    })
    .await;
}

/// Signs in at `backend` (serving both endpoints with `s`'s chain, reached as `s.url`), waits
/// for the refresh and for the refreshed token's check; asserts it is granted, with the token
/// endpoint answered once.
async fn refreshes_on_one_server(s: &Scenario) {
    let backend = https_backend(s.identity()).await;
    let pair = backend.control().issue_token(USER, StdDuration::from_secs(3600));
    let port = backend.https_addr().expect("https listener").port();
    let cfg = gate_config(
        &s.url(port, Backend::check_path()),
        &s.url(port, Backend::token_path()),
        &s.trust_pem,
        false,
    );
    let mut lane = sign_in(cfg, &pair.access_token, &pair.refresh_token).await;
    lane.refreshes_ended(1).await;
    let d = lane.describe();
    assert_eq!(lane.signed_in.access, Access::Granted, "{:?}: {d}", s.case);
    assert_eq!(lane.refreshed(), 1, "{:?}: {d}", s.case);
    assert!(lane.refresh_failures().is_empty(), "{:?}: {d}", s.case);
    // The new token's check (R3): the refreshed generation's first check settles, granted.
    let generation = lane.refreshed_generation().expect("refreshed");
    lane.wait_event(
        |e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { generation: g }) if *g == generation),
    )
    .await;
    let status = lane.gate.status();
    let d = lane.describe();
    assert_eq!(status.access, Access::Granted, "{:?}: {d}", s.case);
    assert!(status.signed_in, "{:?}: {d}", s.case);
    assert_eq!(status.generation, generation, "{:?}: {d}", s.case);
    lane.gate.shutdown().await;
    let counts = backend.control().counts();
    assert_eq!(
        counts.get(Endpoint::Token, 200),
        1,
        "{:?}: one refresh answered: {counts:?}",
        s.case
    );
    // The sign-in's own check may be superseded by the refresh before it is sent (R10); the
    // refreshed token's check is answered.
    assert!(
        counts.get(Endpoint::Check, 200) >= 1,
        "{:?}: {counts:?}\n{d}",
        s.case
    );
    backend.shutdown().await;
}

/// Control for the certificate rows: a valid chain on the token endpoint (here the same
/// reference backend as the check, so the new access token is one it knows) refreshes, and
/// the new token's check is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_a_valid_chain_refreshes_and_the_new_token_is_granted() {
    bounded(async {
        refreshes_on_one_server(&Case::ValidP256.scenario().expect("certificates generate")).await;
    })
    .await;
}

/// Every chain the check lane accepts (targets/cli/tests/tls_matrix.rs) is accepted on the
/// refresh lane too: P-384, RSA, Ed25519 (CA and leaf, and a leaf under a P-256 CA), an IP
/// SAN, SAN only, CN only (the adapter's fallback), an intermediate, and a pinned self-signed
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chain_the_check_lane_accepts_refreshes() {
    tokio::time::timeout(StdDuration::from_secs(60), async {
        for case in [
            Case::ValidP384,
            Case::ValidRsa,
            Case::ValidEd25519,
            Case::Ed25519LeafUnderP256Ca,
            Case::ByIpAddress,
            Case::SanOnly,
            Case::CnOnlyMixedCase,
            Case::ViaIntermediate,
            Case::SelfSignedPinned,
        ] {
            refreshes_on_one_server(&case.scenario().expect("certificates generate")).await;
        }
    })
    .await
    .expect("the accepted chains within 60 s");
}

/// Signs in at `check` with a pair it issued and refreshes at `tokens` with a pair that server
/// issued (the two reference backends share no state), trusting `anchors_pem`. Returns the
/// lane after the first refresh ended.
async fn two_servers(
    check: &Backend,
    tokens: &Backend,
    token_url: &str,
    anchors_pem: &str,
    system_roots: bool,
) -> (Lane, TokenPair) {
    let pair = check.control().issue_token(USER, StdDuration::from_secs(3600));
    let token_side = tokens.control().issue_token(USER, StdDuration::from_secs(3600));
    let cfg = gate_config(
        &localhost_url(check, Backend::check_path()),
        token_url,
        anchors_pem,
        system_roots,
    );
    let mut lane = sign_in(cfg, &pair.access_token, &token_side.refresh_token).await;
    lane.refreshes_ended(1).await;
    (lane, token_side)
}

/// Asserts the refresh at the separate token server `tokens` succeeded: one `Refreshed`, no
/// failure, the token server answered one refresh. The check server `check` does not know the
/// new access token (the two reference backends share no state): the refreshed token's check
/// reaches it and is answered 401, which ends the session (R8), and may supersede the sign-in's
/// own check (then the sign-in answers before any verdict).
async fn assert_refreshed_at(mut lane: Lane, check: &Backend, tokens: &Backend) {
    let d = lane.describe();
    assert_eq!(lane.refreshed(), 1, "{d}");
    assert!(lane.refresh_failures().is_empty(), "{d}");
    let generation = lane.refreshed_generation().expect("refreshed");
    lane.wait_event(|e| match e {
        SessionEvent::Gate(Event::FirstCheckSettled { generation: g }) => *g == generation,
        SessionEvent::Gate(Event::SessionEnded { .. }) => true,
        _ => false,
    })
    .await;
    lane.gate.shutdown().await;
    let d = lane.describe();
    let counts = tokens.control().counts();
    assert_eq!(counts.get(Endpoint::Token, 200), 1, "{counts:?}\n{d}");
    let counts = check.control().counts();
    assert!(
        counts.get(Endpoint::Check, 401) >= 1,
        "the refreshed token was checked: {counts:?}\n{d}"
    );
}

/// Control for the certificate rows in their own topology (check and token endpoint on two
/// servers, the check server's certificate the trusted peer): with a valid chain on the token
/// server the refresh request reaches it and is answered, so "no request reached the token
/// endpoint" above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_separate_token_server_with_a_valid_chain_reaches_it() {
    bounded(async {
        let s = Case::ValidP256.scenario().expect("certificates generate");
        let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
        let tokens = https_backend(s.identity()).await;
        let port = tokens.https_addr().expect("https").port();
        let (lane, _) = two_servers(
            &check,
            &tokens,
            &s.url(port, Backend::token_path()),
            &s.trust_pem,
            false,
        )
        .await;
        assert_refreshed_at(lane, &check, &tokens).await;
        check.shutdown().await;
        tokens.shutdown().await;
    })
    .await;
}

/// The pinning rows' setup: a self-signed certificate `pinned` (CA:TRUE, as `openssl req -x509`
/// makes it) is the only anchor (`extra_ca_pem`), served by the check server; the token server
/// serves `token_identity`.
async fn pinned_lane(
    pinned: &Scenario,
    token_identity: TlsIdentity,
    token_host: &str,
    system_roots: bool,
) -> (Lane, Backend, Backend) {
    let check = https_backend(pinned.identity()).await;
    let tokens = https_backend(token_identity).await;
    let port = tokens.https_addr().expect("https").port();
    let token_url = format!("https://{token_host}:{port}{}", Backend::token_path());
    let (lane, _) = two_servers(&check, &tokens, &token_url, &pinned.trust_pem, system_roots).await;
    (lane, check, tokens)
}

/// A refused pinning row (its first refresh already ended): the remaining refreshes end the
/// same way, as [`Lane::assert_refused_by_tls`] says, and the token server counted nothing.
async fn assert_pinned_row_refused(
    mut lane: Lane,
    check: Backend,
    tokens: Backend,
    detail: TlsFailure,
    text: &str,
) {
    lane.refreshes_ended(REFUSED_REFRESHES - 1).await;
    lane.assert_refused_by_tls(detail, text);
    lane.gate.shutdown().await;
    let counts = tokens.control().counts();
    assert_eq!(
        counts.total(),
        0,
        "a request reached the token endpoint: {counts:?}"
    );
    check.shutdown().await;
    tokens.shutdown().await;
}

/// R14 pinning on the refresh lane: the pinned self-signed certificate served by a separate
/// token server is accepted (the control of the next rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_the_pinned_self_signed_certificate_refreshes() {
    bounded(async {
        let pinned = Case::SelfSignedPinned.scenario().expect("certificates generate");
        let (lane, check, tokens) = pinned_lane(&pinned, pinned.identity(), "localhost", false).await;
        assert_refreshed_at(lane, &check, &tokens).await;
        check.shutdown().await;
        tokens.shutdown().await;
    })
    .await;
}

/// Another self-signed certificate for the same name is no pin: it goes to webpki, which
/// refuses a CA:TRUE certificate as a server's. No refresh token reaches that server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_token_endpoint_with_another_self_signed_certificate_is_refused_and_no_refresh_token_sent(
) {
    bounded(async {
        let pinned = Case::SelfSignedPinned.scenario().expect("certificates generate");
        let stranger = Case::SelfSignedPinned.scenario().expect("certificates generate");
        assert_ne!(pinned.chain, stranger.chain, "two different certificates");
        let (lane, check, tokens) = pinned_lane(&pinned, stranger.identity(), "localhost", false).await;
        assert_pinned_row_refused(
            lane,
            check,
            tokens,
            TlsFailure::CaUsedAsEndEntity,
            "CA certificate used as server certificate",
        )
        .await;
    })
    .await;
}

/// A pin is still matched against the URL's host (R14): the pinned certificate (SAN DNS
/// `localhost` only) reached as `https://127.0.0.1` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_the_pinned_certificate_under_another_host_name_is_refused_and_no_refresh_token_sent() {
    bounded(async {
        let pinned = Case::SelfSignedPinned.scenario().expect("certificates generate");
        let (lane, check, tokens) = pinned_lane(&pinned, pinned.identity(), "127.0.0.1", false).await;
        assert_pinned_row_refused(
            lane,
            check,
            tokens,
            TlsFailure::NameMismatch,
            "certificate not valid for this host name",
        )
        .await;
    })
    .await;
}

/// With the OS root store trusted as well (`system_roots: true`, the default outside tests) the
/// pin still refreshes, and another self-signed certificate is still refused: the OS roots add
/// no way around the pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_system_roots_as_well_the_pin_refreshes_and_a_stranger_is_still_refused() {
    bounded(async {
        let pinned = Case::SelfSignedPinned.scenario().expect("certificates generate");
        let (lane, check, tokens) = pinned_lane(&pinned, pinned.identity(), "localhost", true).await;
        assert_refreshed_at(lane, &check, &tokens).await;
        check.shutdown().await;
        tokens.shutdown().await;

        let stranger = Case::SelfSignedPinned.scenario().expect("certificates generate");
        let (lane, check, tokens) = pinned_lane(&pinned, stranger.identity(), "localhost", true).await;
        assert_pinned_row_refused(
            lane,
            check,
            tokens,
            TlsFailure::CaUsedAsEndEntity,
            "CA certificate used as server certificate",
        )
        .await;
    })
    .await;
}

/// A token endpoint that accepts the connection and never answers the ClientHello: the refresh
/// ends at its timeout (R4, bounded), as a timeout, and nothing is written after the hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_silent_token_endpoint_times_out_within_its_bound() {
    bounded(async {
        let s = Case::ValidP256.scenario().expect("certificates generate");
        let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
        let silent = SilentServer::start().expect("silent server listens");
        let port = silent.addr().port();
        let pair = check.control().issue_token(USER, StdDuration::from_secs(3600));
        let mut cfg = gate_config(
            &localhost_url(&check, Backend::check_path()),
            &s.url(port, Backend::token_path()),
            &s.trust_pem,
            false,
        );
        cfg.session.refresh_timeout = Duration::from_secs(1);
        let started = StdInstant::now();
        let mut lane = sign_in(cfg, &pair.access_token, &pair.refresh_token).await;
        lane.refreshes_ended(1).await;
        let took = started.elapsed();
        lane.gate.shutdown().await;
        let d = lane.describe();
        assert_eq!(lane.signed_in.access, Access::Granted, "{d}");
        assert_eq!(lane.gate.status().access, Access::Granted, "{d}");
        let failed = lane.refresh_failures();
        assert_eq!(
            failed.first(),
            Some(&(TransientClass::Timeout, FailureDetail::Net(NetFailure::Timeout))),
            "{d}"
        );
        assert_eq!(lane.refreshed(), 0, "{d}");
        assert!(
            took < StdDuration::from_secs(4),
            "bounded by the 1 s refresh timeout: took {took:?}"
        );
        let got = tokio::task::spawn_blocking(move || silent.received())
            .await
            .expect("reader");
        // One TLS record (the ClientHello, content type 22), and nothing of the form.
        assert_eq!(got.first(), Some(&22), "a TLS handshake record first: {got:?}");
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains(&pair.refresh_token) && !text.contains("grant_type"),
            "{text}"
        );
        check.shutdown().await;
    })
    .await;
}

/// A plain-HTTP server behind an `https://` token URL: no downgrade (R14). The handshake fails
/// as TLS and the server never receives a request it could read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_to_a_plain_http_server_behind_an_https_url_is_refused_as_tls() {
    bounded(async {
        let s = Case::ValidP256.scenario().expect("certificates generate");
        let check = https_backend(s.trusted_peer.clone().expect("a trusted peer")).await;
        let plain = Backend::start(BackendConfig::default())
            .await
            .expect("backend starts");
        let pair = check.control().issue_token(USER, StdDuration::from_secs(3600));
        let cfg = gate_config(
            &localhost_url(&check, Backend::check_path()),
            &s.url(plain.http_addr().port(), Backend::token_path()),
            &s.trust_pem,
            false,
        );
        let mut lane = sign_in(cfg, &pair.access_token, &pair.refresh_token).await;
        lane.refreshes_ended(REFUSED_REFRESHES).await;
        lane.gate.shutdown().await;
        lane.assert_refused_by_tls(TlsFailure::UnexpectedMessage, "unexpected TLS handshake message");
        let counts = plain.control().counts();
        assert_eq!(counts.endpoint_total(Endpoint::Token), 0, "{counts:?}");
        check.shutdown().await;
        plain.shutdown().await;
    })
    .await;
}
