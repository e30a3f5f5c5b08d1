//! Listeners, connection tasks, routing and the (deliberately hand-written) answers.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::http::{self, ReadError, Request, Response};
use crate::state::{Admission, CheckOutcome, Endpoint, Fault, Shared, TokenOutcome};
use crate::{control_http, Backend};

/// How long a connection may sit idle (or dribble a request) before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One listening port (HTTP or HTTPS) that can be closed and re-opened on the same address.
pub(crate) struct ListenerSlot {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<TlsAcceptor>,
    current: Mutex<Option<Arc<TcpListener>>>,
    changed: watch::Sender<u64>,
}

fn bind_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl ListenerSlot {
    /// Bind `addr` (port 0 = ephemeral). Must run inside a Tokio runtime.
    pub(crate) fn bind(addr: SocketAddr, tls: Option<TlsAcceptor>) -> io::Result<Arc<Self>> {
        let listener = TcpListener::from_std(bind_std(addr)?)?;
        let addr = listener.local_addr()?;
        Ok(Arc::new(ListenerSlot {
            addr,
            tls,
            current: Mutex::new(Some(Arc::new(listener))),
            changed: watch::channel(0).0,
        }))
    }

    fn current(&self) -> Option<Arc<TcpListener>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop listening now. `shutdown(SHUT_RD)` on a listening socket makes Linux leave the
    /// LISTEN state at once (new connects are refused even though the accept task may still
    /// hold the descriptor for a moment); the accept task then drops it.
    pub(crate) fn close(&self) {
        let taken = self.current.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(l) = taken {
            if let Err(e) = SockRef::from(&*l).shutdown(Shutdown::Read) {
                log::debug!("shutdown of listener {} failed: {e}", self.addr);
            }
        }
        self.changed.send_modify(|g| *g += 1);
    }

    /// Listen again on the same address (no-op if already listening).
    pub(crate) fn reopen(&self, handle: &tokio::runtime::Handle) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.is_some() {
            return;
        }
        let result = bind_std(self.addr).and_then(|std| {
            let _guard = handle.enter();
            TcpListener::from_std(std)
        });
        match result {
            Ok(l) => *cur = Some(Arc::new(l)),
            Err(e) => log::error!("cannot re-open listener on {}: {e}", self.addr),
        }
        drop(cur);
        self.changed.send_modify(|g| *g += 1);
    }
}

/// Accept connections on `slot` until shutdown, following close/re-open of the slot.
pub(crate) async fn accept_loop(shared: Arc<Shared>, slot: Arc<ListenerSlot>) {
    let mut shutdown = shared.shutdown_tx.subscribe();
    let mut changed = slot.changed.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        changed.borrow_and_update();
        let Some(listener) = slot.current() else {
            tokio::select! {
                _ = changed.changed() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let shared = shared.clone();
                    let slot = slot.clone();
                    tokio::spawn(async move { handle_tcp(shared, slot, tcp, peer).await });
                }
                Err(e) => {
                    let still_current = slot
                        .current()
                        .is_some_and(|c| Arc::ptr_eq(&c, &listener));
                    if still_current {
                        // E.g. out of file descriptors: back off instead of spinning.
                        log::warn!("accept on {} failed: {e}", slot.addr);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
            _ = changed.changed() => {}
            _ = shutdown.changed() => {}
        }
    }
    log::debug!("accept loop on {} stopped", slot.addr);
}

async fn handle_tcp(shared: Arc<Shared>, slot: Arc<ListenerSlot>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    match &slot.tls {
        None => serve_conn(shared, tcp, peer).await,
        Some(acceptor) => {
            let mut shutdown = shared.shutdown_tx.subscribe();
            let hs = tokio::select! {
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => r,
                _ = shutdown.wait_for(|v| *v) => return,
            };
            match hs {
                Ok(Ok(tls)) => serve_conn(shared, tls, peer).await,
                Ok(Err(e)) => log::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => log::debug!("TLS handshake with {peer} timed out"),
            }
        }
    }
}

/// What to do with one request.
enum Plan {
    /// A well-formed answer; the connection may be kept alive.
    Respond(Response),
    /// Hand-made (possibly malformed) bytes, then close. `status` is what the status line says.
    Raw { status: u16, bytes: Vec<u8> },
    /// Never answer.
    Hang,
}

impl Plan {
    fn status(&self) -> u16 {
        match self {
            Plan::Respond(r) => r.status,
            Plan::Raw { status, .. } => *status,
            Plan::Hang => 0,
        }
    }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(shared: Arc<Shared>, mut io: S, peer: SocketAddr) {
    let mut buf = Vec::new();
    let mut shutdown = shared.shutdown_tx.subscribe();
    let mut refused = shared.refused_tx.subscribe();
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, http::read_request(&mut io, &mut buf)) => r,
            _ = shutdown.wait_for(|v| *v) => return,
            _ = refused.wait_for(|v| *v) => return,
        };
        let req = match read {
            Err(_) | Ok(Err(ReadError::Closed)) | Ok(Err(ReadError::Io)) => return,
            Ok(Err(ReadError::Bad(code, msg))) => {
                log::debug!("bad request from {peer}: {msg}");
                let body = serde_json::json!({ "error": msg }).to_string();
                let _ = io.write_all(&Response::json(code, body).to_bytes(false)).await;
                let _ = io.shutdown().await;
                return;
            }
            Ok(Ok(req)) => req,
        };
        if shared.is_refused() {
            return;
        }
        let (plan, latency) = route(&shared, &req);
        log::debug!(
            "{peer} {} {} -> {}",
            req.method,
            req.path,
            match &plan {
                Plan::Hang => "hang".to_string(),
                p => p.status().to_string(),
            }
        );
        if !latency.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(latency) => {}
                _ = shutdown.wait_for(|v| *v) => return,
                _ = refused.wait_for(|v| *v) => return,
            }
        }
        match plan {
            Plan::Respond(resp) => {
                let keep = req.keep_alive && !shared.is_shutdown();
                if io.write_all(&resp.to_bytes(keep)).await.is_err() || io.flush().await.is_err() {
                    return;
                }
                if !keep {
                    let _ = io.shutdown().await;
                    return;
                }
            }
            Plan::Raw { bytes, .. } => {
                let _ = io.write_all(&bytes).await;
                let _ = io.flush().await;
                let _ = io.shutdown().await;
                return;
            }
            Plan::Hang => {
                // Keep reading (and discarding) so we notice when the client gives up.
                let mut sink = [0u8; 1024];
                loop {
                    tokio::select! {
                        r = io.read(&mut sink) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        },
                        _ = shutdown.wait_for(|v| *v) => return,
                        _ = refused.wait_for(|v| *v) => return,
                    }
                }
            }
        }
    }
}

fn route(shared: &Arc<Shared>, req: &Request) -> (Plan, Duration) {
    if req.path.starts_with("/_control/") || req.path == "/_control" {
        return (Plan::Respond(control_http::handle(shared, req)), Duration::ZERO);
    }
    let (ep, method) = match req.path.as_str() {
        p if p == Backend::check_path() => (Endpoint::Check, "GET"),
        p if p == Backend::token_path() => (Endpoint::Token, "POST"),
        _ => {
            shared.count(None, 404);
            let body = r#"{"detail":"Not found."}"#;
            return (Plan::Respond(Response::json(404, body)), Duration::ZERO);
        }
    };
    if req.method != method {
        shared.count(Some(ep), 405);
        let body = r#"{"detail":"Method not allowed."}"#;
        let resp = Response::json(405, body).with_header("Allow", method);
        return (Plan::Respond(resp), Duration::ZERO);
    }
    let plan = match shared.admit(ep) {
        Admission::Reject(retry_after) => {
            let mut resp = Response::json(503, r#"{"detail":"over capacity"}"#);
            if let Some(secs) = retry_after {
                resp = resp.with_header("Retry-After", secs.to_string());
            }
            Plan::Respond(resp)
        }
        Admission::Admit => match shared.fault(ep) {
            Some(fault) => fault_plan(ep, &fault),
            None => match ep {
                Endpoint::Check => Plan::Respond(check(shared, req)),
                Endpoint::Token => Plan::Respond(token(shared, req)),
            },
        },
    };
    shared.count(Some(ep), plan.status());
    (plan, shared.latency(ep))
}

fn check(shared: &Shared, req: &Request) -> Response {
    match shared.check(req.bearer()) {
        CheckOutcome::Access(b) => Response::json(200, format!("{{\"has_access\":{b}}}")),
        CheckOutcome::Unauthorized => Response::json(
            401,
            r#"{"detail":"Authentication credentials were not provided or are invalid."}"#,
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"api\""),
    }
}

fn token(shared: &Shared, req: &Request) -> Response {
    let outcome = match http::parse_form(&req.body) {
        Some(form) => shared.refresh(&form),
        None => TokenOutcome::BadRequest("invalid_request"),
    };
    match outcome {
        TokenOutcome::Issued(p) => {
            let body = serde_json::json!({
                "access_token": p.access_token,
                "refresh_token": p.refresh_token,
                "expires_in": p.expires_in_secs,
                "token_type": "Bearer",
            });
            Response::json(200, body.to_string())
        }
        TokenOutcome::BadRequest(code) => {
            Response::json(400, serde_json::json!({ "error": code }).to_string())
        }
        TokenOutcome::InvalidClient => Response::json(401, r#"{"error":"invalid_client"}"#),
    }
}

/// The captive-portal page served by [`Fault::HtmlPortal`].
pub(crate) const PORTAL_HTML: &str = "<!DOCTYPE html>\n<html><head><title>Wi-Fi sign-in</title></head>\
<body><h1>Welcome to Guest Wi-Fi</h1><p>Please accept the terms of use to continue.</p>\
<form method=\"post\" action=\"/login\"><button>Accept and connect</button></form></body></html>\n";

/// Size of the [`Fault::Oversized`] body.
pub(crate) const OVERSIZED_LEN: usize = 64 * 1024;

/// Hostile JSON bodies: (check endpoint, token endpoint).
fn hostile_json(ep: Endpoint, fault: &Fault) -> &'static str {
    let token = ep == Endpoint::Token;
    match fault {
        Fault::WrongType if token => {
            r#"{"access_token":1,"refresh_token":true,"expires_in":"3600","token_type":"Bearer"}"#
        }
        Fault::WrongType => r#"{"has_access":"true"}"#,
        Fault::NullValue if token => {
            r#"{"access_token":null,"refresh_token":null,"expires_in":null,"token_type":"Bearer"}"#
        }
        Fault::NullValue => r#"{"has_access":null}"#,
        Fault::DuplicateKey if token => {
            r#"{"access_token":"at_hostile1","access_token":"at_hostile2","refresh_token":"rt_hostile","expires_in":3600,"token_type":"Bearer"}"#
        }
        Fault::DuplicateKey => r#"{"has_access":false,"has_access":true}"#,
        Fault::TrailingGarbage if token => {
            r#"{"access_token":"at_hostile","refresh_token":"rt_hostile","expires_in":3600,"token_type":"Bearer"}xyz"#
        }
        Fault::TrailingGarbage => r#"{"has_access":true}xyz"#,
        Fault::Truncated if token => r#"{"access_token":"#,
        Fault::Truncated => r#"{"has_access":tr"#,
        Fault::BrokenChunked if token => {
            r#"{"access_token":"at_hostile","refresh_token":"rt_hostile","expires_in":3600,"token_type":"Bearer"}"#
        }
        Fault::BrokenChunked => r#"{"has_access":true}"#,
        // MissingField and anything else.
        _ => r#"{"other":1}"#,
    }
}

fn oversized_body(ep: Endpoint) -> Vec<u8> {
    let prefix: &[u8] = match ep {
        Endpoint::Check => br#"{"has_access":true,"padding":""#,
        Endpoint::Token => {
            br#"{"access_token":"at_hostile","refresh_token":"rt_hostile","expires_in":3600,"token_type":"Bearer","padding":""#
        }
    };
    let suffix = br#""}"#;
    let mut body = Vec::with_capacity(OVERSIZED_LEN);
    body.extend_from_slice(prefix);
    body.resize(OVERSIZED_LEN - suffix.len(), b'x');
    body.extend_from_slice(suffix);
    body
}

fn fault_plan(ep: Endpoint, fault: &Fault) -> Plan {
    let raw = |content_type: &str, body: &[u8]| {
        let mut bytes = http::head_bytes(200, content_type, &[], Some(body.len()), false);
        bytes.extend_from_slice(body);
        Plan::Raw { status: 200, bytes }
    };
    match fault {
        // Normally handled globally (listeners closed); if a request slips through, drop it.
        Fault::Refused | Fault::Hang => Plan::Hang,
        Fault::Status { code, retry_after } => {
            let body = format!("{{\"detail\":\"injected status {code}\"}}");
            let mut resp = Response::json(*code, body);
            if let Some(secs) = retry_after {
                resp = resp.with_header("Retry-After", secs.to_string());
            }
            Plan::Respond(resp)
        }
        Fault::HtmlPortal => raw("text/html; charset=utf-8", PORTAL_HTML.as_bytes()),
        Fault::WrongType
        | Fault::NullValue
        | Fault::MissingField
        | Fault::DuplicateKey
        | Fault::TrailingGarbage => raw("application/json", hostile_json(ep, fault).as_bytes()),
        Fault::Oversized => raw("application/json", &oversized_body(ep)),
        Fault::Truncated => {
            let mut bytes = http::head_bytes(200, "application/json", &[], Some(100), false);
            bytes.extend_from_slice(hostile_json(ep, fault).as_bytes());
            Plan::Raw { status: 200, bytes }
        }
        Fault::BrokenChunked => {
            let chunk = hostile_json(ep, fault);
            let te = [("Transfer-Encoding", "chunked".to_string())];
            let mut bytes = http::head_bytes(200, "application/json", &te, None, false);
            bytes.extend_from_slice(format!("{:x}\r\n{chunk}\r\nzz\r\n", chunk.len()).as_bytes());
            Plan::Raw { status: 200, bytes }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_is_exact_and_valid_json() {
        for ep in Endpoint::ALL {
            let b = oversized_body(ep);
            assert_eq!(b.len(), OVERSIZED_LEN);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert!(v.get("padding").is_some());
        }
    }

    #[test]
    fn truncated_bodies_are_short() {
        for ep in Endpoint::ALL {
            assert!(hostile_json(ep, &Fault::Truncated).len() < 100);
        }
    }
}
