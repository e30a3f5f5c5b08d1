//! The simulator proper: the real `Gate` under random interleavings, every invariant checked
//! after every step.
//!
//! `cargo test -p accessgate-sim` runs `DEFAULT_SCENARIOS` seeds, split over one `#[test]`
//! per seed family so the harness runs them in parallel. `SIM_SCENARIOS=n` changes the total,
//! `SIM_BASE=b` starts at another seed, and `SIM_SEED=s` makes `replay` print the trace of one
//! seed (see README.md).

use accessgate_sim::gate::{family_of, GateScenario, FAMILIES};
use accessgate_sim::{check_seeds, replay_seed, run, scenario_count, seed_base, Scenario};

/// Scenarios of a default `cargo test` run, over all families.
const DEFAULT_SCENARIOS: u64 = 200_000;

/// Runs this family's share of the scenarios; panics with the shrunk failure.
fn run_family(family: u64) {
    let total = scenario_count(DEFAULT_SCENARIOS);
    let per_family = total.div_ceil(FAMILIES);
    let base = seed_base();
    // The seeds of one family: base-aligned so every family gets `per_family` seeds.
    let first = base - base % FAMILIES + family;
    let seeds = (0..per_family).map(|i| first + i * FAMILIES);
    match check_seeds::<GateScenario>(seeds) {
        Ok(summary) => {
            println!("family {family}: {summary}");
            assert_eq!(summary.scenarios, per_family);
        }
        Err(failure) => panic!("\n{failure}"),
    }
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
    let seed = replay_seed().unwrap_or(0);
    let r = run::<GateScenario>(seed, None, true);
    println!("seed {seed} (family {}): {}", family_of(seed), r.world);
    for line in &r.trace {
        println!("  {line}");
    }
    match &r.outcome {
        Ok(()) => println!("seed {seed}: {} steps, every invariant held", r.steps),
        Err(e) => {
            let failure = accessgate_sim::check_seed::<GateScenario>(seed).expect_err("deterministic");
            panic!("seed {seed} fails at step {}: {}\n{failure}", e.step, e.violation);
        }
    }
    assert_eq!(r.trace.len(), r.steps);
    assert_eq!(r.steps, GateScenario::new(seed).planned_steps());
}
