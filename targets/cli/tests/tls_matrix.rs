//! The R14 TLS acceptance matrix against `accessgate check` (desktop: rustls, webpki and the
//! adapter's pinning verifier). Certificates are generated per test by `accessgate-tlskit`;
//! the well-formed rows are served by the reference backend, the rogue rows by the tlskit's
//! hand-written TLS 1.3 server. The device binary runs the same rows in
//! `targets/embassy-host/tests/tls_matrix.rs`.

use accessgate_tlskit::matrix::{certificate_case, rogue_case};
use accessgate_tlskit::{Case, Expect, Flow};

const BIN: &str = env!("CARGO_BIN_EXE_accessgate");

macro_rules! certificate_rows {
    ($($name:ident: $case:ident => $expect:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            certificate_case(BIN, Case::$case, Expect::$expect).await;
        }
    )*};
}

certificate_rows! {
    valid_p256_chain_is_granted: ValidP256 => Granted;
    valid_p384_chain_is_granted: ValidP384 => Granted;
    valid_rsa_chain_is_granted: ValidRsa => Granted;
    valid_ed25519_chain_is_granted: ValidEd25519 => Granted;
    ed25519_leaf_under_a_p256_ca_is_granted: Ed25519LeafUnderP256Ca => Granted;
    rsa_leaf_under_a_p256_ca_is_granted: RsaLeafUnderP256Ca => Granted;
    ip_address_url_matches_the_ip_san_and_is_granted: ByIpAddress => Granted;
    name_only_in_the_san_is_granted: SanOnly => Granted;
    cn_without_san_matches_case_insensitively_and_is_granted: CnOnlyMixedCase => Granted;
    chain_of_three_via_an_intermediate_is_granted: ViaIntermediate => Granted;
    self_signed_ca_true_certificate_given_as_ca_is_pinned_and_granted: SelfSignedPinned => Granted;
    expired_leaf_is_refused_and_no_token_sent: Expired => Refused;
    not_yet_valid_leaf_is_refused_and_no_token_sent: NotYetValid => Refused;
    wrong_name_is_refused_and_no_token_sent: WrongName => Refused;
    san_mismatch_with_matching_cn_is_refused_and_no_token_sent: SanMismatchCnMatch => Refused;
    client_auth_only_eku_is_refused_and_no_token_sent: ClientAuthOnlyEku => Refused;
    leaf_with_ca_true_under_a_ca_is_refused_and_no_token_sent: LeafIsCa => Refused;
    end_entity_used_as_intermediate_is_refused_and_no_token_sent: EndEntityAsIntermediate => Refused;
    untrusted_ca_with_the_same_name_is_refused_and_no_token_sent: UntrustedCa => Refused;
}

/// The rogue server's correct handshake is accepted and answered: the rogue rows below
/// differ from it only by the step they skip or reorder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_server_well_behaved_handshake_is_granted() {
    rogue_case(BIN, Flow::WellBehaved, Case::ValidP256, Expect::Granted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_server_skipping_certificate_is_refused_and_no_token_sent() {
    rogue_case(BIN, Flow::SkipCertificate, Case::ValidP256, Expect::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_server_skipping_certificate_verify_is_refused_and_no_token_sent() {
    rogue_case(BIN, Flow::SkipCertificateVerify, Case::ValidP256, Expect::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_server_sending_certificate_verify_first_is_refused_and_no_token_sent() {
    rogue_case(
        BIN,
        Flow::CertificateVerifyFirst,
        Case::ValidP256,
        Expect::Refused,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_server_with_an_ed25519_signed_leaf_under_a_p256_ca_is_refused_and_no_token_sent() {
    rogue_case(BIN, Flow::WellBehaved, Case::Ed25519SignedLeaf, Expect::Refused).await;
}

/// R13, parity with the device: a sealed `handshake_failure` alert right after the ServerHello
/// (what rustls sends a device that offers no RSA signature scheme) is named "TLS alert from
/// the server" on both platforms (`targets/embassy-host/tests/tls_matrix.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_server_alerting_after_server_hello_is_named_an_alert_and_no_token_sent() {
    rogue_case(
        BIN,
        Flow::AlertAfterServerHello,
        Case::ValidP256,
        Expect::RefusedWithDetail("TLS alert from the server"),
    )
    .await;
}
