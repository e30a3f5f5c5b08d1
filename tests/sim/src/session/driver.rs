//! The seeded driver: one session machine, a virtual clock, a "network" that answers checks and
//! refreshes immediately, late, out of order, twice, for old ids, or never, callers asking for
//! tokens at any moment, and the [`Checker`] after every step.

use super::machine::SessionMachine;
use super::model::{
    Checker, Handout, Input, Observed, RefreshAnswer, Reply, Sent, Shown, Step, Tok, Tolerate,
};
use crate::gate::Profile as GateProfile;
use crate::runner::{Coverage, Scenario};
use crate::sleep::Wake;
use crate::timefmt::{At, OptAt, Span};
use crate::Violation;
use accessgate::{
    Access, Action, CheckOutcome, CheckRequest, Duration, Event, Generation, Instant, RefreshId,
    RefreshOutcome, RefreshRequest, Session, SessionConfig, SessionEvent, TokenReply, TransientClass,
    WaitError,
};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::fmt::Write as _;

/// Number of seed families; `seed % FAMILIES` is the family (see [`family_of`]).
pub const FAMILIES: u64 = 4;

/// The family of `seed`: 0 = `Session<3, 2, 16>` with [`Profile::Tiny`], 1 = `Session<3, 2, 16>`
/// with [`Profile::Small`], 2 = `Session<8, 4, 1024>` with [`Profile::Default`], 3 = any of
/// `Session<1, 1, 8>`, `Session<3, 2, 16>`, `Session<8, 4, 64>`, `Session<2, 8, 1024>` with any
/// profile (including [`Profile::Wide`], which only this family draws).
pub const fn family_of(seed: u64) -> u64 {
    seed % FAMILIES
}

/// Scale of the configuration a world uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Microseconds: the gate's [`GateProfile::Tiny`], refresh timeout 1–10 µs, skew 0–30 µs,
    /// token lifetimes of a few µs: refreshes, checks, expiries and deadlines collide on the
    /// same tick.
    Tiny,
    /// Seconds: the gate's [`GateProfile::Small`], refresh timeout 1–10 s, skew 0–60 s,
    /// refresh retry 0.1–2 s doubling (or not) to at most 5 s.
    Small,
    /// [`SessionConfig::DEFAULT`]: the spec's figures (60 s skew, 10 s refresh timeout).
    Default,
    /// The gate's [`GateProfile::Wide`] (every scale from 1 µs to 11 days), skew 0-2 h,
    /// refresh timeout 1 ms-100 s, refresh retry base 1 ms-20 s growing by 1, 2, 3 or
    /// `u32::MAX` to a cap of up to 20 min, refresh spread 0, 1 µs, 10 min or `Duration::MAX`.
    Wide,
}

impl Profile {
    /// A configuration of this profile, drawn from `rng` (always valid).
    pub fn config(self, rng: &mut impl rand::Rng) -> SessionConfig {
        let us = Duration::from_micros;
        let ms = Duration::from_millis;
        let mut c = SessionConfig::DEFAULT;
        match self {
            Profile::Default => {}
            Profile::Tiny => {
                c.gate = GateProfile::Tiny.config(rng);
                c.refresh_skew = us(rng.random_range(0..=30));
                c.refresh_timeout = us(rng.random_range(1..=10));
                c.refresh_retry.base = us(rng.random_range(1..=3));
                c.refresh_retry.factor = rng.random_range(1..=2);
                c.refresh_retry.cap = us(rng.random_range(c.refresh_retry.base.as_micros()..=8));
            }
            Profile::Wide => {
                c.gate = GateProfile::Wide.config(rng);
                c.refresh_skew = ms(rng.random_range(0..=7_200_000));
                c.refresh_timeout = ms(rng.random_range(1..=100_000));
                c.refresh_retry.base = ms(rng.random_range(1..=20_000));
                c.refresh_retry.factor = [1, 2, 3, u32::MAX][rng.random_range(0..4)];
                c.refresh_retry.cap = ms(rng.random_range(c.refresh_retry.base.as_millis()..=1_200_000));
                c.refresh_spread =
                    [Duration::ZERO, us(1), Duration::from_secs(600), Duration::MAX][rng.random_range(0..4)];
            }
            Profile::Small => {
                c.gate = GateProfile::Small.config(rng);
                c.refresh_skew = ms(rng.random_range(0..=60_000));
                c.refresh_timeout = ms(rng.random_range(1_000..=10_000));
                c.refresh_retry.base = ms(rng.random_range(100..=2_000));
                c.refresh_retry.factor = rng.random_range(1..=3);
                c.refresh_retry.cap = ms(rng.random_range(c.refresh_retry.base.as_millis()..=5_000));
            }
        }
        debug_assert_eq!(c.validate(), Ok(()));
        c
    }

    /// The time unit lifetimes are drawn in.
    fn unit(self) -> Duration {
        match self {
            Profile::Tiny => Duration::from_micros(1),
            _ => Duration::from_secs(1),
        }
    }
}

/// How the "backend" answers in one scenario, in percent of answers.
#[derive(Clone, Copy, Debug)]
struct Mix {
    grant: u32,
    deny: u32,
    unauthorized: u32,
    forbidden: u32,
    /// Refresh answers: rejected, transient (the rest succeed).
    rejected: u32,
    refresh_transient: u32,
    /// A broken token endpoint (I10, R11): most new tokens live 0 or 1 unit, or less than the
    /// refresh backoff's base, refreshes are mostly answered at once, and half the sign-ins
    /// bring a token that has already expired. Before I10 such a world stormed refreshes.
    broken_endpoint: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct DriverCounts {
    /// Steps that drained at least 6 / 8 / 10 / 12 events: how close one input came to the
    /// event queue's capacity (R12).
    events_ge: [u64; 4],
    sign_ins: u64,
    restores: u64,
    restored_expired: u64,
    short_lifetimes: u64,
    storm_answers: u64,
    oversized: u64,
    checks_answered: u64,
    checks_duplicated: u64,
    checks_forged: u64,
    checks_lost: u64,
    forbidden: u64,
    unauthorized_answers: u64,
    refreshes_answered: u64,
    refreshes_late: u64,
    refreshes_old_id: u64,
    refreshes_lost: u64,
    refreshed: u64,
    refreshed_short: u64,
    rejected: u64,
    refresh_transient: u64,
    requests: u64,
    ready: u64,
    waits: u64,
    waiters_full: u64,
    waiter_ok: u64,
    waiter_not_authenticated: u64,
    waiter_unavailable: u64,
    woke_early: u64,
    overslept: u64,
    backdated: u64,
}

/// Check requests the driver holds at most; past that the oldest is lost (never answered).
const MAX_OUTSTANDING_CHECKS: usize = 8;
/// Refresh requests the driver remembers (including answered ones, for late answers).
const MAX_OUTSTANDING_REFRESHES: usize = 4;
/// The longest the driver sleeps in one step (30 days).
const MAX_SLEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// One session machine `M` driven by a seeded RNG, checked after every step.
pub struct SessionWorld<M: SessionMachine> {
    machine: M,
    checker: Checker,
    rng: Pcg64Mcg,
    config: SessionConfig,
    profile: Profile,
    machine_seed: u64,
    mix: Mix,
    now: Instant,
    planned: usize,
    outstanding: Vec<CheckRequest>,
    refreshes: Vec<RefreshRequest>,
    next_tok: u32,
    step: Step,
    note: &'static str,
    before: Observed,
    counts: DriverCounts,
    buf_a: Vec<u8>,
    buf_r: Vec<u8>,
}

impl<M: SessionMachine> SessionWorld<M> {
    /// A world drawing everything (configuration, machine seed, origin, length, answer mix)
    /// from `rng`, which then drives the inputs. The checker tolerates `tolerate`.
    pub fn new(mut rng: Pcg64Mcg, profile: Profile, tolerate: Tolerate) -> Self {
        let config = profile.config(&mut rng);
        let machine_seed = rng.random::<u64>();
        let machine = M::create(config, machine_seed);
        let now = if rng.random_bool(0.5) {
            Instant::ZERO
        } else {
            Instant::from_micros(rng.random_range(0..1u64 << 32))
        };
        let planned = rng.random_range(30..=120);
        let mix = Mix {
            grant: [5, 15, 30][rng.random_range(0..3)],
            deny: [1, 5, 10][rng.random_range(0..3)],
            unauthorized: [0, 2, 5][rng.random_range(0..3)],
            forbidden: [0, 5, 15][rng.random_range(0..3)],
            rejected: [0, 3, 10][rng.random_range(0..3)],
            refresh_transient: [10, 30, 60][rng.random_range(0..3)],
            broken_endpoint: rng.random_ratio(1, 4),
        };
        let before = Observed::of(&machine);
        SessionWorld {
            machine,
            checker: Checker::new(config, M::WAITERS, M::TOKEN_CAPACITY).with_tolerance(tolerate),
            rng,
            config,
            profile,
            machine_seed,
            mix,
            now,
            planned,
            outstanding: Vec::with_capacity(MAX_OUTSTANDING_CHECKS + 1),
            refreshes: Vec::with_capacity(MAX_OUTSTANDING_REFRESHES + 1),
            next_tok: 0,
            step: Step::new(now, Input::Timeout),
            note: "",
            before,
            counts: DriverCounts::default(),
            buf_a: Vec::new(),
            buf_r: Vec::new(),
        }
    }

    /// The machine under test.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Steps this world plans.
    pub fn planned(&self) -> usize {
        self.planned
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn up_to(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.rng.random_range(0..=max.as_micros()))
    }

    /// A token length: usually well inside the capacity, sometimes exactly it, sometimes over.
    fn token_len(&mut self) -> usize {
        let cap = M::TOKEN_CAPACITY;
        match self.rng.random_range(0..20) {
            0 => cap,
            1 => {
                self.counts.oversized += 1;
                cap + self.rng.random_range(1..=4)
            }
            2 => self.rng.random_range(0..=cap.min(2)),
            _ => self.rng.random_range(3.min(cap)..=cap.min(24)),
        }
    }

    fn access_tok(&mut self) -> Tok {
        self.next_tok += 1;
        let len = self.token_len();
        Tok::access(self.next_tok, len)
    }

    fn refresh_tok(&mut self) -> Tok {
        self.next_tok += 1;
        let len = self.token_len();
        Tok::refresh(self.next_tok, len)
    }

    /// A token lifetime: none, shorter than the skew, a little over it, long, absurd.
    fn lifetime(&mut self, restore: bool) -> Duration {
        let unit = self.profile.unit().as_micros();
        let skew = self.config.refresh_skew.as_micros();
        let timeout = self.config.gate.attempt_timeout.as_micros();
        let roll = self.rng.random_range(0..100);
        let zero_share = match (self.mix.broken_endpoint, restore) {
            (true, _) => 50,
            (false, true) => 25,
            (false, false) => 8,
        };
        let us = if roll < zero_share {
            0
        } else if roll < zero_share + 25 {
            self.counts.short_lifetimes += 1;
            self.rng.random_range(1..=skew.max(1))
        } else if roll < 70 {
            skew + self.rng.random_range(1..=timeout.saturating_mul(4).max(unit))
        } else if roll < 96 {
            skew + unit * self.rng.random_range(1..=3_600)
        } else {
            self.rng.random_range(u64::MAX / 4..=u64::MAX)
        };
        Duration::from_micros(us)
    }

    fn check_outcome(&mut self) -> CheckOutcome {
        let m = self.mix;
        let roll = self.rng.random_range(0..100);
        if roll < m.grant {
            return CheckOutcome::Granted;
        }
        if roll < m.grant + m.deny {
            return CheckOutcome::Denied;
        }
        if roll < m.grant + m.deny + m.unauthorized {
            self.counts.unauthorized_answers += 1;
            return CheckOutcome::Unauthorized;
        }
        let class = if roll < m.grant + m.deny + m.unauthorized + m.forbidden {
            TransientClass::Forbidden
        } else {
            TransientClass::ALL[self.rng.random_range(0..TransientClass::COUNT)]
        };
        if class == TransientClass::Forbidden {
            self.counts.forbidden += 1;
        }
        let retry_after = if self.rng.random_ratio(1, 6) {
            let cap = self.config.gate.probe.period.as_secs() + 2;
            Some(Duration::from_secs(self.rng.random_range(0..=cap)))
        } else {
            None
        };
        CheckOutcome::Transient {
            class,
            retry_after,
            detail: accessgate::FailureDetail::of_class(class),
        }
    }

    fn refresh_answer(&mut self) -> RefreshAnswer {
        let m = self.mix;
        let roll = self.rng.random_range(0..100);
        if roll < m.rejected {
            self.counts.rejected += 1;
            return RefreshAnswer::Rejected;
        }
        if roll < m.rejected + m.refresh_transient {
            self.counts.refresh_transient += 1;
            return RefreshAnswer::Transient(
                TransientClass::ALL[self.rng.random_range(0..TransientClass::COUNT)],
            );
        }
        self.counts.refreshed += 1;
        let access = self.access_tok();
        let refresh = if self.rng.random_ratio(2, 3) {
            Some(self.refresh_tok())
        } else {
            None
        };
        let expires_in = if self.mix.broken_endpoint && self.rng.random_ratio(3, 4) {
            // `expires_in` of 0, 1 µs, 1 unit (1 s or 1 µs), or under the backoff's base.
            self.counts.storm_answers += 1;
            let base = self.config.refresh_retry.base.as_micros();
            Duration::from_micros(match self.rng.random_range(0..4) {
                0 => 0,
                1 => 1,
                2 => self.profile.unit().as_micros(),
                _ => self.rng.random_range(0..base.max(1)),
            })
        } else {
            self.lifetime(false)
        };
        if expires_in <= self.config.refresh_skew {
            self.counts.refreshed_short += 1;
        }
        RefreshAnswer::Refreshed {
            access,
            refresh,
            expires_in,
        }
    }

    fn sign_in(&mut self) -> Input {
        let restore = self.rng.random_ratio(1, 3);
        let access = self.access_tok();
        let refresh = self.refresh_tok();
        let expires_in = self.lifetime(restore);
        if restore {
            self.counts.restores += 1;
            if expires_in == Duration::ZERO {
                self.counts.restored_expired += 1;
            }
        } else {
            self.counts.sign_ins += 1;
        }
        Input::SignIn {
            access,
            refresh,
            expires_in,
            restore,
        }
    }

    /// Picks the next input and the `now` it arrives at. Never depends on the step budget.
    fn choose(&mut self) -> Input {
        let unit = self.config.gate.attempt_timeout;
        let budget = self.config.gate.budget;
        // Now and then a request is lost for good: its answer never arrives.
        if !self.outstanding.is_empty() && self.rng.random_ratio(1, 25) {
            let i = self.rng.random_range(0..self.outstanding.len());
            self.outstanding.swap_remove(i);
            self.counts.checks_lost += 1;
        }
        if !self.refreshes.is_empty() && self.rng.random_ratio(1, 25) {
            let i = self.rng.random_range(0..self.refreshes.len());
            self.refreshes.swap_remove(i);
            self.counts.refreshes_lost += 1;
        }
        // Inputs other than wake-ups sometimes arrive a little later.
        if self.rng.random_ratio(1, 5) {
            let d = self.up_to(unit);
            self.advance(d);
        }
        let signed_in = self.before.status.signed_in;
        let mut roll = self.rng.random_range(0..100u32);
        if self.mix.broken_endpoint && !self.refreshes.is_empty() && self.rng.random_bool(0.5) {
            roll = 47; // a broken endpoint answers at once: the newest refresh, immediately
        }
        self.note = "";
        if !signed_in && roll < 25 {
            return self.sign_in();
        }
        // Absurd token lifetimes put wake-ups near the end of time; the driver never sleeps
        // more than MAX_SLEEP at once, so the clock never saturates.
        let wake = self.before.poll_timeout.filter(|&t| t <= self.now + MAX_SLEEP);
        match roll {
            0..=1 => self.sign_in(),
            2..=3 => Input::Logout,
            4..=17 => {
                self.counts.requests += 1;
                Input::RequestToken
            }
            18..=20 => Input::RecheckNow,
            21..=45 if !self.outstanding.is_empty() => {
                // 21..=38: any outstanding check, in shuffled order, possibly late (past its
                // timeout: then stale), of an older generation, or answered twice.
                // 39..=45: the newest one, answered immediately.
                let i = if roll <= 38 {
                    self.note = "late";
                    if self.rng.random_bool(0.5) {
                        let lateness = Duration::from_micros(unit.as_micros().saturating_mul(3) / 2);
                        let d = self.up_to(lateness);
                        self.advance(d);
                    }
                    self.rng.random_range(0..self.outstanding.len())
                } else {
                    self.note = "immediate";
                    self.outstanding.len() - 1
                };
                let req = if self.rng.random_ratio(1, 10) {
                    self.counts.checks_duplicated += 1;
                    self.note = "duplicate";
                    self.outstanding[i]
                } else {
                    self.outstanding.swap_remove(i)
                };
                self.counts.checks_answered += 1;
                let outcome = self.check_outcome();
                Input::CheckResult {
                    generation: req.generation,
                    attempt: req.attempt,
                    outcome,
                }
            }
            46 => {
                // A result for something never asked.
                self.counts.checks_forged += 1;
                self.note = "forged";
                let g = self.before.status.generation.0;
                let (generation, attempt) = if self.rng.random_bool(0.5) {
                    (g.wrapping_add(self.rng.random_range(1..1000)), 0)
                } else {
                    (g, self.rng.random_range(1_000_000..u32::MAX))
                };
                let outcome = self.check_outcome();
                Input::CheckResult {
                    generation: Generation(generation),
                    attempt,
                    outcome,
                }
            }
            47..=62 if !self.refreshes.is_empty() => {
                // 47..=54: the newest refresh, answered at once; 55..=59: any remembered one,
                // maybe after its timeout; 60..=62: an old one answered again (duplicate).
                let rt = self.config.refresh_timeout;
                let (i, keep) = match roll {
                    47..=54 => {
                        self.note = "immediate";
                        (self.refreshes.len() - 1, false)
                    }
                    55..=59 => {
                        self.note = "late";
                        self.counts.refreshes_late += 1;
                        if self.rng.random_bool(0.5) {
                            let d = self.up_to(Duration::from_micros(rt.as_micros().saturating_mul(3) / 2));
                            self.advance(d);
                        }
                        (self.rng.random_range(0..self.refreshes.len()), false)
                    }
                    _ => {
                        self.note = "duplicate";
                        self.counts.refreshes_old_id += 1;
                        (self.rng.random_range(0..self.refreshes.len()), true)
                    }
                };
                let req = if keep {
                    self.refreshes[i]
                } else {
                    self.refreshes.remove(i)
                };
                self.counts.refreshes_answered += 1;
                let answer = self.refresh_answer();
                Input::RefreshResult { id: req.id, answer }
            }
            63 => {
                self.note = "forged";
                self.counts.refreshes_old_id += 1;
                // Ids seen (late answers) or not handed out yet (answers before their request).
                let id = RefreshId(self.rng.random_range(0..64));
                let answer = self.refresh_answer();
                Input::RefreshResult { id, answer }
            }
            64..=97 => {
                let how = match roll {
                    64..=80 => Wake::OnTime,
                    81..=85 => Wake::Early,
                    86..=89 => Wake::Oversleep,
                    _ => Wake::Tick,
                };
                self.note = how.note();
                let (at, early) = how.at(self.now, wake, unit, budget, &mut self.rng);
                self.now = at;
                self.counts.woke_early += u64::from(early);
                self.counts.overslept += u64::from(how == Wake::Oversleep);
                Input::Timeout
            }
            _ => {
                self.note = "idle";
                // Long enough to cross token expiries now and then.
                let horizon = budget
                    .saturating_mul(3)
                    .max(self.config.refresh_skew.saturating_mul(2));
                let d = self.up_to(horizon);
                self.advance(d);
                Input::Timeout
            }
        }
    }

    fn apply(&mut self, now: Instant, input: Input) -> Result<Reply, super::machine::SessionError> {
        let m = &mut self.machine;
        match input {
            Input::SignIn {
                access,
                refresh,
                expires_in,
                restore,
            } => {
                access.write_to(&mut self.buf_a);
                refresh.write_to(&mut self.buf_r);
                let r = if restore {
                    m.restore(now, &self.buf_a, &self.buf_r, expires_in)
                } else {
                    m.sign_in(now, &self.buf_a, &self.buf_r, expires_in)
                };
                r.map(Reply::Started)
            }
            Input::Logout => m.logout(now).map(|()| Reply::Done),
            Input::RequestToken => match m.request_token(now) {
                Ok(TokenReply::Ready(handle)) => {
                    self.counts.ready += 1;
                    let token = m.access_token(handle).map(<[u8]>::to_vec);
                    Ok(Reply::Ready(Handout { handle, token }))
                }
                Ok(TokenReply::Wait(id)) => {
                    self.counts.waits += 1;
                    Ok(Reply::Wait(id))
                }
                Err(e) => {
                    if e == super::machine::SessionError::WaitersFull {
                        self.counts.waiters_full += 1;
                    }
                    Err(e)
                }
            },
            Input::RecheckNow => m.recheck_now(now).map(|()| Reply::Done),
            Input::CheckResult {
                generation,
                attempt,
                outcome,
            } => m
                .handle_check_result(now, generation, attempt, outcome)
                .map(|()| Reply::Done),
            Input::RefreshResult { id, answer } => {
                let outcome = match answer {
                    RefreshAnswer::Refreshed {
                        access,
                        refresh,
                        expires_in,
                    } => {
                        access.write_to(&mut self.buf_a);
                        if let Some(r) = refresh {
                            r.write_to(&mut self.buf_r);
                        }
                        RefreshOutcome::Refreshed {
                            access_token: &self.buf_a,
                            refresh_token: refresh.map(|_| &self.buf_r[..]),
                            expires_in,
                        }
                    }
                    RefreshAnswer::Rejected => RefreshOutcome::Rejected,
                    // The detail a class implies, as the generated check failures carry.
                    RefreshAnswer::Transient(class) => RefreshOutcome::transient(class),
                };
                m.handle_refresh_result(now, id, outcome).map(|()| Reply::Done)
            }
            Input::Timeout => m.handle_timeout(now).map(|()| Reply::Done),
        }
    }

    /// One step: see [`Scenario::step`].
    pub fn step(&mut self, trace: Option<&mut Vec<String>>) -> Result<(), Violation> {
        let input = self.choose();
        // Now and then an input carries an older `now` than the last one.
        let now = if self.rng.random_ratio(1, 50) {
            self.counts.backdated += 1;
            self.note = "backdated";
            let d = self.up_to(self.config.gate.attempt_timeout);
            self.now.saturating_sub(d)
        } else {
            self.now
        };
        let reply = self.apply(now, input);
        self.step.now = now;
        self.step.input = input;
        self.step.reply = reply;
        self.step.actions.clear();
        self.step.waiters.clear();
        self.step.events.clear();
        // The driver loop: start the actions, deliver the waiter outcomes, drain the events.
        while let Some(a) = self.machine.poll_action() {
            let sent = match a {
                Action::Check(request) => Sent::Check {
                    request,
                    token: self.machine.access_token(request.token).map(<[u8]>::to_vec),
                },
                Action::Refresh(request) => Sent::Refresh {
                    request,
                    refresh_token: self.machine.refresh_token().map(<[u8]>::to_vec),
                },
                // A hostile network keeps cancelled requests: their answers may still arrive
                // (late, stale), which is what the model checks the machine against (R10).
                Action::CancelCheck { .. } | Action::CancelRefresh(_) => continue,
            };
            self.step.actions.push(sent);
            if self.step.actions.len() > 8 {
                break; // the checker reports it; don't loop for ever
            }
        }
        while let Some((id, r)) = self.machine.poll_waiter() {
            let r = r.map(|handle| Handout {
                handle,
                token: self.machine.access_token(handle).map(<[u8]>::to_vec),
            });
            match &r {
                Ok(_) => self.counts.waiter_ok += 1,
                Err(WaitError::NotAuthenticated) => self.counts.waiter_not_authenticated += 1,
                Err(WaitError::Unavailable) => self.counts.waiter_unavailable += 1,
            }
            self.step.waiters.push((id, r));
            if self.step.waiters.len() > 64 {
                break;
            }
        }
        while let Some(e) = self.machine.poll_event() {
            self.step.events.push(e);
            if self.step.events.len() > 64 {
                break;
            }
        }
        for (k, n) in [6, 8, 10, 12].into_iter().enumerate() {
            if self.step.events.len() >= n {
                self.counts.events_ge[k] += 1;
            }
        }
        let after = Observed::of(&self.machine);
        for a in &self.step.actions {
            match a {
                Sent::Check { request, .. } => {
                    if self.outstanding.len() == MAX_OUTSTANDING_CHECKS {
                        self.outstanding.remove(0);
                        self.counts.checks_lost += 1;
                    }
                    self.outstanding.push(*request);
                }
                Sent::Refresh { request, .. } => {
                    if self.refreshes.len() == MAX_OUTSTANDING_REFRESHES {
                        self.refreshes.remove(0);
                    }
                    self.refreshes.push(*request);
                }
            }
        }
        if let Some(lines) = trace {
            let index = lines.len();
            lines.push(self.trace_line(index, &after));
        }
        let result = self.checker.observe(&self.step, &self.before, &after);
        self.before = after;
        result
    }

    fn trace_line(&self, index: usize, after: &Observed) -> String {
        let s = &after.status;
        let mut line = String::with_capacity(200);
        let _ = write!(line, "#{index:<3} t={:<16} ", At(self.step.now).to_string());
        let input = match self.step.input {
            Input::SignIn {
                access,
                refresh,
                expires_in,
                restore,
            } => format!(
                "{}({access}, {refresh}, expires_in {})",
                if restore { "restore" } else { "sign_in" },
                Span(expires_in)
            ),
            Input::Logout => "logout".into(),
            Input::RequestToken => "request_token".into(),
            Input::RecheckNow => "recheck_now".into(),
            Input::Timeout => "timeout".into(),
            Input::CheckResult {
                generation,
                attempt,
                outcome,
            } => {
                let o = match outcome {
                    CheckOutcome::Transient {
                        class, retry_after, ..
                    } => match retry_after {
                        Some(ra) => format!("{} ra={}", class.name(), Span(ra)),
                        None => class.name().to_string(),
                    },
                    other => format!("{other:?}"),
                };
                format!("check_result(g{} #{attempt} {o})", generation.0)
            }
            Input::RefreshResult { id, answer } => {
                let a = match answer {
                    RefreshAnswer::Refreshed {
                        access,
                        refresh,
                        expires_in,
                    } => format!(
                        "Refreshed {access} {} expires_in {}",
                        refresh.map_or("-".to_string(), |r| r.to_string()),
                        Span(expires_in)
                    ),
                    RefreshAnswer::Rejected => "Rejected".into(),
                    RefreshAnswer::Transient(c) => format!("Transient({})", c.name()),
                };
                format!("refresh_result(r{} {a})", id.0)
            }
        };
        let input = if self.note.is_empty() {
            input
        } else {
            format!("{input} [{}]", self.note)
        };
        let reply = match &self.step.reply {
            Ok(Reply::Done) => "ok".to_string(),
            Ok(Reply::Started(g)) => format!("ok g{}", g.0),
            Ok(Reply::Ready(h)) => format!("Ready(h{} {})", h.handle.0, Shown(h.token.as_deref())),
            Ok(Reply::Wait(w)) => format!("Wait(w{})", w.0),
            Err(e) => format!("{e:?}"),
        };
        let access = match s.access {
            Access::Unknown => "Unknown",
            Access::Granted => "Granted",
            Access::Denied => "Denied",
        };
        let _ = write!(
            line,
            "{input:<60} -> {reply:<18} | {access}/{} {} g{} exp={} rf={} wait={} dl={} wake={} |",
            s.cause.map_or("-", |c| c.name()),
            if s.signed_in { "in" } else { "out" },
            s.generation.0,
            OptAt(after.expires_at),
            if after.refresh_in_flight { "y" } else { "n" },
            after.waiting,
            OptAt(s.reverifying_until),
            OptAt(after.poll_timeout),
        );
        for a in &self.step.actions {
            let _ = match a {
                Sent::Check { request: c, token } => write!(
                    line,
                    " CHECK(g{} #{} {})",
                    c.generation.0,
                    c.attempt,
                    Shown(token.as_deref())
                ),
                Sent::Refresh {
                    request: r,
                    refresh_token,
                } => write!(line, " REFRESH(r{} {})", r.id.0, Shown(refresh_token.as_deref())),
            };
        }
        for (id, r) in &self.step.waiters {
            let _ = match r {
                Ok(h) => write!(
                    line,
                    " w{}:Ok(h{} {})",
                    id.0,
                    h.handle.0,
                    Shown(h.token.as_deref())
                ),
                Err(e) => write!(line, " w{}:{e:?}", id.0),
            };
        }
        for e in &self.step.events {
            let _ = match *e {
                SessionEvent::Gate(g) => write_gate_event(&mut line, g),
                SessionEvent::RefreshStarted { id, early } => {
                    write!(
                        line,
                        " refresh_started(r{}{})",
                        id.0,
                        if early { " early" } else { "" }
                    )
                }
                SessionEvent::Refreshed {
                    generation,
                    expires_at,
                } => write!(line, " refreshed(g{} exp={})", generation.0, At(expires_at)),
                SessionEvent::RefreshFailed {
                    class, next_attempt, ..
                } => {
                    write!(
                        line,
                        " refresh_failed({} next={})",
                        class.name(),
                        At(next_attempt)
                    )
                }
                SessionEvent::RefreshRejected => write!(line, " refresh_rejected"),
                SessionEvent::StaleRefresh { id } => write!(line, " stale_refresh(r{})", id.0),
            };
        }
        line
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let g = &c.gate;
        format!(
            "{} {:?} profile, seed {:#x}, checks {}% grant / {}% deny / {}% 401 / {}% 403, refreshes {}% rejected / \
             {}% transient{}; skew {}, refresh_timeout {}, refresh_retry {}x{} cap {}; attempt_timeout {}, budget {}, \
             refresh_spread {}, retries over {} + final window {}, probes: {} over {} then every {}, min_recheck {}",
            M::name(),
            self.profile,
            self.machine_seed,
            self.mix.grant,
            self.mix.deny,
            self.mix.unauthorized,
            self.mix.forbidden,
            self.mix.rejected,
            self.mix.refresh_transient,
            if self.mix.broken_endpoint {
                " (broken token endpoint: short-lived tokens, answered at once)"
            } else {
                ""
            },
            Span(c.refresh_skew),
            Span(c.refresh_timeout),
            Span(c.refresh_retry.base),
            c.refresh_retry.factor,
            Span(c.refresh_retry.cap),
            Span(g.attempt_timeout),
            Span(g.budget),
            Span(c.refresh_spread),
            Span(g.retry.spread),
            Span(g.retry.final_window),
            g.probe.ramp_probes,
            Span(g.probe.ramp),
            Span(g.probe.period),
            Span(g.min_recheck_interval)
        )
    }

    fn coverage(&self, into: &mut Coverage) {
        let k = self.machine.counters();
        into.add("attempts", k.attempts.into());
        into.add("grants", k.grants.into());
        into.add("failed_closed", k.failed_closed.into());
        into.add("refreshes", k.refreshes.into());
        into.add("refresh_failures", k.refresh_failures.into());
        into.add("unauthorized", k.unauthorized_logouts.into());
        into.add("logouts", k.logouts.into());
        into.add("stale_dropped", k.stale_dropped.into());
        into.add(
            "token_expired",
            k.transient_of(TransientClass::TokenExpired).into(),
        );
        into.add("refreshes_at_floor", self.checker.floor_starts());
        let d = &self.counts;
        for (name, v) in [
            ("sign_ins", d.sign_ins),
            ("restores", d.restores),
            ("restored_expired", d.restored_expired),
            ("short_lifetimes", d.short_lifetimes),
            ("broken_endpoint_worlds", u64::from(self.mix.broken_endpoint)),
            ("storm_answers", d.storm_answers),
            ("steps_with_6_events", d.events_ge[0]),
            ("steps_with_8_events", d.events_ge[1]),
            ("steps_with_10_events", d.events_ge[2]),
            ("steps_with_12_events", d.events_ge[3]),
            ("oversized_tokens", d.oversized),
            ("checks_answered", d.checks_answered),
            ("checks_duplicated", d.checks_duplicated),
            ("checks_forged", d.checks_forged),
            ("checks_lost", d.checks_lost),
            ("forbidden", d.forbidden),
            ("unauthorized_answers", d.unauthorized_answers),
            ("refreshes_answered", d.refreshes_answered),
            ("refreshes_late", d.refreshes_late),
            ("refreshes_old_id", d.refreshes_old_id),
            ("refreshes_lost", d.refreshes_lost),
            ("refreshed", d.refreshed),
            ("refreshed_short", d.refreshed_short),
            ("rejected", d.rejected),
            ("refresh_transient", d.refresh_transient),
            ("requests", d.requests),
            ("ready", d.ready),
            ("waits", d.waits),
            ("waiters_full", d.waiters_full),
            ("waiter_ok", d.waiter_ok),
            ("waiter_not_authenticated", d.waiter_not_authenticated),
            ("waiter_unavailable", d.waiter_unavailable),
            ("woke_early", d.woke_early),
            ("overslept", d.overslept),
            ("backdated", d.backdated),
        ] {
            into.add(name, v);
        }
    }
}

fn write_gate_event(line: &mut String, e: Event) -> std::fmt::Result {
    match e {
        Event::CheckStarted { generation, attempt } => write!(line, " started(g{} #{attempt})", generation.0),
        Event::FirstCheckSettled { generation } => write!(line, " settled(g{})", generation.0),
        Event::CheckFailed {
            generation,
            attempt,
            class,
            next_attempt,
            deadline,
            ..
        } => write!(
            line,
            " failed(g{} #{attempt} {} next={} dl={})",
            generation.0,
            class.name(),
            OptAt(next_attempt),
            OptAt(deadline)
        ),
        Event::AccessChanged { from, to, cause } => {
            write!(line, " access({from:?}->{to:?} {})", cause.name())
        }
        Event::StaleResult { generation, attempt } => write!(line, " stale(g{} #{attempt})", generation.0),
        Event::SessionEnded { cause } => write!(line, " ended({})", cause.name()),
    }
}

/// Whether `SIM_STRICT` is set to something other than `0`: then the checker tolerates no
/// known core finding (see [`Tolerate`]).
pub fn strict_from_env() -> bool {
    std::env::var("SIM_STRICT").is_ok_and(|v| v.trim() != "0" && !v.trim().is_empty())
}

/// The tolerance of a default run: [`Tolerate::KNOWN`]; none with `SIM_STRICT=1`; exactly the
/// findings of the bit mask `SIM_TOLERATE=<mask>` otherwise (bit `n - 1` is finding S`n`, so
/// `SIM_TOLERATE=0x2` tolerates S2 only).
pub fn default_tolerance() -> Tolerate {
    if strict_from_env() {
        Tolerate::NONE
    } else if let Some(mask) = crate::env_u64("SIM_TOLERATE") {
        Tolerate {
            flags: u32::try_from(mask).expect("SIM_TOLERATE is a 32-bit mask"),
        }
    } else {
        Tolerate::KNOWN
    }
}

/// The Pcg64Mcg stream, capacity choice and profile of `seed`: what every session scenario
/// (including test wrappers with a fixed machine type) starts from.
pub fn world_params(seed: u64) -> (Pcg64Mcg, usize, Profile) {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5e55_1011_5e55_1011);
    let (variant, profile) = match family_of(seed) {
        0 => (1, Profile::Tiny),
        1 => (1, Profile::Small),
        2 => (2, Profile::Default),
        _ => (
            rng.random_range(0..4),
            [Profile::Tiny, Profile::Small, Profile::Default, Profile::Wide][rng.random_range(0..4)],
        ),
    };
    (rng, variant, profile)
}

/// A [`SessionWorld`] of the real [`Session`], whose capacities and [`Profile`] come from the
/// seed (see [`family_of`]). This is the [`Scenario`] the tests run.
pub enum SessionScenario {
    /// `Session<1, 1, 8>`: one retry, one waiter, 8-byte tokens.
    Tight(SessionWorld<Session<1, 1, 8>>),
    /// `Session<3, 2, 16>`.
    Small(SessionWorld<Session<3, 2, 16>>),
    /// `Session<8, 4, 1024>` (the default capacities).
    Default(SessionWorld<Session<8, 4, 1024>>),
    /// `Session<8, 4, 64>`.
    Medium(SessionWorld<Session<8, 4, 64>>),
    /// `Session<2, 8, 1024>`: many waiters.
    Crowd(SessionWorld<Session<2, 8, 1024>>),
}

macro_rules! each {
    ($self:expr, $w:ident => $e:expr) => {
        match $self {
            SessionScenario::Tight($w) => $e,
            SessionScenario::Small($w) => $e,
            SessionScenario::Default($w) => $e,
            SessionScenario::Medium($w) => $e,
            SessionScenario::Crowd($w) => $e,
        }
    };
}

impl SessionScenario {
    /// The world of `seed`, with the checker tolerating `tolerate`.
    pub fn with_tolerance(seed: u64, tolerate: Tolerate) -> Self {
        let (rng, variant, profile) = world_params(seed);
        match family_of(seed) {
            0 | 1 => SessionScenario::Small(SessionWorld::new(rng, profile, tolerate)),
            2 => SessionScenario::Default(SessionWorld::new(rng, profile, tolerate)),
            _ => match variant {
                0 => SessionScenario::Tight(SessionWorld::new(rng, profile, tolerate)),
                1 => SessionScenario::Small(SessionWorld::new(rng, profile, tolerate)),
                2 => SessionScenario::Medium(SessionWorld::new(rng, profile, tolerate)),
                _ => SessionScenario::Crowd(SessionWorld::new(rng, profile, tolerate)),
            },
        }
    }
}

impl Scenario for SessionScenario {
    const MACHINE: &'static str = "session";
    const REPLAY: &'static str =
        "cargo test -p accessgate-sim --test session_interleavings replay -- --nocapture";

    fn new(seed: u64) -> Self {
        SessionScenario::with_tolerance(seed, default_tolerance())
    }
    fn planned_steps(&self) -> usize {
        each!(self, w => w.planned)
    }
    fn describe(&self) -> String {
        each!(self, w => w.describe())
    }
    fn step(&mut self, trace: Option<&mut Vec<String>>) -> Result<(), Violation> {
        each!(self, w => w.step(trace))
    }
    fn coverage(&self, into: &mut Coverage) {
        each!(self, w => w.coverage(into))
    }
}

/// A scenario of one fixed machine type `M` (a test wrapper around the real session, say),
/// with the seed's profile; the capacity choice of the seed is ignored.
pub struct FixedScenario<M: SessionMachine>(pub SessionWorld<M>);

impl<M: SessionMachine> Scenario for FixedScenario<M> {
    const MACHINE: &'static str = "session (fixed machine)";
    const REPLAY: &'static str = "(a fixed machine of the tests: replay it with accessgate_sim::run)";

    fn new(seed: u64) -> Self {
        let (rng, _, profile) = world_params(seed);
        FixedScenario(SessionWorld::new(rng, profile, default_tolerance()))
    }
    fn planned_steps(&self) -> usize {
        self.0.planned
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn step(&mut self, trace: Option<&mut Vec<String>>) -> Result<(), Violation> {
        self.0.step(trace)
    }
    fn coverage(&self, into: &mut Coverage) {
        self.0.coverage(into)
    }
}
