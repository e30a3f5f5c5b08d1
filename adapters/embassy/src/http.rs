//! One HTTP(S) exchange, classified into the core's terms.
//!
//! Every exchange opens a new connection (DNS, TCP, then TLS for https), sends one request
//! with `Connection: close`, reads the head into `rx` and at most `limit` bytes of the body
//! into `body` ([`crate::wire`]). The adapter owns every step, so it knows which one failed:
//! the class (R4) and detail (R13) come from the step, not from guessing at an error.
//!
//! With TLS, the handshake is embedded-tls driven with the project's verifier
//! ([`crate::tls`]), and the request is written only through [`Verified`], which exists only
//! if the server's chain and CertificateVerify were both verified in this handshake (R14).

use core::net::SocketAddr;

use accessgate::TransientClass;
use embedded_io::Error as _;
use embedded_nal_async::{AddrType, Dns, TcpConnect};
#[cfg(feature = "tls")]
use rand_chacha::ChaCha20Rng;

use crate::buffers::Buffers;
#[cfg(feature = "tls")]
use crate::config::TlsConfig;
use crate::config::BEARER;
#[cfg(feature = "tls")]
use crate::failure::TlsFailure;
use crate::failure::{Failure, NetFailure};
#[cfg(feature = "tls")]
use crate::tls::handshake::{HandshakeVerifier, Provider, Verified};
#[cfg(feature = "tls")]
use crate::tls::records::{RecordLog, RecordTap};
pub(crate) use crate::wire::Reply;
use crate::wire::{self, RequestHead};

/// The request of one exchange.
pub(crate) enum Request<'r> {
    /// `GET check_url` with `Authorization: Bearer <token>`.
    Check { token: &'r [u8] },
    /// `POST token_url` with the refresh form.
    Refresh {
        refresh_token: &'r [u8],
        client_id: &'r str,
    },
}

/// One lane: the network, the trust anchor (if TLS) and the buffers.
pub(crate) struct Http<'a, C, D> {
    pub tcp: &'a C,
    pub dns: &'a D,
    /// `Some` for TLS, `None` for plain HTTP (validated against the URLs).
    #[cfg(feature = "tls")]
    pub tls: Option<TlsConfig<'a>>,
    /// This lane's TLS randomness (key shares, client randoms): a ChaCha20 stream of its own,
    /// keyed by the device's TLS seed.
    #[cfg(feature = "tls")]
    pub rng: ChaCha20Rng,
    pub bufs: Buffers<'a>,
}

/// A request whose secret part is written in the lane's `tx` buffer ([`Http::prepare`]).
#[derive(Clone, Copy)]
pub(crate) struct Prepared {
    /// Bytes of `tx` in use: the authorization value or the form.
    len: usize,
    is_check: bool,
}

/// The buffers are wiped when the lane goes away (the driver's future was dropped), whatever
/// it was doing.
impl<C, D> Drop for Http<'_, C, D> {
    fn drop(&mut self) {
        self.bufs.wipe();
    }
}

impl<'a, C: TcpConnect, D: Dns> Http<'a, C, D> {
    /// The body of the last exchange.
    pub fn body(&self, len: usize) -> &[u8] {
        &self.bufs.body[..len]
    }

    /// Zeroes the lane's buffers (after every exchange, whatever its outcome).
    pub fn wipe(&mut self) {
        self.bufs.wipe();
    }

    /// Writes the request's secret part into `tx`: `Bearer <token>` for a check, the form for
    /// a refresh. This is the only copy of the token an exchange uses; it is wiped once the
    /// request is written, and with the rest of the buffers after the exchange.
    pub fn prepare(&mut self, request: Request<'_>) -> Result<Prepared, Failure> {
        let tx = &mut *self.bufs.tx;
        let written = match request {
            Request::Check { token } => write_bearer(tx, token).map(|len| Prepared { len, is_check: true }),
            Request::Refresh {
                refresh_token,
                client_id,
            } => write_form(tx, refresh_token, client_id).map(|len| Prepared { len, is_check: false }),
        };
        written.map_err(|_| {
            // Refused, never truncated; nothing of a half-written token stays.
            crate::wipe::bytes(tx);
            Failure::net(TransientClass::OtherStatus, NetFailure::Other)
        })
    }

    /// Runs one exchange with the request [`Http::prepare`] wrote. `limit` caps the body bytes
    /// read (`max_body + 1` for checks).
    pub async fn exchange(&mut self, url: &str, prepared: Prepared, limit: usize) -> Result<Reply, Failure> {
        let Buffers {
            rx,
            tx,
            body,
            #[cfg(feature = "tls")]
                tls: tls_bufs,
            #[cfg(not(feature = "tls"))]
                tls: _,
        } = &mut self.bufs;
        let limit = limit.min(body.len());
        let body = &mut body[..limit];
        let Prepared { len, is_check } = prepared;
        let scratch: &[u8] = tx.get(..len).unwrap_or_default();
        let check_headers: [(&str, &[u8]); 2] = [("Authorization", scratch), ("Connection", b"close")];
        let refresh_headers: [(&str, &[u8]); 2] = [
            ("Content-Type", b"application/x-www-form-urlencoded"),
            ("Connection", b"close"),
        ];
        // Validated at construction; a URL that stopped parsing is a configuration bug.
        let target = accessgate::check_url(url)
            .map_err(|_| Failure::net(TransientClass::OtherStatus, NetFailure::Other))?;
        let method = if is_check { "GET" } else { "POST" };
        let head = RequestHead {
            method,
            path: target.path,
            // RFC 9110 7.2: `uri-host [":" port]`, an IPv6 address in brackets.
            host: target.host_header,
            port: (!target.default_port).then_some(target.port),
            headers: if is_check {
                &check_headers
            } else {
                &refresh_headers
            },
            body: (!is_check).then_some(scratch),
        };

        let ip = match target.ip {
            Some(ip) => ip,
            None => self
                .dns
                .get_host_by_name(target.name, AddrType::Either)
                .await
                .map_err(|_| {
                    debug!("{} {}: DNS failed", method, url);
                    Failure::net(TransientClass::Dns, NetFailure::DnsFailed)
                })?,
        };
        let mut conn = self
            .tcp
            .connect(SocketAddr::new(ip, target.port))
            .await
            .map_err(|e| {
                debug!("{} {}: connect failed", method, url);
                Failure::net(TransientClass::Connect, connect_failure(e.kind()))
            })?;

        #[cfg(feature = "tls")]
        if let Some(trust) = self.tls {
            // Validated at construction: a TLS lane always has buffers.
            let t = tls_bufs
                .as_mut()
                .ok_or(Failure::tls(TlsFailure::HandshakeFailure))?;
            let mut records = RecordLog::default();
            let mut tls = embedded_tls::TlsConnection::<_, embedded_tls::Aes128GcmSha256>::new(
                RecordTap::new(conn, &mut records),
                &mut *t.read,
                &mut *t.write,
            );
            // No SNI for an IP address, and none with a trailing dot (RFC 6066 3).
            let config = match target.ip {
                Some(_) => embedded_tls::TlsConfig::new(),
                None => embedded_tls::TlsConfig::new().with_server_name(target.name),
            };
            let mut provider = Provider {
                rng: &mut self.rng,
                verifier: HandshakeVerifier::new(trust.ca_der, target.name, trust.clock),
            };
            if let Err(e) = tls
                .open(embedded_tls::TlsContext::new(&config, &mut provider))
                .await
            {
                drop(tls);
                let alert = records.last_was_alert();
                let failure = handshake_failure(provider.verifier.failure(), alert, e);
                debug!("{} {}: TLS handshake failed: {}", method, url, e);
                return Err(failure);
            }
            // R14: the request (and its token) goes out only through `Verified`.
            let mut verified = Verified::new(tls, &provider.verifier).map_err(|f| {
                warn!(
                    "{} {}: server skipped a proof of identity; connection dropped",
                    method, url
                );
                Failure::tls(f)
            })?;
            let sent = wire::write_request(&mut verified, &head).await;
            // The server may take its time to answer: the token need not wait in memory.
            crate::wipe::bytes(tx);
            let reply = match sent {
                Ok(()) => wire::read_response(&mut verified, rx, body).await,
                Err(f) => Err(f),
            };
            return reply.map_err(|f| {
                debug!("{} {}: exchange failed", method, url);
                http_failure(f)
            });
        }
        let sent = wire::write_request(&mut conn, &head).await;
        // As above: the token need not wait in memory for the answer.
        crate::wipe::bytes(tx);
        let reply = match sent {
            Ok(()) => wire::read_response(&mut conn, rx, body).await,
            Err(f) => Err(f),
        };
        reply.map_err(|f| {
            debug!("{} {}: exchange failed", method, url);
            http_failure(f)
        })
    }
}

fn connect_failure(kind: embedded_io::ErrorKind) -> NetFailure {
    match wire::net_failure(kind) {
        NetFailure::Other | NetFailure::Closed => NetFailure::Unreachable,
        f => f,
    }
}

/// Class of a failure after the connection was made: broken transport or framing is `io`.
fn http_failure(f: NetFailure) -> Failure {
    let class = match f {
        NetFailure::Timeout => TransientClass::Timeout,
        _ => TransientClass::Io,
    };
    Failure::net(class, f)
}

/// The verifier's own record wins (it knows *why*); otherwise embedded-tls' error, except that
/// a record embedded-tls refused which was the server's alert (`RecordTap`) is named an alert.
#[cfg(feature = "tls")]
fn handshake_failure(
    recorded: Option<TlsFailure>,
    last_was_alert: bool,
    e: embedded_tls::TlsError,
) -> Failure {
    use embedded_tls::TlsError as E;
    if let Some(f) = recorded {
        return Failure::tls(f);
    }
    match e {
        E::Io(kind) => Failure::net(TransientClass::Tls, wire::net_failure(kind)),
        E::IoError | E::ConnectionClosed => Failure::net(TransientClass::Tls, NetFailure::Closed),
        E::HandshakeAborted(..) => Failure::tls(TlsFailure::AlertReceived),
        // R13: after the ServerHello embedded-tls refuses the server's (sealed) alert as an
        // invalid record and drops it; say what it was. An RSA-keyed server ends the handshake
        // this way (the device offers no RSA signature scheme), like the desktop's words for
        // a server's alert. Only the name changes: it is refused either way (R14).
        E::InvalidRecord if last_was_alert => Failure::tls(TlsFailure::AlertReceived),
        E::InvalidHandshake | E::InvalidRecord | E::UnknownContentType => {
            Failure::tls(TlsFailure::UnexpectedMessage)
        }
        _ => Failure::tls(TlsFailure::HandshakeFailure),
    }
}

/// Writes `Bearer <token>` into `tx`.
fn write_bearer(tx: &mut [u8], token: &[u8]) -> Result<usize, TransientClass> {
    let n = BEARER.len() + token.len();
    let out = tx.get_mut(..n).ok_or(TransientClass::OtherStatus)?;
    out[..BEARER.len()].copy_from_slice(BEARER.as_bytes());
    out[BEARER.len()..].copy_from_slice(token);
    Ok(n)
}

/// Writes the refresh form (`application/x-www-form-urlencoded`) into `tx`.
fn write_form(tx: &mut [u8], refresh_token: &[u8], client_id: &str) -> Result<usize, TransientClass> {
    let mut w = Cursor { buf: tx, len: 0 };
    w.put(b"grant_type=refresh_token&refresh_token=")?;
    w.escaped(refresh_token)?;
    w.put(b"&client_id=")?;
    w.escaped(client_id.as_bytes())?;
    Ok(w.len)
}

struct Cursor<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), TransientClass> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(TransientClass::OtherStatus)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    fn escaped(&mut self, bytes: &[u8]) -> Result<(), TransientClass> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in bytes {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                self.put(&[b])?;
            } else {
                self.put(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_escapes_reserved_characters() {
        let mut tx = [0u8; 128];
        let n = write_form(&mut tx, b"rt_a+b/c=", "kiosk app").unwrap();
        assert_eq!(
            &tx[..n],
            b"grant_type=refresh_token&refresh_token=rt_a%2Bb%2Fc%3D&client_id=kiosk%20app"
        );
    }

    #[test]
    fn scratch_too_small_is_refused_not_truncated() {
        let mut tx = [0u8; 10];
        assert!(write_bearer(&mut tx, b"abcdef").is_err());
        assert!(write_form(&mut tx, b"x", "y").is_err());
    }

    /// R13: an invalid record that was the server's alert is named an alert; any other
    /// invalid record stays "unexpected", and the verifier's own record still wins.
    #[cfg(feature = "tls")]
    #[test]
    fn an_invalid_record_that_was_an_alert_is_named_an_alert() {
        use embedded_tls::TlsError as E;
        let named = |recorded, alert, e| handshake_failure(recorded, alert, e).detail;
        let tls = |f| accessgate::FailureDetail::Tls(f);
        assert_eq!(
            named(None, true, E::InvalidRecord),
            tls(TlsFailure::AlertReceived)
        );
        assert_eq!(
            named(None, false, E::InvalidRecord),
            tls(TlsFailure::UnexpectedMessage)
        );
        assert_eq!(
            named(None, true, E::InvalidHandshake),
            tls(TlsFailure::UnexpectedMessage)
        );
        assert_eq!(
            named(Some(TlsFailure::UnsupportedAlgorithm), true, E::InvalidRecord),
            tls(TlsFailure::UnsupportedAlgorithm)
        );
    }

    /// R13: a handshake broken by the transport is class `tls` with the network's words
    /// (reset, timed out, closed), a server's alert is named an alert, and whatever else
    /// embedded-tls refuses is a handshake failure.
    #[cfg(feature = "tls")]
    #[test]
    fn a_handshake_broken_by_the_transport_or_an_alert_says_which() {
        use embedded_io::ErrorKind as K;
        use embedded_tls::alert::{AlertDescription, AlertLevel};
        use embedded_tls::TlsError as E;
        let failed = |e| {
            let f = handshake_failure(None, false, e);
            (f.class, f.detail)
        };
        let net = |f| (TransientClass::Tls, accessgate::FailureDetail::Net(f));
        let tls = |f| (TransientClass::Tls, accessgate::FailureDetail::Tls(f));
        assert_eq!(failed(E::Io(K::ConnectionReset)), net(NetFailure::Reset));
        assert_eq!(failed(E::Io(K::TimedOut)), net(NetFailure::Timeout));
        assert_eq!(failed(E::IoError), net(NetFailure::Closed));
        assert_eq!(failed(E::ConnectionClosed), net(NetFailure::Closed));
        let alert = E::HandshakeAborted(AlertLevel::Fatal, AlertDescription::HandshakeFailure);
        assert_eq!(failed(alert), tls(TlsFailure::AlertReceived));
        assert_eq!(failed(E::InvalidCipherSuite), tls(TlsFailure::HandshakeFailure));
    }

    /// R4/R13: once connected, a broken transport is class `io` with its detail, except a
    /// transport that timed out, which is class `timeout`.
    #[test]
    fn a_failure_after_connecting_is_io_unless_it_timed_out() {
        let failed = |f| {
            let f = http_failure(f);
            (f.class, f.detail)
        };
        let net = accessgate::FailureDetail::Net;
        assert_eq!(
            failed(NetFailure::Timeout),
            (TransientClass::Timeout, net(NetFailure::Timeout))
        );
        assert_eq!(
            failed(NetFailure::Reset),
            (TransientClass::Io, net(NetFailure::Reset))
        );
        assert_eq!(
            failed(NetFailure::Truncated),
            (TransientClass::Io, net(NetFailure::Truncated))
        );
    }

    /// R13: a connection that could not be made says refused, reset or timed out when the
    /// network says so, and unreachable otherwise (never "closed": nothing was open).
    #[test]
    fn a_failed_connect_names_what_the_network_said_or_unreachable() {
        use embedded_io::ErrorKind as K;
        assert_eq!(connect_failure(K::ConnectionRefused), NetFailure::Refused);
        assert_eq!(connect_failure(K::ConnectionReset), NetFailure::Reset);
        assert_eq!(connect_failure(K::TimedOut), NetFailure::Timeout);
        assert_eq!(connect_failure(K::BrokenPipe), NetFailure::Unreachable);
        assert_eq!(connect_failure(K::Other), NetFailure::Unreachable);
    }
}
