//! Transport and TLS errors (reqwest, hyper, rustls, webpki, `std::io`) as the core's
//! [`TransientClass`] and [`FailureDetail`] (R13): an operator reads "certificate: unknown
//! issuer", "connection refused" or "body shorter than announced", not "error sending
//! request".
//!
//! reqwest wraps what went wrong several layers deep (reqwest → hyper-util → hyper or
//! `io::Error` → rustls → webpki), so the mapping walks the `source()` chain, stepping into
//! `io::Error`s whose `source()` skips the error they wrap.

use std::error::Error as StdError;
use std::io;

use accessgate::{FailureDetail, NetFailure, TlsFailure, TransientClass};
use rustls::{CertificateError, Error as TlsError, HandshakeType};

/// How many links of an error chain are looked at: chains are short, but a hostile cycle
/// must not spin (R12).
const MAX_CHAIN: usize = 32;

/// The class and detail of a failed reqwest request (R4, R13), as the gate reports them.
/// Public so an app that makes its own requests with reqwest (the CLI's token issuing)
/// names failures the same way.
pub fn transport_failure(err: &reqwest::Error) -> (TransientClass, FailureDetail) {
    let mut io_kind = None;
    let mut dns = false;
    let mut hyper_detail = None;
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    for _ in 0..MAX_CHAIN {
        let Some(e) = next else { break };
        if let Some(tls) = e.downcast_ref::<TlsError>() {
            return (TransientClass::Tls, FailureDetail::Tls(tls_failure(tls)));
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            hyper_detail = hyper_detail.or_else(|| hyper_failure(h));
        }
        // hyper-util's connector reports resolver failures as "dns error".
        if e.to_string().starts_with("dns error") {
            dns = true;
        }
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => {
                if io.kind() != io::ErrorKind::Other {
                    io_kind.get_or_insert(io.kind());
                }
                // io::Error::source() skips the error it wraps (tokio-rustls wraps the
                // rustls::Error in two io::Errors): step into it instead.
                io.get_ref().map(|inner| inner as &(dyn StdError + 'static))
            }
            None => e.source(),
        };
    }
    if err.is_timeout() || io_kind == Some(io::ErrorKind::TimedOut) {
        return (TransientClass::Timeout, FailureDetail::Net(NetFailure::Timeout));
    }
    if dns {
        return (TransientClass::Dns, FailureDetail::Net(NetFailure::DnsFailed));
    }
    let net = |n| FailureDetail::Net(n);
    let body = err.is_body() || err.is_decode();
    match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => (TransientClass::Connect, net(NetFailure::Refused)),
        Some(
            io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable,
        ) => (TransientClass::Connect, net(NetFailure::Unreachable)),
        Some(
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe,
        ) => {
            let class = if err.is_connect() {
                TransientClass::Connect
            } else {
                TransientClass::Io
            };
            (class, net(NetFailure::Reset))
        }
        // While reading a body, hyper reports "end of file before message length reached"
        // as UnexpectedEof and a bad chunk-size line as InvalidInput.
        Some(io::ErrorKind::UnexpectedEof) if body => (TransientClass::Io, net(NetFailure::Truncated)),
        Some(io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData) if body => {
            (TransientClass::Io, net(NetFailure::BadFraming))
        }
        Some(io::ErrorKind::UnexpectedEof) => (
            TransientClass::Io,
            hyper_detail.unwrap_or(net(NetFailure::Closed)),
        ),
        // A connect-phase failure we cannot name more precisely.
        _ if err.is_connect() => (TransientClass::Connect, net(NetFailure::Other)),
        _ => (TransientClass::Io, hyper_detail.unwrap_or(net(NetFailure::Other))),
    }
}

/// What hyper says about a response it could not read.
fn hyper_failure(e: &hyper::Error) -> Option<FailureDetail> {
    // `is_parse_too_large` exists only with hyper's server feature; its message says it.
    let n = if e.is_parse() && e.to_string().contains("too large") {
        NetFailure::HeadTooLarge
    } else if e.is_parse() || e.is_parse_status() {
        NetFailure::BadFraming
    } else if e.is_incomplete_message() {
        NetFailure::Closed
    } else if e.is_timeout() {
        NetFailure::Timeout
    } else {
        // Body errors: hyper's "unexpected EOF during chunk size line" and friends have
        // no predicate of their own; the io::Error kind beneath tells more.
        return None;
    };
    Some(FailureDetail::Net(n))
}

/// A rustls error as the reason a handshake failed (R14).
pub(crate) fn tls_failure(e: &TlsError) -> TlsFailure {
    match e {
        TlsError::InvalidCertificate(c) => certificate_failure(c),
        // R13/R14: name the step the server skipped, as the device does: its Certificate (or
        // a CertificateVerify before it), or the CertificateVerify proving its key.
        TlsError::InappropriateHandshakeMessage { expect_types, .. }
            if expect_types.contains(&HandshakeType::Certificate) =>
        {
            TlsFailure::MissingCertificate
        }
        TlsError::InappropriateHandshakeMessage { expect_types, .. }
            if expect_types.contains(&HandshakeType::CertificateVerify) =>
        {
            TlsFailure::MissingCertificateVerify
        }
        TlsError::InappropriateMessage { .. }
        | TlsError::InappropriateHandshakeMessage { .. }
        | TlsError::InvalidMessage(_) => TlsFailure::UnexpectedMessage,
        TlsError::NoCertificatesPresented => TlsFailure::MissingCertificate,
        TlsError::AlertReceived(_) => TlsFailure::AlertReceived,
        _ => TlsFailure::HandshakeFailure,
    }
}

fn certificate_failure(c: &CertificateError) -> TlsFailure {
    use CertificateError as C;
    match c {
        C::UnknownIssuer => TlsFailure::UnknownIssuer,
        C::Expired | C::ExpiredContext { .. } => TlsFailure::Expired,
        C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::NotYetValid,
        C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => TlsFailure::NotServerAuth,
        C::BadSignature => TlsFailure::BadSignature,
        #[allow(deprecated)]
        C::UnsupportedSignatureAlgorithm
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => TlsFailure::UnsupportedAlgorithm,
        C::BadEncoding | C::UnhandledCriticalExtension => TlsFailure::BadCertificate,
        // rustls passes what it has no variant for (a CA certificate as the server's, an
        // end-entity certificate as an issuer, a bad extension) as webpki's own error.
        C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(w) => webpki_failure(w),
            None => TlsFailure::HandshakeFailure,
        },
        _ => TlsFailure::HandshakeFailure,
    }
}

fn webpki_failure(e: &webpki::Error) -> TlsFailure {
    use webpki::Error as W;
    match e {
        W::CaUsedAsEndEntity => TlsFailure::CaUsedAsEndEntity,
        W::EndEntityUsedAsCa | W::PathLenConstraintViolated => TlsFailure::IssuerNotCa,
        #[allow(deprecated)]
        W::EmptyEkuExtension | W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            TlsFailure::NotServerAuth
        }
        W::CertDistrusted | W::UnknownIssuer => TlsFailure::UnknownIssuer,
        W::CertExpired { .. } | W::InvalidCertValidity => TlsFailure::Expired,
        W::CertNotValidYet { .. } => TlsFailure::NotYetValid,
        W::CertNotValidForName(_) | W::NameConstraintViolation => TlsFailure::NameMismatch,
        W::InvalidSignatureForPublicKey => TlsFailure::BadSignature,
        W::BadDer
        | W::BadDerTime
        | W::ExtensionValueInvalid
        | W::MalformedExtensions
        | W::MalformedDnsIdentifier
        | W::MalformedNameConstraint
        | W::InvalidSerialNumber
        | W::InvalidNetworkMaskConstraint
        | W::TrailingData(_) => TlsFailure::BadCertificate,
        _ => TlsFailure::HandshakeFailure,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::{AlertDescription, OtherError};

    use super::*;

    fn other(e: webpki::Error) -> TlsError {
        TlsError::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }

    #[test]
    fn certificate_errors_name_the_reason() {
        let cases = [
            (
                TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsFailure::UnknownIssuer,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::Expired),
                TlsFailure::Expired,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::NotValidYet),
                TlsFailure::NotYetValid,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::NotValidForName),
                TlsFailure::NameMismatch,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::InvalidPurpose),
                TlsFailure::NotServerAuth,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::BadSignature),
                TlsFailure::BadSignature,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::BadEncoding),
                TlsFailure::BadCertificate,
            ),
            (
                #[allow(deprecated)]
                TlsError::InvalidCertificate(CertificateError::UnsupportedSignatureAlgorithm),
                TlsFailure::UnsupportedAlgorithm,
            ),
            // What webpki reports through rustls' `Other`.
            (
                other(webpki::Error::CaUsedAsEndEntity),
                TlsFailure::CaUsedAsEndEntity,
            ),
            (other(webpki::Error::EndEntityUsedAsCa), TlsFailure::IssuerNotCa),
            (
                other(webpki::Error::ExtensionValueInvalid),
                TlsFailure::BadCertificate,
            ),
            (
                other(webpki::Error::MaximumPathDepthExceeded),
                TlsFailure::HandshakeFailure,
            ),
            (TlsError::NoCertificatesPresented, TlsFailure::MissingCertificate),
            (
                TlsError::AlertReceived(AlertDescription::HandshakeFailure),
                TlsFailure::AlertReceived,
            ),
            (
                TlsError::InappropriateHandshakeMessage {
                    expect_types: vec![],
                    got_type: rustls::HandshakeType::Finished,
                },
                TlsFailure::UnexpectedMessage,
            ),
            (
                TlsError::InappropriateHandshakeMessage {
                    expect_types: vec![HandshakeType::Certificate, HandshakeType::CertificateRequest],
                    got_type: HandshakeType::CertificateVerify,
                },
                TlsFailure::MissingCertificate,
            ),
            (
                TlsError::InappropriateHandshakeMessage {
                    expect_types: vec![HandshakeType::CertificateVerify],
                    got_type: HandshakeType::Finished,
                },
                TlsFailure::MissingCertificateVerify,
            ),
            (TlsError::General("x".into()), TlsFailure::HandshakeFailure),
        ];
        for (err, want) in cases {
            assert_eq!(tls_failure(&err), want, "{err:?}");
        }
    }

    #[test]
    fn webpki_ca_as_end_entity_reaches_rustls_as_other() {
        // The premise of the `Other` arm: rustls has no variant of its own for it.
        let e = other(webpki::Error::CaUsedAsEndEntity);
        assert!(matches!(
            e,
            TlsError::InvalidCertificate(CertificateError::Other(_))
        ));
    }
}
