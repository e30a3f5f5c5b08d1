//! The simulator proper: the real `Gate` under random interleavings, every invariant checked
//! after every step.
//!
//! `cargo test -p accessgate-sim` runs `DEFAULT_SCENARIOS` seeds, split over one `#[test]`
//! per seed family so the harness runs them in parallel. `SIM_SCENARIOS=n` changes the total,
//! `SIM_BASE=b` starts at another seed, and `SIM_SEED=s` makes `replay` print the trace of one
//! seed (see README.md).

use accessgate_sim::gate::{GateScenario, FAMILIES};
use accessgate_sim::replay_printed;

/// Scenarios of a default `cargo test` run, over all families.
const DEFAULT_SCENARIOS: u64 = 200_000;

/// Runs this family's share of the scenarios; panics with the shrunk failure.
fn run_family(family: u64) {
    accessgate_sim::run_family::<GateScenario>("family", family, FAMILIES, DEFAULT_SCENARIOS);
}

#[test]
fn family_0_gate1_microsecond_config() {
    run_family(0);
}

#[test]
fn family_1_gate3_small_config() {
    run_family(1);
}

#[test]
fn family_2_gate8_default_config() {
    run_family(2);
}

#[test]
fn family_3_mixed_capacities_and_configs() {
    run_family(3);
}

/// `SIM_SEED=<n>` prints the full trace of seed `n` (and its shortest failing prefix if it
/// fails). Without `SIM_SEED` it replays seed 0, to keep the trace printer exercised.
#[test]
fn replay() {
    replay_printed::<GateScenario>(FAMILIES);
}
