//! The seeded driver: one `Gate<N>`, a virtual clock, a "network" that answers, delays,
//! reorders, duplicates, forges or loses checks, and the [`Checker`] after every step.

use super::model::{Checker, Input, InputError, Observed, Reply, Step};
use crate::runner::{Coverage, Scenario};
use crate::sleep::Wake;
use crate::timefmt::{At, OptAt, Span};
use crate::Violation;
use accessgate::{
    Access, CheckOutcome, CheckRequest, Duration, Event, Gate, GateConfig, Instant, TokenHandle,
    TransientClass,
};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::fmt::Write as _;

/// Number of seed families; `seed % FAMILIES` is the family (see [`family_of`]).
pub const FAMILIES: u64 = 4;

/// The family of `seed`: 0 = `Gate<1>` with a [`Profile::Tiny`] configuration, 1 = `Gate<3>`
/// with [`Profile::Small`], 2 = `Gate<8>` with [`Profile::Default`], 3 = any of the four
/// capacities with any profile (including [`Profile::Wide`], which only this family draws).
pub const fn family_of(seed: u64) -> u64 {
    seed % FAMILIES
}

/// Scale of the configuration a world uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Microseconds: attempt timeout 1–5 µs, budget up to 40 µs. Timers, results and
    /// deadlines collide on the same tick all the time.
    Tiny,
    /// Seconds: attempt timeout 1–5 s, budget up to 30 s, random retry windows, probe
    /// periods and ramps.
    Small,
    /// [`GateConfig::DEFAULT`]: the spec's figures.
    Default,
    /// Every scale at once: attempt timeouts from 1 µs to 10^12 µs (11 days), budgets up to
    /// 1,000 of them, probe periods and ramps from 1 µs to 10^12 µs, up to 16 ramp probes,
    /// re-check intervals up to the timeout's scale: the R5-R7 arithmetic across its range.
    /// (Time stays below the end of the clock, whose convention the model does not follow:
    /// an input at `Instant::MAX` happens 1 µs before it, a deadline saturated there never
    /// comes.)
    Wide,
}

impl Profile {
    /// A configuration of this profile, drawn from `rng` (always valid).
    pub fn config(self, rng: &mut impl rand::Rng) -> GateConfig {
        let us = Duration::from_micros;
        let ms = Duration::from_millis;
        let mut c = GateConfig::DEFAULT;
        match self {
            Profile::Default => {}
            Profile::Tiny => {
                c.attempt_timeout = us(rng.random_range(1..=5));
                c.budget = us(rng.random_range(c.attempt_timeout.as_micros() + 1..=40));
                let room = c.budget.saturating_sub(c.attempt_timeout).as_micros();
                c.retry.final_window = us(rng.random_range(0..room));
                c.retry.spread = us(rng.random_range(1..=room - c.retry.final_window.as_micros()));
                c.probe.period = us(rng.random_range(1..=20));
                c.probe.ramp_probes = rng.random_range(0..=3);
                c.probe.ramp = us(if c.probe.ramp_probes == 0 {
                    0
                } else {
                    rng.random_range(1..=10)
                });
                c.min_recheck_interval = us(rng.random_range(0..=5));
            }
            Profile::Wide => {
                let scale = |rng: &mut dyn rand::Rng| 10u64.pow(rng.random_range(1..=12));
                let top = scale(rng);
                c.attempt_timeout = us(rng.random_range(1..=top));
                let times: u64 = rng.random_range(2..=1_000);
                c.budget = us(rng
                    .random_range(c.attempt_timeout.as_micros() + 1..=c.attempt_timeout.as_micros() * times));
                let room = c.budget.saturating_sub(c.attempt_timeout).as_micros();
                c.retry.final_window = us(rng.random_range(0..=room / 3));
                c.retry.spread = us(rng.random_range(1..=room - c.retry.final_window.as_micros()));
                let period = scale(rng);
                c.probe.period = us(rng.random_range(1..=period));
                c.probe.ramp_probes = rng.random_range(0..=accessgate::Probing::MAX_RAMP_PROBES);
                let ramp = scale(rng);
                c.probe.ramp = us(if c.probe.ramp_probes == 0 {
                    0
                } else {
                    rng.random_range(1..=ramp)
                });
                c.min_recheck_interval = us(rng.random_range(0..=top));
            }
            Profile::Small => {
                c.attempt_timeout = ms(rng.random_range(1_000..=5_000));
                c.budget = ms(rng.random_range(c.attempt_timeout.as_millis() + 1..=30_000));
                let room = c.budget.saturating_sub(c.attempt_timeout).as_millis();
                c.retry.final_window = ms(rng.random_range(0..=room / 3));
                c.retry.spread = ms(rng.random_range(1..=room - c.retry.final_window.as_millis()));
                c.probe.period = ms(rng.random_range(1_000..=60_000));
                c.probe.ramp_probes = rng.random_range(0..=3);
                c.probe.ramp = ms(if c.probe.ramp_probes == 0 {
                    0
                } else {
                    rng.random_range(500..=30_000)
                });
                c.min_recheck_interval = ms(rng.random_range(0..=5_000));
            }
        }
        debug_assert_eq!(c.validate(), Ok(()));
        c
    }
}

/// Alters what a world reports to its checker (given the snapshot before the step, the step
/// and the snapshot after it), to prove in tests that the whole pipeline (driver, checker,
/// shrinker) catches a wrong machine. `None` in every real run.
pub type Tamper = fn(&Observed, &mut Step, &mut Observed);

/// How the "backend" answers in one scenario, in percent of answers.
#[derive(Clone, Copy, Debug)]
struct Mix {
    grant: u32,
    deny: u32,
    unauthorized: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct DriverCounts {
    answered: u64,
    duplicated: u64,
    forged: u64,
    lost: u64,
    retry_after: u64,
    woke_early: u64,
    overslept: u64,
    woke_at_deadline: u64,
    crowded_steps: u64,
    backdated: u64,
}

/// One `Gate<N>` driven by a seeded RNG, checked after every step.
pub struct GateWorld<const N: usize> {
    gate: Gate<N>,
    checker: Checker,
    rng: Pcg64Mcg,
    config: GateConfig,
    profile: Profile,
    gate_seed: u64,
    mix: Mix,
    now: Instant,
    planned: usize,
    outstanding: Vec<CheckRequest>,
    next_token: u32,
    step: Step,
    note: &'static str,
    before: Observed,
    tamper: Option<Tamper>,
    counts: DriverCounts,
}

/// Requests the driver holds at most; past that the oldest is lost (never answered).
const MAX_OUTSTANDING: usize = 8;

impl<const N: usize> GateWorld<N> {
    /// A world drawing everything (configuration, gate seed, origin, length, answer mix) from
    /// `rng`, which then drives the inputs.
    pub fn new(mut rng: Pcg64Mcg, profile: Profile) -> Self {
        let config = profile.config(&mut rng);
        let gate_seed = rng.random::<u64>();
        let gate = Gate::<N>::new(config, gate_seed).expect("profiles give valid configurations");
        let now = if rng.random_bool(0.5) {
            Instant::ZERO
        } else {
            Instant::from_micros(rng.random_range(0..1u64 << 32))
        };
        let planned = rng.random_range(50..=200);
        let mix = Mix {
            grant: [2, 10, 25][rng.random_range(0..3)],
            deny: [1, 5, 15][rng.random_range(0..3)],
            unauthorized: [0, 1, 3][rng.random_range(0..3)],
        };
        let before = Observed::of(&gate);
        GateWorld {
            gate,
            checker: Checker::new(config, N),
            rng,
            config,
            profile,
            gate_seed,
            mix,
            now,
            planned,
            outstanding: Vec::with_capacity(MAX_OUTSTANDING + 1),
            next_token: 1,
            step: Step::new(now, Input::Timeout),
            note: "",
            before,
            tamper: None,
            counts: DriverCounts::default(),
        }
    }

    /// Installs a [`Tamper`] (tests of the simulator itself).
    pub fn set_tamper(&mut self, tamper: Option<Tamper>) {
        self.tamper = tamper;
    }

    /// The gate under test.
    pub fn gate(&self) -> &Gate<N> {
        &self.gate
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn up_to(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.rng.random_range(0..=max.as_micros()))
    }

    fn token(&mut self) -> TokenHandle {
        self.next_token = self.next_token.wrapping_add(1);
        TokenHandle(self.next_token)
    }

    fn outcome(&mut self) -> CheckOutcome {
        let m = self.mix;
        let roll = self.rng.random_range(0..100);
        if roll < m.grant {
            return CheckOutcome::Granted;
        }
        if roll < m.grant + m.deny {
            return CheckOutcome::Denied;
        }
        if roll < m.grant + m.deny + m.unauthorized {
            return CheckOutcome::Unauthorized;
        }
        let class = TransientClass::ALL[self.rng.random_range(0..TransientClass::COUNT)];
        let retry_after = if self.rng.random_ratio(1, 4) {
            self.counts.retry_after += 1;
            let cap = self.config.probe.period.as_secs() + 2;
            Some(Duration::from_secs(match self.rng.random_range(0..10) {
                0..=6 => self.rng.random_range(0..=cap),
                7 | 8 => self.rng.random_range(0..=3),
                _ => self.rng.random_range(1_000_000..=1_000_000_000),
            }))
        } else {
            None
        };
        CheckOutcome::Transient {
            class,
            retry_after,
            detail: accessgate::FailureDetail::of_class(class),
        }
    }

    /// Picks the next input and the `now` it arrives at. Never depends on the step budget.
    fn choose(&mut self) -> Input {
        let unit = self.config.attempt_timeout;
        let budget = self.config.budget;
        // Now and then a request is lost for good: its result never arrives.
        if !self.outstanding.is_empty() && self.rng.random_ratio(1, 20) {
            let i = self.rng.random_range(0..self.outstanding.len());
            self.outstanding.swap_remove(i);
            self.counts.lost += 1;
        }
        // Inputs other than wake-ups sometimes arrive a little later.
        if self.rng.random_ratio(1, 5) {
            let d = self.up_to(unit);
            self.advance(d);
        }
        let signed_in = self.before.status.signed_in;
        let roll = self.rng.random_range(0..104u32);
        self.note = "";
        if !signed_in && roll < 30 {
            let token = self.token();
            return Input::StartSession { token };
        }
        let wake = self.before.poll_timeout;
        match roll {
            0..=2 => {
                let token = self.token();
                Input::StartSession { token }
            }
            3..=7 => {
                let token = self.token();
                Input::TokenRefreshed { token }
            }
            8..=9 => Input::Logout,
            10..=13 => Input::RecheckNow,
            14..=51 if !self.outstanding.is_empty() => {
                // 14..=45: any outstanding request, in shuffled order, possibly late (past its
                // timeout: then stale), of an older generation, or answered twice.
                // 46..=51: the newest one, answered immediately.
                let i = if roll <= 45 {
                    self.note = "late";
                    let lateness = Duration::from_micros(unit.as_micros().saturating_mul(3) / 2);
                    if self.rng.random_bool(0.5) {
                        let d = self.up_to(lateness);
                        self.advance(d);
                    }
                    self.rng.random_range(0..self.outstanding.len())
                } else {
                    self.note = "immediate";
                    self.outstanding.len() - 1
                };
                let req = if self.rng.random_ratio(1, 10) {
                    self.counts.duplicated += 1;
                    self.note = "duplicate";
                    self.outstanding[i]
                } else {
                    self.outstanding.swap_remove(i)
                };
                self.counts.answered += 1;
                let outcome = self.outcome();
                Input::CheckResult {
                    generation: req.generation,
                    attempt: req.attempt,
                    outcome,
                }
            }
            52 => {
                // A result for something never asked: a future generation or an attempt number
                // the gate will never reach in a scenario.
                self.counts.forged += 1;
                self.note = "forged";
                let g = self.gate.generation().0;
                let (generation, attempt) = if self.rng.random_bool(0.5) {
                    (g.wrapping_add(self.rng.random_range(1..1000)), 0)
                } else {
                    (g, self.rng.random_range(1_000_000..u32::MAX))
                };
                let outcome = self.outcome();
                Input::CheckResult {
                    generation: accessgate::Generation(generation),
                    attempt,
                    outcome,
                }
            }
            53..=96 => {
                let how = match roll {
                    53..=72 => Wake::OnTime,
                    73..=79 => Wake::Early,
                    80..=85 => Wake::Oversleep,
                    _ => Wake::Tick,
                };
                self.note = how.note();
                if how == Wake::OnTime && wake.is_some() && wake == self.before.status.reverifying_until {
                    self.counts.woke_at_deadline += 1;
                }
                let (at, early) = how.at(self.now, wake, unit, budget, &mut self.rng);
                self.now = at;
                self.counts.woke_early += u64::from(early);
                self.counts.overslept += u64::from(how == Wake::Oversleep);
                Input::Timeout
            }
            100..=102 => {
                // A token refresh that could not reach the backend (the session layer's
                // report to the gate).
                let class = TransientClass::ALL[self.rng.random_range(0..TransientClass::COUNT)];
                Input::TransientFailure { class }
            }
            103 => Input::Unauthorized,
            _ => {
                self.note = "idle";
                let d = self.up_to(budget.saturating_mul(3));
                self.advance(d);
                Input::Timeout
            }
        }
    }

    fn apply(&mut self, now: Instant, input: Input) -> Reply {
        let g = &mut self.gate;
        match input {
            Input::StartSession { token } => Ok(Some(g.start_session(now, token))),
            Input::TokenRefreshed { token } => g
                .token_refreshed(now, token)
                .map(Some)
                .map_err(|_| InputError::NotSignedIn),
            Input::Logout => {
                g.logout(now);
                Ok(None)
            }
            Input::RecheckNow => g.recheck_now(now).map(|()| None),
            Input::CheckResult {
                generation,
                attempt,
                outcome,
            } => {
                g.handle_check_result(now, generation, attempt, outcome);
                Ok(None)
            }
            Input::Timeout => {
                g.handle_timeout(now);
                Ok(None)
            }
            Input::Unauthorized => {
                g.unauthorized(now);
                Ok(None)
            }
            Input::TransientFailure { class } => g
                .transient_failure(now, class, accessgate::FailureDetail::of_class(class))
                .map(|()| None)
                .map_err(|_| InputError::NotSignedIn),
        }
    }

    fn trace_line(&self, index: usize, after: &Observed) -> String {
        let s = &after.status;
        let mut line = String::with_capacity(160);
        let _ = write!(line, "#{index:<3} t={:<16} ", At(self.step.now).to_string());
        let input = match self.step.input {
            Input::StartSession { token } => format!("start_session(tok {})", token.0),
            Input::TokenRefreshed { token } => format!("token_refreshed(tok {})", token.0),
            Input::Logout => "logout".into(),
            Input::RecheckNow => "recheck_now".into(),
            Input::Timeout => "timeout".into(),
            Input::Unauthorized => "unauthorized".into(),
            Input::TransientFailure { class } => format!("transient_failure({})", class.name()),
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
                format!("result(g{} #{attempt} {o})", generation.0)
            }
        };
        let input = if self.note.is_empty() {
            input
        } else {
            format!("{input} [{}]", self.note)
        };
        let reply = match self.step.reply {
            Ok(None) => "ok".to_string(),
            Ok(Some(g)) => format!("ok g{}", g.0),
            Err(e) => format!("{e:?}"),
        };
        let access = match s.access {
            Access::Unknown => "Unknown",
            Access::Granted => "Granted",
            Access::Denied => "Denied",
        };
        let _ = write!(
            line,
            "{input:<44} -> {reply:<10} | {access}/{} {} g{} dl={} wake={} |",
            s.cause.map_or("-", |c| c.name()),
            if s.signed_in { "in" } else { "out" },
            s.generation.0,
            OptAt(s.reverifying_until),
            OptAt(after.poll_timeout),
        );
        for e in &self.step.events {
            let _ = match *e {
                Event::CheckStarted { generation, attempt } => {
                    write!(line, " started(g{} #{attempt})", generation.0)
                }
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
                Event::StaleResult { generation, attempt } => {
                    write!(line, " stale(g{} #{attempt})", generation.0)
                }
                Event::SessionEnded { cause } => write!(line, " ended({})", cause.name()),
                Event::FirstCheckSettled { generation } => write!(line, " settled(g{})", generation.0),
            };
        }
        line
    }

    /// One step: see [`Scenario::step`].
    pub fn step(&mut self, trace: Option<&mut Vec<String>>) -> Result<(), Violation> {
        let input = self.choose();
        // Now and then an input carries an older `now` than the last one (an adapter that
        // read its clock before waiting for a lock): the gate must treat it as the last one.
        let now = if self.rng.random_ratio(1, 50) {
            self.counts.backdated += 1;
            self.note = "backdated";
            let d = self.up_to(self.config.attempt_timeout);
            self.now.saturating_sub(d)
        } else {
            self.now
        };
        let reply = self.apply(now, input);
        self.step.now = now;
        self.step.input = input;
        self.step.reply = reply;
        self.step.events.clear();
        self.step.checks.clear();
        // The driver loop of lib.rs: start the checks, then drain the events.
        while let Some(c) = self.gate.poll_check() {
            self.step.checks.push(c);
            if self.step.checks.len() > 8 {
                break; // the checker reports it (I5); don't loop for ever
            }
        }
        while let Some(e) = self.gate.poll_event() {
            self.step.events.push(e);
            if self.step.events.len() > 64 {
                break;
            }
        }
        let mut after = Observed::of(&self.gate);
        if let Some(tamper) = self.tamper {
            tamper(&self.before, &mut self.step, &mut after);
        }
        if self.step.events.len() >= accessgate::MAX_EVENTS_PER_INPUT - 1 {
            self.counts.crowded_steps += 1;
        }
        for &c in &self.step.checks {
            if self.outstanding.len() == MAX_OUTSTANDING {
                self.outstanding.remove(0);
                self.counts.lost += 1;
            }
            self.outstanding.push(c);
        }
        if let Some(lines) = trace {
            let index = lines.len();
            lines.push(self.trace_line(index, &after));
        }
        let result = self.checker.observe(&self.step, &self.before, &after);
        self.before = after;
        result
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "Gate<{N}> {:?} profile, gate seed {:#x}, answers {}% grant / {}% deny / {}% 401; attempt_timeout {}, \
             budget {}, retries over {} + final window {}, probes: {} over {} then every {}, min_recheck {}",
            self.profile,
            self.gate_seed,
            self.mix.grant,
            self.mix.deny,
            self.mix.unauthorized,
            Span(c.attempt_timeout),
            Span(c.budget),
            Span(c.retry.spread),
            Span(c.retry.final_window),
            c.probe.ramp_probes,
            Span(c.probe.ramp),
            Span(c.probe.period),
            Span(c.min_recheck_interval)
        )
    }

    fn coverage(&self, into: &mut Coverage) {
        let k = self.gate.counters();
        into.add("attempts", k.attempts.into());
        into.add("transient", k.transient_total().into());
        into.add("grants", k.grants.into());
        into.add("denials", k.denials.into());
        into.add("failed_closed", k.failed_closed.into());
        into.add("recoveries", k.recoveries.into());
        into.add("unauthorized", k.unauthorized_logouts.into());
        into.add("logouts", k.logouts.into());
        into.add("stale_dropped", k.stale_dropped.into());
        into.add("timeouts", k.transient_of(TransientClass::Timeout).into());
        let d = &self.counts;
        into.add("answered", d.answered);
        into.add("duplicated", d.duplicated);
        into.add("forged", d.forged);
        into.add("lost", d.lost);
        into.add("retry_after", d.retry_after);
        into.add("woke_early", d.woke_early);
        into.add("overslept", d.overslept);
        into.add("woke_at_deadline", d.woke_at_deadline);
        into.add("crowded_steps", d.crowded_steps);
        into.add("backdated", d.backdated);
    }
}

/// A [`GateWorld`] whose capacity `N` and [`Profile`] come from the seed (see
/// [`family_of`]). This is the [`Scenario`] the tests run.
pub enum GateScenario {
    /// `Gate<1>`.
    N1(GateWorld<1>),
    /// `Gate<2>`.
    N2(GateWorld<2>),
    /// `Gate<3>`.
    N3(GateWorld<3>),
    /// `Gate<8>`.
    N8(GateWorld<8>),
}

macro_rules! each {
    ($self:expr, $w:ident => $e:expr) => {
        match $self {
            GateScenario::N1($w) => $e,
            GateScenario::N2($w) => $e,
            GateScenario::N3($w) => $e,
            GateScenario::N8($w) => $e,
        }
    };
}

impl GateScenario {
    /// The world of `seed`, with `tamper` installed (tests of the simulator itself).
    pub fn with_tamper(seed: u64, tamper: Option<Tamper>) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let (n, profile) = match family_of(seed) {
            0 => (1, Profile::Tiny),
            1 => (3, Profile::Small),
            2 => (8, Profile::Default),
            _ => (
                [1, 2, 3, 8][rng.random_range(0..4)],
                [Profile::Tiny, Profile::Small, Profile::Default, Profile::Wide][rng.random_range(0..4)],
            ),
        };
        let mut world = match n {
            1 => GateScenario::N1(GateWorld::new(rng, profile)),
            2 => GateScenario::N2(GateWorld::new(rng, profile)),
            3 => GateScenario::N3(GateWorld::new(rng, profile)),
            _ => GateScenario::N8(GateWorld::new(rng, profile)),
        };
        each!(&mut world, w => w.set_tamper(tamper));
        world
    }
}

impl Scenario for GateScenario {
    const MACHINE: &'static str = "gate";
    const REPLAY: &'static str =
        "cargo test -p accessgate-sim --test random_interleavings replay -- --nocapture";

    fn new(seed: u64) -> Self {
        GateScenario::with_tamper(seed, None)
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
