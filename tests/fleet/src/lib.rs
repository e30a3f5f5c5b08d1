//! # accessgate-fleet
//!
//! A deterministic discrete-event simulator of a fleet of devices. Every device runs the
//! **real** [`accessgate::Gate`] with its own seed (or, for comparison, one of the peer
//! policies of `shared/notes/peers.md`), against a modelled backend with a capacity in
//! requests per second and an outage window.
//!
//! ```
//! use accessgate_fleet::{run, PolicyKind, Scenario};
//! use std::time::Duration;
//!
//! let scenario = Scenario::outage(500, 100, Duration::from_secs(30));
//! let report = run(&scenario, &[PolicyKind::Ours, PolicyKind::ShippedFix], 7);
//! let ours = report.row(PolicyKind::Ours).unwrap();
//! assert_eq!(ours.ever_denied, 0); // a 30 s outage is inside the 120 s budget
//! println!("{}", report.to_markdown());
//! ```
//!
//! ## Model
//! - **Devices.** Each holds a token refreshed every `refresh_interval` (hourly) at a uniform
//!   random phase; each refresh triggers one check (R3). In the boot storm every device
//!   signs in within the window; in the outage scenario every device starts signed in and
//!   granted at t = 0 (that pre-history is not counted as load).
//! - **Backend.** Serves up to `capacity` requests per 1 s bucket after `latency`; above it
//!   answers `503` after `reject_latency`, optionally with `Retry-After` handing out the
//!   first second that still has unreserved capacity (and reserving one request there).
//!   During the outage it refuses connections (after `refused_latency`) or black-holes
//!   requests.
//! - **Policies.** [`PolicyKind`]: ours and six peers; see [`policy`] for the modelling
//!   choices where a peer's published behaviour leaves a gap.
//! - **Determinism.** Per-device seeds come from the run seed (SplitMix64); the event queue
//!   ([`queue::TimingWheel`]) pops in `(time, device)` order. The same seed gives the same
//!   report, whatever the number of threads.
//!
//! ## Output
//! [`run`] returns a [`Report`]: a [`Row`] of figures and a [`Series`] (per 1 s: offered
//! load, served, granted, denied) per policy. [`Report::to_markdown`] renders the table,
//! [`Report::series_csv`] the series, [`plot::write_svg`] an SVG.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

mod backend;
pub mod old;
pub mod plot;
pub mod policy;
pub mod queue;
pub mod report;
pub mod scenario;
mod sim;

#[cfg(feature = "cli")]
pub mod args;
#[cfg(feature = "cli")]
pub use args::{FleetArgs, ProgressBars, ScenarioArg};

pub use policy::{Policy, PolicyKind, Response};
pub use report::{fmt_duration, Report, Row, Series};
pub use scenario::{OutageMode, Scenario, ScenarioKind};

/// A progress update, sent from the simulating thread.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Index of the policy in the list given to [`run_with`].
    pub index: usize,
    /// The policy.
    pub policy: PolicyKind,
    /// Simulated time reached.
    pub simulated: Duration,
    /// Simulated time span of the run.
    pub horizon: Duration,
}

/// Options of [`run_with`].
#[derive(Clone, Copy, Default)]
pub struct RunOptions<'a> {
    /// Worker threads (policies run in parallel, one per thread at a time). `0` means the
    /// machine's available parallelism. The report does not depend on it.
    pub threads: usize,
    /// Called now and then from the worker threads; `None` keeps the run quiet.
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

/// Runs `scenario` once per policy with `seed`, policies in parallel on the available
/// cores. Same inputs, same report (wall times aside).
///
/// # Panics
/// If the scenario is invalid ([`Scenario::validate`]).
pub fn run(scenario: &Scenario, policies: &[PolicyKind], seed: u64) -> Report {
    run_with(scenario, policies, seed, RunOptions::default())
}

/// [`run`] with options: thread count and a progress callback.
///
/// # Panics
/// If the scenario is invalid ([`Scenario::validate`]).
pub fn run_with(scenario: &Scenario, policies: &[PolicyKind], seed: u64, options: RunOptions<'_>) -> Report {
    if let Err(e) = scenario.validate() {
        panic!("invalid scenario: {e}");
    }
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .clamp(1, policies.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<(Row, Series, Duration)>>> = Mutex::new(vec![None; policies.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&kind) = policies.get(i) else { break };
                let started = std::time::Instant::now();
                let mut tick = |t: u64, h: u64| {
                    if let Some(cb) = options.progress {
                        cb(Progress {
                            index: i,
                            policy: kind,
                            simulated: Duration::from_micros(t),
                            horizon: Duration::from_micros(h),
                        });
                    }
                };
                let (row, series) = run_one(scenario, seed, kind, &mut tick);
                let wall = started.elapsed();
                results.lock().expect("no worker panicked")[i] = Some((row, series, wall));
            });
        }
    });
    let mut report = Report {
        scenario: scenario.clone(),
        seed,
        rows: Vec::with_capacity(policies.len()),
        series: Vec::with_capacity(policies.len()),
        wall: Vec::with_capacity(policies.len()),
    };
    for r in results.into_inner().expect("no worker panicked") {
        let (row, series, wall) = r.expect("every policy ran");
        report.rows.push(row);
        report.series.push(series);
        report.wall.push(wall);
    }
    report
}

fn run_one(sc: &Scenario, seed: u64, kind: PolicyKind, tick: sim::Tick<'_>) -> (Row, Series) {
    use policy::*;
    use sim::simulate;
    match kind {
        PolicyKind::Ours => simulate(sc, seed, kind, |s| Ours::<8>::new(sc.gate, s), tick),
        PolicyKind::PrFinal => simulate(sc, seed, kind, OriginalPr::final_schedule, tick),
        PolicyKind::PrPrime => simulate(sc, seed, kind, OriginalPr::prime_schedule, tick),
        PolicyKind::ShippedFix => simulate(sc, seed, kind, ShippedFix::new, tick),
        PolicyKind::Aws => simulate(sc, seed, kind, Aws::new, tick),
        PolicyKind::Grpc => simulate(sc, seed, kind, Grpc::new, tick),
        PolicyKind::LaunchDarkly => simulate(sc, seed, kind, LaunchDarkly::new, tick),
        PolicyKind::Ours16 => simulate(sc, seed, kind, |s| Ours::<16>::new(sc.gate, s), tick),
        PolicyKind::OursOld => simulate(sc, seed, kind, OursOld::new, tick),
    }
}

/// Parses a duration flag: the one parser of every accessgate command line (humantime
/// syntax, `300s`, `5m`, `1m30s`, `250ms`; a bare number is refused), from `accessgate-args`.
///
/// ```
/// use accessgate_fleet::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("90").is_err());
/// ```
pub use accessgate_args::parse_duration;

/// The README's Rust example, compiled as a doc-test so it cannot rot (`no_run`: it simulates
/// 100,000 devices).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
