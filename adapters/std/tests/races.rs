//! A hostile review of the adapter's concurrency (src/driver.rs): callers that go away at every
//! await point, sessions replaced or logged out under a caller's own check, shutdowns and
//! dropped runtimes with everything pending, and more token callers than the waiter table
//! holds. Real loopback HTTP against the reference backend; every test runs on the
//! current-thread and on the multi-thread runtime, and is bounded in time (a hang fails).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration as StdDuration;

use accessgate::{Access, Cause, Event, SessionEvent};
use accessgate_backend::{Endpoint, Fault};
use accessgate_std::{
    AccessGate, GateClientConfig, GateError, Snapshot, TokenError, Tokens, MAX_TOKEN_WAITERS,
};
use common::*;
use tokio::sync::broadcast;
use tokio::time::Instant as TokioInstant;

/// Each test body runs twice: on a current-thread runtime and on a two-worker multi-thread
/// runtime, under a 10 s bound.
macro_rules! flavours {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "current_thread")]
            async fn current_thread() {
                within(StdDuration::from_secs(10), super::$name()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multi_thread() {
                within(StdDuration::from_secs(10), super::$name()).await;
            }
        }
    };
}

/// `f`, or a failed test (naming the caller's line) if it takes longer than `bound`.
#[track_caller]
fn within<T>(bound: StdDuration, f: impl Future<Output = T>) -> impl Future<Output = T> {
    let at = std::panic::Location::caller();
    async move {
        tokio::time::timeout(bound, f)
            .await
            .unwrap_or_else(|_| panic!("exceeded its {bound:?} bound at {at} (a hang)"))
    }
}

/// Polls the inner future until it has returned `Pending` `limit` times, then drops it:
/// `None` if dropped, `Some(output)` if it finished first. Sweeping `limit` from 1 drops a call
/// at each of its await points in turn.
struct DropAfter<F: Future> {
    inner: Option<Pin<Box<F>>>,
    pending: usize,
    limit: usize,
}

fn drop_after<F: Future>(inner: F, limit: usize) -> DropAfter<F> {
    DropAfter {
        inner: Some(Box::pin(inner)),
        pending: 0,
        limit,
    }
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(out) = inner.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        self.pending += 1;
        if self.pending >= self.limit {
            self.inner = None; // dropped here, mid-call
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

fn no_rate_limit(c: &mut GateClientConfig) {
    c.session.gate.min_recheck_interval = accessgate::Duration::ZERO;
}

/// Attempts and refreshes that hang are not timed out during the test (3 s), so a pending
/// call can only end by the gate closing, however slowly a loaded machine runs the test.
fn slow_timeouts(c: &mut GateClientConfig) {
    c.session.gate.attempt_timeout = accessgate::Duration::from_secs(3);
    c.session.gate.budget = accessgate::Duration::from_secs(10);
    c.session.refresh_timeout = accessgate::Duration::from_secs(3);
}

/// Waits until no attempt is in flight and `attempts` check attempts were started.
async fn settled(h: &Harness, attempts: u32) -> Snapshot {
    h.wait_for(StdDuration::from_secs(2), |s| {
        s.counters.attempts == attempts && s.status.attempt_in_flight.is_none()
    })
    .await
}

/// After a caller went away: its attempt still reached the session (the answer, not a
/// timeout), nothing is in flight, access is the backend's answer, and the backend saw
/// exactly the attempts the session counted.
async fn assert_answered(h: &Harness, before: Snapshot, allowed: bool, what: &str) {
    let s = settled(h, before.counters.attempts + 1).await;
    let want = if allowed { Access::Granted } else { Access::Denied };
    assert_eq!(s.status.access, want, "{what}: {s:?}");
    assert_eq!(
        (
            s.counters.grants - before.counters.grants,
            s.counters.denials - before.counters.denials
        ),
        (u32::from(allowed), u32::from(!allowed)),
        "{what}: the answer reached the session once"
    );
    assert_eq!(
        s.counters.transient_total(),
        0,
        "{what}: nothing timed out or failed"
    );
    assert_eq!(s.counters.stale_dropped, 0, "{what}");
    assert_eq!(
        h.control.counts().endpoint_total(Endpoint::Check),
        u64::from(s.counters.attempts),
        "{what}: one request per attempt"
    );
}

/// A `recheck()` that returned has handed its answer to the session: the state read right
/// after it shows the answer (no wait).
fn assert_read_at_return(h: &Harness, before: Snapshot, allowed: bool) {
    let s = h.gate.snapshot();
    let want = if allowed { Access::Granted } else { Access::Denied };
    assert_eq!(s.counters.attempts, before.counters.attempts + 1, "{s:?}");
    assert_eq!(
        (s.status.access, s.status.attempt_in_flight),
        (want, None),
        "{s:?}"
    );
}

// ---- 1. callers that go away at every await point -------------------------------------------

/// R10 + R4: a `recheck()` dropped after its k-th pending poll, for every k until one call
/// finishes, then dropped by timeouts from 0 ms to past the answer: each time the session gets
/// the backend's answer (access flips with it), nothing stays in flight, nothing times out.
async fn recheck_dropped_at_every_await_point_still_answers() {
    let h = Harness::with(Scheme::Http, no_rate_limit).await;
    assert_eq!(h.sign_in().await.access, Access::Granted);
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(40));
    let mut finished = false;
    for limit in 1..=40 {
        let allowed = limit % 2 == 0;
        h.control.set_access(USER, allowed);
        let before = h.gate.snapshot();
        match drop_after(h.gate.recheck(), limit).await {
            None => assert_answered(&h, before, allowed, &format!("dropped at poll {limit}")).await,
            Some(done) => {
                done.expect("recheck");
                assert_read_at_return(&h, before, allowed);
                assert_answered(&h, before, allowed, "awaited to the end").await;
                finished = true;
                break;
            }
        }
    }
    assert!(
        finished,
        "some call must finish: the sweep covered every await point"
    );
    for (i, ms) in [0u64, 1, 2, 5, 10, 20, 30, 39, 41, 60].into_iter().enumerate() {
        let allowed = i % 2 == 1;
        h.control.set_access(USER, allowed);
        let before = h.gate.snapshot();
        let r = tokio::time::timeout(StdDuration::from_millis(ms), h.gate.recheck()).await;
        if let Ok(done) = r {
            done.expect("recheck");
            assert_read_at_return(&h, before, allowed);
        }
        assert_answered(&h, before, allowed, &format!("timeout {ms} ms")).await;
    }
}
flavours!(recheck_dropped_at_every_await_point_still_answers);

/// R3 + R10: a `sign_in()` dropped at each of its await points: the new session's first check
/// still settles with the backend's answer, and the session is signed in.
async fn sign_in_dropped_at_every_await_point_still_settles() {
    let h = Harness::new(Scheme::Http).await;
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(40));
    let mut finished = false;
    for limit in 1..=40 {
        let allowed = limit % 2 == 1;
        h.control.set_access(USER, allowed);
        let before = h.gate.snapshot();
        let call = h.gate.sign_in(h.tokens(StdDuration::from_secs(3600)));
        let done = drop_after(call, limit).await;
        assert_answered(&h, before, allowed, &format!("sign_in dropped at poll {limit}")).await;
        assert!(h.gate.status().signed_in);
        if let Some(done) = done {
            let want = if allowed { Access::Granted } else { Access::Denied };
            assert_eq!(done.expect("sign_in").access, want);
            finished = true;
            break;
        }
    }
    assert!(
        finished,
        "some call must finish: the sweep covered every await point"
    );
}
flavours!(sign_in_dropped_at_every_await_point_still_settles);

/// R3 + R11: a sign-in whose token is inside the refresh skew refreshes at once; the refresh
/// lands while the caller's own check runs, so the caller moves on to await the refreshed
/// token's check. Dropped at every await point of that path, the session still ends up
/// signed in with the new token checked: one refresh, two attempts, nothing in flight.
async fn sign_in_dropped_while_the_refreshed_token_is_checked() {
    let h = Harness::new(Scheme::Http).await;
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(60));
    h.control
        .set_latency(Endpoint::Token, StdDuration::from_millis(10));
    let mut finished = false;
    for limit in 1..=40 {
        let pair = h.control.issue_token(USER, StdDuration::from_secs(3600));
        let tokens = Tokens::new(
            pair.access_token,
            pair.refresh_token,
            StdDuration::from_millis(800),
        );
        let before = h.gate.snapshot();
        let done = drop_after(h.gate.sign_in(tokens), limit).await;
        let s = h
            .wait_for(StdDuration::from_secs(2), |s| {
                s.counters.refreshes == before.counters.refreshes + 1
                    && !s.refresh_in_flight
                    && s.status.attempt_in_flight.is_none()
                    && s.counters.grants > before.counters.grants
            })
            .await;
        assert!(
            s.status.signed_in && s.status.access == Access::Granted,
            "poll {limit}: {s:?}"
        );
        assert_eq!(
            s.counters.attempts - before.counters.attempts,
            2,
            "poll {limit}: {s:?}"
        );
        assert_eq!(
            (s.counters.transient_total(), s.counters.stale_dropped),
            (0, 0),
            "{s:?}"
        );
        // The refreshed token is the one handed out, at once.
        let token = h.gate.access_token().await.expect("token");
        assert_ne!(token, h.tokens.access_token);
        if let Some(done) = done {
            assert_eq!(done.expect("sign_in").access, Access::Granted);
            finished = true;
            break;
        }
    }
    assert!(
        finished,
        "some call must finish: the sweep covered every await point"
    );
}
flavours!(sign_in_dropped_while_the_refreshed_token_is_checked);

/// R4: a caller that keeps its `sign_in()` future but stops polling it (a stalled task) does
/// not stall the session: the session times the attempt out and a retry in the background
/// answers; the caller, polled again, returns at once with the settled status.
async fn unpolled_sign_in_times_out_and_the_retry_answers() {
    let h = Harness::new(Scheme::Http).await;
    // Long enough that no single poll sees the answer; well inside the attempt timeout.
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(50));
    let mut call = Box::pin(h.gate.sign_in(h.tokens(StdDuration::from_secs(3600))));
    assert!(
        futures_poll_once(call.as_mut()).await.is_none(),
        "pending after one poll"
    );
    // Never polled for longer than the attempt timeout (300 ms) plus the first retry (≤ 200 ms).
    let s = h
        .wait_for(StdDuration::from_secs(2), |s| s.status.access == Access::Granted)
        .await;
    assert_eq!(
        s.counters.transient_of(accessgate::TransientClass::Timeout),
        1,
        "{s:?}"
    );
    assert_eq!(s.counters.attempts, 2, "{s:?}");
    let status = within(StdDuration::from_millis(200), call)
        .await
        .expect("sign_in");
    assert_eq!(status.access, Access::Granted);
}
flavours!(unpolled_sign_in_times_out_and_the_retry_answers);

/// Polls `f` once: `Some` if it finished.
async fn futures_poll_once<F: Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = Some(f);
    std::future::poll_fn(move |cx| {
        let inner = f.as_mut().expect("polled once");
        Poll::Ready(match Pin::new(inner).poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

// ---- 2. the session changes under a caller's own check -------------------------------------

/// R10: a logout from another clone while a caller's own check runs: the caller returns at
/// once (not after the server's answer) with the logged-out status, and the answer it was
/// waiting for (a revocation) never reaches the session.
async fn logout_returns_the_inline_caller_and_its_answer_never_counts() {
    let h = Harness::with(Scheme::Http, |c| {
        no_rate_limit(c);
        slow_timeouts(c);
    })
    .await;
    assert_eq!(h.sign_in().await.access, Access::Granted);
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(1000));
    h.control.set_access(USER, false);
    let gate = h.gate.clone();
    let caller = tokio::spawn(async move { gate.recheck().await });
    h.wait_for(StdDuration::from_secs(1), |s| {
        s.status.attempt_in_flight.is_some()
    })
    .await;
    let t0 = TokioInstant::now();
    h.gate.clone().logout().await.expect("logout");
    within(StdDuration::from_millis(300), caller)
        .await
        .expect("no panic")
        .expect("recheck answers after a logout");
    assert!(t0.elapsed() < StdDuration::from_millis(300), "{:?}", t0.elapsed());
    tokio::time::sleep(StdDuration::from_millis(1100)).await; // past the server's answer
    let s = h.gate.snapshot();
    assert_eq!(
        (s.status.access, s.status.signed_in, s.status.cause),
        (Access::Unknown, false, Some(Cause::LoggedOut))
    );
    assert_eq!((s.counters.denials, s.counters.stale_dropped), (0, 0), "{s:?}");
    assert_eq!(s.status.attempt_in_flight, None);
}
flavours!(logout_returns_the_inline_caller_and_its_answer_never_counts);

/// R10: alice's sign-in runs its check; bob (denied) signs in from another clone at varied
/// moments, from before alice's answer to after it. Both callers return; bob's session ends
/// `Denied`, and no grant ever appears once bob's session started (alice's answer, even one
/// that completed just as bob signed in, never counts for it).
async fn newer_sign_in_supersedes_the_inline_check_at_any_moment() {
    let h = Harness::new(Scheme::Http).await;
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(40));
    let bob = h.control.issue_token("bob", StdDuration::from_secs(3600));
    h.control.set_access("bob", false);
    let bob_tokens = || {
        Tokens::new(
            bob.access_token.clone(),
            bob.refresh_token.clone(),
            StdDuration::from_secs(3600),
        )
    };
    let mut events = h.gate.events();
    for delay in [0u64, 5, 15, 25, 35, 38, 40, 42, 45, 50, 60] {
        let gate = h.gate.clone();
        let alice = h.tokens(StdDuration::from_secs(3600));
        let first = tokio::spawn(async move { gate.sign_in(alice).await });
        tokio::time::sleep(StdDuration::from_millis(delay)).await;
        let second = within(StdDuration::from_secs(1), h.gate.clone().sign_in(bob_tokens()))
            .await
            .expect("bob signs in");
        assert_eq!(second.access, Access::Denied, "delay {delay}");
        let first = within(StdDuration::from_secs(1), first).await.expect("no panic");
        // Alice's call never answers with bob's session: it was superseded before it returned
        // (bob's sign-in had started), or it returned her own session's status first.
        match first {
            Err(GateError::Superseded) => {}
            Ok(first) => assert!(
                first.generation.0 < second.generation.0,
                "delay {delay}: {first:?} vs {second:?}"
            ),
            Err(e) => panic!("delay {delay}: alice's caller failed: {e}"),
        }
        let s = settled(&h, h.gate.snapshot().counters.attempts).await;
        assert_eq!(
            (s.status.access, s.status.generation),
            (Access::Denied, second.generation)
        );
        // Nothing grants after bob's session's first check started.
        let mut bob_started = false;
        while let Ok(e) = events.try_recv() {
            match e.event {
                SessionEvent::Gate(Event::CheckStarted { generation, .. })
                    if generation == second.generation =>
                {
                    bob_started = true
                }
                SessionEvent::Gate(Event::AccessChanged {
                    to: Access::Granted, ..
                }) => {
                    assert!(!bob_started, "delay {delay}: a grant after bob's session started")
                }
                _ => {}
            }
        }
        assert!(bob_started, "delay {delay}");
    }
    assert_eq!(h.gate.snapshot().counters.transient_total(), 0);
}
flavours!(newer_sign_in_supersedes_the_inline_check_at_any_moment);

// ---- 3. shutdown and the last handle with everything pending --------------------------------

/// A sign-in whose first check hangs (run by the caller) while the refresh it started hangs
/// too, with token waiters, first-check waiters and a snapshot subscriber pending: a shutdown
/// from another clone answers every one of them `Closed` at once, and afterwards the backend
/// sees no request at all.
async fn shutdown_answers_every_pending_call_closed() {
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    h.control.set_fault(Endpoint::Check, Some(Fault::Hang));
    h.control.set_fault(Endpoint::Token, Some(Fault::Hang));
    let gate = h.gate.clone();
    let tokens = h.tokens(StdDuration::from_millis(800)); // inside the skew: refresh at once
    let sign_in = tokio::spawn(async move { gate.sign_in(tokens).await });
    h.wait_for(StdDuration::from_secs(1), |s| {
        s.status.attempt_in_flight.is_some() && s.refresh_in_flight
    })
    .await;
    let tokens: Vec<_> = (0..8)
        .map(|_| {
            let g = h.gate.clone();
            tokio::spawn(async move { g.access_token().await })
        })
        .collect();
    let firsts: Vec<_> = (0..3)
        .map(|_| {
            let g = h.gate.clone();
            tokio::spawn(async move { g.wait_first_check().await })
        })
        .collect();
    let mut snapshots = h.gate.subscribe();
    snapshots.borrow_and_update();
    let subscriber = tokio::spawn(async move { snapshots.changed().await.is_err() });
    tokio::time::sleep(StdDuration::from_millis(30)).await; // all registered
    let t0 = TokioInstant::now();
    within(StdDuration::from_millis(200), h.gate.clone().shutdown()).await;
    let bound = StdDuration::from_millis(200);
    assert!(matches!(
        within(bound, sign_in).await.unwrap(),
        Err(GateError::Closed)
    ));
    for t in tokens {
        assert_eq!(within(bound, t).await.unwrap(), Err(TokenError::Closed));
    }
    for f in firsts {
        assert!(matches!(within(bound, f).await.unwrap(), Err(GateError::Closed)));
    }
    assert!(
        within(bound, subscriber).await.unwrap(),
        "the subscriber sees the gate closed"
    );
    assert!(t0.elapsed() < StdDuration::from_millis(250), "{:?}", t0.elapsed());
    // No retry, no refresh retry, no timer after the shutdown.
    let counts = h.control.counts();
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    assert_eq!(h.control.counts(), counts, "a request after shutdown");
    assert!(matches!(h.gate.recheck().await, Err(GateError::Closed)));
    assert!(matches!(
        h.gate.sign_in(h.tokens(StdDuration::from_secs(60))).await,
        Err(GateError::Closed)
    ));
    assert!(matches!(h.gate.logout().await, Err(GateError::Closed)));
    assert!(matches!(h.gate.wait_first_check().await, Err(GateError::Closed)));
    assert_eq!(h.gate.access_token().await, Err(TokenError::Closed));
}
flavours!(shutdown_answers_every_pending_call_closed);

/// Background retries (503s) and refresh retries (503s) running, a caller's `recheck()`
/// returning at once beside them: a shutdown stops them all; the backend's counters stop.
async fn shutdown_stops_background_retries_and_refreshes() {
    let h = Harness::new(Scheme::Http).await;
    let unavailable = Some(Fault::Status {
        code: 503,
        retry_after: None,
    });
    h.control.set_fault(Endpoint::Check, unavailable.clone());
    h.control.set_fault(Endpoint::Token, unavailable);
    let status = h
        .gate
        .sign_in(h.tokens(StdDuration::from_millis(800)))
        .await
        .unwrap();
    assert_eq!(
        status.access,
        Access::Unknown,
        "a transient failure answers sign_in (R3)"
    );
    // Retries and refresh retries are running: the counters grow.
    within(StdDuration::from_secs(2), async {
        while h.control.counts().endpoint_total(Endpoint::Check) < 3
            || h.control.counts().endpoint_total(Endpoint::Token) < 2
        {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    })
    .await;
    within(StdDuration::from_millis(200), h.gate.shutdown()).await;
    let counts = h.control.counts();
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    assert_eq!(h.control.counts(), counts, "a request after shutdown");
}
flavours!(shutdown_stops_background_retries_and_refreshes);

/// Event receivers are told the gate closed: a receiver waiting in `recv()` when another
/// clone shuts the gate down gets `Closed` (after the events already sent), and so does one
/// taken after the shutdown; neither waits forever while a handle lives.
async fn event_receivers_see_the_gate_closed() {
    let h = Harness::new(Scheme::Http).await;
    assert_eq!(h.sign_in().await.access, Access::Granted);
    let mut rx = h.gate.events();
    let waiting = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Err(broadcast::error::RecvError::Closed) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            }
        }
    });
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    h.gate.clone().shutdown().await;
    within(StdDuration::from_millis(500), waiting)
        .await
        .expect("no panic");
    let mut late = h.gate.events();
    let r = within(StdDuration::from_millis(500), late.recv()).await;
    assert!(matches!(r, Err(broadcast::error::RecvError::Closed)), "{r:?}");
}
flavours!(event_receivers_see_the_gate_closed);

// ---- 4. more token callers than the waiter table holds --------------------------------------

/// R11 + R12: 100 callers ask for a token while the one refresh is slow: the 36 beyond the
/// table get `WaitersFull` at once (before the refresh lands), the 64 others all get the same
/// new token, after one refresh.
async fn excess_token_callers_are_refused_and_the_rest_share_one_refresh() {
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    h.control
        .set_latency(Endpoint::Token, StdDuration::from_millis(1000));
    h.gate
        .sign_in(h.tokens(StdDuration::from_millis(900)))
        .await
        .unwrap();
    let t0 = TokioInstant::now();
    let n = MAX_TOKEN_WAITERS + 36;
    let callers: Vec<_> = (0..n)
        .map(|_| {
            let g = h.gate.clone();
            tokio::spawn(async move { (g.access_token().await, TokioInstant::now()) })
        })
        .collect();
    let (mut tokens, mut full) = (Vec::new(), 0);
    for c in callers {
        match within(StdDuration::from_secs(2), c).await.unwrap() {
            (Ok(t), _) => tokens.push(t),
            (Err(TokenError::WaitersFull), at) => {
                full += 1;
                assert!(
                    at - t0 < StdDuration::from_millis(500),
                    "refused at once: {:?}",
                    at - t0
                );
            }
            (Err(e), _) => panic!("{e}"),
        }
    }
    assert_eq!((tokens.len(), full), (MAX_TOKEN_WAITERS, 36));
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one new token for all");
    assert_ne!(tokens[0], h.tokens.access_token, "the refreshed token");
    assert_eq!(
        h.control.counts().endpoint_total(Endpoint::Token),
        1,
        "one refresh (R11)"
    );
    assert_eq!(h.gate.access_token().await.as_deref(), Ok(tokens[0].as_str()));
}
flavours!(excess_token_callers_are_refused_and_the_rest_share_one_refresh);

/// R12: token callers that give up (a timeout around `access_token()`) leave their places to
/// the next callers. After a full table of callers gave up, as many new callers wait, and all
/// of them get the new token after the one refresh; only a caller beyond a table of live
/// waiters gets `WaitersFull`, at once. Once the refresh landed a caller gets the token at once.
async fn token_callers_that_gave_up_leave_their_places_to_new_callers() {
    use futures_util::FutureExt;
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    h.control
        .set_latency(Endpoint::Token, StdDuration::from_millis(1000));
    h.gate
        .sign_in(h.tokens(StdDuration::from_millis(900)))
        .await
        .unwrap();
    for _ in 0..MAX_TOKEN_WAITERS {
        let gave_up = tokio::time::timeout(StdDuration::from_millis(1), h.gate.access_token()).await;
        assert!(gave_up.is_err(), "waits for the refresh");
    }
    // Each new caller is polled once: registered (or refused) before the next one asks.
    let mut waiting: Vec<_> = (0..MAX_TOKEN_WAITERS)
        .map(|_| Box::pin(h.gate.access_token()))
        .collect();
    for (i, w) in waiting.iter_mut().enumerate() {
        assert_eq!(w.now_or_never(), None, "caller {i} waits for the refresh");
    }
    let r = within(StdDuration::from_millis(100), h.gate.access_token()).await;
    assert_eq!(r, Err(TokenError::WaitersFull), "beyond a table of live waiters");
    let tokens = within(StdDuration::from_secs(3), futures_util::future::join_all(waiting)).await;
    let first = tokens[0].clone().expect("the new token");
    assert!(tokens.iter().all(|t| t.as_ref() == Ok(&first)), "{tokens:?}");
    assert_ne!(first, h.tokens.access_token, "the refreshed token");
    assert_eq!(h.control.counts().endpoint_total(Endpoint::Token), 1);
    let token = within(StdDuration::from_millis(100), h.gate.access_token()).await;
    assert_eq!(token.as_deref(), Ok(first.as_str()));
}
flavours!(token_callers_that_gave_up_leave_their_places_to_new_callers);

// ---- 5. the gate's runtime goes away ---------------------------------------------------------

/// A runtime of its own on a thread: the gate is spawned on it, then the runtime is dropped
/// on that thread when told.
struct OtherRuntime {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtherRuntime {
    fn spawn_gate(config: GateClientConfig, multi_thread: bool) -> (OtherRuntime, AccessGate) {
        let (gate_tx, gate_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = if multi_thread {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread().enable_all().build()
            };
            let rt = rt.expect("runtime");
            let gate = rt.block_on(async { AccessGate::spawn(config) });
            gate_tx.send(gate).expect("test waits");
            // Drive it until told to stop, then drop it (its tasks with it).
            rt.block_on(async {
                while stop_rx.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                    tokio::time::sleep(StdDuration::from_millis(2)).await;
                }
            });
            drop(rt);
        });
        let gate = gate_rx.recv().expect("gate").expect("gate spawns");
        let rt = OtherRuntime {
            stop: Some(stop),
            thread: Some(thread),
        };
        (rt, gate)
    }

    /// Drops the runtime, and waits (off the async runtime) until it is gone.
    async fn drop_runtime(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let thread = self.thread.take().expect("once");
        tokio::task::spawn_blocking(move || thread.join().expect("no panic on the runtime thread"))
            .await
            .expect("joined");
    }
}

async fn gate_on_a_dropped_runtime_answers_closed(multi_thread: bool) {
    let backend = backend(Scheme::Http).await;
    let control = backend.control();
    let pair = control.issue_token(USER, StdDuration::from_secs(3600));
    let mut cfg = config_for(&backend, Scheme::Http);
    no_rate_limit(&mut cfg);
    slow_timeouts(&mut cfg);
    let (other, gate) = OtherRuntime::spawn_gate(cfg, multi_thread);
    let tokens = |secs: f64| {
        Tokens::new(
            pair.access_token.clone(),
            pair.refresh_token.clone(),
            StdDuration::from_secs_f64(secs),
        )
    };
    // Works from this runtime while the other one lives; the refresh runs there and hangs.
    control.set_fault(Endpoint::Token, Some(Fault::Hang));
    let status = within(StdDuration::from_secs(2), gate.sign_in(tokens(0.8)))
        .await
        .unwrap();
    assert_eq!(status.access, Access::Granted);
    control.set_fault(Endpoint::Check, Some(Fault::Hang));
    let g = gate.clone();
    let recheck = tokio::spawn(async move { g.recheck().await });
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let g = gate.clone();
            tokio::spawn(async move { g.access_token().await })
        })
        .collect();
    let mut snapshots = gate.subscribe();
    snapshots.borrow_and_update();
    tokio::time::sleep(StdDuration::from_millis(30)).await;
    assert!(gate.snapshot().status.attempt_in_flight.is_some() && gate.snapshot().refresh_in_flight);
    other.drop_runtime().await;
    let bound = StdDuration::from_millis(300);
    assert!(matches!(
        within(bound, recheck).await.unwrap(),
        Err(GateError::Closed)
    ));
    for w in waiters {
        assert_eq!(within(bound, w).await.unwrap(), Err(TokenError::Closed));
    }
    // Subscribers see the channel closed (after any change they had not seen yet).
    within(bound, async { while snapshots.changed().await.is_ok() {} }).await;
    control.clear_all();
    assert!(matches!(
        within(bound, gate.sign_in(tokens(60.0))).await,
        Err(GateError::Closed)
    ));
    assert!(matches!(
        within(bound, gate.recheck()).await,
        Err(GateError::Closed)
    ));
    assert!(matches!(
        within(bound, gate.wait_first_check()).await,
        Err(GateError::Closed)
    ));
    assert!(matches!(
        within(bound, gate.logout()).await,
        Err(GateError::Closed)
    ));
    assert_eq!(within(bound, gate.access_token()).await, Err(TokenError::Closed));
    within(bound, gate.shutdown()).await;
}

async fn gate_on_a_dropped_current_thread_runtime_answers_closed() {
    gate_on_a_dropped_runtime_answers_closed(false).await;
}
flavours!(gate_on_a_dropped_current_thread_runtime_answers_closed);

async fn gate_on_a_dropped_multi_thread_runtime_answers_closed() {
    gate_on_a_dropped_runtime_answers_closed(true).await;
}
flavours!(gate_on_a_dropped_multi_thread_runtime_answers_closed);

// ---- other races ----------------------------------------------------------------------------

/// R4: after an idle stretch (the driver's timer armed for the refresh, an hour out), a check
/// that hangs is timed out at the attempt timeout: the caller's drain moved the next timeout
/// earlier and woke the driver.
async fn driver_wakes_for_an_earlier_timeout_after_idling() {
    let h = Harness::with(Scheme::Http, no_rate_limit).await;
    assert_eq!(h.sign_in().await.access, Access::Granted);
    // Past every timer of the sign-in's check: the driver's next one is the refresh.
    tokio::time::sleep(StdDuration::from_millis(700)).await;
    h.control.set_fault(Endpoint::Check, Some(Fault::Hang));
    let t0 = TokioInstant::now();
    within(StdDuration::from_secs(2), h.gate.recheck())
        .await
        .expect("recheck");
    let took = t0.elapsed();
    assert!(
        (ATTEMPT_TIMEOUT..ATTEMPT_TIMEOUT + StdDuration::from_millis(500)).contains(&took),
        "timed out after {took:?}"
    );
    let s = h.gate.snapshot();
    assert_eq!(s.counters.transient_of(accessgate::TransientClass::Timeout), 1);
    assert_eq!(s.status.access, Access::Granted, "a timeout is transient (R4)");
}
flavours!(driver_wakes_for_an_earlier_timeout_after_idling);

/// The reference backend on a runtime of its own (a thread), so that the test's runtime
/// holds only the gate's tasks and its HTTP client's.
struct BackendThread {
    url: String,
    control: accessgate_backend::Control,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackendThread {
    fn start() -> BackendThread {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            rt.expect("runtime").block_on(async move {
                let b = backend(Scheme::Http).await;
                tx.send((b.http_url(), b.control())).expect("test waits");
                let _ = stopped.await;
                b.shutdown().await;
            });
        });
        let (url, control) = rx.recv().expect("backend starts");
        BackendThread {
            url,
            control,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn config(&self) -> GateClientConfig {
        let mut c = GateClientConfig::new(&self.url);
        c.session = fast_session();
        c.system_roots = false;
        c.proxy_from_env = false;
        c.seed = Some(0x5eed);
        c
    }
}

impl Drop for BackendThread {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(std::thread::JoinHandle::join);
    }
}

/// Dropping the last handle while a background retry hangs and refresh retries run closes
/// the gate: the runtime gets back to the tasks it had before the gate (driver, requests and
/// the HTTP client's connections all gone), and the backend sees no request afterwards.
async fn dropping_the_last_handle_stops_every_task() {
    let backend = tokio::task::spawn_blocking(BackendThread::start).await.unwrap();
    let control = backend.control.clone();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let pair = control.issue_token(USER, StdDuration::from_secs(3600));
    let gate = AccessGate::spawn(backend.config()).expect("gate spawns");
    let unavailable = Some(Fault::Status {
        code: 503,
        retry_after: None,
    });
    control.set_fault(Endpoint::Check, unavailable.clone());
    control.set_fault(Endpoint::Token, unavailable);
    let tokens = Tokens::new(
        pair.access_token,
        pair.refresh_token,
        StdDuration::from_millis(800),
    );
    assert_eq!(gate.sign_in(tokens).await.unwrap().access, Access::Unknown);
    control.set_fault(Endpoint::Check, Some(Fault::Hang));
    within(StdDuration::from_secs(2), async {
        while control.counts().get(Endpoint::Check, 0) == 0
            || control.counts().endpoint_total(Endpoint::Token) < 2
        {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        gate.snapshot().status.attempt_in_flight.is_some(),
        "a retry hangs"
    );
    assert!(metrics.num_alive_tasks() > baseline);
    drop(gate);
    within(StdDuration::from_secs(2), async {
        while metrics.num_alive_tasks() > baseline {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    })
    .await;
    let counts = control.counts();
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    assert_eq!(control.counts(), counts, "a request after the last handle went");
    assert_eq!(metrics.num_alive_tasks(), baseline);
    tokio::task::spawn_blocking(move || drop(backend)).await.unwrap();
}
flavours!(dropping_the_last_handle_stops_every_task);

/// A handle taken from a [`accessgate_std::BlockingAccessGate`] outlives it: dropping the
/// blocking gate stops its runtime (in the background), and the async handle, used from
/// another runtime, then answers `Closed`; no call hangs on the way.
async fn handle_outliving_a_blocking_gate_answers_closed() {
    let backend = tokio::task::spawn_blocking(BackendThread::start).await.unwrap();
    let config = backend.config();
    let blocking = tokio::task::spawn_blocking(move || accessgate_std::BlockingAccessGate::spawn(config))
        .await
        .unwrap()
        .expect("blocking gate spawns");
    let gate = blocking.handle().clone();
    let pair = backend.control.issue_token(USER, StdDuration::from_secs(3600));
    let tokens = || {
        Tokens::new(
            pair.access_token.clone(),
            pair.refresh_token.clone(),
            StdDuration::from_secs(3600),
        )
    };
    let status = within(StdDuration::from_secs(2), gate.sign_in(tokens())).await;
    assert_eq!(status.unwrap().access, Access::Granted);
    drop(blocking);
    // Every call answers within its bound; once the runtime is gone, `Closed`.
    within(StdDuration::from_secs(2), async {
        loop {
            let r = within(StdDuration::from_millis(500), gate.sign_in(tokens())).await;
            match r {
                Err(GateError::Closed) => break,
                Ok(s) => assert_eq!(s.access, Access::Granted),
                Err(e) => panic!("{e}"),
            }
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        within(StdDuration::from_millis(200), gate.access_token()).await,
        Err(TokenError::Closed)
    );
    within(StdDuration::from_millis(200), gate.shutdown()).await;
    tokio::task::spawn_blocking(move || drop(backend)).await.unwrap();
}
flavours!(handle_outliving_a_blocking_gate_answers_closed);

/// R4 + R10: a caller on a runtime of its own (not the gate's) signs in there, so its check
/// and the connection it opens live on that runtime; the runtime is dropped mid-check, taking
/// the caller's task and the connection with it. The gate does not hang on it: the check is
/// handed to the gate's runtime, the attempt ends (answered, or failed transiently and then
/// retried) and access is granted; no panic on either runtime.
async fn caller_runtime_dropped_mid_check_leaves_the_gate_working() {
    let h = Harness::new(Scheme::Http).await;
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(150));
    let gate = h.gate.clone();
    let tokens = h.tokens(StdDuration::from_secs(3600));
    let caller = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let call = tokio::spawn(async move { gate.sign_in(tokens).await });
            // The request reaches the server, then the runtime goes, mid-check.
            tokio::time::sleep(StdDuration::from_millis(60)).await;
            drop(call); // detached: dropped with the runtime
        });
        drop(rt);
    });
    tokio::task::spawn_blocking(move || caller.join().expect("no panic"))
        .await
        .unwrap();
    assert_eq!(
        h.control.counts().endpoint_total(Endpoint::Check),
        1,
        "it was mid-check"
    );
    let s = h
        .wait_for(StdDuration::from_secs(2), |s| {
            s.status.access == Access::Granted && s.status.attempt_in_flight.is_none()
        })
        .await;
    let c = s.counters;
    assert_eq!((c.grants, c.stale_dropped), (1, 0), "{c:?}");
    assert_eq!(c.attempts, 1 + c.transient_total(), "{c:?}");
}
flavours!(caller_runtime_dropped_mid_check_leaves_the_gate_working);

/// R4 + R10: answers that race the attempt timeout (the backend's delay swept across it):
/// each check ends exactly once, either answered (a grant) or timed out (then a retry
/// answers); never both, never a hang, and the late answer of a timed-out attempt never
/// counts.
async fn answers_racing_the_attempt_timeout_count_once() {
    let h = Harness::with(Scheme::Http, no_rate_limit).await;
    assert_eq!(h.sign_in().await.access, Access::Granted);
    for delay in [280u64, 290, 295, 298, 300, 302, 305, 310] {
        let before = h.gate.snapshot().counters;
        let arrived = h.control.counts().endpoint_total(Endpoint::Check);
        h.control
            .set_latency(Endpoint::Check, StdDuration::from_millis(delay));
        let gate = h.gate.clone();
        let call = tokio::spawn(async move { gate.recheck().await });
        within(StdDuration::from_secs(1), async {
            while h.control.counts().endpoint_total(Endpoint::Check) == arrived {
                tokio::time::sleep(StdDuration::from_millis(1)).await;
            }
        })
        .await;
        h.control.set_latency(Endpoint::Check, StdDuration::ZERO); // a retry answers at once
        within(StdDuration::from_secs(1), call)
            .await
            .unwrap()
            .expect("recheck");
        let s = h
            .wait_for(StdDuration::from_secs(2), |s| {
                s.status.attempt_in_flight.is_none() && s.status.reverifying_until.is_none()
            })
            .await;
        let c = s.counters;
        let timeouts = c.transient_of(accessgate::TransientClass::Timeout)
            - before.transient_of(accessgate::TransientClass::Timeout);
        assert_eq!(c.grants - before.grants, 1, "delay {delay}: {c:?}");
        assert_eq!(c.attempts - before.attempts, 1 + timeouts, "delay {delay}: {c:?}");
        assert!(timeouts <= 1 && c.transient_total() - before.transient_total() == timeouts);
        assert_eq!(s.status.access, Access::Granted);
    }
}
flavours!(answers_racing_the_attempt_timeout_count_once);

/// A small deterministic generator (xorshift64), so a failing mix can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Eight clones call everything at random for 1.5 s (sign-ins of a granted and of a denied
/// user with tokens that soon need a refresh, logouts, rechecks, token requests, first-check
/// waits, callers dropped by short timeouts) while the backend's delays change: no call
/// hangs (each is bounded), nothing panics, and afterwards the gate settles (nothing in
/// flight), grants a fresh sign-in, and shuts down.
async fn random_concurrent_callers_never_hang_and_the_gate_settles() {
    let h = Harness::with(Scheme::Http, no_rate_limit).await;
    h.control.set_access("bob", false);
    let end = TokioInstant::now() + StdDuration::from_millis(1500);
    let callers: Vec<_> = (0..8u64)
        .map(|i| {
            let (gate, control) = (h.gate.clone(), h.control.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i + 1));
                let mut calls = 0;
                while TokioInstant::now() < end {
                    calls += 1;
                    let op = rng.below(8);
                    let cut = StdDuration::from_millis(rng.below(40));
                    let bound = StdDuration::from_secs(3);
                    match op {
                        0 | 1 => {
                            let user = if op == 0 { USER } else { "bob" };
                            let pair = control.issue_token(user, StdDuration::from_secs(3600));
                            let life = StdDuration::from_millis(1000 + rng.below(1000));
                            let t = Tokens::new(pair.access_token, pair.refresh_token, life);
                            if rng.below(2) == 0 {
                                let _ = within(bound, gate.sign_in(t)).await;
                            } else {
                                let _ = tokio::time::timeout(cut, gate.sign_in(t)).await;
                            }
                        }
                        2 => drop(within(bound, gate.logout()).await),
                        3 => drop(within(bound, gate.recheck()).await),
                        4 => drop(tokio::time::timeout(cut, gate.recheck()).await),
                        5 => drop(within(bound, gate.access_token()).await),
                        6 => drop(within(bound, gate.wait_first_check()).await),
                        _ => {
                            let latency = StdDuration::from_millis(rng.below(4) * 30);
                            let ep = if rng.below(2) == 0 {
                                Endpoint::Check
                            } else {
                                Endpoint::Token
                            };
                            control.set_latency(ep, latency);
                            let _ = (gate.status(), gate.subscribe(), gate.events());
                            tokio::time::sleep(cut).await;
                        }
                    }
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    for c in callers {
        calls += within(StdDuration::from_secs(5), c).await.expect("no panic");
    }
    assert!(calls > 40, "{calls} calls");
    h.control.clear_all();
    h.wait_for(StdDuration::from_secs(3), |s| {
        s.status.attempt_in_flight.is_none() && !s.refresh_in_flight
    })
    .await;
    let status = within(
        StdDuration::from_secs(1),
        h.gate.sign_in(h.tokens(StdDuration::from_secs(3600))),
    )
    .await;
    assert_eq!(status.expect("sign_in").access, Access::Granted);
    let s = h.gate.snapshot();
    assert!(
        u64::from(s.counters.attempts) >= h.control.counts().endpoint_total(Endpoint::Check),
        "{s:?}"
    );
    within(StdDuration::from_millis(500), h.gate.shutdown()).await;
}
flavours!(random_concurrent_callers_never_hang_and_the_gate_settles);

/// A connection opened by a caller on another runtime outlives its call in the HTTP client's
/// pool; that runtime is dropped (taking the connection's task with it). The gate's next
/// checks, from here, do not fail on the dead pooled connection.
async fn connection_pooled_by_a_dropped_caller_runtime_is_not_reused_dead() {
    let h = Harness::with(Scheme::Http, no_rate_limit).await;
    let gate = h.gate.clone();
    let tokens = h.tokens(StdDuration::from_secs(3600));
    let caller = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let status = rt.block_on(async move { gate.sign_in(tokens).await });
        drop(rt);
        status
    });
    let status = tokio::task::spawn_blocking(move || caller.join().expect("no panic"))
        .await
        .unwrap();
    assert_eq!(status.expect("sign_in").access, Access::Granted);
    for _ in 0..3 {
        h.recheck().await;
        let s = settled(&h, h.gate.snapshot().counters.attempts).await;
        assert_eq!(
            (s.status.access, s.counters.transient_total()),
            (Access::Granted, 0),
            "{:?}",
            s.status.last_failure
        );
    }
}
flavours!(connection_pooled_by_a_dropped_caller_runtime_is_not_reused_dead);

/// R10 + R11: token callers waiting on alice's refresh when bob signs in from another clone
/// get `NotAuthenticated`: neither alice's torn-down token nor bob's new one; the late refresh
/// answer changes nothing, and bob's session hands out bob's token.
async fn token_waiters_of_a_superseded_session_get_not_authenticated() {
    let h = Harness::new(Scheme::Http).await;
    h.control
        .set_latency(Endpoint::Token, StdDuration::from_millis(200));
    h.gate
        .sign_in(h.tokens(StdDuration::from_millis(800)))
        .await
        .unwrap();
    assert!(h.gate.snapshot().refresh_in_flight);
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let g = h.gate.clone();
            tokio::spawn(async move { g.access_token().await })
        })
        .collect();
    tokio::time::sleep(StdDuration::from_millis(30)).await;
    let bob = h.control.issue_token("bob", StdDuration::from_secs(3600));
    let bob_tokens = Tokens::new(
        bob.access_token.clone(),
        bob.refresh_token,
        StdDuration::from_secs(3600),
    );
    let status = h.gate.clone().sign_in(bob_tokens).await.unwrap();
    assert_eq!(status.access, Access::Granted);
    for w in waiters {
        let got = within(StdDuration::from_millis(500), w).await.unwrap();
        assert_eq!(got, Err(TokenError::NotAuthenticated));
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await; // past the refresh's answer
    let s = h.gate.snapshot();
    assert!(!s.refresh_in_flight && s.status.signed_in, "{s:?}");
    assert_eq!(
        h.gate.access_token().await.as_deref(),
        Ok(bob.access_token.as_str())
    );
}
flavours!(token_waiters_of_a_superseded_session_get_not_authenticated);

/// A hostile server on loopback: every request gets `200` headers announcing a long body that
/// then trickles in, one byte every 10 ms, forever. Reports each connection's accept and the
/// moment the client closed it (a write fails).
type Closed = tokio::sync::mpsc::UnboundedReceiver<(TokioInstant, TokioInstant)>;

async fn trickler() -> (std::net::SocketAddr, Closed, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    let accepts = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            accepts.fetch_add(1, Ordering::SeqCst);
            let (tx, accepted) = (tx.clone(), TokioInstant::now());
            tokio::spawn(async move {
                let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let headers =
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";
                let mut ok = conn.write_all(headers).await.is_ok();
                while ok {
                    tokio::time::sleep(StdDuration::from_millis(10)).await;
                    ok = conn.write_all(b" ").await.is_ok() && conn.flush().await.is_ok();
                }
                let _ = tx.send((accepted, TokioInstant::now()));
            });
        }
    });
    (addr, rx, count)
}

/// R4 + R12 against a server that never finishes its answer: the session times each attempt
/// out and its connection is closed then (also when the caller went away and the check runs
/// in the background); a shutdown closes the connection of the attempt in flight at once, and
/// no connection is opened afterwards.
async fn trickling_answers_are_cut_at_the_attempt_timeout_and_on_shutdown() {
    let (addr, mut closed, accepts) = trickler().await;
    let mut cfg = GateClientConfig::new(&format!("http://{addr}"));
    cfg.session = fast_session();
    (cfg.system_roots, cfg.proxy_from_env, cfg.seed) = (false, false, Some(7));
    let gate = AccessGate::spawn(cfg).expect("gate spawns");
    let tokens = Tokens::new("at_1", "rt_1", StdDuration::from_secs(3600));
    // The caller goes away at once; its check goes on in the background until the timeout.
    let dropped = tokio::time::timeout(StdDuration::from_millis(50), gate.sign_in(tokens)).await;
    assert!(dropped.is_err(), "the sign-in waits for its check");
    let (accepted, gone) = within(StdDuration::from_secs(1), closed.recv())
        .await
        .expect("closed");
    let held = gone - accepted;
    assert!(
        held >= ATTEMPT_TIMEOUT - StdDuration::from_millis(20)
            && held < ATTEMPT_TIMEOUT + StdDuration::from_millis(400),
        "connection held {held:?}"
    );
    let s = gate.snapshot();
    assert_eq!(
        s.counters.transient_of(accessgate::TransientClass::Timeout),
        1,
        "{s:?}"
    );
    assert_eq!(
        s.status.access,
        Access::Unknown,
        "a never-ending body never grants"
    );
    // A retry's connection is in flight: the shutdown cuts it.
    within(StdDuration::from_secs(2), async {
        let mut rx = gate.subscribe();
        while rx.borrow_and_update().status.attempt_in_flight.is_none() {
            rx.changed().await.expect("open");
        }
    })
    .await;
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    let t0 = TokioInstant::now();
    within(StdDuration::from_millis(200), gate.shutdown()).await;
    let opened = accepts.load(Ordering::SeqCst);
    let (_, gone) = within(StdDuration::from_millis(500), closed.recv())
        .await
        .expect("closed");
    assert!(
        gone - t0 < StdDuration::from_millis(250),
        "closed {:?} after shutdown",
        gone - t0
    );
    drop(gate);
    let later = tokio::time::timeout(StdDuration::from_millis(700), closed.recv()).await;
    assert!(later.is_err(), "nothing open after shutdown: {later:?}");
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        opened,
        "a connection after shutdown"
    );
}
flavours!(trickling_answers_are_cut_at_the_attempt_timeout_and_on_shutdown);

/// The gate's runtime is dropped before it ever ran the driver task (a current-thread runtime
/// entered to spawn the gate, never driven, then dropped; a loaded machine can do the same to
/// a multi-thread one): the gate closes all the same. Calls from here answer `Closed` rather
/// than run checks that nothing would ever time out (R4).
async fn gate_whose_runtime_never_ran_its_driver_answers_closed() {
    let backend = backend(Scheme::Http).await;
    let pair = backend.control().issue_token(USER, StdDuration::from_secs(3600));
    let config = config_for(&backend, Scheme::Http);
    let gate = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let gate = {
            let _enter = rt.enter();
            AccessGate::spawn(config).expect("gate spawns")
        };
        drop(rt); // its tasks, the driver among them, unpolled
        gate
    })
    .await
    .unwrap();
    backend.control().set_fault(Endpoint::Check, Some(Fault::Hang));
    let tokens = Tokens::new(
        pair.access_token,
        pair.refresh_token,
        StdDuration::from_secs(3600),
    );
    let bound = StdDuration::from_secs(1);
    assert!(matches!(
        within(bound, gate.sign_in(tokens)).await,
        Err(GateError::Closed)
    ));
    assert_eq!(within(bound, gate.access_token()).await, Err(TokenError::Closed));
    within(bound, gate.shutdown()).await;
}
flavours!(gate_whose_runtime_never_ran_its_driver_answers_closed);

// ---- 6. places taken over from callers that gave up ------------------------------------------
//
// `access_token` hands the place of a caller that gave up to a new caller when the table is
// full (R12). These pin that such a place is answered exactly as a place registered the
// ordinary way, whatever ends the wait (R10, R11), and that no round of give-ups leaks one.

type Waiting<'a> = Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + 'a>>;

/// A token caller polled once: registered as a waiter (neither answered nor refused at once).
#[track_caller]
fn waiting_caller(gate: &AccessGate) -> Waiting<'_> {
    use futures_util::FutureExt;
    let mut w: Waiting<'_> = Box::pin(gate.access_token());
    assert_eq!((&mut w).now_or_never(), None, "the caller waits");
    w
}

/// `n` token callers that each register and give up at once (polled once, then dropped).
#[track_caller]
fn give_up(gate: &AccessGate, n: usize) {
    for _ in 0..n {
        drop(waiting_caller(gate));
    }
}

/// While a refresh runs: one caller registered the ordinary way, then a table full of
/// callers that gave up, then as many callers that take their places over (each waits rather
/// than being refused), then a caller beyond a table of live waiters, refused at once. Returns
/// the ordinary caller and the takers.
fn ordinary_and_takers(gate: &AccessGate) -> (Waiting<'_>, Vec<Waiting<'_>>) {
    use futures_util::FutureExt;
    let ordinary = waiting_caller(gate);
    give_up(gate, MAX_TOKEN_WAITERS - 1);
    let takers: Vec<_> = (1..MAX_TOKEN_WAITERS).map(|_| waiting_caller(gate)).collect();
    let beyond = gate.access_token().now_or_never();
    assert_eq!(
        beyond,
        Some(Err(TokenError::WaitersFull)),
        "the table is full of live waiters"
    );
    (ordinary, takers)
}

/// Every answer of the ordinary caller and the takers, the ordinary caller's first.
async fn answers(ordinary: Waiting<'_>, takers: Vec<Waiting<'_>>) -> Vec<Result<String, TokenError>> {
    let all = std::iter::once(ordinary).chain(takers);
    within(StdDuration::from_secs(4), futures_util::future::join_all(all)).await
}

/// Sign-in with the issued tokens (expiring in `expires_in`, inside the refresh skew: the
/// refresh starts at once) while the token endpoint answers after `latency`.
async fn signed_in_with_refresh_running(h: &Harness, expires_in: StdDuration, latency: StdDuration) {
    h.control.set_latency(Endpoint::Token, latency);
    h.gate.sign_in(h.tokens(expires_in)).await.expect("sign_in");
    assert!(h.gate.snapshot().refresh_in_flight, "the refresh runs");
}

/// R11: a logout while taken-over places wait: every place, taken over or not, gets
/// `NotAuthenticated`, never the torn-down session's token (neither the old one nor the one
/// the refresh still brings).
async fn taken_over_places_get_not_authenticated_on_logout() {
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    signed_in_with_refresh_running(&h, StdDuration::from_millis(900), StdDuration::from_millis(1000)).await;
    let (ordinary, takers) = ordinary_and_takers(&h.gate);
    h.gate.logout().await.unwrap();
    let got = answers(ordinary, takers).await;
    assert!(
        got.iter().all(|t| *t == Err(TokenError::NotAuthenticated)),
        "{got:?}"
    );
    assert_eq!(h.gate.access_token().await, Err(TokenError::NotAuthenticated));
}
flavours!(taken_over_places_get_not_authenticated_on_logout);

/// R8 + R11: the refresh lands but the new token's immediate check answers 401: every place,
/// taken over or not, gets `NotAuthenticated`, never the rejected token.
async fn taken_over_places_get_not_authenticated_on_a_401_for_the_new_token() {
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    signed_in_with_refresh_running(&h, StdDuration::from_millis(900), StdDuration::from_millis(1000)).await;
    let unauthorized = Fault::Status {
        code: 401,
        retry_after: None,
    };
    h.control.set_fault(Endpoint::Check, Some(unauthorized));
    let (ordinary, takers) = ordinary_and_takers(&h.gate);
    let got = answers(ordinary, takers).await;
    assert!(
        got.iter().all(|t| *t == Err(TokenError::NotAuthenticated)),
        "{got:?}"
    );
    let s = h.gate.snapshot();
    assert_eq!(s.counters.refreshes, 1, "the refresh landed first");
    assert!(!s.status.signed_in, "{s:?}");
    assert_eq!(s.status.cause, Some(Cause::Unauthorized));
}
flavours!(taken_over_places_get_not_authenticated_on_a_401_for_the_new_token);

/// Skew 10 s: a token of a few seconds is inside it, so the refresh starts at sign-in.
fn long_skew(c: &mut GateClientConfig) {
    slow_timeouts(c);
    c.session.refresh_skew = accessgate::Duration::from_secs(10);
}

/// R11: the refresh fails transiently while the token is still valid: every place, taken over
/// or not, gets the still-valid token rather than block.
async fn taken_over_places_get_the_valid_token_when_the_refresh_fails() {
    let h = Harness::with(Scheme::Http, long_skew).await;
    let unavailable = Fault::Status {
        code: 503,
        retry_after: None,
    };
    h.control.set_fault(Endpoint::Token, Some(unavailable));
    signed_in_with_refresh_running(&h, StdDuration::from_secs(5), StdDuration::from_millis(1000)).await;
    let (ordinary, takers) = ordinary_and_takers(&h.gate);
    let got = answers(ordinary, takers).await;
    let valid = Ok(h.tokens.access_token.clone());
    assert!(got.iter().all(|t| *t == valid), "{got:?}");
    assert!(h.gate.snapshot().counters.refresh_failures >= 1);
}
flavours!(taken_over_places_get_the_valid_token_when_the_refresh_fails);

/// R11: the refresh fails transiently after the token expired: every place, taken over or
/// not, gets `Unavailable`, never the dead token.
async fn taken_over_places_get_unavailable_when_the_refresh_fails_after_expiry() {
    let h = Harness::with(Scheme::Http, long_skew).await;
    let unavailable = Fault::Status {
        code: 503,
        retry_after: None,
    };
    h.control.set_fault(Endpoint::Token, Some(unavailable));
    signed_in_with_refresh_running(&h, StdDuration::from_millis(400), StdDuration::from_millis(1000)).await;
    let (ordinary, takers) = ordinary_and_takers(&h.gate);
    let got = answers(ordinary, takers).await;
    assert!(got.iter().all(|t| *t == Err(TokenError::Unavailable)), "{got:?}");
    let s = h.gate.snapshot();
    assert!(
        s.expires_at.is_some_and(|e| e <= h.gate.now()),
        "the token expired: {s:?}"
    );
}
flavours!(taken_over_places_get_unavailable_when_the_refresh_fails_after_expiry);

/// R10 + R11: another session signs in while taken-over places wait: every place, taken over
/// or not, gets `NotAuthenticated`, never the new session's token (nor the old one); the new
/// session's token goes only to callers that ask after its sign-in.
async fn taken_over_places_never_get_the_next_sessions_token() {
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    signed_in_with_refresh_running(&h, StdDuration::from_millis(900), StdDuration::from_millis(1000)).await;
    let (ordinary, takers) = ordinary_and_takers(&h.gate);
    let bob = h.control.issue_token("bob", StdDuration::from_secs(3600));
    let next = Tokens::new(
        bob.access_token.clone(),
        bob.refresh_token.clone(),
        StdDuration::from_secs(3600),
    );
    within(StdDuration::from_secs(2), h.gate.sign_in(next))
        .await
        .expect("sign_in");
    let got = answers(ordinary, takers).await;
    assert!(
        got.iter().all(|t| *t == Err(TokenError::NotAuthenticated)),
        "{got:?}"
    );
    let now = within(StdDuration::from_millis(500), h.gate.access_token()).await;
    assert_eq!(now, Ok(bob.access_token.clone()), "a caller after the sign-in");
}
flavours!(taken_over_places_never_get_the_next_sessions_token);

/// R3 + R11: places given up before the refresh landed are taken over while the new token's
/// immediate check runs: the takers and the caller that registered before the refresh landed
/// all get the new token, once its check granted, never the old one.
async fn places_taken_over_during_the_new_tokens_check_get_the_new_token() {
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    signed_in_with_refresh_running(&h, StdDuration::from_millis(900), StdDuration::from_millis(600)).await;
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(1500));
    let ordinary = waiting_caller(&h.gate);
    give_up(&h.gate, MAX_TOKEN_WAITERS - 1);
    // The refresh landed; the new token's check runs (1.5 s).
    h.wait_for(StdDuration::from_secs(2), |s| {
        s.counters.refreshes == 1 && !s.refresh_in_flight && s.status.attempt_in_flight == Some(0)
    })
    .await;
    let takers: Vec<_> = (1..MAX_TOKEN_WAITERS).map(|_| waiting_caller(&h.gate)).collect();
    assert_eq!(
        futures_util::FutureExt::now_or_never(h.gate.access_token()),
        Some(Err(TokenError::WaitersFull)),
        "the table is full of live waiters"
    );
    let got = answers(ordinary, takers).await;
    let first = got[0].clone().expect("the new token");
    assert_ne!(first, h.tokens.access_token, "the refreshed token");
    assert!(got.iter().all(|t| t.as_ref() == Ok(&first)), "{got:?}");
    assert_eq!(h.gate.status().access, Access::Granted);
    assert_eq!(h.control.counts().endpoint_total(Endpoint::Token), 1);
}
flavours!(places_taken_over_during_the_new_tokens_check_get_the_new_token);

/// R12: rounds of callers that take over places and give them up again (20 tables' worth)
/// leak none: afterwards exactly a table of callers waits, every caller beyond it is refused
/// at once, and all the waiting ones get the one refresh's token.
async fn rounds_of_giving_up_and_taking_over_leak_no_place() {
    use futures_util::FutureExt;
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    signed_in_with_refresh_running(&h, StdDuration::from_millis(900), StdDuration::from_millis(1000)).await;
    for _ in 0..20 {
        let round: Vec<_> = (0..MAX_TOKEN_WAITERS).map(|_| waiting_caller(&h.gate)).collect();
        assert_eq!(
            h.gate.access_token().now_or_never(),
            Some(Err(TokenError::WaitersFull))
        );
        drop(round);
    }
    let live: Vec<_> = (0..MAX_TOKEN_WAITERS).map(|_| waiting_caller(&h.gate)).collect();
    let refused = (0..10)
        .filter(|_| h.gate.access_token().now_or_never() == Some(Err(TokenError::WaitersFull)))
        .count();
    assert_eq!(refused, 10, "beyond a table of live waiters");
    let got = within(StdDuration::from_secs(3), futures_util::future::join_all(live)).await;
    let first = got[0].clone().expect("the new token");
    assert_ne!(first, h.tokens.access_token, "the refreshed token");
    assert!(got.iter().all(|t| t.as_ref() == Ok(&first)), "{got:?}");
    assert_eq!(h.control.counts().endpoint_total(Endpoint::Token), 1);
}
flavours!(rounds_of_giving_up_and_taking_over_leak_no_place);

/// R11 + R12: for 0.9 s eight tasks give up and take over places concurrently (patience 0 to
/// 1.5 ms) while the refresh lands (0.5 s) and the new token's check runs (0.2 s), and 40
/// callers that wait it out arrive every 15 ms meanwhile (at most 40 live callers plus one
/// giving up per task: a place is always there for a patient one): no caller hangs, every
/// patient caller gets the new token, every other answer is the new token, and one refresh
/// served them all.
async fn concurrent_give_ups_and_takeovers_around_the_refresh_hang_no_caller() {
    let h = Harness::with(Scheme::Http, slow_timeouts).await;
    signed_in_with_refresh_running(&h, StdDuration::from_millis(900), StdDuration::from_millis(500)).await;
    h.control
        .set_latency(Endpoint::Check, StdDuration::from_millis(200));
    let until = TokioInstant::now() + StdDuration::from_millis(900);
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let gate = h.gate.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for k in (0u64..).take_while(|_| TokioInstant::now() < until) {
                    let patience = StdDuration::from_micros((i * 7 + k * 13) % 4 * 500);
                    if let Ok(r) = tokio::time::timeout(patience, gate.access_token()).await {
                        got.push(r);
                    }
                    // An answer comes at once: leave the runtime to the others.
                    tokio::task::yield_now().await;
                }
                got
            })
        })
        .collect();
    let mut patient = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(StdDuration::from_millis(15)).await;
        let gate = h.gate.clone();
        patient.push(tokio::spawn(async move { gate.access_token().await }));
    }
    let mut others = Vec::new();
    for t in tasks {
        others.extend(within(StdDuration::from_secs(5), t).await.expect("no panic"));
    }
    let patient = within(StdDuration::from_secs(3), futures_util::future::join_all(patient)).await;
    let new = within(StdDuration::from_millis(500), h.gate.access_token())
        .await
        .expect("the new token");
    assert_ne!(new, h.tokens.access_token, "the refreshed token");
    for p in patient {
        assert_eq!(p.expect("no panic").as_ref(), Ok(&new), "a patient caller");
    }
    assert!(
        others.iter().all(|t| t.as_ref() == Ok(&new)),
        "only the new token"
    );
    assert_eq!(
        h.control.counts().endpoint_total(Endpoint::Token),
        1,
        "one refresh (R11)"
    );
}
flavours!(concurrent_give_ups_and_takeovers_around_the_refresh_hang_no_caller);
