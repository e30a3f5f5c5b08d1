//! The session simulator: the real `Session` under random interleavings, I6–I10 (and the
//! session-level forms of I1, I3, I5) checked after every step.
//!
//! `cargo test -p accessgate-sim` runs `DEFAULT_SCENARIOS` session seeds, split over one
//! `#[test]` per seed family so the harness runs them in parallel. `SIM_SCENARIOS=n` changes
//! the total, `SIM_BASE=b` starts at another seed, `SIM_SEED=s` makes `replay` print the trace
//! of one seed, and `SIM_STRICT=1` tolerates no known core finding (see README.md).

use accessgate_sim::replay_printed;
use accessgate_sim::session::{SessionScenario, FAMILIES};

/// Session scenarios of a default `cargo test` run, over all families.
const DEFAULT_SCENARIOS: u64 = 200_000;

/// Runs this family's share of the scenarios; panics with the shrunk failure.
fn run_family(family: u64) {
    accessgate_sim::run_family::<SessionScenario>("session family", family, FAMILIES, DEFAULT_SCENARIOS);
}

#[test]
fn session_family_0_small_capacities_microseconds() {
    run_family(0);
}

#[test]
fn session_family_1_small_capacities_seconds() {
    run_family(1);
}

#[test]
fn session_family_2_default_capacities_default_config() {
    run_family(2);
}

#[test]
fn session_family_3_mixed_capacities_and_configs() {
    run_family(3);
}

/// `SIM_SEED=<n>` prints the full trace of session seed `n` (and its shortest failing prefix
/// if it fails). Without `SIM_SEED` it replays seed 0, to keep the trace printer exercised.
#[test]
fn replay() {
    replay_printed::<SessionScenario>(FAMILIES);
}
