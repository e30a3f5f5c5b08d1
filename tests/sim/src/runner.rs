//! The machine-independent runner: run a seed, replay it with a trace, shrink a failure to
//! its shortest failing prefix, run many seeds and count what they exercised.

use crate::invariant::{Invariant, Violation};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A simulated world for one machine: the machine itself, a seeded driver that picks its
/// inputs, and a checker that owns a reference model. Everything is a function of the seed.
///
/// Implement this once per machine (the gate now, the session layer later); the runner does
/// the rest.
pub trait Scenario: Sized {
    /// Short name of the machine under test, for reports.
    const MACHINE: &'static str;

    /// The command that replays one seed of this scenario with `SIM_SEED=<seed>` in front.
    const REPLAY: &'static str;

    /// The world for `seed`. Must be deterministic: the same seed gives the same world.
    fn new(seed: u64) -> Self;

    /// How many steps this seed runs (bounded, so a livelock shows up as a failure).
    fn planned_steps(&self) -> usize;

    /// One line describing the world (capacity, configuration), printed above a trace.
    fn describe(&self) -> String;

    /// Performs one step: choose an input, apply it, drain the outputs, check every invariant.
    /// When `trace` is given, appends one line (now, input, resulting status, events) *before*
    /// checking, so the failing step is part of the trace.
    ///
    /// The inputs chosen must not depend on the step budget, so that a run with a shorter
    /// budget is a prefix of a longer one (this is what makes [`shrink`] exact).
    fn step(&mut self, trace: Option<&mut Vec<String>>) -> Result<(), Violation>;

    /// Adds counts of what this run exercised (fail-closed events, stale results, ...).
    fn coverage(&self, into: &mut Coverage);
}

/// Named counters of what a set of runs exercised, so a test can assert that the interesting
/// situations (deadlines, recoveries, stale results, ...) actually happen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    entries: Vec<(&'static str, u64)>,
}

impl Coverage {
    /// Adds `n` to the counter `name`.
    pub fn add(&mut self, name: &'static str, n: u64) {
        match self.entries.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = v.saturating_add(n),
            None => self.entries.push((name, n)),
        }
    }
    /// The counter `name` (0 if never added).
    pub fn get(&self, name: &str) -> u64 {
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }
    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Coverage) {
        for &(k, v) in &other.entries {
            self.add(k, v);
        }
    }
    /// Every counter, in first-added order.
    pub fn entries(&self) -> &[(&'static str, u64)] {
        &self.entries
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// The step at which a run failed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFailure {
    /// Index of the failing step (from 0).
    pub step: usize,
    /// What broke.
    pub violation: Violation,
}

/// The result of running one seed.
#[derive(Clone, Debug)]
pub struct Run {
    /// The seed.
    pub seed: u64,
    /// Steps performed (including a failing one).
    pub steps: usize,
    /// Steps the seed plans (see [`Scenario::planned_steps`]).
    pub planned: usize,
    /// `Err` at the first violation.
    pub outcome: Result<(), StepFailure>,
    /// One line per step, when tracing was asked for.
    pub trace: Vec<String>,
    /// The world's description (see [`Scenario::describe`]).
    pub world: String,
    /// What the run exercised.
    pub coverage: Coverage,
}

impl Run {
    /// Whether an invariant broke.
    pub fn failed(&self) -> bool {
        self.outcome.is_err()
    }
}

/// Runs `seed` for its planned number of steps, or at most `budget` steps. With `trace`, every
/// step's line is kept. A panic in the machine or the checker is reported as
/// [`Invariant::Panic`] at the step where it happened.
pub fn run<S: Scenario>(seed: u64, budget: Option<usize>, trace: bool) -> Run {
    let mut lines = Vec::new();
    let mut done = 0usize;
    let mut planned = 0usize;
    let mut world_line = String::new();
    let mut coverage = Coverage::default();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut world = S::new(seed);
        if trace {
            world_line = world.describe();
        }
        planned = world.planned_steps();
        let steps = budget.map_or(planned, |b| b.min(planned));
        let mut outcome = Ok(());
        while done < steps {
            let r = world.step(if trace { Some(&mut lines) } else { None });
            done += 1;
            if let Err(violation) = r {
                outcome = Err(StepFailure {
                    step: done - 1,
                    violation,
                });
                break;
            }
        }
        world.coverage(&mut coverage);
        outcome
    }));
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            // The step that panicked had not finished; count it.
            done += 1;
            Err(StepFailure {
                step: done - 1,
                violation: Violation::new(Invariant::Panic, msg),
            })
        }
    };
    Run {
        seed,
        steps: done,
        planned,
        outcome,
        trace: lines,
        world: world_line,
        coverage,
    }
}

/// Finds the smallest step budget with which `seed` still fails, by bisection between 1 and
/// `failing_budget` (a budget known to fail), and returns that run with its trace.
///
/// The simulation is deterministic per seed and a shorter budget replays a prefix, so the
/// answer is the failing step's index + 1; bisection checks it rather than assuming it.
pub fn shrink<S: Scenario>(seed: u64, failing_budget: usize) -> Run {
    let (mut lo, mut hi) = (1usize, failing_budget.max(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if run::<S>(seed, Some(mid), false).failed() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    run::<S>(seed, Some(hi), true)
}

/// A failed seed, shrunk, ready to print: the seed, the violation, how to replay it, and the
/// shortest failing trace (one line per step: now, input, resulting status, events).
#[derive(Clone, Debug)]
pub struct Failure {
    /// Name of the machine under test.
    pub machine: &'static str,
    /// How to replay it (see [`Scenario::REPLAY`]).
    pub replay: &'static str,
    /// The seed that reproduces it.
    pub seed: u64,
    /// Steps of the original failing run.
    pub original_steps: usize,
    /// The shortest failing prefix, traced.
    pub shrunk: Run,
}

impl Failure {
    /// The violation found by the shortest failing run.
    pub fn violation(&self) -> Option<&Violation> {
        self.shrunk.outcome.as_ref().err().map(|f| &f.violation)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accessgate-sim: {} invariant broken, seed {}",
            self.machine, self.seed
        )?;
        match &self.shrunk.outcome {
            Err(e) => writeln!(f, "  at step {}: {}", e.step, e.violation)?,
            Ok(()) => writeln!(f, "  (the shrunk replay did not fail: non-determinism?)")?,
        }
        writeln!(
            f,
            "  shortest failing prefix (bisected): {} steps (first failing run: {} steps; the seed plans {})",
            self.shrunk.steps, self.original_steps, self.shrunk.planned
        )?;
        writeln!(f, "  replay: SIM_SEED={} {}", self.seed, self.replay)?;
        writeln!(f, "  world: {}", self.shrunk.world)?;
        for line in &self.shrunk.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs `seed`; on a violation, shrinks it and returns the printable [`Failure`].
pub fn check_seed<S: Scenario>(seed: u64) -> Result<Run, Box<Failure>> {
    let r = run::<S>(seed, None, false);
    if !r.failed() {
        return Ok(r);
    }
    let shrunk = shrink::<S>(seed, r.steps);
    Err(Box::new(Failure {
        machine: S::MACHINE,
        replay: S::REPLAY,
        seed,
        original_steps: r.steps,
        shrunk,
    }))
}

/// What a batch of seeds did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Scenarios (seeds) run.
    pub scenarios: u64,
    /// Steps run, over all scenarios.
    pub steps: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// What they exercised, summed.
    pub coverage: Coverage,
}

impl Summary {
    /// Scenarios per second of wall time.
    pub fn rate(&self) -> f64 {
        self.scenarios as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} scenarios, {} steps in {:.2?} ({:.0} scenarios/s, {:.0} steps/s)\n  coverage: {}",
            self.scenarios,
            self.steps,
            self.elapsed,
            self.rate(),
            self.steps as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.coverage
        )
    }
}

/// Runs every seed; stops at the first failure, shrunk.
pub fn check_seeds<S: Scenario>(seeds: impl IntoIterator<Item = u64>) -> Result<Summary, Box<Failure>> {
    let start = Instant::now();
    let mut summary = Summary::default();
    for seed in seeds {
        let r = check_seed::<S>(seed)?;
        summary.scenarios += 1;
        summary.steps += r.steps as u64;
        summary.coverage.merge(&r.coverage);
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// An unsigned integer from the environment: decimal (underscores allowed) or `0x` hex.
/// `None` when unset; panics with a clear message when set but unreadable.
pub fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let s: String = raw.trim().chars().filter(|&c| c != '_').collect();
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match parsed {
        Ok(v) => Some(v),
        Err(e) => panic!("{name}={raw:?} is not an unsigned integer: {e}"),
    }
}

/// Scenario count for a test run: `SIM_SCENARIOS`, or `default`.
pub fn scenario_count(default: u64) -> u64 {
    env_u64("SIM_SCENARIOS").unwrap_or(default)
}

/// First seed of a test run: `SIM_BASE`, or 0 (explore other seeds without changing code).
pub fn seed_base() -> u64 {
    env_u64("SIM_BASE").unwrap_or(0)
}

/// The seed to replay with a printed trace: `SIM_SEED`, if set.
pub fn replay_seed() -> Option<u64> {
    env_u64("SIM_SEED")
}

/// Runs seed family `family`'s share of `scenario_count(default)` scenarios: the seeds from
/// `seed_base()` (aligned down to a multiple of `families`) that are `family` modulo
/// `families`. Prints the summary after `label`; panics with the shrunk failure. One
/// `#[test]` per family lets the test harness run the families in parallel.
pub fn run_family<S: Scenario>(label: &str, family: u64, families: u64, default: u64) {
    let per_family = scenario_count(default).div_ceil(families);
    let base = seed_base();
    // Base-aligned, so every family gets `per_family` seeds.
    let first = base - base % families + family;
    let seeds = (0..per_family).map(|i| first + i * families);
    match check_seeds::<S>(seeds) {
        Ok(summary) => {
            println!("{label} {family}: {summary}");
            assert_eq!(summary.scenarios, per_family);
        }
        Err(failure) => panic!("\n{failure}"),
    }
}

/// Prints the full trace of `SIM_SEED` (seed 0 without it, to keep the trace printer
/// exercised), headed by its family (`seed % families`) and world; panics with the shortest
/// failing prefix if the seed fails.
pub fn replay_printed<S: Scenario>(families: u64) {
    let seed = replay_seed().unwrap_or(0);
    let r = run::<S>(seed, None, true);
    println!("seed {seed} (family {}): {}", seed % families, r.world);
    for line in &r.trace {
        println!("  {line}");
    }
    match &r.outcome {
        Ok(()) => println!("seed {seed}: {} steps, every invariant held", r.steps),
        Err(e) => {
            let failure = check_seed::<S>(seed).expect_err("deterministic");
            panic!("seed {seed} fails at step {}: {}\n{failure}", e.step, e.violation);
        }
    }
    assert_eq!(r.trace.len(), r.steps);
    assert_eq!(r.steps, S::new(seed).planned_steps());
}
