//! Tests of the session layer through its public API (R8, R9, R10, R11), named after the behaviour they pin.

use accessgate::*;

const T0: Instant = Instant::from_secs(1_000);
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
type S = Session<8, 3, 64>;

fn session() -> S {
    Session::new(SessionConfig::DEFAULT, 9).unwrap()
}

fn drain(s: &mut S) -> Vec<SessionEvent> {
    core::iter::from_fn(|| s.poll_event()).collect()
}

fn waiters(s: &mut S) -> Vec<(WaiterId, Result<TokenHandle, WaitError>)> {
    core::iter::from_fn(|| s.poll_waiter()).collect()
}

#[track_caller]
fn check(s: &mut S) -> CheckRequest {
    match s.poll_action() {
        Some(Action::Check(c)) => c,
        other => panic!("expected a check, got {other:?}"),
    }
}

#[track_caller]
fn refresh(s: &mut S) -> RefreshRequest {
    match s.poll_action() {
        Some(Action::Refresh(r)) => r,
        other => panic!("expected a refresh, got {other:?}"),
    }
}

fn new_tokens(n: u8) -> RefreshOutcome<'static> {
    const AT: [&[u8]; 4] = [b"at_0", b"at_1", b"at_2", b"at_3"];
    RefreshOutcome::Refreshed {
        access_token: AT[n as usize % 4],
        refresh_token: Some(b"rt_next"),
        expires_in: secs(3600),
    }
}

/// Signed in at T0 with a one-hour token and granted.
fn granted() -> S {
    let mut s = session();
    s.sign_in(T0, b"at_first", b"rt_first", secs(3600)).unwrap();
    let c = check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    drain(&mut s);
    assert_eq!(s.access(), Access::Granted);
    s
}

/// Drives `s` to its refresh-due timer and returns the refresh request.
fn to_refresh(s: &mut S) -> (Instant, RefreshRequest) {
    let due = s.poll_timeout().unwrap();
    s.handle_timeout(due);
    drain(s);
    (due, refresh(s))
}

#[test]
fn sign_in_checks_at_once_with_the_token() {
    let mut s = session();
    s.sign_in(T0, b"at_first", b"rt_first", secs(3600)).unwrap();
    let c = check(&mut s);
    assert_eq!(s.access_token(c.token), Some(&b"at_first"[..]));
    assert_eq!(s.access(), Access::Unknown);
}

#[test]
fn refreshes_sixty_seconds_ahead_of_expiry_then_rechecks() {
    // Without spreading, exactly the skew ahead.
    let cfg = SessionConfig {
        refresh_spread: Duration::ZERO,
        ..SessionConfig::DEFAULT
    };
    let mut s: S = Session::new(cfg, 9).unwrap();
    s.sign_in(T0, b"at_first", b"rt_first", secs(3600)).unwrap();
    let c = check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    drain(&mut s);
    let (due, r) = to_refresh(&mut s);
    assert_eq!(due, T0 + secs(3600 - 60));
    assert_eq!(s.refresh_token(), Some(&b"rt_first"[..]));
    s.handle_refresh_result(due, r.id, new_tokens(1));
    let c = check(&mut s);
    assert_eq!(c.attempt, 0);
    assert_eq!(s.access_token(c.token), Some(&b"at_1"[..]));
    assert_eq!(s.refresh_token(), Some(&b"rt_next"[..]));
    assert_eq!(s.access(), Access::Granted, "grant kept while re-checking");
    assert_eq!(s.counters().refreshes, 1);
}

#[test]
fn an_oversized_token_is_an_error_not_a_truncation() {
    let mut s = session();
    let long = [b'a'; 65];
    assert_eq!(
        s.sign_in(T0, &long, b"rt", secs(10)),
        Err(SignInError::TokenTooLong)
    );
    assert!(!s.status().signed_in);
    // From the server, an oversized token is a malformed (transient) refresh answer.
    let mut s = granted();
    let (due, r) = to_refresh(&mut s);
    let gen = s.status().generation;
    let big = RefreshOutcome::Refreshed {
        access_token: &long,
        refresh_token: None,
        expires_in: secs(3600),
    };
    s.handle_refresh_result(due, r.id, big);
    assert_eq!(s.status().generation, gen);
    assert_eq!(s.access_token(s.current_token().unwrap()), Some(&b"at_first"[..]));
    assert_eq!(s.counters().refresh_failures, 1);
}

#[test]
fn tokens_of_exactly_t_bytes_sign_in_and_a_refresh_token_one_longer_is_refused() {
    // R12: tokens of at most `T` bytes (64 here), each checked on its own; never truncated.
    let (at, rt) = ([b'a'; 64], [b'r'; 64]);
    let mut s = session();
    s.sign_in(T0, &at, &rt, secs(3600)).unwrap();
    assert_eq!(s.access_token(s.current_token().unwrap()), Some(&at[..]));
    assert_eq!(s.refresh_token(), Some(&rt[..]));
    let mut s = session();
    assert_eq!(
        s.sign_in(T0, b"at", &[b'r'; 65], secs(3600)),
        Err(SignInError::TokenTooLong)
    );
    assert!(!s.status().signed_in);
    assert_eq!(s.refresh_token(), None);
}

#[test]
fn callers_share_one_refresh_and_get_the_new_token_after_its_check() {
    let mut s = granted();
    let t = T0 + secs(3550); // inside the skew
    let w1 = s.request_token(t).unwrap();
    let w2 = s.request_token(t).unwrap();
    let (TokenReply::Wait(a), TokenReply::Wait(b)) = (w1, w2) else {
        panic!("{w1:?} {w2:?}")
    };
    let r = refresh(&mut s);
    assert!(s.poll_action().is_none(), "exactly one refresh");
    s.handle_refresh_result(t, r.id, new_tokens(2));
    assert!(
        waiters(&mut s).is_empty(),
        "waiters wait for the new generation's check (R3)"
    );
    let c = check(&mut s);
    s.handle_check_result(t, c.generation, c.attempt, CheckOutcome::Granted);
    let got = waiters(&mut s);
    assert_eq!(got, [(a, Ok(c.token)), (b, Ok(c.token))]);
    assert_eq!(s.access_token(c.token), Some(&b"at_2"[..]));
}

#[test]
fn a_caller_arriving_while_a_refreshed_token_is_checked_shares_that_refresh() {
    // R11: the refresh that just landed is the one callers share until its check settles
    // (R3); a caller arriving meanwhile waits for that check and starts no refresh of its own.
    let mut s = granted();
    let t = T0 + secs(3550); // inside the skew
    let TokenReply::Wait(a) = s.request_token(t).unwrap() else {
        panic!("inside the skew a caller waits for the refresh")
    };
    let r = refresh(&mut s);
    s.handle_refresh_result(t, r.id, new_tokens(2));
    let c = check(&mut s);
    let later = t + secs(3); // past the refresh floor (1 s)
    let TokenReply::Wait(b) = s.request_token(later).unwrap() else {
        panic!("a caller arriving during the check waits for it")
    };
    assert_eq!(s.poll_action(), None, "no second refresh");
    assert!(!s.refresh_in_flight());
    s.handle_check_result(later, c.generation, c.attempt, CheckOutcome::Granted);
    assert_eq!(waiters(&mut s), [(a, Ok(c.token)), (b, Ok(c.token))]);
    assert_eq!(s.counters().refreshes, 1);
}

/// Signed in at T0 with a token living 30 s, inside the 60 s skew: refreshed at once, and
/// answered at once with another 30 s token (refreshed again at half-life, T0 + 15 s). The
/// refresh floor after that start is T0 + 1 s (R11).
fn short_lived() -> S {
    let mut s = session();
    s.sign_in(T0, b"at_first", b"rt_first", secs(30)).unwrap();
    let r = refresh(&mut s);
    s.handle_refresh_result(
        T0,
        r.id,
        RefreshOutcome::Refreshed {
            access_token: b"at_1",
            refresh_token: None,
            expires_in: secs(30),
        },
    );
    drain(&mut s);
    while s.poll_action().is_some() {}
    s
}

#[test]
fn a_caller_inside_the_skew_held_back_by_the_refresh_floor_gets_the_valid_token() {
    // R11: the floor holds the next refresh back until T0 + 1 s; the token is still valid, so
    // the caller gets it at once rather than wait, and the refresh starts at the floor.
    let mut s = short_lived();
    let TokenReply::Ready(h) = s.request_token(T0 + Duration::from_millis(500)).unwrap() else {
        panic!("a valid token is handed out while the floor holds the refresh back")
    };
    assert_eq!(s.access_token(h), Some(&b"at_1"[..]));
    assert_eq!(s.poll_action(), None);
    assert_eq!(s.poll_timeout(), Some(T0 + secs(1)));
    s.handle_timeout(T0 + secs(1));
    assert!(matches!(s.poll_action(), Some(Action::Refresh(_))));
}

#[test]
fn a_caller_that_must_wait_gets_a_refresh_started_at_once() {
    // R11: inside the skew, past the floor, a caller waits for a refresh, and that refresh
    // starts now, not at the half-life the last answer planned (T0 + 15 s).
    let mut s = short_lived();
    let t = T0 + secs(5);
    let TokenReply::Wait(_) = s.request_token(t).unwrap() else {
        panic!("inside the skew a caller waits for the refresh")
    };
    assert!(s.refresh_in_flight());
    let r = refresh(&mut s);
    assert_eq!(r.started, t);
}

#[test]
fn a_fresh_token_is_handed_out_at_once() {
    let mut s = granted();
    let TokenReply::Ready(h) = s.request_token(T0 + secs(10)).unwrap() else {
        panic!()
    };
    assert_eq!(s.access_token(h), Some(&b"at_first"[..]));
    assert!(s.poll_action().is_none());
}

#[test]
fn the_waiter_table_is_bounded() {
    let mut s = granted();
    let t = T0 + secs(3550);
    for _ in 0..3 {
        s.request_token(t).unwrap();
    }
    assert_eq!(s.request_token(t), Err(TokenRequestError::WaitersFull));
    assert_eq!(s.waiting(), 3);
}

#[test]
fn logout_during_refresh_rejects_every_waiter() {
    let mut s = granted();
    let t = T0 + secs(3550);
    s.request_token(t).unwrap();
    s.request_token(t).unwrap();
    let r = refresh(&mut s);
    s.logout(t + secs(1));
    // The driver is told the refresh it runs no longer matters.
    assert_eq!(s.poll_action(), Some(Action::CancelRefresh(r.id)));
    let got = waiters(&mut s);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(_, r)| *r == Err(WaitError::NotAuthenticated)));
    // The refresh completing after logout changes nothing.
    let before = s.status();
    s.handle_refresh_result(t + secs(2), r.id, new_tokens(1));
    assert_eq!(s.status(), before);
    assert_eq!(s.current_token(), None);
    assert!(s.poll_action().is_none());
    assert!(waiters(&mut s).is_empty());
}

#[test]
fn a_401_on_the_check_inside_a_refresh_rejects_its_waiters() {
    let mut s = granted();
    let t = T0 + secs(3550);
    s.request_token(t).unwrap();
    let r = refresh(&mut s);
    s.handle_refresh_result(t, r.id, new_tokens(1));
    let c = check(&mut s);
    s.handle_check_result(t, c.generation, c.attempt, CheckOutcome::Unauthorized);
    let got = waiters(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, Err(WaitError::NotAuthenticated));
    assert_eq!(
        s.access_token(c.token),
        None,
        "the torn-down token is never handed out"
    );
    let st = s.status();
    assert_eq!(
        (st.signed_in, st.access, st.cause),
        (false, Access::Unknown, Some(Cause::Unauthorized))
    );
}

#[test]
fn two_refreshes_never_overlap() {
    let mut s = granted();
    let t = T0 + secs(3550);
    s.request_token(t).unwrap();
    let _r = refresh(&mut s);
    assert!(s.refresh_in_flight());
    // A 403 while the refresh runs does not start a second one.
    s.recheck_now(t + secs(1)).unwrap();
    let c = check(&mut s);
    s.handle_check_result(
        t + secs(1),
        c.generation,
        c.attempt,
        CheckOutcome::transient(TransientClass::Forbidden),
    );
    s.request_token(t + secs(1)).unwrap();
    assert!(s.poll_action().is_none());
    assert_eq!(s.counters().refreshes, 1);
}

#[test]
fn a_403_asks_for_exactly_one_early_refresh_per_generation() {
    let mut s = granted();
    let t = T0 + secs(100);
    let forbidden = CheckOutcome::transient(TransientClass::Forbidden);
    forbidden_recheck(&mut s, t);
    let ev = drain(&mut s);
    assert!(
        ev.contains(&SessionEvent::RefreshStarted {
            id: RefreshId(0),
            early: true
        }),
        "{ev:?}"
    );
    let r = refresh(&mut s);
    // The refresh fails transiently; later 403s of the same generation do not ask again.
    s.handle_refresh_result(t, r.id, RefreshOutcome::transient(TransientClass::ServerError));
    drain(&mut s);
    let mut early = 0;
    for i in 1..6 {
        let now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => s.handle_check_result(now, c.generation, c.attempt, forbidden),
                Action::Refresh(r) => {
                    s.handle_refresh_result(now, r.id, RefreshOutcome::transient(TransientClass::Connect))
                }
                _ => {}
            }
        }
        early += drain(&mut s)
            .iter()
            .filter(|e| matches!(e, SessionEvent::RefreshStarted { early: true, .. }))
            .count();
        assert!(s.status().signed_in, "step {i}");
    }
    assert_eq!(early, 0, "one early refresh per generation");
    // A successful refresh starts a new generation; while 403s continue without a definitive
    // answer, it does not ask again (no refresh storm against a backend that always says 403).
    // Run until the next refresh retry (checks meanwhile keep answering 403).
    let mut now = T0;
    let mut found = None;
    for _ in 0..50 {
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        drain(&mut s);
        while let Some(a) = s.poll_action() {
            match a {
                Action::Refresh(r) => found = Some(r),
                Action::Check(c) => s.handle_check_result(now, c.generation, c.attempt, forbidden),
                _ => {}
            }
        }
        drain(&mut s);
        if found.is_some() {
            break;
        }
    }
    let r = found.expect("a refresh retry comes due");
    s.handle_refresh_result(now, r.id, new_tokens(3));
    let c = check(&mut s);
    s.handle_check_result(now, c.generation, c.attempt, forbidden);
    assert!(!drain(&mut s)
        .iter()
        .any(|e| matches!(e, SessionEvent::RefreshStarted { early: true, .. })));
    // After a definitive answer, a later 403 may ask once more.
    let now = now + secs(10);
    s.recheck_now(now).unwrap();
    let c = check(&mut s);
    s.handle_check_result(now, c.generation, c.attempt, CheckOutcome::Granted);
    let now = now + secs(10);
    s.recheck_now(now).unwrap();
    let c = check(&mut s);
    s.handle_check_result(now, c.generation, c.attempt, forbidden);
    assert!(drain(&mut s)
        .iter()
        .any(|e| matches!(e, SessionEvent::RefreshStarted { early: true, .. })));
}

#[test]
fn transient_refresh_failures_back_off_one_second_doubling_to_five() {
    // Failures answered at once: the gaps are set by the floor of refresh starts (1, 2, 4, 5 s
    // apart). The backoff's own draw after a failure is pinned by
    // `slow_refresh_failures_are_retried_after_one_second_doubling_to_five`.
    let mut s = granted();
    let (mut now, r) = to_refresh(&mut s);
    s.handle_refresh_result(now, r.id, RefreshOutcome::transient(TransientClass::ServerError));
    let mut gaps = vec![];
    for _ in 0..6 {
        let next = s.poll_timeout().unwrap();
        gaps.push(next - now);
        now = next;
        s.handle_timeout(now);
        while let Some(a) = s.poll_action() {
            if let Action::Refresh(r) = a {
                s.handle_refresh_result(now, r.id, RefreshOutcome::transient(TransientClass::ServerError));
            }
        }
        drain(&mut s);
    }
    let ceilings = [1, 2, 4, 5, 5, 5];
    for (g, c) in gaps.iter().zip(ceilings) {
        assert!(*g <= secs(c), "{gaps:?}");
    }
    assert!(s.status().signed_in);
    assert_eq!(s.access(), Access::Granted);
}

#[test]
fn after_a_quiet_spell_a_failing_refresh_is_retried_within_one_second_again() {
    // R11: the backoff (1 s doubling to 5 s) is per run of refresh starts; healthy refreshes an
    // hour apart are no run, so the first failure after them is retried within 1 s, not held
    // back by a floor grown over the hours before.
    let mut s = granted();
    for n in 1..=2 {
        let (due, r) = to_refresh(&mut s);
        s.handle_refresh_result(due, r.id, new_tokens(n));
        let c = check(&mut s);
        s.handle_check_result(due, c.generation, c.attempt, CheckOutcome::Granted);
        drain(&mut s);
    }
    let (now, r) = to_refresh(&mut s);
    s.handle_refresh_result(now, r.id, RefreshOutcome::transient(TransientClass::ServerError));
    let next = drain(&mut s).into_iter().find_map(|e| match e {
        SessionEvent::RefreshFailed { next_attempt, .. } => Some(next_attempt),
        _ => None,
    });
    let next = next.expect("the failure is reported");
    assert!(
        next > now && next <= now + secs(1),
        "retried {:?} after the failure",
        next - now
    );
}

#[test]
fn slow_refresh_failures_are_retried_after_one_second_doubling_to_five() {
    // R11's retry backoff on its own: each refresh fails 6 s after it started, past the floor
    // of refresh starts (at most 5 s), so the delay after the k-th failure is the backoff's
    // full-jitter draw, in (0, min(5 s, 1 s * 2^k)]. Over many devices the draws reach past the
    // previous ceiling (it doubles) and never past 5 s (the cap).
    let ceilings = [1, 2, 4, 5, 5];
    let mut longest = [Duration::ZERO; 5];
    for seed in 0..300 {
        let mut s: S = Session::new(SessionConfig::DEFAULT, seed).unwrap();
        s.sign_in(T0, b"at_first", b"rt_first", secs(3600)).unwrap();
        let c = check(&mut s);
        s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
        drain(&mut s);
        let mut answer_at: Option<(Instant, RefreshId)> = None;
        let mut delays = vec![];
        while delays.len() < ceilings.len() {
            let timer = s.poll_timeout().expect("a refresh is owed");
            let now = match answer_at {
                Some((at, id)) if at <= timer => {
                    answer_at = None;
                    s.handle_refresh_result(at, id, RefreshOutcome::transient(TransientClass::ServerError));
                    at
                }
                _ => {
                    s.handle_timeout(timer);
                    timer
                }
            };
            while let Some(a) = s.poll_action() {
                match a {
                    Action::Refresh(r) => answer_at = Some((now + secs(6), r.id)),
                    Action::Check(c) => {
                        s.handle_check_result(now, c.generation, c.attempt, CheckOutcome::Granted)
                    }
                    _ => {}
                }
            }
            for e in drain(&mut s) {
                if let SessionEvent::RefreshFailed { next_attempt, .. } = e {
                    delays.push(next_attempt - now);
                }
            }
            waiters(&mut s);
        }
        for (k, d) in delays.iter().enumerate() {
            assert!(
                *d > Duration::ZERO && *d <= secs(ceilings[k]),
                "seed {seed}: retry {k} after {d:?}: {delays:?}"
            );
            longest[k] = longest[k].max(*d);
        }
        assert!(s.status().signed_in);
    }
    for k in 1..4 {
        assert!(
            longest[k] > secs(ceilings[k - 1]),
            "retry {k} never waited past {} s: the backoff does not double ({longest:?})",
            ceilings[k - 1]
        );
    }
}

/// Plays a token endpoint that answers every refresh at once with `expires_in`, and a check
/// endpoint that grants, until `horizon` (or 100,000 steps: a storm never advances the clock).
/// Returns the instants refreshes started at.
fn serve_tokens(s: &mut S, mut now: Instant, expires_in: Duration, horizon: Instant) -> Vec<Instant> {
    let mut starts = vec![];
    for _ in 0..100_000 {
        match s.poll_action() {
            Some(Action::Refresh(r)) => {
                starts.push(r.started);
                let fresh = RefreshOutcome::Refreshed {
                    access_token: b"at_short",
                    refresh_token: None,
                    expires_in,
                };
                s.handle_refresh_result(now, r.id, fresh);
            }
            Some(Action::Check(c)) => {
                s.handle_check_result(now, c.generation, c.attempt, CheckOutcome::Granted)
            }
            Some(_) => {}
            None => {
                let Some(next) = s.poll_timeout().filter(|&t| t <= horizon) else {
                    break;
                };
                now = next;
                s.handle_timeout(now);
            }
        }
        drain(s);
        waiters(s);
    }
    starts
}

/// R11: consecutive refresh starts are at least the refresh backoff's ceilings apart (1 s,
/// 2 s, 4 s, then 5 s), and a run of them keeps trickling rather than stopping.
#[track_caller]
fn assert_trickle(starts: &[Instant], span: u64) {
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let ceilings = [1, 2, 4];
    for (k, g) in gaps.iter().enumerate() {
        let floor = secs(ceilings.get(k).copied().unwrap_or(5));
        assert!(
            *g >= floor,
            "refresh {} started {g:?} after the previous one (floor {floor:?}); {} refreshes, first gaps {:?}",
            k + 1,
            starts.len(),
            &gaps[..gaps.len().min(6)]
        );
    }
    // 1 + 2 + 4 + 5 + 5 + ...: at most about span / 5 + 4 starts, and still refreshing.
    assert!(
        starts.len() as u64 <= span / 5 + 4,
        "{} refreshes in {span} s: {gaps:?}",
        starts.len()
    );
    assert!(
        starts.len() as u64 >= span / 5 - 1,
        "refreshing stopped: {gaps:?}"
    );
}

#[test]
fn a_token_endpoint_answering_expires_in_zero_gets_a_trickle_not_a_storm() {
    // Issue 14 item 2: `expires_in: 0` made `watch` post 9,947 refreshes in 5 s.
    for lifetime in [Duration::ZERO, Duration::from_millis(1), secs(1)] {
        let mut s = granted();
        let due = s.poll_timeout().unwrap(); // the first refresh, 60 s ahead of expiry
        let starts = serve_tokens(&mut s, T0, lifetime, due + secs(60));
        assert_eq!(starts[0], due);
        assert_trickle(&starts, 60);
        assert!(s.status().signed_in);
    }
}

#[test]
fn signing_in_with_an_expired_token_against_a_broken_endpoint_trickles() {
    // The stored token is already dead, and every new one is too.
    let mut s = session();
    s.sign_in(T0, b"at_dead", b"rt", Duration::ZERO).unwrap();
    let starts = serve_tokens(&mut s, T0, Duration::ZERO, T0 + secs(60));
    assert_eq!(
        starts[0], T0,
        "the first refresh of an expired sign-in starts at once"
    );
    assert_trickle(&starts, 60);
}

#[test]
fn signing_in_again_with_an_expired_token_waits_for_the_refresh_floor() {
    let mut s = session();
    s.restore(T0, b"at_dead", b"rt", Duration::ZERO).unwrap();
    let r = refresh(&mut s);
    assert_eq!(r.started, T0);
    drain(&mut s);
    // The app signs in again at once, with another dead token: no second refresh yet.
    s.sign_in(T0, b"at_dead2", b"rt2", Duration::ZERO).unwrap();
    assert_eq!(
        s.poll_action(),
        Some(Action::CancelRefresh(r.id)),
        "the old session's refresh"
    );
    assert_eq!(s.poll_action(), None, "a second refresh in the same instant");
    assert!(s.poll_timeout().unwrap() <= T0 + secs(1));
    s.handle_timeout(T0 + secs(1));
    let r2 = refresh(&mut s);
    assert_eq!(r2.started, T0 + secs(1));
}

#[test]
fn a_caller_asking_while_the_token_is_expired_waits_for_the_refresh_floor() {
    let mut s = session();
    s.sign_in(T0, b"at_first", b"rt_first", secs(3600)).unwrap();
    let c = check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    let (due, r) = to_refresh(&mut s);
    // The endpoint hands out a token that is already expired.
    let dead = RefreshOutcome::Refreshed {
        access_token: b"at_dead",
        refresh_token: None,
        expires_in: Duration::ZERO,
    };
    s.handle_refresh_result(due, r.id, dead);
    assert_eq!(
        s.poll_action(),
        None,
        "no refresh (and no check with a dead token) at once"
    );
    let TokenReply::Wait(w) = s.request_token(due).unwrap() else {
        panic!("an expired token is never handed out")
    };
    assert_eq!(s.poll_action(), None, "a caller does not bypass the floor");
    assert!(!s.refresh_in_flight());
    // One second later (the backoff's base) the refresh starts; its token serves the caller.
    let at = s.poll_timeout().unwrap();
    assert_eq!(at, due + secs(1));
    s.handle_timeout(at);
    let r2 = refresh(&mut s);
    s.handle_refresh_result(at, r2.id, new_tokens(2));
    let c = check(&mut s);
    s.handle_check_result(at, c.generation, c.attempt, CheckOutcome::Granted);
    let got = waiters(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, w);
    let h = got[0].1.unwrap();
    assert_eq!(s.access_token(h), Some(&b"at_2"[..]));
}

#[test]
fn a_403_cannot_start_refreshes_faster_than_the_floor() {
    let mut s = granted();
    let (due, r) = to_refresh(&mut s);
    s.handle_refresh_result(due, r.id, new_tokens(1));
    // The new token's check is answered 403 in the same instant: an early refresh is wanted,
    // but the last one started this instant.
    let c = check(&mut s);
    let forbidden = CheckOutcome::transient(TransientClass::Forbidden);
    s.handle_check_result(due, c.generation, c.attempt, forbidden);
    assert!(
        !matches!(s.poll_action(), Some(Action::Refresh(_))),
        "early refresh inside the floor"
    );
    // A still-valid token is handed out meanwhile.
    assert!(matches!(s.request_token(due).unwrap(), TokenReply::Ready(_)));
    let mut now = due;
    while now < due + secs(1) {
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        while let Some(a) = s.poll_action() {
            if let Action::Refresh(r) = a {
                assert!(r.started >= due + secs(1), "refresh at {:?}", r.started - due);
                return;
            }
        }
    }
    panic!("the early refresh never started");
}

/// Runs the session's timers from `from` until it hands out a refresh; returns the events
/// up to then and the refresh's start.
fn until_refresh_starts(s: &mut S, from: Instant) -> (Vec<SessionEvent>, Instant) {
    let mut seen = drain(s);
    let mut now = from;
    for _ in 0..100 {
        now = s.poll_timeout().expect("a timer");
        s.handle_timeout(now);
        while let Some(a) = s.poll_action() {
            match a {
                Action::Refresh(r) => {
                    seen.extend(drain(s));
                    return (seen, r.started);
                }
                Action::Check(c) => {
                    s.handle_check_result(now, c.generation, c.attempt, CheckOutcome::Granted)
                }
                _ => {}
            }
        }
        seen.extend(drain(s));
    }
    panic!("no refresh by {:?}: {seen:?}", now - from);
}

#[test]
fn an_early_refresh_held_back_by_the_floor_is_named_early_when_it_starts() {
    let forbidden = CheckOutcome::transient(TransientClass::Forbidden);
    let early_starts = |evs: &[SessionEvent]| -> Vec<bool> {
        evs.iter()
            .filter_map(|e| match e {
                SessionEvent::RefreshStarted { early, .. } => Some(*early),
                _ => None,
            })
            .collect()
    };
    // A refresh just started and landed; the new token's check answers 403 at once (R9): the
    // refresh it asks for waits for R11's floor, and when it starts it is the 403's (R13).
    let mut s = granted();
    let (due, r) = to_refresh(&mut s);
    s.handle_refresh_result(due, r.id, new_tokens(1));
    let c = check(&mut s);
    s.handle_check_result(due, c.generation, c.attempt, forbidden);
    let (evs, started) = until_refresh_starts(&mut s, due);
    assert!(started >= due + secs(1), "{:?}", started - due);
    assert_eq!(early_starts(&evs), [true], "{evs:?}");
    // Held back the same way, but the session ends and a new one signs in before the floor:
    // the new session's own refresh (its token inside the skew) is not the old 403's.
    let mut s = granted();
    let (due, r) = to_refresh(&mut s);
    s.handle_refresh_result(due, r.id, new_tokens(1));
    let c = check(&mut s);
    s.handle_check_result(due, c.generation, c.attempt, forbidden);
    s.logout(due);
    s.sign_in(due, b"at_9", b"rt_9", secs(30)).unwrap();
    let (evs, started) = until_refresh_starts(&mut s, due);
    assert!(started >= due + secs(1), "{:?}", started - due);
    assert_eq!(early_starts(&evs), [false], "{evs:?}");
}

#[test]
fn a_rejected_refresh_logs_out() {
    for outcome in [
        classify_refresh(400, br#"{"error":"invalid_grant"}"#, 1024),
        classify_refresh(401, b"", 1024),
    ] {
        let mut s = granted();
        let (due, r) = to_refresh(&mut s);
        s.handle_refresh_result(due, r.id, outcome);
        let st = s.status();
        assert_eq!(
            (st.signed_in, st.access, st.cause),
            (false, Access::Unknown, Some(Cause::Unauthorized))
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.counters().unauthorized_logouts, 1);
    }
}

#[test]
fn restoring_a_session_stays_unknown_until_its_first_check() {
    let mut s = session();
    s.restore(T0, b"at_stored", b"rt_stored", secs(1800)).unwrap();
    assert_eq!(s.access(), Access::Unknown);
    let c = check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    assert_eq!(s.access(), Access::Granted);
}

#[test]
fn restoring_an_expired_session_refreshes_before_checking() {
    let mut s = session();
    s.restore(T0, b"at_stored", b"rt_stored", Duration::ZERO).unwrap();
    let r = refresh(&mut s);
    assert!(s.poll_action().is_none(), "no check is sent with a dead token");
    assert_eq!(s.counters().transient_of(TransientClass::TokenExpired), 1);
    s.handle_refresh_result(T0 + secs(1), r.id, new_tokens(1));
    let c = check(&mut s);
    assert_eq!(s.access_token(c.token), Some(&b"at_1"[..]));
}

#[test]
fn an_expired_token_with_refresh_down_hands_waiters_unavailable_and_fails_closed() {
    let mut s = granted();
    let mut now = T0;
    let mut unavailable = 0;
    // The backend disappears: the refresh and every check fail until well past expiry.
    while now < T0 + secs(3600 + 600) {
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        if now > T0 + secs(3600) && s.waiting() == 0 {
            let _ = s.request_token(now);
        }
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => s.handle_check_result(
                    now,
                    c.generation,
                    c.attempt,
                    CheckOutcome::transient(TransientClass::Connect),
                ),
                Action::Refresh(r) => {
                    s.handle_refresh_result(now, r.id, RefreshOutcome::transient(TransientClass::Connect))
                }
                _ => {}
            }
        }
        unavailable += waiters(&mut s)
            .iter()
            .filter(|w| w.1 == Err(WaitError::Unavailable))
            .count();
        drain(&mut s);
    }
    assert!(unavailable > 0);
    assert_eq!(s.access(), Access::Denied);
    assert!(s.status().signed_in, "an outage does not sign the user out");
}

#[test]
fn refresh_classification_is_strict_and_says_why() {
    // R13: a transient refresh outcome carries its detail, as a check's does.
    let t = |class, detail| RefreshOutcome::transient_with(class, detail);
    let body = |e| t(TransientClass::InvalidBody, FailureDetail::Body(e));
    assert_eq!(classify_refresh(200, b"<html>", 4096), body(BodyError::Malformed));
    assert_eq!(
        classify_refresh(200, br#"{"access_token":"a","expires_in":"3600"}"#, 4096),
        body(BodyError::TokenSchema)
    );
    assert_eq!(
        classify_refresh(
            200,
            br#"{"access_token":"a","expires_in":1,"token_type":"mac"}"#,
            4096
        ),
        body(BodyError::TokenSchema)
    );
    assert_eq!(
        classify_refresh(
            200,
            br#"{"access_token":"a","access_token":"b","expires_in":1}"#,
            4096
        ),
        body(BodyError::TokenSchema)
    );
    assert_eq!(
        classify_refresh(200, br#"{"access_token":"a","expires_in":1}x"#, 4096),
        body(BodyError::Malformed)
    );
    assert_eq!(
        classify_refresh(200, b"{\"access_token\":\"\xff\",\"expires_in\":1}", 4096),
        body(BodyError::NotUtf8)
    );
    assert_eq!(
        classify_refresh(400, br#"{"error":"invalid_request"}"#, 4096),
        t(TransientClass::OtherStatus, FailureDetail::Status(400))
    );
    for (status, class) in [
        (503, TransientClass::ServerError),
        (500, TransientClass::ServerError),
        (429, TransientClass::Throttled),
        (403, TransientClass::Forbidden),
        (404, TransientClass::OtherStatus),
        (302, TransientClass::OtherStatus),
    ] {
        // A token body never rescues a non-200 status.
        let tokens = br#"{"access_token":"a","expires_in":60}"#;
        assert_eq!(
            classify_refresh(status, tokens, 4096),
            t(class, FailureDetail::Status(status)),
            "{status}"
        );
    }
    assert_eq!(
        FailureDetail::Body(BodyError::TokenSchema).to_string(),
        "body is not a usable token response"
    );
    assert!(matches!(
        classify_refresh(200, br#"{"access_token":"a","expires_in":60,"scope":"x"}"#, 4096),
        RefreshOutcome::Refreshed {
            refresh_token: None,
            ..
        }
    ));
}

#[test]
fn refreshes_are_spread_by_default_inside_the_ten_minutes_before_the_skew() {
    // R11: on by default, so a fleet that signed in together does not refresh together.
    let mut dues = vec![];
    for seed in 0..20 {
        let mut s: S = Session::new(SessionConfig::DEFAULT, seed).unwrap();
        s.sign_in(T0, b"at", b"rt", secs(3600)).unwrap();
        let c = check(&mut s);
        s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
        let due = s.poll_timeout().unwrap();
        assert!(due <= T0 + secs(3540) && due >= T0 + secs(2940), "{due:?}");
        dues.push(due);
    }
    dues.sort();
    dues.dedup();
    assert!(dues.len() >= 18, "devices must spread out: {dues:?}");
}

#[test]
fn refresh_keys_are_compared_after_unescaping() {
    let bad = RefreshOutcome::transient_with(
        TransientClass::InvalidBody,
        FailureDetail::Body(BodyError::TokenSchema),
    );
    // An escaped spelling is the same key (as R1 reads check bodies).
    assert_eq!(
        classify_refresh(200, br#"{"access\u005ftoken":"at","expires\u005fin":60}"#, 4096),
        RefreshOutcome::Refreshed {
            access_token: b"at",
            refresh_token: None,
            expires_in: secs(60),
        }
    );
    // So both spellings of a field are a duplicate: malformed, whichever comes first.
    for body in [
        &br#"{"access_token":"a","access\u005ftoken":"b","expires_in":60}"#[..],
        br#"{"access\u005ftoken":"b","access_token":"a","expires_in":60}"#,
        br#"{"access_token":"a","expires_in":60,"expires\u005fin":0}"#,
        br#"{"access_token":"a","expires_in":60,"refresh_token":"r","refresh\u005ftoken":"s"}"#,
        br#"{"access_token":"a","expires_in":60,"token_type":"Bearer","token\u005ftype":"mac"}"#,
    ] {
        assert_eq!(
            classify_refresh(200, body, 4096),
            bad,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Fields of nested objects are not the token's.
    assert_eq!(
        classify_refresh(
            200,
            br#"{"x":{"access_token":"b","expires_in":1},"access_token":"a","expires_in":60}"#,
            4096
        ),
        RefreshOutcome::Refreshed {
            access_token: b"a",
            refresh_token: None,
            expires_in: secs(60),
        }
    );
    // `token_type` compares after unescaping, ignoring case.
    assert!(matches!(
        classify_refresh(
            200,
            br#"{"access_token":"a","expires_in":1,"token_type":"b\u0065ARER"}"#,
            4096
        ),
        RefreshOutcome::Refreshed { .. }
    ));
}

#[test]
fn refresh_values_are_strict() {
    let bad = |e| RefreshOutcome::transient_with(TransientClass::InvalidBody, FailureDetail::Body(e));
    use BodyError::{Malformed, TokenSchema, TooLarge};
    for (body, why) in [
        // A token is handed out as written: one with an escape cannot be, so it is refused.
        (&br#"{"access_token":"a\/b","expires_in":60}"#[..], TokenSchema),
        (
            br#"{"access_token":"a","refresh_token":"r\u0041","expires_in":60}"#,
            TokenSchema,
        ),
        (br#"{"access_token":"","expires_in":60}"#, TokenSchema),
        (
            br#"{"access_token":"a","refresh_token":"","expires_in":60}"#,
            TokenSchema,
        ),
        (br#"{"access_token":null,"expires_in":60}"#, TokenSchema),
        (br#"{"access_token":"a","expires_in":-1}"#, TokenSchema),
        (br#"{"access_token":"a","expires_in":1.5}"#, TokenSchema),
        (br#"{"access_token":"a","expires_in":1e3}"#, TokenSchema),
        (
            br#"{"access_token":"a","expires_in":18446744073709551616}"#,
            TokenSchema,
        ),
        (br#"{"access_token":"a","expires_in":null}"#, TokenSchema),
        (br#"{"access_token":"a"}"#, TokenSchema),
        (br#"{"access_token":"a","expires_in":60,"x":"\ud800"}"#, Malformed),
        (br#"{"access_token":"a","expires_in":060}"#, Malformed),
        (br#"[{"access_token":"a","expires_in":60}]"#, TokenSchema),
    ] {
        assert_eq!(
            classify_refresh(200, body, 4096),
            bad(why),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        classify_refresh(200, br#"{"access_token":"a","refresh_token":null,"token_type":null,"expires_in":18446744073709551615}"#, 4096),
        RefreshOutcome::Refreshed {
            access_token: b"a",
            refresh_token: None,
            expires_in: Duration::from_secs(u64::MAX),
        }
    );
    let body = br#"{"access_token":"a","expires_in":60}"#;
    assert_eq!(classify_refresh(200, body, body.len() - 1), bad(TooLarge));
}

#[test]
fn invalid_grant_is_read_as_strictly() {
    let other = RefreshOutcome::transient_with(TransientClass::OtherStatus, FailureDetail::Status(400));
    assert_eq!(
        classify_refresh(400, br#"{"error":"invalid\u005fgrant"}"#, 4096),
        RefreshOutcome::Rejected
    );
    assert_eq!(
        classify_refresh(400, br#"{"err\u006fr":"invalid_grant","x":1}"#, 4096),
        RefreshOutcome::Rejected
    );
    for body in [
        &br#"{"error":"invalid_grant","error":"invalid_request"}"#[..],
        br#"{"error":"invalid_grant","err\u006fr":"invalid_grant"}"#,
        br#"{"error":"invalid_grant"}x"#,
        br#"{"x":{"error":"invalid_grant"}}"#,
        br#"{"error":"INVALID_GRANT"}"#,
        b"invalid_grant",
    ] {
        assert_eq!(
            classify_refresh(400, body, 4096),
            other,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn a_refresh_spread_smears_refreshes_ahead_of_the_skew() {
    let cfg = SessionConfig {
        refresh_spread: secs(300),
        ..SessionConfig::DEFAULT
    };
    let mut dues = vec![];
    for seed in 0..20 {
        let mut s: S = Session::new(cfg, seed).unwrap();
        s.sign_in(T0, b"at", b"rt", secs(3600)).unwrap();
        let c = check(&mut s);
        s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
        let due = s.poll_timeout().unwrap();
        assert!(due <= T0 + secs(3540) && due >= T0 + secs(3240), "{due:?}");
        dues.push(due);
    }
    dues.sort();
    dues.dedup();
    assert!(dues.len() >= 18, "devices must spread out: {dues:?}");
}

#[test]
fn a_late_401_for_the_current_generation_still_logs_out() {
    let mut s = session();
    s.sign_in(T0, b"at_1", b"rt_1", secs(3600)).unwrap();
    let c = check(&mut s);
    s.handle_timeout(T0 + secs(10)); // attempt 0 times out
    drain(&mut s);
    s.handle_check_result(T0 + secs(11), c.generation, c.attempt, CheckOutcome::Unauthorized);
    let ev = drain(&mut s);
    assert!(!s.status().signed_in, "{ev:?} {:?}", s.status());
    assert_eq!(s.status().cause, Some(Cause::Unauthorized));
}

#[test]
fn never_two_early_refreshes_in_one_generation() {
    let mut s = granted();
    let forbidden = CheckOutcome::transient(TransientClass::Forbidden);
    let gen = s.status().generation;
    // Answers every action at `now`: checks with `o`, refreshes fail transiently. Returns
    // how many early refreshes started.
    let run = |s: &mut S, now: Instant, o: CheckOutcome| {
        s.recheck_now(now).unwrap();
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => s.handle_check_result(now, c.generation, c.attempt, o),
                Action::Refresh(r) => {
                    s.handle_refresh_result(now, r.id, RefreshOutcome::transient(TransientClass::ServerError))
                }
                _ => {}
            }
        }
        drain(s)
            .iter()
            .filter(|e| matches!(e, SessionEvent::RefreshStarted { early: true, .. }))
            .count()
    };
    assert_eq!(run(&mut s, T0 + secs(100), forbidden), 1);
    // A definitive answer in the same generation, then another 403: no second early refresh.
    assert_eq!(run(&mut s, T0 + secs(110), CheckOutcome::Granted), 0);
    assert_eq!(run(&mut s, T0 + secs(120), forbidden), 0);
    assert_eq!(s.status().generation, gen, "still the same generation");
}

// ---- issue 11: explicit outputs ----

#[test]
fn a_refresh_landing_mid_retry_cancels_the_old_generations_attempt_by_its_own_name() {
    let mut s = granted();
    let g1 = s.status().generation;
    // The refresh comes due and runs; meanwhile a check fails and its retry starts.
    let (t, r) = to_refresh(&mut s);
    s.recheck_now(t).unwrap();
    let c = check(&mut s);
    s.handle_check_result(
        t,
        c.generation,
        c.attempt,
        CheckOutcome::transient(TransientClass::ServerError),
    );
    let at = s.poll_timeout().unwrap();
    assert!(
        at < t + secs(10),
        "the first retry slot comes before the refresh timeout"
    );
    s.handle_timeout(at);
    let retry = check(&mut s);
    assert_eq!((retry.generation, retry.attempt), (g1, 2));
    // The refresh lands while that retry runs.
    s.handle_refresh_result(at, r.id, new_tokens(1));
    assert_eq!(
        s.poll_action(),
        Some(Action::CancelCheck {
            generation: g1,
            attempt: 2
        }),
        "the driver is told which request to stop, by its own generation"
    );
    let fresh = check(&mut s);
    assert_ne!(fresh.generation, g1);
    assert_eq!(fresh.attempt, 0);
}

#[test]
fn an_attempt_that_times_out_is_cancelled_and_one_never_handed_out_is_not() {
    let mut s = granted();
    s.recheck_now(T0 + secs(10)).unwrap();
    let c = check(&mut s);
    s.handle_timeout(T0 + secs(20));
    assert_eq!(
        s.poll_action(),
        Some(Action::CancelCheck {
            generation: c.generation,
            attempt: c.attempt
        })
    );
    // A check started and superseded before the driver polled it is simply withdrawn.
    let mut s = granted();
    s.recheck_now(T0 + secs(10)).unwrap();
    s.logout(T0 + secs(11));
    assert_eq!(s.poll_action(), None);
}

#[test]
fn first_check_settled_comes_after_the_answer_and_once_per_generation() {
    let mut s = session();
    let g = s.sign_in(T0, b"at", b"rt", secs(3600)).unwrap();
    assert!(s.first_check_running());
    let c = check(&mut s);
    s.handle_check_result(T0, c.generation, c.attempt, CheckOutcome::Granted);
    let ev = drain(&mut s);
    let settled: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, SessionEvent::Gate(Event::FirstCheckSettled { .. })))
        .collect();
    assert_eq!(
        settled,
        [&SessionEvent::Gate(Event::FirstCheckSettled { generation: g })]
    );
    assert!(matches!(
        ev.last(),
        Some(SessionEvent::Gate(Event::FirstCheckSettled { .. }))
    ));
    assert!(!s.first_check_running());
    assert_eq!(
        s.status().since,
        Some(T0),
        "the instant of the last access change"
    );
}

#[test]
fn tokens_a_header_cannot_carry_are_refused_by_the_core() {
    let mut s = session();
    assert_eq!(
        s.sign_in(T0, b"", b"rt", secs(10)),
        Err(SignInError::TokenNotHeaderSafe)
    );
    assert_eq!(
        s.sign_in(T0, b"a b", b"rt", secs(10)),
        Err(SignInError::TokenNotHeaderSafe)
    );
    assert_eq!(
        s.sign_in(T0, b"at", b"r\r\nX: y", secs(10)),
        Err(SignInError::TokenNotHeaderSafe)
    );
    assert!(!s.status().signed_in);
    // No refresh token at all is allowed.
    assert!(s.sign_in(T0, b"at", b"", secs(10)).is_ok());
    // From the server, a token a header cannot carry is a malformed (transient) answer.
    let mut s = granted();
    s.request_token(T0 + secs(3550)).unwrap();
    let r = refresh(&mut s);
    let bad = RefreshOutcome::Refreshed {
        access_token: b"at\nInjected: 1",
        refresh_token: None,
        expires_in: secs(3600),
    };
    s.handle_refresh_result(T0 + secs(3550), r.id, bad);
    assert!(drain(&mut s).iter().any(|e| matches!(
        e,
        SessionEvent::RefreshFailed {
            class: TransientClass::InvalidBody,
            ..
        }
    )));
}

#[test]
fn a_heavy_sign_in_fits_the_event_queue() {
    // The worst input of SESSION_EVENT_CAPACITY's doc: a session whose refreshed generation's
    // attempt 0 is in flight past the deadline (set by a failure before the refresh), replaced
    // by a sign-in with an expired token: the attempt times out and settles the first check,
    // the gate fails closed, the old session ends, the new one starts, its check is held back
    // by the expired token and settles, and a refresh starts, all in one input. Every event
    // fits (R12).
    let mut s = session();
    s.sign_in(T0, b"at_1", b"rt_1", secs(100)).unwrap();
    let c = check(&mut s);
    let fail = CheckOutcome::transient(TransientClass::ServerError);
    s.handle_check_result(T0, c.generation, c.attempt, fail);
    drain(&mut s);
    // Retries fail until the refresh (due 40 s to 60 s before expiry) brings a new token.
    let refresh = loop {
        let now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        let mut refresh = None;
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => s.handle_check_result(now, c.generation, c.attempt, fail),
                Action::Refresh(r) => refresh = Some((now, r)),
                _ => {}
            }
        }
        drain(&mut s);
        if let Some(r) = refresh {
            break r;
        }
    };
    s.handle_refresh_result(refresh.0, refresh.1.id, new_tokens(2));
    let _hangs = check(&mut s);
    drain(&mut s);
    s.sign_in(T0 + secs(300), b"at_2", b"rt_2", Duration::ZERO)
        .unwrap();
    let ev = drain(&mut s);
    assert_eq!(ev.len(), 9, "the heavy input this test means: {ev:?}");
    assert!(ev.len() <= SESSION_EVENT_CAPACITY, "{ev:?}");
    assert_eq!(s.counters().events_lost, 0);
    assert!(matches!(s.poll_action(), Some(Action::CancelCheck { .. })));
}

/// A session built at compile time (`Session::new` is a `const fn`) and given its seed at
/// start-up with `reseed` draws exactly as one built with that seed: the same retry instant
/// after a transient failure (R6). Another seed draws another instant.
#[test]
fn a_reseeded_const_session_draws_as_one_built_with_the_seed() {
    const BUILT: Result<S, ConfigError> = Session::new(SessionConfig::DEFAULT, 0);
    let retry_after_a_failure = |mut s: S| {
        s.sign_in(T0, b"at", b"rt", secs(3600)).unwrap();
        let c = check(&mut s);
        s.handle_check_result(
            T0,
            c.generation,
            c.attempt,
            CheckOutcome::transient(TransientClass::Io),
        );
        s.status().next_attempt
    };
    let mut reseeded = BUILT.unwrap();
    reseeded.reseed(9);
    let retry = retry_after_a_failure(reseeded);
    assert!(retry.is_some());
    assert_eq!(retry, retry_after_a_failure(session()));
    let mut other = BUILT.unwrap();
    other.reseed(10);
    assert_ne!(retry_after_a_failure(other), retry);
}

// ---- R13: a refresh failure says what exactly went wrong ----

/// The `(class, detail)` of every `RefreshFailed` in `events`.
fn refresh_failures(events: &[SessionEvent]) -> Vec<(TransientClass, FailureDetail)> {
    events
        .iter()
        .filter_map(|e| match *e {
            SessionEvent::RefreshFailed { class, detail, .. } => Some((class, detail)),
            _ => None,
        })
        .collect()
}

/// Steps `s` through its timers (granting the checks they start) to the next refresh.
fn next_refresh(s: &mut S) -> (Instant, RefreshRequest) {
    for _ in 0..20 {
        let now = s.poll_timeout().expect("a timer");
        s.handle_timeout(now);
        while let Some(a) = s.poll_action() {
            match a {
                Action::Refresh(r) => return (now, r),
                Action::Check(c) => {
                    s.handle_check_result(now, c.generation, c.attempt, CheckOutcome::Granted)
                }
                _ => {}
            }
        }
    }
    panic!("no refresh within 20 timers");
}

#[test]
fn a_refresh_failing_on_an_expired_certificate_says_so_in_the_event_and_the_status() {
    let mut s = granted();
    let (due, r) = to_refresh(&mut s);
    let expired = FailureDetail::Tls(TlsFailure::Expired);
    s.handle_refresh_result(
        due,
        r.id,
        RefreshOutcome::transient_with(TransientClass::Tls, expired),
    );
    let ev = drain(&mut s);
    assert_eq!(refresh_failures(&ev), [(TransientClass::Tls, expired)], "{ev:?}");
    assert_eq!(
        s.status().last_failure,
        Some(LastFailure {
            class: TransientClass::Tls,
            detail: expired,
            at: due,
        })
    );
    // The next failure, a 503 from the server, replaces it: the status shows the last one.
    let (retry, r) = next_refresh(&mut s);
    s.handle_refresh_result(retry, r.id, classify_refresh(503, b"", 4096));
    let ev = drain(&mut s);
    let http_503 = FailureDetail::Status(503);
    assert_eq!(refresh_failures(&ev), [(TransientClass::ServerError, http_503)]);
    let last = s.status().last_failure.expect("a failure is recorded");
    assert_eq!(
        (last.class, last.detail, last.at),
        (TransientClass::ServerError, http_503, retry)
    );
    assert_eq!(last.detail.to_string(), "HTTP 503");
}

#[test]
fn a_refresh_failure_during_a_check_is_still_the_last_failure() {
    // Signed in inside the skew: the refresh runs beside the first check. The check decides
    // the streak (R5), but the status still names the refresh's failure, the last one (R13).
    let mut s = session();
    s.sign_in(T0, b"at", b"rt", secs(30)).unwrap();
    let (mut c, mut r) = (None, None);
    while let Some(a) = s.poll_action() {
        match a {
            Action::Check(x) => c = Some(x),
            Action::Refresh(x) => r = Some(x),
            _ => {}
        }
    }
    let (c, r) = (c.expect("the first check"), r.expect("a refresh"));
    let refused = FailureDetail::Net(NetFailure::Refused);
    let t1 = T0 + Duration::from_millis(20);
    s.handle_refresh_result(
        t1,
        r.id,
        RefreshOutcome::transient_with(TransientClass::Connect, refused),
    );
    assert_eq!(
        refresh_failures(&drain(&mut s)),
        [(TransientClass::Connect, refused)]
    );
    assert_eq!(
        s.status().last_failure.map(|l| (l.detail, l.at)),
        Some((refused, t1))
    );
    // A grant does not erase the history.
    s.handle_check_result(t1, c.generation, c.attempt, CheckOutcome::Granted);
    assert_eq!(s.access(), Access::Granted);
    assert_eq!(s.status().last_failure.map(|l| l.detail), Some(refused));
}

#[test]
fn a_refresh_that_times_out_or_brings_an_unusable_token_says_why() {
    // Timed out by the session itself: "attempt timed out".
    let mut s = granted();
    let (due, _r) = to_refresh(&mut s);
    let late = due + SessionConfig::DEFAULT.refresh_timeout;
    s.handle_timeout(late);
    let timeout = FailureDetail::Net(NetFailure::Timeout);
    assert_eq!(
        refresh_failures(&drain(&mut s)),
        [(TransientClass::Timeout, timeout)]
    );
    assert_eq!(
        s.status().last_failure.map(|l| (l.detail, l.at)),
        Some((timeout, late))
    );
    // A token longer than the session stores (64 bytes here): not a usable token response.
    let (retry, r) = next_refresh(&mut s);
    let long = [b'a'; 65];
    let outcome = RefreshOutcome::Refreshed {
        access_token: &long,
        refresh_token: None,
        expires_in: secs(3600),
    };
    s.handle_refresh_result(retry, r.id, outcome);
    let unusable = FailureDetail::Body(BodyError::TokenSchema);
    assert_eq!(
        refresh_failures(&drain(&mut s)),
        [(TransientClass::InvalidBody, unusable)]
    );
    assert_eq!(s.status().last_failure.map(|l| l.detail), Some(unusable));
    assert_eq!(s.status().generation.0, 1, "the session kept its token");
}

#[test]
fn refresh_failures_are_written_with_their_detail() {
    let e = SessionEvent::RefreshFailed {
        class: TransientClass::Tls,
        detail: FailureDetail::Tls(TlsFailure::UnknownIssuer),
        next_attempt: T0 + secs(2),
    };
    let mut line = String::new();
    write_event_json(&mut line, &e, T0, T0).unwrap();
    assert_eq!(
        line,
        r#"{"t_ms":0,"event":"refresh_failed","class":"tls","detail":"certificate: unknown issuer","next_attempt_ms":2000}"#
    );
}

/// A re-check at `t` answered 403 (R9).
fn forbidden_recheck(s: &mut S, t: Instant) {
    s.recheck_now(t).unwrap();
    let c = check(s);
    let forbidden = CheckOutcome::transient(TransientClass::Forbidden);
    s.handle_check_result(t, c.generation, c.attempt, forbidden);
}

/// Runs `s` from `from` to `until` against a token endpoint that always fails and a check
/// endpoint that answers `answer`; returns when each check and each refresh started.
fn token_endpoint_down(
    s: &mut S,
    from: Instant,
    until: Instant,
    answer: CheckOutcome,
) -> (Vec<Instant>, Vec<Instant>) {
    let (mut checks, mut refreshes) = (Vec::new(), Vec::new());
    let mut now = from;
    loop {
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => {
                    checks.push(now);
                    s.handle_check_result(now, c.generation, c.attempt, answer);
                }
                Action::Refresh(r) => {
                    refreshes.push(now);
                    let down = RefreshOutcome::transient(TransientClass::ServerError);
                    s.handle_refresh_result(now, r.id, down);
                }
                _ => {}
            }
        }
        drain(s);
        match s.poll_timeout() {
            Some(t) if t <= until => {
                now = t.max(now);
                s.handle_timeout(now);
            }
            _ => return (checks, refreshes),
        }
    }
}

#[test]
fn a_token_endpoint_that_stays_down_starts_one_check_run_not_a_check_per_refresh_retry() {
    // R5 + R11 + R9: after one 403 the session refreshes early; the token endpoint is down
    // for the rest of the token's hour while the check endpoint grants. The refreshes go on
    // at R11's pace (every 5 s at most); the fail-closed clock starts once for the run, so
    // its check settles the verdict. It was one check per refresh retry: about 480 an hour.
    let mut s = granted();
    let t = T0 + secs(100);
    forbidden_recheck(&mut s, t);
    let expiry = T0 + secs(3600);
    let before_expiry = Instant::from_micros(expiry.as_micros() - 1);
    let (checks, refreshes) = token_endpoint_down(&mut s, t, before_expiry, CheckOutcome::Granted);
    assert!(
        refreshes.len() > 600,
        "R11 keeps trying: {} refreshes",
        refreshes.len()
    );
    assert!(
        checks.len() <= 3,
        "one run's checks, not one per refresh retry: {} checks at {:?}",
        checks.len(),
        &checks[..checks.len().min(10)]
    );
    assert_eq!(s.access(), Access::Granted);
    let last = s.status().last_failure.expect("the last refresh failure");
    assert_eq!(
        last.at,
        *refreshes.last().unwrap(),
        "R13: every failure is the last one in turn"
    );

    // Expired: no check goes out with a dead token; the first failure of the expired run
    // starts the clock once more (R5), so the gate fails closed a budget later, and the token
    // endpoint gets the probe pace from then on.
    let (checks, refreshes) = token_endpoint_down(&mut s, expiry, expiry + secs(3600), CheckOutcome::Granted);
    assert_eq!(checks, []);
    assert!(refreshes.len() < 30, "{}", refreshes.len());
    let status = s.status();
    assert_eq!(
        (status.access, status.cause),
        (Access::Denied, Some(Cause::FailedClosed))
    );
    assert_eq!(status.since, Some(refreshes[0] + GateConfig::DEFAULT.budget));
}

#[test]
fn a_refresh_that_cannot_reach_the_backend_still_fails_the_gate_closed_at_its_deadline() {
    // R5: offline at the hourly refresh: the refresh's failure starts the clock, every check
    // of that run fails, and the gate is Denied at the deadline although refreshes go on.
    let mut s = granted();
    let (due, r) = to_refresh(&mut s);
    s.handle_refresh_result(due, r.id, RefreshOutcome::transient(TransientClass::Connect));
    let deadline = s.status().reverifying_until.expect("the clock started");
    assert_eq!(deadline, due + GateConfig::DEFAULT.budget);
    let offline = CheckOutcome::transient(TransientClass::Connect);
    let (checks, _) = token_endpoint_down(&mut s, due, deadline, offline);
    assert!(!checks.is_empty(), "the run's retries went out");
    assert_eq!(s.access(), Access::Denied);
    assert_eq!(s.status().cause, Some(Cause::FailedClosed));
}
