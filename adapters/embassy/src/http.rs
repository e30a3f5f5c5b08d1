//! One HTTP(S) exchange through reqwless, classified into the core's terms.
//!
//! Every exchange opens a new connection (reqwless has no pool), sends one request with
//! `Connection: close`, reads the head into `rx` and at most `limit` bytes of the body into
//! `body`. Transport failures become a [`TransientClass`] (R4): which phase failed is
//! tracked by thin wrappers around the `Dns` and `TcpConnect` implementations, because
//! reqwless reports a refused connection and a reset mid-response with the same error.

use core::cell::Cell;
use core::net::{IpAddr, SocketAddr};

use accessgate::TransientClass;
use embedded_io_async::Read as _;
use embedded_nal_async::{AddrType, Dns, TcpConnect};
use reqwless::client::{HttpClient, HttpRequestHandle};
#[cfg(feature = "tls")]
use reqwless::client::{TlsConfig, TlsVerify};
use reqwless::request::{Method, RequestBody, RequestBuilder};

use crate::buffers::Buffers;
use crate::config::BEARER;

/// `Retry-After` values longer than this are not delay-seconds anyway (the core accepts at
/// most 10 digits).
const RETRY_AFTER_MAX: usize = 16;

/// Seeds one connection's TLS randomness (reqwless seeds embedded-tls from one `u64` per
/// connection).
#[cfg(feature = "tls")]
pub(crate) type TlsSeed = u64;

/// Without the `tls` feature there is nothing to seed.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlsSeed;

/// Where an exchange was when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Dns,
    Connect,
    #[cfg(feature = "tls")]
    Tls,
    Http,
}

struct TracedDns<'p, D> {
    inner: &'p D,
    phase: &'p Cell<Phase>,
}

impl<D: Dns> Dns for TracedDns<'_, D> {
    type Error = D::Error;

    async fn get_host_by_name(&self, host: &str, addr_type: AddrType) -> Result<IpAddr, D::Error> {
        self.phase.set(Phase::Dns);
        let r = self.inner.get_host_by_name(host, addr_type).await;
        if r.is_ok() {
            self.phase.set(Phase::Connect);
        }
        r
    }

    async fn get_host_by_address(&self, addr: IpAddr, result: &mut [u8]) -> Result<usize, D::Error> {
        self.inner.get_host_by_address(addr, result).await
    }
}

struct TracedTcp<'p, C> {
    inner: &'p C,
    phase: &'p Cell<Phase>,
    /// Phase after a successful connect: `Tls` for https, `Http` for http.
    then: Phase,
}

impl<C: TcpConnect> TcpConnect for TracedTcp<'_, C> {
    type Error = C::Error;
    type Connection<'a>
        = C::Connection<'a>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<C::Connection<'a>, C::Error> {
        self.phase.set(Phase::Connect);
        let r = self.inner.connect(remote).await;
        if r.is_ok() {
            self.phase.set(self.then);
        }
        r
    }
}

fn class_of(e: &reqwless::Error, phase: Phase) -> TransientClass {
    match (e, phase) {
        (reqwless::Error::Dns, _) | (_, Phase::Dns) => TransientClass::Dns,
        #[cfg(feature = "tls")]
        (reqwless::Error::Tls(_), _) | (_, Phase::Tls) => TransientClass::Tls,
        (_, Phase::Connect) => TransientClass::Connect,
        // Reset, truncation, malformed head, head larger than `rx`...
        (_, Phase::Http) => TransientClass::Io,
    }
}

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

/// What came back, apart from the body (which is in the lane's `body` buffer).
pub(crate) struct Reply {
    pub status: u16,
    pub retry_after: Option<heapless::Vec<u8, RETRY_AFTER_MAX>>,
    pub body_len: usize,
}

/// One lane: the network, the CA (if TLS) and the buffers.
pub(crate) struct Http<'a, C, D> {
    pub tcp: &'a C,
    pub dns: &'a D,
    /// `Some(ca_der)` for TLS, `None` for plain HTTP (validated against the URLs).
    #[cfg(feature = "tls")]
    pub ca: Option<&'a [u8]>,
    pub bufs: Buffers<'a>,
}

impl<'a, C: TcpConnect, D: Dns> Http<'a, C, D> {
    /// The body of the last exchange.
    pub fn body(&self, len: usize) -> &[u8] {
        &self.bufs.body[..len]
    }

    /// Size of the body buffer.
    pub fn body_capacity(&self) -> usize {
        self.bufs.body.len()
    }

    /// Runs one exchange. `limit` caps the body bytes read (`max_body + 1` for checks).
    /// `tls_seed` seeds this connection's TLS randomness; it must differ per connection.
    pub async fn exchange(
        &mut self,
        url: &str,
        request: Request<'_>,
        limit: usize,
        tls_seed: TlsSeed,
    ) -> Result<Reply, TransientClass> {
        let Buffers {
            rx,
            tx,
            body,
            #[cfg(feature = "tls")]
            tls,
        } = &mut self.bufs;
        let limit = limit.min(body.len());
        let body = &mut body[..limit];
        // Request scratch, built before the client borrows anything.
        let (scratch_len, is_check) = match request {
            Request::Check { token } => (write_bearer(tx, token)?, true),
            Request::Refresh {
                refresh_token,
                client_id,
            } => (write_form(tx, refresh_token, client_id)?, false),
        };
        let scratch: &[u8] = &tx[..scratch_len];
        let auth = core::str::from_utf8(scratch).map_err(|_| TransientClass::OtherStatus)?;
        let check_headers = [("Authorization", auth), ("Connection", "close")];
        let refresh_headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Connection", "close"),
        ];

        let phase = Cell::new(Phase::Dns);
        let dns = TracedDns {
            inner: self.dns,
            phase: &phase,
        };
        #[cfg(feature = "tls")]
        let then = if self.ca.is_some() {
            Phase::Tls
        } else {
            Phase::Http
        };
        #[cfg(not(feature = "tls"))]
        let then = Phase::Http;
        let tcp = TracedTcp {
            inner: self.tcp,
            phase: &phase,
            then,
        };
        #[cfg(feature = "tls")]
        let mut client = match (self.ca, tls.as_mut()) {
            (Some(ca), Some(t)) => HttpClient::new_with_tls(
                &tcp,
                &dns,
                TlsConfig::new(
                    tls_seed,
                    &mut *t.read,
                    &mut *t.write,
                    TlsVerify::Certificate {
                        ca,
                        cert: None,
                        key: None,
                    },
                ),
            ),
            // Validated at construction: TLS always has buffers, and an https URL never
            // reaches a plain client (reqwless would silently speak plain HTTP to port 443).
            _ => HttpClient::new(&tcp, &dns),
        };
        // An https URL never gets here without TLS (refused at construction).
        #[cfg(not(feature = "tls"))]
        let TlsSeed = tls_seed;
        #[cfg(not(feature = "tls"))]
        let mut client = HttpClient::new(&tcp, &dns);
        let method = if is_check { Method::GET } else { Method::POST };
        let handle = match client.request(method, url).await {
            Ok(h) => h,
            Err(e) => {
                let class = class_of(&e, phase.get());
                debug!("{} {}: connection failed: {}", method.as_str(), url, e);
                return Err(class);
            }
        };
        phase.set(Phase::Http);
        let r = if is_check {
            send(handle.headers(&check_headers), rx, body).await
        } else {
            send(handle.headers(&refresh_headers).body(scratch), rx, body).await
        };
        r.map_err(|e| {
            debug!("{} {}: exchange failed: {}", method.as_str(), url, e);
            class_of(&e, phase.get())
        })
    }
}

async fn send<C, B>(
    mut handle: HttpRequestHandle<'_, C, B>,
    rx: &mut [u8],
    body: &mut [u8],
) -> Result<Reply, reqwless::Error>
where
    C: embedded_io_async::Read + embedded_io_async::Write,
    B: RequestBody,
{
    let response = handle.send(rx).await?;
    let status = response.status.0;
    let mut retry_after = None;
    for (name, value) in response.headers() {
        if name.eq_ignore_ascii_case("retry-after") {
            // Too long to be delay-seconds: treated as absent, like the core would.
            retry_after = heapless::Vec::from_slice(value).ok();
        }
    }
    let declared = response.content_length;
    let mut body_len = 0;
    // Only a 200 (R1) and a 400 (`invalid_grant`, R11) have bodies that matter.
    if status == 200 || status == 400 {
        let mut reader = response.body().reader();
        // Bounded: never more than `body.len()` bytes (max_body + 1 for checks), whatever the
        // server sends; an oversized body is then refused by the classifier (R1).
        while body_len < body.len() {
            match reader.read(&mut body[body_len..]).await? {
                0 => break,
                n => body_len += n,
            }
        }
        // reqwless ends a Content-Length body early on EOF without an error: a body shorter
        // than announced was truncated, and a truncated body is never definitive (R1).
        if body_len < body.len() && declared.is_some_and(|d| body_len < d) {
            return Err(reqwless::Error::ConnectionAborted);
        }
    }
    Ok(Reply {
        status,
        retry_after,
        body_len,
    })
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
}
