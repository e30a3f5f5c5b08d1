//! The session simulator: the real `Session` under random interleavings, I6–I10 (and the
//! session-level forms of I1, I3, I5) checked after every step.
//!
//! `cargo test -p accessgate-sim` runs `DEFAULT_SCENARIOS` session seeds, split over one
//! `#[test]` per seed family so the harness runs them in parallel. `SIM_SCENARIOS=n` changes
//! the total, `SIM_BASE=b` starts at another seed, `SIM_SEED=s` makes `replay` print the trace
//! of one seed, and `SIM_STRICT=1` tolerates no known core finding (see README.md).

use accessgate_sim::session::{family_of, SessionScenario, FAMILIES};
use accessgate_sim::{check_seeds, replay_seed, run, scenario_count, seed_base, Scenario};

/// Session scenarios of a default `cargo test` run, over all families.
const DEFAULT_SCENARIOS: u64 = 200_000;

/// Runs this family's share of the scenarios; panics with the shrunk failure.
fn run_family(family: u64) {
    let total = scenario_count(DEFAULT_SCENARIOS);
    let per_family = total.div_ceil(FAMILIES);
    let base = seed_base();
    let first = base - base % FAMILIES + family;
    let seeds = (0..per_family).map(|i| first + i * FAMILIES);
    match check_seeds::<SessionScenario>(seeds) {
        Ok(summary) => {
            println!("session family {family}: {summary}");
            assert_eq!(summary.scenarios, per_family);
        }
        Err(failure) => panic!("\n{failure}"),
    }
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
    let seed = replay_seed().unwrap_or(0);
    let r = run::<SessionScenario>(seed, None, true);
    println!("seed {seed} (family {}): {}", family_of(seed), r.world);
    for line in &r.trace {
        println!("  {line}");
    }
    match &r.outcome {
        Ok(()) => println!("seed {seed}: {} steps, every invariant held", r.steps),
        Err(e) => {
            let failure = accessgate_sim::check_seed::<SessionScenario>(seed).expect_err("deterministic");
            panic!("seed {seed} fails at step {}: {}\n{failure}", e.step, e.violation);
        }
    }
    assert_eq!(r.trace.len(), r.steps);
    assert_eq!(r.steps, SessionScenario::new(seed).planned_steps());
}
