//! Tests of the gate through its public API, one or more per rule, named after the behaviour they pin.

use accessgate::*;

const T0: Instant = Instant::from_secs(1_000);
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}
const GRANT: CheckOutcome = CheckOutcome::Granted;
const DENY: CheckOutcome = CheckOutcome::Denied;
const FAIL: CheckOutcome = CheckOutcome::transient(TransientClass::ServerError);
fn retry_after(s: u64) -> CheckOutcome {
    CheckOutcome::Transient {
        class: TransientClass::Throttled,
        retry_after: Some(secs(s)),
        detail: FailureDetail::Status(429),
    }
}

fn gate() -> Gate<8> {
    Gate::new(GateConfig::DEFAULT, 42).unwrap()
}

fn events(g: &mut Gate<8>) -> Vec<Event> {
    core::iter::from_fn(|| g.poll_event()).collect()
}

#[track_caller]
fn take_check(g: &mut Gate<8>) -> CheckRequest {
    g.poll_check().expect("a check should have been started")
}

#[track_caller]
fn answer(g: &mut Gate<8>, now: Instant, req: CheckRequest, o: CheckOutcome) {
    g.handle_check_result(now, req.generation, req.attempt, o)
        .unwrap();
    events(g);
}

/// Signed in and granted at T0.
fn granted() -> Gate<8> {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, GRANT);
    assert_eq!(g.access(), Access::Granted);
    g
}

/// Drives the gate to its next timer; answers any started check with `o` at once.
fn step(g: &mut Gate<8>, o: CheckOutcome) -> Instant {
    let at = g.poll_timeout().expect("something is owed");
    g.handle_timeout(at).unwrap();
    if let Some(r) = g.poll_check() {
        g.handle_check_result(at, r.generation, r.attempt, o).unwrap();
    }
    events(g);
    at
}

// ---- R3 ----

#[test]
fn session_start_checks_at_once_and_a_grant_resolves_it() {
    let mut g = gate();
    assert_eq!(g.access(), Access::Unknown);
    let gen = g.start_session(T0, TokenHandle(7)).unwrap();
    let r = take_check(&mut g);
    assert_eq!(
        (r.generation, r.attempt, r.token, r.started),
        (gen, 0, TokenHandle(7), T0)
    );
    assert_eq!(r.timeout, secs(10));
    assert_eq!(g.poll_timeout(), Some(T0 + secs(10)));
    g.handle_check_result(T0 + ms(30), gen, 0, GRANT).unwrap();
    assert_eq!(
        events(&mut g),
        [
            Event::CheckStarted {
                generation: gen,
                attempt: 0
            },
            Event::AccessChanged {
                from: Access::Unknown,
                to: Access::Granted,
                cause: Cause::ServerGranted
            }
        ]
    );
    assert_eq!(g.poll_timeout(), None, "nothing owed after a definitive answer");
    assert!(!g.check_owed());
}

#[test]
fn token_refresh_rechecks_at_once_and_keeps_the_grant_meanwhile() {
    let mut g = granted();
    let gen = g.token_refreshed(T0 + secs(3600), TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    assert_eq!((r.generation, r.attempt, r.token), (gen, 0, TokenHandle(2)));
    assert_eq!(g.access(), Access::Granted);
}

#[test]
fn token_refresh_needs_a_session() {
    let mut g = gate();
    assert_eq!(
        g.token_refreshed(T0, TokenHandle(1)),
        Err(InputError::NotSignedIn)
    );
}

// ---- R2 ----

#[test]
fn definitive_denial_on_a_retry_denies_at_once_and_stops_retrying() {
    let mut g = granted();
    g.token_refreshed(T0 + secs(10), TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(10), r, FAIL);
    assert_eq!(g.access(), Access::Granted);
    let at = step(&mut g, DENY);
    assert!(at < T0 + secs(10) + secs(120));
    assert_eq!(g.status().access, Access::Denied);
    assert_eq!(g.status().cause, Some(Cause::ServerDenied));
    assert_eq!(g.poll_timeout(), None);
    assert!(g.status().reverifying_until.is_none());
}

// ---- R4 / R5 ----

#[test]
fn transient_failure_keeps_grant_until_deadline_then_fails_closed_to_the_tick() {
    let mut g = granted();
    let t1 = T0 + secs(60);
    g.token_refreshed(t1, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, t1 + ms(5), r, FAIL);
    let deadline = t1 + ms(5) + secs(120);
    assert_eq!(g.status().reverifying_until, Some(deadline));
    loop {
        let at = g.poll_timeout().unwrap();
        g.handle_timeout(at).unwrap();
        if at < deadline {
            assert_eq!(
                g.access(),
                Access::Granted,
                "a transient failure changed access early at {at:?}"
            );
        } else {
            assert_eq!(at, deadline, "fail-closed must fire exactly at the deadline");
            assert_eq!(g.access(), Access::Denied);
            assert_eq!(g.status().cause, Some(Cause::FailedClosed));
            break;
        }
        if let Some(r) = g.poll_check() {
            // Every attempt starts early enough to finish before the deadline (R6).
            assert!(
                r.started + r.timeout <= deadline,
                "attempt {} too late",
                r.attempt
            );
            g.handle_check_result(at, r.generation, r.attempt, FAIL).unwrap();
        }
        events(&mut g);
    }
    assert_eq!(g.counters().failed_closed, 1);
    assert!(g.status().probing);
}

#[test]
fn unknown_becomes_denied_at_the_deadline_when_nothing_answers() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1)).unwrap();
    take_check(&mut g);
    // Nothing ever answers: every attempt times out.
    let mut last = T0;
    while g.access() == Access::Unknown {
        last = g.poll_timeout().unwrap();
        g.handle_timeout(last).unwrap();
        g.poll_check();
        events(&mut g);
    }
    // First failure is the timeout of attempt 0 at T0 + 10 s.
    assert_eq!(last, T0 + secs(10) + secs(120));
    assert_eq!(g.status().cause, Some(Cause::FailedClosed));
}

#[test]
fn a_refresh_does_not_move_the_deadline() {
    let mut g = granted();
    g.token_refreshed(T0 + secs(1), TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(1), r, FAIL);
    let deadline = g.deadline().unwrap();
    g.token_refreshed(T0 + secs(100), TokenHandle(3)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(100), r, FAIL);
    assert_eq!(g.deadline(), Some(deadline));
    g.handle_timeout(deadline).unwrap();
    assert_eq!(g.access(), Access::Denied);
}

#[test]
fn a_result_arriving_after_the_deadline_sees_the_gate_failed_closed_first() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, FAIL);
    let deadline = g.deadline().unwrap();
    // The driver oversleeps: the next attempt starts late, its grant arrives after the deadline.
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at).unwrap();
    let r = take_check(&mut g);
    events(&mut g);
    g.handle_check_result(deadline + secs(1), r.generation, r.attempt, GRANT)
        .unwrap_or(());
    let ev = events(&mut g);
    assert!(ev.contains(&Event::AccessChanged {
        from: Access::Granted,
        to: Access::Denied,
        cause: Cause::FailedClosed
    }));
}

#[test]
fn setting_the_clock_back_buys_nothing() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(50), r, FAIL);
    let deadline = g.deadline().unwrap();
    g.handle_timeout(deadline).unwrap();
    assert_eq!(g.access(), Access::Denied);
    // An input with an earlier `now` is treated as happening at the latest time seen.
    g.handle_timeout(T0).unwrap();
    assert_eq!(g.access(), Access::Denied);
    assert_eq!(g.deadline(), None);
}

// ---- R6 ----

#[test]
fn retries_are_jittered_within_the_backoff_and_at_most_n() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, FAIL);
    let deadline = g.deadline().unwrap();
    let mut starts = vec![];
    let mut prev = T0;
    while g.deadline().is_some() {
        let at = g.poll_timeout().unwrap();
        g.handle_timeout(at).unwrap();
        if let Some(r) = g.poll_check() {
            let k = starts.len() as u32;
            let latest = deadline.saturating_sub(secs(10));
            if k < 7 {
                assert!(
                    r.started - prev <= GateConfig::DEFAULT.retry.ceiling(k),
                    "retry {k}"
                );
            } else {
                // The last planned retry watches the end of the budget.
                assert!(r.started >= latest.saturating_sub(secs(20)) && r.started <= latest);
            }
            starts.push(r.started);
            g.handle_check_result(at, r.generation, r.attempt, FAIL).unwrap();
            prev = at;
        }
        events(&mut g);
    }
    assert!(starts.len() <= 8, "{} retries", starts.len());
    assert!(
        starts.len() >= 5,
        "{} retries: the schedule should be used",
        starts.len()
    );
    assert!(starts.iter().all(|&s| s + secs(10) <= deadline));
}

#[test]
fn devices_that_fail_together_retry_at_different_times() {
    let firsts: Vec<Instant> = (0..20u64)
        .map(|seed| {
            let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, seed).unwrap();
            g.start_session(T0, TokenHandle(1)).unwrap();
            let r = g.poll_check().unwrap();
            g.handle_check_result(T0, r.generation, 0, FAIL).unwrap();
            g.status().next_attempt.unwrap()
        })
        .collect();
    let mut uniq = firsts.clone();
    uniq.sort();
    uniq.dedup();
    assert!(uniq.len() >= 19, "{firsts:?}");
}

#[test]
fn retry_after_replaces_the_jittered_delay_and_is_floored_and_capped() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, retry_after(7));
    assert_eq!(g.status().next_attempt, Some(T0 + secs(7)));
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, at, r, retry_after(0));
    assert_eq!(g.status().next_attempt, Some(at + secs(1)), "floored at 1 s");
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, at, r, retry_after(100_000));
    assert_eq!(
        g.status().next_attempt,
        Some(at + secs(600)),
        "capped at the probe cap"
    );
}

#[test]
fn a_retry_after_slot_past_the_deadline_keeps_the_deadline_and_is_still_used() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, retry_after(300));
    let deadline = g.deadline().unwrap();
    assert_eq!(deadline, T0 + secs(120));
    assert_eq!(g.poll_timeout(), Some(deadline));
    g.handle_timeout(deadline).unwrap();
    assert_eq!(g.access(), Access::Denied);
    assert_eq!(g.poll_timeout(), Some(T0 + secs(300)));
    g.handle_timeout(T0 + secs(300)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(301), r, GRANT);
    assert_eq!(g.status().cause, Some(Cause::Recovered));
}

// ---- R7 ----

#[test]
fn after_failing_closed_probes_back_off_and_a_grant_recovers() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, FAIL);
    while g.access() == Access::Granted {
        step(&mut g, FAIL);
    }
    let mut gaps = vec![];
    let mut prev = g.poll_timeout().unwrap();
    for _ in 0..8 {
        let at = step(&mut g, FAIL);
        gaps.push(at - prev);
        prev = at;
    }
    for (k, gap) in gaps.iter().enumerate().skip(1) {
        assert!(
            *gap <= GateConfig::DEFAULT.probe.ceiling(k as u32),
            "probe gap {k}: {gap:?}"
        );
    }
    assert!(gaps.iter().all(|g| *g <= secs(600)));
    assert_eq!(g.access(), Access::Denied);
    step(&mut g, GRANT);
    assert_eq!(g.access(), Access::Granted);
    assert_eq!(g.status().cause, Some(Cause::Recovered));
    assert_eq!(g.counters().recoveries, 1);
    assert_eq!(g.poll_timeout(), None);
}

// ---- R8 ----

#[test]
fn unauthorized_logs_out_without_retry() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    g.handle_check_result(T0, r.generation, r.attempt, CheckOutcome::Unauthorized)
        .unwrap();
    let ev = events(&mut g);
    assert!(ev.contains(&Event::SessionEnded {
        cause: Cause::Unauthorized
    }));
    let s = g.status();
    assert_eq!(
        (s.access, s.signed_in, s.cause),
        (Access::Unknown, false, Some(Cause::Unauthorized))
    );
    assert_eq!(g.poll_timeout(), None);
    assert_eq!(g.poll_check(), None);
    assert_eq!(g.counters().unauthorized_logouts, 1);
}

// ---- R10 ----

#[test]
fn results_of_an_older_generation_change_nothing() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let old = take_check(&mut g);
    g.token_refreshed(T0 + secs(1), TokenHandle(3)).unwrap();
    let new = take_check(&mut g);
    let before = g.status();
    g.handle_check_result(T0 + secs(2), old.generation, old.attempt, DENY)
        .unwrap();
    assert_eq!(g.status(), before);
    assert_eq!(g.counters().stale_dropped, 1);
    answer(&mut g, T0 + secs(2), new, GRANT);
    assert_eq!(g.access(), Access::Granted);
}

#[test]
fn nothing_from_a_logged_out_session_can_grant() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1)).unwrap();
    let r = take_check(&mut g);
    g.logout(T0 + secs(1)).unwrap();
    g.handle_check_result(T0 + secs(2), r.generation, r.attempt, GRANT)
        .unwrap();
    assert_eq!(g.access(), Access::Unknown);
    assert!(!g.signed_in());
    // Nor from an earlier session once a new one started.
    g.start_session(T0 + secs(3), TokenHandle(2)).unwrap();
    g.handle_check_result(T0 + secs(4), r.generation, r.attempt, GRANT)
        .unwrap();
    assert_eq!(g.access(), Access::Unknown);
}

#[test]
fn a_late_result_of_a_timed_out_attempt_is_stale() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1)).unwrap();
    let r = take_check(&mut g);
    g.handle_timeout(T0 + secs(10)).unwrap();
    g.handle_check_result(T0 + secs(11), r.generation, r.attempt, GRANT)
        .unwrap();
    assert_eq!(g.access(), Access::Unknown);
    assert_eq!(g.counters().stale_dropped, 1);
    assert_eq!(g.counters().transient_of(TransientClass::Timeout), 1);
}

#[test]
fn logout_during_a_retry_loop_ends_it() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, FAIL);
    assert!(g.poll_timeout().is_some());
    g.logout(T0 + secs(1)).unwrap();
    assert_eq!(g.poll_timeout(), None);
    assert_eq!(g.status().cause, Some(Cause::LoggedOut));
}

// ---- R12 ----

#[test]
fn an_early_or_repeated_timeout_does_nothing() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, FAIL);
    let before = (g.status(), *g.counters(), g.poll_timeout());
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at.saturating_sub(ms(1))).unwrap();
    g.handle_timeout(T0).unwrap();
    assert_eq!((g.status(), *g.counters(), g.poll_timeout()), before);
    assert!(g.poll_check().is_none());
    g.handle_timeout(at).unwrap();
    assert!(g.poll_check().is_some());
    events(&mut g);
    let before = (g.status(), *g.counters());
    g.handle_timeout(at).unwrap();
    assert_eq!((g.status(), *g.counters()), before);
}

#[test]
fn a_full_event_queue_refuses_inputs_without_changing_anything() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1)).unwrap();
    let mut gen = g.generation();
    // Never drain: refreshes fill the queue until the gate refuses.
    let mut refused = false;
    for i in 0..EVENT_CAPACITY {
        match g.token_refreshed(T0 + secs(i as u64), TokenHandle(2)) {
            Ok(g2) => gen = g2,
            Err(e) => {
                assert_eq!(e, InputError::QueueFull);
                refused = true;
                break;
            }
        }
    }
    assert!(refused);
    assert_eq!(
        g.generation(),
        gen,
        "a refused input must not bump the generation"
    );
    assert_eq!(g.counters().events_lost, 0);
    events(&mut g);
    assert!(g.token_refreshed(T0 + secs(100), TokenHandle(3)).is_ok());
}

#[test]
fn recheck_now_is_rate_limited() {
    let mut g = granted();
    assert_eq!(
        g.recheck_now(T0 + secs(1)),
        Err(InputError::RateLimited {
            retry_at: T0 + secs(5)
        })
    );
    g.recheck_now(T0 + secs(5)).unwrap();
    let r = take_check(&mut g);
    assert_eq!(r.attempt, 1);
    // A second press while that check runs is a no-op.
    g.recheck_now(T0 + secs(6)).unwrap();
    assert!(g.poll_check().is_none());
    let mut out = gate();
    assert_eq!(out.recheck_now(T0), Err(InputError::NotSignedIn));
}

// ---- R13 ----

#[test]
fn counters_count_attempts_failures_by_class_and_outcomes() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, CheckOutcome::transient(TransientClass::Connect));
    step(&mut g, CheckOutcome::transient(TransientClass::InvalidBody));
    step(&mut g, GRANT);
    let c = g.counters();
    assert_eq!(c.attempts, 4);
    assert_eq!(c.grants, 2);
    assert_eq!(c.transient_of(TransientClass::Connect), 1);
    assert_eq!(c.transient_of(TransientClass::InvalidBody), 1);
    assert_eq!(c.transient_total(), 2);
}

#[test]
fn the_last_planned_retry_watches_the_end_of_the_budget() {
    // An outage that ends after the backoff's early retries but before the deadline is still
    // caught before failing closed, for every seed (R4 with R6).
    for seed in 0..200 {
        let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, seed).unwrap();
        g.start_session(T0, TokenHandle(1)).unwrap();
        let r = g.poll_check().unwrap();
        g.handle_check_result(T0, r.generation, r.attempt, GRANT).unwrap();
        g.token_refreshed(T0, TokenHandle(2)).unwrap();
        let r = g.poll_check().unwrap();
        g.handle_check_result(T0, r.generation, r.attempt, FAIL).unwrap();
        let deadline = g.deadline().unwrap();
        let outage_end = T0 + secs(85);
        let mut last_start = T0;
        while g.deadline().is_some() {
            let at = g.poll_timeout().unwrap();
            g.handle_timeout(at).unwrap();
            if let Some(r) = g.poll_check() {
                last_start = at;
                let o = if at < outage_end { FAIL } else { GRANT };
                g.handle_check_result(at, r.generation, r.attempt, o).unwrap();
            }
            while g.poll_event().is_some() {}
        }
        assert_eq!(
            g.access(),
            Access::Granted,
            "seed {seed}: an 85 s outage failed closed"
        );
        assert!(last_start + secs(10) <= deadline);
    }
}

#[test]
fn every_failure_carries_its_detail_and_the_last_one_is_in_the_status() {
    // R13: an operator tells "certificate expired" from "HTTP 503" from a timeout.
    let mut g = granted();
    assert_eq!(g.status().last_failure, None);
    let tls = CheckOutcome::transient_with(TransientClass::Tls, FailureDetail::Tls(TlsFailure::Expired));
    g.recheck_now(T0 + secs(10)).unwrap();
    let req = take_check(&mut g);
    g.handle_check_result(T0 + secs(10), req.generation, req.attempt, tls)
        .unwrap();
    let failed: Vec<_> = events(&mut g)
        .into_iter()
        .filter_map(|e| match e {
            Event::CheckFailed { detail, .. } => Some(detail),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [FailureDetail::Tls(TlsFailure::Expired)]);
    let last = g.status().last_failure.expect("a failure was reported");
    assert_eq!(last.class, TransientClass::Tls);
    assert_eq!(last.detail, FailureDetail::Tls(TlsFailure::Expired));
    assert_eq!(last.at, T0 + secs(10));

    // The attempt timeout is a failure with its own detail.
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at).unwrap();
    let req = take_check(&mut g);
    g.handle_timeout(req.started + req.timeout).unwrap();
    let last = g.status().last_failure.unwrap();
    assert_eq!(last.detail, FailureDetail::Net(NetFailure::Timeout));
    assert_eq!(last.at, req.started + req.timeout);
    // A definitive answer keeps the history; a new session clears it.
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at).unwrap();
    let req = take_check(&mut g);
    answer(&mut g, at, req, GRANT);
    assert!(g.status().last_failure.is_some());
    g.start_session(at + secs(1), TokenHandle(9)).unwrap();
    assert_eq!(g.status().last_failure, None);
}
