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
    g.handle_check_result(now, req.generation, req.attempt, o);
    events(g);
}

/// Signed in and granted at T0.
fn granted() -> Gate<8> {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    answer(&mut g, T0, r, GRANT);
    assert_eq!(g.access(), Access::Granted);
    g
}

/// Granted, then a refresh's check and every retry failed: failed closed, probing (R5, R7).
fn failed_closed() -> Gate<8> {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, FAIL);
    while g.access() == Access::Granted {
        step(&mut g, FAIL);
    }
    g
}

/// Drives the gate to its next timer; answers any started check with `o` at once.
fn step(g: &mut Gate<8>, o: CheckOutcome) -> Instant {
    let at = g.poll_timeout().expect("something is owed");
    g.handle_timeout(at);
    if let Some(r) = g.poll_check() {
        g.handle_check_result(at, r.generation, r.attempt, o);
    }
    events(g);
    at
}

// ---- R3 ----

#[test]
fn session_start_checks_at_once_and_a_grant_resolves_it() {
    let mut g = gate();
    assert_eq!(g.access(), Access::Unknown);
    let gen = g.start_session(T0, TokenHandle(7));
    let r = take_check(&mut g);
    assert_eq!(
        (r.generation, r.attempt, r.token, r.started),
        (gen, 0, TokenHandle(7), T0)
    );
    assert_eq!(r.timeout, secs(10));
    assert_eq!(g.poll_timeout(), Some(T0 + secs(10)));
    g.handle_check_result(T0 + ms(30), gen, 0, GRANT);
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
            },
            Event::FirstCheckSettled { generation: gen }
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
    assert_eq!(g.token_refreshed(T0, TokenHandle(1)), Err(NotSignedIn));
}

#[test]
fn the_getters_report_the_session_the_token_and_the_latest_instant() {
    // What a driver without tokens of its own reads back: whether a session runs (R8, R13),
    // the token handle its checks send (R3, R10), and the clock, which never runs backwards (R5).
    let mut g = gate();
    assert!(!g.signed_in());
    assert_eq!(g.last_now(), Instant::ZERO);
    g.start_session(T0, TokenHandle(7));
    assert!(g.signed_in());
    assert_eq!(g.token(), TokenHandle(7));
    assert_eq!(take_check(&mut g).token, TokenHandle(7));
    assert_eq!(g.last_now(), T0);
    g.token_refreshed(T0 + secs(30), TokenHandle(8)).unwrap();
    assert_eq!(g.token(), TokenHandle(8));
    g.handle_timeout(T0 + secs(10)); // a backdated input happens at the latest instant
    assert_eq!(g.last_now(), T0 + secs(30));
    g.logout(T0 + secs(40));
    assert!(!g.signed_in());
    assert_eq!(g.last_now(), T0 + secs(40));
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

#[test]
fn a_denial_after_failing_closed_says_the_server_denied_and_stops_probing() {
    // R2/R13: failing closed and a server's "no" both deny, for different reasons: once a
    // probe gets a definitive denial the cause is the server's, the change is reported, and
    // the probing ends.
    let mut g = failed_closed();
    assert_eq!(g.status().cause, Some(Cause::FailedClosed));
    let at = g.poll_timeout().expect("a probe is planned");
    g.handle_timeout(at);
    let r = take_check(&mut g);
    events(&mut g);
    g.handle_check_result(at, r.generation, r.attempt, DENY);
    assert_eq!(
        events(&mut g),
        vec![Event::AccessChanged {
            from: Access::Denied,
            to: Access::Denied,
            cause: Cause::ServerDenied
        }]
    );
    let st = g.status();
    assert_eq!((st.access, st.cause), (Access::Denied, Some(Cause::ServerDenied)));
    assert_eq!(st.since, Some(at));
    assert!(!st.probing);
    assert_eq!(g.poll_timeout(), None);
}

#[test]
fn a_repeated_denial_is_no_access_change() {
    // R13: `AccessChanged` and `Status::since` mark changes; the same answer again is none.
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    answer(&mut g, T0, r, DENY);
    assert_eq!(g.status().since, Some(T0));
    g.recheck_now(T0 + secs(60)).unwrap();
    let r = take_check(&mut g);
    events(&mut g);
    g.handle_check_result(T0 + secs(60), r.generation, r.attempt, DENY);
    assert_eq!(events(&mut g), vec![]);
    let st = g.status();
    assert_eq!((st.access, st.cause), (Access::Denied, Some(Cause::ServerDenied)));
    assert_eq!(st.since, Some(T0), "a repeated denial is not a change");
    assert_eq!(g.counters().denials, 2);
}

#[test]
fn a_grant_after_a_server_denial_is_a_server_grant_not_a_recovery() {
    // R7/R13: `Recovered` is for a grant after failing closed; a server that said no and now
    // says yes granted, and no recovery is counted.
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    answer(&mut g, T0, r, DENY);
    g.recheck_now(T0 + secs(60)).unwrap();
    let r = take_check(&mut g);
    events(&mut g);
    g.handle_check_result(T0 + secs(60), r.generation, r.attempt, GRANT);
    assert_eq!(
        events(&mut g),
        vec![Event::AccessChanged {
            from: Access::Denied,
            to: Access::Granted,
            cause: Cause::ServerGranted
        }]
    );
    assert_eq!(g.counters().recoveries, 0);
}

#[test]
fn a_grant_after_failing_closed_over_a_server_denial_is_a_recovery() {
    // R5: failing closed over a server's denial keeps it a denial (and its cause); R7: the
    // gate failed closed all the same, so the grant that ends the probing is a recovery.
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    answer(&mut g, T0, r, DENY);
    g.token_refreshed(T0 + secs(10), TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(10), r, FAIL);
    while g.counters().failed_closed == 0 {
        step(&mut g, FAIL);
    }
    let st = g.status();
    assert_eq!((st.access, st.cause), (Access::Denied, Some(Cause::ServerDenied)));
    assert!(st.probing);
    step(&mut g, GRANT);
    assert_eq!(g.status().cause, Some(Cause::Recovered));
    assert_eq!(g.counters().recoveries, 1);
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
        g.handle_timeout(at);
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
            g.handle_check_result(at, r.generation, r.attempt, FAIL);
        }
        events(&mut g);
    }
    assert_eq!(g.counters().failed_closed, 1);
    assert!(g.status().probing);
}

#[test]
fn unknown_becomes_denied_at_the_deadline_when_nothing_answers() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    take_check(&mut g);
    // Nothing ever answers: every attempt times out.
    let mut last = T0;
    while g.access() == Access::Unknown {
        last = g.poll_timeout().unwrap();
        g.handle_timeout(last);
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
    g.handle_timeout(deadline);
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
    g.handle_timeout(at);
    let r = take_check(&mut g);
    events(&mut g);
    g.handle_check_result(deadline + secs(1), r.generation, r.attempt, GRANT);
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
    g.handle_timeout(deadline);
    assert_eq!(g.access(), Access::Denied);
    // An input with an earlier `now` is treated as happening at the latest time seen.
    g.handle_timeout(T0);
    assert_eq!(g.access(), Access::Denied);
    assert_eq!(g.deadline(), None);
}

// ---- R6 ----

#[test]
fn retry_k_lands_in_its_slice_of_the_spread_window_and_the_last_in_the_final_window() {
    // R6 defaults: 7 retries stratified over the 70 s after the first failure (slices of
    // 10 s), the 8th in [deadline - 20 s, deadline - 10 s], whatever the seed.
    for seed in 0..100 {
        let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, seed).unwrap();
        g.start_session(T0, TokenHandle(1));
        let r = take_check(&mut g);
        answer(&mut g, T0, r, FAIL);
        let deadline = g.deadline().unwrap();
        let mut starts = vec![];
        while g.deadline().is_some() {
            let at = step(&mut g, FAIL);
            if g.counters().attempts as usize > starts.len() + 1 {
                starts.push(at);
            }
        }
        assert_eq!(starts.len(), 8, "seed {seed}: {starts:?}");
        for (i, &t) in starts[..7].iter().enumerate() {
            let k = i as u64;
            assert!(
                t >= T0 + secs(10 * k) && t < T0 + secs(10 * (k + 1)),
                "seed {seed}: retry {} at {t:?} outside its slice",
                k + 1
            );
        }
        assert!(
            starts[7] >= deadline.saturating_sub(secs(20)) && starts[7] <= deadline.saturating_sub(secs(10))
        );
    }
}

#[test]
fn a_retry_whose_slice_has_passed_goes_into_the_next_slice_still_ahead() {
    // Attempts that hang until their 10 s timeout: a slice that ended meanwhile is skipped,
    // never squeezed (each retry still lies inside the slice it was drawn from).
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let _ = take_check(&mut g);
    let first_failure = T0 + secs(10);
    g.handle_timeout(first_failure); // attempt 0 timed out
    events(&mut g);
    let mut starts = vec![];
    while g.deadline().is_some() {
        let at = g.poll_timeout().unwrap();
        g.handle_timeout(at);
        if g.poll_check().is_some() {
            starts.push(at - first_failure);
        }
        events(&mut g);
    }
    assert!(starts.len() <= 8, "{starts:?}");
    for pair in starts.windows(2) {
        assert!(
            pair[1] >= pair[0] + secs(10),
            "a retry started before the previous one timed out: {starts:?}"
        );
    }
    let slice = |d: Duration| d.as_secs() / 10;
    for pair in starts.windows(2).filter(|p| p[1] < secs(70)) {
        assert!(
            slice(pair[1]) > slice(pair[0]),
            "two retries in one slice: {starts:?}"
        );
    }
    let last = *starts.last().unwrap();
    assert!(last >= secs(100) && last <= secs(110), "{starts:?}");
}

#[test]
fn devices_that_fail_together_retry_at_different_times() {
    let firsts: Vec<Instant> = (0..20u64)
        .map(|seed| {
            let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, seed).unwrap();
            g.start_session(T0, TokenHandle(1));
            let r = g.poll_check().unwrap();
            g.handle_check_result(T0, r.generation, 0, FAIL);
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
    g.handle_timeout(at);
    let r = take_check(&mut g);
    answer(&mut g, at, r, retry_after(0));
    assert_eq!(g.status().next_attempt, Some(at + secs(1)), "floored at 1 s");
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at);
    let r = take_check(&mut g);
    answer(&mut g, at, r, retry_after(100_000));
    assert_eq!(
        g.status().next_attempt,
        Some(at + secs(300)),
        "capped at the probe period"
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
    g.handle_timeout(deadline);
    assert_eq!(g.access(), Access::Denied);
    assert_eq!(g.poll_timeout(), Some(T0 + secs(300)));
    g.handle_timeout(T0 + secs(300));
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(301), r, GRANT);
    assert_eq!(g.status().cause, Some(Cause::Recovered));
}

// ---- R7 ----

#[test]
fn after_failing_closed_probes_fill_the_ramp_then_run_at_phase_plus_k_periods() {
    let p = GateConfig::DEFAULT.probe;
    let mut phases = vec![];
    for seed in 0..50 {
        let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, seed).unwrap();
        g.start_session(T0, TokenHandle(1));
        let r = take_check(&mut g);
        answer(&mut g, T0, r, GRANT);
        g.token_refreshed(T0, TokenHandle(2)).unwrap();
        let r = take_check(&mut g);
        answer(&mut g, T0, r, FAIL);
        let closed_at = g.deadline().unwrap();
        while g.access() == Access::Granted {
            step(&mut g, FAIL);
        }
        assert!(g.status().probing);
        let mut probes = vec![];
        for _ in 0..(p.ramp_probes + 6) {
            probes.push(step(&mut g, FAIL) - closed_at);
        }
        // Ramp probe j inside the j-th slice of the ramp.
        let slice = p.ramp.as_micros() / u64::from(p.ramp_probes.max(1));
        for (j, d) in probes.iter().take(p.ramp_probes as usize).enumerate() {
            let j = j as u64;
            assert!(
                d.as_micros() > j * slice && d.as_micros() < (j + 1) * slice,
                "seed {seed}: ramp probe {} at +{d:?}",
                j + 1
            );
        }
        // Then the period, at a per-device phase in (0, P] after the ramp.
        let periodic = &probes[p.ramp_probes as usize..];
        let phase = periodic[0].saturating_sub(p.ramp);
        assert!(
            phase > Duration::ZERO && phase <= p.period,
            "seed {seed}: phase {phase:?}"
        );
        for (k, d) in periodic.iter().enumerate() {
            assert_eq!(
                *d,
                p.ramp + phase + p.period.saturating_mul(k as u64),
                "seed {seed}: probe {k}"
            );
        }
        phases.push(phase);
        assert_eq!(g.access(), Access::Denied);
        step(&mut g, GRANT);
        assert_eq!(g.access(), Access::Granted);
        assert_eq!(g.status().cause, Some(Cause::Recovered));
        assert_eq!(g.counters().recoveries, 1);
        assert_eq!(g.poll_timeout(), None);
    }
    phases.sort();
    phases.dedup();
    assert!(
        phases.len() >= 48,
        "devices failing together must probe at different phases"
    );
}

#[test]
fn retry_after_governs_probes_as_it_governs_retries() {
    // R7: "Retry-After governs probes as in R6": after failing closed, a probe answered 503
    // with Retry-After comes back exactly then (a ramp probe and a periodic one), floored at
    // 1 s and capped at the probe period.
    let mut g = failed_closed();
    for (ra, want) in [(42, secs(42)), (0, secs(1)), (100_000, secs(300)), (7, secs(7))] {
        let at = g.poll_timeout().unwrap();
        g.handle_timeout(at);
        let probe = take_check(&mut g);
        answer(&mut g, at, probe, retry_after(ra));
        assert_eq!(g.poll_timeout(), Some(at + want), "Retry-After: {ra}");
        assert_eq!(g.status().next_attempt, Some(at + want), "Retry-After: {ra}");
        assert_eq!(g.access(), Access::Denied);
    }
}

#[test]
fn a_probe_that_hangs_keeps_the_period_grid() {
    // A probe that times out (10 s) does not shift the grid: the next one is one period after
    // the previous planned instant, not after the timeout.
    let mut g = failed_closed();
    for _ in 0..GateConfig::DEFAULT.probe.ramp_probes {
        step(&mut g, FAIL);
    }
    let first = step(&mut g, FAIL);
    let at = g.poll_timeout().unwrap();
    assert_eq!(at, first + secs(300));
    g.handle_timeout(at);
    let _hangs = take_check(&mut g);
    g.handle_timeout(at + secs(10)); // timed out
    events(&mut g);
    assert_eq!(g.poll_timeout(), Some(at + secs(300)));
}

// ---- R8 ----

#[test]
fn unauthorized_logs_out_without_retry() {
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    g.handle_check_result(T0, r.generation, r.attempt, CheckOutcome::Unauthorized);
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
    g.handle_check_result(T0 + secs(2), old.generation, old.attempt, DENY);
    assert_eq!(g.status(), before);
    assert_eq!(g.counters().stale_dropped, 1);
    answer(&mut g, T0 + secs(2), new, GRANT);
    assert_eq!(g.access(), Access::Granted);
}

#[test]
fn nothing_from_a_logged_out_session_can_grant() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    g.logout(T0 + secs(1));
    g.handle_check_result(T0 + secs(2), r.generation, r.attempt, GRANT);
    assert_eq!(g.access(), Access::Unknown);
    assert!(!g.signed_in());
    // Nor from an earlier session once a new one started.
    g.start_session(T0 + secs(3), TokenHandle(2));
    g.handle_check_result(T0 + secs(4), r.generation, r.attempt, GRANT);
    assert_eq!(g.access(), Access::Unknown);
}

#[test]
fn a_late_result_of_a_timed_out_attempt_is_stale() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    g.handle_timeout(T0 + secs(10));
    g.handle_check_result(T0 + secs(11), r.generation, r.attempt, GRANT);
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
    g.logout(T0 + secs(1));
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
    g.handle_timeout(at.saturating_sub(ms(1)));
    g.handle_timeout(T0);
    assert_eq!((g.status(), *g.counters(), g.poll_timeout()), before);
    assert!(g.poll_check().is_none());
    g.handle_timeout(at);
    assert!(g.poll_check().is_some());
    events(&mut g);
    let before = (g.status(), *g.counters());
    g.handle_timeout(at);
    assert_eq!((g.status(), *g.counters()), before);
}

#[test]
fn an_undrained_event_queue_keeps_the_newest_events_and_counts_the_loss() {
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    // Never drain: every refresh adds a CheckStarted; inputs still take effect (R12).
    let mut gen = g.generation();
    for i in 0..2 * EVENT_CAPACITY as u64 {
        gen = g.token_refreshed(T0 + secs(i), TokenHandle(2)).unwrap();
    }
    assert_eq!(g.generation(), gen, "every input took effect");
    let lost = g.counters().events_lost;
    assert!(lost > 0, "the queue overflowed and said so");
    let ev = events(&mut g);
    assert_eq!(ev.len(), EVENT_CAPACITY);
    // The newest event survived: the last refresh's check start.
    assert_eq!(
        ev.last(),
        Some(&Event::CheckStarted {
            generation: gen,
            attempt: 0
        })
    );
}

#[test]
fn a_driver_that_drains_after_every_input_never_loses_an_event() {
    // The worst single input (MAX_EVENTS_PER_INPUT's doc): a refreshed generation's attempt 0
    // times out as the deadline (set by the failure before the refresh) passes, in the same
    // wake-up as a new session start over it.
    let cfg = GateConfig {
        attempt_timeout: secs(5),
        budget: secs(6),
        retry: accessgate::Retries::fitted(secs(6), secs(5)),
        ..GateConfig::DEFAULT
    };
    let mut g: Gate = Gate::new(cfg, 9).unwrap();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    events(&mut g);
    g.handle_check_result(
        T0,
        r.generation,
        r.attempt,
        CheckOutcome::transient(TransientClass::ServerError),
    );
    events(&mut g);
    let refreshed = g.token_refreshed(T0 + secs(1), TokenHandle(2)).unwrap();
    let _hangs = take_check(&mut g);
    events(&mut g);
    let late = T0 + secs(60);
    let next = g.start_session(late, TokenHandle(3));
    let ev = events(&mut g);
    assert_eq!(ev.len(), 6, "the input this test means: {ev:?}");
    assert!(ev.len() <= MAX_EVENTS_PER_INPUT, "{ev:?}");
    assert!(matches!(ev[0], Event::CheckFailed { generation, attempt: 0, .. } if generation == refreshed));
    assert_eq!(
        ev[1],
        Event::FirstCheckSettled {
            generation: refreshed
        }
    );
    assert!(matches!(
        ev[2],
        Event::AccessChanged {
            cause: Cause::FailedClosed,
            ..
        }
    ));
    assert_eq!(
        ev[5],
        Event::CheckStarted {
            generation: next,
            attempt: 0
        }
    );
    assert_eq!(g.counters().events_lost, 0);
}

#[test]
fn recheck_now_is_rate_limited() {
    let mut g = granted();
    assert_eq!(
        g.recheck_now(T0 + secs(1)),
        Err(RecheckError::RateLimited {
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
    assert_eq!(out.recheck_now(T0), Err(RecheckError::NotSignedIn));
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
fn each_counter_of_r13_counts_what_it_names() {
    // R13's list beyond attempts and failures by class: denials, stale results dropped,
    // fail-closed events, recoveries, logouts (by the app and by a 401), each counted once
    // per occurrence.
    let mut g = gate();
    g.start_session(T0, TokenHandle(1));
    let r = take_check(&mut g);
    answer(&mut g, T0, r, DENY);
    // A second session fails closed, then a probe recovers it.
    g.start_session(T0 + secs(1), TokenHandle(2));
    let old = take_check(&mut g);
    g.token_refreshed(T0 + secs(1), TokenHandle(3)).unwrap();
    g.handle_check_result(T0 + secs(1), old.generation, old.attempt, GRANT);
    let r = take_check(&mut g);
    answer(&mut g, T0 + secs(1), r, FAIL);
    while g.access() != Access::Denied {
        step(&mut g, FAIL);
    }
    assert_eq!(g.status().cause, Some(Cause::FailedClosed));
    while g.access() != Access::Granted {
        step(&mut g, GRANT);
    }
    assert_eq!(g.status().cause, Some(Cause::Recovered));
    let now = g.last_now();
    g.logout(now);
    g.start_session(now, TokenHandle(4));
    let r = take_check(&mut g);
    g.handle_check_result(now, r.generation, r.attempt, CheckOutcome::Unauthorized);
    events(&mut g);
    let c = *g.counters();
    assert_eq!(
        (c.denials, c.stale_dropped, c.failed_closed, c.recoveries),
        (1, 1, 1, 1),
        "{c:?}"
    );
    // Ended by the app: the denied session by the next sign-in, the recovered one by logout.
    assert_eq!((c.logouts, c.unauthorized_logouts), (2, 1), "{c:?}");
    assert_eq!(
        c.grants, 1,
        "the recovery is a grant; the stale one is not: {c:?}"
    );
    assert_eq!(c.events_lost, 0);
}

#[test]
fn the_last_planned_retry_watches_the_end_of_the_budget() {
    // An outage that ends after the backoff's early retries but before the deadline is still
    // caught before failing closed, for every seed (R4 with R6).
    for seed in 0..200 {
        let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, seed).unwrap();
        g.start_session(T0, TokenHandle(1));
        let r = g.poll_check().unwrap();
        g.handle_check_result(T0, r.generation, r.attempt, GRANT);
        g.token_refreshed(T0, TokenHandle(2)).unwrap();
        let r = g.poll_check().unwrap();
        g.handle_check_result(T0, r.generation, r.attempt, FAIL);
        let deadline = g.deadline().unwrap();
        let outage_end = T0 + secs(85);
        let mut last_start = T0;
        while g.deadline().is_some() {
            let at = g.poll_timeout().unwrap();
            g.handle_timeout(at);
            if let Some(r) = g.poll_check() {
                last_start = at;
                let o = if at < outage_end { FAIL } else { GRANT };
                g.handle_check_result(at, r.generation, r.attempt, o);
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
    g.handle_check_result(T0 + secs(10), req.generation, req.attempt, tls);
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
    g.handle_timeout(at);
    let req = take_check(&mut g);
    g.handle_timeout(req.started + req.timeout);
    let last = g.status().last_failure.unwrap();
    assert_eq!(last.detail, FailureDetail::Net(NetFailure::Timeout));
    assert_eq!(last.at, req.started + req.timeout);
    // A definitive answer keeps the history; a new session clears it.
    let at = g.poll_timeout().unwrap();
    g.handle_timeout(at);
    let req = take_check(&mut g);
    answer(&mut g, at, req, GRANT);
    assert!(g.status().last_failure.is_some());
    g.start_session(at + secs(1), TokenHandle(9));
    assert_eq!(g.status().last_failure, None);
}

#[test]
fn a_failure_outside_a_check_carries_its_detail_into_the_status() {
    // R13: a bare gate's app refreshes its own token; when that fails on the token endpoint,
    // the status names why, whether or not it starts the fail-closed clock (R5).
    let mut g = granted();
    let unknown = FailureDetail::Tls(TlsFailure::UnknownIssuer);
    g.transient_failure(T0 + secs(5), TransientClass::Tls, unknown)
        .unwrap();
    let last = g.status().last_failure.expect("recorded");
    assert_eq!(
        (last.class, last.detail, last.at),
        (TransientClass::Tls, unknown, T0 + secs(5))
    );
    assert!(g.status().reverifying_until.is_some(), "R5: the clock started");
    // With a retry already planned, the streak is unchanged, but the status shows the last one.
    let deadline = g.status().reverifying_until;
    let refused = FailureDetail::Net(NetFailure::Refused);
    g.transient_failure(T0 + secs(6), TransientClass::Connect, refused)
        .unwrap();
    assert_eq!(g.status().reverifying_until, deadline);
    assert_eq!(
        g.status().last_failure.map(|l| (l.detail, l.at)),
        Some((refused, T0 + secs(6)))
    );
    // Signed out: refused, nothing recorded.
    g.logout(T0 + secs(7));
    let status = g.status();
    assert_eq!(
        g.transient_failure(T0 + secs(8), TransientClass::Tls, unknown),
        Err(NotSignedIn)
    );
    assert_eq!(g.status().last_failure, status.last_failure);
}

// ---- issue 12: the retry count at run time ----

#[test]
fn the_retry_count_is_set_at_run_time_up_to_the_capacity() {
    let mut cfg = GateConfig::DEFAULT;
    cfg.retry.count = 3;
    let mut g: Gate<8> = Gate::new(cfg, 5).unwrap();
    g.start_session(T0, TokenHandle(1));
    let fail = CheckOutcome::transient(TransientClass::ServerError);
    let mut starts = 0;
    // Every attempt fails at once, until the gate fails closed.
    while g.status().reverifying_until.is_some() || starts == 0 {
        let Some(r) = g.poll_check() else {
            let at = g.poll_timeout().unwrap();
            g.handle_timeout(at);
            continue;
        };
        starts += 1;
        g.handle_check_result(r.started, r.generation, r.attempt, fail);
        if starts > 20 {
            break;
        }
    }
    assert_eq!(
        starts,
        1 + 3,
        "attempt 0 and the three retries asked for, then the deadline"
    );
    assert_eq!(g.access(), Access::Denied);
    let over = GateConfig {
        retry: Retries {
            count: 9,
            ..GateConfig::DEFAULT.retry
        },
        ..GateConfig::DEFAULT
    };
    assert_eq!(
        Gate::<8>::new(over, 1).err(),
        Some(ConfigError::RetryCountOverCapacity)
    );
    assert!(Gate::<16>::new(over, 1).is_ok());
}

// ---- a long gap between inputs (a suspended machine) ----

#[test]
fn an_input_an_hour_late_fails_closed_once_and_owes_one_check_not_a_burst() {
    // A laptop that slept through its deadline: the next input comes an hour after the first
    // failure (R5). That input fails the gate closed (as of the deadline, not of the wake-up),
    // starts one check for all the retries it owed (one attempt at a time, R6, R12), and the
    // probes go on from there on their period grid (R7): no burst of overdue attempts.
    let mut g = granted();
    g.token_refreshed(T0, TokenHandle(2)).unwrap();
    let r = take_check(&mut g);
    answer(&mut g, T0, r, FAIL);
    let deadline = g.deadline().unwrap();
    let woke = T0 + secs(3600);
    g.handle_timeout(woke);
    assert_eq!(g.access(), Access::Denied);
    let status = g.status();
    assert_eq!(status.cause, Some(Cause::FailedClosed));
    assert_eq!(status.since, Some(deadline), "closed as of the deadline");
    assert_eq!(g.counters().failed_closed, 1);
    let started: Vec<_> = core::iter::from_fn(|| g.poll_check()).collect();
    assert_eq!(started.len(), 1, "one check owed, not one per missed slot");
    assert_eq!(started[0].started, woke);
    assert_eq!(g.poll_check(), None);
    // That check times out unanswered; the probes after it are one period apart, none overdue.
    let period = GateConfig::DEFAULT.probe.period;
    let mut at = step(&mut g, FAIL);
    assert_eq!(at, woke + started[0].timeout);
    let mut previous = None;
    for _ in 0..4 {
        let probe = step(&mut g, FAIL);
        assert!(probe > at);
        if let Some(p) = previous {
            assert_eq!(probe - p, period);
        }
        previous = Some(probe);
        at = probe;
    }
    assert_eq!(g.counters().failed_closed, 1);
    step(&mut g, GRANT);
    assert_eq!(g.status().cause, Some(Cause::Recovered));
}

#[test]
fn counters_print_every_transient_class_by_name_r13() {
    // R13: the log line an operator reads names each class; the plain array does not.
    let mut g = granted();
    g.recheck_now(T0 + secs(10)).unwrap();
    let req = take_check(&mut g);
    answer(&mut g, T0 + secs(10), req, FAIL);
    let text = format!("{}", g.counters());
    assert!(text.starts_with("attempts 2, transient failures 1 ("), "{text}");
    assert!(text.contains("grants 1, denials 0"), "{text}");
    assert!(text.contains("server_error 1"), "{text}");
    for class in TransientClass::ALL {
        assert!(
            text.contains(&format!("{} ", class.name())),
            "{} missing: {text}",
            class.name()
        );
    }
    assert!(text.contains("connect 0, dns 0"), "{text}");
    assert!(text.ends_with("refresh failures 0, events lost 0"), "{text}");
}

#[test]
fn every_cause_has_its_own_snake_case_name_r13() {
    // R13: logs and JSON output name the cause of every access change; an operator greps for
    // these words, so each cause keeps its own.
    let names = [
        (Cause::ServerGranted, "server_granted"),
        (Cause::ServerDenied, "server_denied"),
        (Cause::FailedClosed, "failed_closed"),
        (Cause::Recovered, "recovered"),
        (Cause::Unauthorized, "unauthorized"),
        (Cause::LoggedOut, "logged_out"),
    ];
    for (cause, name) in names {
        assert_eq!(cause.name(), name, "{cause:?}");
    }
}
