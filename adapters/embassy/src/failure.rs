//! What went wrong in one exchange, in the core's terms: a [`TransientClass`] (R4) and the
//! detail an operator needs (R13).
//!
//! `TlsFailure` and `NetFailure` are local until the core's failure-detail types land;
//! their variants are the core's.

use accessgate::TransientClass;

/// Why a TLS handshake was refused (R13 detail, R14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TlsFailure {
    /// No path to the trust anchor.
    UnknownIssuer,
    /// A certificate's notAfter is past.
    Expired,
    /// A certificate's notBefore is in the future.
    NotYetValid,
    /// The host matches neither the subjectAltName nor (without SAN) the CN.
    NameMismatch,
    /// The leaf is a CA certificate.
    CaUsedAsEndEntity,
    /// An issuer is not a CA (or its path length is exceeded).
    IssuerNotCa,
    /// keyUsage / extendedKeyUsage do not allow server authentication.
    NotServerAuth,
    /// A signature (chain or CertificateVerify) does not verify.
    BadSignature,
    /// An algorithm the device cannot check (RSA, Ed25519, other curves).
    UnsupportedAlgorithm,
    /// A certificate that does not parse or has an unsupported extension or version.
    UnsupportedCertificate,
    /// The server sent no Certificate.
    MissingCertificate,
    /// The server sent no CertificateVerify.
    MissingCertificateVerify,
    /// A handshake message out of order or repeated.
    UnexpectedMessage,
    /// The server sent an alert.
    AlertReceived,
    /// Protocol, decoding or other handshake failure.
    HandshakeFailure,
    /// The configured trust anchor is unusable.
    NoTrustAnchor,
}

/// Why the transport failed (R13 detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NetFailure {
    /// Connection refused.
    Refused,
    /// Host or network unreachable.
    Unreachable,
    /// Connection reset.
    Reset,
    /// EOF before a full response.
    Closed,
    /// Body shorter than announced.
    Truncated,
    /// Status line, headers or chunked framing broken.
    BadFraming,
    /// Response head larger than the buffer.
    HeadTooLarge,
    /// Timed out.
    Timeout,
    /// The host name did not resolve.
    DnsFailed,
    /// Anything else.
    Other,
}

/// Detail of a failed exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) enum Detail {
    Tls(TlsFailure),
    Net(NetFailure),
}

/// A failed exchange: its class (R4) and detail (R13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub class: TransientClass,
    pub detail: Detail,
}

impl Failure {
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub fn tls(f: TlsFailure) -> Self {
        Failure {
            class: TransientClass::Tls,
            detail: Detail::Tls(f),
        }
    }

    pub fn net(class: TransientClass, f: NetFailure) -> Self {
        Failure {
            class,
            detail: Detail::Net(f),
        }
    }
}
