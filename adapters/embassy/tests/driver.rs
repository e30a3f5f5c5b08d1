//! The driver against a scripted in-memory network (no sockets, real embassy-time on the
//! std driver): the wire format of checks and refreshes, the body limit, the token lifecycle
//! through the link, cancellation, event-channel overflow, and configuration checks.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use accessgate::{
    Access, BodyError, Cause, Duration, Event, FailureDetail, NetFailure, SessionConfig, SessionEvent,
    TransientClass,
};
use accessgate_embassy::{
    write_event_text, BufferKind, Buffers, Command, ConfigError, Credentials, CredentialsError, Driver,
    DriverBuffers, DriverConfig, Endpoint, Link, NoDriver, PlainCheckStorage, RefreshEndpoint,
    RefreshStorage, Seeds, Snapshot, TimedEvent, TlsConfig, TokenError, TokenSlot, Transport, TrySendError,
    TrySignInError, UnixClock, MIN_TLS_READ, MIN_TLS_WRITE,
};
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::{AddrType, Dns, TcpConnect};

mod park;
use park::block_on;

// ---- a scripted network ----

enum Reply {
    Bytes(Vec<u8>),
    Hang,
    /// These bytes, after a delay (a slow server).
    After(u64, Vec<u8>),
}

struct FakeNet {
    responder: Box<dyn Fn(&str) -> Reply>,
    refuse: Cell<bool>,
    /// Every request, as text.
    requests: RefCell<Vec<String>>,
    /// Response bytes handed to the client.
    consumed: Cell<usize>,
    /// Connections not yet dropped.
    open: Cell<usize>,
}

impl FakeNet {
    fn new(responder: impl Fn(&str) -> Reply + 'static) -> &'static FakeNet {
        Box::leak(Box::new(FakeNet {
            responder: Box::new(responder),
            refuse: Cell::new(false),
            requests: RefCell::new(Vec::new()),
            consumed: Cell::new(0),
            open: Cell::new(0),
        }))
    }
}

impl Dns for FakeNet {
    type Error = ErrorKind;
    async fn get_host_by_name(&self, _host: &str, _t: AddrType) -> Result<IpAddr, ErrorKind> {
        Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
    async fn get_host_by_address(&self, _addr: IpAddr, _result: &mut [u8]) -> Result<usize, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}

struct FakeConn<'a> {
    net: &'a FakeNet,
    request: Vec<u8>,
    reply: Option<Reply>,
    pos: usize,
}

impl Reply {
    /// The bytes of a [`Reply::Bytes`].
    fn bytes(self) -> Vec<u8> {
        match self {
            Reply::Bytes(b) => b,
            _ => panic!("not a byte reply"),
        }
    }
}

/// Response bytes of `reply`, after its delay; `None` for a hang.
async fn reply_bytes(reply: &Reply) -> Option<&[u8]> {
    match reply {
        Reply::Bytes(b) => Some(b),
        Reply::After(ms, b) => {
            embassy_time::Timer::after_millis(*ms).await;
            Some(b)
        }
        Reply::Hang => None,
    }
}

impl TcpConnect for FakeNet {
    type Error = ErrorKind;
    type Connection<'a> = FakeConn<'a>;
    async fn connect<'a>(&'a self, _remote: SocketAddr) -> Result<FakeConn<'a>, ErrorKind> {
        if self.refuse.get() {
            return Err(ErrorKind::ConnectionRefused);
        }
        self.open.set(self.open.get() + 1);
        Ok(FakeConn {
            net: self,
            request: Vec::new(),
            reply: None,
            pos: 0,
        })
    }
}

impl Drop for FakeConn<'_> {
    fn drop(&mut self) {
        self.net.open.set(self.net.open.get() - 1);
    }
}

impl ErrorType for FakeConn<'_> {
    type Error = ErrorKind;
}

impl Write for FakeConn<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Read for FakeConn<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.reply.is_none() {
            // reqwless writes and flushes the whole request before reading.
            let text = String::from_utf8_lossy(&self.request).into_owned();
            self.reply = Some((self.net.responder)(&text));
            self.net.requests.borrow_mut().push(text);
        }
        let reply = self.reply.as_ref().expect("set above");
        // The delay, once: before the first byte.
        let bytes = match reply {
            Reply::After(_, b) if self.pos > 0 => b,
            _ => match reply_bytes(reply).await {
                Some(b) => b,
                None => std::future::pending().await,
            },
        };
        // Small chunks, like a network would deliver them.
        let n = buf.len().min(bytes.len() - self.pos).min(300);
        buf[..n].copy_from_slice(&bytes[self.pos..self.pos + n]);
        self.pos += n;
        self.net.consumed.set(self.net.consumed.get() + n);
        Ok(n)
    }
}

fn http(status: &str, headers: &str, body: &str) -> Reply {
    Reply::Bytes(
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn granted() -> Reply {
    http("200 OK", "", r#"{"has_access":true}"#)
}

/// Checks are granted; a token refresh never answers (so token requests wait for it).
fn refresh_hangs() -> &'static FakeNet {
    FakeNet::new(|req| {
        if req.starts_with("POST") {
            Reply::Hang
        } else {
            granted()
        }
    })
}

// ---- harness ----

type TestLink = Link<'static, NoopRawMutex>;

fn config(refresh: bool) -> DriverConfig<'static> {
    let mut session = SessionConfig::DEFAULT;
    session.gate.attempt_timeout = Duration::from_millis(300);
    session.gate.budget = Duration::from_millis(1500);
    session.gate.retry.spread = Duration::from_millis(700);
    session.gate.retry.final_window = Duration::from_millis(200);
    let config = DriverConfig::new("http://backend.test/check", Transport::PlainHttp).with_session(session);
    if refresh {
        config.with_refresh(RefreshEndpoint::new("http://backend.test/oauth/token", "kiosk"))
    } else {
        config
    }
}

fn seeds() -> Seeds {
    Seeds::new(7).with_tls([7; 32])
}

/// The check lane's buffers and, with `refresh`, the refresh lane's.
fn driver_buffers(check: Buffers<'static>, refresh: Option<Buffers<'static>>) -> DriverBuffers<'static> {
    match refresh {
        Some(r) => DriverBuffers::new(check).with_refresh(r),
        None => DriverBuffers::new(check),
    }
}

fn check_buffers() -> Buffers<'static> {
    Box::leak(Box::new(PlainCheckStorage::new())).buffers()
}

fn refresh_buffers() -> Buffers<'static> {
    Box::leak(Box::new(RefreshStorage::new())).buffers()
}

/// Runs the driver and `script` together until the script ends (at most 10 s).
fn run<R>(
    net: &'static FakeNet,
    config: DriverConfig<'static>,
    script: impl AsyncFnOnce(&'static TestLink) -> R,
) -> R {
    run_on(new_link(), net, config, script)
}

/// A link for [`run_on`], made first so a responder can send commands on it.
fn new_link() -> &'static TestLink {
    Box::leak(Box::new(Link::new()))
}

/// [`run`] on a given link.
fn run_on<R>(
    link: &'static TestLink,
    net: &'static FakeNet,
    config: DriverConfig<'static>,
    script: impl AsyncFnOnce(&'static TestLink) -> R,
) -> R {
    let refresh = config.refresh.is_some().then(refresh_buffers);
    let buffers = driver_buffers(check_buffers(), refresh);
    let driver = Driver::<_, _, _>::new(link, net, net, config, buffers, seeds()).expect("valid config");
    let script = embassy_time::with_timeout(embassy_time::Duration::from_secs(10), script(link));
    match block_on(select(driver.run(), script)) {
        Either::Second(r) => r.expect("script finished within 10 s"),
    }
}

/// Waits for the first snapshot that satisfies `pred`.
async fn until(link: &TestLink, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let mut rx = link.status_receiver().expect("a receiver");
    loop {
        let s = rx.changed().await;
        if pred(&s) {
            return s;
        }
    }
}

/// Waits for the first event that satisfies `pred` (dropping the ones before it) and returns
/// the snapshot of that moment: the driver publishes it right after the events it led to.
async fn until_event(link: &TestLink, pred: impl Fn(&SessionEvent) -> bool) -> Snapshot {
    while !pred(&link.next_event().await.event) {}
    embassy_futures::yield_now().await;
    link.snapshot().expect("a snapshot after an event")
}

fn drain(link: &TestLink) -> Vec<TimedEvent> {
    std::iter::from_fn(|| link.try_next_event()).collect()
}

fn sign_in(access: &str, refresh: &str, expires_in: Duration) -> Command<'static, NoopRawMutex> {
    Command::sign_in(access.as_bytes(), refresh.as_bytes(), expires_in).expect("header-safe tokens")
}

const HOUR: Duration = Duration::from_secs(3600);

// ---- tests ----

#[test]
fn grant_sends_the_bearer_token_and_closes_the_connection() {
    let net = FakeNet::new(|_| granted());
    let snap = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.status.access == Access::Granted).await
    });
    assert_eq!(snap.status.cause, Some(Cause::ServerGranted));
    assert_eq!(snap.counters.attempts, 1);
    let req = net.requests.borrow()[0].clone();
    assert!(req.starts_with("GET /check HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nAuthorization: Bearer at_1\r\n"), "{req}");
    assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
    assert!(req.contains("\r\nHost: backend.test\r\n"), "{req}");
    assert_eq!(net.open.get(), 0, "the connection is dropped after the exchange");
}

#[test]
fn an_oversized_body_is_not_read_past_the_limit_and_never_grants() {
    let huge = format!(r#"{{"has_access":true,"pad":"{}"}}"#, "x".repeat(100_000));
    let net = FakeNet::new(move |_| http("200 OK", "", &huge));
    let (snap, events) = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        let s = until(link, |s| s.counters.transient_total() >= 1).await;
        (s, drain(link))
    });
    assert_eq!(snap.counters.transient_of(TransientClass::InvalidBody), 1);
    assert_ne!(snap.status.access, Access::Granted);
    // max_body + 1 = 1 025 body bytes kept, plus at most one rx buffer (2 KiB) of read-ahead.
    assert!(
        net.consumed.get() <= 2048 + 1025 + 300,
        "read {} bytes",
        net.consumed.get()
    );
    assert!(events.iter().all(|e| !matches!(
        e.event,
        SessionEvent::Gate(Event::AccessChanged {
            to: Access::Granted,
            ..
        })
    )));
}

#[test]
fn a_body_shorter_than_its_content_length_is_an_io_failure() {
    // A complete JSON object, but the server announced more: truncated, never definitive (R1).
    let net = FakeNet::new(|_| {
        Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"has_access\":true}".to_vec())
    });
    let snap = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.counters.transient_total() >= 1).await
    });
    assert_eq!(snap.counters.transient_of(TransientClass::Io), 1);
    assert_eq!(snap.status.access, Access::Unknown);
    // R13: the status says why.
    let last = snap.status.last_failure.unwrap();
    assert_eq!(last.detail, FailureDetail::Net(NetFailure::Truncated));
}

#[test]
fn broken_chunked_framing_never_grants_and_says_why() {
    // An empty chunk-size line after the first chunk: reqwless 0.14 ended the body there and
    // the check granted. R1: broken framing is never definitive.
    let net = FakeNet::new(|_| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n\r\n"
                .to_vec(),
        )
    });
    let snap = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.counters.transient_total() >= 1).await
    });
    assert_eq!(snap.status.access, Access::Unknown);
    assert_eq!(snap.counters.transient_of(TransientClass::Io), 1);
    assert_eq!(
        snap.status.last_failure.unwrap().detail,
        FailureDetail::Net(NetFailure::BadFraming)
    );
}

#[test]
fn interim_response_chunk_extensions_and_trailers_still_grant() {
    // Valid HTTP the desktop accepts must not fail closed on the device.
    let net = FakeNet::new(|_| {
        Reply::Bytes(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              7;ext=1\r\n{\"has_a\r\nc\r\nccess\":true}\r\n0\r\nX-Trailer: yes\r\n\r\n"
                .to_vec(),
        )
    });
    let snap = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.status.access != Access::Unknown).await
    });
    assert_eq!(snap.status.access, Access::Granted);
}

#[test]
fn retry_after_on_503_sets_the_next_attempt() {
    let net = FakeNet::new(|_| http("503 Service Unavailable", "Retry-After: 1\r\n", "{}"));
    let mut cfg = config(false);
    cfg.session.gate.budget = Duration::from_secs(5);
    let events = run(net, cfg, async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.counters.transient_total() >= 1).await;
        drain(link)
    });
    let (at, next) = events
        .iter()
        .find_map(|e| match e.event {
            SessionEvent::Gate(Event::CheckFailed {
                class: TransientClass::ServerError,
                next_attempt,
                ..
            }) => Some((e.at, next_attempt.unwrap())),
            _ => None,
        })
        .expect("a check_failed event");
    let gap = next - at;
    assert!(
        gap >= Duration::from_millis(990) && gap <= Duration::from_millis(1010),
        "{gap}"
    );
}

#[test]
fn connection_refused_fails_closed_at_the_deadline() {
    let net = FakeNet::new(|_| granted());
    net.refuse.set(true);
    let (snap, events) = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        let s = until(link, |s| s.status.cause == Some(Cause::FailedClosed)).await;
        (s, drain(link))
    });
    assert_eq!(snap.status.access, Access::Denied);
    assert!(snap.counters.transient_of(TransientClass::Connect) >= 1);
    // R13: every failure event says "connection refused".
    assert!(events.iter().all(|e| match e.event {
        SessionEvent::Gate(Event::CheckFailed { detail, .. }) =>
            detail == FailureDetail::Net(NetFailure::Refused),
        _ => true,
    }));
    let first_failure = events
        .iter()
        .find(|e| matches!(e.event, SessionEvent::Gate(Event::CheckFailed { .. })))
        .unwrap()
        .at;
    let late = snap.at - (first_failure + Duration::from_millis(1500));
    assert!(
        late < Duration::from_millis(200),
        "failed closed {late} after the deadline"
    );
}

#[test]
fn a_hanging_check_times_out_once_and_its_connection_is_dropped() {
    let net = FakeNet::new(|_| Reply::Hang);
    let snap = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        let s = until(link, |s| s.counters.transient_total() >= 1).await;
        // Let the lane notice the cancel.
        embassy_time::Timer::after_millis(20).await;
        s
    });
    assert_eq!(snap.counters.transient_of(TransientClass::Timeout), 1);
    // The session timed the attempt out; the lane's own timeout must not count it again.
    assert_eq!(snap.counters.stale_dropped, 0);
    assert_eq!(net.open.get(), 0);
}

#[test]
fn a_refresh_inside_the_skew_rotates_the_tokens() {
    let net = FakeNet::new(|req| {
        if req.starts_with("POST /oauth/token") {
            http(
                "200 OK",
                "Content-Type: application/json\r\n",
                r#"{"access_token":"at_2","refresh_token":"rt_2","expires_in":3600,"token_type":"Bearer"}"#,
            )
        } else {
            granted()
        }
    });
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (token, snap) = run(net, config(true), async |link| {
        // 30 s left: inside the 60 s skew, so the session refreshes at once (R11).
        link.try_send(sign_in("at_1", "rt+1", Duration::from_secs(30)))
            .unwrap();
        // R3: the new token's immediate check is over when the core says so.
        let s = until_event(
            link,
            |e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 == 2),
        )
        .await;
        assert_eq!(s.status.access, Access::Granted);
        link.try_send(Command::RequestToken(slot)).unwrap();
        (slot.wait().await, s)
    });
    assert_eq!(token.unwrap().as_slice(), b"at_2");
    assert_eq!(snap.counters.refreshes, 1);
    let requests = net.requests.borrow();
    let post = requests
        .iter()
        .find(|r| r.starts_with("POST"))
        .expect("a refresh request");
    assert!(
        post.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
        "{post}"
    );
    assert!(
        post.ends_with("\r\n\r\ngrant_type=refresh_token&refresh_token=rt%2B1&client_id=kiosk"),
        "{post}"
    );
    assert!(requests.iter().any(|r| r.contains("Authorization: Bearer at_2")));
}

#[test]
fn a_rejected_refresh_signs_out_and_waiters_get_not_authenticated() {
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            http("400 Bad Request", "", r#"{"error":"invalid_grant"}"#)
        } else {
            granted()
        }
    });
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (answer, snap) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        // Queued behind the sign-in: the refresh is in flight when it is served (R11).
        link.try_send(Command::RequestToken(slot)).unwrap();
        let answer = slot.wait().await;
        (answer, until(link, |s| !s.status.signed_in).await)
    });
    assert_eq!(answer, Err(TokenError::NotAuthenticated));
    assert_eq!(snap.status.cause, Some(Cause::Unauthorized));
    assert_eq!(snap.counters.unauthorized_logouts, 1);
}

#[test]
fn a_token_answer_that_is_not_header_safe_is_refused_not_forwarded() {
    // Valid JSON (so the core's classifier accepts it), but a space cannot go into
    // `Authorization: Bearer <token>` unescaped; raw CR/LF never get this far (invalid JSON).
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            http(
                "200 OK",
                "",
                r#"{"access_token":"at_2 X-Evil: 1","expires_in":3600,"token_type":"Bearer"}"#,
            )
        } else {
            granted()
        }
    });
    let (snap, events) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        let s = until(link, |s| s.counters.refresh_failures >= 1).await;
        (s, drain(link))
    });
    assert!(snap.status.signed_in);
    // R13: "not a usable token response".
    assert!(events.iter().any(|e| matches!(
        e.event,
        SessionEvent::RefreshFailed {
            class: TransientClass::InvalidBody,
            detail: FailureDetail::Body(BodyError::TokenSchema),
            ..
        }
    )));
    assert!(net.requests.borrow().iter().all(|r| !r.contains("X-Evil")));
}

#[test]
fn a_token_answer_longer_than_the_capacity_is_refused_not_truncated() {
    // Well-formed and header-safe, but one byte over the link's 1024-byte token capacity.
    let long = "a".repeat(accessgate::DEFAULT_TOKEN_CAPACITY + 1);
    let answer = format!(r#"{{"access_token":"{long}","expires_in":3600,"token_type":"Bearer"}}"#);
    let net = FakeNet::new(move |req| {
        if req.starts_with("POST") {
            http("200 OK", "", &answer)
        } else {
            granted()
        }
    });
    let (snap, events) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        let s = until(link, |s| s.counters.refresh_failures >= 1).await;
        (s, drain(link))
    });
    assert!(snap.status.signed_in);
    assert_eq!(snap.status.generation.0, 1, "the session kept its token");
    assert!(events.iter().any(|e| matches!(
        e.event,
        SessionEvent::RefreshFailed {
            class: TransientClass::InvalidBody,
            detail: FailureDetail::Body(BodyError::TokenSchema),
            ..
        }
    )));
    assert!(net.requests.borrow().iter().all(|r| !r.contains("Bearer aaaa")));
}

/// The first `RefreshFailed` of a session signed in 30 s before expiry (inside the 60 s skew:
/// the refresh starts at once, R11) against `net`, and the snapshot of that moment.
fn first_refresh_failure(net: &'static FakeNet) -> (SessionEvent, Snapshot) {
    run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        loop {
            let e = link.next_event().await.event;
            if matches!(e, SessionEvent::RefreshFailed { .. }) {
                embassy_futures::yield_now().await;
                return (e, link.snapshot().expect("a snapshot after an event"));
            }
        }
    })
}

#[test]
fn a_refresh_answered_503_says_http_503_in_the_event_and_the_status() {
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            http("503 Service Unavailable", "", "")
        } else {
            granted()
        }
    });
    let (event, snap) = first_refresh_failure(net);
    let SessionEvent::RefreshFailed { class, detail, .. } = event else {
        unreachable!()
    };
    assert_eq!(
        (class, detail),
        (TransientClass::ServerError, FailureDetail::Status(503))
    );
    // R13: the app reads it from the status too.
    let last = snap.status.last_failure.expect("recorded");
    assert_eq!((last.class, last.detail), (class, detail));
    assert!(snap.status.signed_in);
    let mut line = String::new();
    write_event_text(&mut line, &TimedEvent::new(snap.at, event), snap.at).unwrap();
    assert!(
        line.contains("token refresh failed: server_error (HTTP 503)"),
        "{line}"
    );
}

#[test]
fn a_truncated_token_answer_is_named_as_a_truncated_check_is() {
    // The refresh lane maps transport failures as the check lane does (R13).
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 80\r\n\r\n{\"access_token\":\"at_2\"".to_vec())
        } else {
            granted()
        }
    });
    let (event, snap) = first_refresh_failure(net);
    let truncated = FailureDetail::Net(NetFailure::Truncated);
    assert!(
        matches!(event, SessionEvent::RefreshFailed { class: TransientClass::Io, detail, .. } if detail == truncated),
        "{event:?}"
    );
    assert_eq!(snap.status.last_failure.map(|l| l.detail), Some(truncated));
}

#[test]
fn without_a_token_endpoint_a_refresh_fails_at_once_and_the_token_stays_usable() {
    let net = FakeNet::new(|_| granted());
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (token, snap, events) = run(net, config(false), async |link| {
        // 30 s left: inside the 60 s skew, so the session asks for a refresh at once (R11).
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        let s = until(link, |s| {
            s.counters.refresh_failures >= 1 && s.status.access == Access::Granted
        })
        .await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        (slot.wait().await, s, drain(link))
    });
    assert_eq!(token.unwrap().as_slice(), b"at_1");
    assert!(snap.status.signed_in);
    assert!(events.iter().any(|e| matches!(
        e.event,
        SessionEvent::RefreshFailed {
            class: TransientClass::OtherStatus,
            ..
        }
    )));
    assert!(net.requests.borrow().iter().all(|r| r.starts_with("GET /check")));
}

#[test]
fn logout_mid_check_cancels_it_and_token_requests_then_fail() {
    let net = FakeNet::new(|_| Reply::Hang);
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (answer, snap) = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.counters.attempts == 1).await; // the immediate check started
        embassy_time::Timer::after_millis(20).await; // the lane is now waiting on the server
        assert_eq!(net.open.get(), 1);
        link.try_send(Command::Logout).unwrap();
        let s = until(link, |s| !s.status.signed_in).await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        let answer = slot.wait().await;
        embassy_time::Timer::after_millis(20).await;
        (answer, s)
    });
    assert_eq!(answer, Err(TokenError::NotSignedIn));
    assert_eq!(snap.status.cause, Some(Cause::LoggedOut));
    assert_eq!(
        net.open.get(),
        0,
        "the hanging connection was dropped at logout (R10)"
    );
}

#[test]
fn a_full_event_channel_counts_drops_and_never_stalls_the_driver() {
    let net = FakeNet::new(|_| granted());
    let snap = run(net, config(false), async |link| {
        // Nobody reads events: 20 sessions produce far more than the channel holds.
        for i in 0..20 {
            link.send(sign_in(&format!("at_{i}"), "rt", HOUR)).await.unwrap();
            link.send(Command::Logout).await.unwrap();
        }
        link.send(sign_in("at_last", "rt", HOUR)).await.unwrap();
        until(link, |s| s.status.signed_in && s.status.access == Access::Granted).await
    });
    assert!(snap.events_dropped > 0);
}

#[test]
fn a_recheck_too_soon_is_refused_and_counted() {
    let net = FakeNet::new(|_| granted());
    let snap = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.status.access == Access::Granted).await;
        link.try_send(Command::Recheck).unwrap();
        until(link, |s| s.commands_refused == 1).await
    });
    assert!(matches!(
        snap.last_refusal,
        Some(accessgate_embassy::Refusal::Recheck(
            accessgate::RecheckError::RateLimited { .. }
        ))
    ));
}

#[test]
fn a_full_command_channel_hands_the_command_back() {
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    for _ in 0..accessgate_embassy::COMMAND_CAPACITY {
        link.try_send(Command::Recheck).unwrap();
    }
    match link.try_send(Command::Logout) {
        Err(accessgate_embassy::TrySendError::Full(Command::Logout)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn tokens_that_could_inject_headers_are_refused() {
    let c = Credentials::<64>::new(b"at\r\nX: 1", b"rt", HOUR);
    assert_eq!(c.err(), Some(CredentialsError::NotHeaderSafe));
    assert_eq!(
        Credentials::<64>::new(b"", b"rt", HOUR).err(),
        Some(CredentialsError::NotHeaderSafe)
    );
    assert_eq!(
        Credentials::<4>::new(b"at_12345", b"rt", HOUR).err(),
        Some(CredentialsError::TooLong)
    );
}

#[test]
fn try_sign_in_refuses_what_credentials_refuse_and_hands_back_nothing_when_full() {
    let link: &'static Link<'static, NoopRawMutex, 8> = Box::leak(Box::new(Link::new()));
    use accessgate_embassy::TrySignInError as E;
    assert_eq!(
        link.try_sign_in(b"at\r\nX: 1", b"rt", HOUR),
        Err(E::Credentials(CredentialsError::NotHeaderSafe))
    );
    assert_eq!(
        link.try_restore(b"at", b"", HOUR),
        Err(E::Credentials(CredentialsError::NotHeaderSafe))
    );
    assert_eq!(
        link.try_sign_in(b"at_123456", b"rt", HOUR),
        Err(E::Credentials(CredentialsError::TooLong))
    );
    for _ in 0..accessgate_embassy::COMMAND_CAPACITY {
        link.try_sign_in(b"at_1", b"rt_1", HOUR).unwrap();
    }
    assert_eq!(link.try_restore(b"at_1", b"rt_1", HOUR), Err(E::Full));
}

#[test]
fn a_sign_in_queued_from_slices_signs_in_with_those_tokens() {
    let net = FakeNet::new(|_| granted());
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let token = run(net, config(false), async |link| {
        link.try_sign_in(b"at_slices", b"rt_slices", HOUR).unwrap();
        until(link, |s| s.status.access == Access::Granted).await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        slot.wait_with(|t| t.map(<[u8]>::to_vec)).await
    });
    assert_eq!(token.as_deref(), Ok(&b"at_slices"[..]));
    assert!(net.requests.borrow()[0].contains("\r\nAuthorization: Bearer at_slices\r\n"));
    // Taken once: the slot holds no answer any more.
    assert_eq!(slot.try_take(), None);
}

#[test]
fn credentials_and_commands_never_print_their_tokens() {
    let c = Credentials::<64>::new(b"at_secret_1", b"rt_secret_2", HOUR).unwrap();
    let shown = format!("{c:?} {:?}", Command::<NoopRawMutex, 64>::SignIn(c.clone()));
    assert!(!shown.contains("secret") && !shown.contains("97, 116"), "{shown}");
    assert!(shown.contains("access_token_len: 11"), "{shown}");
}

#[test]
fn the_transport_is_never_guessed_from_the_url() {
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let build = |cfg: DriverConfig<'static>, check: Buffers<'static>, refresh: Option<Buffers<'static>>| {
        Driver::<_, _, _>::new(link, net, net, cfg, driver_buffers(check, refresh), seeds()).err()
    };
    let mut https_plain = config(false);
    https_plain.check_url = "https://backend.test/check";
    assert_eq!(
        build(https_plain, check_buffers(), None),
        Some(ConfigError::SchemeMismatch(Endpoint::Check))
    );
    #[cfg(feature = "tls")]
    tls_transport_checks(&build);
    let mut bad_token_url = config(true);
    bad_token_url.refresh.as_mut().unwrap().url = "https://backend.test/oauth/token";
    assert_eq!(
        build(bad_token_url, check_buffers(), Some(refresh_buffers())),
        Some(ConfigError::SchemeMismatch(Endpoint::Token))
    );
    assert_eq!(
        build(config(true), check_buffers(), None),
        Some(ConfigError::MissingRefreshBuffers)
    );
    let mut not_a_url = config(false);
    not_a_url.check_url = "backend.test/check";
    assert_eq!(
        build(not_a_url, check_buffers(), None),
        Some(ConfigError::InvalidUrl(Endpoint::Check))
    );
}

/// A real P-256 CA (the trust anchor is parsed at construction), and its parameters.
fn p256_ca() -> (rcgen::CertificateParams, &'static [u8]) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca: &'static [u8] = Box::leak(
        params
            .self_signed(&ca_key)
            .unwrap()
            .der()
            .to_vec()
            .into_boxed_slice(),
    );
    (params, ca)
}

#[cfg(feature = "tls")]
fn tls_transport_checks(
    build: &impl Fn(DriverConfig<'static>, Buffers<'static>, Option<Buffers<'static>>) -> Option<ConfigError>,
) {
    let (params, ca) = p256_ca();
    let mut http_tls = config(false);
    http_tls.transport = Transport::tls(ca);
    assert_eq!(
        build(http_tls, check_buffers(), None),
        Some(ConfigError::SchemeMismatch(Endpoint::Check))
    );
    let mut tls_no_buffers = config(false);
    tls_no_buffers.check_url = "https://backend.test/check";
    tls_no_buffers.transport = Transport::tls(ca);
    assert_eq!(
        build(tls_no_buffers, check_buffers(), None),
        Some(ConfigError::MissingTlsBuffers(Endpoint::Check))
    );
    let mut empty_ca = tls_no_buffers;
    empty_ca.transport = Transport::tls(b"");
    assert_eq!(build(empty_ca, check_buffers(), None), Some(ConfigError::EmptyCa));
    let mut not_der = tls_no_buffers;
    not_der.transport = Transport::tls(b"\x30\x00");
    assert_eq!(
        build(not_der, check_buffers(), None),
        Some(ConfigError::InvalidCa)
    );
    // R14: a CA whose signatures the device cannot check is refused at construction.
    let ed_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_ca: &'static [u8] = Box::leak(
        params
            .self_signed(&ed_key)
            .unwrap()
            .der()
            .to_vec()
            .into_boxed_slice(),
    );
    let mut unsupported = tls_no_buffers;
    unsupported.transport = Transport::tls(ed_ca);
    assert_eq!(
        build(unsupported, check_buffers(), None),
        Some(ConfigError::UnsupportedCa)
    );
}

/// R14: a TLS connection's key share and client random come from the TLS seed; a driver
/// without one (or with an all-zero placeholder) is refused, with one it is built.
#[cfg(feature = "tls")]
#[test]
fn a_tls_transport_needs_a_nonzero_tls_seed() {
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let (_, ca) = p256_ca();
    let cfg = DriverConfig::new("https://backend.test/check", Transport::tls(ca));
    let tls_buffers =
        || DriverBuffers::new(Box::leak(Box::new(accessgate_embassy::CheckStorage::new())).buffers());
    let build = |seeds: Seeds| Driver::<_, _, _>::new(link, net, net, cfg, tls_buffers(), seeds).err();
    assert_eq!(build(Seeds::new(7)), Some(ConfigError::MissingTlsSeed));
    assert_eq!(
        build(Seeds::new(7).with_tls([0; 32])),
        Some(ConfigError::MissingTlsSeed)
    );
    assert_eq!(build(Seeds::new(7).with_tls([7; 32])), None);
    // Over plain HTTP the TLS seed is not needed.
    let plain = Driver::<_, _, _>::new(
        link,
        net,
        net,
        config(false),
        check_buffers().into(),
        Seeds::new(7),
    );
    assert!(plain.is_ok());
}

/// Without the `tls` feature `Transport::Tls` still exists, and asking for it is refused by
/// name instead of downgrading to plain HTTP (R14).
#[cfg(not(feature = "tls"))]
#[test]
fn a_tls_transport_without_the_tls_feature_is_refused() {
    let cfg = DriverConfig::new("https://backend.test/check", Transport::tls(b"\x30\x00"));
    assert_eq!(cfg.validate(), Err(ConfigError::TlsNotEnabled));
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let err = Driver::<_, _, _>::new(link, net, net, cfg, check_buffers().into(), seeds()).err();
    assert_eq!(err, Some(ConfigError::TlsNotEnabled));
}

/// The TLS names (transport, config, clock, buffers, limits, error variants) exist in every
/// build; only the outcome depends on the `tls` feature: a buffer check with it, a refusal by
/// name without it.
#[test]
fn tls_names_exist_with_and_without_the_feature() {
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let (_, ca) = p256_ca();
    let leak = |n: usize| -> &'static mut [u8] { Box::leak(vec![0u8; n].into_boxed_slice()) };
    let small_tls = Buffers::new(leak(2048), leak(1040), leak(1025))
        .with_tls(leak(MIN_TLS_READ - 1), leak(MIN_TLS_WRITE));
    let tls = TlsConfig::new(ca).with_clock(UnixClock(|| None));
    let cfg = DriverConfig::new("https://backend.test/check", Transport::Tls(tls));
    let err = Driver::<_, _, _>::new(link, net, net, cfg, small_tls.into(), seeds()).err();
    let expected = if cfg!(feature = "tls") {
        ConfigError::BufferTooSmall {
            lane: Endpoint::Check,
            buffer: BufferKind::TlsRead,
            need: MIN_TLS_READ,
        }
    } else {
        ConfigError::TlsNotEnabled
    };
    assert_eq!(err, Some(expected));
}

/// Configurations compare by what they hold: a TLS configuration equals itself (same CA, same
/// clock) and differs from one reading another clock; its Debug shows that a clock is set.
#[test]
fn tls_configurations_with_the_same_clock_are_equal_and_with_another_clock_differ() {
    let (_, ca) = p256_ca();
    let unknown = UnixClock(|| None);
    let known = UnixClock(|| Some(1_780_272_000));
    let a = TlsConfig::new(ca).with_clock(unknown);
    assert_eq!(a, a);
    assert_eq!(unknown, unknown);
    assert_ne!(a, TlsConfig::new(ca).with_clock(known));
    assert_ne!(unknown, known);
    assert_ne!(a, TlsConfig::new(ca));
    assert!(format!("{a:?}").contains("clock: Some(UnixClock(..))"), "{a:?}");
}

/// R14: the TLS seed is a secret: seeds print their jitter and whether a TLS seed is there,
/// never its bytes.
#[test]
fn seeds_print_the_jitter_and_whether_a_tls_seed_is_set_never_the_seed() {
    assert_eq!(format!("{:?}", Seeds::new(7)), "Seeds { jitter: 7, tls: None }");
    let seeded = format!("{:?}", Seeds::new(7).with_tls([0xAB; 32]));
    assert_eq!(seeded, r#"Seeds { jitter: 7, tls: Some("..") }"#);
}

#[test]
fn refresh_buffers_without_a_token_endpoint_are_refused() {
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let buffers = DriverBuffers::new(check_buffers()).with_refresh(refresh_buffers());
    let err = Driver::<_, _, _>::new(link, net, net, config(false), buffers, seeds()).err();
    assert_eq!(err, Some(ConfigError::RefreshBuffersWithoutEndpoint));
}

/// A configuration kept in a `const` is checked on its own (URLs, transport, session),
/// before any buffer exists, with the same errors `Driver::new` gives.
#[test]
fn a_const_config_validates_without_buffers() {
    const GOOD: DriverConfig<'static> = DriverConfig::new("http://backend.test/check", Transport::PlainHttp)
        .with_refresh(RefreshEndpoint::new("http://backend.test/oauth/token", "kiosk"));
    assert_eq!(GOOD.validate(), Ok(()));
    assert_eq!(GOOD.session, SessionConfig::DEFAULT);
    const MIXED: DriverConfig<'static> = DriverConfig::new("http://backend.test/check", Transport::PlainHttp)
        .with_refresh(RefreshEndpoint::new("https://backend.test/oauth/token", "kiosk"));
    assert_eq!(
        MIXED.validate(),
        Err(ConfigError::SchemeMismatch(Endpoint::Token))
    );
    let mut bad_session = GOOD;
    bad_session.session.gate.budget = Duration::ZERO;
    assert!(matches!(bad_session.validate(), Err(ConfigError::Core(_))));
}

#[test]
fn buffers_too_small_for_the_configuration_are_refused() {
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let mut cfg = config(false);
    cfg.session.gate.max_body = 4096; // needs a 4 097-byte body buffer
    let err = Driver::<_, _, _>::new(link, net, net, cfg, check_buffers().into(), seeds()).err();
    assert_eq!(
        err,
        Some(ConfigError::BufferTooSmall {
            lane: Endpoint::Check,
            buffer: BufferKind::Body,
            need: 4097
        })
    );
}

/// The driver future holds both lanes' connection state (with TLS: two embedded-tls
/// connections and verifiers); it lives in the task's static storage, so its size is RAM.
/// Pinned here so a change that grows it shows up (the figure is in the crate docs).
#[test]
fn driver_future_size_stays_within_its_budget() {
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let driver = Driver::<_, _, _>::new(
        link,
        net,
        net,
        config(true),
        DriverBuffers::new(check_buffers()).with_refresh(refresh_buffers()),
        seeds(),
    )
    .unwrap();
    let driver_size = core::mem::size_of_val(&driver);
    let future = driver.run();
    let future_size = core::mem::size_of_val(&future);
    std::println!("driver {driver_size} B, run() future {future_size} B");
    let budget = if cfg!(feature = "tls") {
        40 * 1024
    } else {
        28 * 1024
    };
    assert!(
        future_size <= budget,
        "run() future is {future_size} B, budget {budget} B"
    );
}

// ---- hostile review: races, queues, hostile token endpoints ----

/// A token answer the refresh lane is given.
fn token_answer(body: &str) -> Reply {
    http("200 OK", "Content-Type: application/json\r\n", body)
}

/// The events of a session signed in 30 s before expiry (the refresh starts at once, R11)
/// whose token endpoint answers `answer`, up to the first refresh outcome, and the snapshot
/// of that moment.
fn first_refresh_outcome(
    answer: impl Fn() -> Reply + 'static,
) -> (Vec<TimedEvent>, Snapshot, &'static FakeNet) {
    let net = FakeNet::new(move |req| {
        if req.starts_with("POST") {
            answer()
        } else {
            granted()
        }
    });
    let (events, snap) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        let mut seen = Vec::new();
        loop {
            let e = link.next_event().await;
            seen.push(e);
            if matches!(
                e.event,
                SessionEvent::RefreshFailed { .. }
                    | SessionEvent::Refreshed { .. }
                    | SessionEvent::RefreshRejected
            ) {
                embassy_futures::yield_now().await;
                return (seen, link.snapshot().expect("a snapshot after an event"));
            }
        }
    });
    (events, snap, net)
}

/// The `(class, detail)` of the refresh failure among `events`.
#[track_caller]
fn refresh_failure(events: &[TimedEvent]) -> (TransientClass, FailureDetail) {
    events
        .iter()
        .find_map(|e| match e.event {
            SessionEvent::RefreshFailed { class, detail, .. } => Some((class, detail)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refresh_failed in {events:?}"))
}

#[test]
fn a_huge_token_answer_is_not_read_past_the_refresh_buffer_and_keeps_the_token() {
    let (events, snap, net) = first_refresh_outcome(|| {
        token_answer(&format!(
            r#"{{"access_token":"at_2","expires_in":3600,"pad":"{}"}}"#,
            "x".repeat(100_000)
        ))
    });
    assert_eq!(
        refresh_failure(&events),
        (
            TransientClass::InvalidBody,
            FailureDetail::Body(BodyError::TooLarge)
        )
    );
    assert_eq!(snap.status.generation.0, 1, "the session kept its token");
    assert!(snap.status.signed_in);
    // The refresh lane's body buffer (4 097 bytes) plus at most one rx buffer of read-ahead,
    // beside the check's small answer.
    assert!(
        net.consumed.get() <= 2048 + 4097 + 300 + 200,
        "read {} bytes",
        net.consumed.get()
    );
}

#[test]
fn a_token_answer_with_truncated_chunked_framing_is_refused_and_says_why() {
    // One complete chunk holding a valid token answer, then the connection ends without the
    // last chunk: R1's rule for framing holds for token answers too (never a refresh).
    let (events, snap, net) = first_refresh_outcome(|| {
        let body = r#"{"access_token":"at_2","expires_in":3600}"#;
        Reply::Bytes(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
                body.len()
            )
            .into_bytes(),
        )
    });
    let (class, detail) = refresh_failure(&events);
    assert_eq!(class, TransientClass::Io, "{detail:?}");
    assert!(
        matches!(
            detail,
            FailureDetail::Net(NetFailure::Truncated | NetFailure::BadFraming | NetFailure::Closed)
        ),
        "{detail:?}"
    );
    assert_eq!(snap.status.generation.0, 1);
    assert!(net.requests.borrow().iter().all(|r| !r.contains("Bearer at_2")));
}

#[test]
fn an_escaped_token_key_is_the_key_and_the_new_token_is_used() {
    // R1: keys compare after unescaping, so `access\u005ftoken` is `access_token`.
    let (events, snap, _) =
        first_refresh_outcome(|| token_answer(r#"{"access\u005ftoken":"at_2","expires_in":3600}"#));
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, SessionEvent::Refreshed { .. })),
        "{events:?}"
    );
    assert_eq!(snap.status.generation.0, 2);
}

#[test]
fn a_token_key_twice_under_two_spellings_is_malformed_and_neither_token_is_sent() {
    let (events, snap, net) = first_refresh_outcome(|| {
        token_answer(r#"{"access_token":"at_2","access\u005ftoken":"at_3","expires_in":3600}"#)
    });
    assert_eq!(
        refresh_failure(&events),
        (
            TransientClass::InvalidBody,
            FailureDetail::Body(BodyError::TokenSchema)
        )
    );
    assert_eq!(snap.status.generation.0, 1);
    let requests = net.requests.borrow();
    assert!(requests
        .iter()
        .all(|r| !r.contains("Bearer at_2") && !r.contains("Bearer at_3")));
}

#[test]
fn a_token_value_written_with_an_escape_is_refused_not_unescaped() {
    let (events, snap, net) =
        first_refresh_outcome(|| token_answer(r#"{"access_token":"at\u005f2","expires_in":3600}"#));
    assert_eq!(
        refresh_failure(&events),
        (
            TransientClass::InvalidBody,
            FailureDetail::Body(BodyError::TokenSchema)
        )
    );
    assert_eq!(snap.status.generation.0, 1);
    assert!(net
        .requests
        .borrow()
        .iter()
        .all(|r| !r.contains("Bearer at") || r.contains("Bearer at_1")));
}

#[test]
fn logout_mid_refresh_drops_its_connection_and_the_lane_serves_the_next_session() {
    // rt_1's refresh hangs; rt_2's is answered. The first session logs out mid-refresh.
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") && req.contains("refresh_token=rt_1") {
            Reply::Hang
        } else if req.starts_with("POST") {
            token_answer(r#"{"access_token":"at_3","refresh_token":"rt_3","expires_in":3600}"#)
        } else {
            granted()
        }
    });
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (open_mid, open_after, snap_after_logout, token, snap) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until(link, |s| {
            s.counters.refreshes == 1 && s.status.access == Access::Granted
        })
        .await;
        embassy_time::Timer::after_millis(20).await; // the refresh lane waits on the server
        let open_mid = net.open.get();
        link.try_send(Command::Logout).unwrap();
        let after_logout = until(link, |s| !s.status.signed_in).await;
        embassy_time::Timer::after_millis(20).await;
        let open_after = net.open.get();
        // A new session inside the skew: its refresh goes out on the same lane (after R11's
        // floor of about 1 s since the last start).
        link.try_send(sign_in("at_2", "rt_2", Duration::from_secs(30)))
            .unwrap();
        let s = until_event(
            link,
            |e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 >= 4),
        )
        .await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        (open_mid, open_after, after_logout, slot.wait().await, s)
    });
    assert_eq!(open_mid, 1, "the hanging refresh held one connection");
    assert_eq!(
        open_after, 0,
        "logout dropped the refresh's connection (R10, R11)"
    );
    assert_eq!(snap_after_logout.status.cause, Some(Cause::LoggedOut));
    assert_eq!(token.unwrap().as_slice(), b"at_3");
    assert_eq!(snap.status.access, Access::Granted);
    // The cancelled refresh never answered, so nothing of it was dropped as stale.
    assert_eq!(snap.counters.stale_dropped, 0);
    let posts: Vec<String> = net
        .requests
        .borrow()
        .iter()
        .filter(|r| r.starts_with("POST"))
        .cloned()
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
}

#[test]
fn a_refresh_answer_that_lands_after_logout_and_a_new_sign_in_never_replaces_the_new_tokens() {
    // The token endpoint answers with fresh tokens, but while it answers the app logs out and
    // signs another user in: the answer is in the lane's hands (or already queued) when the
    // logout is served. R10/R11: nothing of the old session may sign anybody in.
    let link = new_link();
    let net = FakeNet::new(move |req| {
        if req.starts_with("POST") {
            link.try_send(Command::Logout).unwrap();
            link.try_send(sign_in("at_new", "rt_new", HOUR)).unwrap();
            token_answer(r#"{"access_token":"at_evil","refresh_token":"rt_evil","expires_in":3600}"#)
        } else {
            granted()
        }
    });
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (token, events, snap) = run_on(link, net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        let mut events = Vec::new();
        // The new session's first check settles (generation 3: sign-in, logout, sign-in).
        loop {
            let e = link.next_event().await;
            events.push(e);
            if matches!(e.event, SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 == 3)
            {
                break;
            }
        }
        // Room for a late answer of the old refresh, if any were still coming.
        embassy_time::Timer::after_millis(50).await;
        events.extend(drain(link));
        link.try_send(Command::RequestToken(slot)).unwrap();
        (slot.wait().await, events, link.snapshot().unwrap())
    });
    // The race happened: the old refresh's answer reached the session after the logout and
    // was dropped as stale (R10), rather than the lane being cancelled in time.
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, SessionEvent::StaleRefresh { .. })),
        "{events:?}"
    );
    assert_eq!(token.unwrap().as_slice(), b"at_new");
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.event, SessionEvent::Refreshed { .. })),
        "{events:?}"
    );
    assert_eq!(snap.status.generation.0, 3);
    assert!(snap.status.signed_in);
    assert!(net.requests.borrow().iter().all(|r| !r.contains("at_evil")));
}

#[test]
fn a_check_answer_that_lands_after_logout_and_a_new_sign_in_never_grants_the_new_session() {
    // at_1's check is answered "granted" while the app logs out and signs at_2 in; at_2's own
    // check hangs. R10: the old grant must not grant the new session.
    let link = new_link();
    let net = FakeNet::new(move |req| {
        if req.contains("Bearer at_1") {
            link.try_send(Command::Logout).unwrap();
            link.try_send(sign_in("at_2", "rt_2", HOUR)).unwrap();
            granted()
        } else {
            Reply::Hang
        }
    });
    let (events, snap) = run_on(link, net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        // at_2's check starts, then times out (300 ms): its first check settles.
        let mut events = Vec::new();
        loop {
            let e = link.next_event().await;
            events.push(e);
            if matches!(e.event, SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 == 3)
            {
                break;
            }
        }
        embassy_futures::yield_now().await;
        (events, link.snapshot().unwrap())
    });
    let new_session = events
        .iter()
        .position(|e| {
            matches!(e.event, SessionEvent::Gate(Event::CheckStarted { generation, .. }) if generation.0 == 3)
        })
        .expect("the new session's check started");
    assert!(
        events[new_session..].iter().all(|e| !matches!(
            e.event,
            SessionEvent::Gate(Event::AccessChanged {
                to: Access::Granted,
                ..
            })
        )),
        "{events:?}"
    );
    // The race happened: at_1's grant reached the session after the new sign-in and was
    // dropped as stale (R10).
    assert!(
        events.iter().any(|e| matches!(
            e.event,
            SessionEvent::Gate(Event::StaleResult { generation, .. }) if generation.0 == 1
        )),
        "{events:?}"
    );
    assert_eq!(snap.counters.grants, 0, "nothing granted: {events:?}");
    assert!(snap.status.signed_in);
    assert_eq!(snap.status.access, Access::Unknown);
    assert_eq!(snap.status.generation.0, 3);
}

#[test]
fn a_full_event_channel_keeps_the_oldest_events_counts_the_rest_and_then_resumes() {
    let net = FakeNet::new(|_| granted());
    let (kept, dropped, later, dropped_later) = run(net, config(false), async |link| {
        // Nobody reads: far more events than the channel holds.
        for i in 0..20 {
            link.send(sign_in(&format!("at_{i}"), "rt", HOUR)).await.unwrap();
            link.send(Command::Logout).await.unwrap();
        }
        link.send(sign_in("at_last", "rt", HOUR)).await.unwrap();
        let s = until(link, |s| s.status.signed_in && s.status.access == Access::Granted).await;
        let kept = drain(link);
        // With room again, the next events arrive and nothing more is counted as dropped.
        link.try_send(Command::Logout).unwrap();
        let after = until(link, |s| !s.status.signed_in).await;
        (kept, s.events_dropped, drain(link), after.events_dropped)
    });
    assert_eq!(
        kept.len(),
        accessgate_embassy::EVENT_CAPACITY,
        "the channel was full"
    );
    // The oldest are kept: the first session's immediate check comes first.
    assert!(
        matches!(
            kept[0].event,
            SessionEvent::Gate(Event::CheckStarted { generation, attempt: 0 }) if generation.0 == 1
        ),
        "{:?}",
        kept[0]
    );
    assert!(dropped > 0);
    assert_eq!(dropped_later, dropped, "nothing dropped once there was room");
    assert!(
        later.iter().any(|e| matches!(
            e.event,
            SessionEvent::Gate(Event::SessionEnded {
                cause: Cause::LoggedOut
            })
        )),
        "{later:?}"
    );
}

#[test]
fn a_full_command_channel_on_a_running_driver_hands_back_the_command_intact_and_takes_it_later() {
    let net = FakeNet::new(|_| granted());
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (returned, token) = run(net, config(false), async |link| {
        // The driver cannot run between these: the channel fills.
        link.try_send(sign_in("at_1", "rt", HOUR)).unwrap();
        link.try_send(Command::Logout).unwrap();
        link.try_send(sign_in("at_2", "rt", HOUR)).unwrap();
        link.try_send(Command::Logout).unwrap();
        let Err(accessgate_embassy::TrySendError::Full(back)) = link.try_send(sign_in("at_3", "rt", HOUR))
        else {
            panic!("a full channel refuses the fifth command");
        };
        let returned = match &back {
            Command::SignIn(c) => c.clone(),
            other => panic!("another command came back: {other:?}"),
        };
        // R12: nothing lost; sent again once there is room, it is served.
        link.send(back).await.unwrap();
        until(link, |s| s.status.signed_in && s.status.access == Access::Granted).await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        (returned, slot.wait().await)
    });
    assert_eq!(
        returned,
        Credentials::new(b"at_3", b"rt", HOUR).unwrap(),
        "the command came back with its tokens"
    );
    assert_eq!(token.unwrap().as_slice(), b"at_3");
    // Served in order: at_1's and at_2's sessions came and went before at_3's.
    let bearers: Vec<String> = net
        .requests
        .borrow()
        .iter()
        .filter_map(|r| {
            r.lines()
                .find(|l| l.starts_with("Authorization"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        bearers.last().map(String::as_str),
        Some("Authorization: Bearer at_3")
    );
}

#[test]
fn a_refresh_landing_mid_check_cancels_the_old_tokens_check_and_its_late_grant_never_counts() {
    // at_1's check answers after 150 ms; the refresh (at once: 30 s left, R11) rotates to at_2
    // first. R10: the new generation cancels the old check, whose connection is dropped.
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            token_answer(r#"{"access_token":"at_2","expires_in":3600}"#)
        } else if req.contains("Bearer at_1") {
            Reply::After(150, http("200 OK", "", r#"{"has_access":true}"#).bytes())
        } else {
            granted()
        }
    });
    let (events, snap) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until_event(
            link,
            |e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 == 2),
        )
        .await;
        // Past the old check's answer time: a late grant would have landed by now.
        embassy_time::Timer::after_millis(250).await;
        (drain(link), link.snapshot().unwrap())
    });
    assert_eq!(snap.status.generation.0, 2);
    assert_eq!(snap.status.access, Access::Granted);
    assert_eq!(snap.counters.grants, 1, "only at_2's check granted");
    assert_eq!(
        snap.counters.stale_dropped, 0,
        "the old check was cancelled, not answered late"
    );
    assert_eq!(net.open.get(), 0, "its connection was dropped");
    assert!(events
        .iter()
        .all(|e| !matches!(e.event, SessionEvent::Gate(Event::StaleResult { .. }))));
    let bearers = net
        .requests
        .borrow()
        .iter()
        .filter(|r| r.contains("Bearer at_"))
        .count();
    assert_eq!(bearers, 2, "one check per token");
}

#[test]
fn until_refreshes_waits_for_the_new_tokens_check_or_the_failure() {
    use accessgate::Verdict;
    use accessgate_embassy::until_refreshes;
    // Refreshed: the wait ends only once the new generation's first check settled (R3).
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            token_answer(r#"{"access_token":"at_2","expires_in":3600}"#)
        } else {
            granted()
        }
    });
    let (verdict, snap, seen) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        let mut seen = Vec::new();
        let (v, s) = until_refreshes(link, 1, |e| seen.push(e.event)).await.unwrap();
        (v, s, seen)
    });
    assert_eq!(verdict, Verdict::Granted);
    assert_eq!(snap.status.generation.0, 2);
    assert!(matches!(
        seen.last(),
        Some(SessionEvent::Gate(Event::FirstCheckSettled { generation })) if generation.0 == 2
    ));
    // Failed twice: the second attempt comes at R11's retry floor, and the wait ends with it.
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            http("503 Service Unavailable", "", "")
        } else {
            granted()
        }
    });
    let (verdict, snap) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until_refreshes(link, 2, |_| {}).await.unwrap()
    });
    assert_eq!(verdict, Verdict::Granted);
    assert_eq!(snap.counters.refresh_failures, 2);
    // Rejected: the session ends, and so does the wait, whatever was asked for.
    let net = FakeNet::new(|req| {
        if req.starts_with("POST") {
            http("400 Bad Request", "", r#"{"error":"invalid_grant"}"#)
        } else {
            granted()
        }
    });
    let (verdict, snap) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until_refreshes(link, 8, |_| {}).await.unwrap()
    });
    assert_eq!(verdict, Verdict::Unauthorized);
    assert!(!snap.status.signed_in);
}

#[test]
fn logout_with_both_lanes_mid_flight_drops_both_connections_and_nothing_lands_later() {
    let net = FakeNet::new(|_| Reply::Hang);
    let (open_mid, open_after, snap) = run(net, config(true), async |link| {
        // 30 s left: the refresh starts at once beside the immediate check (R3, R11).
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until(link, |s| s.counters.attempts == 1 && s.counters.refreshes == 1).await;
        embassy_time::Timer::after_millis(20).await;
        let open_mid = net.open.get();
        link.try_send(Command::Logout).unwrap();
        until(link, |s| !s.status.signed_in).await;
        embassy_time::Timer::after_millis(20).await;
        let open_after = net.open.get();
        // Past the check's timeout (300 ms): nothing of either request may land.
        embassy_time::Timer::after_millis(400).await;
        (open_mid, open_after, link.snapshot().unwrap())
    });
    assert_eq!(open_mid, 2, "a check and a refresh were waiting on the server");
    assert_eq!(open_after, 0, "logout dropped both connections (R10, R11)");
    assert_eq!(snap.status.cause, Some(Cause::LoggedOut));
    assert!(!snap.status.signed_in);
    assert_eq!(
        snap.counters.stale_dropped, 0,
        "cancelled, so nothing came back late"
    );
    assert_eq!(
        snap.counters.transient_total(),
        0,
        "no timeout counted after the logout"
    );
}

#[test]
fn a_full_waiter_table_refuses_the_extra_caller_and_every_waiter_is_answered_at_logout() {
    // The refresh hangs, so callers wait for it (R11 single flight); the table holds W = 4.
    let net = refresh_hangs();
    let slots: &'static [TokenSlot<NoopRawMutex>; 5] =
        Box::leak(Box::new(std::array::from_fn(|_| TokenSlot::new())));
    let (extra, waited) = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until(link, |s| s.counters.refreshes == 1).await;
        for slot in slots.iter() {
            link.send(Command::RequestToken(slot)).await.unwrap();
        }
        // R12: the fifth caller is told at once; the four others are still waiting.
        let extra = slots[4].wait().await;
        embassy_time::Timer::after_millis(20).await;
        assert!(
            slots[..4].iter().all(|s| s.try_take().is_none()),
            "nobody answered early"
        );
        link.try_send(Command::Logout).unwrap();
        let mut waited = Vec::new();
        for slot in &slots[..4] {
            waited.push(slot.wait().await);
        }
        (extra, waited)
    });
    assert_eq!(extra, Err(TokenError::WaitersFull));
    // R11: a logout mid-refresh tells every waiter, never hands out the old token.
    assert_eq!(waited, vec![Err(TokenError::NotAuthenticated); 4]);
}

#[test]
fn a_slot_asked_again_while_it_waits_keeps_one_place_and_the_others_still_fit() {
    // The refresh hangs, so every caller waits for it (R11); the table holds W = 4.
    let net = refresh_hangs();
    let slots: &'static [TokenSlot<NoopRawMutex>; 4] =
        Box::leak(Box::new(std::array::from_fn(|_| TokenSlot::new())));
    let waited = run(net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until(link, |s| s.counters.refreshes == 1).await;
        // One task gives up on its wait and asks again, eight times: still one place (R12).
        for _ in 0..8 {
            link.send(Command::RequestToken(&slots[0])).await.unwrap();
            let gave_up = embassy_time::with_timeout(embassy_time::Duration::from_millis(5), slots[0].wait());
            assert!(gave_up.await.is_err(), "waits for the refresh");
        }
        // Three other tasks still find a place in the table of four.
        for slot in &slots[1..] {
            link.send(Command::RequestToken(slot)).await.unwrap();
        }
        embassy_time::Timer::after_millis(20).await;
        assert!(
            slots.iter().all(|s| s.try_take().is_none()),
            "nobody answered early (no WaitersFull)"
        );
        link.try_send(Command::Logout).unwrap();
        let mut waited = Vec::new();
        for slot in slots {
            waited.push(slot.wait().await);
        }
        waited
    });
    // Every caller is answered once, for the session that ended (R11).
    assert_eq!(waited, vec![Err(TokenError::NotAuthenticated); 4]);
}

#[test]
fn a_token_slot_reused_after_its_waiter_gave_up_answers_the_new_session_not_the_old_one() {
    let net = FakeNet::new(|_| granted());
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let token = run(net, config(false), async |link| {
        link.try_send(sign_in("at_old", "rt", HOUR)).unwrap();
        until(link, |s| s.status.access == Access::Granted).await;
        // The caller gives up before taking the answer (a timeout): the answer stays in the slot.
        link.try_send(Command::RequestToken(slot)).unwrap();
        embassy_time::Timer::after_millis(20).await;
        link.try_send(Command::Logout).unwrap();
        link.try_send(sign_in("at_new", "rt", HOUR)).unwrap();
        until(link, |s| {
            s.counters.grants == 2 && s.status.access == Access::Granted
        })
        .await;
        // The same slot, a new request: its answer is the new session's token (R11), never
        // the one a logout ended that nobody took.
        link.try_send(Command::RequestToken(slot)).unwrap();
        slot.wait().await
    });
    assert_eq!(token.unwrap().as_slice(), b"at_new");
}

#[test]
fn many_tasks_blocked_in_send_on_a_full_queue_are_all_served() {
    let net = FakeNet::new(|_| granted());
    let slots: &'static [TokenSlot<NoopRawMutex>; 9] =
        Box::leak(Box::new(std::array::from_fn(|_| TokenSlot::new())));
    let answers = run(net, config(false), async |link| {
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        until(link, |s| s.status.access == Access::Granted).await;
        // Nine senders at once on a four-slot queue: most wait in `send`.
        let asks: [_; 9] = std::array::from_fn(|i| async move {
            link.send(Command::RequestToken(&slots[i])).await.unwrap();
            slots[i].wait().await
        });
        embassy_futures::join::join_array(asks).await
    });
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.as_ref().map(|t| t.as_slice()),
            Ok(&b"at_1"[..]),
            "sender {i}"
        );
    }
}

#[test]
fn a_dropped_driver_shows_no_session_and_answers_the_callers_waiting_for_a_token() {
    // The refresh hangs (30 s left: it starts at once), so a token request waits for it.
    let net = refresh_hangs();
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let link = new_link();
    let before = run_on(link, net, config(true), async |link| {
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        until(link, |s| {
            s.status.access == Access::Granted && s.counters.refreshes == 1
        })
        .await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        embassy_time::Timer::after_millis(20).await;
        assert_eq!(slot.try_take(), None, "waiting for the refresh");
        link.snapshot().unwrap()
    });
    assert_eq!(before.status.access, Access::Granted);
    // The driver (its task cancelled) is gone: nothing checks any more, so the app must not
    // go on rendering a granted session, and the waiting caller is told.
    let after = link.snapshot().unwrap();
    assert!(!after.status.signed_in, "{after:?}");
    assert_ne!(after.status.access, Access::Granted);
    assert_eq!(slot.try_take(), Some(Err(TokenError::NotAuthenticated)));
}

#[test]
fn a_second_driver_on_a_driven_link_is_refused_and_a_restarted_one_serves_it() {
    let net = FakeNet::new(|_| granted());
    let link = new_link();
    let new_driver = |config| {
        let buffers = driver_buffers(check_buffers(), None);
        Driver::<_, _, _>::new(link, net, net, config, buffers, seeds())
    };
    // A refused configuration attaches nothing.
    let bad = DriverConfig::new("not a url", Transport::PlainHttp);
    assert_eq!(
        new_driver(bad).err(),
        Some(ConfigError::InvalidUrl(Endpoint::Check))
    );
    let first = new_driver(config(false)).expect("valid config");
    // Two drivers on one link took turns waking each other on its one receiver.
    assert_eq!(new_driver(config(false)).err(), Some(ConfigError::LinkInUse));
    assert_eq!(new_driver(config(false)).err(), Some(ConfigError::LinkInUse));
    drop(first); // its task cancelled
                 // Until a new driver attaches, commands are refused, not queued for nobody.
    assert!(matches!(
        link.try_send(Command::Recheck),
        Err(TrySendError::NoDriver(Command::Recheck))
    ));
    // The restarted task's driver attaches and serves the link.
    let access = run_on(link, net, config(false), async |link| {
        link.try_sign_in(b"at_restarted", b"rt", HOUR).unwrap();
        until(link, |s| s.status.access != Access::Unknown)
            .await
            .status
            .access
    });
    assert_eq!(access, Access::Granted);
    assert!(net.requests.borrow()[0].contains("Bearer at_restarted"));
}

#[test]
fn a_dropped_driver_answers_the_token_requests_still_queued_and_refuses_new_commands() {
    let net = FakeNet::new(|_| granted());
    let slots: &'static [TokenSlot<NoopRawMutex>; 3] =
        Box::leak(Box::new(std::array::from_fn(|_| TokenSlot::new())));
    let link = new_link();
    run_on(link, net, config(false), async |link| {
        link.try_sign_in(b"at_1", b"rt_1", HOUR).unwrap();
        until(link, |s| s.status.access == Access::Granted).await;
        // Queued, and the driver's task is cancelled before it runs again (the script ends).
        link.try_send(Command::RequestToken(&slots[0])).unwrap();
        link.try_send(Command::Recheck).unwrap();
        link.try_send(Command::RequestToken(&slots[1])).unwrap();
    });
    // R11: the session was signed out with the driver; the callers are told, not left waiting.
    for slot in &slots[..2] {
        assert_eq!(slot.try_take(), Some(Err(TokenError::NotAuthenticated)));
    }
    // New commands come back at once: no driver will take them.
    match link.try_send(Command::RequestToken(&slots[2])) {
        Err(TrySendError::NoDriver(Command::RequestToken(_))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(slots[2].try_take(), None);
    assert_eq!(
        link.try_sign_in(b"at_2", b"rt_2", HOUR),
        Err(TrySignInError::NoDriver)
    );
    assert_eq!(
        link.try_restore(b"at_2", b"rt_2", HOUR),
        Err(TrySignInError::NoDriver)
    );
    assert!(matches!(
        block_on(link.send(Command::Logout)),
        Err(NoDriver(Command::Logout))
    ));
    assert!(!link.snapshot().unwrap().status.signed_in);
}

#[test]
fn a_session_restored_before_the_driver_is_made_is_served_once_it_runs() {
    let net = FakeNet::new(|_| granted());
    let link = new_link();
    // At boot: the stored session is queued before the driver exists.
    link.try_restore(b"at_stored", b"rt_stored", HOUR).unwrap();
    let s = run_on(link, net, config(false), async |link| {
        until(link, |s| s.status.access == Access::Granted).await
    });
    assert!(s.status.signed_in);
    assert!(net.requests.borrow()[0].contains("Bearer at_stored"));
}

#[test]
fn an_answer_to_an_earlier_request_is_not_taken_as_a_later_ones_after_a_new_sign_in() {
    // The new session's refresh hangs (30 s left: it starts at once), so its token request
    // waits for it.
    let net = refresh_hangs();
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let link = new_link();
    // All queued before the driver runs: the second request is queued while the first has no
    // answer yet, so queueing it dropped nothing.
    link.try_sign_in(b"at_old", b"rt_old", HOUR).unwrap();
    link.try_send(Command::RequestToken(slot)).unwrap();
    link.try_sign_in(b"at_new", b"rt_new", Duration::from_secs(30))
        .unwrap();
    link.try_send(Command::RequestToken(slot)).unwrap();
    let got = run_on(link, net, config(true), async |link| {
        until(link, |s| s.counters.refreshes == 1).await;
        embassy_time::Timer::after_millis(20).await;
        slot.try_take()
    });
    // R11: the old session's token, answered to the first request, was still in the slot
    // when the second request (of the new session) started waiting, and was taken as its
    // answer. Now it is dropped when the newer request reaches the driver; the waiter's
    // answer is the new session's (here: told it ended, with the driver).
    assert_eq!(
        got, None,
        "the old session's token was handed out after the new sign-in"
    );
    assert_eq!(slot.try_take(), Some(Err(TokenError::NotAuthenticated)));
}

#[test]
fn a_driver_future_dropped_before_its_first_poll_releases_the_link_and_answers_what_was_queued() {
    let net = FakeNet::new(|_| granted());
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let link = new_link();
    // At boot, before the driver exists.
    link.try_restore(b"at_boot", b"rt_boot", HOUR).unwrap();
    link.try_send(Command::RequestToken(slot)).unwrap();
    let new_driver = || {
        let buffers = driver_buffers(check_buffers(), None);
        Driver::<_, _, _>::new(link, net, net, config(false), buffers, seeds())
    };
    let run = new_driver().expect("valid config").run();
    assert_eq!(new_driver().err(), Some(ConfigError::LinkInUse));
    drop(run); // never polled: its task cancelled before it ran
               // Attached and released once: the request is answered (R11), the restore's tokens go,
               // new commands come back, and a restarted driver attaches.
    assert_eq!(slot.try_take(), Some(Err(TokenError::NotAuthenticated)));
    assert!(matches!(
        link.try_send(Command::Recheck),
        Err(TrySendError::NoDriver(Command::Recheck))
    ));
    assert!(net.requests.borrow().is_empty());
    let access = run_on(link, net, config(false), async |link| {
        link.try_sign_in(b"at_restarted", b"rt", HOUR).unwrap();
        until(link, |s| s.status.access != Access::Unknown)
            .await
            .status
            .access
    });
    assert_eq!(access, Access::Granted);
    assert!(net.requests.borrow()[0].contains("Bearer at_restarted"));
}

// ---- R9 through the driver: a 403 asks for one early refresh ----

/// A backend for R9, as its two endpoints see it: a check answers 403 while its bearer token
/// is one of `forbidden` (or every token, with `forbid_all`), else grants; the token endpoint
/// hands out `at_2`/`rt_2`, `at_3`/`rt_3`, ... (or answers 503 with `token_down`).
#[derive(Default)]
struct R9Backend {
    forbidden: RefCell<Vec<String>>,
    forbid_all: Cell<bool>,
    token_down: Cell<bool>,
    issued: Cell<u32>,
}

impl R9Backend {
    fn forbid(&self, token: &str) {
        self.forbidden.borrow_mut().push(token.to_owned());
    }
    fn allow_all(&self) {
        self.forbidden.borrow_mut().clear();
        self.forbid_all.set(false);
    }
}

/// What the server saw, in arrival order: `("GET", bearer)` or `("POST", refresh_token)`.
fn server_log(net: &FakeNet) -> Vec<(&'static str, String)> {
    let field = |req: &str, after: &str, end: &str| {
        let start = req.find(after).map(|i| i + after.len())?;
        let len = req[start..].find(end).unwrap_or(req.len() - start);
        Some(req[start..start + len].to_owned())
    };
    net.requests
        .borrow()
        .iter()
        .map(|r| {
            if r.starts_with("POST") {
                ("POST", field(r, "refresh_token=", "&").expect("a refresh form"))
            } else {
                (
                    "GET",
                    field(r, "Authorization: Bearer ", "\r\n").expect("a bearer"),
                )
            }
        })
        .collect()
}

fn r9_net(backend: &'static R9Backend) -> &'static FakeNet {
    FakeNet::new(move |req| {
        if req.starts_with("POST") {
            if backend.token_down.get() {
                return http("503 Service Unavailable", "", "");
            }
            let n = backend.issued.get() + 2;
            backend.issued.set(backend.issued.get() + 1);
            return token_answer(&format!(
                r#"{{"access_token":"at_{n}","refresh_token":"rt_{n}","expires_in":3600,"token_type":"Bearer"}}"#
            ));
        }
        let forbidden = backend.forbid_all.get()
            || backend
                .forbidden
                .borrow()
                .iter()
                .any(|t| req.contains(&format!("\r\nAuthorization: Bearer {t}\r\n")));
        if forbidden {
            http("403 Forbidden", "", r#"{"detail":"forbidden"}"#)
        } else {
            granted()
        }
    })
}

/// The driver test configuration with re-checks allowed at any time (the tests send them).
fn r9_config(refresh: bool) -> DriverConfig<'static> {
    let mut c = config(refresh);
    c.session.gate.min_recheck_interval = Duration::ZERO;
    c
}

/// Reads events into `seen` until one satisfies `pred`; returns the snapshot of that moment
/// (published right after the events it led to).
async fn record_until(
    link: &TestLink,
    seen: &mut Vec<TimedEvent>,
    pred: impl Fn(&SessionEvent) -> bool,
) -> Snapshot {
    loop {
        let e = link.next_event().await;
        seen.push(e);
        if pred(&e.event) {
            embassy_futures::yield_now().await;
            return link.snapshot().expect("a snapshot after an event");
        }
    }
}

/// Reads events into `seen` for `ms` milliseconds.
async fn record_for(link: &TestLink, seen: &mut Vec<TimedEvent>, ms: u64) {
    let end = embassy_time::Instant::now() + embassy_time::Duration::from_millis(ms);
    while let Either::First(e) = select(link.next_event(), embassy_time::Timer::at(end)).await {
        seen.push(e);
    }
}

fn first_check_settled(generation: u32) -> impl Fn(&SessionEvent) -> bool {
    move |e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { generation: g }) if g.0 == generation)
}

fn early_refreshes(events: &[TimedEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::RefreshStarted { early: true, .. }))
        .count()
}

fn access_changes(events: &[TimedEvent]) -> Vec<(Access, Cause)> {
    events
        .iter()
        .filter_map(|e| match e.event {
            SessionEvent::Gate(Event::AccessChanged { to, cause, .. }) => Some((to, cause)),
            _ => None,
        })
        .collect()
}

#[test]
fn r9_a_403_refreshes_early_once_and_the_new_tokens_check_follows_r3_in_each_generation() {
    let backend: &'static R9Backend = Box::leak(Box::default());
    let net = r9_net(backend);
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (gen2, gen3, token2, token3, events) = run(net, r9_config(true), async |link| {
        let mut seen = Vec::new();
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        let s = record_until(link, &mut seen, first_check_settled(1)).await;
        assert_eq!(s.status.access, Access::Granted);
        // Generation 1: the server now answers its token 403; the app re-checks.
        backend.forbid("at_1");
        link.try_send(Command::Recheck).unwrap();
        let gen2 = record_until(link, &mut seen, first_check_settled(2)).await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        let token2 = slot.wait().await.map(|t| t.as_slice().to_vec());
        // Generation 2 had its definitive answer (R3); a 403 on it asks once more (R9), a
        // few milliseconds after the first refresh started: R11's floor holds it back to 1 s
        // after that start (the generation's checks retry meanwhile, R6).
        backend.forbid("at_2");
        link.try_send(Command::Recheck).unwrap();
        let gen3 = record_until(link, &mut seen, first_check_settled(3)).await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        let token3 = slot.wait().await.map(|t| t.as_slice().to_vec());
        // Nothing more happens: no third refresh, no retry of an old generation.
        record_for(link, &mut seen, 400).await;
        (gen2, gen3, token2, token3, seen)
    });
    // The app's side: the new generation's immediate check granted, the 403s changed nothing
    // (R4: transient; access was Granted throughout), and the link hands out the new token.
    for (snap, generation) in [(gen2, 2), (gen3, 3)] {
        assert_eq!(snap.status.generation.0, generation);
        assert_eq!(snap.status.access, Access::Granted);
        assert_eq!(
            snap.status.reverifying_until, None,
            "the new token's check answered"
        );
    }
    assert_eq!(gen3.counters.refreshes, 2);
    assert_eq!(token2.as_deref(), Ok(&b"at_2"[..]));
    assert_eq!(token3.as_deref(), Ok(&b"at_3"[..]));
    assert_eq!(
        access_changes(&events),
        [(Access::Granted, Cause::ServerGranted)],
        "one grant at sign-in, never a change on a 403"
    );
    // Two refreshes, each asked for by its generation's 403 (R9) and named so (R13), the
    // second at R11's floor.
    let starts: Vec<_> = events
        .iter()
        .filter_map(|e| match e.event {
            SessionEvent::RefreshStarted { early, .. } => Some((e.at, early)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{events:?}");
    assert!(starts[1].0 - starts[0].0 >= Duration::from_secs(1), "{starts:?}");
    assert_eq!(
        early_refreshes(&events),
        2,
        "both were asked for by a 403: {events:?}"
    );
    let mut order: Vec<String> = Vec::new();
    for e in &events {
        let step = match e.event {
            SessionEvent::Gate(Event::CheckFailed {
                generation,
                class: TransientClass::Forbidden,
                ..
            }) => format!("403@{}", generation.0),
            SessionEvent::RefreshStarted { .. } => "refresh".into(),
            SessionEvent::Refreshed { generation, .. } => format!("gen{}", generation.0),
            SessionEvent::Gate(Event::CheckFailed { class, .. }) => panic!("{class:?}: {events:?}"),
            _ => continue,
        };
        if order.last() != Some(&step) {
            order.push(step);
        }
    }
    assert_eq!(order, ["403@1", "refresh", "gen2", "403@2", "refresh", "gen3"]);
    // The server's side: one refresh per 403'd generation, each with that generation's
    // refresh token; each new token checked at once (R3); no old token after its successor.
    let log = server_log(net);
    let posts: Vec<_> = log
        .iter()
        .filter(|(m, _)| *m == "POST")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(posts, ["rt_1", "rt_2"], "{log:?}");
    let at = |m: &str, t: &str| log.iter().position(|(lm, lt)| lm == &m && lt == t).unwrap();
    assert_eq!(log[at("POST", "rt_1") + 1], ("GET", "at_2".to_owned()), "{log:?}");
    assert_eq!(log[at("POST", "rt_2") + 1], ("GET", "at_3".to_owned()), "{log:?}");
    assert!(
        log[at("GET", "at_2")..].iter().all(|(_, t)| t != "at_1"),
        "{log:?}"
    );
    assert!(
        log[at("GET", "at_3")..].iter().all(|(_, t)| t != "at_2"),
        "{log:?}"
    );
    assert_eq!(log.last(), Some(&("GET", "at_3".to_owned())), "{log:?}");
}

#[test]
fn r9_a_second_403_in_the_same_generation_asks_for_no_second_early_refresh() {
    // The token endpoint is down: the early refresh fails and the generation stays 1.
    let backend: &'static R9Backend = Box::leak(Box::default());
    backend.token_down.set(true);
    let net = r9_net(backend);
    let (snap, events) = run(net, r9_config(true), async |link| {
        let mut seen = Vec::new();
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        record_until(link, &mut seen, first_check_settled(1)).await;
        backend.forbid("at_1");
        link.try_send(Command::Recheck).unwrap();
        record_until(link, &mut seen, |e| {
            matches!(e, SessionEvent::RefreshFailed { .. })
        })
        .await;
        // The retries of the same generation keep getting 403: no early refresh from them.
        for _ in 0..2 {
            record_until(link, &mut seen, |e| {
                matches!(
                    e,
                    SessionEvent::Gate(Event::CheckFailed {
                        class: TransientClass::Forbidden,
                        attempt: 1..,
                        ..
                    })
                )
            })
            .await;
        }
        // A definitive answer in the same generation, then another 403: still none.
        backend.allow_all();
        until(link, |s| {
            s.counters.grants == 2 && s.status.reverifying_until.is_none()
        })
        .await;
        backend.forbid("at_1");
        link.try_send(Command::Recheck).unwrap();
        let s = record_until(link, &mut seen, |e| {
            matches!(
                e,
                SessionEvent::Gate(Event::CheckFailed {
                    class: TransientClass::Forbidden,
                    ..
                })
            )
        })
        .await;
        record_for(link, &mut seen, 300).await;
        (s, seen)
    });
    assert_eq!(snap.status.generation.0, 1, "no refresh succeeded");
    assert_eq!(snap.status.access, Access::Granted, "a 403 is not a denial (R4)");
    assert!(snap.counters.transient_of(TransientClass::Forbidden) >= 4);
    assert_eq!(early_refreshes(&events), 1, "{events:?}");
    // The failed refresh is retried as R11 says (not early, never faster than its floor).
    let starts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::RefreshStarted { .. }))
        .map(|e| e.at)
        .collect();
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(1)),
        "{starts:?}"
    );
    let posts = server_log(net).iter().filter(|(m, _)| *m == "POST").count();
    assert_eq!(posts, starts.len(), "each refresh start is one request");
}

#[test]
fn r9_a_backend_that_keeps_answering_403_gets_one_early_refresh_and_the_gate_fails_closed() {
    let backend: &'static R9Backend = Box::leak(Box::default());
    let net = r9_net(backend);
    let (snap, events) = run(net, r9_config(true), async |link| {
        let mut seen = Vec::new();
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        record_until(link, &mut seen, first_check_settled(1)).await;
        backend.forbid_all.set(true);
        link.try_send(Command::Recheck).unwrap();
        // Generation 2's own first check gets 403 too: no definitive answer since the early
        // refresh, so no second one (no refresh per generation against a 403 wall).
        let s = record_until(link, &mut seen, |e| {
            matches!(
                e,
                SessionEvent::Gate(Event::AccessChanged {
                    cause: Cause::FailedClosed,
                    ..
                })
            )
        })
        .await;
        record_for(link, &mut seen, 300).await;
        (s, seen)
    });
    assert_eq!(early_refreshes(&events), 1, "{events:?}");
    assert_eq!(snap.status.generation.0, 2);
    // R5: the 403s are transient; the deadline fixed by generation 1's 403 does not move when
    // the early refresh starts generation 2 (its checks carry it on), and with no definitive
    // answer the gate fails closed there.
    assert_eq!(
        (snap.status.access, snap.status.cause),
        (Access::Denied, Some(Cause::FailedClosed))
    );
    let failures: Vec<_> = events
        .iter()
        .filter_map(|e| match e.event {
            SessionEvent::Gate(Event::CheckFailed {
                generation,
                class,
                deadline,
                ..
            }) => Some((e.at, generation.0, class, deadline)),
            _ => None,
        })
        .collect();
    let (first_at, first_gen, _, deadline) = failures[0];
    assert_eq!(first_gen, 1);
    assert_eq!(deadline, Some(first_at + Duration::from_millis(1500)));
    assert!(failures.iter().any(|f| f.1 == 2), "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|f| f.2 == TransientClass::Forbidden && (f.3 == deadline || f.0 >= deadline.unwrap())),
        "{failures:?}"
    );
    let late = snap.at - deadline.unwrap();
    assert!(
        snap.at >= deadline.unwrap() && late < Duration::from_millis(200),
        "failed closed {late} after the deadline"
    );
    let log = server_log(net);
    assert_eq!(
        log.iter().filter(|(m, _)| *m == "POST").count(),
        1,
        "one token request: {log:?}"
    );
    let post = log.iter().position(|(m, _)| *m == "POST").unwrap();
    assert!(log[post + 1..].iter().all(|(_, t)| t == "at_2"), "{log:?}");
}

#[test]
fn r9_without_a_token_endpoint_a_403_keeps_the_token_and_retries_at_the_r11_pace() {
    let backend: &'static R9Backend = Box::leak(Box::default());
    let net = r9_net(backend);
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let (snap, token, events) = run(net, r9_config(false), async |link| {
        let mut seen = Vec::new();
        link.try_send(sign_in("at_1", "rt_1", HOUR)).unwrap();
        record_until(link, &mut seen, first_check_settled(1)).await;
        backend.forbid("at_1");
        link.try_send(Command::Recheck).unwrap();
        record_until(link, &mut seen, |e| {
            matches!(e, SessionEvent::RefreshFailed { .. })
        })
        .await;
        // The 403 was a blip: the retry grants.
        backend.allow_all();
        record_for(link, &mut seen, 3500).await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        let token = slot.wait().await.map(|t| t.as_slice().to_vec());
        (link.snapshot().unwrap(), token, seen)
    });
    // Safe: the session keeps its token and its grant, and nothing reaches a token endpoint.
    assert!(snap.status.signed_in);
    assert_eq!(snap.status.generation.0, 1);
    assert_eq!(snap.status.access, Access::Granted);
    assert_eq!(token.as_deref(), Ok(&b"at_1"[..]));
    assert_eq!(access_changes(&events), [(Access::Granted, Cause::ServerGranted)]);
    let log = server_log(net);
    assert!(log.iter().all(|r| *r == ("GET", "at_1".to_owned())), "{log:?}");
    // As RefreshEndpoint's docs say: the 403's early refresh (R9) fails at once as
    // `other_status`, and is retried as R11 says, never faster than its floor (1 s, 2 s, ...
    // apart): 0, 1 and 3 s after the 403 in these 3.5 s.
    let starts: Vec<_> = events
        .iter()
        .filter_map(|e| match e.event {
            SessionEvent::RefreshStarted { early, .. } => Some((e.at, early)),
            _ => None,
        })
        .collect();
    assert!(starts[0].1, "the first is the 403's: {events:?}");
    assert!(starts[1..].iter().all(|s| !s.1), "{events:?}");
    let gaps: Vec<_> = starts.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!((1..=2).contains(&gaps.len()), "{starts:?}");
    let floors = [Duration::from_secs(1), Duration::from_secs(2)];
    assert!(gaps.iter().zip(floors).all(|(g, f)| *g >= f), "{gaps:?}");
    let failures = events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                SessionEvent::RefreshFailed {
                    class: TransientClass::OtherStatus,
                    ..
                }
            )
        })
        .count();
    assert_eq!(failures, starts.len());
    // Each failed refresh counts as a transient failure (R5: the fail-closed clock starts) and
    // so costs one check of the unchanged token, which grants: one check per refresh failure
    // at most, never a retry storm.
    let checks_after_403 = log.len() - 2;
    assert!(checks_after_403 <= failures + 1, "{log:?} {events:?}");
    assert_eq!(snap.status.reverifying_until, None, "{events:?}");
}

/// Leaked zeroed bytes.
fn bytes(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

#[test]
fn buffers_at_their_minimum_are_taken_and_one_byte_less_is_refused_naming_the_buffer() {
    // R1/R12: each buffer is checked at construction against what the worst answer needs:
    // rx at least MIN_RX; tx a whole request head with a token of `T` bytes (check: "Bearer "
    // + T; refresh: the form with every byte of the token and client_id percent-escaped);
    // body max_body + 1 (an oversized answer is seen as such); TLS record buffers at least
    // MIN_TLS_READ / MIN_TLS_WRITE. Exactly that is enough.
    const T: usize = accessgate::DEFAULT_TOKEN_CAPACITY;
    let net = FakeNet::new(|_| granted());
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let build = |cfg: DriverConfig<'static>, check: Buffers<'static>, refresh: Option<Buffers<'static>>| {
        Driver::<_, _, _>::new(link, net, net, cfg, driver_buffers(check, refresh), seeds()).err()
    };
    let max_body = config(false).session.gate.max_body;
    let check_tx = "Bearer ".len() + T;
    let form = "grant_type=refresh_token&refresh_token=&client_id=".len() + 3 * T + 3 * "kiosk".len();
    let lane = |rx, tx, body| Buffers::new(bytes(rx), bytes(tx), bytes(body));
    let small = |lane, buffer, need| Some(ConfigError::BufferTooSmall { lane, buffer, need });
    let (rx, body) = (accessgate_embassy::MIN_RX, max_body + 1);

    assert_eq!(build(config(false), lane(rx, check_tx, body), None), None);
    assert_eq!(
        build(config(false), lane(rx - 1, check_tx, body), None),
        small(Endpoint::Check, BufferKind::Rx, rx)
    );
    assert_eq!(
        build(config(false), lane(rx, check_tx - 1, body), None),
        small(Endpoint::Check, BufferKind::Tx, check_tx)
    );
    assert_eq!(
        build(config(false), lane(rx, check_tx, body - 1), None),
        small(Endpoint::Check, BufferKind::Body, body)
    );
    let refresh = |tx| Some(lane(rx, tx, 64));
    assert_eq!(build(config(true), lane(rx, check_tx, body), refresh(form)), None);
    assert_eq!(
        build(config(true), lane(rx, check_tx, body), refresh(form - 1)),
        small(Endpoint::Token, BufferKind::Tx, form)
    );
    #[cfg(feature = "tls")]
    tls_buffers_at_their_minimum(&build, lane(rx, check_tx, body));
}

/// The TLS record buffers' part of
/// [`buffers_at_their_minimum_are_taken_and_one_byte_less_is_refused_naming_the_buffer`].
#[cfg(feature = "tls")]
fn tls_buffers_at_their_minimum(
    build: &impl Fn(DriverConfig<'static>, Buffers<'static>, Option<Buffers<'static>>) -> Option<ConfigError>,
    plain: Buffers<'static>,
) {
    let (rx, tx, body) = (plain.rx.len(), plain.tx.len(), plain.body.len());
    let small = |buffer, need| {
        Some(ConfigError::BufferTooSmall {
            lane: Endpoint::Check,
            buffer,
            need,
        })
    };
    let (_, ca) = p256_ca();
    let mut tls = config(false);
    tls.check_url = "https://backend.test/check";
    tls.transport = Transport::tls(ca);
    let tls_lane =
        |read, write| Buffers::new(bytes(rx), bytes(tx), bytes(body)).with_tls(bytes(read), bytes(write));
    assert_eq!(build(tls, tls_lane(MIN_TLS_READ, MIN_TLS_WRITE), None), None);
    assert_eq!(
        build(tls, tls_lane(MIN_TLS_READ - 1, MIN_TLS_WRITE), None),
        small(BufferKind::TlsRead, MIN_TLS_READ)
    );
    assert_eq!(
        build(tls, tls_lane(MIN_TLS_READ, MIN_TLS_WRITE - 1), None),
        small(BufferKind::TlsWrite, MIN_TLS_WRITE)
    );
}

// ---- what reaches the log (feature `log`) ----

/// The adapter's log lines, as a desktop's logger gets them (R13: failures, access changes and
/// counters reach `log`). Kept per thread: each test drives its own driver on its own thread.
#[cfg(feature = "log")]
mod log_lines {
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.target().starts_with("accessgate_embassy") {
                let line = (record.level(), record.args().to_string());
                LINES.with(|l| l.borrow_mut().push(line));
            }
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture;

    /// Starts capturing this thread's lines (from an empty list).
    pub fn start() {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            log::set_logger(&CAPTURE).expect("the only logger of this test binary");
            log::set_max_level(log::LevelFilter::Trace);
        });
        LINES.with(|l| l.borrow_mut().clear());
    }

    /// This thread's lines so far.
    pub fn taken() -> Vec<(log::Level, String)> {
        LINES.with(|l| l.borrow().clone())
    }
}

/// R13: an operator reads every transient failure (check and refresh) with its class and
/// detail at the info level, and the counters once after each access change, not after inputs
/// that changed no access.
#[cfg(feature = "log")]
#[test]
fn failures_reach_the_info_log_with_class_and_detail_and_the_counters_follow_each_access_change() {
    log_lines::start();
    let checks = Cell::new(0u32);
    let net = FakeNet::new(move |req| {
        if req.starts_with("POST") {
            http("503 Service Unavailable", "", "")
        } else {
            checks.set(checks.get() + 1);
            match checks.get() {
                1 => http("503 Service Unavailable", "", ""),
                _ => granted(),
            }
        }
    });
    let events = run(net, config(true), async |link| {
        // 30 s left: inside the 60 s skew, the refresh starts at once (R11) and fails.
        link.try_send(sign_in("at_1", "rt_1", Duration::from_secs(30)))
            .unwrap();
        let mut seen = Vec::new();
        let done = |seen: &Vec<SessionEvent>| {
            seen.iter()
                .any(|e| matches!(e, SessionEvent::RefreshFailed { .. }))
                && seen.iter().any(|e| {
                    matches!(
                        e,
                        SessionEvent::Gate(Event::AccessChanged {
                            to: Access::Granted,
                            ..
                        })
                    )
                })
        };
        while !done(&seen) {
            seen.push(link.next_event().await.event);
        }
        seen
    });
    let lines = log_lines::taken();
    let info = |text: &str| lines.contains(&(log::Level::Info, text.to_owned()));
    let mut failures = 0;
    for event in &events {
        let text = match *event {
            SessionEvent::Gate(Event::CheckFailed {
                attempt,
                class,
                detail,
                ..
            }) => format!("check {attempt} failed: {} ({detail})", class.name()),
            SessionEvent::RefreshFailed { class, detail, .. } => {
                format!("token refresh failed: {} ({detail})", class.name())
            }
            _ => continue,
        };
        failures += 1;
        assert!(info(&text), "no info line {text:?} in {lines:#?}");
    }
    assert!(failures >= 2, "a check and a refresh failed: {events:?}");
    // One access change (unknown -> granted): one counters line, the grant counted in it.
    let counters: Vec<_> = lines
        .iter()
        .filter(|(_, text)| text.starts_with("counters: "))
        .collect();
    assert_eq!(counters.len(), 1, "{lines:#?}");
    assert_eq!(counters[0].0, log::Level::Info);
    assert!(counters[0].1.contains(", grants 1, "), "{}", counters[0].1);
}
