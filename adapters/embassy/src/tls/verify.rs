//! The server's identity, checked (R14): the certificate chain against the configured trust
//! anchor, and the CertificateVerify signature with the leaf's key.
//!
//! Pure functions over bytes (no embedded-tls types), so the fuzz target and the unit tests
//! reach them directly; [`super::handshake`] calls them from inside the TLS handshake.

use core::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::algs::{self, Curve, Hash};
use super::der::{self, PublicKey};
use super::TlsFailure;

/// Most certificates a server may send (leaf + intermediates); embedded-tls parses at most
/// 16 entries of one Certificate message.
pub const MAX_CHAIN: usize = 16;

/// Longest SEC1 point kept for the CertificateVerify check (uncompressed P-384).
const MAX_POINT: usize = 97;

/// The leaf's public key, kept from the Certificate message until the CertificateVerify
/// arrives (the record holding the certificate is gone by then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafKey {
    curve: Curve,
    point: heapless::Vec<u8, MAX_POINT>,
}

/// The TLS 1.3 signature schemes the device accepts in a CertificateVerify (RFC 8446
/// 4.2.3 code points); anything else is refused.
pub const ECDSA_SECP256R1_SHA256: u16 = 0x0403;
/// See [`ECDSA_SECP256R1_SHA256`].
pub const ECDSA_SECP384R1_SHA384: u16 = 0x0503;

/// Checks the server's certificate chain (`chain[0]` is the leaf, then intermediates in any
/// order) for `host` against `anchor_der`, as R14 asks:
///
/// - `chain[0]` byte-equal to the anchor: a **pinned** certificate (a self-signed server
///   certificate given as the trust anchor, CA:TRUE or not). Its key must be ECDSA P-256/P-384,
///   keyUsage (if present) must allow digitalSignature, the name must match, and the dates
///   are checked when `now` is known. No path is built.
/// - otherwise rustls-webpki builds a path to the anchor through the intermediates:
///   signatures (ECDSA P-256/P-384 with SHA-256/384), basicConstraints CA:TRUE and path
///   length on every issuer (a CA:TRUE leaf and an end-entity used as an issuer are refused),
///   extendedKeyUsage serverAuth where present, validity periods. On top of webpki: keyUsage
///   must allow digitalSignature where present (webpki ignores keyUsage), and the leaf key
///   must be ECDSA P-256 or P-384 (the CertificateVerify is checked with it).
/// - name: DNS names against subjectAltName dNSName entries (case-insensitive, wildcards in
///   the leftmost label), IP addresses against iPAddress entries. Only when the leaf has no
///   subjectAltName extension at all is the host compared (ASCII case-insensitively,
///   exactly, no wildcards) with the subject's last commonName.
/// - time: `now` (Unix seconds) when the device knows it. Without a clock the chain is
///   evaluated at the leaf's notBefore: every issuer must have been valid when the leaf's
///   validity began, and a leaf whose notBefore is after its notAfter is refused, but an
///   expired or not-yet-valid leaf cannot be told apart and is accepted.
///
/// Returns the leaf's key for [`verify_certificate_verify`]. Bounded work: webpki caps
/// path building (signature checks and build calls); the DER reader is linear.
pub fn verify_server_chain(
    anchor_der: &[u8],
    chain: &[&[u8]],
    host: &str,
    now: Option<u64>,
) -> Result<LeafKey, TlsFailure> {
    let (&leaf_der, intermediates) = chain.split_first().ok_or(TlsFailure::MissingCertificate)?;
    if chain.len() > MAX_CHAIN {
        return Err(TlsFailure::BadCertificate);
    }
    let fields = der::cert_fields(leaf_der).ok_or(TlsFailure::BadCertificate)?;
    let key = match fields.key {
        PublicKey::P256(p) => (Curve::P256, p),
        PublicKey::P384(p) => (Curve::P384, p),
        // RSA, Ed25519, other curves: the CertificateVerify could not be checked (R14).
        PublicKey::Unsupported => return Err(TlsFailure::UnsupportedAlgorithm),
    };
    // R14: keyUsage on the leaf, when present, must allow signing the handshake.
    if fields.key_usage_digital_signature == Some(false) {
        return Err(TlsFailure::NotServerAuth);
    }
    let leaf_cert = CertificateDer::from(leaf_der);
    let leaf = EndEntityCert::try_from(&leaf_cert).map_err(map_webpki)?;

    if leaf_der == anchor_der {
        // Pinned (R14): trusted as that exact certificate; dates when the time is known.
        if let Some(now) = now {
            if now < fields.not_before {
                return Err(TlsFailure::NotYetValid);
            }
            if now > fields.not_after {
                return Err(TlsFailure::Expired);
            }
        }
    } else {
        let anchor_cert = CertificateDer::from(anchor_der);
        // Validated when the driver was built; an anchor that does not parse gives no path.
        let anchor = webpki::anchor_from_trusted_cert(&anchor_cert).map_err(|_| TlsFailure::UnknownIssuer)?;
        let mut inter: heapless::Vec<CertificateDer<'_>, MAX_CHAIN> = heapless::Vec::new();
        for &der in intermediates {
            inter
                .push(CertificateDer::from(der))
                .map_err(|_| TlsFailure::BadCertificate)?;
        }
        // Without a clock: as of the leaf's notBefore (see above).
        let at = UnixTime::since_unix_epoch(Duration::from_secs(now.unwrap_or(fields.not_before)));
        leaf.verify_for_usage(
            algs::ALL,
            &[anchor],
            &inter,
            at,
            KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(map_webpki)?;
    }

    check_name(&leaf, &fields, host)?;

    let point = heapless::Vec::from_slice(key.1).map_err(|_| TlsFailure::BadCertificate)?;
    Ok(LeafKey { curve: key.0, point })
}

/// Matches `host` (a URL host: DNS name or IP literal, IPv6 with or without brackets).
fn check_name(leaf: &EndEntityCert<'_>, fields: &der::CertFields<'_>, host: &str) -> Result<(), TlsFailure> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if !fields.has_san {
        // R14: the common name only when there is no subjectAltName.
        return match fields.common_name {
            Some(cn) if cn.eq_ignore_ascii_case(bare.as_bytes()) => Ok(()),
            _ => Err(TlsFailure::NameMismatch),
        };
    }
    // Parses IP literals (v4 and v6) as IP addresses, anything else as a DNS name.
    let name = ServerName::try_from(bare).map_err(|_| TlsFailure::NameMismatch)?;
    leaf.verify_is_valid_for_subject_name(&name)
        .map_err(|_| TlsFailure::NameMismatch)
}

/// Checks a TLS 1.3 server CertificateVerify (RFC 8446 4.4.3): `signature` (DER ECDSA) by
/// the leaf's key over 64 spaces, the context string "TLS 1.3, server CertificateVerify", a
/// zero byte and `transcript_hash` (the handshake hash up to and including the Certificate
/// message). `scheme` must be one of the ECDSA schemes above and match the key's curve.
pub fn verify_certificate_verify(
    key: &LeafKey,
    scheme: u16,
    transcript_hash: &[u8],
    signature: &[u8],
) -> Result<(), TlsFailure> {
    const CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";
    let (curve, hash) = match scheme {
        ECDSA_SECP256R1_SHA256 => (Curve::P256, Hash::Sha256),
        ECDSA_SECP384R1_SHA384 => (Curve::P384, Hash::Sha384),
        _ => return Err(TlsFailure::UnsupportedAlgorithm),
    };
    if curve != key.curve {
        return Err(TlsFailure::UnsupportedAlgorithm);
    }
    let mut msg = [0x20u8; 64 + CONTEXT.len() + 48];
    let end = 64 + CONTEXT.len() + transcript_hash.len();
    let tail = msg.get_mut(64..end).ok_or(TlsFailure::HandshakeFailure)?;
    tail[..CONTEXT.len()].copy_from_slice(CONTEXT);
    tail[CONTEXT.len()..].copy_from_slice(transcript_hash);
    if algs::verify(curve, hash, &key.point, &msg[..end], signature) {
        Ok(())
    } else {
        Err(TlsFailure::BadSignature)
    }
}

/// Why a certificate cannot be the trust anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnchorError {
    /// Not an X.509 certificate in DER.
    Invalid,
    /// Its key is not ECDSA P-256/P-384 (RSA, Ed25519, other curves): the device could not
    /// check the signatures it makes (R14: refused rather than skipped).
    Unsupported,
}

/// Whether a DER certificate can serve as the trust anchor: it parses, and its key is
/// ECDSA P-256/P-384 (the only keys whose signatures the device checks). Checked when a
/// driver is built, so a wrong CA is a configuration error, not a failure at every attempt.
pub fn check_trust_anchor(anchor_der: &[u8]) -> Result<(), AnchorError> {
    let cert = CertificateDer::from(anchor_der);
    webpki::anchor_from_trusted_cert(&cert).map_err(|_| AnchorError::Invalid)?;
    match der::cert_fields(anchor_der).map(|f| f.key) {
        Some(PublicKey::P256(_) | PublicKey::P384(_)) => Ok(()),
        Some(PublicKey::Unsupported) => Err(AnchorError::Unsupported),
        None => Err(AnchorError::Invalid),
    }
}

fn map_webpki(e: webpki::Error) -> TlsFailure {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => TlsFailure::UnknownIssuer,
        E::CertExpired { .. } => TlsFailure::Expired,
        E::CertNotValidYet { .. } => TlsFailure::NotYetValid,
        E::CertNotValidForName(_) => TlsFailure::NameMismatch,
        E::CaUsedAsEndEntity => TlsFailure::CaUsedAsEndEntity,
        E::EndEntityUsedAsCa | E::PathLenConstraintViolated => TlsFailure::IssuerNotCa,
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => TlsFailure::NotServerAuth,
        E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => TlsFailure::BadSignature,
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => TlsFailure::UnsupportedAlgorithm,
        _ => TlsFailure::BadCertificate,
    }
}
