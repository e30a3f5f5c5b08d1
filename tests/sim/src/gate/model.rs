//! The reference model of the gate and the invariant checker (I1–I5).
//!
//! The model is written from the spec (behaviour.md), not from the gate's code. It tracks
//! only what a driver can know from its own inputs and the gate's outputs:
//!
//! - whether a session is active, and the generation: it counts the bumps itself (session
//!   start, token refresh, logout, 401; a session start over an active session ends it first);
//! - the last definitive answer since sign-in (a grant or a denial that was current);
//! - the fail-closed deadline: the time of the first transient failure since the last
//!   definitive answer or session start, plus the budget. A transient failure is either a
//!   current transient result (at the step's `now`) or an attempt the gate started (seen in
//!   the [`CheckRequest`]s it emitted) that got no current result before `started + timeout`.
//!   The deadline survives token refreshes and never moves (R5);
//! - the attempt in flight: the last emitted check, until it is answered, times out, or its
//!   generation ends.
//!
//! - where the next attempt may go (R6, R7): the retry slots of the streak (retry `k` of `N`
//!   inside the `k`-th of `N - 1` equal slices of the spread window after the first failure,
//!   the last in the final window that ends one attempt timeout before the deadline; a slot
//!   that has no instant after the failure left is skipped), and after failing closed the
//!   ramp slots, then the periodic probes at `closed + ramp + phase + k * period`, the phase
//!   learnt from the first periodic probe. `Retry-After` replaces the drawn instant. The
//!   status's `next_attempt` must always be the planned instant.
//!
//! From that it predicts the exact access after each step:
//! signed out → `Unknown`; deadline passed → `Denied`; otherwise the last definitive answer,
//! or `Unknown` without one. The observed status is compared with the prediction and a
//! mismatch is attributed to the invariant it breaks.

use crate::invariant::{Invariant, Violation};
use crate::timefmt::{At, OptAt, Span};
/// The gate's refusals: a re-check's (`NotSignedIn`, `RateLimited`); `token_refreshed` and
/// `transient_failure` refuse with `NotSignedIn` only. Every other input cannot fail.
pub use accessgate::RecheckError as InputError;
use accessgate::{
    Access, Cause, CheckOutcome, CheckRequest, Counters, Duration, Event, Gate, GateConfig, Generation,
    Instant, Status, TokenHandle, TransientClass, MAX_EVENTS_PER_INPUT,
};

/// One input given to the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// [`Gate::start_session`].
    StartSession {
        /// The session's token.
        token: TokenHandle,
    },
    /// [`Gate::token_refreshed`].
    TokenRefreshed {
        /// The new token.
        token: TokenHandle,
    },
    /// [`Gate::logout`].
    Logout,
    /// [`Gate::recheck_now`].
    RecheckNow,
    /// [`Gate::handle_check_result`]: the outcome of a check, possibly stale, late, duplicated
    /// or forged.
    CheckResult {
        /// The generation the result is tagged with.
        generation: Generation,
        /// The attempt the result is tagged with.
        attempt: u32,
        /// The classified outcome.
        outcome: CheckOutcome,
    },
    /// [`Gate::unauthorized`]: the session was found unauthorized outside a check (a
    /// rejected token refresh, R11); ends it like a 401.
    Unauthorized,
    /// [`Gate::transient_failure`]: a transient failure outside a check (a token refresh that
    /// could not reach the backend); starts the fail-closed clock like a failed check (R5).
    TransientFailure {
        /// What went wrong.
        class: TransientClass,
    },
    /// [`Gate::handle_timeout`].
    Timeout,
}

/// What an input call returned: the generation for `start_session` / `token_refreshed`,
/// nothing for the others, or the refusal.
pub type Reply = Result<Option<Generation>, InputError>;

/// One step of a trace: the input given at `now`, and everything it produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The `now` passed with the input.
    pub now: Instant,
    /// The input.
    pub input: Input,
    /// What the call returned.
    pub reply: Reply,
    /// Events drained with [`Gate::poll_event`] after the input.
    pub events: Vec<Event>,
    /// Checks drained with [`Gate::poll_check`] after the input.
    pub checks: Vec<CheckRequest>,
}

impl Step {
    /// A step with no outputs yet and an `Ok(None)` reply.
    pub fn new(now: Instant, input: Input) -> Self {
        Step {
            now,
            input,
            reply: Ok(None),
            events: Vec::new(),
            checks: Vec::new(),
        }
    }
}

/// A public snapshot of the gate, taken before and after each step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// [`Gate::status`].
    pub status: Status,
    /// [`Gate::poll_timeout`].
    pub poll_timeout: Option<Instant>,
    /// [`Gate::check_owed`].
    pub check_owed: bool,
    /// [`Gate::counters`].
    pub counters: Counters,
}

impl Observed {
    /// Snapshot of `gate`.
    pub fn of<const N: usize>(gate: &Gate<N>) -> Self {
        Observed {
            status: gate.status(),
            poll_timeout: gate.poll_timeout(),
            check_owed: gate.check_owed(),
            counters: *gate.counters(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    attempt: u32,
    started: Instant,
}

/// The model's view of probing after failing closed (R7).
#[derive(Clone, Copy, Debug)]
struct Probes {
    closed_at: Instant,
    /// Next ramp slot (1-based).
    ramp_next: u32,
    /// The periodic phase, once a periodic probe showed it.
    phase: Option<Duration>,
}

/// Slot `j` (1-based) of `count` equal slices of `window` after `origin`, as inclusive
/// instants (slice edges at `floor(window * i / count)` microseconds); `None` when empty.
fn stratum(origin: Instant, window: Duration, count: u32, j: u32) -> Option<(Instant, Instant)> {
    let edge = |i: u32| {
        origin
            + Duration::from_micros(
                (u128::from(window.as_micros()) * u128::from(i) / u128::from(count.max(1))) as u64,
            )
    };
    let (lo, hi) = (edge(j - 1), edge(j));
    (hi > lo).then(|| (lo, hi.saturating_sub(Duration::from_micros(1))))
}

/// What the model expects of a planned instant: in words, and as a test.
type Expect = (String, Box<dyn Fn(Instant) -> bool>);

/// A transient failure the model saw happen during a step, to check its `CheckFailed` event.
#[derive(Clone, Copy, Debug)]
struct Failure {
    at: Instant,
    deadline: Instant,
    failed_closed: bool,
    retry_after: Option<Duration>,
}

fn fail<T>(invariant: Invariant, message: String) -> Result<T, Violation> {
    Err(Violation::new(invariant, message))
}

/// The reference model plus the invariant checks. Feed it every step of a trace, in order,
/// starting from a freshly constructed (signed-out) gate:
///
/// ```
/// use accessgate::{Access, Gate, GateConfig, Instant, TokenHandle};
/// use accessgate_sim::gate::{Checker, Input, Observed, Step};
///
/// let mut gate: Gate<3> = Gate::new(GateConfig::DEFAULT, 7).unwrap();
/// let mut checker = Checker::new(GateConfig::DEFAULT, 3);
/// let before = Observed::of(&gate);
/// let now = Instant::from_secs(1);
/// let mut step = Step::new(now, Input::StartSession { token: TokenHandle(1) });
/// step.reply = Ok(Some(gate.start_session(now, TokenHandle(1))));
/// step.checks.extend(gate.poll_check());
/// step.events.extend(core::iter::from_fn(|| gate.poll_event()));
/// checker.observe(&step, &before, &Observed::of(&gate)).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Checker {
    config: GateConfig,
    now: Instant,
    signed_in: bool,
    generation: Generation,
    token: TokenHandle,
    /// Last definitive answer since sign-in.
    definitive: Option<Access>,
    /// Fail-closed deadline of the current failure streak.
    deadline: Option<Instant>,
    in_flight: Option<Attempt>,
    next_attempt: u32,
    last_started: Option<Instant>,
    /// Generation of the last definitive answer.
    answered: Option<Generation>,
    /// The gate's retry capacity `N` (R6).
    retries: u32,
    /// Next retry slot of the current streak (1-based; `N + 1` when none is left).
    retry_next: u32,
    /// Probing, once the current streak failed closed (R7).
    probes: Option<Probes>,
    /// The planned next attempt (the status's `next_attempt`).
    plan: Option<Instant>,
}

impl Checker {
    /// A model of a freshly constructed, signed-out `Gate<N>` with `config` (`retries` = `N`).
    pub fn new(config: GateConfig, retries: usize) -> Self {
        Checker {
            config,
            now: Instant::ZERO,
            signed_in: false,
            generation: Generation(0),
            token: TokenHandle(0),
            definitive: None,
            deadline: None,
            in_flight: None,
            next_attempt: 0,
            last_started: None,
            answered: None,
            retries: retries as u32,
            retry_next: 1,
            probes: None,
            plan: None,
        }
    }

    /// Forgets the streak's slots and plan (a definitive answer or the session's end).
    fn end_streak(&mut self) {
        self.deadline = None;
        self.retry_next = 1;
        self.probes = None;
        self.plan = None;
    }

    /// The window of retry slot `k` of the streak whose deadline is `deadline` (R6).
    fn retry_window(&self, deadline: Instant, k: u32) -> Option<(Instant, Instant)> {
        let cfg = &self.config;
        let first_failure = deadline.saturating_sub(cfg.budget);
        if k == self.retries {
            let latest = deadline.saturating_sub(cfg.attempt_timeout);
            let from = latest.saturating_sub(cfg.retry.final_window).max(first_failure);
            return Some((from, latest));
        }
        stratum(first_failure, cfg.retry.spread, self.retries - 1, k)
    }

    /// The first unused retry slot with an instant after `at`.
    fn next_retry_slot(&self, deadline: Instant, at: Instant) -> Option<(u32, Instant, Instant)> {
        (self.retry_next..=self.retries).find_map(|k| {
            self.retry_window(deadline, k)
                .filter(|&(_, hi)| hi > at)
                .map(|(lo, hi)| (k, lo, hi))
        })
    }

    /// The first unused ramp slot with an instant after `at` (R7).
    fn next_ramp_slot(&self, p: &Probes, at: Instant) -> Option<(u32, Instant, Instant)> {
        let r = &self.config.probe;
        (p.ramp_next..=r.ramp_probes).find_map(|j| {
            stratum(p.closed_at, r.ramp, r.ramp_probes, j)
                .filter(|&(_, hi)| hi > at)
                .map(|(lo, hi)| (j, lo, hi))
        })
    }

    /// Checks the next attempt planned after the failure `f` (R6 before the deadline, R7
    /// after it) and uses up its slot. `seen` is the planned instant as the gate reported it,
    /// `None` when the step does not show it (the plan was made and started or replaced
    /// within the step).
    fn check_plan(&mut self, f: &Failure, seen: Option<Option<Instant>>) -> Result<(), Violation> {
        let cfg = self.config;
        let slot = f
            .retry_after
            .map(|ra| f.at + ra.max(Duration::from_secs(1)).min(cfg.probe.period));
        let us = Duration::from_micros(1);
        // Whether the plan is the first periodic probe seen, which shows the phase.
        let mut learn_phase = false;
        let expect: Option<Expect> = if !f.failed_closed {
            match self.next_retry_slot(f.deadline, f.at) {
                None => None,
                Some((k, lo, hi)) => {
                    self.retry_next = k + 1;
                    let lo = lo.max(f.at + us);
                    Some(match slot {
                        Some(s) => (
                            format!("retry {k}: its Retry-After slot {}", At(s)),
                            Box::new(move |t| t == s),
                        ),
                        None => (
                            format!(
                                "retry {k} of {} inside its {} [{}, {}] (R6)",
                                self.retries,
                                if k == self.retries {
                                    "final window"
                                } else {
                                    "slice"
                                },
                                At(lo),
                                At(hi)
                            ),
                            Box::new(move |t| t >= lo && t <= hi),
                        ),
                    })
                }
            }
        } else {
            let Some(mut p) = self.probes else {
                return fail(
                    Invariant::Model,
                    format!(
                        "failure at {} after the deadline, but no fail-closed seen",
                        At(f.at)
                    ),
                );
            };
            let e: Expect = match (self.next_ramp_slot(&p, f.at), slot) {
                (Some((j, _, _)), Some(s)) => {
                    p.ramp_next = j + 1;
                    (
                        format!("ramp probe {j}: its Retry-After slot {}", At(s)),
                        Box::new(move |t| t == s),
                    )
                }
                (Some((j, lo, hi)), None) => {
                    p.ramp_next = j + 1;
                    let lo = lo.max(f.at + us);
                    (
                        format!(
                            "ramp probe {j} of {} inside [{}, {}] (R7)",
                            cfg.probe.ramp_probes,
                            At(lo),
                            At(hi)
                        ),
                        Box::new(move |t| t >= lo && t <= hi),
                    )
                }
                (None, Some(s)) => (
                    format!("a probe at its Retry-After slot {}", At(s)),
                    Box::new(move |t| t == s),
                ),
                (None, None) => {
                    let base = p.closed_at + cfg.probe.ramp;
                    let period = cfg.probe.period;
                    match p.phase {
                        Some(phase) => {
                            let first = base + phase;
                            let want = if f.at < first {
                                first
                            } else {
                                let k = (f.at - first).as_micros() / period.as_micros() + 1;
                                first + Duration::from_micros(k.saturating_mul(period.as_micros()))
                            };
                            (
                                format!(
                                    "the periodic probe after {}: {} (closed {} + ramp {} + phase {} + k x {}, R7)",
                                    At(f.at),
                                    At(want),
                                    At(p.closed_at),
                                    Span(cfg.probe.ramp),
                                    Span(phase),
                                    Span(period)
                                ),
                                Box::new(move |t| t == want),
                            )
                        }
                        None => {
                            learn_phase = true;
                            let after = f.at.max(base);
                            (
                                format!(
                                    "the first periodic probe after {}: in ({}, {}] (phase unknown yet, R7)",
                                    At(f.at),
                                    At(after),
                                    At(after + period)
                                ),
                                Box::new(move |t| t > after && t <= after + period),
                            )
                        }
                    }
                }
            };
            self.probes = Some(p);
            Some(e)
        };
        let Some(seen) = seen else { return Ok(()) };
        match (expect, seen) {
            (None, None) => Ok(()),
            (None, Some(t)) => fail(
                Invariant::Model,
                format!(
                    "attempt planned at {} after the failure at {}, but no retry slot is left (R6)",
                    At(t),
                    At(f.at)
                ),
            ),
            (Some((what, _)), None) => fail(
                if f.failed_closed {
                    Invariant::I5
                } else {
                    Invariant::Model
                },
                format!("nothing planned after the failure at {}; want {what}", At(f.at)),
            ),
            (Some((what, ok)), Some(t)) => {
                if !ok(t) {
                    return fail(
                        Invariant::Model,
                        format!(
                            "next attempt {} after the failure at {}; want {what}",
                            At(t),
                            At(f.at)
                        ),
                    );
                }
                // The first periodic probe fixes the phase, in (0, period].
                if let Some(p) = self.probes.as_mut().filter(|_| learn_phase) {
                    let period = cfg.probe.period.as_micros().max(1);
                    let off = (t - (p.closed_at + cfg.probe.ramp)).as_micros();
                    p.phase = Some(Duration::from_micros((off - 1) % period + 1));
                }
                Ok(())
            }
        }
    }

    /// The access the model allows at `now`: signed out → `Unknown`; fail-closed deadline
    /// passed without a definitive answer → `Denied`; else the last definitive answer.
    pub fn expected_access(&self, now: Instant) -> Access {
        if !self.signed_in {
            Access::Unknown
        } else if self.deadline.is_some_and(|d| d <= now) {
            Access::Denied
        } else {
            self.definitive.unwrap_or(Access::Unknown)
        }
    }

    /// The model's fail-closed deadline (of the current streak, passed or not).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The model's generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Whether the model owes a check: signed in, and an attempt in flight, or a failure
    /// streak without a definitive answer, or no definitive answer yet for the current
    /// generation (R3).
    pub fn owed(&self) -> bool {
        self.signed_in
            && (self.in_flight.is_some() || self.deadline.is_some() || self.answered != Some(self.generation))
    }

    fn bump(&mut self) {
        self.generation = Generation(self.generation.0.wrapping_add(1));
    }

    fn end_session(&mut self) {
        self.bump(); // R10: everything in flight is now stale
        self.signed_in = false;
        self.definitive = None;
        self.end_streak();
        self.in_flight = None;
        self.next_attempt = 0;
        self.last_started = None;
    }

    /// A transient failure at `at` (R4, R5): the first one of a streak fixes the deadline.
    fn transient_failure(
        &mut self,
        at: Instant,
        retry_after: Option<Duration>,
        failed_closed: bool,
    ) -> Failure {
        if self.deadline.is_none() {
            // R5/R6: a new streak, with all its retry slots.
            self.retry_next = 1;
            self.probes = None;
        }
        let deadline = *self.deadline.get_or_insert(at + self.config.budget);
        Failure {
            at,
            deadline,
            failed_closed,
            retry_after,
        }
    }

    /// Checks one step. `before` and `after` are the snapshots around it; `step` holds the
    /// input, its reply and every output it produced. Returns the first violation found.
    pub fn observe(&mut self, step: &Step, before: &Observed, after: &Observed) -> Result<(), Violation> {
        let cfg = self.config;
        // The gate keeps time monotonic (an earlier `now` counts as the last one).
        let now = step.now.max(self.now);
        let prev = self.now;
        self.now = now;

        // ---- I5: bounded outputs (R12) ----
        if step.events.len() > MAX_EVENTS_PER_INPUT {
            return fail(
                Invariant::I5,
                format!(
                    "{} events from one input (at most {MAX_EVENTS_PER_INPUT}): {:?}",
                    step.events.len(),
                    step.events
                ),
            );
        }
        if step.checks.len() > 1 {
            return fail(
                Invariant::I5,
                format!("{} checks from one input: {:?}", step.checks.len(), step.checks),
            );
        }
        if after.counters.events_lost != before.counters.events_lost {
            return fail(
                Invariant::I5,
                format!("{} events lost", after.counters.events_lost),
            );
        }

        // ---- timers due at `now` fire before the input (the gate's prologue) ----
        let prev_access = self.expected_access(prev);
        let mut failures: [Option<Failure>; 2] = [None, None];
        // The planned next attempts the CheckFailed events report, in order.
        let reported: Vec<Option<Instant>> = step
            .events
            .iter()
            .filter_map(|e| match e {
                Event::CheckFailed { next_attempt, .. } => Some(*next_attempt),
                _ => None,
            })
            .collect();
        // A plan the gate makes without an event (on failing closed, or after a failure outside
        // a check), checked against the status at the end of the step.
        let mut silent: Option<Failure> = None;
        // The first schedule violation; reported after the access checks.
        let mut plan_violation: Option<Violation> = None;
        let mut deadline_crossed = false;
        let mut retry_due = false;
        // Timers fire in time order (at one instant: attempt, retry, deadline); at most one of
        // each per step.
        for _ in 0..3 {
            let attempt = self
                .in_flight
                .map(|a| a.started + cfg.attempt_timeout)
                .filter(|&t| t <= now);
            let retry = self.plan.filter(|&t| t <= now);
            let deadline = self.deadline.filter(|&d| d <= now && self.probes.is_none());
            let next = [(attempt, 0u8), (retry, 1), (deadline, 2)]
                .into_iter()
                .filter_map(|(t, k)| t.map(|t| (t, k)))
                .min();
            let Some((t, kind)) = next else { break };
            match kind {
                0 => {
                    // R4: the per-attempt timeout is a transient failure at `started + timeout`.
                    self.in_flight = None;
                    let closed = self.deadline.is_some_and(|d| d < t);
                    let f = self.transient_failure(t, None, closed);
                    failures[0] = Some(f);
                    if let Err(v) = self.check_plan(&f, reported.first().copied()) {
                        plan_violation.get_or_insert(v);
                    }
                    self.plan = reported.first().copied().flatten();
                }
                1 => {
                    // The retry comes due; it starts at the end of the input (unless the input
                    // starts a check itself or ends the session).
                    self.plan = None;
                    retry_due = true;
                }
                _ => {
                    // R5: failed closed; R7: probing starts, the first probe planned now unless
                    // an attempt is in flight or already planned.
                    deadline_crossed = true;
                    self.probes = Some(Probes {
                        closed_at: t,
                        ramp_next: 1,
                        phase: None,
                    });
                    if self.in_flight.is_none() && self.plan.is_none() && !retry_due {
                        silent = Some(Failure {
                            at: t,
                            deadline: t,
                            failed_closed: true,
                            retry_after: None,
                        });
                    }
                }
            }
        }
        // R13: the cause the status must show after this step, where the model knows it.
        let mut expected_cause =
            (deadline_crossed && prev_access != Access::Denied).then_some(Cause::FailedClosed);
        let mut logouts = 0u32;
        let (mut grants, mut denials, mut recoveries, mut unauthorized) = (0u32, 0u32, 0u32, 0u32);

        // ---- the input ----
        let mut stale: Option<(Generation, u32)> = None;
        let mut starts: Option<TokenHandle> = None; // attempt 0 of a new generation expected
        let mut sessions_ended = 0usize;
        let expected_reply: Option<Reply> = match step.input {
            Input::StartSession { token } => {
                if self.signed_in {
                    self.end_session();
                    sessions_ended += 1;
                    logouts += 1;
                    expected_cause = Some(Cause::LoggedOut);
                }
                self.bump();
                self.signed_in = true;
                self.token = token;
                starts = Some(token);
                Some(Ok(Some(self.generation)))
            }
            Input::TokenRefreshed { token } => {
                if self.signed_in {
                    // R10: the old loop ends; R5: the deadline stays.
                    self.bump();
                    self.token = token;
                    self.in_flight = None;
                    self.next_attempt = 0;
                    starts = Some(token);
                    Some(Ok(Some(self.generation)))
                } else {
                    Some(Err(InputError::NotSignedIn))
                }
            }
            Input::Logout => {
                if self.signed_in {
                    self.end_session();
                    sessions_ended += 1;
                    logouts += 1;
                    expected_cause = Some(Cause::LoggedOut);
                }
                Some(Ok(None))
            }
            Input::RecheckNow => None, // judged below, once the emitted check is known
            Input::Timeout => Some(Ok(None)),
            Input::Unauthorized => {
                if self.signed_in {
                    self.end_session(); // R8, R11
                    sessions_ended += 1;
                    unauthorized += 1;
                    expected_cause = Some(Cause::Unauthorized);
                }
                Some(Ok(None))
            }
            Input::TransientFailure { .. } => {
                if self.signed_in {
                    // R5: with no check in flight (that check decides), this failure starts
                    // the fail-closed clock if no streak is open. No event, no per-class count:
                    // it is not a check.
                    if self.in_flight.is_none() && self.plan.is_none() && !retry_due && silent.is_none() {
                        // R6/R7: the failure plans the next attempt like a failed check.
                        let closed = self.deadline.is_some_and(|d| d <= now);
                        silent = Some(self.transient_failure(now, None, closed));
                    }
                    Some(Ok(None))
                } else {
                    Some(Err(InputError::NotSignedIn))
                }
            }
            Input::CheckResult {
                generation,
                attempt,
                outcome,
            } => {
                let current = self.signed_in
                    && generation == self.generation
                    && self.in_flight.is_some_and(|a| a.attempt == attempt);
                if !current {
                    stale = Some((generation, attempt));
                } else {
                    self.in_flight = None;
                    match outcome {
                        CheckOutcome::Granted | CheckOutcome::Denied => {
                            let access = self.expected_access(now);
                            let failed_closed = self.deadline.is_some_and(|d| d <= now);
                            if outcome == CheckOutcome::Granted {
                                grants += 1;
                                if access != Access::Granted {
                                    // R7: a grant after failing closed is a recovery.
                                    recoveries += u32::from(failed_closed);
                                    expected_cause = Some(if failed_closed {
                                        Cause::Recovered
                                    } else {
                                        Cause::ServerGranted
                                    });
                                }
                            } else {
                                denials += 1;
                                expected_cause = Some(Cause::ServerDenied);
                            }
                            // R1/R2: definitive; the streak and its deadline end.
                            self.answered = Some(self.generation);
                            self.definitive = Some(if outcome == CheckOutcome::Granted {
                                Access::Granted
                            } else {
                                Access::Denied
                            });
                            self.end_streak();
                        }
                        CheckOutcome::Unauthorized => {
                            self.end_session(); // R8
                            sessions_ended += 1;
                            unauthorized += 1;
                            expected_cause = Some(Cause::Unauthorized);
                        }
                        CheckOutcome::Transient { retry_after, .. } => {
                            let closed = self.deadline.is_some_and(|d| d <= now);
                            let f = self.transient_failure(now, retry_after, closed);
                            failures[1] = Some(f);
                            let seen = reported.get(usize::from(failures[0].is_some())).copied();
                            if let Err(v) = self.check_plan(&f, seen) {
                                plan_violation.get_or_insert(v);
                            }
                            self.plan = seen.flatten();
                        }
                    }
                }
                Some(Ok(None))
            }
        };

        // ---- I4: stale results change nothing (R10) ----
        let stale_delta = after
            .counters
            .stale_dropped
            .wrapping_sub(before.counters.stale_dropped);
        let stale_events = step
            .events
            .iter()
            .filter(|e| matches!(e, Event::StaleResult { .. }))
            .count();
        if let Some((g, a)) = stale {
            let dropped = Event::StaleResult {
                generation: g,
                attempt: a,
            };
            // The drop is the input's last event; only the start of a retry that came due
            // with this input may follow it (the gate starts due retries at the end of an
            // input, so an input that supersedes one never starts it).
            let tail_ok = step.events.iter().position(|e| *e == dropped).is_some_and(|i| {
                let tail = &step.events[i + 1..];
                tail.len() <= 1 && tail.iter().all(|e| matches!(e, Event::CheckStarted { .. }))
            });
            if stale_delta != 1 || stale_events != 1 || !tail_ok {
                return fail(
                    Invariant::I4,
                    format!(
                        "stale result (gen {}, attempt {a}) was not just dropped and counted: model gen {}, in \
                         flight {:?}; stale counter +{stale_delta}, events {:?}",
                        g.0,
                        self.generation.0,
                        self.in_flight.map(|f| f.attempt),
                        step.events
                    ),
                );
            }
            let quiet =
                before.poll_timeout.is_none_or(|t| t > now) && failures[0].is_none() && !deadline_crossed;
            if quiet {
                let mut counters = after.counters;
                counters.stale_dropped = before.counters.stale_dropped;
                if after.status != before.status
                    || step.events.len() != 1
                    || !step.checks.is_empty()
                    || after.poll_timeout != before.poll_timeout
                    || counters != before.counters
                {
                    return fail(
                        Invariant::I4,
                        format!(
                            "stale result (gen {}, attempt {a}) changed something with no timer due: status \
                             {:?} -> {:?}, poll_timeout {} -> {}, events {:?}, checks {:?}",
                            g.0,
                            before.status,
                            after.status,
                            OptAt(before.poll_timeout),
                            OptAt(after.poll_timeout),
                            step.events,
                            step.checks
                        ),
                    );
                }
            }
        } else if stale_delta != 0 || stale_events != 0 {
            return fail(
                Invariant::Model,
                format!(
                    "input {:?} was dropped as stale, but the model holds it current (gen {}, in flight {:?})",
                    step.input,
                    self.generation.0,
                    self.in_flight.map(|f| f.attempt)
                ),
            );
        }

        // ---- the emitted check (R3 immediate check, R6/R7 retries, re-checks) ----
        let check = step.checks.first().copied();
        if let Some(c) = check {
            if !step.events.contains(&Event::CheckStarted {
                generation: c.generation,
                attempt: c.attempt,
            }) {
                return fail(
                    Invariant::Model,
                    format!("check {c:?} has no CheckStarted event: {:?}", step.events),
                );
            }
        }
        if let Some(token) = starts {
            let want = CheckRequest {
                generation: self.generation,
                attempt: 0,
                token,
                timeout: cfg.attempt_timeout,
                started: now,
            };
            if check != Some(want) {
                return fail(
                    Invariant::Model,
                    format!(
                        "{:?} must start attempt 0 at once (R3): want {want:?}, got {check:?}",
                        step.input
                    ),
                );
            }
            self.started(now, 0);
        } else if let Some(c) = check {
            let is_recheck = step.input == Input::RecheckNow;
            if !self.signed_in {
                return fail(Invariant::Model, format!("check {c:?} started while signed out"));
            }
            if let Some(a) = self.in_flight {
                return fail(
                    Invariant::Model,
                    format!(
                        "check {c:?} started while attempt {} is still in flight",
                        a.attempt
                    ),
                );
            }
            if !is_recheck && self.deadline.is_none() {
                return fail(
                    Invariant::Model,
                    format!(
                        "retry {c:?} started without a transient failure since the last definitive answer"
                    ),
                );
            }
            // R6/R7: a retry or probe starts when its planned instant has come (a plan made
            // within this step on failing closed may have come too).
            if !is_recheck && !retry_due && silent.is_none() {
                plan_violation.get_or_insert(Violation::new(
                    Invariant::Model,
                    format!(
                        "attempt {} started at {} before its planned instant {}",
                        c.attempt,
                        At(now),
                        OptAt(self.plan)
                    ),
                ));
            }
            let want = CheckRequest {
                generation: self.generation,
                attempt: self.next_attempt,
                token: self.token,
                timeout: cfg.attempt_timeout,
                started: now,
            };
            if c != want {
                return fail(
                    Invariant::Model,
                    format!("check started with wrong tags: want {want:?}, got {c:?}"),
                );
            }
            if is_recheck && step.reply != Ok(None) {
                return fail(
                    Invariant::Model,
                    format!("recheck started {c:?} but replied {:?}", step.reply),
                );
            }
            self.started(now, c.attempt);
        } else if step.input == Input::RecheckNow {
            let want: Reply = if !self.signed_in {
                Err(InputError::NotSignedIn)
            } else if self.in_flight.is_some() {
                Ok(None)
            } else {
                match self.last_started.map(|t| t + cfg.min_recheck_interval) {
                    Some(retry_at) if now < retry_at => Err(InputError::RateLimited { retry_at }),
                    _ => {
                        return fail(
                            Invariant::Model,
                            format!(
                                "recheck allowed at {} but no check started (reply {:?})",
                                At(now),
                                step.reply
                            ),
                        )
                    }
                }
            };
            if step.reply != want {
                return fail(
                    Invariant::Model,
                    format!("recheck replied {:?}, model wants {want:?}", step.reply),
                );
            }
        }
        if let Some(want) = expected_reply {
            if step.reply != want {
                return fail(
                    Invariant::Model,
                    format!("{:?} replied {:?}, model wants {want:?}", step.input, step.reply),
                );
            }
        }

        // ---- I1 / I3 / I2: access against the model ----
        let expected = self.expected_access(now);
        let got = after.status.access;
        if got == Access::Granted && expected != Access::Granted {
            let why = if !self.signed_in {
                "no session (a grant never survives a logout)".to_string()
            } else if let Some(d) = self.deadline.filter(|&d| d <= now) {
                format!(
                    "the fail-closed deadline {} has passed without a definitive answer",
                    At(d)
                )
            } else {
                format!(
                    "the last definitive answer since sign-in is {:?}",
                    self.definitive
                )
            };
            return fail(Invariant::I1, format!("Granted at {}, but {why}", At(now)));
        }
        if let Some(d) = self.deadline.filter(|&d| self.signed_in && d <= now) {
            if got != Access::Denied {
                return fail(
                    Invariant::I3,
                    format!(
                        "access {got:?} at {}, but the deadline {} passed without a definitive answer",
                        At(now),
                        At(d)
                    ),
                );
            }
        }
        if got != expected {
            let failure = failures.iter().flatten().next();
            if let Some(f) = failure.filter(|_| self.deadline.is_some_and(|d| d > now)) {
                return fail(
                    Invariant::I2,
                    format!(
                        "transient failure at {} changed access {:?} -> {got:?} before its deadline {}",
                        At(f.at),
                        before.status.access,
                        At(f.deadline)
                    ),
                );
            }
            if let Some(d) = self.deadline.filter(|&d| d > now) {
                return fail(
                    Invariant::I2,
                    format!(
                        "access {:?} -> {got:?} at {} during a failure streak, before its deadline {} (model: {expected:?})",
                        before.status.access,
                        At(now),
                        At(d)
                    ),
                );
            }
            return fail(
                Invariant::Model,
                format!(
                    "access {got:?}, model wants {expected:?} (last definitive {:?})",
                    self.definitive
                ),
            );
        }

        // ---- the rest of the status ----
        let s = &after.status;
        if s.signed_in != self.signed_in || s.generation != self.generation {
            return fail(
                Invariant::Model,
                format!(
                    "signed_in {} gen {}, model wants signed_in {} gen {}",
                    s.signed_in, s.generation.0, self.signed_in, self.generation.0
                ),
            );
        }
        let pending = self.deadline.filter(|&d| self.signed_in && d > now);
        if s.reverifying_until != pending {
            return fail(
                Invariant::I3,
                format!(
                    "reported deadline {}, model deadline {} (fixed by the first transient failure, never moves)",
                    OptAt(s.reverifying_until),
                    OptAt(pending)
                ),
            );
        }
        let probing = self.signed_in && self.deadline.is_some_and(|d| d <= now);
        if s.probing != probing || s.attempt_in_flight != self.in_flight.map(|a| a.attempt) {
            return fail(
                Invariant::Model,
                format!(
                    "probing {} in flight {:?}, model wants probing {probing} in flight {:?}",
                    s.probing,
                    s.attempt_in_flight,
                    self.in_flight.map(|a| a.attempt)
                ),
            );
        }

        // ---- events: cause chain (R13), session ends, failures and their slots (R5, R6) ----
        let mut access = before.status.access;
        let mut last_cause = None;
        let mut ended = 0usize;
        let mut failed: [(Option<Instant>, Option<Instant>); 3] = [(None, None); 3];
        let mut n_failed = 0usize;
        for e in &step.events {
            match *e {
                Event::AccessChanged { from, to, cause } => {
                    let fits = match to {
                        Access::Granted => matches!(cause, Cause::ServerGranted | Cause::Recovered),
                        Access::Denied => matches!(cause, Cause::ServerDenied | Cause::FailedClosed),
                        Access::Unknown => matches!(cause, Cause::LoggedOut | Cause::Unauthorized),
                    };
                    if from != access || !fits {
                        return fail(
                            Invariant::Model,
                            format!(
                                "AccessChanged {from:?} -> {to:?} ({cause:?}) while access was {access:?}"
                            ),
                        );
                    }
                    access = to;
                    last_cause = Some(cause);
                }
                Event::SessionEnded { .. } => ended += 1,
                Event::CheckFailed {
                    next_attempt,
                    deadline,
                    ..
                } => {
                    if let Some(slot) = failed.get_mut(n_failed) {
                        *slot = (next_attempt, deadline);
                    }
                    n_failed += 1;
                }
                _ => {}
            }
        }
        if access != got || last_cause.is_some_and(|c| s.cause != Some(c)) {
            return fail(
                Invariant::Model,
                format!(
                    "events {:?} do not lead to the status {got:?} ({:?}) from {:?}",
                    step.events, s.cause, before.status.access
                ),
            );
        }
        if ended != sessions_ended {
            return fail(
                Invariant::Model,
                format!("{ended} SessionEnded events, model ended {sessions_ended} sessions"),
            );
        }
        let n_expected = failures.iter().flatten().count();
        if n_failed != n_expected {
            return fail(
                Invariant::Model,
                format!(
                    "{} CheckFailed events, model saw {} transient failures",
                    n_failed, n_expected
                ),
            );
        }
        for (&(next, deadline), f) in failed.iter().zip(failures.iter().flatten()) {
            let want_deadline = (!f.failed_closed).then_some(f.deadline);
            if deadline != want_deadline {
                return fail(
                    Invariant::I3,
                    format!(
                        "failure at {} reports deadline {}, model deadline {} (never moves)",
                        At(f.at),
                        OptAt(deadline),
                        OptAt(want_deadline)
                    ),
                );
            }
            let slot = f
                .retry_after
                .map(|ra| f.at + ra.max(Duration::from_secs(1)).min(cfg.probe.period));
            match next {
                Some(t) if t < f.at => {
                    return fail(
                        Invariant::Model,
                        format!("next attempt {} before the failure {}", At(t), At(f.at)),
                    )
                }
                // R6: without a server slot, a retry before the deadline must be able to finish
                // before it.
                Some(t) if !f.failed_closed && slot.is_none() && t + cfg.attempt_timeout > f.deadline => {
                    return fail(
                        Invariant::Model,
                        format!(
                            "R6: retry at {} cannot finish (timeout {}) before the deadline {}",
                            At(t),
                            Span(cfg.attempt_timeout),
                            At(f.deadline)
                        ),
                    )
                }
                // R6/R7: a Retry-After slot replaces the jittered delay.
                Some(t) if slot.is_some_and(|s| s != t) => {
                    return fail(
                        Invariant::Model,
                        format!("Retry-After slot {} ignored: next attempt {}", OptAt(slot), At(t)),
                    )
                }
                // R7: after failing closed, probing never stops.
                None if f.failed_closed => {
                    return fail(
                        Invariant::I5,
                        format!("no probe planned after the failure at {} (R7)", At(f.at)),
                    )
                }
                _ => {}
            }
        }

        if let Some(c) = expected_cause {
            if s.cause != Some(c) {
                return fail(
                    Invariant::Model,
                    format!(
                        "cause {:?} after {:?}, model wants {c:?} (R13)",
                        s.cause, step.input
                    ),
                );
            }
        }

        // ---- counters (R13) ----
        let (b, a) = (&before.counters, &after.counters);
        let d = |x: u32, y: u32| y.wrapping_sub(x);
        let started = step
            .events
            .iter()
            .filter(|e| matches!(e, Event::CheckStarted { .. }))
            .count() as u32;
        let mut by_class = [0u32; TransientClass::COUNT];
        for e in &step.events {
            if let Event::CheckFailed { class, .. } = e {
                by_class[class.index()] += 1;
            }
        }
        let class_delta: [u32; TransientClass::COUNT] =
            core::array::from_fn(|i| d(b.transient[i], a.transient[i]));
        let want = [
            ("attempts", d(b.attempts, a.attempts), started),
            ("grants", d(b.grants, a.grants), grants),
            ("denials", d(b.denials, a.denials), denials),
            (
                "failed_closed",
                d(b.failed_closed, a.failed_closed),
                u32::from(deadline_crossed),
            ),
            ("recoveries", d(b.recoveries, a.recoveries), recoveries),
            ("logouts", d(b.logouts, a.logouts), logouts),
            (
                "unauthorized_logouts",
                d(b.unauthorized_logouts, a.unauthorized_logouts),
                unauthorized,
            ),
        ];
        for (name, got, want) in want {
            if got != want {
                return fail(
                    Invariant::Model,
                    format!("counter {name} grew by {got}, model wants {want} (R13)"),
                );
            }
        }
        if class_delta != by_class {
            return fail(
                Invariant::Model,
                format!(
                    "transient counters grew by {class_delta:?}, CheckFailed events say {by_class:?} (R13)"
                ),
            );
        }

        // ---- I5: no stall ----
        let owed = self.owed();
        if owed && !after.check_owed {
            return fail(
                Invariant::I5,
                "check_owed() is false while the model owes a definitive answer".into(),
            );
        }
        if !owed && after.check_owed {
            return fail(
                Invariant::Model,
                "check_owed() is true but the model owes nothing".into(),
            );
        }
        if owed {
            let Some(wake) = after.poll_timeout else {
                return fail(
                    Invariant::I5,
                    "a check is owed but poll_timeout() is None: the gate stalls".into(),
                );
            };
            // R7: after failing closed, the first periodic probe is at most ramp + period
            // away; `Retry-After` is capped at the period.
            let horizon = cfg
                .budget
                .max(cfg.probe.ramp + cfg.probe.period)
                .max(cfg.attempt_timeout);
            if wake > now + horizon {
                return fail(
                    Invariant::I5,
                    format!(
                        "next wake-up {} is more than {} after {}",
                        At(wake),
                        Span(horizon),
                        At(now)
                    ),
                );
            }
            if let Some(a) = self.in_flight {
                if wake > a.started + cfg.attempt_timeout {
                    return fail(
                        Invariant::I5,
                        format!(
                            "attempt {} times out at {} but poll_timeout is {}",
                            a.attempt,
                            At(a.started + cfg.attempt_timeout),
                            At(wake)
                        ),
                    );
                }
            }
            if let Some(d) = pending {
                if wake > d {
                    return fail(
                        Invariant::I3,
                        format!("poll_timeout {} is after the deadline {}: a driver sleeping until it misses the deadline", At(wake), At(d)),
                    );
                }
            }
        }
        if step.input == Input::Timeout && after.poll_timeout.is_some_and(|t| t <= now) {
            return fail(
                Invariant::I5,
                format!(
                    "after handle_timeout({}) poll_timeout is {}: a driver would spin",
                    At(now),
                    OptAt(after.poll_timeout)
                ),
            );
        }

        // ---- R6/R7: where the next attempt goes ----
        if let Some(v) = plan_violation {
            return Err(v);
        }
        if retry_due && self.signed_in && sessions_ended == 0 && check.is_none() && self.in_flight.is_none() {
            return fail(
                Invariant::I5,
                format!(
                    "a planned attempt came due at or before {} but none started",
                    At(now)
                ),
            );
        }
        if let Some(f) = silent.filter(|_| sessions_ended == 0 && self.signed_in) {
            // Made without an event: the status shows it, unless an attempt started since.
            let seen = check.is_none().then_some(after.status.next_attempt);
            self.check_plan(&f, seen)?;
            if check.is_none() {
                self.plan = after.status.next_attempt;
            }
        }
        if after.status.next_attempt != self.plan {
            return fail(
                Invariant::Model,
                format!(
                    "status shows the next attempt at {}, but the planned one is {}",
                    OptAt(after.status.next_attempt),
                    OptAt(self.plan)
                ),
            );
        }
        Ok(())
    }

    fn started(&mut self, now: Instant, attempt: u32) {
        self.in_flight = Some(Attempt {
            attempt,
            started: now,
        });
        self.next_attempt = attempt.saturating_add(1);
        self.last_started = Some(now);
        self.plan = None; // a started attempt replaces any planned one
    }
}
