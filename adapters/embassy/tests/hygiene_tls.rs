//! Token hygiene over HTTPS: the driver against the reference backend on loopback TLS
//! (rustls, the test PKI), with every lane buffer owned by the test, TLS record buffers
//! included. A check, a refresh (the backend rotates both tokens) and a logout; then every
//! byte the adapter owns is read back through `/proc/self/mem` and searched for any token
//! the backend minted (`at_…`, `rt_…`: old and new, without knowing the new ones).

#![cfg(feature = "tls")]

use std::time::Duration as StdDuration;

use accessgate::{Duration, Event, SessionConfig, SessionEvent};
use accessgate_backend::{Backend, BackendConfig, Control, Endpoint};
use accessgate_embassy::{
    Buffers, Command, Driver, DriverBuffers, DriverConfig, Link, RefreshEndpoint, Seeds, Snapshot, TlsConfig,
    TokenSlot, Transport,
};
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use std_embedded_nal_async::Stack;

mod memdump;
mod park;
use memdump::{assert_clean, find_minted, Dump, Region};
use park::block_on;

/// One lane's buffers, sized like `CheckStorage` / `RefreshStorage` (TLS records included).
struct LaneMemory {
    rx: Vec<u8>,
    tx: Vec<u8>,
    body: Vec<u8>,
    tls_read: Vec<u8>,
    tls_write: Vec<u8>,
}

impl LaneMemory {
    fn new(tx: usize, body: usize) -> &'static mut LaneMemory {
        Box::leak(Box::new(LaneMemory {
            rx: vec![0; 2048],
            tx: vec![0; tx],
            body: vec![0; body],
            tls_read: vec![0; 16_640],
            tls_write: vec![0; 4096],
        }))
    }

    fn regions(&self, lane: &'static str) -> [Region; 5] {
        let name = |part: &str| -> &'static str { format!("{lane}.{part}").leak() };
        [
            Region::of(name("rx"), &self.rx[..]),
            Region::of(name("tx"), &self.tx[..]),
            Region::of(name("body"), &self.body[..]),
            Region::of(name("tls.read"), &self.tls_read[..]),
            Region::of(name("tls.write"), &self.tls_write[..]),
        ]
    }

    fn buffers(&'static mut self) -> Buffers<'static> {
        Buffers::new(&mut self.rx, &mut self.tx, &mut self.body)
            .with_tls(&mut self.tls_read, &mut self.tls_write)
    }
}

/// The reference backend over HTTPS, on its own thread and runtime.
fn start_backend() -> (u16, Vec<u8>, Control) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let backend = Backend::start(BackendConfig {
                https_port: Some(0),
                ..BackendConfig::default()
            })
            .await
            .expect("backend");
            let port = backend.https_addr().expect("https").port();
            let ca = backend.ca_der().expect("test CA").to_vec();
            tx.send((port, ca, backend.control())).expect("report");
            // Serves until the test process ends.
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(StdDuration::from_secs(20))
        .expect("backend started")
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

#[test]
fn over_tls_after_a_refresh_and_a_logout_no_token_is_left_in_the_lane_or_tls_buffers() {
    let (port, ca, control) = start_backend();
    // 30 s left: inside the refresh skew, so the session refreshes at once (R11).
    let pair = control.issue_token("hygiene", std::time::Duration::from_secs(30));

    let ca: &'static [u8] = ca.leak();
    let check_url: &'static str = format!("https://127.0.0.1:{port}{}", Backend::check_path()).leak();
    let token_url: &'static str = format!("https://127.0.0.1:{port}{}", Backend::token_path()).leak();
    let mut session = SessionConfig::DEFAULT;
    session.gate.attempt_timeout = Duration::from_secs(5);
    session.refresh_timeout = Duration::from_secs(5);
    let config = DriverConfig::new(check_url, Transport::Tls(TlsConfig::new(ca)))
        .with_session(session)
        .with_refresh(RefreshEndpoint::new(token_url, "accessgate"));

    let net: &'static Stack = Box::leak(Box::new(Stack::default()));
    let link: &'static Link<'static, NoopRawMutex> = Box::leak(Box::new(Link::new()));
    let slot: &'static TokenSlot<NoopRawMutex> = Box::leak(Box::new(TokenSlot::new()));
    let check = LaneMemory::new(1040, 1025);
    let refresh = LaneMemory::new(3300, 4097);
    let mut regions = check.regions("check").to_vec();
    regions.extend(refresh.regions("refresh"));
    regions.extend([Region::of("link", link), Region::of("slot", slot)]);
    let buffers = DriverBuffers::new(check.buffers()).with_refresh(refresh.buffers());
    let driver = Driver::<_, _, _>::new(link, net, net, config, buffers, Seeds::new(7).with_tls([7; 32]))
        .expect("valid config");
    let mut driver = Box::pin(driver.run());
    regions.push(Region::of("driver future", &*driver));

    let script = async {
        link.try_sign_in(
            pair.access_token.as_bytes(),
            pair.refresh_token.as_bytes(),
            Duration::from_secs(30),
        )
        .expect("queued");
        // R3: the new token's first check is over.
        while !matches!(
            link.next_event().await.event,
            SessionEvent::Gate(Event::FirstCheckSettled { generation }) if generation.0 == 2
        ) {}
        link.try_send(Command::RequestToken(slot)).unwrap();
        let new_access = slot
            .wait_with(|t| String::from_utf8(t.expect("a token").to_vec()))
            .await
            .unwrap();
        embassy_time::Timer::after_millis(100).await;
        let signed_in = find_minted(&regions);
        link.try_send(Command::Logout).unwrap();
        until(link, |s| !s.status.signed_in).await;
        embassy_time::Timer::after_millis(100).await;
        (new_access, signed_in, find_minted(&regions))
    };
    let script = embassy_time::with_timeout(embassy_time::Duration::from_secs(30), script);
    let (new_access, signed_in, after_logout) = match block_on(select(driver.as_mut(), script)) {
        Either::Second(r) => r.expect("script finished within 30 s"),
    };
    let mut after_drop = Dump::prepare(&regions);
    drop(driver);
    after_drop.take();

    // The exchanges happened, over TLS: two checks (old and new token) and a rotation.
    let counts = control.counts();
    assert_eq!(counts.get(Endpoint::Token, 200), 1, "{counts:?}");
    assert!(counts.get(Endpoint::Check, 200) >= 2, "{counts:?}");
    assert_ne!(new_access, pair.access_token);
    // While signed in, only the session holds tokens (the new pair, in the driver's future):
    // none in a lane's buffers, TLS records included, nor in the link or the slot.
    assert_eq!(signed_in.len(), 2, "{signed_in:?}");
    assert!(
        signed_in.iter().all(|h| h.contains(" in driver future+")) && signed_in[0].starts_with(&new_access),
        "{signed_in:?}"
    );
    assert_clean(&after_logout, "tokens left after logout");
    assert_clean(&after_drop.find_minted(), "tokens left after the drop");
}
