//! The gate: a sans-IO state machine for one session's entitlement (R1–R8, R10, R12, R13).
//!
//! Methods come in four groups, in this order: getters (`&self`), inputs (`start_session`,
//! `token_refreshed`, `logout`, `handle_check_result`, `handle_timeout`, `recheck_now`), and
//! outputs (`poll_check`, `poll_event`, `poll_timeout`). A driver, after every input, drains
//! `poll_check` (start those requests), then `poll_event`, then sleeps until `poll_timeout`.

use crate::classify::{CheckOutcome, TransientClass};
use crate::config::{ConfigError, GateConfig};
use crate::detail::{FailureDetail, LastFailure, NetFailure};
use crate::schedule::{ProbeSchedule, RetrySchedule};
use crate::time::{Duration, Instant};

/// Capacity of the gate's event queue.
pub const EVENT_CAPACITY: usize = 20;
/// Room an input needs in the event queue; an input refused for lack of it changes nothing.
pub const MAX_EVENTS_PER_INPUT: usize = 6;
/// Bound on timers processed by one input (R12); the real chain is at most four long.
const MAX_TIMER_STEPS: usize = 8;

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
    /// Attempt number within the generation (0 = the immediate check of R3).
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
    /// Attempt in flight, if any.
    pub attempt_in_flight: Option<u32>,
    /// When the next attempt starts, if one is waiting.
    pub next_attempt: Option<Instant>,
    /// The last transient failure of this session, with its detail (R13). Kept through a
    /// definitive answer (it is history, not state); cleared when a new session starts.
    pub last_failure: Option<LastFailure>,
}

/// Plain counters (R13). All saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// Events that found the queue full. Stays zero unless the gate has a bug: inputs are
    /// refused up front when the queue lacks room.
    pub events_lost: u32,
}

impl Counters {
    /// Transient failures of one class.
    pub fn transient_of(&self, class: TransientClass) -> u32 {
        self.transient[class.index()]
    }
    /// All transient failures.
    pub fn transient_total(&self) -> u32 {
        self.transient.iter().fold(0u32, |a, b| a.saturating_add(*b))
    }
}

fn inc(c: &mut u32) {
    *c = c.saturating_add(1);
}

/// Why an input was refused.
///
/// With [`InputError::QueueFull`] nothing happened at all, not even the passing of time. With
/// the other errors the input itself was refused, but time still advanced to `now`: timers
/// that were due have fired (a deadline may have passed), so drain the outputs as after any
/// input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InputError {
    /// The event queue has less than [`MAX_EVENTS_PER_INPUT`] free slots: drain
    /// [`Gate::poll_event`] and give the input again (R12).
    QueueFull,
    /// The input needs an active session.
    NotSignedIn,
    /// A re-check was asked for too soon; try again at the given instant.
    RateLimited {
        /// Earliest instant a re-check is accepted.
        retry_at: Instant,
    },
}

impl core::fmt::Display for InputError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InputError::QueueFull => f.write_str("event queue full: drain poll_event first"),
            InputError::NotSignedIn => f.write_str("no active session"),
            InputError::RateLimited { retry_at } => {
                write!(
                    f,
                    "re-check rate-limited until {}",
                    Duration::from_micros(retry_at.as_micros())
                )
            }
        }
    }
}

impl core::error::Error for InputError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Attempt = 0,
    Retry = 1,
    Deadline = 2,
}
const TIMERS: [Timer; 3] = [Timer::Attempt, Timer::Retry, Timer::Deadline];

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

/// The gate for one session at a time. `N` is the retry schedule's capacity (R6).
///
/// All inputs are bounded in time, allocate nothing and never panic (R12).
#[derive(Clone, Debug)]
pub struct Gate<const N: usize = 8> {
    config: GateConfig,
    rng: fastrand::Rng,
    generation: Generation,
    signed_in: bool,
    token: TokenHandle,
    access: Access,
    cause: Option<Cause>,
    last_failure: Option<LastFailure>,
    last_now: Instant,
    in_flight: Option<u32>,
    next_attempt: u32,
    last_attempt_started: Option<Instant>,
    streak: Option<Streak<N>>,
    timers: [Option<Instant>; 3],
    retry_due: bool,
    pending_check: Option<CheckRequest>,
    events: heapless::Deque<Event, EVENT_CAPACITY>,
    counters: Counters,
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
        Ok(Gate {
            config,
            rng: fastrand::Rng::with_seed(seed),
            generation: Generation(0),
            signed_in: false,
            token: TokenHandle(0),
            access: Access::Unknown,
            cause: None,
            last_failure: None,
            last_now: Instant::ZERO,
            in_flight: None,
            next_attempt: 0,
            last_attempt_started: None,
            streak: None,
            timers: [None; 3],
            retry_due: false,
            pending_check: None,
            events: heapless::Deque::new(),
            counters: Counters::default(),
        })
    }

    // ---- getters ----

    /// The configuration in use.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }
    /// Current access.
    pub fn access(&self) -> Access {
        self.access
    }
    /// Current generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }
    /// Whether a session is active.
    pub fn signed_in(&self) -> bool {
        self.signed_in
    }
    /// The token handle of the current session.
    pub fn token(&self) -> TokenHandle {
        self.token
    }
    /// The counters (R13).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Whether the current generation still owes a definitive answer (a check is in flight or
    /// will be retried). While this is true, [`Gate::poll_timeout`] is `Some`.
    pub fn check_owed(&self) -> bool {
        self.signed_in && (self.in_flight.is_some() || self.streak.is_some())
    }
    /// The fail-closed deadline while it is ahead (R5).
    pub fn deadline(&self) -> Option<Instant> {
        self.streak.filter(|s| !s.failed_closed).map(|s| s.deadline)
    }
    /// A snapshot for rendering.
    pub fn status(&self) -> Status {
        Status {
            access: self.access,
            cause: self.cause,
            signed_in: self.signed_in,
            generation: self.generation,
            reverifying_until: self.deadline(),
            probing: self.streak.is_some_and(|s| s.failed_closed),
            attempt_in_flight: self.in_flight,
            next_attempt: self.timers[Timer::Retry as usize],
            last_failure: self.last_failure,
        }
    }
    /// The latest `now` any input carried (inputs with an earlier `now` are treated as
    /// happening at this instant).
    pub fn last_now(&self) -> Instant {
        self.last_now
    }
    /// Mutable counters, for the session layer's refresh counts.
    pub(crate) fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }
    /// Free slots in the event queue.
    pub fn event_room(&self) -> usize {
        EVENT_CAPACITY - self.events.len()
    }

    // ---- inputs ----

    /// A session started with the token behind `token`: a new generation, access `Unknown`,
    /// and an immediate check (attempt 0, R3). Starting a session while one is active ends
    /// the old one first (cause `LoggedOut`).
    pub fn start_session(&mut self, now: Instant, token: TokenHandle) -> Result<Generation, InputError> {
        self.input(now, |g, now| {
            if g.signed_in {
                g.end_session(Cause::LoggedOut);
            }
            g.generation.bump();
            g.signed_in = true;
            g.token = token;
            g.last_failure = None;
            g.start_attempt(now);
            Ok(g.generation)
        })
    }

    /// The token was refreshed: a new generation whose immediate check follows R3. Access is
    /// kept (a grant stays a grant while re-checking); an older retry loop ends (R10); a
    /// pending fail-closed deadline stays where it is (R5).
    pub fn token_refreshed(&mut self, now: Instant, token: TokenHandle) -> Result<Generation, InputError> {
        self.input(now, |g, now| {
            if !g.signed_in {
                return Err(InputError::NotSignedIn);
            }
            g.generation.bump();
            g.token = token;
            g.next_attempt = 0;
            g.start_attempt(now);
            Ok(g.generation)
        })
    }

    /// The app logged out: a new generation, access `Unknown`, nothing pending. A no-op when
    /// signed out.
    pub fn logout(&mut self, now: Instant) -> Result<(), InputError> {
        self.input(now, |g, _| {
            if g.signed_in {
                g.end_session(Cause::LoggedOut);
            }
            Ok(())
        })
    }

    /// The session was found unauthorized outside a check (a rejected token refresh, R11):
    /// ends it like a 401 does (R8). A no-op when signed out.
    pub fn unauthorized(&mut self, now: Instant) -> Result<(), InputError> {
        self.input(now, |g, _| {
            if g.signed_in {
                g.end_session(Cause::Unauthorized);
            }
            Ok(())
        })
    }

    /// A transient failure outside a check, such as a token refresh that could not reach the
    /// backend. It starts the fail-closed clock like a failed check would (R5), so a device
    /// that cannot refresh cannot keep a grant past the deadline either, and it schedules a
    /// re-check from the retry plan (R6). A no-op while a check is in flight (that check
    /// decides) or when a retry is already planned.
    pub fn transient_failure(&mut self, now: Instant, class: TransientClass) -> Result<(), InputError> {
        self.input(now, |g, now| {
            if !g.signed_in {
                return Err(InputError::NotSignedIn);
            }
            if g.in_flight.is_none() && g.timers[Timer::Retry as usize].is_none() && !g.retry_due {
                g.note_failure(now, class, FailureDetail::of_class(class));
                g.attempt_failed(now, class, None, false);
            }
            Ok(())
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
    ) -> Result<(), InputError> {
        self.input(now, |g, now| {
            if !g.signed_in || generation != g.generation || g.in_flight != Some(attempt) {
                inc(&mut g.counters.stale_dropped);
                debug!("stale result dropped: gen {} attempt {}", generation.0, attempt);
                g.push(Event::StaleResult { generation, attempt });
                return Ok(());
            }
            match outcome {
                CheckOutcome::Granted => g.definitive(Access::Granted),
                CheckOutcome::Denied => g.definitive(Access::Denied),
                CheckOutcome::Unauthorized => g.end_session(Cause::Unauthorized), // R8
                CheckOutcome::Transient {
                    class,
                    retry_after,
                    detail,
                } => {
                    g.note_failure(now, class, detail);
                    g.attempt_failed(now, class, retry_after, true)
                }
            }
            Ok(())
        })
    }

    /// Time passed: fires every timer due at `now`. Harmless when called early or twice.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), InputError> {
        self.input(now, |_, _| Ok(()))
    }

    /// The app asks for a re-check now (a "retry" button on a locked screen). Starts an
    /// attempt unless one is in flight (then a no-op). Rate-limited to one per
    /// `min_recheck_interval` since the last attempt started. The fail-closed deadline does
    /// not move.
    pub fn recheck_now(&mut self, now: Instant) -> Result<(), InputError> {
        self.input(now, |g, now| {
            if !g.signed_in {
                return Err(InputError::NotSignedIn);
            }
            if g.in_flight.is_some() || g.retry_due {
                return Ok(()); // a check is running or starts with this very input
            }
            if let Some(last) = g.last_attempt_started {
                let retry_at = last + g.config.min_recheck_interval;
                if now < retry_at {
                    return Err(InputError::RateLimited { retry_at });
                }
            }
            g.start_attempt(now);
            Ok(())
        })
    }

    // ---- outputs ----

    /// The check to start now, if any. Poll after every input.
    pub fn poll_check(&mut self) -> Option<CheckRequest> {
        self.pending_check.take()
    }

    /// The next event, if any. Drain after every input: inputs are refused while the queue
    /// has less than [`MAX_EVENTS_PER_INPUT`] free slots.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Gate::handle_timeout`] next. `None` only when nothing is owed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    // ---- internals ----

    /// Common prologue of every input: refuse when the event queue lacks room (R12), keep
    /// time monotonic, and fire due timers first so an input arriving after the deadline
    /// sees the gate already failed closed (R5, to the tick).
    /// Runs one input: the prologue ([`Gate::begin`]), the input itself, then the retry that
    /// came due in the prologue if the input neither started a check nor ended the session.
    fn input<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Self, Instant) -> Result<R, InputError>,
    ) -> Result<R, InputError> {
        let now = self.begin(now)?;
        let r = f(self, now);
        if core::mem::take(&mut self.retry_due) && self.signed_in && self.in_flight.is_none() {
            self.start_attempt(now);
        }
        r
    }

    fn begin(&mut self, now: Instant) -> Result<Instant, InputError> {
        if self.event_room() < MAX_EVENTS_PER_INPUT {
            return Err(InputError::QueueFull);
        }
        let now = now.max(self.last_now);
        self.last_now = now;
        for _ in 0..MAX_TIMER_STEPS {
            let due = TIMERS
                .iter()
                .filter_map(|&t| self.timers[t as usize].filter(|&at| at <= now).map(|at| (at, t)))
                .min_by_key(|&(at, t)| (at, t as usize));
            let Some((at, timer)) = due else { break };
            self.timers[timer as usize] = None;
            match timer {
                Timer::Attempt => {
                    self.note_failure(
                        at,
                        TransientClass::Timeout,
                        FailureDetail::Net(NetFailure::Timeout),
                    );
                    self.attempt_failed(at, TransientClass::Timeout, None, true)
                }
                // Started at the end of the input, unless the input itself starts a check or
                // ends the session: a retry superseded by this input is never started.
                Timer::Retry => self.retry_due = true,
                Timer::Deadline => self.fail_closed(at),
            }
        }
        Ok(now)
    }

    fn push(&mut self, e: Event) {
        // begin() guarantees room for the worst case of one input, so this cannot fail; if it
        // ever did, the loss is counted rather than silent.
        if self.events.push_back(e).is_err() {
            inc(&mut self.counters.events_lost);
        }
    }

    fn set_access(&mut self, to: Access, cause: Cause) {
        let from = self.access;
        if from == to && self.cause == Some(cause) {
            return;
        }
        self.access = to;
        self.cause = Some(cause);
        info!("access {:?} -> {:?} ({:?})", from, to, cause);
        self.push(Event::AccessChanged { from, to, cause });
    }

    fn start_attempt(&mut self, now: Instant) {
        let attempt = self.next_attempt;
        self.next_attempt = self.next_attempt.saturating_add(1);
        self.in_flight = Some(attempt);
        self.last_attempt_started = Some(now);
        self.timers[Timer::Attempt as usize] = Some(now + self.config.attempt_timeout);
        self.timers[Timer::Retry as usize] = None;
        inc(&mut self.counters.attempts);
        self.pending_check = Some(CheckRequest {
            generation: self.generation,
            attempt,
            token: self.token,
            timeout: self.config.attempt_timeout,
            started: now,
        });
        self.push(Event::CheckStarted {
            generation: self.generation,
            attempt,
        });
    }

    fn finish_attempt(&mut self) {
        self.in_flight = None;
        self.pending_check = None;
        self.timers[Timer::Attempt as usize] = None;
    }

    fn definitive(&mut self, answer: Access) {
        self.finish_attempt();
        // R1/R2: a definitive answer ends the streak, its retries and its deadline.
        let was_failed_closed = self.streak.is_some_and(|s| s.failed_closed)
            || (self.access == Access::Denied && self.cause == Some(Cause::FailedClosed));
        self.streak = None;
        self.timers[Timer::Retry as usize] = None;
        self.timers[Timer::Deadline as usize] = None;
        match answer {
            Access::Granted => {
                inc(&mut self.counters.grants);
                if self.access != Access::Granted {
                    let cause = if was_failed_closed {
                        inc(&mut self.counters.recoveries);
                        Cause::Recovered // R7
                    } else {
                        Cause::ServerGranted
                    };
                    self.set_access(Access::Granted, cause);
                }
            }
            _ => {
                inc(&mut self.counters.denials);
                self.set_access(Access::Denied, Cause::ServerDenied); // R2
            }
        }
    }

    /// A transient failure at `at`: of the attempt in flight (`from_check`), or of a token
    /// refresh (then no attempt is in flight and the session counts it).
    fn attempt_failed(
        &mut self,
        at: Instant,
        class: TransientClass,
        retry_after: Option<Duration>,
        from_check: bool,
    ) {
        let attempt = self.in_flight.unwrap_or(self.next_attempt);
        self.finish_attempt();
        if from_check {
            inc(&mut self.counters.transient[class.index()]);
        }
        let cfg = self.config;
        let mut streak = match self.streak {
            Some(s) => s,
            None => {
                // R5: the first transient failure fixes the deadline; it never moves.
                let s = Streak {
                    deadline: at + cfg.budget,
                    failed_closed: false,
                    retries: RetrySchedule::new(at),
                    probes: None,
                };
                self.timers[Timer::Deadline as usize] = Some(s.deadline);
                s
            }
        };
        let next = match (streak.failed_closed, streak.probes.as_mut()) {
            // R7: keep probing until a definitive answer: the next ramp slot or period point
            // after this failure; Retry-After replaces it (floored 1 s, capped at the period).
            (true, Some(probes)) => Some(probes.next_probe(&cfg.probe, at, retry_after, &mut self.rng)),
            // R6: the next stratified slot (or the final window) still ahead; Retry-After
            // replaces the drawn instant, and a server slot past the deadline is still used
            // (the deadline does not move). No retry left: wait for the deadline, then probe.
            _ => streak.retries.next_retry(&cfg, at, retry_after, &mut self.rng),
        };
        self.streak = Some(streak);
        self.timers[Timer::Retry as usize] = next;
        let deadline = self.deadline();
        debug!("check failed: attempt {} class {:?}", attempt, class);
        if !from_check {
            return;
        }
        self.push(Event::CheckFailed {
            generation: self.generation,
            attempt,
            class,
            detail: self.last_failure.map_or(FailureDetail::None, |f| f.detail),
            next_attempt: next,
            deadline,
        });
    }

    /// Remembers the failure for [`Status::last_failure`] (R13).
    fn note_failure(&mut self, at: Instant, class: TransientClass, detail: FailureDetail) {
        self.last_failure = Some(LastFailure { class, detail, at });
    }

    fn fail_closed(&mut self, at: Instant) {
        let Some(mut streak) = self.streak else { return };
        streak.failed_closed = true;
        inc(&mut self.counters.failed_closed);
        // R5: no definitive answer by the deadline. A server denial stays a denial.
        if self.access != Access::Denied {
            self.set_access(Access::Denied, Cause::FailedClosed);
        }
        // R7: the probe plan starts here (a random per-device phase); the first probe is
        // planned now unless an attempt is in flight or a server slot is pending (their
        // failure plans the next probe from the same plan).
        let mut probes = ProbeSchedule::new(at, &self.config.probe, &mut self.rng);
        if self.in_flight.is_none() && self.timers[Timer::Retry as usize].is_none() && !self.retry_due {
            self.timers[Timer::Retry as usize] =
                Some(probes.next_probe(&self.config.probe, at, None, &mut self.rng));
        }
        streak.probes = Some(probes);
        self.streak = Some(streak);
    }

    fn end_session(&mut self, cause: Cause) {
        self.finish_attempt();
        self.generation.bump(); // R10: anything in flight is now stale
        self.signed_in = false;
        self.streak = None;
        self.timers = [None; 3];
        self.retry_due = false;
        self.next_attempt = 0;
        self.last_attempt_started = None;
        match cause {
            Cause::Unauthorized => inc(&mut self.counters.unauthorized_logouts),
            _ => inc(&mut self.counters.logouts),
        }
        if self.access != Access::Unknown {
            self.set_access(Access::Unknown, cause);
        } else {
            self.cause = Some(cause);
        }
        self.push(Event::SessionEnded { cause });
    }
}
