//! What exactly went wrong in a transient failure (R13).
//!
//! A [`TransientClass`] says which kind of failure a check or a token refresh had; a
//! [`FailureDetail`] says precisely what, so an operator can tell "certificate expired" from
//! "unknown issuer" from "HTTP 503" from "connection refused" without a debugger. Both are
//! small `Copy` values (no allocation, no strings from the network): adapters fill the detail
//! from what their HTTP and TLS stacks report, [`classify`](fn@crate::classify) and
//! [`classify_refresh`](crate::classify_refresh) fill it for statuses and bodies, the events
//! carry it ([`Event::CheckFailed`](crate::Event::CheckFailed),
//! [`SessionEvent::RefreshFailed`](crate::SessionEvent::RefreshFailed)), and the gate keeps
//! the last one in [`Status::last_failure`](crate::Status::last_failure).

use core::fmt;

use crate::classify::{BodyError, TransientClass};
use crate::time::Instant;

/// The detail of one transient failure (R13).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum FailureDetail {
    /// Nothing beyond the [`TransientClass`].
    #[default]
    None,
    /// The server answered with this HTTP status (403, 429, 5xx, 404, ...).
    Status(u16),
    /// A `200` whose body failed R1.
    Body(BodyError),
    /// The TLS handshake or the server's certificate failed (R14).
    Tls(TlsFailure),
    /// The transport failed.
    Net(NetFailure),
}

/// Why a TLS handshake failed (R14). Both platforms map their TLS stack's errors to these.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum TlsFailure {
    /// The chain does not lead to a configured trust anchor.
    UnknownIssuer,
    /// A certificate in the chain has expired.
    Expired,
    /// A certificate in the chain is not valid yet.
    NotYetValid,
    /// The server certificate is not valid for the host name or IP address of the URL.
    NameMismatch,
    /// A CA certificate was presented as the server certificate.
    CaUsedAsEndEntity,
    /// An issuer in the chain is not a CA (basicConstraints), e.g. an end-entity certificate
    /// used as an intermediate.
    IssuerNotCa,
    /// The server certificate's keyUsage / extendedKeyUsage does not allow server
    /// authentication.
    NotServerAuth,
    /// A certificate or handshake signature did not verify.
    BadSignature,
    /// A signature or key algorithm this build does not support (e.g. RSA on a device build
    /// without it).
    UnsupportedAlgorithm,
    /// A certificate could not be parsed or uses something unsupported.
    BadCertificate,
    /// The server finished the handshake without sending a certificate.
    MissingCertificate,
    /// The server finished the handshake without proving it holds the certificate's key.
    MissingCertificateVerify,
    /// A handshake message arrived out of order or was not expected.
    UnexpectedMessage,
    /// The server sent a TLS alert.
    AlertReceived,
    /// Any other handshake or record-layer failure (decode errors, unsupported parameters).
    HandshakeFailure,
}

/// Why the transport failed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum NetFailure {
    /// The server refused the connection.
    Refused,
    /// No route to the server, or the network is down.
    Unreachable,
    /// The host name did not resolve.
    DnsFailed,
    /// The connection was reset.
    Reset,
    /// The connection closed before a complete response arrived.
    Closed,
    /// The body was shorter than the server announced.
    Truncated,
    /// The status line, the headers or the chunked framing were malformed.
    BadFraming,
    /// The response head did not fit the receive buffer.
    HeadTooLarge,
    /// The attempt did not finish within the per-attempt timeout.
    Timeout,
    /// Any other transport failure.
    Other,
}

/// The last transient failure of a session, as [`Status`](crate::Status) shows it (R13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LastFailure {
    /// Its class.
    pub class: TransientClass,
    /// Its detail.
    pub detail: FailureDetail,
    /// When it was reported to the gate.
    pub at: Instant,
}

impl fmt::Display for FailureDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureDetail::None => f.write_str("no detail"),
            FailureDetail::Status(code) => write!(f, "HTTP {code}"),
            FailureDetail::Body(e) => fmt::Display::fmt(e, f),
            FailureDetail::Tls(e) => fmt::Display::fmt(e, f),
            FailureDetail::Net(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFailure::UnknownIssuer => "certificate: unknown issuer",
            TlsFailure::Expired => "certificate expired",
            TlsFailure::NotYetValid => "certificate not valid yet",
            TlsFailure::NameMismatch => "certificate not valid for this host name",
            TlsFailure::CaUsedAsEndEntity => "CA certificate used as server certificate",
            TlsFailure::IssuerNotCa => "certificate issuer is not a CA",
            TlsFailure::NotServerAuth => "certificate not valid for server authentication",
            TlsFailure::BadSignature => "TLS signature did not verify",
            TlsFailure::UnsupportedAlgorithm => "unsupported signature algorithm",
            TlsFailure::BadCertificate => "certificate malformed or unsupported",
            TlsFailure::MissingCertificate => "server sent no certificate",
            TlsFailure::MissingCertificateVerify => "server did not prove its key (no CertificateVerify)",
            TlsFailure::UnexpectedMessage => "unexpected TLS handshake message",
            TlsFailure::AlertReceived => "TLS alert from the server",
            TlsFailure::HandshakeFailure => "TLS handshake failed",
        })
    }
}

impl fmt::Display for NetFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetFailure::Refused => "connection refused",
            NetFailure::Unreachable => "network unreachable",
            NetFailure::DnsFailed => "host name did not resolve",
            NetFailure::Reset => "connection reset",
            NetFailure::Closed => "connection closed before the response was complete",
            NetFailure::Truncated => "body shorter than announced",
            NetFailure::BadFraming => "malformed HTTP framing",
            NetFailure::HeadTooLarge => "response head too large",
            NetFailure::Timeout => "attempt timed out",
            NetFailure::Other => "transport error",
        })
    }
}

impl FailureDetail {
    /// The detail a class implies when an adapter has nothing more precise.
    pub const fn of_class(class: TransientClass) -> FailureDetail {
        match class {
            TransientClass::Timeout => FailureDetail::Net(NetFailure::Timeout),
            TransientClass::Dns => FailureDetail::Net(NetFailure::DnsFailed),
            TransientClass::Forbidden => FailureDetail::Status(403),
            TransientClass::Throttled => FailureDetail::Status(429),
            _ => FailureDetail::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_small_and_readable() {
        assert!(core::mem::size_of::<FailureDetail>() <= 4);
        assert_eq!(
            std::format!("{}", FailureDetail::Tls(TlsFailure::Expired)),
            "certificate expired"
        );
        assert_eq!(std::format!("{}", FailureDetail::Status(503)), "HTTP 503");
        assert_eq!(
            std::format!("{}", FailureDetail::Net(NetFailure::Refused)),
            "connection refused"
        );
    }

    #[test]
    fn a_class_alone_implies_the_detail_it_names() {
        // R13: with nothing more precise from the adapter, the class still says what it can.
        use TransientClass as C;
        assert_eq!(
            FailureDetail::of_class(C::Timeout),
            FailureDetail::Net(NetFailure::Timeout)
        );
        assert_eq!(
            FailureDetail::of_class(C::Dns),
            FailureDetail::Net(NetFailure::DnsFailed)
        );
        assert_eq!(FailureDetail::of_class(C::Forbidden), FailureDetail::Status(403));
        assert_eq!(FailureDetail::of_class(C::Throttled), FailureDetail::Status(429));
        assert_eq!(FailureDetail::of_class(C::ServerError), FailureDetail::None);
    }
}
