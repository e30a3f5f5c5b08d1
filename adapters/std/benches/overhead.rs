//! Healthy-path overhead of the tokio adapter: one check through an [`AccessGate`] against
//! the same HTTP request made directly with the same client stack, both against the
//! reference backend on loopback HTTP (started once, on its own thread and runtime).
//!
//! ```text
//! CARGO_TARGET_DIR=target/overhead cargo bench -p accessgate-std --bench overhead
//! ```
//!
//! Variants (each is one check answered `200 {"has_access":true}`):
//! - `bare_get`: reqwest built like the adapter's (rustls, no proxy, no redirects, same
//!   user agent), `GET check_url` with the bearer header, the body read chunk by chunk up to
//!   `max_body + 1` bytes, then `accessgate::classify`. What an app would write by hand.
//! - `bare_get_timeout`: the same inside `tokio::time::timeout_at`, as the adapter bounds
//!   every attempt (R4); only in the interleaved pass.
//! - `bare_get_task`: `bare_get_timeout` in a task of its own (`tokio::spawn`, then await
//!   its `JoinHandle`), as the adapter ran every request before issue 11 (it now polls them in
//!   its driver task); only in the interleaved pass.
//! - `bare_get_hop`: the adapter's shape without the adapter: the caller sends a request over
//!   an `mpsc` channel to a long-lived task, which runs `bare_get_timeout` inline and answers
//!   on a `oneshot`; only in the interleaved pass. The floor for a driver task.
//! - `adapter_recheck`: a signed-in gate (`min_recheck_interval` = 0): `recheck()`, which
//!   returns once the session has the outcome of the check it started.
//! - `adapter_sign_in`: `sign_in(tokens)` on the same gate (it ends the previous session and
//!   awaits the new session's first check, R3). The `Tokens` it is given are cloned before the
//!   operation's clock starts: an app passes tokens it already owns (from its login or its
//!   store), so their allocation is the app's, not the adapter's. Dropping them is the adapter's
//!   and stays timed. (Until the std-lean pairs in OVERHEAD.md the clone was timed too.)
//!
//! Every variant runs on two client runtimes: `mt` (multi-thread, 2 workers, the
//! `#[tokio::main]` default on this machine) and `ct` (current-thread). The measuring loop
//! runs inside a spawned task, as app code would, not in `block_on` on the main thread.
//!
//! Criterion measures each variant on its own (sequentially). Then an **interleaved** pass
//! (rounds of all variants in a shuffled order, so machine noise hits them alike) computes
//! per-operation medians and p90s and prints the ratios; the last lines are the summary,
//! together with criterion's median estimates read back from `target/criterion`.
//! `OVERHEAD_ROUNDS` (default 10 000) sets the interleaved rounds; `OVERHEAD_SKIP_CRITERION=1`
//! runs the interleaved pass only. `OVERHEAD_ONLY=bare_get,adapter_recheck` (variant names,
//! comma-separated) runs only those in the interleaved pass: two variants, shuffled per round,
//! each follow the other equally often (the others print `NaN`).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use accessgate::{classify, Access, CheckOutcome, Duration, SessionConfig};
use accessgate_backend::{Backend, BackendConfig};
use accessgate_std::{AccessGate, GateClientConfig, Tokens};
use criterion::Criterion;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Client, Response, Url};
use tokio::runtime::Runtime;

const USER: &str = "bench";
/// Long enough that no refresh is ever due during the run.
const TOKEN_TTL: StdDuration = StdDuration::from_secs(24 * 3600);

/// The backend on its own thread with a current-thread runtime, so it never shares a
/// scheduler with the client under test.
struct BackendThread {
    base_url: String,
    access_token: String,
    refresh_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackendThread {
    fn start() -> BackendThread {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
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
                    let tokens = backend.control().issue_token(USER, TOKEN_TTL);
                    tx.send((backend.http_url(), tokens)).expect("main thread waits");
                    let _ = stopped.await;
                    backend.shutdown().await;
                });
            })
            .expect("backend thread");
        let (base_url, tokens) = rx.recv().expect("backend started");
        BackendThread {
            base_url,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn tokens(&self) -> Tokens {
        Tokens::new(self.access_token.clone(), self.refresh_token.clone(), TOKEN_TTL)
    }
}

impl Drop for BackendThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gate_config(b: &BackendThread) -> GateClientConfig {
    let mut cfg = GateClientConfig::new(&b.base_url);
    let mut session = SessionConfig::DEFAULT;
    // Not rate-limited: every recheck() starts an attempt.
    session.gate.min_recheck_interval = Duration::ZERO;
    cfg.session = session;
    cfg.system_roots = false;
    cfg.proxy_from_env = false;
    cfg.seed = Some(0x5eed);
    cfg
}

/// The bare request, with the client the adapter builds (`http.rs`, `Transport::new`).
struct Bare {
    client: Client,
    url: Url,
    token: Vec<u8>,
    max_body: usize,
}

impl Bare {
    fn new(b: &BackendThread) -> Bare {
        let cfg = gate_config(b);
        let client = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(cfg.system_roots)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(cfg.user_agent.clone())
            .https_only(false)
            .no_proxy()
            .build()
            .expect("client");
        Bare {
            client,
            url: Url::parse(&cfg.check_url).expect("url"),
            token: b.access_token.as_bytes().to_vec(),
            max_body: cfg.session.gate.max_body,
        }
    }

    async fn get(&self) -> CheckOutcome {
        let mut v = Vec::with_capacity(7 + self.token.len());
        v.extend_from_slice(b"Bearer ");
        v.extend_from_slice(&self.token);
        let mut auth = HeaderValue::from_bytes(&v).expect("header-safe token");
        auth.set_sensitive(true);
        let Ok(mut resp) = self
            .client
            .get(self.url.clone())
            .header(AUTHORIZATION, auth)
            .send()
            .await
        else {
            return CheckOutcome::transient(accessgate::TransientClass::Io);
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get(RETRY_AFTER).map(|v| v.as_bytes().to_vec());
        let Ok(body) = read_capped(&mut resp, self.max_body).await else {
            return CheckOutcome::transient(accessgate::TransientClass::Io);
        };
        classify(status, retry_after.as_deref(), &body, self.max_body)
    }

    async fn get_with_timeout(&self) -> CheckOutcome {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
        tokio::time::timeout_at(deadline, self.get())
            .await
            .unwrap_or(CheckOutcome::transient(accessgate::TransientClass::Timeout))
    }
}

/// The adapter's body loop: at most `limit + 1` bytes, chunk by chunk.
async fn read_capped(resp: &mut Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let cap = limit.saturating_add(1);
    let mut body = Vec::with_capacity(cap.min(4096));
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

/// A signed-in gate; beside it, the sender to the `bare_get_hop` task.
struct Gated {
    gate: AccessGate,
    tokens: Tokens,
    hop: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<CheckOutcome>>,
}

impl Gated {
    async fn new(b: &BackendThread, bare: Arc<Bare>) -> Gated {
        let (hop, mut requests) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<CheckOutcome>>(1);
        // Like the driver: one task, a request in, the request run inside it, the answer out.
        tokio::spawn(async move {
            while let Some(reply) = requests.recv().await {
                let _ = reply.send(bare.get_with_timeout().await);
            }
        });
        let gate = AccessGate::spawn(gate_config(b)).expect("gate spawns");
        let status = gate.sign_in(b.tokens()).await.expect("sign_in");
        assert_eq!(status.access, Access::Granted, "backend grants the bench user");
        Gated {
            gate,
            tokens: b.tokens(),
            hop,
        }
    }

    /// One re-check: `recheck()` returns once the session has the outcome of the check it
    /// started (run in this task). `true` when that check was a grant.
    async fn recheck(&mut self) -> bool {
        let before = self.gate.snapshot().counters;
        self.gate.recheck().await.expect("recheck is not rate-limited");
        let after = self.gate.snapshot().counters;
        after.attempts > before.attempts && after.grants > before.grants
    }

    /// `bare_get_timeout` run by the hop task.
    async fn hop(&self) -> CheckOutcome {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.hop.send(tx).await.expect("hop task");
        rx.await.expect("hop task")
    }

    /// Tokens for one `sign_in`, made before the operation is timed.
    fn spare(&self, v: Variant) -> Option<Tokens> {
        (v == Variant::AdapterSignIn).then(|| self.tokens.clone())
    }

    /// A fresh session with `tokens`: `sign_in` awaits its first check (R3).
    async fn sign_in(&mut self, tokens: Tokens) -> bool {
        let status = self.gate.sign_in(tokens).await.expect("sign_in");
        status.access == Access::Granted
    }
}

/// A client runtime flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    MultiThread,
    CurrentThread,
}

impl Flavour {
    const ALL: [Flavour; 2] = [Flavour::MultiThread, Flavour::CurrentThread];

    fn name(self) -> &'static str {
        match self {
            Flavour::MultiThread => "mt",
            Flavour::CurrentThread => "ct",
        }
    }

    fn runtime(self) -> Runtime {
        match self {
            Flavour::MultiThread => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
            Flavour::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        }
        .expect("client runtime")
    }
}

/// One client runtime with its bare client and its gate.
struct ClientRt {
    flavour: Flavour,
    rt: Runtime,
    bare: Arc<Bare>,
    gated: Arc<tokio::sync::Mutex<Gated>>,
}

impl ClientRt {
    fn new(flavour: Flavour, b: &BackendThread) -> ClientRt {
        let rt = flavour.runtime();
        let bare = Arc::new(Bare::new(b));
        let gated = rt.block_on(Gated::new(b, bare.clone()));
        ClientRt {
            flavour,
            rt,
            bare,
            gated: Arc::new(tokio::sync::Mutex::new(gated)),
        }
    }

    /// Runs `f` in a task spawned on this runtime (not on the `block_on` thread).
    fn in_task<T: Send + 'static>(&self, f: impl std::future::Future<Output = T> + Send + 'static) -> T {
        self.rt
            .block_on(async move { tokio::spawn(f).await.expect("bench task") })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    BareGet,
    BareGetTimeout,
    BareGetTask,
    BareGetHop,
    AdapterRecheck,
    AdapterSignIn,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Variant::BareGet,
        Variant::BareGetTimeout,
        Variant::BareGetTask,
        Variant::BareGetHop,
        Variant::AdapterRecheck,
        Variant::AdapterSignIn,
    ];
    /// The variants criterion measures.
    const CRITERION: [Variant; 3] = [Variant::BareGet, Variant::AdapterRecheck, Variant::AdapterSignIn];

    fn name(self) -> &'static str {
        match self {
            Variant::BareGet => "bare_get",
            Variant::BareGetTimeout => "bare_get_timeout",
            Variant::BareGetTask => "bare_get_task",
            Variant::BareGetHop => "bare_get_hop",
            Variant::AdapterRecheck => "adapter_recheck",
            Variant::AdapterSignIn => "adapter_sign_in",
        }
    }
}

/// One operation of `v`; `true` when it ended in a grant. `spare`: the tokens of a sign-in
/// ([`Gated::spare`]).
async fn op(v: Variant, bare: &Arc<Bare>, gated: &mut Gated, spare: Option<Tokens>) -> bool {
    match v {
        Variant::BareGet => bare.get().await == CheckOutcome::Granted,
        Variant::BareGetTimeout => bare.get_with_timeout().await == CheckOutcome::Granted,
        Variant::BareGetTask => {
            let bare = bare.clone();
            let task = tokio::spawn(async move { bare.get_with_timeout().await });
            task.await.expect("request task") == CheckOutcome::Granted
        }
        Variant::BareGetHop => gated.hop().await == CheckOutcome::Granted,
        Variant::AdapterRecheck => gated.recheck().await,
        Variant::AdapterSignIn => gated.sign_in(spare.expect("tokens for a sign-in")).await,
    }
}

fn criterion_pass(c: &mut Criterion, clients: &[ClientRt]) {
    for client in clients {
        let mut group = c.benchmark_group(format!("overhead_{}", client.flavour.name()));
        group
            .sample_size(100)
            .warm_up_time(StdDuration::from_secs(2))
            .measurement_time(StdDuration::from_secs(6));
        for v in Variant::CRITERION {
            group.bench_function(v.name(), |b| {
                b.iter_custom(|iters| {
                    let bare = client.bare.clone();
                    let gated = client.gated.clone();
                    client.in_task(async move {
                        let mut gated = gated.lock().await;
                        let mut failed = 0u64;
                        let mut spares: Vec<_> = (0..iters).map(|_| gated.spare(v)).collect();
                        let start = StdInstant::now();
                        for spare in spares.drain(..) {
                            if !black_box(op(v, &bare, &mut gated, spare).await) {
                                failed += 1;
                            }
                        }
                        let took = start.elapsed();
                        assert!(failed == 0, "{failed} of {iters} {} were not grants", v.name());
                        took
                    })
                })
            });
        }
        group.finish();
    }
}

/// Per-operation times of one variant in the interleaved pass, in µs.
struct Samples {
    v: Variant,
    /// In round order (for paired ratios).
    rounds: Vec<f64>,
    /// Sorted.
    us: Vec<f64>,
    failed: u64,
}

/// Median over rounds of `b[i] / a[i]`: each round's operations ran back to back, so slow
/// phases of the machine cancel out of the ratio.
fn paired_ratio(a: &Samples, b: &Samples) -> f64 {
    let mut r: Vec<f64> = a.rounds.iter().zip(&b.rounds).map(|(a, b)| b / a).collect();
    r.sort_by(f64::total_cmp);
    quantile(&r, 0.5)
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
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Rounds of every variant, in an order shuffled each round; the first `warmup` rounds
/// are dropped.
fn interleaved_pass(client: &ClientRt, rounds: usize, warmup: usize) -> Vec<Samples> {
    let bare = client.bare.clone();
    let gated = client.gated.clone();
    client.in_task(async move {
        let mut gated = gated.lock().await;
        let mut out: Vec<Samples> = Variant::ALL
            .iter()
            .map(|&v| Samples {
                v,
                rounds: Vec::with_capacity(rounds),
                us: Vec::new(),
                failed: 0,
            })
            .collect();
        let only = std::env::var("OVERHEAD_ONLY").ok();
        let only: Option<Vec<&str>> = only.as_deref().map(|o| o.split(',').collect());
        let mut shuffle = Shuffle(0x9e37_79b9_7f4a_7c15);
        for round in 0..warmup + rounds {
            for i in shuffle.order::<{ Variant::ALL.len() }>() {
                let v = Variant::ALL[i];
                if !only.as_ref().is_none_or(|names| names.contains(&v.name())) {
                    continue;
                }
                let spare = gated.spare(v);
                let start = StdInstant::now();
                let ok = black_box(op(v, &bare, &mut gated, spare).await);
                let took = start.elapsed();
                if round >= warmup {
                    out[i].rounds.push(took.as_secs_f64() * 1e6);
                    if !ok {
                        out[i].failed += 1;
                    }
                }
            }
        }
        for s in &mut out {
            s.us = s.rounds.clone();
            s.us.sort_by(f64::total_cmp);
        }
        out
    })
}

/// Criterion's median estimate (ns per iteration) of one benchmark, if it ran.
fn criterion_median_us(group: &str, name: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let path = dir
        .join("criterion")
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64().map(|ns| ns / 1000.0)
}

fn main() {
    let backend = BackendThread::start();
    let clients: Vec<ClientRt> = Flavour::ALL.iter().map(|&f| ClientRt::new(f, &backend)).collect();

    let skip_criterion = std::env::var_os("OVERHEAD_SKIP_CRITERION").is_some_and(|v| v == "1");
    if !skip_criterion {
        let mut c = Criterion::default().configure_from_args();
        criterion_pass(&mut c, &clients);
        c.final_summary();
    }

    let rounds = std::env::var("OVERHEAD_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let warmup = 200;
    let mut summary = Vec::new();
    for client in &clients {
        let f = client.flavour.name();
        let samples = interleaved_pass(client, rounds, warmup);
        println!("\ninterleaved pass, runtime {f}: {rounds} rounds (+{warmup} warm-up) of every variant, shuffled order");
        println!(
            "  {:<18} {:>10} {:>10} {:>10} {:>10}  {:>7}",
            "variant", "min µs", "median µs", "p90 µs", "p99 µs", "failed"
        );
        for s in &samples {
            println!(
                "  {:<18} {:>10.1} {:>10.1} {:>10.1} {:>10.1}  {:>7}",
                s.v.name(),
                quantile(&s.us, 0.0),
                quantile(&s.us, 0.5),
                quantile(&s.us, 0.9),
                quantile(&s.us, 0.99),
                s.failed
            );
        }
        let get = |v: Variant| samples.iter().find(|s| s.v == v).expect("variant");
        let bare = get(Variant::BareGet);
        let a = quantile(&bare.us, 0.5);
        for v in [
            Variant::BareGetTimeout,
            Variant::BareGetTask,
            Variant::BareGetHop,
            Variant::AdapterRecheck,
            Variant::AdapterSignIn,
        ] {
            let s = get(v);
            if s.us.is_empty() {
                continue; // not chosen by OVERHEAD_ONLY
            }
            let b = quantile(&s.us, 0.5);
            summary.push(format!(
                "overhead {f}: {:<16} median {b:>6.1} µs vs bare_get {a:>6.1} µs: ratio {:.2} (paired {:.2}), {:+.1} µs; p90 {:.1} vs {:.1} µs",
                v.name(),
                b / a,
                paired_ratio(bare, s),
                b - a,
                quantile(&s.us, 0.9),
                quantile(&bare.us, 0.9),
            ));
        }
        if !skip_criterion {
            let group = format!("overhead_{f}");
            let get = |v: Variant| criterion_median_us(&group, v.name());
            if let (Some(a), Some(r), Some(s)) = (
                get(Variant::BareGet),
                get(Variant::AdapterRecheck),
                get(Variant::AdapterSignIn),
            ) {
                summary.push(format!(
                    "overhead {f} (criterion medians): bare_get {a:.1} µs, adapter_recheck {r:.1} µs (ratio {:.2}), adapter_sign_in {s:.1} µs (ratio {:.2})",
                    r / a,
                    s / a
                ));
            }
        }
    }
    println!("\nsummary");
    for line in &summary {
        println!("{line}");
    }
    drop(clients);
    drop(backend);
}
