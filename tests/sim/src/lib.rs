//! # accessgate-sim
//!
//! A seeded, deterministic simulator for the accessgate core (issue: "proven by a deterministic
//! simulator"; issue 3: "Extend the deterministic simulator with sessions"). It drives the
//! **real** [`accessgate::Gate`] and [`accessgate::Session`] through random interleavings of
//! inputs chosen by one `u64` seed, and after **every** step asks an independent reference
//! model whether what the machine did was allowed (invariants I1–I5 for the gate, I6–I10 for
//! the session, see [`Invariant`]).
//!
//! Everything that could make a run non-deterministic sits behind the seed: virtual time (a
//! plain [`accessgate::Instant`] the driver advances), the "network" (which checks are
//! answered, how, when, in which order, or never), the configuration and the gate's own jitter
//! seed. So a seed is a complete reproduction: [`run`] with the same seed replays the same
//! trace, and a failure is reported with its seed and its shortest failing prefix
//! ([`check_seed`], [`shrink`]).
//!
//! ## Layout
//! - [`Scenario`]: what the runner needs from a simulated world (one machine, one driver, one
//!   checker). The runner ([`run`], [`shrink`], [`check_seed`], [`check_seeds`]) is generic
//!   over it; each machine is a module implementing [`Scenario`].
//! - [`gate`]: the gate machine: [`gate::Checker`] (the reference model and invariant
//!   checker, usable on hand-made traces), [`gate::GateWorld`] (driver for one `Gate<N>`) and
//!   [`gate::GateScenario`] (picks `N` and the configuration from the seed).
//! - [`session`]: the session machine: [`session::Checker`] (model and checker of I6–I10, usable
//!   on hand-made traces), [`session::SessionMachine`] (the session's API as a trait, so tests
//!   can wrap the real session in a wrong one), [`session::SessionWorld`] (driver) and
//!   [`session::SessionScenario`] (picks `Session<N, W, T>` and the configuration from the
//!   seed).
//! - [`Invariant`] / [`Violation`]: what a checker reports.
//!
//! ## Running
//! ```text
//! cargo test -p accessgate-sim                                   # >= 200,000 scenarios of each
//! SIM_SCENARIOS=10000000 cargo test -p accessgate-sim --release -- --nocapture
//! SIM_SEED=12345 cargo test -p accessgate-sim --test random_interleavings replay -- --nocapture
//! SIM_SEED=12345 cargo test -p accessgate-sim --test session_interleavings replay -- --nocapture
//! ```
//! See `tests/sim/README.md` for the details.
//!
//! ## Using the runner from a test
//! ```
//! use accessgate_sim::{check_seeds, gate::GateScenario};
//! let summary = check_seeds::<GateScenario>(0..20).unwrap_or_else(|f| panic!("{f}"));
//! assert_eq!(summary.scenarios, 20);
//! use accessgate_sim::session::SessionScenario;
//! let summary = check_seeds::<SessionScenario>(0..20).unwrap_or_else(|f| panic!("{f}"));
//! assert_eq!(summary.scenarios, 20);
//! ```

mod invariant;
mod runner;
mod sleep;
mod timefmt;

pub mod gate;
pub mod session;

pub use invariant::{Invariant, Violation};
pub use runner::{
    check_seed, check_seeds, env_u64, replay_printed, replay_seed, run, run_family, scenario_count,
    seed_base, shrink, Coverage, Failure, Run, Scenario, StepFailure, Summary,
};
pub use timefmt::{At, Span};
