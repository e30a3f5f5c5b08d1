//! Tests of the session simulator itself: it is deterministic per seed, a shorter budget
//! replays a prefix, it exercises the situations that matter, and a deliberately wrong session
//! (the real `Session` inside a wrapper that changes one behaviour) is caught by random search
//! for each of I6–I9 and shrunk to its shortest failing prefix.

use accessgate::{
    Action, Cause, CheckOutcome, Counters, Duration, Generation, Instant, RefreshId, RefreshOutcome,
    RefreshRequest, Session, SessionConfig, SessionEvent, Status, TokenHandle, TokenReply, WaitError,
    WaiterId,
};
use accessgate_sim::session::{FixedScenario, SessionError, SessionMachine, SessionScenario, FAMILIES};
use accessgate_sim::{check_seed, check_seeds, run, Coverage, Invariant};

#[test]
fn same_seed_same_trace_and_shorter_budget_replays_a_prefix() {
    for seed in [0, 1, 2, 3, 4242, u64::MAX] {
        let a = run::<SessionScenario>(seed, None, true);
        let b = run::<SessionScenario>(seed, None, true);
        assert!(!a.failed(), "seed {seed}: {:?}", a.outcome);
        assert_eq!(a.trace, b.trace, "seed {seed} is not deterministic");
        assert_eq!(a.world, b.world);
        let k = a.steps / 2;
        let prefix = run::<SessionScenario>(seed, Some(k), true);
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
        .map(|s| run::<SessionScenario>(s, Some(1), true).world)
        .collect();
    assert!(worlds.len() >= 60, "{} distinct worlds of 64", worlds.len());
}

#[test]
fn every_family_exercises_refreshes_waiters_and_races() {
    for family in 0..FAMILIES {
        let seeds = (0..2_000u64).map(|i| 1_000_000 + i * FAMILIES + family);
        let summary = check_seeds::<SessionScenario>(seeds).unwrap_or_else(|f| panic!("\n{f}"));
        let c: &Coverage = &summary.coverage;
        for key in [
            "grants",
            "failed_closed",
            "refreshes",
            "refresh_failures",
            "unauthorized",
            "logouts",
            "stale_dropped",
            "token_expired",
            "restores",
            "restored_expired",
            "short_lifetimes",
            "broken_endpoint_worlds",
            "storm_answers",
            "refreshes_at_floor",
            "oversized_tokens",
            "checks_duplicated",
            "checks_forged",
            "checks_lost",
            "forbidden",
            "unauthorized_answers",
            "refreshes_late",
            "refreshes_old_id",
            "refreshes_lost",
            "refreshed_short",
            "rejected",
            "refresh_transient",
            "ready",
            "waits",
            "waiters_full",
            "waiter_ok",
            "waiter_not_authenticated",
            "waiter_unavailable",
            "woke_early",
            "overslept",
            "backdated",
        ] {
            assert!(c.get(key) > 0, "family {family} never exercised {key}: {c}");
        }
    }
}

// ---- deliberately wrong sessions: the real one, wrapped, with one behaviour changed ----

/// Which wrong behaviour a [`Wrong`] session has.
const LEAKS_TOKEN_AT_LOGOUT: u8 = 0;
const REFRESH_PER_CALLER: u8 = 1;
const RETRIES_AFTER_401: u8 = 2;
const HANDS_OUT_WITHOUT_WAITING: u8 = 3;

/// The real `Session<3, 2, 16>` with one wrong behaviour `K`:
/// - [`LEAKS_TOKEN_AT_LOGOUT`]: waiters that the session rejects with `NotAuthenticated` get
///   `Ok` with the last handle the wrapper handed out instead (a cache in front of the session);
/// - [`REFRESH_PER_CALLER`]: a caller that has to wait while a refresh runs starts a refresh
///   of its own (an extra `Action::Refresh` with a fresh id);
/// - [`RETRIES_AFTER_401`]: after a 401 ended the session, the last check is sent once more
///   ("maybe it was a glitch");
/// - [`HANDS_OUT_WITHOUT_WAITING`]: a caller that would have to wait gets the current token
///   at once (`Ready`), whatever its expiry; the session's answer to it is swallowed.
struct Wrong<const K: u8> {
    inner: Session<3, 2, 16>,
    last_handle: Option<TokenHandle>,
    extra: Option<Action>,
    next_extra_id: u32,
    last_check: Option<Action>,
    swallowed: Vec<WaiterId>,
}

impl<const K: u8> Wrong<K> {
    /// Called after every input.
    fn after_input(&mut self) {
        if K == RETRIES_AFTER_401 {
            let s = self.inner.status();
            if !s.signed_in && s.cause == Some(Cause::Unauthorized) {
                self.extra = self.last_check.take();
            }
        }
    }
}

impl<const K: u8> SessionMachine for Wrong<K> {
    const WAITERS: usize = 2;
    const TOKEN_CAPACITY: usize = 16;
    fn name() -> String {
        format!("Wrong<{K}>(Session<3, 2, 16>)")
    }
    fn create(config: SessionConfig, seed: u64) -> Self {
        Wrong {
            inner: Session::new(config, seed).unwrap(),
            last_handle: None,
            extra: None,
            next_extra_id: 1 << 30,
            last_check: None,
            swallowed: Vec::new(),
        }
    }
    fn sign_in(&mut self, now: Instant, a: &[u8], r: &[u8], e: Duration) -> Result<Generation, SessionError> {
        let x = SessionMachine::sign_in(&mut self.inner, now, a, r, e);
        self.after_input();
        x
    }
    fn restore(&mut self, now: Instant, a: &[u8], r: &[u8], e: Duration) -> Result<Generation, SessionError> {
        let x = SessionMachine::restore(&mut self.inner, now, a, r, e);
        self.after_input();
        x
    }
    fn logout(&mut self, now: Instant) -> Result<(), SessionError> {
        let x = SessionMachine::logout(&mut self.inner, now);
        self.after_input();
        x
    }
    fn request_token(&mut self, now: Instant) -> Result<TokenReply, SessionError> {
        let refreshing = self.inner.refresh_in_flight();
        let x = SessionMachine::request_token(&mut self.inner, now);
        match x {
            Ok(TokenReply::Ready(h)) => self.last_handle = Some(h),
            Ok(TokenReply::Wait(id)) => {
                if K == REFRESH_PER_CALLER && refreshing {
                    self.next_extra_id += 1;
                    self.extra = Some(Action::Refresh(RefreshRequest {
                        id: RefreshId(self.next_extra_id),
                        timeout: self.inner.config().refresh_timeout,
                        started: now,
                    }));
                }
                if K == HANDS_OUT_WITHOUT_WAITING {
                    if let Some(h) = self.inner.current_token() {
                        self.swallowed.push(id);
                        self.after_input();
                        return Ok(TokenReply::Ready(h));
                    }
                }
            }
            Err(_) => {}
        }
        self.after_input();
        x
    }
    fn handle_check_result(
        &mut self,
        now: Instant,
        g: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) -> Result<(), SessionError> {
        let x = SessionMachine::handle_check_result(&mut self.inner, now, g, attempt, outcome);
        self.after_input();
        x
    }
    fn handle_refresh_result(
        &mut self,
        now: Instant,
        id: RefreshId,
        outcome: RefreshOutcome<'_>,
    ) -> Result<(), SessionError> {
        let x = SessionMachine::handle_refresh_result(&mut self.inner, now, id, outcome);
        self.after_input();
        x
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let x = SessionMachine::handle_timeout(&mut self.inner, now);
        self.after_input();
        x
    }
    fn recheck_now(&mut self, now: Instant) -> Result<(), SessionError> {
        let x = SessionMachine::recheck_now(&mut self.inner, now);
        self.after_input();
        x
    }
    fn poll_action(&mut self) -> Option<Action> {
        let a = self.inner.poll_action().or_else(|| self.extra.take());
        if let Some(Action::Check(_)) = a {
            self.last_check = a;
        }
        a
    }
    fn poll_waiter(&mut self) -> Option<(WaiterId, Result<TokenHandle, WaitError>)> {
        loop {
            let (id, r) = self.inner.poll_waiter()?;
            if let Some(i) = self.swallowed.iter().position(|&w| w == id) {
                self.swallowed.swap_remove(i);
                continue;
            }
            return match r {
                Ok(h) => {
                    self.last_handle = Some(h);
                    Some((id, Ok(h)))
                }
                Err(WaitError::NotAuthenticated) if K == LEAKS_TOKEN_AT_LOGOUT => match self.last_handle {
                    Some(h) => Some((id, Ok(h))),
                    None => Some((id, r)),
                },
                Err(_) => Some((id, r)),
            };
        }
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.inner.poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn access_token(&self, h: TokenHandle) -> Option<&[u8]> {
        self.inner.access_token(h)
    }
    fn refresh_token(&self) -> Option<&[u8]> {
        self.inner.refresh_token()
    }
    fn current_token(&self) -> Option<TokenHandle> {
        self.inner.current_token()
    }
    fn expires_at(&self) -> Option<Instant> {
        self.inner.expires_at()
    }
    fn refresh_in_flight(&self) -> bool {
        self.inner.refresh_in_flight()
    }
    fn waiting(&self) -> usize {
        self.inner.waiting() - self.swallowed.len()
    }
    fn status(&self) -> Status {
        self.inner.status()
    }
    fn counters(&self) -> Counters {
        let mut c = *self.inner.counters();
        if K == REFRESH_PER_CALLER {
            // Count the extra refreshes too, so only I7 tells this wrapper apart.
            c.refreshes += self.next_extra_id - (1 << 30);
        }
        c
    }
}

#[track_caller]
fn wrong_session_is_caught_and_shrunk<const K: u8>(expected: Invariant) {
    let failure = (0..4_000u64)
        .find_map(|seed| check_seed::<FixedScenario<Wrong<K>>>(seed).err())
        .unwrap_or_else(|| panic!("wrong session {K} survived 4000 seeds"));
    let v = failure.violation().expect("the shrunk run fails");
    assert_eq!(
        v.invariant, expected,
        "wrong session {K} caught as the wrong invariant:\n{failure}"
    );
    // Shrunk: the trace ends at the failing step, and one step fewer passes.
    let step = failure.shrunk.outcome.as_ref().unwrap_err().step;
    assert_eq!(failure.shrunk.steps, step + 1);
    assert!(failure.shrunk.steps <= failure.original_steps);
    assert_eq!(failure.shrunk.trace.len(), failure.shrunk.steps);
    if step > 0 {
        assert!(
            !run::<FixedScenario<Wrong<K>>>(failure.seed, Some(step), false).failed(),
            "not the shortest prefix"
        );
    }
    let report = failure.to_string();
    assert!(report.contains(&format!("seed {}", failure.seed)), "{report}");
    println!("wrong session {K} ({expected:?}) caught:\n{report}");
}

#[test]
fn a_session_that_leaks_the_token_at_logout_breaks_i6() {
    wrong_session_is_caught_and_shrunk::<LEAKS_TOKEN_AT_LOGOUT>(Invariant::I6);
}

#[test]
fn a_session_that_refreshes_per_caller_breaks_i7() {
    wrong_session_is_caught_and_shrunk::<REFRESH_PER_CALLER>(Invariant::I7);
}

#[test]
fn a_session_that_retries_after_a_401_breaks_i8() {
    wrong_session_is_caught_and_shrunk::<RETRIES_AFTER_401>(Invariant::I8);
}

#[test]
fn a_session_that_hands_out_without_waiting_breaks_i9() {
    wrong_session_is_caught_and_shrunk::<HANDS_OUT_WITHOUT_WAITING>(Invariant::I9);
}

/// The wrapper itself is faithful when it changes nothing: the real session inside
/// `FixedScenario` passes (the wrappers above differ from it only in their twist).
#[test]
fn the_unwrapped_session_passes_in_a_fixed_scenario() {
    let summary =
        check_seeds::<FixedScenario<Session<3, 2, 16>>>(0..2_000).unwrap_or_else(|f| panic!("\n{f}"));
    assert_eq!(summary.scenarios, 2_000);
}
