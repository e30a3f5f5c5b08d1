//! The driver: runs the core's [`Session`] on embassy.
//!
//! [`Driver::run`] is one future made of three, joined (no allocator, no extra tasks):
//! - the **session loop**, which owns the [`Session`]: it waits for a command, a finished
//!   request or the session's next deadline (`Timer::at(poll_timeout)`), feeds it in with
//!   `now`, then drains the session's outputs. Every input is bounded work (R12).
//! - the **check lane** and the **refresh lane**, each running at most one request at a time
//!   on its own buffers, bounded by `embassy_time::with_timeout` (the network traits have no
//!   timeout of their own). A newer request, or a cancel, drops the one running and with it
//!   its connection.
//!
//! After every input the session loop drains the outputs in this order, as the std driver
//! does:
//! 1. actions ([`Session::poll_action`] hands out cancels first): stop or start lanes;
//! 2. events, onto the [`Link`]'s event channel;
//! 3. the [`Snapshot`], published on the link;
//! 4. then the answers to token requests, so whoever gets an answer reads the state that
//!    produced it.

use core::cell::RefCell;
use core::future::poll_fn;

use accessgate::{
    classify, classify_refresh, Action, CheckOutcome, CheckRequest, Duration, Instant, RefreshOutcome,
    RefreshRequest, Session, SessionEvent, TokenHandle, TokenReply, TransientClass, WaiterId,
};
use embassy_futures::join::join3;
use embassy_futures::select::{select, select3, Either, Either3};
use embassy_sync::blocking_mutex::raw::{NoopRawMutex, RawMutex};
use embassy_sync::channel::Channel;
use embassy_time::{with_timeout, Timer};
use embedded_nal_async::{Dns, TcpConnect};
#[cfg(feature = "tls")]
use rand_chacha::ChaCha20Rng;
#[cfg(feature = "tls")]
use rand_core::SeedableRng;

use crate::buffers::DriverBuffers;
#[cfg(feature = "tls")]
use crate::config::Transport;
use crate::config::{ConfigError, DriverConfig, Seeds};
use crate::failure::{Failure, NetFailure};
use crate::handover::{Inbox, NewTokens};
use crate::http::{Http, Prepared, Reply, Request};
use crate::link::{Credentials, Link, Queued, Refusal, Snapshot, TimedEvent, TokenError, TokenSlot};
use crate::time;

/// A request the session handed out.
#[derive(Clone, Copy)]
enum Job {
    Check(CheckRequest),
    Refresh(RefreshRequest),
}

/// A finished request, as the session takes it. No token travels in it: a refresh's new
/// tokens wait in [`Lanes::tokens`].
enum Done {
    Check(CheckRequest, CheckOutcome),
    Refresh(RefreshRequest, Refreshed),
}

/// A [`RefreshOutcome`] whose tokens are in [`Lanes::tokens`].
#[derive(Clone, Copy)]
enum Refreshed {
    Tokens(Duration),
    Rejected,
    Failed(Failure),
}

impl Refreshed {
    /// `outcome`, its tokens copied out of the lane's body buffer into `tokens`.
    fn copy<const T: usize>(outcome: RefreshOutcome<'_>, tokens: &mut NewTokens<T>) -> Self {
        match outcome {
            RefreshOutcome::Refreshed {
                access_token,
                refresh_token,
                expires_in,
            } => match tokens.store(access_token, refresh_token) {
                Ok(()) => Refreshed::Tokens(expires_in),
                // Longer than `T`: a malformed answer, as the session judges it too (never
                // truncated). Header safety is the session's to check.
                Err(()) => Refreshed::Failed(Failure::TOKEN_TOO_LONG),
            },
            RefreshOutcome::Rejected => Refreshed::Rejected,
            RefreshOutcome::Transient { class, detail } => Refreshed::Failed(Failure { class, detail }),
        }
    }

    fn outcome<const T: usize>(self, tokens: &NewTokens<T>) -> RefreshOutcome<'_> {
        match self {
            Refreshed::Tokens(expires_in) => {
                let (access_token, refresh_token) = tokens.tokens();
                RefreshOutcome::Refreshed {
                    access_token,
                    refresh_token,
                    expires_in,
                }
            }
            Refreshed::Rejected => RefreshOutcome::Rejected,
            Refreshed::Failed(f) => RefreshOutcome::transient_with(f.class, f.detail),
        }
    }
}

/// The in-task plumbing between the session loop and its lanes: each lane's next request,
/// the finished ones, and the tokens of a refresh answer.
struct Lanes<const T: usize> {
    check: Inbox<Job, T>,
    refresh: Inbox<Job, T>,
    done: Channel<NoopRawMutex, Done, 1>,
    tokens: RefCell<NewTokens<T>>,
}

/// One lane: a network connection at a time, on its own buffers.
struct Lane<'a, C, D> {
    http: Http<'a, C, D>,
    url: &'a str,
    /// The refresh form's `client_id` (unused by checks).
    client_id: &'a str,
    /// Bodies up to this long are read whole; one byte more shows an oversized one (R1).
    max_body: usize,
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
    check: Lane<'a, C, D>,
    refresh: Option<Lane<'a, C, D>>,
}

struct SessionLoop<'a, M: RawMutex, const N: usize, const W: usize, const T: usize> {
    session: Session<N, W, T>,
    link: &'a Link<'a, M, T>,
    has_refresh_lane: bool,
    waiters: heapless::Vec<(WaiterId, &'a TokenSlot<M, T>), W>,
    /// The last snapshot, with the driver's own counters.
    snapshot: Snapshot,
}

/// A token request answered by this input, delivered after the snapshot (the token is
/// copied out of the session only then, straight into the slot).
type Answer<'a, M, const T: usize> = (&'a TokenSlot<M, T>, Result<TokenHandle, TokenError>);

/// A dropped driver (its task cancelled, or a test) leaves no token in its session: the core
/// wipes them when a session ends (R11). Nothing checks any more, so the link shows the session
/// ended (not a grant nobody keeps up to date), callers waiting for a token are told, and the
/// link is detached (queued commands answered or wiped, new ones refused until a driver
/// attaches again).
impl<M: RawMutex, const N: usize, const W: usize, const T: usize> Drop for SessionLoop<'_, M, N, W, T> {
    fn drop(&mut self) {
        let now = time::now();
        self.session.logout(now);
        self.publish(now);
        // R11: the session just ended, so every waiter's answer is NotAuthenticated (the
        // core's answers to them, queued by the logout, go with the session).
        for (_, slot) in self.waiters.drain(..) {
            slot.answer(Err(TokenError::NotAuthenticated));
        }
        self.link.detach();
    }
}

impl<'a, M: RawMutex, C: TcpConnect, D: Dns, const N: usize, const W: usize, const T: usize>
    Driver<'a, M, C, D, N, W, T>
{
    /// Checks `config` against `buffers` (a refresh lane's iff `config.refresh` is set; sizes
    /// in [`crate::buffers`]) and `seeds` (from a hardware RNG or the OS, never constants), once,
    /// and builds the driver; every refusal is a [`ConfigError`]; a `link` driven already is
    /// [`ConfigError::LinkInUse`] (dropping the driver frees it). Nothing runs until [`Driver::run`].
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
            Transport::Tls(tls) => Some(tls),
            Transport::PlainHttp => None,
        };
        // Each lane draws TLS randomness from its own ChaCha20 stream (`stream`) under the
        // validated seed; over plain HTTP the streams are never used for anything secret.
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
        let http = |bufs, stream| Http {
            tcp,
            dns,
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            rng: {
                let mut rng = ChaCha20Rng::from_seed(seeds.tls.unwrap_or_default());
                rng.set_stream(stream);
                rng
            },
            bufs,
        };
        let refresh = config.refresh.zip(buffers.refresh).map(|(endpoint, bufs)| Lane {
            // Validated: at least 64 bytes; the whole buffer takes the answer.
            max_body: bufs.body.len().saturating_sub(1),
            http: http(bufs, 1),
            url: endpoint.url,
            client_id: endpoint.client_id,
        });
        link.attach()?; // last: nothing after it can fail and leave the link attached
        Ok(Driver {
            core: SessionLoop {
                session,
                link,
                has_refresh_lane: refresh.is_some(),
                waiters: heapless::Vec::new(),
                snapshot: Snapshot::default(),
            },
            check: Lane {
                http: http(buffers.check, 0),
                url: config.check_url,
                client_id: "",
                max_body: config.session.gate.max_body,
            },
            refresh,
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
            mut check,
            mut refresh,
        } = self;
        let lanes = Lanes::<T> {
            check: Inbox::new(),
            refresh: Inbox::new(),
            done: Channel::new(),
            tokens: RefCell::new(NewTokens::new()),
        };
        let refresh = async {
            match &mut refresh {
                Some(lane) => lane.serve(&lanes.refresh, &lanes).await,
                None => core::future::pending().await,
            }
        };
        join3(core.run(&lanes), check.serve(&lanes.check, &lanes), refresh)
            .await
            .0
    }
}

impl<C: TcpConnect, D: Dns> Lane<'_, C, D> {
    async fn serve<const T: usize>(&mut self, inbox: &Inbox<Job, T>, lanes: &Lanes<T>) -> ! {
        loop {
            inbox.wake.wait().await;
            // The token goes from the inbox into the request buffer, and is wiped there.
            while let Some((job, prepared)) = inbox.take(|job, token| self.prepare(job, token)) {
                // A newer request (or a cancel) drops this one, and with it the connection.
                let raced = select(inbox.wake.wait(), self.exchange(job, prepared)).await;
                let result = match raced {
                    Either::First(()) => {
                        self.http.wipe();
                        continue;
                    }
                    Either::Second(result) => result,
                };
                // Room first: the outcome (tokens and all) is built after it, not kept in
                // this future while it waits. Then the send cannot fail.
                poll_fn(|cx| lanes.done.poll_ready_to_send(cx)).await;
                let _ = lanes.done.try_send(self.outcome(job, result, &lanes.tokens));
                // Whatever the outcome: the request, the answer and its tokens (now with the
                // session loop) are no longer needed here.
                self.http.wipe();
                break;
            }
        }
    }

    /// Writes the request's secret part (bearer value or refresh form) into the lane's
    /// request buffer.
    fn prepare(&mut self, job: Job, token: &[u8]) -> Result<Prepared, Failure> {
        self.http.prepare(match job {
            Job::Check(_) => Request::Check { token },
            Job::Refresh(_) => Request::Refresh {
                refresh_token: token,
                client_id: self.client_id,
            },
        })
    }

    /// One request, bounded by its timeout (R4).
    async fn exchange(&mut self, job: Job, prepared: Result<Prepared, Failure>) -> Result<Reply, Failure> {
        let prepared = prepared?;
        let timeout = match job {
            Job::Check(req) => req.timeout,
            Job::Refresh(req) => req.timeout,
        };
        let limit = self.max_body.saturating_add(1);
        let exchange = self.http.exchange(self.url, prepared, limit);
        with_timeout(time::duration_to_embassy(timeout), exchange)
            .await
            .unwrap_or(Err(Failure::net(TransientClass::Timeout, NetFailure::Timeout)))
    }

    /// The request's outcome in the session's terms; a refresh answer's tokens are copied
    /// into `tokens`.
    fn outcome<const T: usize>(
        &self,
        job: Job,
        result: Result<Reply, Failure>,
        tokens: &RefCell<NewTokens<T>>,
    ) -> Done {
        let body = |r: &Reply| self.http.body(r.body_len);
        match (job, result) {
            (Job::Check(req), Ok(r)) => {
                let outcome = classify(r.status, r.retry_after.as_deref(), body(&r), self.max_body);
                Done::Check(req, outcome)
            }
            // R13: the step that failed and why (certificate expired, connection refused...).
            (Job::Check(req), Err(f)) => Done::Check(req, CheckOutcome::transient_with(f.class, f.detail)),
            (Job::Refresh(req), Ok(r)) => {
                let outcome = classify_refresh(r.status, body(&r), self.max_body);
                Done::Refresh(req, Refreshed::copy(outcome, &mut tokens.borrow_mut()))
            }
            (Job::Refresh(req), Err(f)) => Done::Refresh(req, Refreshed::Failed(f)),
        }
    }
}

impl<'a, M: RawMutex, const N: usize, const W: usize, const T: usize> SessionLoop<'a, M, N, W, T> {
    async fn run(&mut self, lanes: &Lanes<T>) -> ! {
        self.drain(time::now(), lanes, None);
        // A sign-in's tokens on their way from the link's queue to the session: copied out
        // under the link's lock, fed to the session after it, wiped right then (and by its
        // `Drop` if this future is dropped in between).
        let mut staged = Credentials::<T>::empty();
        loop {
            let wake = self.session.poll_timeout().map(time::to_embassy);
            let deadline = async {
                match wake {
                    Some(at) => Timer::at(at).await,
                    None => core::future::pending().await,
                }
            };
            let woke = select3(self.link.command_ready(), deadline, lanes.done.receive()).await;
            let now = time::now();
            let mut answer = None;
            match woke {
                // Under the link's lock (interrupts off on a device) only a copy of the tokens,
                // out of the queue slot, which is wiped right after; the session's sign-in
                // (token checks, copies, events: about 15 times longer) runs after it. The
                // copy is wiped once the session has its own.
                Either3::First(()) => {
                    let taken = self.link.take_staged(&mut staged);
                    answer = taken.and_then(|command| self.command(now, command));
                    staged.wipe();
                }
                Either3::Second(()) => self.session.handle_timeout(now),
                Either3::Third(Done::Check(req, outcome)) => {
                    self.session
                        .handle_check_result(now, req.generation, req.attempt, outcome);
                }
                Either3::Third(Done::Refresh(req, refreshed)) => {
                    let mut tokens = lanes.tokens.borrow_mut();
                    self.session
                        .handle_refresh_result(now, req.id, refreshed.outcome(&tokens));
                    // The session has its own copy now (or refused them).
                    tokens.wipe();
                }
            }
            self.drain(now, lanes, answer);
        }
    }

    /// Feeds one command in; a token request answered at once returns its answer.
    fn command(&mut self, now: Instant, command: Queued<'_, 'a, M, T>) -> Option<Answer<'a, M, T>> {
        debug!("command {}", command.name());
        let mut answer = None;
        let refused = match command {
            Queued::SignIn(c) => self
                .session
                .sign_in(now, &c.access_token, &c.refresh_token, c.expires_in)
                .err()
                .map(Refusal::SignIn),
            Queued::Restore(c) => self
                .session
                .restore(now, &c.access_token, &c.refresh_token, c.expires_in)
                .err()
                .map(Refusal::SignIn),
            Queued::Logout => {
                self.session.logout(now);
                None
            }
            Queued::Recheck => self.session.recheck_now(now).err().map(Refusal::Recheck),
            // R12: a slot asked for again while it waits (its task gave up and asked anew)
            // keeps its one place: the session answers all its waiters alike, so the pending
            // answer is the one a new place would get, and asking again fills no table.
            Queued::RequestToken(slot) if self.waiters.iter().any(|(_, s)| core::ptr::eq(*s, slot)) => None,
            Queued::RequestToken(slot) => match self.session.request_token(now) {
                Ok(TokenReply::Ready(handle)) => return Some((slot, Ok(handle))),
                // Answered through `poll_waiter`. Cannot overflow: the session holds at most W
                // waiters, and so do we.
                Ok(TokenReply::Wait(id)) => {
                    let overflow = self.waiters.push((id, slot)).err();
                    return overflow.map(|(_, slot)| (slot, Err(TokenError::Busy)));
                }
                Err(e) => {
                    answer = Some((slot, Err(e.into())));
                    Some(Refusal::TokenRequest(e))
                }
            },
        };
        if let Some(e) = refused {
            debug!("command refused: {:?}", e);
            let s = &mut self.snapshot;
            s.commands_refused = s.commands_refused.saturating_add(1);
            s.last_refusal = Some(e);
        }
        answer
    }

    /// The token behind `handle`, still in the session; a handle of a torn-down session
    /// gives `NotAuthenticated` (R11).
    fn token(&self, handle: Result<TokenHandle, TokenError>) -> Result<&[u8], TokenError> {
        self.session
            .access_token(handle?)
            .ok_or(TokenError::NotAuthenticated)
    }

    /// Drains the session's outputs after an input, in the order of the module docs.
    fn drain(&mut self, now: Instant, lanes: &Lanes<T>, answer: Option<Answer<'a, M, T>>) {
        while let Some(action) = self.session.poll_action() {
            match action {
                // Timed out, superseded or logged out: stop spending on it (R10). The session
                // cancels a request before it hands out the next of its kind, so the one named
                // is the lane's latest, running or already done.
                Action::CancelCheck { .. } => lanes.check.cancel(),
                Action::CancelRefresh(_) => lanes.refresh.cancel(),
                Action::Check(req) => {
                    // Cannot fail: the session hands out checks with its current token.
                    if let Ok(token) = self.token(Ok(req.token)) {
                        lanes.check.post(Job::Check(req), token);
                    }
                }
                Action::Refresh(req) => {
                    let posted = self.has_refresh_lane
                        && self
                            .session
                            .refresh_token()
                            .is_some_and(|token| lanes.refresh.post(Job::Refresh(req), token));
                    // No token endpoint configured: the refresh fails transiently at once and
                    // the session keeps its token and retries per R11 (on a timer: this loop
                    // ends). What this input causes is drained with the rest.
                    if !posted {
                        let outcome = RefreshOutcome::transient(TransientClass::OtherStatus);
                        self.session.handle_refresh_result(now, req.id, outcome);
                    }
                }
            }
        }
        let mut access_changed = false;
        while let Some(event) = self.session.poll_event() {
            access_changed |= log_event(&event);
            // Never blocks: a full event channel costs a timeline line, not gate progress.
            if !self.link.offer_event(TimedEvent { at: now, event }) {
                let s = &mut self.snapshot;
                s.events_dropped = s.events_dropped.saturating_add(1);
            }
        }
        // R13: the counters reach the log after every access change or end of session.
        if access_changed {
            info!("counters: {}", self.session.counters());
        }
        self.publish(now);
        // Copied from the session straight into the slot (R11: a torn-down session's handle
        // gives no token).
        if let Some((slot, answer)) = answer {
            slot.answer(self.token(answer));
        }
        self.answer_waiters();
    }

    /// The session's state, with the driver's own counters, on the link.
    fn publish(&mut self, now: Instant) {
        self.snapshot.at = now;
        self.snapshot.status = self.session.status();
        self.snapshot.counters = *self.session.counters();
        self.link.publish(self.snapshot);
    }

    /// Answers the token requests the session settled (R11: a torn-down session's handle
    /// gives no token).
    fn answer_waiters(&mut self) {
        while let Some((id, result)) = self.session.poll_waiter() {
            if let Some(i) = self.waiters.iter().position(|(w, _)| *w == id) {
                let (_, slot) = self.waiters.swap_remove(i);
                slot.answer(self.token(result.map_err(TokenError::from)));
            }
        }
    }
}

/// Logs one event; `true` for an access change or an end of session (the counters follow).
///
/// R13: what an operator needs at the info level: every transient failure with its class and
/// detail here, access changes with their cause from the core, the counters after each change
/// (the caller). The other events at debug.
#[cfg(any(feature = "defmt", feature = "log"))]
fn log_event(event: &SessionEvent) -> bool {
    match *event {
        SessionEvent::Gate(accessgate::Event::CheckFailed {
            attempt,
            class,
            detail,
            ..
        }) => info!("check {} failed: {} ({})", attempt, class.name(), detail),
        SessionEvent::RefreshFailed { class, detail, .. } => {
            info!("token refresh failed: {} ({})", class.name(), detail)
        }
        SessionEvent::Gate(
            accessgate::Event::AccessChanged { .. } | accessgate::Event::SessionEnded { .. },
        ) => {
            debug!("event {:?}", event);
            return true;
        }
        _ => debug!("event {:?}", event),
    }
    false
}

/// Without logging nothing is logged, so nothing is worth the counters line: the image
/// without logging runs the same code as before it had one.
#[cfg(not(any(feature = "defmt", feature = "log")))]
fn log_event(_: &SessionEvent) -> bool {
    false
}
