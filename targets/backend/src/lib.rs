//! # accessgate-backend: the reference backend
//!
//! A real HTTP/1.1 server, over plain HTTP and HTTPS, that speaks the two endpoints of the
//! accessgate backend contract (`docs/behaviour.md`, "The backend contract"):
//!
//! * `GET /api/code/invites/check-access/` with `Authorization: Bearer <access token>` →
//!   `200 {"has_access":true|false}` for a known, unexpired token (the user's access flag),
//!   `401` for a missing, unknown, expired or [expired-by-hand](Control::expire_token) token.
//! * `POST /oauth/token` with the form body
//!   `grant_type=refresh_token&refresh_token=<r>&client_id=<id>` →
//!   `200 {"access_token","refresh_token","expires_in","token_type":"Bearer"}`. Refreshing
//!   rotates: a new access *and* refresh token are minted, the old refresh token dies (the old
//!   access token stays valid until it expires), and `expires_in` is the lifetime given to
//!   [`Control::issue_token`]. An unknown, used or [revoked](Control::revoke_refresh) refresh
//!   token gets `400 {"error":"invalid_grant"}`; a malformed form or a missing parameter
//!   `400 {"error":"invalid_request"}`; another grant type
//!   `400 {"error":"unsupported_grant_type"}`; a `client_id` different from
//!   [`BackendConfig::client_id`] `401 {"error":"invalid_client"}`.
//!
//! Other paths answer `404`, a wrong method `405`. Integration tests, the demo CLI
//! (`accessgate serve`) and the benchmarks start it, and steer it either through the
//! in-process [`Control`] handle or through the HTTP [control surface](#control-surface).
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use accessgate_backend::{Backend, BackendConfig, Endpoint, Fault};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let backend = Backend::start(BackendConfig {
//!         https_port: Some(0), // also serve HTTPS, on an ephemeral port
//!         ..BackendConfig::default()
//!     })
//!     .await?;
//!     let control = backend.control();
//!     let tokens = control.issue_token("alice", Duration::from_secs(3600));
//!
//!     // Point the gate at backend.http_url() + Backend::check_path(), or at
//!     // backend.https_url() trusting backend.ca_pem().
//!     println!("check URL: {}{}", backend.http_url(), Backend::check_path());
//!     println!("bearer: {}", tokens.access_token);
//!
//!     control.set_access("alice", false); // genuine denial: 200 {"has_access":false}
//!     control.set_fault(Endpoint::Check, Some(Fault::Status { code: 503, retry_after: Some(5) }));
//!     control.set_fault(Endpoint::Check, None);
//!     assert_eq!(control.counts().total(), 0);
//!     backend.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! ## HTTP implementation
//!
//! Requests are parsed with [`httparse`]: the server reads until the end of the head,
//! honours `Content-Length` for the body (request bodies in `Transfer-Encoding: chunked` are
//! refused with `501`), and caps a request, head and body together, at 16 KiB (`431`/`413`).
//! Garbage gets a `400` and the connection is closed; a client that disconnects or stalls
//! (60 s idle timeout) only ends its own connection. Every connection runs in its own task.
//!
//! **Keep-alive is supported** for well-formed answers: HTTP/1.1 connections stay open unless
//! the client sends `Connection: close` (HTTP/1.0 only with `Connection: keep-alive`), and
//! pipelined requests are answered in order. Every hostile answer (the body faults below) and
//! every error answer to a malformed request ends with `Connection: close` and a close.
//!
//! Responses are **written by hand**, not by an HTTP library, because the server has to
//! produce malformed responses on purpose (truncated bodies, broken chunked encoding,
//! duplicate JSON keys...), which a correct HTTP library would refuse to emit.
//!
//! ## HTTPS
//!
//! When [`BackendConfig::https_port`] is set, a test PKI is generated at start-up with
//! [`rcgen`]: a CA (ECDSA P-256, CN `accessgate test CA`, basic constraints CA with path
//! length 0) and a server certificate (ECDSA P-256, CN `localhost`, SAN DNS `localhost`,
//! IP `127.0.0.1` and `::1`, extended key usage serverAuth) signed **directly** by the CA, so
//! a device TLS stack that verifies a single level and matches the CN accepts it. Both are
//! valid from 2024-01-01 to 2049-12-31 (UTCTime). Only the server certificate is sent in the
//! handshake; clients must trust [`Backend::ca_pem`] / [`Backend::ca_der`]. TLS is served by
//! [`tokio_rustls`] with rustls' default (ring) cipher suites and TLS 1.2 + 1.3, which
//! includes `TLS13_AES_128_GCM_SHA256`. [`BackendConfig::tls_identity`] replaces the
//! generated PKI with a given chain and key, served as they are (expired, misnamed or
//! otherwise broken certificates included: the TLS matrix of R14 relies on it). A failed or stalled handshake (10 s) only ends that
//! connection. The URL is `https://localhost:PORT`: clients resolve `localhost` (tests can
//! pin it to `127.0.0.1`).
//!
//! ## Faults
//!
//! [`Control::set_fault`] replaces the answers of one endpoint. Status and body faults only
//! answer: the request is *not* processed (no token rotation), and hostile token bodies carry
//! tokens the server does not know (`at_hostile`...). Exact bytes, for the check endpoint
//! (all hostile answers are status `200`, `Connection: close`, then the connection closes):
//!
//! | fault | answer |
//! |---|---|
//! | [`Fault::Refused`] | none: both listeners stop listening (connects get RST), open connections are closed; clearing it re-binds the same ports (`SO_REUSEADDR`). Global. |
//! | [`Fault::Status`] | `<code>` with `{"detail":"injected status <code>"}` and optional `Retry-After` (a normal, keep-alive answer) |
//! | [`Fault::Hang`] | the request is read, nothing is ever written; the connection stays open |
//! | [`Fault::HtmlPortal`] | `Content-Type: text/html; charset=utf-8`, a captive-portal sign-in page |
//! | [`Fault::WrongType`] | `{"has_access":"true"}` |
//! | [`Fault::NullValue`] | `{"has_access":null}` |
//! | [`Fault::MissingField`] | `{"other":1}` |
//! | [`Fault::DuplicateKey`] | `{"has_access":false,"has_access":true}` |
//! | [`Fault::TrailingGarbage`] | `{"has_access":true}xyz` (`Content-Length` covers the garbage) |
//! | [`Fault::Truncated`] | `Content-Length: 100`, body `{"has_access":tr` (16 bytes), close |
//! | [`Fault::Oversized`] | a 65 536-byte body `{"has_access":true,"padding":"xxx…"}` |
//! | [`Fault::BrokenChunked`] | `Transfer-Encoding: chunked`, body `13\r\n{"has_access":true}\r\nzz\r\n`, close (no `0\r\n\r\n`) |
//!
//! On the token endpoint the same faults use token-shaped bodies (e.g. `WrongType` is
//! `{"access_token":1,"refresh_token":true,"expires_in":"3600","token_type":"Bearer"}`,
//! `Truncated` sends `{"access_token":`). [`Control::set_latency`] delays every answer of
//! an endpoint (after the request is read, before the answer or hostile bytes).
//!
//! ## Capacity
//!
//! [`Control::set_capacity`] limits an endpoint to `per_second` requests per second of
//! uptime (second `n` = `[n s, n+1 s)` since start, [`Control::uptime`]; measured with
//! `tokio::time::Instant`). Up to `per_second` requests arriving within a second are
//! admitted (and then answered normally, or with the endpoint's fault); further ones get
//! `503 {"detail":"over capacity"}`. With `retry_after: false` that is all. With
//! `retry_after: true` the server hands out slots: it finds the first later second whose
//! `per_second` slots are not all reserved yet, reserves one there and answers
//! `Retry-After: <that second − this second>`. With 2/s, five requests within one second get
//! `200, 200, 503 (Retry-After 1), 503 (1), 503 (2)`. Reservations do not block arrivals
//! (the server cannot tell who holds one): clients that honour them arrive exactly as fast
//! as the server admits. The capacity check happens first, then latency, then the fault.
//!
//! ## Counting
//!
//! [`Control::counts`] returns requests per endpoint and answered status ([`Counts`]),
//! counted when the request arrives; see [`Counts`] for the details.
//!
//! ## Control surface
//!
//! Every listener also serves `/_control/...` (GET or POST; parameters in the query string
//! and/or a form body; answers are JSON, errors are `400 {"error":"..."}`), so that a server
//! started as a separate process (`accessgate serve`) can be steered with `curl`. Control
//! requests bypass faults, latency, capacity and counting — except [`Fault::Refused`], which
//! closes the listeners: set it with `for_ms` or it can only be cleared in-process.
//!
//! | request | effect / answer |
//! |---|---|
//! | `/_control/help` | this list, as plain text |
//! | `/_control/fault?endpoint=check\|token\|all&fault=NAME[&code=503][&retry_after=5][&for_ms=2000]` | [`Control::set_fault`]; `NAME` is [`Fault::name`] or `none`; `for_ms` clears the fault again after that long (unless it was changed meanwhile). `{"ok":true}` |
//! | `/_control/clear` | [`Control::clear_all`] |
//! | `/_control/access?user=U&has_access=true\|false` | [`Control::set_access`] |
//! | `/_control/token?user=U[&expires_in=3600]` | [`Control::issue_token`] → `{"access_token":"at_…","refresh_token":"rt_…","expires_in":3600}` |
//! | `/_control/expire?access_token=T` | [`Control::expire_token`] |
//! | `/_control/revoke?refresh_token=T` | [`Control::revoke_refresh`] |
//! | `/_control/latency?endpoint=…&ms=500` | [`Control::set_latency`] |
//! | `/_control/capacity?endpoint=…&per_second=N[&retry_after=true]` | [`Control::set_capacity`] (`N` = 0 removes the limit) |
//! | `/_control/counts` | [`Counts::to_json`]: `{"check":{"total":3,"by_status":{"200":2,"401":1}},"token":{…},"other":0,"total":3}` |
//! | `/_control/reset_counts` | [`Control::reset_counts`] |
//!
//! ## Dependencies, and why
//!
//! * `tokio` — the async runtime, TCP listeners, timers (`tokio::time::Instant` for token
//!   expiry and the capacity clock) and watch channels for shutdown/outage signals.
//! * `httparse` — a small, strict request parser; responses are hand-written (see above).
//! * `rustls` (ring provider, no aws-lc-rs so no cmake/C toolchain beyond a C compiler) and
//!   `tokio-rustls` — the HTTPS listener.
//! * `rcgen` — generates the test CA and server certificate at start-up (unless a
//!   [`TlsIdentity`] is given).
//! * `socket2` — `SO_REUSEADDR` binding and shutting a listening socket down synchronously,
//!   so that [`Fault::Refused`] takes effect before [`Control::set_fault`] returns and the
//!   same port can be bound again.
//! * `rand` — random token strings.
//! * `serde_json` — the token and control-surface JSON answers.
//! * `log` — diagnostics (connections at `debug`, control changes at `info`);
//!   `thiserror` — the [`BackendError`] type.
//!
//! [`Fault::Refused`] relies on Linux semantics of `shutdown(2)` on a listening socket; on
//! other systems the listener closes a moment later, when the accept task drops it.

mod control_http;
mod http;
mod server;
mod state;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use state::{Capacity, Control, Counts, Endpoint, Fault, TokenPair};

use server::ListenerSlot;
use state::Shared;

/// Where and how to start a [`Backend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Address to bind both listeners to. Default `127.0.0.1`.
    pub bind: IpAddr,
    /// Port of the plain-HTTP listener; `0` (the default) picks an ephemeral port.
    pub http_port: u16,
    /// Port of the HTTPS listener: `None` (the default) = no TLS listener, `Some(0)` =
    /// ephemeral port.
    pub https_port: Option<u16>,
    /// The `client_id` the token endpoint accepts. Default `"accessgate"`.
    pub client_id: String,
    /// What the HTTPS listener serves: `None` (the default) = the test PKI generated at
    /// start-up; `Some` = exactly this chain and key, unchecked, so tests can serve broken
    /// certificates on purpose (then [`Backend::ca_pem`] is `None`: the test knows its anchor).
    pub tls_identity: Option<TlsIdentity>,
}

/// A certificate chain and private key for the HTTPS listener ([`BackendConfig::tls_identity`]).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// DER certificates, the server certificate first, then any intermediates.
    pub chain_der: Vec<Vec<u8>>,
    /// The server certificate's private key, PKCS#8 DER (ECDSA P-256/P-384, Ed25519 or RSA).
    pub key_pkcs8_der: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain_len", &self.chain_der.len())
            .finish_non_exhaustive()
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 0,
            https_port: None,
            client_id: "accessgate".to_string(),
            tls_identity: None,
        }
    }
}

/// Why a [`Backend`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Generating the test certificates failed.
    #[error("certificate generation failed: {0}")]
    Cert(#[from] rcgen::Error),
    /// Building the TLS server configuration failed.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// [`Backend::start`] was not polled inside a Tokio runtime.
    #[error("Backend::start must run inside a Tokio runtime")]
    NoRuntime,
}

/// A running reference backend. Dropping it stops the server (like [`Backend::shutdown`],
/// without waiting).
pub struct Backend {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    ca_pem: Option<String>,
    ca_der: Option<Vec<u8>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .finish_non_exhaustive()
    }
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl Backend {
    /// Bind the listeners (generating the test PKI first if HTTPS is wanted) and start
    /// serving. Must be awaited inside a Tokio runtime (any flavour).
    pub async fn start(cfg: BackendConfig) -> Result<Backend, BackendError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BackendError::NoRuntime)?;
        let pki = match (cfg.https_port, &cfg.tls_identity) {
            (Some(_), None) => Some(tls::generate()?),
            (Some(_), Some(identity)) => Some(tls::serve_identity(identity)?),
            (None, _) => None,
        };
        let bind = |port: u16, tls: Option<TlsAcceptor>| {
            let addr = SocketAddr::new(cfg.bind, port);
            ListenerSlot::bind(addr, tls).map_err(|source| BackendError::Bind { addr, source })
        };
        let http = bind(cfg.http_port, None)?;
        let https = match (cfg.https_port, &pki) {
            (Some(port), Some(pki)) => Some(bind(port, Some(TlsAcceptor::from(pki.server_config.clone())))?),
            _ => None,
        };
        let http_addr = http.addr;
        let https_addr = https.as_ref().map(|s| s.addr);
        let mut slots = vec![http];
        slots.extend(https);
        let shared = Arc::new(Shared::new(cfg.client_id, slots.clone(), handle));
        let tasks = slots
            .into_iter()
            .map(|slot| tokio::spawn(server::accept_loop(shared.clone(), slot)))
            .collect();
        log::info!(
            "accessgate backend listening on http://{http_addr}{}",
            https_addr
                .map(|a| format!(" and https://{a}"))
                .unwrap_or_default()
        );
        Ok(Backend {
            shared,
            http_addr,
            https_addr,
            ca_pem: pki.as_ref().and_then(|p| p.ca_pem.clone()),
            ca_der: pki.and_then(|p| p.ca_der),
            tasks,
        })
    }

    /// Base URL of the plain-HTTP listener, e.g. `http://127.0.0.1:40123` (no trailing `/`).
    pub fn http_url(&self) -> String {
        format!(
            "http://{}:{}",
            url_host(self.http_addr.ip()),
            self.http_addr.port()
        )
    }

    /// Base URL of the HTTPS listener, `https://localhost:PORT`, if one was started.
    pub fn https_url(&self) -> Option<String> {
        self.https_addr.map(|a| format!("https://localhost:{}", a.port()))
    }

    /// Address the plain-HTTP listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address the HTTPS listener is bound to, if one was started.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Path of the check endpoint: `/api/code/invites/check-access/`.
    pub fn check_path() -> &'static str {
        "/api/code/invites/check-access/"
    }

    /// Path of the token endpoint: `/oauth/token`.
    pub fn token_path() -> &'static str {
        "/oauth/token"
    }

    /// PEM of the generated CA that signed the server certificate (`None` without HTTPS or
    /// with a given [`BackendConfig::tls_identity`]).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// DER of the generated CA (`None` without HTTPS or with a given
    /// [`BackendConfig::tls_identity`]).
    pub fn ca_der(&self) -> Option<&[u8]> {
        self.ca_der.as_deref()
    }

    /// A handle to steer this backend; it stays usable (but inert) after shutdown.
    pub fn control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
        }
    }

    fn signal_stop(&self) {
        self.shared.shutdown_tx.send_replace(true);
        for slot in &self.shared.listeners {
            slot.close();
        }
    }

    /// Stop listening, end every open connection (hanging ones included) and wait for the
    /// accept loops to finish.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        log::info!("accessgate backend on {} stopped", self.http_addr);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
