//! Healthy-path overhead of the embassy driver on a PC: one check through the [`Driver`]
//! against the same request made directly with reqwless, over the same
//! `std-embedded-nal-async` stack, with buffers of the same sizes, against the reference
//! backend on loopback HTTP (started on its own thread with a tokio runtime).
//!
//! ```text
//! cargo run -p accessgate-embassy --example overhead --release [-- ROUNDS]
//! ```
//!
//! One embassy executor (`platform-std`) runs both the driver task and the measuring task,
//! as on a board. Variants (each is one check answered `200 {"has_access":true}`; every
//! exchange opens a new connection with `Connection: close`, as the driver's lanes do):
//! - `bare_get`: `HttpClient::new(&stack, &stack)`, `GET check_url` with
//!   `Authorization: Bearer …` and `Connection: close`, the head read into a 2 KiB buffer,
//!   at most `max_body + 1` body bytes into a 1 025-byte buffer, then `accessgate::classify`;
//! - `bare_get_timeout`: the same inside `embassy_time::with_timeout`, as the check lane
//!   bounds every exchange;
//! - `driver_recheck`: a signed-in driver (`min_recheck_interval` = 0): `Command::Recheck`
//!   on the [`Link`], then wait on a status receiver for the snapshot showing the attempt it
//!   started finished;
//! - `driver_sign_in`: `Command::SignIn` with the same tokens (a new session, whose first
//!   check is awaited the same way).
//!
//! Rounds run every variant once, in an order shuffled each round, so machine noise
//! hits them alike; ROUNDS (default 2000) rounds after 100 warm-up rounds. Prints min,
//! median, p90, p99 per variant and the ratios to `bare_get` (plain ratio of medians, and
//! the median of per-round ratios).

use std::time::{Duration as StdDuration, Instant as StdInstant};

use accessgate::{classify, CheckOutcome, Counters, Duration, SessionConfig, TransientClass};
use accessgate_backend::{Backend, BackendConfig};
use accessgate_embassy::{
    Command, Driver, DriverBuffers, DriverConfig, Link, PlainCheckStorage, Seeds, Snapshot, Transport,
};
use embassy_executor::Spawner;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embedded_io_async::Read as _;
use reqwless::client::{HttpClient, HttpRequestHandle};
use reqwless::request::{Method, RequestBody, RequestBuilder};
use static_cell::StaticCell;
use std_embedded_nal_async::Stack;

const USER: &str = "bench";
/// Long enough that no refresh is ever due.
const TOKEN_TTL: StdDuration = StdDuration::from_secs(30 * 24 * 3600);
const WARMUP: usize = 100;

type BenchDriver = Driver<'static, CriticalSectionRawMutex, Stack, Stack>;

static LINK: Link<'static, CriticalSectionRawMutex> = Link::new();
static STACK: StaticCell<Stack> = StaticCell::new();
static CHECK_BUFFERS: StaticCell<PlainCheckStorage> = StaticCell::new();
/// The bare client's buffers: the same sizes as the driver's check lane.
static BARE_BUFFERS: StaticCell<PlainCheckStorage> = StaticCell::new();

#[embassy_executor::task]
async fn drive(driver: BenchDriver) -> ! {
    driver.run().await
}

/// Starts the backend on a thread of its own; returns its base URL and a token pair.
fn start_backend() -> (String, String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("backend runtime");
            rt.block_on(async move {
                let backend = Backend::start(BackendConfig::default())
                    .await
                    .expect("backend starts");
                let t = backend.control().issue_token(USER, TOKEN_TTL);
                tx.send((backend.http_url(), t.access_token, t.refresh_token))
                    .expect("main thread waits");
                // Serve until the process exits.
                std::future::pending::<()>().await;
            });
        })
        .expect("backend thread");
    rx.recv().expect("backend started")
}

/// One bare exchange, as the driver's check lane does it (`http.rs`), without the driver.
struct Bare {
    stack: &'static Stack,
    url: &'static str,
    token: &'static [u8],
    max_body: usize,
    rx: &'static mut [u8],
    tx: &'static mut [u8],
    body: &'static mut [u8],
}

impl Bare {
    async fn get(&mut self) -> CheckOutcome {
        let n = 7 + self.token.len();
        self.tx[..7].copy_from_slice(b"Bearer ");
        self.tx[7..n].copy_from_slice(self.token);
        let Ok(auth) = core::str::from_utf8(&self.tx[..n]) else {
            return CheckOutcome::transient(TransientClass::InvalidBody);
        };
        let headers = [("Authorization", auth), ("Connection", "close")];
        let mut client = HttpClient::new(self.stack, self.stack);
        let Ok(handle) = client.request(Method::GET, self.url).await else {
            return CheckOutcome::transient(TransientClass::Connect);
        };
        let limit = self.max_body.saturating_add(1).min(self.body.len());
        let body = &mut self.body[..limit];
        match send(handle.headers(&headers), self.rx, body).await {
            Ok((status, retry_after, len)) => {
                classify(status, retry_after.as_deref(), &body[..len], self.max_body)
            }
            Err(_) => CheckOutcome::transient(TransientClass::Io),
        }
    }

    async fn get_with_timeout(&mut self) -> CheckOutcome {
        embassy_time::with_timeout(embassy_time::Duration::from_secs(10), self.get())
            .await
            .unwrap_or(CheckOutcome::transient(TransientClass::Timeout))
    }
}

/// The check lane's response handling: head into `rx`, `Retry-After`, a bounded body read.
async fn send<C, B>(
    mut handle: HttpRequestHandle<'_, C, B>,
    rx: &mut [u8],
    body: &mut [u8],
) -> Result<(u16, Option<heapless::Vec<u8, 16>>, usize), reqwless::Error>
where
    C: embedded_io_async::Read + embedded_io_async::Write,
    B: RequestBody,
{
    let response = handle.send(rx).await?;
    let status = response.status.0;
    let mut retry_after = None;
    for (name, value) in response.headers() {
        if name.eq_ignore_ascii_case("retry-after") {
            retry_after = heapless::Vec::from_slice(value).ok();
        }
    }
    let declared = response.content_length;
    let mut len = 0;
    if status == 200 {
        let mut reader = response.body().reader();
        while len < body.len() {
            match reader.read(&mut body[len..]).await? {
                0 => break,
                n => len += n,
            }
        }
        if len < body.len() && declared.is_some_and(|d| len < d) {
            return Err(reqwless::Error::ConnectionAborted);
        }
    }
    Ok((status, retry_after, len))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    BareGet,
    BareGetTimeout,
    DriverRecheck,
    DriverSignIn,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::BareGet,
        Variant::BareGetTimeout,
        Variant::DriverRecheck,
        Variant::DriverSignIn,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::BareGet => "bare_get",
            Variant::BareGetTimeout => "bare_get_timeout",
            Variant::DriverRecheck => "driver_recheck",
            Variant::DriverSignIn => "driver_sign_in",
        }
    }
}

type StatusRx = embassy_sync::watch::Receiver<
    'static,
    CriticalSectionRawMutex,
    Snapshot,
    { accessgate_embassy::STATUS_RECEIVERS },
>;

/// Sends `command` and waits for the snapshot showing that the attempt it started has
/// finished. `true` when that attempt was a grant.
async fn through_driver(status: &mut StatusRx, command: Command<'static, CriticalSectionRawMutex>) -> bool {
    let before = status
        .try_get()
        .expect("the driver published a snapshot")
        .counters;
    LINK.send(command).await.expect("the driver runs");
    // The attempt is over once it is counted as answered (granted, denied or failed).
    let answered = |c: &Counters| c.grants + c.denials + c.transient_total();
    let after = status
        .changed_and(|s| s.counters.attempts > before.attempts && answered(&s.counters) > answered(&before))
        .await;
    after.counters.grants > before.grants
}

struct Samples {
    v: Variant,
    rounds: Vec<f64>,
    sorted: Vec<f64>,
    failed: u64,
}

/// A fresh random order of `0..N` per round (xorshift64 + Fisher-Yates), so every variant
/// follows every other equally often: what ran just before (a parked worker, a cold
/// connection...) then weighs on all variants alike.
struct Shuffle(u64);

impl Shuffle {
    fn order<const N: usize>(&mut self) -> [usize; N] {
        let mut order: [usize; N] = core::array::from_fn(|i| i);
        for i in (1..N).rev() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            order.swap(i, (self.0 % (i as u64 + 1)) as usize);
        }
        order
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (base, access, refresh) = start_backend();
    let url: &'static str = Box::leak(format!("{base}{}", Backend::check_path()).into_boxed_str());
    let token: &'static [u8] = Box::leak(access.into_bytes().into_boxed_slice());
    let refresh: &'static [u8] = Box::leak(refresh.into_bytes().into_boxed_slice());

    let mut session = SessionConfig::DEFAULT;
    // Not rate-limited: every Recheck starts an attempt.
    session.gate.min_recheck_interval = Duration::ZERO;
    let max_body = session.gate.max_body;
    let config = DriverConfig::new(url, Transport::PlainHttp).with_session(session);
    let stack: &'static Stack = STACK.init(Stack::default());
    // Plain HTTP: no TLS seed.
    let seeds = Seeds::new(0x5eed);
    let buffers = DriverBuffers::new(CHECK_BUFFERS.init_with(PlainCheckStorage::new).buffers());
    let driver: BenchDriver =
        Driver::new(&LINK, stack, stack, config, buffers, seeds).expect("driver config");
    spawner.spawn(drive(driver).expect("driver task"));

    let bare_bufs = BARE_BUFFERS.init_with(PlainCheckStorage::new).buffers();
    let mut bare = Bare {
        stack,
        url,
        token,
        max_body,
        rx: bare_bufs.rx,
        tx: bare_bufs.tx,
        body: bare_bufs.body,
    };
    let mut status: StatusRx = LINK.status_receiver().expect("a free status receiver");
    let ttl = Duration::from_secs(TOKEN_TTL.as_secs());
    let sign_in = || Command::sign_in(token, refresh, ttl).expect("header-safe tokens");

    // The first session, and its first check.
    status.changed().await; // the driver's initial snapshot
    assert!(
        through_driver(&mut status, sign_in()).await,
        "the backend grants the bench user"
    );

    let mut out: Vec<Samples> = Variant::ALL
        .iter()
        .map(|&v| Samples {
            v,
            rounds: Vec::with_capacity(rounds),
            sorted: Vec::new(),
            failed: 0,
        })
        .collect();
    let mut shuffle = Shuffle(0x9e37_79b9_7f4a_7c15);
    let t0 = StdInstant::now();
    for round in 0..WARMUP + rounds {
        for i in shuffle.order::<{ Variant::ALL.len() }>() {
            let v = Variant::ALL[i];
            let start = StdInstant::now();
            let ok = match v {
                Variant::BareGet => bare.get().await == CheckOutcome::Granted,
                Variant::BareGetTimeout => bare.get_with_timeout().await == CheckOutcome::Granted,
                Variant::DriverRecheck => through_driver(&mut status, Command::Recheck).await,
                Variant::DriverSignIn => through_driver(&mut status, sign_in()).await,
            };
            let took = start.elapsed();
            // Untimed: empty the event channel (nobody else reads it).
            while LINK.try_next_event().is_some() {}
            if round >= WARMUP {
                out[i].rounds.push(took.as_secs_f64() * 1e6);
                out[i].failed += u64::from(!ok);
            }
        }
    }
    let wall = t0.elapsed();
    for s in &mut out {
        s.sorted = s.rounds.clone();
        s.sorted.sort_by(f64::total_cmp);
    }

    println!(
        "embassy driver overhead: {rounds} rounds (+{WARMUP} warm-up) of every variant, shuffled order, {:.1} s",
        wall.as_secs_f64()
    );
    println!(
        "  {:<18} {:>9} {:>10} {:>9} {:>9}  {:>6}",
        "variant", "min µs", "median µs", "p90 µs", "p99 µs", "failed"
    );
    for s in &out {
        println!(
            "  {:<18} {:>9.1} {:>10.1} {:>9.1} {:>9.1}  {:>6}",
            s.v.name(),
            quantile(&s.sorted, 0.0),
            quantile(&s.sorted, 0.5),
            quantile(&s.sorted, 0.9),
            quantile(&s.sorted, 0.99),
            s.failed
        );
    }
    let bare_s = &out[0];
    let a = quantile(&bare_s.sorted, 0.5);
    println!("summary");
    for s in &out[1..] {
        let b = quantile(&s.sorted, 0.5);
        let mut paired: Vec<f64> = bare_s.rounds.iter().zip(&s.rounds).map(|(a, b)| b / a).collect();
        paired.sort_by(f64::total_cmp);
        println!(
            "overhead embassy: {:<16} median {b:>6.1} µs vs bare_get {a:>6.1} µs: ratio {:.2} (paired {:.2}), {:+.1} µs; p90 {:.1} vs {:.1} µs",
            s.v.name(),
            b / a,
            quantile(&paired, 0.5),
            b - a,
            quantile(&s.sorted, 0.9),
            quantile(&bare_s.sorted, 0.9),
        );
    }
    let snap = LINK.snapshot().unwrap_or_default();
    println!(
        "driver counters: attempts {}, grants {}, transient {}, events dropped {}, commands refused {}",
        snap.counters.attempts,
        snap.counters.grants,
        snap.counters.transient_total(),
        snap.events_dropped,
        snap.commands_refused
    );
    std::process::exit(0);
}
