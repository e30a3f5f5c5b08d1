//! The driver: runs the core's [`Session`] on embassy.
//!
//! [`Driver::run`] is one future made of three, joined (no allocator, no extra tasks):
//! - the **session loop**, which owns the [`Session`]: it waits for a command, a finished
//!   exchange or the session's next deadline (`Timer::at(poll_timeout)`), feeds it in with
//!   `now`, then settles: starts the actions the session asks for, answers token waiters,
//!   forwards events, cancels exchanges the session no longer waits for, and publishes a
//!   snapshot. Every input is bounded work (R12).
//! - the **check lane** and the **refresh lane**, each running at most one HTTP exchange at
//!   a time, with its own buffers, bounded by `embassy_time::with_timeout` (the network
//!   traits have no timeout of their own). A newer job replaces the running one (the old
//!   connection is dropped); so does a cancel.
//!
//! The session also times every attempt out by itself, at the same deadline: whichever side
//! notices first, the attempt counts once.

use accessgate::{
    classify, classify_refresh, Action, CheckOutcome, Generation, RefreshId, RefreshOutcome, Session,
    SessionEvent, TokenHandle, TransientClass, WaitError, WaiterId,
};
use embassy_futures::join::join3;
use embassy_futures::select::{select, select4, Either, Either4};
use embassy_sync::blocking_mutex::raw::{NoopRawMutex, RawMutex};
use embassy_sync::channel::Channel;
use embassy_sync::signal::Signal;
use embassy_time::{with_timeout, Timer};
use embedded_nal_async::{Dns, TcpConnect};
#[cfg(feature = "tls")]
use rand_chacha::ChaCha20Rng;
#[cfg(feature = "tls")]
use rand_core::{RngCore, SeedableRng};

use crate::buffers::DriverBuffers;
#[cfg(feature = "tls")]
use crate::config::Transport;
use crate::config::{ConfigError, DriverConfig, RefreshEndpoint, Seeds};
#[cfg(feature = "tls")]
use crate::http::TlsTrust;
use crate::http::{Http, Request, TlsSeed};
use crate::link::{copy_token, Command, Link, Refusal, Snapshot, TimedEvent, Token, TokenError, TokenSlot};
use crate::time;

/// Bound on settle rounds after one input (R12): each round starts actions, answers waiters
/// and drains events; an answered-at-once refresh can cause one more round.
const MAX_SETTLE_ROUNDS: usize = 4;

enum CheckJob<const T: usize> {
    Run {
        generation: Generation,
        attempt: u32,
        timeout: accessgate::Duration,
        token: Token<T>,
        tls_seed: TlsSeed,
    },
    Cancel,
}

struct CheckDone {
    generation: Generation,
    attempt: u32,
    outcome: CheckOutcome,
}

enum RefreshJob<const T: usize> {
    Run {
        id: RefreshId,
        timeout: accessgate::Duration,
        refresh_token: Token<T>,
        tls_seed: TlsSeed,
    },
    Cancel,
}

/// A [`RefreshOutcome`] with its tokens copied out of the lane's body buffer.
enum OwnedRefresh<const T: usize> {
    Refreshed {
        access_token: Token<T>,
        refresh_token: Option<Token<T>>,
        expires_in: accessgate::Duration,
    },
    Rejected,
    Transient(TransientClass),
}

impl<const T: usize> OwnedRefresh<T> {
    fn copy(outcome: RefreshOutcome<'_>) -> Self {
        match outcome {
            RefreshOutcome::Refreshed {
                access_token,
                refresh_token,
                expires_in,
            } => {
                // A token that is too long, or that could smuggle bytes into a header, is a
                // malformed answer (the session treats oversized tokens the same way).
                let access = copy_token::<T>(access_token);
                let refresh = refresh_token.map(copy_token::<T>).transpose();
                match (access, refresh) {
                    (Ok(access_token), Ok(refresh_token)) => OwnedRefresh::Refreshed {
                        access_token,
                        refresh_token,
                        expires_in,
                    },
                    _ => OwnedRefresh::Transient(TransientClass::InvalidBody),
                }
            }
            RefreshOutcome::Rejected => OwnedRefresh::Rejected,
            RefreshOutcome::Transient(c) => OwnedRefresh::Transient(c),
        }
    }

    fn borrow(&self) -> RefreshOutcome<'_> {
        match self {
            OwnedRefresh::Refreshed {
                access_token,
                refresh_token,
                expires_in,
            } => RefreshOutcome::Refreshed {
                access_token,
                refresh_token: refresh_token.as_deref(),
                expires_in: *expires_in,
            },
            OwnedRefresh::Rejected => RefreshOutcome::Rejected,
            OwnedRefresh::Transient(c) => RefreshOutcome::Transient(*c),
        }
    }
}

struct RefreshDone<const T: usize> {
    id: RefreshId,
    outcome: OwnedRefresh<T>,
}

/// The in-task plumbing between the session loop and its two lanes.
struct Lanes<const T: usize> {
    check_jobs: Signal<NoopRawMutex, CheckJob<T>>,
    check_done: Channel<NoopRawMutex, CheckDone, 1>,
    refresh_jobs: Signal<NoopRawMutex, RefreshJob<T>>,
    refresh_done: Channel<NoopRawMutex, RefreshDone<T>, 1>,
}

/// Runs one [`Session`] on embassy: timers, HTTP(S) (embedded-tls with the project's verifier), and the app's
/// [`Link`]. Build it with [`Driver::new`], then `run()` it in a task of its own (it never
/// returns).
///
/// Generic parameters: `M` is the [`Link`]'s mutex; `C`/`D` the network (`TcpConnect` +
/// `Dns`: `embassy_net::tcp::client::TcpClient` + `embassy_net::dns::DnsSocket` on a board,
/// `std_embedded_nal_async::Stack` on a host); `N`, `W`, `T` the session's retry schedule
/// capacity, waiter table and token capacity (see [`Session`]).
pub struct Driver<
    'a,
    M: RawMutex,
    C: TcpConnect,
    D: Dns,
    const N: usize = 8,
    const W: usize = 4,
    const T: usize = { accessgate::DEFAULT_TOKEN_CAPACITY },
> {
    core: SessionLoop<'a, M, N, W, T>,
    check: Http<'a, C, D>,
    refresh: Option<Http<'a, C, D>>,
    check_url: &'a str,
    refresh_endpoint: Option<RefreshEndpoint<'a>>,
}

struct SessionLoop<'a, M: RawMutex, const N: usize, const W: usize, const T: usize> {
    session: Session<N, W, T>,
    link: &'a Link<'a, M, T>,
    has_refresh_lane: bool,
    /// Per-connection TLS seeds (32 bytes each, drawn from this stream).
    #[cfg(feature = "tls")]
    rng: ChaCha20Rng,
    waiters: heapless::Vec<(WaiterId, &'a TokenSlot<M, T>), W>,
    check_job: Option<(Generation, u32)>,
    refresh_job: Option<RefreshId>,
    events_dropped: u32,
    commands_refused: u32,
    last_refusal: Option<Refusal>,
}

impl<'a, M: RawMutex, C: TcpConnect, D: Dns, const N: usize, const W: usize, const T: usize>
    Driver<'a, M, C, D, N, W, T>
{
    /// Checks `config` against `buffers` and `seeds` (once; every refusal is a
    /// [`ConfigError`]) and builds the driver. Nothing runs until [`Driver::run`].
    ///
    /// - `link`: what the app shares with the driver;
    /// - `tcp`, `dns`: the network (`TcpConnect`, `Dns`);
    /// - `config`: URLs, transport, session settings ([`DriverConfig`]);
    /// - `buffers`: each lane's memory ([`DriverBuffers`]; a refresh lane iff
    ///   `config.refresh` is set; see [`crate::buffers`] for sizes);
    /// - `seeds`: from a hardware RNG (or the OS), never constants: the jitter seed must
    ///   differ per device (R6), and the TLS seed keys every connection's randomness.
    ///
    /// Rust does not infer defaulted const generics: name the type
    /// (`let d: Driver<'_, M, C, D> = Driver::new(..)?`) or write `Driver::<_, _, _>::new(..)`.
    pub fn new(
        link: &'a Link<'a, M, T>,
        tcp: &'a C,
        dns: &'a D,
        config: DriverConfig<'a>,
        buffers: DriverBuffers<'a>,
        seeds: Seeds,
    ) -> Result<Self, ConfigError> {
        config.validate_with::<T>(&buffers, &seeds)?;
        let session = Session::new(config.session, seeds.jitter)?;
        #[cfg(feature = "tls")]
        let tls = match config.transport {
            Transport::Tls(tls) => Some(TlsTrust {
                anchor: tls.ca_der,
                clock: tls.clock,
            }),
            Transport::PlainHttp => None,
        };
        let lane = |bufs| Http {
            tcp,
            dns,
            #[cfg(feature = "tls")]
            tls,
            bufs,
        };
        let DriverBuffers {
            check: check_buffers,
            refresh: refresh_buffers,
        } = buffers;
        Ok(Driver {
            core: SessionLoop {
                session,
                link,
                has_refresh_lane: refresh_buffers.is_some(),
                // Validated: a TLS transport has a non-zero seed; over plain HTTP the stream
                // is never used for anything secret.
                #[cfg(feature = "tls")]
                rng: ChaCha20Rng::from_seed(seeds.tls.unwrap_or_default()),
                waiters: heapless::Vec::new(),
                check_job: None,
                refresh_job: None,
                events_dropped: 0,
                commands_refused: 0,
                last_refusal: None,
            },
            check: lane(check_buffers),
            refresh: refresh_buffers.map(lane),
            check_url: config.check_url,
            refresh_endpoint: config.refresh,
        })
    }

    /// The session (read-only), e.g. to check the configuration in use.
    pub fn session(&self) -> &Session<N, W, T> {
        &self.core.session
    }

    /// Runs for ever: serves the link's commands, checks and refreshes. Spawn it in its own
    /// task; the app talks to it through the [`Link`] only.
    pub async fn run(self) -> ! {
        let Driver {
            mut core,
            check,
            refresh,
            check_url,
            refresh_endpoint,
        } = self;
        let lanes = Lanes::<T> {
            check_jobs: Signal::new(),
            check_done: Channel::new(),
            refresh_jobs: Signal::new(),
            refresh_done: Channel::new(),
        };
        let max_body = core.session.config().gate.max_body;
        let refresh_lane = async {
            match (refresh, refresh_endpoint) {
                (Some(http), Some(endpoint)) => refresh_lane(http, endpoint, &lanes).await,
                _ => core::future::pending().await,
            }
        };
        let (never, _, _) = join3(
            core.run(&lanes),
            check_lane(check, check_url, max_body, &lanes),
            refresh_lane,
        )
        .await;
        never
    }
}

async fn check_lane<C: TcpConnect, D: Dns, const T: usize>(
    mut http: Http<'_, C, D>,
    url: &str,
    max_body: usize,
    lanes: &Lanes<T>,
) -> ! {
    let mut next = lanes.check_jobs.wait().await;
    loop {
        let CheckJob::Run {
            generation,
            attempt,
            timeout,
            token,
            tls_seed,
        } = next
        else {
            next = lanes.check_jobs.wait().await;
            continue;
        };
        let http = &mut http;
        let exchange = async move {
            let limit = max_body.saturating_add(1);
            let request = Request::Check { token: &token };
            match with_timeout(
                time::duration_to_embassy(timeout),
                http.exchange(url, request, limit, tls_seed),
            )
            .await
            {
                Err(_) => CheckOutcome::transient(TransientClass::Timeout),
                // R13: the step that failed and why (certificate expired, connection refused...).
                Ok(Err(failure)) => CheckOutcome::transient_with(failure.class, failure.detail),
                Ok(Ok(reply)) => classify(
                    reply.status,
                    reply.retry_after.as_deref(),
                    http.body(reply.body_len),
                    max_body,
                ),
            }
        };
        // A new job (or a cancel) drops the exchange in flight, and with it the connection.
        match select(lanes.check_jobs.wait(), exchange).await {
            Either::First(job) => next = job,
            Either::Second(outcome) => {
                lanes
                    .check_done
                    .send(CheckDone {
                        generation,
                        attempt,
                        outcome,
                    })
                    .await;
                next = lanes.check_jobs.wait().await;
            }
        }
    }
}

async fn refresh_lane<C: TcpConnect, D: Dns, const T: usize>(
    mut http: Http<'_, C, D>,
    endpoint: RefreshEndpoint<'_>,
    lanes: &Lanes<T>,
) -> ! {
    let mut next = lanes.refresh_jobs.wait().await;
    loop {
        let RefreshJob::Run {
            id,
            timeout,
            refresh_token,
            tls_seed,
        } = next
        else {
            next = lanes.refresh_jobs.wait().await;
            continue;
        };
        let http = &mut http;
        let exchange = async move {
            let request = Request::Refresh {
                refresh_token: &refresh_token,
                client_id: endpoint.client_id,
            };
            let limit = usize::MAX; // the whole body buffer
            match with_timeout(
                time::duration_to_embassy(timeout),
                http.exchange(endpoint.url, request, limit, tls_seed),
            )
            .await
            {
                Err(_) => OwnedRefresh::Transient(TransientClass::Timeout),
                Ok(Err(failure)) => OwnedRefresh::Transient(failure.class),
                Ok(Ok(reply)) => {
                    let max_body = http.body_capacity().saturating_sub(1);
                    OwnedRefresh::copy(classify_refresh(
                        reply.status,
                        http.body(reply.body_len),
                        max_body,
                    ))
                }
            }
        };
        match select(lanes.refresh_jobs.wait(), exchange).await {
            Either::First(job) => next = job,
            Either::Second(outcome) => {
                lanes.refresh_done.send(RefreshDone { id, outcome }).await;
                next = lanes.refresh_jobs.wait().await;
            }
        }
    }
}

impl<'a, M: RawMutex, const N: usize, const W: usize, const T: usize> SessionLoop<'a, M, N, W, T> {
    async fn run(&mut self, lanes: &Lanes<T>) -> ! {
        self.settle(time::now(), lanes);
        loop {
            let wake = self.session.poll_timeout().map(time::to_embassy);
            let deadline = async {
                match wake {
                    Some(at) => Timer::at(at).await,
                    None => core::future::pending().await,
                }
            };
            let woke = select4(
                self.link.commands().receive(),
                deadline,
                lanes.check_done.receive(),
                lanes.refresh_done.receive(),
            )
            .await;
            let now = time::now();
            match woke {
                Either4::First(command) => self.command(now, command),
                Either4::Second(()) => self.session.handle_timeout(now),
                Either4::Third(done) => {
                    if self.check_job == Some((done.generation, done.attempt)) {
                        self.check_job = None;
                    }
                    self.session
                        .handle_check_result(now, done.generation, done.attempt, done.outcome);
                }
                Either4::Fourth(done) => {
                    if self.refresh_job == Some(done.id) {
                        self.refresh_job = None;
                    }
                    let outcome = done.outcome.borrow();
                    self.session.handle_refresh_result(now, done.id, outcome);
                }
            }
            self.settle(now, lanes);
        }
    }

    fn refused(&mut self, e: Refusal) {
        debug!("command refused: {:?}", e);
        self.commands_refused = self.commands_refused.saturating_add(1);
        self.last_refusal = Some(e);
    }

    fn command(&mut self, now: accessgate::Instant, command: Command<'a, M, T>) {
        debug!("command {}", command.name());
        let r = match command {
            Command::SignIn(c) => self
                .session
                .sign_in(now, &c.access_token, &c.refresh_token, c.expires_in)
                .map(drop)
                .map_err(Refusal::SignIn),
            Command::Restore(c) => self
                .session
                .restore(now, &c.access_token, &c.refresh_token, c.expires_in)
                .map(drop)
                .map_err(Refusal::SignIn),
            Command::Logout => {
                self.session.logout(now);
                Ok(())
            }
            Command::Recheck => self.session.recheck_now(now).map_err(Refusal::Recheck),
            Command::RequestToken(slot) => {
                self.request_token(now, slot);
                Ok(())
            }
        };
        if let Err(e) = r {
            self.refused(e);
        }
    }

    fn request_token(&mut self, now: accessgate::Instant, slot: &'a TokenSlot<M, T>) {
        match self.session.request_token(now) {
            Ok(accessgate::TokenReply::Ready(handle)) => slot.answer(self.token(handle)),
            Ok(accessgate::TokenReply::Wait(id)) => {
                // Cannot overflow: the session holds at most W waiters, and so do we.
                if self.waiters.push((id, slot)).is_err() {
                    slot.answer(Err(TokenError::Busy));
                }
            }
            Err(e) => {
                slot.answer(Err(match e {
                    accessgate::TokenRequestError::WaitersFull => TokenError::WaitersFull,
                    _ => TokenError::NotSignedIn,
                }));
                self.refused(Refusal::TokenRequest(e));
            }
        }
    }

    /// A copy of the token behind `handle`; a handle of a torn-down session gives
    /// `NotAuthenticated` (R11).
    fn token(&self, handle: TokenHandle) -> Result<Token<T>, TokenError> {
        let bytes = self
            .session
            .access_token(handle)
            .ok_or(TokenError::NotAuthenticated)?;
        // Cannot fail: the session's tokens are at most T bytes too.
        Token::from_slice(bytes).map_err(|_| TokenError::Busy)
    }

    fn answer_waiter(&mut self, id: WaiterId, result: Result<TokenHandle, WaitError>) {
        let Some(i) = self.waiters.iter().position(|(w, _)| *w == id) else {
            return;
        };
        let (_, slot) = self.waiters.swap_remove(i);
        slot.answer(match result {
            Ok(handle) => self.token(handle),
            Err(e) => Err(e.into()),
        });
    }

    fn drain_events(&mut self, now: accessgate::Instant) {
        while let Some(event) = self.session.poll_event() {
            self.emit(now, event);
        }
    }

    fn emit(&mut self, at: accessgate::Instant, event: SessionEvent) {
        // Access changes are logged by the core itself (at info).
        debug!("event {:?}", event);
        // Never blocks: a full event channel costs a timeline line, not gate progress.
        if !self.link.offer_event(TimedEvent { at, event }) {
            self.events_dropped = self.events_dropped.saturating_add(1);
        }
    }

    /// A fresh seed for one connection's TLS randomness.
    #[cfg(feature = "tls")]
    fn tls_seed(&mut self) -> TlsSeed {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        seed
    }

    /// Nothing to seed without TLS.
    #[cfg(not(feature = "tls"))]
    #[allow(clippy::unused_self)]
    fn tls_seed(&mut self) -> TlsSeed {
        TlsSeed
    }

    /// Starts what the session asks for.
    fn dispatch(&mut self, now: accessgate::Instant, action: Action, lanes: &Lanes<T>) {
        match action {
            // Timed out by the session, superseded, or logged out: stop spending on it (R10).
            Action::CancelCheck { generation, attempt } => {
                if self.check_job == Some((generation, attempt)) {
                    lanes.check_jobs.signal(CheckJob::Cancel);
                    self.check_job = None;
                }
            }
            Action::CancelRefresh(id) => {
                if self.refresh_job == Some(id) {
                    lanes.refresh_jobs.signal(RefreshJob::Cancel);
                    self.refresh_job = None;
                }
            }
            Action::Check(req) => {
                let Ok(token) = self.token(req.token) else {
                    // The session ended in between; the attempt is stale and times out unseen.
                    return;
                };
                self.check_job = Some((req.generation, req.attempt));
                lanes.check_jobs.signal(CheckJob::Run {
                    generation: req.generation,
                    attempt: req.attempt,
                    timeout: req.timeout,
                    token,
                    tls_seed: self.tls_seed(),
                });
            }
            Action::Refresh(req) => {
                let token = self.session.refresh_token().map(Token::<T>::from_slice);
                match token {
                    Some(Ok(refresh_token)) if self.has_refresh_lane => {
                        self.refresh_job = Some(req.id);
                        lanes.refresh_jobs.signal(RefreshJob::Run {
                            id: req.id,
                            timeout: req.timeout,
                            refresh_token,
                            tls_seed: self.tls_seed(),
                        });
                    }
                    _ => {
                        // No token endpoint configured: the refresh fails transiently at once;
                        // the session keeps its token and retries per R11.
                        let outcome = RefreshOutcome::Transient(TransientClass::OtherStatus);
                        self.session.handle_refresh_result(now, req.id, outcome);
                    }
                }
            }
        }
    }

    /// After every input: start actions, answer waiters, forward events, cancel exchanges
    /// the session stopped waiting for (R10), publish a snapshot.
    fn settle(&mut self, now: accessgate::Instant, lanes: &Lanes<T>) {
        for _ in 0..MAX_SETTLE_ROUNDS {
            let mut acted = false;
            while let Some(action) = self.session.poll_action() {
                acted = true;
                self.dispatch(now, action, lanes);
            }
            while let Some((id, result)) = self.session.poll_waiter() {
                self.answer_waiter(id, result);
            }
            self.drain_events(now);
            if !acted {
                break;
            }
        }
        let status = self.session.status();
        self.link.publish(Snapshot {
            at: now,
            status,
            counters: *self.session.counters(),
            events_dropped: self.events_dropped,
            commands_refused: self.commands_refused,
            last_refusal: self.last_refusal,
        });
    }
}
