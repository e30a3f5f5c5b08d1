//! TLS for the device: embedded-tls for the TLS 1.3 record layer and key schedule, with the
//! project's own verifier (R14).
//!
//! What the device verifies, on every https connection, before the first byte of the
//! request (the bearer token) is written:
//!
//! | check | how |
//! |---|---|
//! | chain to the configured trust anchor, intermediates in any order (up to 15) | rustls-webpki 0.103 path building |
//! | signatures on the chain: ECDSA P-256/P-384 with SHA-256/SHA-384 | RustCrypto `p256`/`p384` behind webpki's `SignatureVerificationAlgorithm` |
//! | every issuer is a CA (basicConstraints CA:TRUE, path length) | webpki |
//! | the leaf is not a CA (CA:TRUE leaf under a CA is refused) | webpki |
//! | extendedKeyUsage serverAuth on leaf and issuers, when present | webpki |
//! | keyUsage digitalSignature on the leaf, when present | this module (webpki ignores keyUsage) |
//! | host name: subjectAltName dNSName (case-insensitive, wildcards) or iPAddress for an IP URL; the CN only when the leaf has no subjectAltName | webpki; the CN fallback here |
//! | validity dates of every certificate, when a [`UnixClock`] is configured | webpki |
//! | a self-signed certificate given as the anchor is trusted as that exact certificate (pinning) | byte comparison |
//! | the CertificateVerify: ecdsa_secp256r1_sha256 or ecdsa_secp384r1_sha384 by the leaf's key over the transcript (RFC 8446 4.4.3) | this module |
//! | both the chain and the CertificateVerify were verified in this handshake | [`handshake::Verified`], checked before any write |
//!
//! What it cannot check, and what happens instead:
//! - **Dates without a clock.** With no [`UnixClock`] (or one that answers `None`), the
//!   chain is evaluated at the leaf's notBefore: issuers must have been valid when the leaf
//!   became valid, but an expired or not-yet-valid leaf is accepted. Give the device a clock
//!   (RTC, SNTP) to close this.
//! - **RSA and Ed25519.** RustCrypto's `rsa` needs an allocator, which this crate does not
//!   have, and no Ed25519 verifier is linked, so both are refused, not skipped: an RSA or
//!   Ed25519 trust anchor is a configuration error (`ConfigError::UnsupportedCa`), an RSA or
//!   Ed25519 key or signature anywhere in the chain or the CertificateVerify is a TLS failure
//!   (`TlsFailure::UnsupportedAlgorithm`, detail "unsupported signature algorithm"). The
//!   ClientHello offers no RSA signature scheme, so a server whose own key is RSA usually ends
//!   the handshake with an alert before its Certificate (rustls: ServerHello, then a sealed
//!   `handshake_failure` alert): a TLS failure too, `TlsFailure::AlertReceived`, detail "TLS
//!   alert from the server", the desktop's words for a server's alert. embedded-tls drops a
//!   sealed alert as an invalid record; the adapter notes which record it was, so the detail
//!   is not "unexpected TLS handshake message" (which would point at a protocol bug).
//! - **Revocation.** No CRL or OCSP (a device has no way to fetch them in time).
//! - **TLS 1.2, other suites.** Only TLS 1.3 with TLS_AES_128_GCM_SHA256 and the P-256 key
//!   exchange (embedded-tls); a server without them fails the handshake.
//! - **One trust anchor** per driver.
//! - **Plaintext handshake records.** embedded-tls 0.19 processes handshake records that
//!   arrive unencrypted after the ServerHello (found by the `server_flight` fuzz target; RFC
//!   8446 requires them encrypted). This does not weaken the proof: the CertificateVerify
//!   must still be signed by the verified leaf over this handshake's transcript, and the
//!   Finished still needs the keys of this handshake.

mod algs;
mod der;
pub mod handshake;
pub(crate) mod records;
pub mod verify;

#[cfg(test)]
mod tests;

/// Re-exported from the crate root, where it exists with and without the `tls` feature.
pub use crate::config::UnixClock;

pub use crate::failure::TlsFailure;
