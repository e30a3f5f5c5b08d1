//! Token hygiene, observed the way an attacker with a RAM dump would: the test owns the lane
//! buffers, the [`Link`] and the [`TokenSlot`], runs a driver (boxed, so its future's memory
//! has an address) on a scripted in-memory network, and reads those bytes back through
//! `/proc/self/mem` while the driver keeps running and after it is dropped, looking for
//! every token the session saw (old and new, access and refresh).
//!
//! Reading `/proc/self/mem` needs no `unsafe` (it is a file), and sees what is in RAM, not
//! what the type system lets safe code see (the moved-out bytes of a queue slot, say).

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use accessgate::{Access, Cause, Duration, Event, SessionConfig, SessionEvent};
use accessgate_embassy::{
    Buffers, Command, Driver, DriverBuffers, DriverConfig, Link, RefreshEndpoint, Seeds, Snapshot, TokenSlot,
    Transport, TrySignInError,
};
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::{AddrType, Dns, TcpConnect};

mod memdump;
mod park;
use memdump::{assert_clean, find, Dump, Region};
use park::block_on;

// ---- the lanes' memory, owned by the test ----

/// One lane's buffers, sized like `PlainCheckStorage` / plain `RefreshStorage`.
struct LaneMemory {
    rx: Vec<u8>,
    tx: Vec<u8>,
    body: Vec<u8>,
}

impl LaneMemory {
    fn check() -> Self {
        LaneMemory {
            rx: vec![0; 2048],
            tx: vec![0; 1040],
            body: vec![0; 1025],
        }
    }

    fn refresh() -> Self {
        LaneMemory {
            rx: vec![0; 2048],
            tx: vec![0; 3300],
            body: vec![0; 4097],
        }
    }

    fn regions(&self, lane: &'static str) -> [Region; 3] {
        let name = |part: &str| -> &'static str { format!("{lane}.{part}").leak() };
        [
            Region::of(name("rx"), &self.rx[..]),
            Region::of(name("tx"), &self.tx[..]),
            Region::of(name("body"), &self.body[..]),
        ]
    }

    fn buffers(&'static mut self) -> Buffers<'static> {
        Buffers::new(&mut self.rx, &mut self.tx, &mut self.body)
    }
}

// ---- a scripted network ----

/// The answer to a whole request (read when the driver starts reading); `None`: never.
type Responder = Box<dyn Fn(&str) -> Option<Vec<u8>>>;

struct FakeNet {
    responder: Responder,
    /// A write of bytes starting with one of these never completes (a server that stopped
    /// reading: its window is full).
    stall_writes: Vec<&'static [u8]>,
    requests: RefCell<Vec<String>>,
    /// Writes that stalled.
    stalled: Cell<usize>,
}

struct FakeConn<'a> {
    net: &'a FakeNet,
    request: Vec<u8>,
    answer: Option<Option<Vec<u8>>>,
    pos: usize,
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

impl TcpConnect for FakeNet {
    type Error = ErrorKind;
    type Connection<'a> = FakeConn<'a>;
    async fn connect<'a>(&'a self, _remote: SocketAddr) -> Result<FakeConn<'a>, ErrorKind> {
        Ok(FakeConn {
            net: self,
            request: Vec::new(),
            answer: None,
            pos: 0,
        })
    }
}

impl ErrorType for FakeConn<'_> {
    type Error = ErrorKind;
}

impl Write for FakeConn<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.net.stall_writes.iter().any(|p| buf.starts_with(p)) {
            self.net.stalled.set(self.net.stalled.get() + 1);
            std::future::pending::<()>().await;
        }
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Read for FakeConn<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let answer = self.answer.get_or_insert_with(|| {
            let text = String::from_utf8_lossy(&self.request).into_owned();
            let answer = (self.net.responder)(&text);
            self.net.requests.borrow_mut().push(text);
            answer
        });
        let Some(bytes) = answer else {
            return std::future::pending().await;
        };
        let n = buf.len().min(bytes.len() - self.pos).min(300);
        buf[..n].copy_from_slice(&bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn http(status: &str, body: &str) -> Option<Vec<u8>> {
    Some(
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

// ---- harness ----

/// Distinctive tokens, all the same length (see "Token hygiene" in the crate docs on the
/// session's own buffers), and different in every test: the test's own heap (the fake
/// server's copies of the requests, the strings of a previous test's findings) is freed and
/// reused, and a driver future placed there would otherwise show another test's tokens in
/// bytes it never wrote.
#[derive(Clone, Copy)]
struct Tokens {
    old_access: &'static str,
    old_refresh: &'static str,
    new_access: &'static str,
    new_refresh: &'static str,
}

impl Tokens {
    fn unique() -> Tokens {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = |kind: &str| -> &'static str { format!("{kind}hygiene{n:04}x7f3a9c").leak() };
        Tokens {
            old_access: token("atOLD"),
            old_refresh: token("rtOLD"),
            new_access: token("atNEW"),
            new_refresh: token("rtNEW"),
        }
    }

    fn all(self) -> [&'static str; 4] {
        [
            self.old_access,
            self.old_refresh,
            self.new_access,
            self.new_refresh,
        ]
    }
}

fn config() -> DriverConfig<'static> {
    let mut session = SessionConfig::DEFAULT;
    session.gate.attempt_timeout = Duration::from_millis(300);
    session.gate.budget = Duration::from_millis(1500);
    session.gate.retry.spread = Duration::from_millis(700);
    session.gate.retry.final_window = Duration::from_millis(200);
    session.refresh_timeout = Duration::from_millis(300);
    DriverConfig::new("http://backend.test/check", Transport::PlainHttp)
        .with_session(session)
        .with_refresh(RefreshEndpoint::new("http://backend.test/oauth/token", "kiosk"))
}

/// What a script can look at: every region the adapter owns.
struct Memory {
    lanes: Vec<Region>,
    link: Region,
    slot: Region,
    driver: Region,
}

impl Memory {
    fn all(&self) -> Vec<Region> {
        let mut all = self.lanes.clone();
        all.extend([self.link, self.slot, self.driver]);
        all
    }
}

type TestLink = Link<'static, NoopRawMutex>;

/// Runs a driver on `net` next to `script`, which gets the link, a token slot and where
/// everything is. The lane memory, link and slot are leaked (a `Driver` borrows its memory
/// for as long as its link lives, and a link that borrows token slots must outlive them), so
/// they are still there to read once the driver is gone. Returns the script's result and
/// what the lanes and the driver's future (dropped, its memory freed a moment before) held
/// after the drop.
fn run<R>(
    net: &'static FakeNet,
    script: impl AsyncFnOnce(&'static TestLink, &'static TokenSlot<NoopRawMutex>, &Memory) -> R,
) -> (R, Dump) {
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let link: &'static TestLink = Box::leak(Box::new(Link::new()));
    let check = Box::leak(Box::new(LaneMemory::check()));
    let refresh = Box::leak(Box::new(LaneMemory::refresh()));
    let mut lanes = check.regions("check").to_vec();
    lanes.extend(refresh.regions("refresh"));
    let buffers = DriverBuffers::new(check.buffers()).with_refresh(refresh.buffers());
    let driver =
        Driver::<_, _, _>::new(link, net, net, config(), buffers, Seeds::new(7)).expect("valid config");
    let mut driver = Box::pin(driver.run());
    let memory = Memory {
        lanes: lanes.clone(),
        link: Region::of("link", link),
        slot: Region::of("slot", slot),
        driver: Region::of("driver future", &*driver),
    };
    let script =
        embassy_time::with_timeout(embassy_time::Duration::from_secs(10), script(link, slot, &memory));
    let result = match block_on(select(driver.as_mut(), script)) {
        Either::Second(r) => r.expect("script finished within 10 s"),
    };
    // The driver's memory is read right after its drop (what its destructors left), with
    // nothing allocated in between that could reuse it.
    let mut dump = Dump::prepare(&memory.all());
    drop(driver);
    dump.take();
    (result, dump)
}

async fn until(link: &Link<'_, NoopRawMutex>, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let mut rx = link.status_receiver().expect("a receiver");
    loop {
        let s = rx.changed().await;
        if pred(&s) {
            return s;
        }
    }
}

async fn until_event(link: &Link<'_, NoopRawMutex>, pred: impl Fn(&SessionEvent) -> bool) {
    while !pred(&link.next_event().await.event) {}
}

/// Lets the driver run its lanes' pending work.
async fn settle() {
    embassy_time::Timer::after_millis(20).await;
}

/// Queues a sign-in with [`Link::try_sign_in`]: the tokens go from these slices straight
/// into the link's queue. (`Command::sign_in` builds them as values first, and what the app's
/// code leaves on the stack is not the adapter's to wipe: see "Token hygiene".)
fn sign_in(link: &TestLink, access: &str, refresh: &str, expires_in: Duration) {
    link.try_sign_in(access.as_bytes(), refresh.as_bytes(), expires_in)
        .expect("header-safe tokens, room in the queue");
}

/// Answers checks with a grant and rotates OLD to NEW on the token endpoint.
fn rotating_backend(check: &'static str, tokens: Tokens) -> impl Fn(&str) -> Option<Vec<u8>> {
    let Tokens {
        old_refresh,
        new_access,
        new_refresh,
        ..
    } = tokens;
    move |req: &str| {
        if req.starts_with("POST") && req.contains(&format!("refresh_token={old_refresh}")) {
            http(
                "200 OK",
                &format!(
                    r#"{{"access_token":"{new_access}","refresh_token":"{new_refresh}","expires_in":3600,"token_type":"Bearer"}}"#
                ),
            )
        } else if req.starts_with("POST") {
            http("400 Bad Request", r#"{"error":"invalid_grant"}"#)
        } else {
            http(check, r#"{"has_access":true}"#)
        }
    }
}

fn net(
    responder: impl Fn(&str) -> Option<Vec<u8>> + 'static,
    stall_writes: Vec<&'static [u8]>,
) -> &'static FakeNet {
    Box::leak(Box::new(FakeNet {
        responder: Box::new(responder),
        stall_writes,
        requests: RefCell::new(Vec::new()),
        stalled: Cell::new(0),
    }))
}

// ---- tests ----

#[test]
fn after_a_refresh_and_a_logout_no_token_is_left_in_memory_the_adapter_owns() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        new_access,
        new_refresh,
    } = tokens;
    let all = tokens.all();
    let net = net(rotating_backend("200 OK", tokens), vec![]);
    let ((signed_in_hits, token, after_logout), after_drop) = run(net, async |link, slot, memory| {
        // 30 s left: inside the refresh skew, so the session refreshes at once (R11) and
        // checks again with the new token.
        sign_in(link, old_access, old_refresh, Duration::from_secs(30));
        until_event(
            link,
            |e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 == 2),
        )
        .await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        // Read where it is, in the slot (the test keeps its own copy, in its own memory).
        let got = slot
            .wait_with(|token| String::from_utf8(token.expect("a token").to_vec()))
            .await
            .unwrap();
        settle().await;
        // While signed in the session holds the new tokens: the scanner sees them there (and
        // nowhere else: every lane finished and wiped its buffers).
        let signed_in_hits = find(&memory.all(), &all);
        link.try_send(Command::Logout).unwrap();
        until(link, |s| !s.status.signed_in).await;
        settle().await;
        (signed_in_hits, got, find(&memory.all(), &all))
    });
    // The tokens did go through the adapter: sign-in, refresh form, token answer, new check.
    assert_eq!(token, new_access);
    let requests = net.requests.borrow();
    assert!(requests
        .iter()
        .any(|r| r.contains(&format!("Bearer {old_access}"))));
    assert!(requests
        .iter()
        .any(|r| r.contains(&format!("refresh_token={old_refresh}"))));
    assert!(requests
        .iter()
        .any(|r| r.contains(&format!("Bearer {new_access}"))));
    // Between exchanges the session's tokens are the only ones: one access and one refresh
    // token, the new ones, in the driver's future (which owns the session). Not in a lane's
    // buffers, its inbox, the refresh answer's hand-over, the link's queue or the token slot;
    // and the old ones nowhere (this also shows the scanner finds what is there).
    assert_eq!(signed_in_hits.len(), 2, "{signed_in_hits:?}");
    assert!(
        signed_in_hits[0].starts_with(&format!("{new_access} in driver future+"))
            && signed_in_hits[1].starts_with(&format!("{new_refresh} in driver future+")),
        "{signed_in_hits:?}"
    );
    // R11: nothing of a torn-down session stays, while the driver keeps running...
    assert_clean(&after_logout, "tokens left after logout");
    // ...nor once it is dropped.
    assert_clean(&after_drop.find(&all), "tokens left after the driver was dropped");
}

#[test]
fn after_a_401_ends_the_session_no_token_is_left_in_memory_the_adapter_owns() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        ..
    } = tokens;
    let all = tokens.all();
    let net = net(rotating_backend("401 Unauthorized", tokens), vec![]);
    let (after_401, after_drop) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(30));
        until(link, |s| s.status.cause == Some(Cause::Unauthorized)).await;
        settle().await;
        find(&memory.all(), &all)
    });
    assert!(net
        .requests
        .borrow()
        .iter()
        .any(|r| r.contains(&format!("Bearer {old_access}"))));
    assert_clean(&after_401, "tokens left after a 401");
    assert_clean(&after_drop.find(&all), "tokens left after the driver was dropped");
}

#[test]
fn a_cancelled_exchange_leaves_no_token_in_its_buffers() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        ..
    } = tokens;
    let all = tokens.all();
    // Both requests stall while the token is being written (the server stopped reading), so
    // each lane is mid-exchange, token in its request buffer, when the logout cancels it.
    let net = net(
        rotating_backend("200 OK", tokens),
        vec![b"Bearer ", b"grant_type=refresh_token"],
    );
    let (after_logout, after_drop) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(30));
        settle().await;
        assert_eq!(
            net.stalled.get(),
            2,
            "the check and the refresh are both stuck writing"
        );
        let mid = find(&memory.lanes, &all);
        assert!(
            mid.iter()
                .any(|h| h.starts_with(old_access) && h.contains("check.tx"))
                && mid
                    .iter()
                    .any(|h| h.starts_with(old_refresh) && h.contains("refresh.tx")),
            "mid-exchange, each request buffer holds its token: {mid:?}"
        );
        link.try_send(Command::Logout).unwrap();
        until(link, |s| !s.status.signed_in).await;
        settle().await;
        find(&memory.all(), &all)
    });
    assert_clean(&after_logout, "tokens left after cancelling");
    assert_clean(&after_drop.find(&all), "tokens left after the driver was dropped");
}

#[test]
fn a_timed_out_refresh_leaves_no_token_in_its_buffers() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        ..
    } = tokens;
    let all = tokens.all();
    // The token endpoint stops reading mid-request: the refresh times out (300 ms) while the
    // session stays signed in; its retry is R11's floor away, so the lane is idle after it.
    let net = net(
        rotating_backend("200 OK", tokens),
        vec![b"grant_type=refresh_token"],
    );
    let (refresh_lane_after_timeout, after_drop) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(30));
        until_event(link, |e| matches!(e, SessionEvent::RefreshFailed { .. })).await;
        let s = link.snapshot().expect("a snapshot");
        assert!(s.status.signed_in, "a timed-out refresh keeps the session (R11)");
        assert_eq!(s.status.access, Access::Granted);
        let refresh_lane: Vec<Region> = memory
            .lanes
            .iter()
            .copied()
            .filter(|r| r.name.starts_with("refresh"))
            .collect();
        find(&refresh_lane, &all)
    });
    assert_eq!(net.stalled.get(), 1, "the refresh stalled writing its form");
    assert_clean(
        &refresh_lane_after_timeout,
        "tokens left in the refresh lane after its timeout",
    );
    assert_clean(&after_drop.find(&all), "tokens left after the driver was dropped");
}

#[test]
fn while_the_server_takes_its_time_to_answer_the_request_buffers_hold_no_token() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        ..
    } = tokens;
    let all = tokens.all();
    // Both requests are written whole; then the servers never answer.
    let net = net(|_| None, vec![]);
    let (waiting, _) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(30));
        settle().await;
        assert_eq!(
            net.requests.borrow().len(),
            2,
            "the check and the refresh were both sent"
        );
        find(&memory.lanes, &all)
    });
    assert!(net
        .requests
        .borrow()
        .iter()
        .any(|r| r.contains(&format!("Bearer {old_access}"))));
    assert!(net
        .requests
        .borrow()
        .iter()
        .any(|r| r.contains(&format!("refresh_token={old_refresh}"))));
    assert_clean(
        &waiting,
        "a request buffer kept its token while waiting for the answer",
    );
}

#[test]
fn dropping_the_driver_mid_exchange_leaves_no_token_in_its_memory() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        ..
    } = tokens;
    let all = tokens.all();
    // The driver's task is cancelled (here: the future dropped) while signed in, with both
    // lanes stuck writing their requests.
    let net = net(
        rotating_backend("200 OK", tokens),
        vec![b"Bearer ", b"grant_type=refresh_token"],
    );
    let (mid, after_drop) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(30));
        settle().await;
        assert_eq!(net.stalled.get(), 2);
        find(&memory.all(), &all)
    });
    assert!(
        mid.iter().any(|h| h.contains("check.tx")) && mid.iter().any(|h| h.contains("driver future")),
        "before the drop the tokens are in use: {mid:?}"
    );
    assert_clean(&after_drop.find(&all), "tokens left after the driver was dropped");
}

#[test]
fn tokens_still_queued_when_the_driver_is_dropped_are_wiped_not_kept_for_nobody() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        new_access,
        new_refresh,
    } = tokens;
    let all = tokens.all();
    let net = net(rotating_backend("200 OK", tokens), vec![]);
    let (queued, after_drop) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(3600));
        until(link, |s| s.status.access == Access::Granted).await;
        // The driver's task is cancelled with a sign-in and a restore still queued (the
        // script ends here, before the driver runs again): no driver will ever take them.
        sign_in(link, new_access, new_refresh, Duration::from_secs(3600));
        link.try_restore(
            new_access.as_bytes(),
            new_refresh.as_bytes(),
            Duration::from_secs(60),
        )
        .unwrap();
        find(&[memory.link], &all)
    });
    assert_eq!(
        queued.len(),
        4,
        "both queued commands hold both tokens: {queued:?}"
    );
    assert_clean(
        &after_drop.find(&all),
        "tokens left after the driver was dropped with commands queued",
    );
}

#[test]
fn a_refresh_to_shorter_tokens_leaves_no_tail_of_the_longer_old_ones() {
    // The old tokens are longer than the new ones: replacing them in place must not leave
    // their tails behind the new ones (the session's buffers, in the driver's future).
    let tokens = Tokens::unique();
    let old_access: &'static str = format!("{}LONGTAIL{}", tokens.old_access, "a".repeat(24)).leak();
    let old_refresh: &'static str = format!("{}LONGTAIL{}", tokens.old_refresh, "r".repeat(24)).leak();
    let tails = [
        &old_access[tokens.new_access.len()..],
        &old_refresh[tokens.new_refresh.len()..],
    ];
    let Tokens {
        new_access,
        new_refresh,
        ..
    } = tokens;
    let net = net(
        move |req: &str| {
            if req.starts_with("POST") && req.contains(&format!("refresh_token={old_refresh}")) {
                http(
                    "200 OK",
                    &format!(
                        r#"{{"access_token":"{new_access}","refresh_token":"{new_refresh}","expires_in":3600}}"#
                    ),
                )
            } else {
                http("200 OK", r#"{"has_access":true}"#)
            }
        },
        vec![],
    );
    let ((signed_in, after_logout), after_drop) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(30));
        until_event(
            link,
            |e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 == 2),
        )
        .await;
        settle().await;
        let signed_in = find(&memory.all(), &tails);
        link.try_send(Command::Logout).unwrap();
        until(link, |s| !s.status.signed_in).await;
        settle().await;
        (signed_in, find(&memory.all(), &tails))
    });
    assert!(net
        .requests
        .borrow()
        .iter()
        .any(|r| r.contains(&format!("Bearer {new_access}"))));
    assert_clean(&signed_in, "old tails while signed in with the new tokens");
    assert_clean(&after_logout, "old tails after logout");
    assert_clean(&after_drop.find(&tails), "old tails after the drop");
}

#[test]
fn a_token_answer_taken_by_value_leaves_no_copy_in_the_slot() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        ..
    } = tokens;
    let all = tokens.all();
    let net = net(rotating_backend("200 OK", tokens), vec![]);
    let ((got, in_slot), _) = run(net, async |link, slot, memory| {
        // An hour left: no refresh, the old token stays current.
        sign_in(link, old_access, old_refresh, Duration::from_secs(3600));
        until(link, |s| s.status.access == Access::Granted).await;
        link.try_send(Command::RequestToken(slot)).unwrap();
        // `wait` hands out a copy (the caller's to wipe); the slot keeps none.
        let got = slot.wait().await.map(|t| t.to_vec());
        (got, find(&[memory.slot], &all))
    });
    assert_eq!(got.as_deref(), Ok(old_access.as_bytes()));
    assert_clean(&in_slot, "the slot kept the token it answered with");
}

#[test]
fn a_token_answer_nobody_took_is_wiped_when_its_slot_is_queued_again() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        ..
    } = tokens;
    let all = tokens.all();
    let net = net(rotating_backend("200 OK", tokens), vec![]);
    let ((answered, reused, answer), _) = run(net, async |link, slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(3600));
        until(link, |s| s.status.access == Access::Granted).await;
        // The caller gives up before taking its answer: the token waits in the slot...
        link.try_send(Command::RequestToken(slot)).unwrap();
        settle().await;
        let answered = find(&[memory.slot], &all);
        link.try_send(Command::Logout).unwrap();
        until(link, |s| !s.status.signed_in).await;
        // ...until the slot is queued again (R11: the session it belonged to has ended).
        link.try_send(Command::RequestToken(slot)).unwrap();
        let reused = find(&[memory.slot], &all);
        (answered, reused, slot.wait().await)
    });
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(answered[0].starts_with(old_access), "{answered:?}");
    assert_clean(
        &reused,
        "the untaken answer's token after the slot was queued again",
    );
    assert_eq!(answer, Err(accessgate_embassy::TokenError::NotSignedIn));
}

#[test]
fn a_sign_in_refused_for_a_full_queue_or_a_dropped_driver_leaves_no_copy_in_the_link() {
    let tokens = Tokens::unique();
    let Tokens {
        old_access,
        old_refresh,
        new_access,
        new_refresh,
    } = tokens;
    let all = tokens.all();
    let net = net(rotating_backend("200 OK", tokens), vec![]);
    let ((link, full, queued), _) = run(net, async |link, _slot, memory| {
        sign_in(link, old_access, old_refresh, Duration::from_secs(3600));
        until(link, |s| s.status.access == Access::Granted).await;
        // The driver does not run between these lines: the queue is full, the sign-in and the
        // restore are refused (R12) and must leave nothing of their tokens behind.
        for _ in 0..accessgate_embassy::COMMAND_CAPACITY {
            link.try_send(Command::Recheck).unwrap();
        }
        let refused = link.try_sign_in(
            new_access.as_bytes(),
            new_refresh.as_bytes(),
            Duration::from_secs(60),
        );
        assert_eq!(refused, Err(TrySignInError::Full));
        let refused = link.try_restore(
            new_access.as_bytes(),
            new_refresh.as_bytes(),
            Duration::from_secs(60),
        );
        assert_eq!(refused, Err(TrySignInError::Full));
        let full = find(&[memory.link], &all);
        // Control: the same scan finds a sign-in the queue took (once a slot frees).
        settle().await;
        sign_in(link, new_access, new_refresh, Duration::from_secs(60));
        let queued = find(&[memory.link], &all);
        (link, full, queued)
    });
    assert_clean(&full, "tokens of a sign-in refused for a full queue");
    assert_eq!(queued.len(), 2, "the control finds the queued tokens: {queued:?}");
    // The driver is gone (its queued sign-in wiped): a refused restore copies nothing in either.
    let refused = link.try_restore(
        old_access.as_bytes(),
        old_refresh.as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(refused, Err(TrySignInError::NoDriver));
    assert_clean(
        &find(&[Region::of("link", link)], &all),
        "tokens of a restore refused for a dropped driver",
    );
}

#[test]
fn dropped_credentials_leave_no_token_where_they_were() {
    // Token hygiene (crate docs): a `Credentials` wipes its tokens when dropped, e.g. a
    // command the app built and then dropped unsent. Its memory is read right after the drop
    // (the dump is prepared first, so nothing is allocated in between).
    let (at, rt) = ("at_credentials_drop_0001", "rt_credentials_drop_0001");
    let held = Box::new(
        accessgate_embassy::Credentials::<64>::new(at.as_bytes(), rt.as_bytes(), Duration::from_secs(60))
            .unwrap(),
    );
    let region = Region::of("credentials", &*held);
    assert_eq!(
        find(&[region], &[at, rt]).len(),
        2,
        "the dump sees the live tokens"
    );
    let mut dump = Dump::prepare(&[region]);
    drop(held);
    dump.take();
    assert_clean(&dump.find(&[at, rt]), "tokens left by dropped credentials");
}
