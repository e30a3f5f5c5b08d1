//! The session's counters at the end of `u32` (R3, R9, R10, R11, R12): the generation (and
//! with it the token handle) wraps, refresh ids and waiter ids wrap, the backoff counters and
//! the counters saturate. Each test starts its counter just below the end (a private field:
//! reaching it through the public inputs takes 2^32 inputs) and crosses it with the public
//! inputs only.
#![cfg(test)] // test code only (declared under `#[cfg(test)]` too): panics here are test failures

use super::*;

const T0: Instant = Instant::from_secs(1_000);
const HOUR: Duration = Duration::from_secs(3600);
type S = Session<8, 4, 64>;

fn session() -> S {
    match Session::new(SessionConfig::DEFAULT, 0x5eed) {
        Ok(s) => s,
        Err(e) => panic!("default config refused: {e:?}"),
    }
}

fn events(s: &mut S) -> Vec<SessionEvent> {
    core::iter::from_fn(|| s.poll_event()).collect()
}

fn actions(s: &mut S) -> Vec<Action> {
    core::iter::from_fn(|| s.poll_action()).collect()
}

fn waiters(s: &mut S) -> Vec<(WaiterId, Result<TokenHandle, WaitError>)> {
    core::iter::from_fn(|| s.poll_waiter()).collect()
}

fn tokens(access_token: &'static [u8], expires_in: Duration) -> RefreshOutcome<'static> {
    RefreshOutcome::Refreshed {
        access_token,
        refresh_token: Some(b"rt_next"),
        expires_in,
    }
}

/// The one check the last input started (cancels of superseded checks may come first).
#[track_caller]
fn only_check(s: &mut S) -> CheckRequest {
    let acts = actions(s);
    let checks: Vec<_> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Check(c) => Some(*c),
            Action::CancelCheck { .. } => None,
            other => panic!("expected a check, got {other:?} in {acts:?}"),
        })
        .collect();
    match checks[..] {
        [c] => c,
        _ => panic!("expected one check, got {acts:?}"),
    }
}

/// Sleeps until `poll_timeout` until the session hands out a refresh, as a driver does;
/// returns it with the actions on the way. Every wake-up must move time forward (no busy
/// loop, R12); a refresh must come within a bound of wake-ups.
#[track_caller]
fn next_refresh(s: &mut S) -> (RefreshRequest, Vec<Action>) {
    let mut seen = Vec::new();
    for _ in 0..8 {
        let at = s.poll_timeout().expect("a refresh is owed, so a timer is armed");
        s.handle_timeout(at);
        events(s);
        for a in actions(s) {
            match a {
                Action::Refresh(r) => return (r, seen),
                other => seen.push(other),
            }
        }
        let next = s.poll_timeout().expect("still owed");
        assert!(
            next > at,
            "poll_timeout did not move past {at:?}: busy loop (R12)"
        );
    }
    panic!("no refresh within 8 wake-ups: {seen:?}");
}

/// The refresh due next lands with `token`; its immediate check answers `Granted`.
#[track_caller]
fn refresh_and_grant(s: &mut S, token: &'static [u8]) -> (Generation, TokenHandle) {
    let (r, _) = next_refresh(s);
    s.handle_refresh_result(s.last_now(), r.id, tokens(token, HOUR));
    let c = only_check(s);
    s.handle_check_result(s.last_now(), c.generation, c.attempt, CheckOutcome::Granted);
    events(s);
    (c.generation, c.token)
}

#[test]
fn token_handles_across_the_generation_wrap_give_only_the_current_token() {
    let mut s = session();
    s.io.generation = Generation(u32::MAX - 2); // 2^32 - 2 sign-ins, refreshes, logouts later
    s.sign_in(T0, b"at_a", b"rt_a", HOUR).expect("tokens fit");
    let a = only_check(&mut s);
    assert_eq!(
        (a.generation, a.token),
        (Generation(u32::MAX - 1), TokenHandle(u32::MAX - 1))
    );
    s.handle_check_result(T0, a.generation, a.attempt, CheckOutcome::Granted);
    let (gen_b, b) = refresh_and_grant(&mut s, b"at_b");
    assert_eq!((gen_b, b), (Generation(u32::MAX), TokenHandle(u32::MAX)));
    let (gen_c, c) = refresh_and_grant(&mut s, b"at_c");
    assert_eq!((gen_c, c), (Generation(0), TokenHandle(0)), "wraps to 0");
    // R11: only the current handle gives a token, also right after the wrap.
    assert_eq!(s.access_token(c), Some(&b"at_c"[..]));
    assert_eq!(s.current_token(), Some(c));
    assert_eq!(s.access_token(a.token), None);
    assert_eq!(s.access_token(b), None);
    assert_eq!(s.access(), Access::Granted);
    // The superseded checks answer late: stale (R10), whatever they say.
    s.handle_check_result(s.last_now(), a.generation, 0, CheckOutcome::Unauthorized);
    s.handle_check_result(s.last_now(), gen_b, 0, CheckOutcome::Denied);
    assert!(s.status().signed_in);
    assert_eq!(s.access(), Access::Granted);
    // Logout: generation 1, nothing hands out a token, not even the handle 1 it moved to.
    s.logout(s.last_now());
    assert_eq!(s.status().generation, Generation(1));
    for h in [0, 1, u32::MAX, u32::MAX - 1] {
        assert_eq!(s.access_token(TokenHandle(h)), None, "handle {h} after logout");
    }
    // A new session at generation 2: the torn-down session's handles stay dead.
    s.sign_in(s.last_now(), b"at_d", b"rt_d", HOUR)
        .expect("tokens fit");
    let d = only_check(&mut s);
    assert_eq!(d.token, TokenHandle(2));
    assert_eq!(s.access_token(d.token), Some(&b"at_d"[..]));
    for h in [0, 1, u32::MAX, u32::MAX - 1] {
        assert_eq!(
            s.access_token(TokenHandle(h)),
            None,
            "handle {h} of the old session"
        );
    }
    assert_eq!(s.counters().stale_dropped, 2);
}

#[test]
fn a_waiter_across_the_generation_wrap_gets_its_own_answer_once() {
    let mut s = session();
    s.io.generation = Generation(u32::MAX - 1);
    // A token inside the skew: the refresh starts at once, callers wait for it.
    s.sign_in(T0, b"at_old", b"rt_old", Duration::from_secs(30))
        .expect("tokens fit");
    assert_eq!(s.current_token(), Some(TokenHandle(u32::MAX)));
    let acts = actions(&mut s);
    let Some(Action::Refresh(r)) = acts.iter().find(|a| matches!(a, Action::Refresh(_))).copied() else {
        panic!("{acts:?}")
    };
    let Ok(TokenReply::Wait(w)) = s.request_token(T0) else {
        panic!("R11: a caller shares the refresh in flight")
    };
    s.handle_refresh_result(T0, r.id, tokens(b"at_new", HOUR));
    assert_eq!(s.status().generation, Generation(0));
    assert!(
        waiters(&mut s).is_empty(),
        "R3: waits for generation 0's first check"
    );
    let c = only_check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    assert_eq!(waiters(&mut s), [(w, Ok(TokenHandle(0)))]);
    assert_eq!(s.access_token(TokenHandle(0)), Some(&b"at_new"[..]));
    assert_eq!(s.access_token(TokenHandle(u32::MAX)), None);
    // Logout mid-refresh at generation 0: the waiter gets NotAuthenticated, once (R11).
    let t = T0 + Duration::from_secs(3570);
    let Ok(TokenReply::Wait(w2)) = s.request_token(t) else {
        panic!("inside the skew: waits for a refresh")
    };
    let r2 = actions(&mut s);
    s.logout(t);
    assert_eq!(waiters(&mut s), [(w2, Err(WaitError::NotAuthenticated))]);
    // A new session (generation 2): the old refresh lands late, stale; its waiter gets only
    // the new session's token.
    s.sign_in(t, b"at_2", b"rt_2", Duration::ZERO)
        .expect("tokens fit"); // expired: callers wait
    let Ok(TokenReply::Wait(w3)) = s.request_token(t) else {
        panic!("an expired token: the caller waits for the refresh")
    };
    for a in r2 {
        if let Action::Refresh(old) = a {
            s.handle_refresh_result(t, old.id, tokens(b"at_stale", HOUR));
        }
    }
    assert!(waiters(&mut s).is_empty());
    let (r3, _) = match actions(&mut s).into_iter().find_map(|a| match a {
        Action::Refresh(r) => Some(r),
        _ => None,
    }) {
        Some(r) => (r, Vec::new()),
        None => next_refresh(&mut s),
    };
    s.handle_refresh_result(s.last_now(), r3.id, tokens(b"at_3", HOUR));
    let c = only_check(&mut s);
    s.handle_check_result(s.last_now(), c.generation, c.attempt, CheckOutcome::Granted);
    let got = waiters(&mut s);
    assert_eq!(got, [(w3, Ok(c.token))]);
    assert_eq!(s.access_token(c.token), Some(&b"at_3"[..]));
    assert!(waiters(&mut s).is_empty(), "answered once");
}

#[test]
fn refresh_ids_wrap_and_a_timed_out_refresh_at_u32_max_stays_stale() {
    let mut s = session();
    s.next_refresh_id = u32::MAX; // 2^32 - 1 refreshes later
    s.sign_in(T0, b"at_a", b"rt_a", HOUR).expect("tokens fit");
    let c = only_check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    let (last, _) = next_refresh(&mut s);
    assert_eq!(last.id, RefreshId(u32::MAX));
    // It times out; the retry gets id 0 and the driver is told to cancel u32::MAX.
    let (next, on_the_way) = next_refresh(&mut s);
    assert_eq!(next.id, RefreshId(0));
    assert!(
        on_the_way.contains(&Action::CancelRefresh(last.id)),
        "{on_the_way:?}"
    );
    let gen = s.status().generation;
    // u32::MAX answers late: stale (R10), its tokens are never stored nor handed out.
    s.handle_refresh_result(s.last_now(), last.id, tokens(b"at_stale", HOUR));
    assert_eq!(events(&mut s), [SessionEvent::StaleRefresh { id: last.id }]);
    assert_eq!(s.status().generation, gen);
    assert!(s.refresh_in_flight(), "refresh 0 still counts");
    // Refresh 0 lands; u32::MAX answering again still changes nothing.
    s.handle_refresh_result(s.last_now(), next.id, tokens(b"at_b", HOUR));
    let h = s.current_token().expect("signed in");
    assert_eq!(s.access_token(h), Some(&b"at_b"[..]));
    s.handle_refresh_result(s.last_now(), last.id, RefreshOutcome::Rejected);
    assert!(s.status().signed_in, "R10: a stale rejection ended the session");
    assert_eq!(s.access_token(h), Some(&b"at_b"[..]));
    assert_eq!(s.counters().stale_dropped, 2);
}

#[test]
fn waiter_ids_wrap_and_never_meet_an_unanswered_or_unpolled_waiter() {
    // Waiter ids are issued in order, answered in order (FIFO) and count against `W` until the
    // driver polls the answer: at most W - 1 ids are issued after one still outstanding, so a
    // wrapped id cannot meet it. Pinned here across the wrap, with a driver that polls late.
    let mut s = session();
    s.next_waiter = u32::MAX - 2; // 2^32 - 3 callers later
    s.sign_in(T0, b"at_0", b"rt_0", HOUR).expect("tokens fit");
    let c = only_check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    let mut issued: Vec<WaiterId> = Vec::new();
    // Issued and not yet polled, in order, with the handle each must get (once resolved).
    let mut outstanding: Vec<(WaiterId, Option<TokenHandle>)> = Vec::new();
    const AT: [&[u8]; 3] = [b"at_1", b"at_2", b"at_3"];
    // How many answers the driver polls after each round: it leaves some in the session.
    const POLL: [usize; 3] = [2, 4, 4];
    for (at, poll) in AT.iter().zip(POLL) {
        // Inside the skew of the current token: callers wait for one shared refresh.
        let t = s.expires_at.saturating_sub(Duration::from_secs(30));
        loop {
            match s.request_token(t) {
                Ok(TokenReply::Wait(w)) => {
                    assert!(!issued.contains(&w), "waiter id {} issued twice", w.0);
                    assert!(
                        !outstanding.iter().any(|(u, _)| *u == w),
                        "R11: meets an outstanding waiter"
                    );
                    issued.push(w);
                    outstanding.push((w, None));
                }
                Err(TokenRequestError::WaitersFull) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(outstanding.len(), 4, "R12: waiters and unpolled answers share W");
        let r = next_refresh_now(&mut s);
        s.handle_refresh_result(t, r.id, tokens(at, HOUR));
        let c = only_check(&mut s);
        s.handle_check_result(t, c.generation, c.attempt, CheckOutcome::Granted);
        for (_, h) in outstanding.iter_mut().filter(|(_, h)| h.is_none()) {
            *h = Some(c.token);
        }
        assert_eq!(s.access_token(c.token), Some(*at));
        // The driver polls some: the oldest first, each its own answer, once (R11).
        for _ in 0..poll {
            let Some((w, res)) = s.poll_waiter() else { break };
            let (want, h) = outstanding.remove(0);
            assert_eq!((w, res), (want, Ok(h.expect("resolved"))));
        }
    }
    assert!(
        outstanding.is_empty() && s.poll_waiter().is_none(),
        "answered once"
    );
    let ids: Vec<u32> = issued.iter().map(|w| w.0).collect();
    assert_eq!(ids, [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2, 3, 4, 5, 6]);
}

/// The refresh the last input started.
#[track_caller]
fn next_refresh_now(s: &mut S) -> RefreshRequest {
    let acts = actions(s);
    match acts.iter().find_map(|a| match a {
        Action::Refresh(r) => Some(*r),
        _ => None,
    }) {
        Some(r) => r,
        None => panic!("expected a refresh, got {acts:?}"),
    }
}

#[test]
fn an_early_refresh_of_a_generation_2_pow_32_bumps_ago_does_not_block_r9_for_the_current_one() {
    let mut s = session();
    s.io.generation = Generation(u32::MAX - 1);
    s.sign_in(T0, b"at_a", b"rt_a", HOUR).expect("tokens fit");
    // A 403 at generation 1 asked for an early refresh 2^32 - 1 generations ago (R9).
    s.early_refresh_for = Some(Generation(1));
    let c = only_check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    assert_eq!(refresh_and_grant(&mut s, b"at_b").0, Generation(0));
    // Generation 1, a new token: its check answers 403 (R9: refresh early, once per generation).
    let (r, _) = next_refresh(&mut s);
    s.handle_refresh_result(s.last_now(), r.id, tokens(b"at_c", HOUR));
    let c = only_check(&mut s);
    assert_eq!(c.generation, Generation(1));
    events(&mut s);
    let forbidden = CheckOutcome::transient(TransientClass::Forbidden);
    // 6 s later: past the refresh floor (R11), inside the attempt timeout.
    s.handle_check_result(
        s.last_now() + Duration::from_secs(6),
        c.generation,
        c.attempt,
        forbidden,
    );
    let evs = events(&mut s);
    assert!(
        evs.iter()
            .any(|e| matches!(e, SessionEvent::RefreshStarted { early: true, .. })),
        "R9: no early refresh for generation 1: {evs:?}"
    );
}

#[test]
fn token_counters_at_u32_max_saturate_or_start_a_new_run_and_failing_refreshes_stay_a_trickle() {
    let mut s = session();
    s.sign_in(T0, b"at_a", b"rt_a", Duration::from_secs(30))
        .expect("tokens fit");
    s.failures_valid = u32::MAX;
    s.failures_expired = u32::MAX;
    s.refresh_streak = u32::MAX;
    s.io.counters.refreshes = u32::MAX;
    s.io.counters.refresh_failures = u32::MAX;
    s.io.counters.events_lost = u32::MAX;
    // A token endpoint that always fails; events never drained (the queue overflows).
    let mut starts = Vec::new();
    let mut now = T0;
    for _ in 0..60 {
        for a in actions(&mut s) {
            match a {
                Action::Refresh(r) => {
                    starts.push(r.started);
                    s.handle_refresh_result(
                        now,
                        r.id,
                        RefreshOutcome::transient(TransientClass::ServerError),
                    );
                }
                Action::Check(c) => s.handle_check_result(
                    now,
                    c.generation,
                    c.attempt,
                    CheckOutcome::transient(TransientClass::Connect),
                ),
                _ => {}
            }
        }
        let next = s.poll_timeout().expect("a refresh is owed");
        assert!(next > now || now == T0, "busy loop at {now:?} (R12)");
        now = next;
        s.handle_timeout(now);
    }
    assert!(starts.len() > 3, "refreshes go on: {starts:?}");
    for w in starts.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_secs(1),
            "R11: refreshes closer than 1 s: {starts:?}"
        );
    }
    let c = s.counters();
    assert_eq!(
        (c.refreshes, c.refresh_failures, c.events_lost),
        (u32::MAX, u32::MAX, u32::MAX)
    );
    // A run's place wraps instead: its failure after u32::MAX is the first of a new run
    // (which starts the fail-closed clock once more, R5); the trickle above held across it.
    assert!(
        s.failures_valid < 60 && s.failures_expired < 60,
        "{:?}",
        (s.failures_valid, s.failures_expired)
    );
    // While the run goes on, its streak stays at u32::MAX: the floor is the backoff's cap.
    for w in starts[..3].windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_secs(5),
            "R11: floor at streak u32::MAX: {starts:?}"
        );
    }
}
