//! Tests of the simulator itself: it is deterministic per seed, a shorter budget replays a
//! prefix, it exercises the situations that matter, and a wrong gate ("mutant": the real gate
//! with its reported outputs altered) is caught by random search and shrunk to its shortest
//! failing prefix.

use accessgate::{Access, CheckOutcome, Event, TransientClass};
use accessgate_sim::gate::{GateScenario, Observed, Step, Tamper, FAMILIES};
use accessgate_sim::{check_seed, check_seeds, run, Coverage, Invariant, Scenario, Violation};

#[test]
fn same_seed_same_trace_and_shorter_budget_replays_a_prefix() {
    for seed in [0, 1, 2, 3, 4242, u64::MAX] {
        let a = run::<GateScenario>(seed, None, true);
        let b = run::<GateScenario>(seed, None, true);
        assert!(!a.failed(), "seed {seed}: {:?}", a.outcome);
        assert_eq!(a.trace, b.trace, "seed {seed} is not deterministic");
        assert_eq!(a.world, b.world);
        let k = a.steps / 2;
        let prefix = run::<GateScenario>(seed, Some(k), true);
        assert_eq!(prefix.steps, k);
        assert_eq!(
            prefix.trace[..],
            a.trace[..k],
            "seed {seed}: budget {k} is not a prefix"
        );
    }
}

#[test]
fn different_seeds_give_different_worlds() {
    let worlds: std::collections::HashSet<String> = (0..64)
        .map(|s| run::<GateScenario>(s, Some(1), true).world)
        .collect();
    assert!(worlds.len() >= 60, "{} distinct worlds of 64", worlds.len());
}

#[test]
fn every_family_exercises_deadlines_recoveries_and_stale_results() {
    for family in 0..FAMILIES {
        let seeds = (0..2_000u64).map(|i| 1_000_000 + i * FAMILIES + family);
        let summary = check_seeds::<GateScenario>(seeds).unwrap_or_else(|f| panic!("\n{f}"));
        let c: &Coverage = &summary.coverage;
        for key in [
            "grants",
            "denials",
            "failed_closed",
            "recoveries",
            "unauthorized",
            "logouts",
            "stale_dropped",
            "timeouts",
            "duplicated",
            "forged",
            "lost",
            "retry_after",
            "woke_early",
            "overslept",
            "woke_at_deadline",
            "backdated",
        ] {
            assert!(c.get(key) > 0, "family {family} never exercised {key}: {c}");
        }
    }
}

// ---- mutants: the real gate, with one wrong behaviour spliced into what it reports ----

fn remove_access_events(step: &mut Step) {
    step.events.retain(|e| !matches!(e, Event::AccessChanged { .. }));
}

/// A logout that keeps a grant.
fn grant_survives_logout(before: &Observed, step: &mut Step, after: &mut Observed) {
    if matches!(step.input, accessgate_sim::gate::Input::Logout) && before.status.access == Access::Granted {
        after.status.access = Access::Granted;
        remove_access_events(step);
    }
}

/// A captive-portal page (200 with HTML) taken as a denial, like the original PR did.
fn portal_page_denies(_: &Observed, step: &mut Step, after: &mut Observed) {
    let portal = step.events.iter().any(|e| {
        matches!(
            e,
            Event::CheckFailed {
                class: TransientClass::InvalidBody,
                deadline: Some(_),
                ..
            }
        )
    });
    if portal {
        after.status.access = Access::Denied;
    }
}

/// Failing closed is skipped from "checking": the app keeps showing a spinner after the deadline.
fn no_fail_closed_from_unknown(before: &Observed, step: &mut Step, after: &mut Observed) {
    if before.status.access == Access::Unknown
        && after.status.access == Access::Denied
        && after.status.probing
    {
        after.status.access = Access::Unknown;
        remove_access_events(step);
    }
}

/// A stale grant is applied (a quiet step: no timer was due).
fn stale_grant_applied(before: &Observed, step: &mut Step, after: &mut Observed) {
    let stale = step.events.iter().any(|e| matches!(e, Event::StaleResult { .. }));
    let grant = matches!(
        step.input,
        accessgate_sim::gate::Input::CheckResult {
            outcome: CheckOutcome::Granted,
            ..
        }
    );
    if stale && grant && before.poll_timeout.is_none_or(|t| t > step.now) {
        after.status.access = Access::Granted;
    }
}

/// After a transient failure nothing is scheduled.
fn stall_after_failure(_: &Observed, step: &mut Step, after: &mut Observed) {
    if step.events.iter().any(|e| matches!(e, Event::CheckFailed { .. })) {
        after.poll_timeout = None;
    }
}

/// A wrong gate, for one of the mutants above.
struct Mutant<const M: usize>(GateScenario);

const MUTANTS: [(Tamper, Invariant); 5] = [
    (grant_survives_logout, Invariant::I1),
    (portal_page_denies, Invariant::I2),
    (no_fail_closed_from_unknown, Invariant::I3),
    (stale_grant_applied, Invariant::I4),
    (stall_after_failure, Invariant::I5),
];

impl<const M: usize> Scenario for Mutant<M> {
    const MACHINE: &'static str = "mutant gate";
    const REPLAY: &'static str =
        "(a mutant of simulator_self_tests.rs: not replayable from the command line)";
    fn new(seed: u64) -> Self {
        Mutant(GateScenario::with_tamper(seed, Some(MUTANTS[M].0)))
    }
    fn planned_steps(&self) -> usize {
        self.0.planned_steps()
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

#[track_caller]
fn mutant_is_caught_and_shrunk<const M: usize>() {
    let expected = MUTANTS[M].1;
    let failure = (0..2_000u64)
        .find_map(|seed| check_seed::<Mutant<M>>(seed).err())
        .unwrap_or_else(|| panic!("mutant {M} survived 2000 seeds"));
    let v = failure.violation().expect("the shrunk run fails");
    assert_eq!(
        v.invariant, expected,
        "mutant {M} caught as the wrong invariant:\n{failure}"
    );
    // Shrunk: the trace ends at the failing step, and one step fewer passes.
    let step = failure.shrunk.outcome.as_ref().unwrap_err().step;
    assert_eq!(failure.shrunk.steps, step + 1);
    assert!(failure.shrunk.steps <= failure.original_steps);
    assert_eq!(failure.shrunk.trace.len(), failure.shrunk.steps);
    if step > 0 {
        assert!(
            !run::<Mutant<M>>(failure.seed, Some(step), false).failed(),
            "not the shortest prefix"
        );
    }
    let report = failure.to_string();
    assert!(report.contains(&format!("seed {}", failure.seed)), "{report}");
    assert!(report.contains(&format!("SIM_SEED={}", failure.seed)), "{report}");
    println!("mutant {M} ({expected:?}) caught:\n{report}");
}

#[test]
fn mutant_grant_survives_logout_breaks_i1() {
    mutant_is_caught_and_shrunk::<0>();
}

#[test]
fn mutant_captive_portal_denies_breaks_i2() {
    mutant_is_caught_and_shrunk::<1>();
}

#[test]
fn mutant_never_fails_closed_from_checking_breaks_i3() {
    mutant_is_caught_and_shrunk::<2>();
}

#[test]
fn mutant_applies_stale_grant_breaks_i4() {
    mutant_is_caught_and_shrunk::<3>();
}

#[test]
fn mutant_stalls_after_a_failure_breaks_i5() {
    mutant_is_caught_and_shrunk::<4>();
}

/// A scenario whose checker panics at step 7: reported as `Invariant::Panic`, shrunk to 8 steps.
struct PanicsAtSeven(usize);

impl Scenario for PanicsAtSeven {
    const MACHINE: &'static str = "panicking test world";
    const REPLAY: &'static str = "(test world)";
    fn new(_: u64) -> Self {
        PanicsAtSeven(0)
    }
    fn planned_steps(&self) -> usize {
        50
    }
    fn describe(&self) -> String {
        "panics at step 7".into()
    }
    fn step(&mut self, trace: Option<&mut Vec<String>>) -> Result<(), Violation> {
        if let Some(t) = trace {
            t.push(format!("step {}", self.0));
        }
        self.0 += 1;
        assert!(self.0 != 8, "boom at step 7");
        Ok(())
    }
    fn coverage(&self, _: &mut Coverage) {}
}

#[test]
fn a_panic_is_a_failure_and_is_shrunk() {
    let failure = check_seed::<PanicsAtSeven>(1).unwrap_err();
    let v = failure.violation().unwrap();
    assert_eq!(v.invariant, Invariant::Panic);
    assert!(v.message.contains("boom"), "{v}");
    assert_eq!(failure.shrunk.steps, 8);
    assert_eq!(failure.original_steps, 8);
}
