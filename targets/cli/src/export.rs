//! `accessgate watch --listen ADDR`: the watched gate's state over HTTP, for dashboards and
//! scrapers.
//!
//! - `GET /status`: the current status as one JSON object (access, cause, signed-in,
//!   generation, reverifying deadline, probing, the last failure with its class and detail,
//!   and when access last changed). Times are milliseconds since the gate started, like the
//!   timeline's first column.
//! - `GET /metrics`: the gate's counters (R13) and a few gauges in the Prometheus text
//!   exposition format (0.0.4), rendered by `prometheus-client` from the snapshot at scrape
//!   time.
//!
//! Anything else is `404` (unknown path) or `405` (other method). The server reads state only:
//! nothing a client sends can change the gate. Connections are capped (16) and serve one
//! request each, and a client that does not finish its request head within 5 s is dropped, so
//! a slow or hostile scraper cannot pile up tasks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use accessgate::{access_name, Access, Instant, TransientClass};
use accessgate_std::{AccessGate, Snapshot};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::util::CliError;

/// Open connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;
/// A client must send its request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the Prometheus text format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running exporter; stops (and closes its socket) when dropped.
pub struct Exporter {
    /// The address it listens on (the real port when asked for port 0).
    pub addr: SocketAddr,
    tasks: [JoinHandle<()>; 1],
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the handlers read: the gate's snapshot (the instant of the last access change is the
/// core's `Status::since`).
#[derive(Clone)]
struct Shared {
    gate: AccessGate,
}

/// `watch --listen`: starts the exporter when `addr` is given and says where on stderr
/// (`serving /status and /metrics on http://ADDR`, the real port when asked for port 0).
pub async fn listen(gate: &AccessGate, addr: Option<SocketAddr>) -> Result<Option<Exporter>, CliError> {
    let Some(addr) = addr else { return Ok(None) };
    let exporter = start(gate, addr).await?;
    eprintln!(
        "accessgate: serving /status and /metrics on http://{}",
        exporter.addr
    );
    Ok(Some(exporter))
}

/// Binds `addr` and serves `/status` and `/metrics` for `gate` until the returned
/// [`Exporter`] is dropped. Call it before signing in, so the first access change is seen.
pub async fn start(gate: &AccessGate, addr: SocketAddr) -> Result<Exporter, CliError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Runtime(format!("--listen {addr}: cannot bind: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Runtime(format!("--listen {addr}: {e}")))?;
    let shared = Shared { gate: gate.clone() };
    let serve = tokio::spawn(accept_loop(listener, shared));
    Ok(Exporter { addr, tasks: [serve] })
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&shared, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                // One request per connection: an idle keep-alive client cannot hold a slot.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A client that breaks off or times out only loses its own connection.
            let _ = conn.await;
            drop(permit);
        });
    }
}

fn respond(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/status" && path != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: GET /status or GET /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into());
    }
    let snap = shared.gate.snapshot();
    if path == "/status" {
        text(StatusCode::OK, "application/json", status_json(&snap).to_string())
    } else {
        match metrics_text(&snap) {
            Ok(body) => text(StatusCode::OK, PROMETHEUS_TEXT, body),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "encoding failed\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn ms(t: Instant) -> u64 {
    (t - Instant::ZERO).as_millis()
}

/// `GET /status`: what the app would render, plus why (R13).
fn status_json(snap: &Snapshot) -> serde_json::Value {
    let s = &snap.status;
    let c = &snap.counters;
    serde_json::json!({
        "access": access_name(s.access),
        "cause": s.cause.map(|c| c.name()),
        "signed_in": s.signed_in,
        "generation": s.generation.0,
        "reverifying_until_ms": s.reverifying_until.map(ms),
        "probing": s.probing,
        "attempt_in_flight": s.attempt_in_flight,
        "next_attempt_ms": s.next_attempt.map(ms),
        "last_failure": s.last_failure.map(|f| serde_json::json!({
            "class": f.class.name(),
            "detail": f.detail.to_string(),
            "at_ms": ms(f.at),
        })),
        "access_changed_at_ms": s.since.map(ms),
        "expires_at_ms": snap.expires_at.map(ms),
        "refresh_in_flight": snap.refresh_in_flight,
        "now_ms": ms(snap.now),
        "counters": {
            "attempts": c.attempts,
            "grants": c.grants,
            "denials": c.denials,
            "transient_failures": c.transient_total(),
            "stale_dropped": c.stale_dropped,
            "failed_closed": c.failed_closed,
            "recoveries": c.recoveries,
            "refreshes": c.refreshes,
            "refresh_failures": c.refresh_failures,
        },
    })
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u32) {
    let c: Counter = Counter::default();
    c.inc_by(u64::from(value));
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// `GET /metrics`: the snapshot's counters and gauges, rendered at scrape time.
fn metrics_text(snap: &Snapshot) -> Result<String, std::fmt::Error> {
    let c = &snap.counters;
    let s = &snap.status;
    let mut r = Registry::with_prefix("accessgate");
    counter(&mut r, "attempts", "Check attempts started", c.attempts);
    let transient = Family::<[(&'static str, &'static str); 1], Counter>::default();
    for class in TransientClass::ALL {
        transient
            .get_or_create(&[("class", class.name())])
            .inc_by(u64::from(c.transient_of(class)));
    }
    r.register(
        "transient_failures",
        "Transient check failures by class (R4)",
        transient,
    );
    counter(&mut r, "grants", "Definitive grants received", c.grants);
    counter(&mut r, "denials", "Definitive denials received (R2)", c.denials);
    counter(
        &mut r,
        "stale_dropped",
        "Stale results dropped (R10)",
        c.stale_dropped,
    );
    counter(
        &mut r,
        "failed_closed",
        "Times the gate failed closed (R5)",
        c.failed_closed,
    );
    counter(
        &mut r,
        "recoveries",
        "Grants after failing closed (R7)",
        c.recoveries,
    );
    counter(&mut r, "logouts", "Sessions ended by the app", c.logouts);
    counter(
        &mut r,
        "unauthorized_logouts",
        "Sessions ended by a 401 or a rejected refresh (R8, R11)",
        c.unauthorized_logouts,
    );
    counter(&mut r, "refreshes", "Token refreshes started (R11)", c.refreshes);
    counter(
        &mut r,
        "refresh_failures",
        "Token refreshes that failed transiently (R11)",
        c.refresh_failures,
    );
    counter(
        &mut r,
        "events_lost",
        "Events that found the queue full (stays 0)",
        c.events_lost,
    );

    let access = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    for a in [Access::Unknown, Access::Granted, Access::Denied] {
        access
            .get_or_create(&[("state", access_name(a))])
            .set(i64::from(s.access == a));
    }
    r.register(
        "access",
        "Current access: 1 for the current state, 0 for the others",
        access,
    );
    gauge(
        &mut r,
        "signed_in",
        "1 while a session is active",
        i64::from(s.signed_in),
    );
    gauge(
        &mut r,
        "reverifying",
        "1 while a transient failure is retried before the fail-closed deadline (R5)",
        i64::from(s.reverifying_until.is_some()),
    );
    gauge(
        &mut r,
        "probing",
        "1 after failing closed, while probing for recovery (R7)",
        i64::from(s.probing),
    );
    gauge(
        &mut r,
        "generation",
        "Current session generation (R10)",
        i64::from(s.generation.0),
    );
    gauge(
        &mut r,
        "refresh_in_flight",
        "1 while a token refresh is in flight (R11)",
        i64::from(snap.refresh_in_flight),
    );

    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &r)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use accessgate::{Cause, Counters, FailureDetail, LastFailure, NetFailure, Status};

    fn snapshot() -> Snapshot {
        let mut counters = Counters {
            attempts: 4,
            grants: 1,
            ..Counters::default()
        };
        counters.transient[TransientClass::ServerError.index()] = 3;
        Snapshot {
            status: Status {
                access: Access::Granted,
                cause: Some(Cause::ServerGranted),
                signed_in: true,
                reverifying_until: Some(Instant::from_secs(125)),
                last_failure: Some(LastFailure {
                    class: TransientClass::Connect,
                    detail: FailureDetail::Net(NetFailure::Refused),
                    at: Instant::from_millis(5250),
                }),
                since: Some(Instant::from_millis(1500)),
                ..Status::default()
            },
            counters,
            now: Instant::from_secs(6),
            expires_at: None,
            refresh_in_flight: false,
        }
    }

    #[test]
    fn metrics_are_prometheus_text_with_counters_and_state() {
        let text = metrics_text(&snapshot()).unwrap();
        for line in [
            "# TYPE accessgate_attempts_total counter",
            "accessgate_attempts_total 4",
            "accessgate_transient_failures_total{class=\"server_error\"} 3",
            "accessgate_transient_failures_total{class=\"connect\"} 0",
            "accessgate_access{state=\"granted\"} 1",
            "accessgate_access{state=\"denied\"} 0",
            "accessgate_reverifying 1",
            "accessgate_signed_in 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing in:\n{text}");
        }
        // The 0.0.4 text format has no OpenMetrics `# EOF` trailer.
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn status_names_access_cause_and_failure_detail_in_words() {
        let v = status_json(&snapshot());
        assert_eq!(v["access"], "granted");
        assert_eq!(v["cause"], "server_granted");
        assert_eq!(v["reverifying_until_ms"], 125_000);
        assert_eq!(v["last_failure"]["class"], "connect");
        assert_eq!(
            v["last_failure"]["detail"],
            FailureDetail::Net(NetFailure::Refused).to_string()
        );
        assert_eq!(v["last_failure"]["at_ms"], 5250);
        assert_eq!(v["access_changed_at_ms"], 1500);
        assert_eq!(v["counters"]["transient_failures"], 3);
    }
}
