//! The entitlement part of a session: R1–R8, R10, R12, R13 (see `docs/behaviour.md`).
//!
//! [`Entitlement`] decides access from check results and time. It owns no clock, no queue, no
//! timers and no PRNG: every method works on the machine's one [`Shared`] state, so a
//! [`Session`](crate::Session) and a bare [`Gate`] run exactly the same code. [`Gate`] is that
//! part with a machine of its own and no tokens, for drivers that manage tokens themselves (the
//! fleet simulator, the gate-only reference model, apps with their own token store).
//!
//! The gate's methods come in three groups, in this order: getters (`&self`), inputs
//! (`start_session`, `token_refreshed`, `logout`, `unauthorized`, `transient_failure`,
//! `handle_check_result`, `handle_timeout`, `recheck_now`), and outputs (`poll_check`,
//! `poll_cancel`, `poll_event`, `poll_timeout`). A driver, after every input, starts the
//! check `poll_check` hands out, stops the one `poll_cancel` names, drains `poll_event`, then
//! sleeps until `poll_timeout`.

use crate::classify::{CheckOutcome, TransientClass};
use crate::config::{ConfigError, GateConfig};
use crate::detail::{FailureDetail, LastFailure, NetFailure};
use crate::error::{NotSignedIn, RecheckError};
use crate::machine::{inc, Handout, Shared};
use crate::schedule::{ProbeSchedule, RetrySchedule};
use crate::time::{Duration, Instant};
use crate::timer::{Timer, CHECK_TIMERS};

/// Capacity of a bare [`Gate`]'s event queue: more than one input can produce
/// ([`MAX_EVENTS_PER_INPUT`]), so a driver that drains after every input never loses one.
pub const EVENT_CAPACITY: usize = 8;
/// A bound on the events one gate input can queue, one above the worst input, which queues
/// six: a refreshed generation's attempt 0 timing out (`CheckFailed`, `FirstCheckSettled`) as
/// the deadline passes (`AccessChanged`), in an input that ends the session (`AccessChanged`,
/// `SessionEnded`) and starts another (`CheckStarted`).
pub const MAX_EVENTS_PER_INPUT: usize = 7;
/// Bound on timers processed by one input (R12); the real chain is at most two long.
const MAX_TIMER_STEPS: usize = 4;

/// Session generation: bumped on every session start, token refresh and logout. Everything
/// is tagged with the generation it was started for (R10). Wraps after 2^32 bumps; only
/// equality with the current generation matters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Generation(pub u32);

impl Generation {
    fn bump(&mut self) {
        self.0 = self.0.wrapping_add(1);
    }
}

/// An opaque handle the driver uses to find the access token for a check. The gate only
/// carries it; the session layer (or the app) maps it to the token bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenHandle(pub u32);

/// What the app renders from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Access {
    /// No definitive answer yet in this session (or signed out): show "checking".
    #[default]
    Unknown,
    /// The server said yes, and the fail-closed deadline has not passed since.
    Granted,
    /// The server said no, or no definitive answer arrived by the deadline.
    Denied,
}

/// Why access last changed (R13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Cause {
    /// `200 {"has_access": true}`.
    ServerGranted,
    /// `200 {"has_access": false}` (R2).
    ServerDenied,
    /// No definitive answer by the deadline (R5).
    FailedClosed,
    /// A grant after failing closed (R7).
    Recovered,
    /// A 401 ended the session (R8), or the refresh token was rejected (R11).
    Unauthorized,
    /// The app logged out (or started another session).
    LoggedOut,
}

impl Cause {
    /// A short snake_case name, for logs and JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            Cause::ServerGranted => "server_granted",
            Cause::ServerDenied => "server_denied",
            Cause::FailedClosed => "failed_closed",
            Cause::Recovered => "recovered",
            Cause::Unauthorized => "unauthorized",
            Cause::LoggedOut => "logged_out",
        }
    }
}

/// "Start check attempt `attempt` for `generation`": the driver sends
/// `GET check_url` with the token behind `token`, and reports the outcome with
/// [`Gate::handle_check_result`] unless it gives up after `timeout` (the gate times the
/// attempt out by itself at `started + timeout` too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CheckRequest {
    /// Generation the check belongs to.
    pub generation: Generation,
    /// Attempt number within the generation (0 = the immediate check of R3; after
    /// `u32::MAX` the numbers go on at 1).
    pub attempt: u32,
    /// Which token to send.
    pub token: TokenHandle,
    /// Per-attempt timeout (R4).
    pub timeout: Duration,
    /// When the gate started the attempt.
    pub started: Instant,
}

/// Something that happened, for logs, timelines and the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Event {
    /// A check attempt was started (see [`Gate::poll_check`]).
    CheckStarted {
        /// Its generation.
        generation: Generation,
        /// Its attempt number.
        attempt: u32,
    },
    /// A check attempt failed transiently; access is unchanged (R4).
    CheckFailed {
        /// Its generation.
        generation: Generation,
        /// Its attempt number.
        attempt: u32,
        /// What went wrong.
        class: TransientClass,
        /// What exactly went wrong (R13).
        detail: FailureDetail,
        /// When the next attempt starts, if one is planned.
        next_attempt: Option<Instant>,
        /// The fail-closed deadline, while it is ahead (R5).
        deadline: Option<Instant>,
    },
    /// Access changed (R13).
    AccessChanged {
        /// Before.
        from: Access,
        /// After.
        to: Access,
        /// Why.
        cause: Cause,
    },
    /// A result for an older generation or a finished attempt was dropped (R10).
    StaleResult {
        /// The result's generation.
        generation: Generation,
        /// The result's attempt.
        attempt: u32,
    },
    /// Attempt 0 of `generation`, the immediate check of R3, is over: it answered, failed,
    /// timed out, or its session ended. Callers that wait for "the first check" of a sign-in or
    /// refresh wake up on this; a token refresh that lands while attempt 0 runs starts a new
    /// attempt 0 instead, and this event then comes for the new generation (R3).
    FirstCheckSettled {
        /// The generation whose first check settled.
        generation: Generation,
    },
    /// The session ended (logout or 401).
    SessionEnded {
        /// Why.
        cause: Cause,
    },
}

/// A snapshot of what the app renders from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Status {
    /// Current access.
    pub access: Access,
    /// Cause of the last change, `None` before the first.
    pub cause: Option<Cause>,
    /// Whether a session is active.
    pub signed_in: bool,
    /// Current generation.
    pub generation: Generation,
    /// `Some(deadline)` while a transient failure is being retried before failing closed (R5).
    pub reverifying_until: Option<Instant>,
    /// Whether the gate failed closed and is probing for recovery (R7).
    pub probing: bool,
    /// Attempt in flight, if any. For display: a driver learns that an attempt ended from
    /// [`Event::FirstCheckSettled`] and the cancel outputs, not by watching this field.
    pub attempt_in_flight: Option<u32>,
    /// When the next attempt starts, if one is waiting.
    pub next_attempt: Option<Instant>,
    /// The last transient failure of this session, of a check or of a token refresh, with its
    /// detail (R13). Kept through a definitive answer (it is history, not state); cleared when
    /// a new session starts.
    pub last_failure: Option<LastFailure>,
    /// When access last changed (the instant of the last [`Event::AccessChanged`]), `None`
    /// before the first change (R13).
    pub since: Option<Instant>,
}

/// Plain counters (R13). All saturate. Under `defmt` they print with every transient class
/// named (a derived `Format` would print the per-class array as bare numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Counters {
    /// Check attempts started.
    pub attempts: u32,
    /// Transient failures by class, indexed by [`TransientClass::index`].
    pub transient: [u32; TransientClass::COUNT],
    /// Definitive grants received.
    pub grants: u32,
    /// Definitive denials received.
    pub denials: u32,
    /// Results dropped because they were stale (R10).
    pub stale_dropped: u32,
    /// Times the gate failed closed (R5).
    pub failed_closed: u32,
    /// Grants after failing closed (R7).
    pub recoveries: u32,
    /// Sessions ended by the app.
    pub logouts: u32,
    /// Sessions ended by a 401 or a rejected refresh (R8, R11).
    pub unauthorized_logouts: u32,
    /// Token refreshes started by the session layer (R11).
    pub refreshes: u32,
    /// Token refreshes that failed transiently (R11).
    pub refresh_failures: u32,
    /// Events dropped because the queue was full: the oldest event makes room for the newest
    /// (R12). Stays zero for a driver that drains the events after every input, as the queue
    /// holds more than one input can produce.
    pub events_lost: u32,
}

impl Counters {
    /// All zero (what `Counters::default()` gives, usable in a `const fn`).
    pub(crate) const ZERO: Counters = Counters {
        attempts: 0,
        transient: [0; TransientClass::COUNT],
        grants: 0,
        denials: 0,
        stale_dropped: 0,
        failed_closed: 0,
        recoveries: 0,
        logouts: 0,
        unauthorized_logouts: 0,
        refreshes: 0,
        refresh_failures: 0,
        events_lost: 0,
    };

    /// Transient failures of one class.
    pub fn transient_of(&self, class: TransientClass) -> u32 {
        self.transient[class.index()]
    }
    /// All transient failures.
    pub fn transient_total(&self) -> u32 {
        self.transient.iter().fold(0u32, |a, b| a.saturating_add(*b))
    }
}

// R13: what an operator reads on a device. One `write!` (a `Format` impl writes one frame
// entry), every class by the name `TransientClass::name` gives it; a new class must be added
// here, which the assertion below enforces.
#[cfg(feature = "defmt")]
const _: () = assert!(
    TransientClass::COUNT == 11,
    "name the new class in Counters' Format"
);

#[cfg(feature = "defmt")]
impl defmt::Format for Counters {
    fn format(&self, f: defmt::Formatter<'_>) {
        use TransientClass as C;
        let t = |c: C| self.transient_of(c);
        defmt::write!(
            f,
            "attempts {=u32}, transient failures {=u32} (connect {=u32}, dns {=u32}, tls {=u32}, timeout {=u32}, io {=u32}, forbidden {=u32}, throttled {=u32}, server_error {=u32}, other_status {=u32}, invalid_body {=u32}, token_expired {=u32}), grants {=u32}, denials {=u32}, stale dropped {=u32}, failed closed {=u32}, recoveries {=u32}, logouts {=u32}, unauthorized logouts {=u32}, refreshes {=u32}, refresh failures {=u32}, events lost {=u32}",
            self.attempts,
            self.transient_total(),
            t(C::Connect),
            t(C::Dns),
            t(C::Tls),
            t(C::Timeout),
            t(C::Io),
            t(C::Forbidden),
            t(C::Throttled),
            t(C::ServerError),
            t(C::OtherStatus),
            t(C::InvalidBody),
            t(C::TokenExpired),
            self.grants,
            self.denials,
            self.stale_dropped,
            self.failed_closed,
            self.recoveries,
            self.logouts,
            self.unauthorized_logouts,
            self.refreshes,
            self.refresh_failures,
            self.events_lost,
        )
    }
}

/// The same text as the `defmt` form, for `log` (R13): every transient class by its name.
impl core::fmt::Display for Counters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "attempts {}, transient failures {} (",
            self.attempts,
            self.transient_total()
        )?;
        for (i, class) in TransientClass::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {}", class.name(), self.transient_of(*class))?;
        }
        write!(
            f,
            "), grants {}, denials {}, stale dropped {}, failed closed {}, recoveries {}, logouts {}, unauthorized logouts {}, refreshes {}, refresh failures {}, events lost {}",
            self.grants,
            self.denials,
            self.stale_dropped,
            self.failed_closed,
            self.recoveries,
            self.logouts,
            self.unauthorized_logouts,
            self.refreshes,
            self.refresh_failures,
            self.events_lost,
        )
    }
}

/// R3: whoever waits for the immediate check of `first` can go on; it comes after the events
/// of the outcome, so a waiter woken by it reads the settled state.
fn settled<E: From<Event>, const Q: usize>(io: &mut Shared<E, Q>, first: Option<Generation>) {
    if let Some(generation) = first {
        io.push(Event::FirstCheckSettled { generation });
    }
}

/// A run of transient failures without a definitive answer in between (R5–R7). It survives
/// token refreshes so a refresh cannot move the deadline.
#[derive(Clone, Copy, Debug)]
struct Streak<const N: usize> {
    deadline: Instant,
    failed_closed: bool,
    /// Where retries go before the deadline (R6).
    retries: RetrySchedule<N>,
    /// Where probes go after failing closed (R7); set when the gate fails closed.
    probes: Option<ProbeSchedule>,
}

/// The entitlement part: what the server said, the run of failures, the attempt in flight.
/// `N` is the retry schedule's capacity (R6). Its timers, events, PRNG and generation live in
/// the machine's [`Shared`] state; every input goes through [`Entitlement::step`].
#[derive(Clone, Debug)]
#[repr(C)]
pub(crate) struct Entitlement<const N: usize> {
    in_flight: Option<u32>,
    next_attempt: u32,
    signed_in: bool,
    access: Access,
    cause: Option<Cause>,
    token: TokenHandle,
    since: Option<Instant>,
    last_attempt_started: Option<Instant>,
    last_failure: Option<LastFailure>,
    streak: Option<Streak<N>>,
}

/// Whether a check result ended the session (a 401, R8).
pub(crate) type Ended = bool;

impl<const N: usize> Entitlement<N> {
    pub(crate) const fn new() -> Self {
        Entitlement {
            signed_in: false,
            token: TokenHandle(0),
            access: Access::Unknown,
            cause: None,
            since: None,
            last_failure: None,
            in_flight: None,
            next_attempt: 0,
            last_attempt_started: None,
            streak: None,
        }
    }

    // ---- getters ----

    pub(crate) fn access(&self) -> Access {
        self.access
    }
    pub(crate) fn signed_in(&self) -> bool {
        self.signed_in
    }
    pub(crate) fn first_check_running(&self) -> bool {
        self.signed_in && self.in_flight == Some(0)
    }
    pub(crate) fn check_owed(&self) -> bool {
        self.signed_in && (self.in_flight.is_some() || self.streak.is_some())
    }
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.streak.filter(|s| !s.failed_closed).map(|s| s.deadline)
    }
    pub(crate) fn status<E, const Q: usize>(&self, io: &Shared<E, Q>) -> Status {
        Status {
            access: self.access,
            cause: self.cause,
            signed_in: self.signed_in,
            generation: io.generation,
            reverifying_until: self.deadline(),
            probing: self.streak.is_some_and(|s| s.failed_closed),
            attempt_in_flight: self.in_flight,
            next_attempt: io.timers.get(Timer::Retry),
            last_failure: self.last_failure,
            since: self.since,
        }
    }

    /// The attempt in flight while its request waits for the driver.
    pub(crate) fn pending_attempt<E, const Q: usize>(&self, io: &Shared<E, Q>) -> Option<u32> {
        self.in_flight.filter(|_| io.check == Handout::Pending)
    }

    /// The request of the attempt in flight while it waits for the driver; marks it handed
    /// out.
    pub(crate) fn poll_check<E, const Q: usize>(
        &self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
    ) -> Option<CheckRequest> {
        if io.check != Handout::Pending {
            return None;
        }
        let req = CheckRequest {
            generation: io.generation,
            attempt: self.in_flight?,
            token: self.token,
            timeout: cfg.attempt_timeout,
            started: self.last_attempt_started?,
        };
        io.check = Handout::HandedOut;
        Some(req)
    }

    // ---- the step every input goes through ----

    /// One input of this part at `io.now` (the input's `now`, already advanced): the check
    /// timers due by then fire at their own instants first, so an input arriving after the
    /// deadline sees the gate already failed closed (R5, to the tick); then the input; then the
    /// retry or probe that is due, unless the input started a check or ended the session (a
    /// retry superseded by the input is never started, R10).
    pub(crate) fn step<E: From<Event>, const Q: usize, R>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        input: impl FnOnce(&mut Self, &mut Shared<E, Q>) -> R,
    ) -> R {
        let due = self.step_begin(cfg, io);
        let r = input(self, io);
        self.step_end(cfg, io, due);
        r
    }

    /// The prologue of [`Entitlement::step`] (out of line: one copy for every input). Returns
    /// the retry due now, if any.
    #[inline(never)]
    fn step_begin<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
    ) -> Option<Instant> {
        let now = io.now;
        for _ in 0..MAX_TIMER_STEPS {
            let Some((at, timer)) = io.timers.take_due(&CHECK_TIMERS, now) else {
                break;
            };
            match timer {
                // R4: an attempt that did not answer in time failed; its request no longer
                // matters to anyone.
                Timer::Attempt => self.attempt_failed(
                    cfg,
                    io,
                    at,
                    TransientClass::Timeout,
                    FailureDetail::Net(NetFailure::Timeout),
                    None,
                    true,
                ),
                _ => self.fail_closed(cfg, io, at),
            }
        }
        // A retry due now stays armed while the input runs (so the input sees it planned) and
        // starts after it, unless the input replaced it (by starting a check or ending the
        // session). One the input itself plans for `now` starts with the next input.
        io.timers.get(Timer::Retry).filter(|&at| at <= now)
    }

    /// The epilogue of [`Entitlement::step`]: starts the retry that was due (R6, R7).
    #[inline(never)]
    fn step_end<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        due: Option<Instant>,
    ) {
        if due.is_some() && io.timers.get(Timer::Retry) == due {
            io.timers.stop(Timer::Retry);
            if self.signed_in && self.in_flight.is_none() {
                self.start_attempt(cfg, io);
            }
        }
    }

    // ---- inputs (call inside `step`) ----

    pub(crate) fn start_session<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        token: TokenHandle,
    ) -> Generation {
        if self.signed_in {
            self.end_session(io, Cause::LoggedOut);
        }
        io.generation.bump();
        self.signed_in = true;
        self.token = token;
        self.last_failure = None;
        self.start_attempt(cfg, io); // R3
        io.generation
    }

    pub(crate) fn token_refreshed<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        token: TokenHandle,
    ) -> Result<Generation, NotSignedIn> {
        if !self.signed_in {
            return Err(NotSignedIn);
        }
        // The older generation's attempt in flight no longer matters (named with its own
        // generation), and its retry loop is stale from here on (R10).
        self.cancel_in_flight(io);
        io.generation.bump();
        self.token = token;
        self.next_attempt = 0;
        self.start_attempt(cfg, io); // R3; the deadline stays where it is (R5)
        Ok(io.generation)
    }

    pub(crate) fn end<E: From<Event>, const Q: usize>(&mut self, io: &mut Shared<E, Q>, cause: Cause) {
        if self.signed_in {
            self.end_session(io, cause);
        }
    }

    pub(crate) fn transient_failure<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        now: Instant,
        class: TransientClass,
        detail: FailureDetail,
        start: bool,
    ) -> Result<(), NotSignedIn> {
        if !self.signed_in {
            return Err(NotSignedIn);
        }
        // R13: the last failure, whoever decides next.
        self.last_failure = Some(LastFailure {
            class,
            detail,
            at: now,
        });
        // With `start` (R5): a check in flight decides; a planned (or due) retry already
        // carries the streak; else this failure starts one.
        if start && self.in_flight.is_none() && !io.timers.is_set(Timer::Retry) {
            self.attempt_failed(cfg, io, now, class, detail, None, false);
        }
        Ok(())
    }

    pub(crate) fn check_result<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        now: Instant,
        generation: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) -> Ended {
        if !self.signed_in || generation != io.generation || self.in_flight != Some(attempt) {
            // R10: an older generation, or an attempt that already finished or timed out.
            inc(&mut io.counters.stale_dropped);
            debug!("stale result dropped: gen {} attempt {}", generation.0, attempt);
            io.push(Event::StaleResult { generation, attempt });
            return false;
        }
        // The driver is done with this request: nothing to cancel.
        io.check = Handout::None;
        match outcome {
            CheckOutcome::Granted => self.definitive(io, now, Access::Granted),
            CheckOutcome::Denied => self.definitive(io, now, Access::Denied),
            CheckOutcome::Unauthorized => {
                self.end_session(io, Cause::Unauthorized); // R8
                return true;
            }
            CheckOutcome::Transient {
                class,
                retry_after,
                detail,
            } => self.attempt_failed(cfg, io, now, class, detail, retry_after, true),
        }
        false
    }

    pub(crate) fn recheck_now<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        now: Instant,
    ) -> Result<(), RecheckError> {
        if !self.signed_in {
            return Err(RecheckError::NotSignedIn);
        }
        if self.in_flight.is_some() || io.timers.is_due(Timer::Retry, now) {
            return Ok(()); // a check is running or starts with this very input
        }
        if let Some(last) = self.last_attempt_started {
            let retry_at = last + cfg.min_recheck_interval;
            if now < retry_at {
                return Err(RecheckError::RateLimited { retry_at });
            }
        }
        self.start_attempt(cfg, io);
        Ok(())
    }

    // ---- internals ----

    fn set_access<E: From<Event>, const Q: usize>(
        &mut self,
        io: &mut Shared<E, Q>,
        at: Instant,
        to: Access,
        cause: Cause,
    ) {
        let from = self.access;
        if from == to && self.cause == Some(cause) {
            return;
        }
        self.access = to;
        self.cause = Some(cause);
        self.since = Some(at);
        info!("access {:?} -> {:?} ({:?})", from, to, cause);
        io.push(Event::AccessChanged { from, to, cause });
    }

    fn start_attempt<E: From<Event>, const Q: usize>(&mut self, cfg: &GateConfig, io: &mut Shared<E, Q>) {
        let now = io.now;
        // An attempt still in flight (a token refresh landed meanwhile) is superseded.
        self.cancel_in_flight(io);
        let attempt = self.next_attempt;
        // R10: past u32::MAX the numbers go on at 1, so one repeats only 2^32 - 1 attempts
        // later (saturating made every later attempt u32::MAX: a timed-out attempt's late
        // answer counted for the next one); 0 stays the immediate check of R3.
        self.next_attempt = self.next_attempt.wrapping_add(1).max(1);
        self.in_flight = Some(attempt);
        self.last_attempt_started = Some(now);
        io.timers.set(Timer::Attempt, now + cfg.attempt_timeout); // R4
        io.timers.stop(Timer::Retry);
        inc(&mut io.counters.attempts);
        io.check = Handout::Pending;
        io.push(Event::CheckStarted {
            generation: io.generation,
            attempt,
        });
    }

    /// The attempt in flight stops mattering without its own answer: a check not yet handed
    /// to the driver is withdrawn, one already running is named in a cancel output.
    fn cancel_in_flight<E, const Q: usize>(&mut self, io: &mut Shared<E, Q>) {
        if let (Some(attempt), Handout::HandedOut) = (self.in_flight, io.check) {
            io.cancel_check = Some((io.generation, attempt));
        }
        io.check = Handout::None;
    }

    /// The attempt in flight is over (answered, failed, timed out, or its session ended).
    /// Returns the generation whose immediate check (attempt 0) this settled, if it was one:
    /// the caller reports it with [`settled`] once the outcome is applied.
    fn finish_attempt<E, const Q: usize>(&mut self, io: &mut Shared<E, Q>) -> Option<Generation> {
        self.cancel_in_flight(io);
        io.timers.stop(Timer::Attempt);
        (self.in_flight.take() == Some(0)).then_some(io.generation)
    }

    fn definitive<E: From<Event>, const Q: usize>(
        &mut self,
        io: &mut Shared<E, Q>,
        now: Instant,
        answer: Access,
    ) {
        let first = self.finish_attempt(io);
        // R1/R2: a definitive answer ends the streak, its retries and its deadline.
        let was_failed_closed = self.streak.is_some_and(|s| s.failed_closed)
            || (self.access == Access::Denied && self.cause == Some(Cause::FailedClosed));
        self.streak = None;
        io.timers.stop(Timer::Retry);
        io.timers.stop(Timer::Deadline);
        match answer {
            Access::Granted => {
                inc(&mut io.counters.grants);
                if self.access != Access::Granted {
                    let cause = if was_failed_closed {
                        inc(&mut io.counters.recoveries);
                        Cause::Recovered // R7
                    } else {
                        Cause::ServerGranted
                    };
                    self.set_access(io, now, Access::Granted, cause);
                }
            }
            _ => {
                inc(&mut io.counters.denials);
                self.set_access(io, now, Access::Denied, Cause::ServerDenied); // R2
            }
        }
        settled(io, first);
    }

    /// A transient failure at `at`: of the attempt in flight (`from_check`), or of a token
    /// refresh (then no attempt is in flight and the token part counts it).
    #[allow(clippy::too_many_arguments)]
    fn attempt_failed<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        at: Instant,
        class: TransientClass,
        detail: FailureDetail,
        retry_after: Option<Duration>,
        from_check: bool,
    ) {
        self.last_failure = Some(LastFailure { class, detail, at }); // R13
        let attempt = self.in_flight.unwrap_or(self.next_attempt);
        let first = self.finish_attempt(io);
        if from_check {
            inc(&mut io.counters.transient[class.index()]);
        }
        if self.streak.is_none() {
            // R5: the first transient failure fixes the deadline; it never moves.
            let deadline = at + cfg.budget;
            io.timers.set(Timer::Deadline, deadline);
            self.streak = Some(Streak {
                deadline,
                failed_closed: false,
                retries: RetrySchedule::new(at),
                probes: None,
            });
        }
        let next = match &mut self.streak {
            // R7: keep probing until a definitive answer: the next ramp slot or period point
            // after this failure; Retry-After replaces it (floored 1 s, capped at the period).
            Some(Streak {
                failed_closed: true,
                probes: Some(probes),
                ..
            }) => Some(probes.next_probe(&cfg.probe, at, retry_after, &mut io.rng)),
            // R6: the next stratified slot (or the final window) still ahead; Retry-After
            // replaces the drawn instant, and a server slot past the deadline is still used
            // (the deadline does not move). No retry left: wait for the deadline, then probe.
            Some(streak) => streak.retries.next_retry(cfg, at, retry_after, &mut io.rng),
            None => None, // unreachable: set above
        };
        io.timers.put(Timer::Retry, next);
        debug!("check failed: attempt {} class {:?}", attempt, class);
        if from_check {
            io.push(Event::CheckFailed {
                generation: io.generation,
                attempt,
                class,
                detail,
                next_attempt: next,
                deadline: self.deadline(),
            });
        }
        settled(io, first);
    }

    fn fail_closed<E: From<Event>, const Q: usize>(
        &mut self,
        cfg: &GateConfig,
        io: &mut Shared<E, Q>,
        at: Instant,
    ) {
        if self.streak.is_none() {
            return;
        }
        inc(&mut io.counters.failed_closed);
        // R5: no definitive answer by the deadline. A server denial stays a denial.
        if self.access != Access::Denied {
            self.set_access(io, at, Access::Denied, Cause::FailedClosed);
        }
        // R7: the probe plan starts here (a random per-device phase); the first probe is
        // planned now unless an attempt is in flight or a server slot is pending (their
        // failure plans the next probe from the same plan).
        let mut probes = ProbeSchedule::new(at, &cfg.probe, &mut io.rng);
        if self.in_flight.is_none() && !io.timers.is_set(Timer::Retry) {
            let first = probes.next_probe(&cfg.probe, at, None, &mut io.rng);
            io.timers.set(Timer::Retry, first);
        }
        if let Some(streak) = &mut self.streak {
            streak.failed_closed = true;
            streak.probes = Some(probes);
        }
    }

    fn end_session<E: From<Event>, const Q: usize>(&mut self, io: &mut Shared<E, Q>, cause: Cause) {
        let now = io.now;
        let first = self.finish_attempt(io);
        io.generation.bump(); // R10: anything in flight is now stale
        self.signed_in = false;
        self.streak = None;
        io.timers.stop(Timer::Attempt);
        io.timers.stop(Timer::Retry);
        io.timers.stop(Timer::Deadline);
        self.next_attempt = 0;
        self.last_attempt_started = None;
        match cause {
            Cause::Unauthorized => inc(&mut io.counters.unauthorized_logouts),
            _ => inc(&mut io.counters.logouts),
        }
        if self.access != Access::Unknown {
            self.set_access(io, now, Access::Unknown, cause);
        } else {
            self.cause = Some(cause);
        }
        io.push(Event::SessionEnded { cause });
        settled(io, first);
    }
}

/// The entitlement part with a machine of its own and no tokens: one session's entitlement at
/// a time, for drivers that keep tokens themselves. `N` is the retry schedule's capacity (R6).
/// A [`Session`](crate::Session) contains the same part and adds tokens (R9, R11).
///
/// Inputs are bounded in time, allocate nothing, never panic and never fail for lack of
/// room (R12).
#[derive(Clone, Debug)]
pub struct Gate<const N: usize = 8> {
    config: GateConfig,
    io: Shared<Event, EVENT_CAPACITY>,
    part: Entitlement<N>,
}

impl<const N: usize> Gate<N> {
    /// A signed-out gate. `seed` seeds the jitter PRNG and must differ per device (R6): there
    /// is no built-in seed, so devices that fail together spread out. Adapters pass OS
    /// randomness or a hardware RNG value.
    ///
    /// ```
    /// use accessgate::{ConfigError, Duration, Gate, GateConfig};
    /// assert!(Gate::<8>::new(GateConfig::DEFAULT, 0x5eed).is_ok());
    /// let bad = GateConfig { budget: Duration::ZERO, ..GateConfig::DEFAULT };
    /// assert_eq!(Gate::<8>::new(bad, 1).err(), Some(ConfigError::ZeroBudget));
    /// assert_eq!(Gate::<0>::new(GateConfig::DEFAULT, 1).err(), Some(ConfigError::ZeroRetryCapacity));
    /// ```
    pub fn new(config: GateConfig, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        if N == 0 {
            return Err(ConfigError::ZeroRetryCapacity);
        }
        if usize::from(config.retry.count) > N {
            return Err(ConfigError::RetryCountOverCapacity);
        }
        Ok(Gate {
            config,
            io: Shared::new(seed),
            part: Entitlement::new(),
        })
    }

    // ---- getters ----

    /// The configuration in use.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }
    /// Current access.
    pub fn access(&self) -> Access {
        self.part.access()
    }
    /// Current generation.
    pub fn generation(&self) -> Generation {
        self.io.generation
    }
    /// Whether a session is active.
    pub fn signed_in(&self) -> bool {
        self.part.signed_in()
    }
    /// The token handle of the current session.
    pub fn token(&self) -> TokenHandle {
        self.part.token
    }
    /// The counters (R13).
    pub fn counters(&self) -> &Counters {
        &self.io.counters
    }
    /// Whether the current generation still owes a definitive answer (a check is in flight or
    /// will be retried). While this is true, [`Gate::poll_timeout`] is `Some`.
    pub fn check_owed(&self) -> bool {
        self.part.check_owed()
    }
    /// Whether the immediate check of the current generation (attempt 0, R3) is still running.
    pub fn first_check_running(&self) -> bool {
        self.part.first_check_running()
    }
    /// The fail-closed deadline while it is ahead (R5).
    pub fn deadline(&self) -> Option<Instant> {
        self.part.deadline()
    }
    /// A snapshot for rendering.
    pub fn status(&self) -> Status {
        self.part.status(&self.io)
    }
    /// The latest `now` any input carried (inputs with an earlier `now` are treated as
    /// happening at this instant; an input at [`Instant::MAX`] happens 1 µs earlier).
    pub fn last_now(&self) -> Instant {
        self.io.now
    }

    // ---- inputs ----

    fn input<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Entitlement<N>, &GateConfig, &mut Shared<Event, EVENT_CAPACITY>, Instant) -> R,
    ) -> R {
        let now = self.io.advance(now);
        let cfg = &self.config;
        self.part
            .step(cfg, &mut self.io, |part, io| f(part, cfg, io, now))
    }

    /// A session started with the token behind `token`: a new generation, access `Unknown`,
    /// and an immediate check (attempt 0, R3). Starting a session while one is active ends
    /// the old one first (cause `LoggedOut`).
    pub fn start_session(&mut self, now: Instant, token: TokenHandle) -> Generation {
        self.input(now, |p, cfg, io, _| p.start_session(cfg, io, token))
    }

    /// The token was refreshed: a new generation whose immediate check follows R3. Access is
    /// kept (a grant stays a grant while re-checking); an older retry loop ends (R10); a
    /// pending fail-closed deadline stays where it is (R5). Refused when signed out (time
    /// still passes).
    pub fn token_refreshed(&mut self, now: Instant, token: TokenHandle) -> Result<Generation, NotSignedIn> {
        self.input(now, |p, cfg, io, _| p.token_refreshed(cfg, io, token))
    }

    /// The app logged out: a new generation, access `Unknown`, nothing pending. A no-op when
    /// signed out.
    pub fn logout(&mut self, now: Instant) {
        self.input(now, |p, _, io, _| p.end(io, Cause::LoggedOut))
    }

    /// The session was found unauthorized outside a check (a rejected token refresh, R11):
    /// ends it like a 401 does (R8). A no-op when signed out.
    pub fn unauthorized(&mut self, now: Instant) {
        self.input(now, |p, _, io, _| p.end(io, Cause::Unauthorized))
    }

    /// A transient failure outside a check, such as a token refresh that could not reach the
    /// backend. It starts the fail-closed clock like a failed check would (R5), so a device
    /// that cannot refresh cannot keep a grant past the deadline either, and it schedules a
    /// re-check from the retry plan (R6). A no-op while a check is in flight (that check
    /// decides) or when a retry is already planned; [`Status::last_failure`] records it in
    /// every case, with its `detail` (R13). Refused when signed out (time still passes).
    pub fn transient_failure(
        &mut self,
        now: Instant,
        class: TransientClass,
        detail: FailureDetail,
    ) -> Result<(), NotSignedIn> {
        self.input(now, |p, cfg, io, now| {
            p.transient_failure(cfg, io, now, class, detail, true)
        })
    }

    /// The outcome of the attempt `(generation, attempt)`. A result for another generation
    /// or for an attempt that already finished or timed out is dropped and counted (R10).
    pub fn handle_check_result(
        &mut self,
        now: Instant,
        generation: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) {
        self.input(now, |p, cfg, io, now| {
            p.check_result(cfg, io, now, generation, attempt, outcome);
        })
    }

    /// Time passed: fires every timer due at `now`. Harmless when called early or twice.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.input(now, |_, _, _, _| ())
    }

    /// The app asks for a re-check now (a "retry" button on a locked screen). Starts an
    /// attempt unless one is in flight (then a no-op). Rate-limited to one per
    /// `min_recheck_interval` since the last attempt started. The fail-closed deadline does
    /// not move. A refused re-check still lets time pass: due timers fire.
    pub fn recheck_now(&mut self, now: Instant) -> Result<(), RecheckError> {
        self.input(now, |p, cfg, io, now| p.recheck_now(cfg, io, now))
    }

    // ---- outputs ----

    /// The check to start now, if any. Poll after every input.
    pub fn poll_check(&mut self) -> Option<CheckRequest> {
        self.part.poll_check(&self.config, &mut self.io)
    }

    /// A check handed out earlier whose result no longer matters (it timed out, or a refresh,
    /// logout or answer superseded it): the driver may stop it. Its result, if it still
    /// arrives, is dropped as stale (R10).
    pub fn poll_cancel(&mut self) -> Option<(Generation, u32)> {
        self.io.cancel_check.take()
    }

    /// The next event, if any. Drain after every input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.io.pop_event()
    }

    /// When to call [`Gate::handle_timeout`] next. `None` only when nothing is owed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.io.timers.next_expiry()
    }
}

#[cfg(test)]
mod wrap;
