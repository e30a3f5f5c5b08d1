//! One test (at least) per rule of behaviour.md, R1–R13, over loopback against the real
//! reference backend, over HTTP and HTTPS. Times are read from the gate's events (its own
//! clock), not from sleeps.

mod common;

use std::time::Duration as StdDuration;

use accessgate::{Access, Cause, Event, SessionEvent, TransientClass};
use accessgate_backend::{Endpoint, Fault};
use accessgate_std::{AccessGate, GateClientConfig, GateError, TokenError, Tokens};
use common::*;

const HOSTILE: [(Fault, TransientClass); 9] = [
    (Fault::HtmlPortal, TransientClass::InvalidBody),
    (Fault::WrongType, TransientClass::InvalidBody),
    (Fault::NullValue, TransientClass::InvalidBody),
    (Fault::MissingField, TransientClass::InvalidBody),
    (Fault::DuplicateKey, TransientClass::InvalidBody),
    (Fault::TrailingGarbage, TransientClass::InvalidBody),
    (Fault::Truncated, TransientClass::Io),
    (Fault::Oversized, TransientClass::InvalidBody),
    (Fault::BrokenChunked, TransientClass::Io),
];

/// R1: no hostile body grants. An `Unknown` session stays `Unknown` through each of them
/// (and is never granted), and a `Granted` one stays `Granted` (a hostile body is transient,
/// never a denial).
async fn r1_hostile_bodies(scheme: Scheme) {
    let mut h = Harness::new(scheme).await;
    for (fault, class) in HOSTILE {
        h.control.set_fault(Endpoint::Check, Some(fault.clone()));
        let status = h.sign_in().await;
        assert_eq!(status.access, Access::Unknown, "{fault:?} from Unknown");
        assert!(status.reverifying_until.is_some(), "{fault:?} starts retries");
        let failed = h.rec.next(StdDuration::from_secs(2), is_check_failed).await;
        assert!(
            matches!(failed.event, SessionEvent::Gate(Event::CheckFailed { class: c, attempt: 0, .. }) if c == class),
            "{fault:?}: {failed:?}"
        );
    }
    h.control.set_fault(Endpoint::Check, None);
    assert_eq!(h.sign_in().await.access, Access::Granted);
    // From Granted: each hostile body leaves the grant in place; clearing it re-grants quietly.
    for (fault, class) in HOSTILE {
        h.control.set_fault(Endpoint::Check, Some(fault.clone()));
        h.recheck().await;
        let failed = h.rec.next(StdDuration::from_secs(2), is_check_failed).await;
        assert!(
            matches!(failed.event, SessionEvent::Gate(Event::CheckFailed { class: c, .. }) if c == class),
            "{fault:?}: {failed:?}"
        );
        assert_eq!(h.gate.access(), Access::Granted, "{fault:?} from Granted");
        h.control.set_fault(Endpoint::Check, None);
        h.wait_for(StdDuration::from_secs(2), |s| {
            s.status.reverifying_until.is_none()
        })
        .await;
    }
    let changes = h.rec.access_changes();
    // Exactly: the one clean sign-in granted; nothing else changed access except the
    // sign-ins ending the previous (Unknown) sessions, which change nothing.
    assert_eq!(
        changes.iter().filter(|c| c.1 == Access::Granted).count(),
        1,
        "{changes:?}"
    );
    assert!(changes.iter().all(|c| c.1 != Access::Denied), "{changes:?}");
    let counters = h.gate.snapshot().counters;
    assert_eq!(counters.grants, 1 + HOSTILE.len() as u32);
    assert_eq!(counters.transient_of(TransientClass::InvalidBody), 2 * 7);
    assert_eq!(counters.transient_of(TransientClass::Io), 2 * 2);
    h.gate.shutdown().await;
}

#[tokio::test]
async fn r1_hostile_bodies_never_grant_http() {
    bounded(r1_hostile_bodies(Scheme::Http)).await;
}

#[tokio::test]
async fn r1_hostile_bodies_never_grant_https() {
    bounded(r1_hostile_bodies(Scheme::Https)).await;
}

/// R2: a genuine `200 {"has_access": false}` denies at once, on the first attempt, and stops
/// retrying; revocation of a granted user too.
#[tokio::test]
async fn r2_denial_is_immediate_and_final() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_access(USER, false);
        h.recheck().await;
        let denied = h
            .rec
            .next(StdDuration::from_secs(1), is_access_changed_to(Access::Denied))
            .await;
        assert!(matches!(
            denied.event,
            SessionEvent::Gate(Event::AccessChanged {
                from: Access::Granted,
                cause: Cause::ServerDenied,
                ..
            })
        ));
        let s = h.gate.snapshot();
        assert_eq!(s.counters.attempts, 2);
        assert_eq!(s.counters.transient_total(), 0);
        assert_eq!((s.status.next_attempt, s.status.reverifying_until), (None, None));
        // A fresh session of a denied user is denied by its first check.
        let status = h.sign_in().await;
        assert_eq!(
            (status.access, status.cause),
            (Access::Denied, Some(Cause::ServerDenied))
        );
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        assert_eq!(
            h.control.counts().endpoint_total(Endpoint::Check),
            3,
            "no retry after a denial"
        );
    })
    .await;
}

/// R3: sign-in awaits the immediate check; a transient failure resolves it too, leaving
/// access `Unknown`, and the background retries block nothing.
#[tokio::test]
async fn r3_sign_in_awaits_first_check() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        h.control
            .set_latency(Endpoint::Check, StdDuration::from_millis(150));
        let t0 = tokio::time::Instant::now();
        let status = h.sign_in().await;
        assert!(
            t0.elapsed() >= StdDuration::from_millis(150),
            "returned before the answer"
        );
        assert_eq!(
            (status.access, status.cause),
            (Access::Granted, Some(Cause::ServerGranted))
        );
        // Its one attempt is over: it was answered, and counted as the grant.
        let counters = h.gate.snapshot().counters;
        assert_eq!((counters.attempts, counters.grants), (1, 1));

        h.control.set_latency(Endpoint::Check, StdDuration::ZERO);
        h.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        );
        let status = h.sign_in().await;
        assert_eq!(
            status.access,
            Access::Unknown,
            "a transient failure leaves Unknown"
        );
        assert!(status.signed_in && status.reverifying_until.is_some());
        // Retries run in the background; other calls answer at once.
        let t1 = tokio::time::Instant::now();
        assert_eq!(
            h.gate.access_token().await.as_deref(),
            Ok(h.tokens.access_token.as_str())
        );
        assert_eq!(h.gate.wait_first_check().await.unwrap().access, Access::Unknown);
        assert!(t1.elapsed() < StdDuration::from_millis(100));
        h.control.set_fault(Endpoint::Check, None);
        h.wait_for(StdDuration::from_secs(2), |s| s.status.access == Access::Granted)
            .await;
    })
    .await;
}

/// R4: an outage shorter than the budget (connection refused, then 503) keeps the grant, and
/// access never changes. (The outage is kept well inside the span the 8 planned retries
/// cover, ~1.1 s here: after the last planned retry the gate waits for the deadline.)
#[tokio::test]
async fn r4_short_outage_keeps_access() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_fault(Endpoint::Check, Some(Fault::Refused));
        h.recheck().await;
        let first = h.rec.next(StdDuration::from_secs(1), is_check_failed).await;
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        h.control.set_fault(Endpoint::Check, None); // ends the Refused outage
        h.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        );
        h.rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(
                    e,
                    SessionEvent::Gate(Event::CheckFailed {
                        class: TransientClass::ServerError,
                        ..
                    })
                )
            })
            .await;
        assert_eq!(h.gate.access(), Access::Granted);
        h.control.set_fault(Endpoint::Check, None);
        let s = h
            .wait_for(StdDuration::from_secs(2), |s| {
                s.status.reverifying_until.is_none()
            })
            .await;
        assert_eq!(s.status.access, Access::Granted);
        assert!(ms_between(first.at, s.now) < 2000, "recovered inside the budget");
        let changes = h.rec.access_changes();
        assert_eq!(
            changes.len(),
            1,
            "only the first grant changed access: {changes:?}"
        );
        let classes = h.rec.failure_classes();
        assert!(classes.contains(&TransientClass::Connect), "{classes:?}");
        assert!(classes.len() >= 3, "retried: {classes:?}");
        assert_eq!(s.counters.failed_closed, 0);
    })
    .await;
}

/// Drives a granted session into an outage until it fails closed; returns the first failure
/// and the fail-closed event.
async fn fail_closed(
    h: &mut Harness,
    fault: Fault,
) -> (accessgate_std::TimedEvent, accessgate_std::TimedEvent) {
    assert_eq!(h.sign_in().await.access, Access::Granted);
    h.control.set_fault(Endpoint::Check, Some(fault.clone()));
    h.recheck().await;
    let first = h.rec.next(StdDuration::from_secs(1), is_check_failed).await;
    let closed = h
        .rec
        .next(
            BUDGET + StdDuration::from_secs(1),
            is_access_changed_to(Access::Denied),
        )
        .await;
    (first, closed)
}

/// R5: an outage longer than the budget fails closed at `first failure + budget`, to within
/// the timer's tolerance, and never later; the deadline announced never moves.
#[tokio::test]
async fn r5_long_outage_fails_closed_at_deadline() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        let (first, closed) = fail_closed(
            &mut h,
            Fault::Status {
                code: 503,
                retry_after: None,
            },
        )
        .await;
        let SessionEvent::Gate(Event::CheckFailed {
            deadline: Some(deadline),
            ..
        }) = first.event
        else {
            panic!("first failure announces the deadline: {first:?}")
        };
        assert_eq!(
            ms_between(first.at, deadline),
            2000,
            "deadline = first failure + budget"
        );
        assert!(matches!(
            closed.event,
            SessionEvent::Gate(Event::AccessChanged {
                cause: Cause::FailedClosed,
                ..
            })
        ));
        let late = ms_between(deadline, closed.at);
        assert!(
            (0..=300).contains(&late),
            "failed closed {late} ms after the deadline"
        );
        // Every failure in between announced the same deadline (R5: it never moves).
        for (_, e) in h.rec.gate_events() {
            if let Event::CheckFailed {
                deadline: Some(d), ..
            } = e
            {
                assert_eq!(d, deadline);
            }
        }
        let s = h.gate.snapshot();
        assert_eq!(s.counters.failed_closed, 1);
        assert!(s.status.probing, "keeps probing after failing closed (R7)");
    })
    .await;
}

/// R6: `Retry-After: 1` on a 503 replaces the jittered delay: the next attempt comes about
/// 1 s later (the retry backoff alone would have made several attempts in that second).
#[tokio::test]
async fn r6_retry_after_is_honoured() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 503,
                retry_after: Some(1),
            }),
        );
        h.control.reset_counts();
        h.recheck().await;
        let failed = h.rec.next(StdDuration::from_secs(1), is_check_failed).await;
        let SessionEvent::Gate(Event::CheckFailed {
            next_attempt: Some(next),
            class: TransientClass::ServerError,
            ..
        }) = failed.event
        else {
            panic!("{failed:?}")
        };
        assert_eq!(ms_between(failed.at, next), 1000, "slot = Retry-After");
        tokio::time::sleep(StdDuration::from_millis(700)).await;
        assert_eq!(
            h.control.counts().get(Endpoint::Check, 503),
            1,
            "nothing before the slot"
        );
        let started = h
            .rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(e, SessionEvent::Gate(Event::CheckStarted { .. }))
            })
            .await;
        let gap = ms_between(failed.at, started.at);
        assert!((1000..=1200).contains(&gap), "next attempt after {gap} ms");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        assert_eq!(h.control.counts().get(Endpoint::Check, 503), 2);
        assert_eq!(h.gate.access(), Access::Granted);
    })
    .await;
}

/// The delay from a gate's first failed check to its first retry, read from its own event.
async fn first_retry_delay(control: &accessgate_backend::Control, gate: &AccessGate, tokens: Tokens) -> u64 {
    let mut rec = Recorder::new(gate);
    control.set_fault(
        Endpoint::Check,
        Some(Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    gate.sign_in(tokens).await.expect("sign_in");
    let failed = rec.next(StdDuration::from_secs(2), is_check_failed).await;
    let SessionEvent::Gate(Event::CheckFailed {
        next_attempt: Some(next),
        ..
    }) = failed.event
    else {
        panic!("{failed:?}")
    };
    next.as_micros() - failed.at.as_micros()
}

/// R6: "there is no built-in constant seed". Two gates spawned without a seed, failing the
/// same way, draw different retry times (the first retry is uniform in a 143 ms slice, to the
/// microsecond); the control, two gates given the same seed, draw the same time.
#[tokio::test]
async fn r6_gates_spawned_without_a_seed_draw_their_own_retry_times() {
    bounded(async {
        let backend = backend(Scheme::Http).await;
        let control = backend.control();
        let tokens = control.issue_token(USER, StdDuration::from_secs(3600));
        let tokens = || {
            Tokens::new(
                tokens.access_token.clone(),
                tokens.refresh_token.clone(),
                StdDuration::from_secs(3600),
            )
        };
        let mut delays = vec![];
        for seed in [None, None, Some(7), Some(7)] {
            let mut cfg = config_for(&backend, Scheme::Http);
            cfg.seed = seed;
            let gate = AccessGate::spawn(cfg).expect("gate spawns");
            delays.push(first_retry_delay(&control, &gate, tokens()).await);
            gate.shutdown().await;
        }
        assert_eq!(delays[2], delays[3], "one seed, one draw: {delays:?}");
        assert_ne!(delays[0], delays[1], "two unseeded gates drew alike: {delays:?}");
    })
    .await;
}

/// R7: after failing closed the gate keeps probing, and grants again (cause `Recovered`)
/// soon after the backend is back: within the probe cap plus an attempt.
#[tokio::test]
async fn r7_recovers_by_probing_when_backend_returns() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        fail_closed(&mut h, Fault::Refused).await;
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        assert_eq!(
            h.gate.access(),
            Access::Denied,
            "no grant while the backend is away"
        );
        let back = h.gate.now();
        h.control.set_fault(Endpoint::Check, None);
        let recovered = h
            .rec
            .next(StdDuration::from_secs(2), is_access_changed_to(Access::Granted))
            .await;
        assert!(matches!(
            recovered.event,
            SessionEvent::Gate(Event::AccessChanged {
                from: Access::Denied,
                cause: Cause::Recovered,
                ..
            })
        ));
        let waited = ms_between(back, recovered.at);
        assert!(
            waited <= 1000 + 300,
            "recovered {waited} ms after the backend returned"
        );
        let s = h.gate.snapshot();
        assert_eq!((s.counters.recoveries, s.status.probing), (1, false));
    })
    .await;
}

/// R8: a 401 on a check ends the session: `Unknown`, signed out, cause `Unauthorized`, no
/// retry, and token callers get `NotAuthenticated`.
#[tokio::test]
async fn r8_unauthorized_signs_out() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.expire_token(&h.tokens.access_token);
        h.recheck().await;
        h.rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(
                    e,
                    SessionEvent::Gate(Event::SessionEnded {
                        cause: Cause::Unauthorized
                    })
                )
            })
            .await;
        let s = h.gate.snapshot();
        assert_eq!(
            (s.status.access, s.status.signed_in, s.status.cause),
            (Access::Unknown, false, Some(Cause::Unauthorized))
        );
        assert_eq!(s.counters.unauthorized_logouts, 1);
        assert_eq!(h.gate.access_token().await, Err(TokenError::NotAuthenticated));
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        let counts = h.control.counts();
        assert_eq!(counts.get(Endpoint::Check, 401), 1);
        assert_eq!(counts.endpoint_total(Endpoint::Check), 2, "no retry after a 401");
        assert_eq!(counts.endpoint_total(Endpoint::Token), 0);
    })
    .await;
}

/// R9: a 403 is transient and makes the session refresh the token early, once: the token
/// endpoint sees exactly one request, and the new generation's check grants.
#[tokio::test]
async fn r9_forbidden_refreshes_once() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 403,
                retry_after: None,
            }),
        );
        // Hold the refresh so the 403 phase can end before the new token is checked.
        h.control
            .set_latency(Endpoint::Token, StdDuration::from_millis(200));
        h.recheck().await;
        let started = h
            .rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(e, SessionEvent::RefreshStarted { .. })
            })
            .await;
        assert!(matches!(
            started.event,
            SessionEvent::RefreshStarted { early: true, .. }
        ));
        assert_eq!(h.gate.access(), Access::Granted, "a 403 is not a denial");
        h.control.set_fault(Endpoint::Check, None);
        h.rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(e, SessionEvent::Refreshed { .. })
            })
            .await;
        let status = h.gate.wait_first_check().await.unwrap();
        assert_eq!(status.access, Access::Granted);
        let s = h
            .wait_for(StdDuration::from_secs(1), |s| {
                s.status.reverifying_until.is_none()
            })
            .await;
        assert_eq!(s.status.access, Access::Granted);
        assert_eq!(s.counters.refreshes, 1);
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        assert_eq!(h.control.counts().endpoint_total(Endpoint::Token), 1);
        let token = h.gate.access_token().await.unwrap();
        assert_ne!(token, h.tokens.access_token, "the refreshed token is in use");
    })
    .await;
}

/// R9 with a backend that keeps answering 403: still one early refresh, not one per
/// generation. A regression test: an earlier core let every refresh start a new generation
/// whose immediate check got 403 and asked for another early refresh, a tight loop against
/// the token endpoint (~200 refreshes in 800 ms here); the core now asks again only after a
/// definitive answer (`a_403_asks_for_exactly_one_early_refresh_per_generation`).
#[tokio::test]
async fn r9_persistent_forbidden_refreshes_once() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 403,
                retry_after: None,
            }),
        );
        h.recheck().await;
        tokio::time::sleep(StdDuration::from_millis(800)).await;
        assert_eq!(h.control.counts().endpoint_total(Endpoint::Token), 1);
        assert_eq!(h.gate.access(), Access::Granted, "a 403 is not a denial");
    })
    .await;
}

/// R10: a logout while a refresh is in flight: its waiters get `NotAuthenticated` (never the
/// torn-down session's token), the late refresh answer is dropped as stale, and nothing of
/// the old session grants.
#[tokio::test]
async fn r10_logout_during_refresh() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        h.control
            .set_latency(Endpoint::Token, StdDuration::from_millis(400));
        // Inside the refresh skew: the session refreshes at once.
        let status = h
            .gate
            .sign_in(h.tokens(StdDuration::from_millis(800)))
            .await
            .unwrap();
        assert_eq!(status.access, Access::Granted);
        assert!(h.gate.snapshot().refresh_in_flight);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let g = h.gate.clone();
                tokio::spawn(async move { g.access_token().await })
            })
            .collect();
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        h.gate.logout().await.unwrap();
        for w in waiters {
            assert_eq!(w.await.unwrap(), Err(TokenError::NotAuthenticated));
        }
        // The core says the refresh no longer matters (a cancel action) and the driver stops
        // it: past the backend's latency, no answer reached the session, nothing changed (R10).
        assert!(!h.gate.snapshot().refresh_in_flight);
        tokio::time::sleep(StdDuration::from_millis(600)).await;
        let s = h.gate.snapshot();
        assert_eq!(
            s.counters.stale_dropped, 0,
            "the cancelled refresh was stopped, not answered"
        );
        assert_eq!(
            (s.status.access, s.status.signed_in, s.status.cause),
            (Access::Unknown, false, Some(Cause::LoggedOut))
        );
        assert_eq!(h.gate.access(), Access::Unknown);
        assert_eq!(h.gate.access_token().await, Err(TokenError::NotAuthenticated));
    })
    .await;
}

/// R10: a check in flight at logout cannot grant the logged-out session: the core cancels it
/// and the driver stops it.
#[tokio::test]
async fn r10_check_in_flight_at_logout_is_cancelled() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        h.control
            .set_latency(Endpoint::Check, StdDuration::from_millis(200));
        let gate = h.gate.clone();
        let tokens = h.tokens(StdDuration::from_secs(3600));
        let sign_in = tokio::spawn(async move { gate.sign_in(tokens).await });
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        h.gate.logout().await.unwrap();
        let status = sign_in.await.unwrap().unwrap();
        assert_eq!((status.access, status.signed_in), (Access::Unknown, false));
        tokio::time::sleep(StdDuration::from_millis(400)).await;
        let s = h.gate.snapshot();
        assert_eq!(
            s.counters.stale_dropped, 0,
            "the cancelled check was stopped, not answered"
        );
        assert_eq!(s.status.access, Access::Unknown);
        assert_eq!(s.counters.grants, 0);
    })
    .await;
}

/// R11: the token is refreshed ahead of expiry (at `expires_in − skew`), and the refreshed
/// token's immediate check runs (R3).
#[tokio::test]
async fn r11_refresh_ahead_of_expiry() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        let signed_in = h
            .gate
            .sign_in(h.tokens(StdDuration::from_millis(1500)))
            .await
            .unwrap();
        assert_eq!(signed_in.access, Access::Granted);
        let t0 = h.rec.seen.first().map(|e| e.at).unwrap_or_default();
        let started = h
            .rec
            .next(StdDuration::from_secs(2), |e| {
                matches!(e, SessionEvent::RefreshStarted { .. })
            })
            .await;
        let at = ms_between(t0, started.at);
        assert!(
            (500..=700).contains(&at),
            "refresh started at {at} ms, expected ~500 ms"
        );
        assert!(matches!(
            started.event,
            SessionEvent::RefreshStarted { early: false, .. }
        ));
        h.rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(e, SessionEvent::Refreshed { .. })
            })
            .await;
        let status = h.gate.wait_first_check().await.unwrap();
        assert_eq!(status.access, Access::Granted);
        assert_eq!(h.control.counts().get(Endpoint::Token, 200), 1);
        assert_eq!(h.control.counts().get(Endpoint::Check, 200), 2);
        assert_ne!(h.gate.access_token().await.unwrap(), h.tokens.access_token);
    })
    .await;
}

/// R11: ten concurrent callers share one refresh: one request on the token endpoint, and
/// every caller gets the same new token.
#[tokio::test]
async fn r11_single_flight_refresh() {
    bounded(async {
        let h = Harness::new(Scheme::Https).await;
        h.control
            .set_latency(Endpoint::Token, StdDuration::from_millis(300));
        // Within the skew: a refresh starts at once; sign-in settles on the old token's check.
        h.gate
            .sign_in(h.tokens(StdDuration::from_millis(900)))
            .await
            .unwrap();
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let g = h.gate.clone();
                tokio::spawn(async move { g.access_token().await })
            })
            .collect();
        let mut tokens = Vec::new();
        for c in callers {
            tokens.push(c.await.unwrap().expect("a token"));
        }
        assert!(tokens.iter().all(|t| *t == tokens[0]), "one shared token");
        assert_ne!(tokens[0], h.tokens.access_token, "the refreshed one");
        assert_eq!(h.control.counts().endpoint_total(Endpoint::Token), 1);
        let s = h.gate.snapshot();
        assert_eq!((s.counters.refreshes, s.status.access), (1, Access::Granted));
    })
    .await;
}

/// R11: a refresh rejected with `400 invalid_grant` logs out.
#[tokio::test]
async fn r11_invalid_grant_logs_out() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        h.control.revoke_refresh(&h.tokens.refresh_token);
        h.gate
            .sign_in(h.tokens(StdDuration::from_millis(500)))
            .await
            .unwrap();
        h.rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(e, SessionEvent::RefreshRejected)
            })
            .await;
        let s = h.gate.snapshot();
        assert_eq!(
            (s.status.access, s.status.signed_in, s.status.cause),
            (Access::Unknown, false, Some(Cause::Unauthorized))
        );
        assert_eq!(h.control.counts().get(Endpoint::Token, 400), 1);
        assert_eq!(h.gate.access_token().await, Err(TokenError::NotAuthenticated));
    })
    .await;
}

/// R12: a server that accepts and never answers hits the per-attempt timeout (counted once,
/// as `Timeout`, not also as a stale result); a 64 KiB body is refused without a grant.
async fn r12_bounded(scheme: Scheme) {
    let h = Harness::new(scheme).await;
    h.control.set_fault(Endpoint::Check, Some(Fault::Hang));
    let t0 = tokio::time::Instant::now();
    let status = h.sign_in().await;
    let took = t0.elapsed();
    assert!(
        took >= ATTEMPT_TIMEOUT && took < ATTEMPT_TIMEOUT + StdDuration::from_millis(200),
        "{took:?}"
    );
    assert_eq!(status.access, Access::Unknown);
    let s = h.gate.snapshot();
    assert_eq!(s.counters.transient_of(TransientClass::Timeout), 1);
    assert_eq!(s.counters.stale_dropped, 0);

    h.control.set_fault(Endpoint::Check, Some(Fault::Oversized));
    let status = h.sign_in().await;
    assert_eq!(status.access, Access::Unknown);
    let s = h.gate.snapshot();
    assert!(s.counters.transient_of(TransientClass::InvalidBody) >= 1);
    assert_eq!(s.counters.grants, 0);
    h.control.set_fault(Endpoint::Check, None);
    assert_eq!(h.sign_in().await.access, Access::Granted);
}

#[tokio::test]
async fn r12_hang_times_out_and_oversized_is_refused_http() {
    bounded(r12_bounded(Scheme::Http)).await;
}

#[tokio::test]
async fn r12_hang_times_out_and_oversized_is_refused_https() {
    bounded(r12_bounded(Scheme::Https)).await;
}

/// R4, R12: a request in flight holds up nothing. While every check hangs (until its 300 ms
/// attempt timeout), the refresh started at sign-in completes, a token is handed out and a
/// logout is answered, all before the hanging check is given up.
#[tokio::test]
async fn r12_hanging_check_holds_up_nothing() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        h.control.set_fault(Endpoint::Check, Some(Fault::Hang));
        let gate = h.gate.clone();
        // Inside the refresh skew: the session refreshes at once, beside the first check.
        let tokens = h.tokens(StdDuration::from_millis(800));
        let sign_in = tokio::spawn(async move { gate.sign_in(tokens).await });
        let refreshed = h
            .rec
            .next(StdDuration::from_secs(1), |e| {
                matches!(e, SessionEvent::Refreshed { .. })
            })
            .await;
        let t0 = h.rec.seen.first().map(|e| e.at).unwrap_or_default();
        let at = ms_between(t0, refreshed.at);
        assert!(
            at < 300,
            "refresh answered {at} ms after sign-in, not before the check's timeout"
        );
        assert!(
            !h.rec.seen.iter().any(|e| is_check_failed(&e.event)),
            "{:#?}",
            h.rec.seen
        );
        let token = h.gate.access_token().await.unwrap();
        assert_ne!(token, h.tokens.access_token, "the refreshed token");
        h.gate.logout().await.unwrap();
        // Answered while a check was still in flight: none has failed yet.
        h.rec.poll();
        assert!(
            !h.rec.seen.iter().any(|e| is_check_failed(&e.event)),
            "{:#?}",
            h.rec.seen
        );
        let status = sign_in.await.unwrap().unwrap();
        assert_eq!((status.access, status.signed_in), (Access::Unknown, false));
        assert_eq!(h.control.counts().get(Endpoint::Token, 200), 1);
        assert_eq!(h.gate.snapshot().counters.grants, 0);
    })
    .await;
}

/// R12: the waiter table is bounded: past it callers get `WaitersFull` at once, nothing is
/// dropped silently, and every registered caller gets its answer.
#[tokio::test]
async fn r12_token_waiters_are_bounded() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        h.control
            .set_latency(Endpoint::Token, StdDuration::from_millis(300));
        h.gate
            .sign_in(h.tokens(StdDuration::from_millis(900)))
            .await
            .unwrap();
        let n = accessgate_std::MAX_TOKEN_WAITERS + 6;
        let callers: Vec<_> = (0..n)
            .map(|_| {
                let g = h.gate.clone();
                tokio::spawn(async move { g.access_token().await })
            })
            .collect();
        let mut ok = 0;
        let mut full = 0;
        for c in callers {
            match c.await.unwrap() {
                Ok(_) => ok += 1,
                Err(TokenError::WaitersFull) => full += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, full), (accessgate_std::MAX_TOKEN_WAITERS, 6));
        assert_eq!(h.control.counts().endpoint_total(Endpoint::Token), 1);
    })
    .await;
}

/// R13: every access change carries its cause, the counters add up, and events render as
/// one-line JSON.
#[tokio::test]
async fn r13_counters_and_causes_are_visible() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        fail_closed(
            &mut h,
            Fault::Status {
                code: 500,
                retry_after: None,
            },
        )
        .await;
        assert_eq!(h.gate.status().cause, Some(Cause::FailedClosed));
        h.control.set_fault(Endpoint::Check, None);
        h.wait_for(StdDuration::from_secs(2), |s| s.status.access == Access::Granted)
            .await;
        assert_eq!(h.gate.status().cause, Some(Cause::Recovered));
        h.gate.logout().await.unwrap();
        let s = h.gate.snapshot();
        assert_eq!(s.status.cause, Some(Cause::LoggedOut));
        let causes: Vec<_> = h.rec.access_changes().into_iter().map(|c| c.2).collect();
        assert_eq!(
            causes,
            [
                Cause::ServerGranted,
                Cause::FailedClosed,
                Cause::Recovered,
                Cause::LoggedOut
            ]
        );
        let c = s.counters;
        let failures = c.transient_of(TransientClass::ServerError);
        assert!(failures >= 3, "{c:?}");
        assert_eq!(c.transient_total(), failures);
        assert_eq!(c.attempts, 1 + failures + 1, "{c:?}"); // grant, failures, recovery
        assert_eq!(
            (
                c.grants,
                c.failed_closed,
                c.recoveries,
                c.logouts,
                c.stale_dropped
            ),
            (2, 1, 1, 1, 0)
        );
        assert_eq!(
            u64::from(c.attempts),
            h.control.counts().endpoint_total(Endpoint::Check)
        );
        h.rec.poll();
        for e in &h.rec.seen {
            let line = e.to_json();
            let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
            assert!(v["t_ms"].is_u64() && v["event"].is_string(), "{line}");
        }
    })
    .await;
}

/// HTTPS with a CA that did not sign the server's certificate never grants: every attempt is
/// a `Tls` failure, access stays `Unknown`, and the gate fails closed at the deadline.
#[tokio::test]
async fn wrong_ca_never_grants() {
    bounded(async {
        let other = backend(Scheme::Https).await;
        let wrong_ca = other.ca_pem().unwrap().to_string();
        let mut h = Harness::with(Scheme::Https, |c| c.extra_ca_pem = Some(wrong_ca)).await;
        let status = h.sign_in().await;
        assert_eq!(status.access, Access::Unknown);
        let closed = h
            .rec
            .next(
                BUDGET + StdDuration::from_secs(1),
                is_access_changed_to(Access::Denied),
            )
            .await;
        assert!(matches!(
            closed.event,
            SessionEvent::Gate(Event::AccessChanged {
                from: Access::Unknown,
                cause: Cause::FailedClosed,
                ..
            })
        ));
        let classes = h.rec.failure_classes();
        assert!(
            !classes.is_empty() && classes.iter().all(|c| *c == TransientClass::Tls),
            "{classes:?}"
        );
        assert_eq!(h.gate.snapshot().counters.grants, 0);
        assert_eq!(
            h.control.counts().endpoint_total(Endpoint::Check),
            0,
            "no request got through"
        );
    })
    .await;
}

/// Without system roots and without the backend's CA, HTTPS fails as `Tls`, too.
#[tokio::test]
async fn no_trusted_roots_is_a_tls_failure() {
    bounded(async {
        let mut h = Harness::with(Scheme::Https, |c| c.extra_ca_pem = None).await;
        assert_eq!(h.sign_in().await.access, Access::Unknown);
        assert_eq!(h.rec.failure_classes().first(), Some(&TransientClass::Tls));
    })
    .await;
}

/// After shutdown every call reports `Closed`; state reads keep the last snapshot.
#[tokio::test]
async fn shutdown_closes_every_call() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        let clone = h.gate.clone();
        h.gate.shutdown().await;
        assert!(matches!(
            clone.recheck().await,
            Err(accessgate_std::GateError::Closed)
        ));
        assert_eq!(clone.access_token().await, Err(TokenError::Closed));
        assert_eq!(clone.access(), Access::Granted);
        h.gate.shutdown().await; // idempotent
    })
    .await;
}

/// `recheck()` right after sign-in, without waiting out the rate limit.
fn no_rate_limit(c: &mut GateClientConfig) {
    c.session.gate.min_recheck_interval = accessgate::Duration::ZERO;
}

/// Attempt timeout of the tests whose checks must be answered, not timed out (1 s instead of
/// 300 ms): a backend latency of a few hundred ms stays well inside it even when a loaded
/// machine stalls the test for a while between the answer and the session reading it.
const PATIENT_TIMEOUT: StdDuration = StdDuration::from_secs(1);

/// [`PATIENT_TIMEOUT`] per attempt; the budget grows to 3 s with it, so that the retry spread
/// and final window (1.2 s) still fit before the deadline less one attempt (R6).
fn patient_attempts(c: &mut GateClientConfig) {
    c.session.gate.attempt_timeout = accessgate::Duration::from_millis(PATIENT_TIMEOUT.as_millis() as u64);
    c.session.gate.budget = accessgate::Duration::from_secs(3);
}

/// R10: `recheck()` runs its check in the caller's task. A caller that goes away mid-request
/// (a timeout around the call) does not lose it: the request finishes in the background and
/// the session gets its answer, as if the caller had waited.
#[tokio::test]
async fn dropped_recheck_still_hands_its_result_to_the_session() {
    bounded(async {
        let mut h = Harness::with(Scheme::Http, |c| {
            no_rate_limit(c);
            patient_attempts(c);
        })
        .await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_access(USER, false);
        h.control
            .set_latency(Endpoint::Check, StdDuration::from_millis(200));
        let dropped = tokio::time::timeout(StdDuration::from_millis(50), h.gate.recheck()).await;
        assert!(dropped.is_err(), "the call was dropped mid-request");
        assert_eq!(h.gate.snapshot().counters.attempts, 2, "its attempt had started");
        // The answer (a revocation) still reaches the session, once, and nothing timed out.
        let denied = h
            .rec
            .next(StdDuration::from_secs(1), is_access_changed_to(Access::Denied))
            .await;
        let started = h.rec.seen.iter().rev().find(|e| {
            matches!(
                e.event,
                SessionEvent::Gate(Event::CheckStarted { attempt: 0, .. })
            )
        });
        let took = ms_between(started.expect("check started").at, denied.at);
        // After the backend's latency, before the attempt timeout: the answer, not a timeout.
        let timeout = PATIENT_TIMEOUT.as_millis() as i64;
        assert!(
            (200..timeout).contains(&took),
            "answered {took} ms after it started"
        );
        let s = h.gate.snapshot();
        assert_eq!(
            (
                s.counters.denials,
                s.counters.transient_total(),
                s.counters.stale_dropped
            ),
            (1, 0, 0)
        );
        assert_eq!(h.control.counts().get(Endpoint::Check, 200), 2);
    })
    .await;
}

/// R4: a dropped `recheck()` whose check hangs is timed out by the session at the attempt
/// timeout, exactly as one that was awaited (the caller's task was aborted here).
#[tokio::test]
async fn dropped_recheck_of_a_hanging_check_times_out() {
    bounded(async {
        let mut h = Harness::with(Scheme::Http, no_rate_limit).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_fault(Endpoint::Check, Some(Fault::Hang));
        let gate = h.gate.clone();
        let caller = tokio::spawn(async move { gate.recheck().await });
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        caller.abort();
        assert!(caller.await.is_err_and(|e| e.is_cancelled()));
        let failed = h.rec.next(StdDuration::from_secs(1), is_check_failed).await;
        let started = (h.rec.seen.iter().rev())
            .find(|e| matches!(e.event, SessionEvent::Gate(Event::CheckStarted { .. })));
        let took = ms_between(started.expect("check started").at, failed.at);
        assert!(
            matches!(
                failed.event,
                SessionEvent::Gate(Event::CheckFailed {
                    class: TransientClass::Timeout,
                    ..
                })
            ),
            "{failed:?}"
        );
        // At the attempt timeout (300 ms), not before; the slack above it is for a loaded
        // machine's late timer, still far from the next retry or the 2 s budget.
        assert!((300..800).contains(&took), "timed out {took} ms after it started");
        assert_eq!(h.gate.snapshot().counters.stale_dropped, 0);
        assert_eq!(h.gate.access(), Access::Granted, "a timeout is transient (R4)");
    })
    .await;
}

/// A shutdown while a caller runs its check aborts the request: the caller gets `Closed` at
/// once, not after the server's answer.
#[tokio::test]
async fn shutdown_during_a_recheck_answers_closed() {
    bounded(async {
        let h = Harness::with(Scheme::Http, no_rate_limit).await;
        assert_eq!(h.sign_in().await.access, Access::Granted);
        h.control.set_fault(Endpoint::Check, Some(Fault::Hang));
        let gate = h.gate.clone();
        let caller = tokio::spawn(async move { gate.recheck().await });
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        let t0 = tokio::time::Instant::now();
        h.gate.shutdown().await;
        let answer = caller.await.unwrap();
        assert!(
            matches!(answer, Err(accessgate_std::GateError::Closed)),
            "{answer:?}"
        );
        assert!(t0.elapsed() < StdDuration::from_millis(100), "{:?}", t0.elapsed());
    })
    .await;
}

/// R3 + R11: restoring a stored session whose access token has expired never sends the dead
/// token: the first check settles at once as `TokenExpired`, a refresh runs, and the new
/// token's check grants.
#[tokio::test]
async fn restore_with_expired_token_refreshes_before_checking() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        let status = h.gate.restore(h.tokens(StdDuration::ZERO)).await.unwrap();
        assert_eq!((status.access, status.signed_in), (Access::Unknown, true));
        let s = h
            .wait_for(StdDuration::from_secs(2), |s| s.status.access == Access::Granted)
            .await;
        assert_eq!(s.counters.transient_of(TransientClass::TokenExpired), 1);
        let counts = h.control.counts();
        assert_eq!(counts.get(Endpoint::Token, 200), 1);
        assert_eq!(
            counts.endpoint_total(Endpoint::Check),
            1,
            "only the new token was sent"
        );
        assert_ne!(h.gate.access_token().await.unwrap(), h.tokens.access_token);
    })
    .await;
}

/// R3, R11: a refresh that lands while the sign-in's own first check runs (in the caller's
/// task) supersedes that check; the sign-in then answers after the new token's first check,
/// which runs in the background, and not with the cancelled one.
#[tokio::test]
async fn sign_in_answers_after_the_refreshed_tokens_first_check() {
    bounded(async {
        let h = Harness::with(Scheme::Http, patient_attempts).await;
        h.control
            .set_latency(Endpoint::Check, StdDuration::from_millis(200));
        // 500 ms left: inside the 1 s skew, so the session refreshes at once (R11).
        let status = h
            .gate
            .sign_in(h.tokens(StdDuration::from_millis(500)))
            .await
            .unwrap();
        let s = h.gate.snapshot();
        assert_eq!(h.control.counts().get(Endpoint::Token, 200), 1, "one refresh");
        assert_eq!(
            status.generation, s.status.generation,
            "answered for the refreshed token's generation"
        );
        assert!(s.status.generation.0 > 1, "the refresh moved the generation");
        assert_eq!(status.access, Access::Granted);
        assert_eq!(
            (
                s.counters.grants,
                s.counters.stale_dropped,
                s.counters.transient_total()
            ),
            (1, 0, 0),
            "only the new token's check counted; the old one was cancelled, not answered"
        );
    })
    .await;
}

/// R10: a sign-in from another clone while the first sign-in's check runs replaces that
/// session. The first call answers `Superseded`, never with the newer session's status (bob is
/// denied; alice would be granted: neither answer is alice's call's to give).
#[tokio::test]
async fn sign_in_replaced_by_another_sign_in_answers_superseded() {
    bounded(async {
        let h = Harness::with(Scheme::Http, patient_attempts).await;
        h.control
            .set_latency(Endpoint::Check, StdDuration::from_millis(400));
        let bob = h.control.issue_token("bob", StdDuration::from_secs(3600));
        h.control.set_access("bob", false);
        let gate = h.gate.clone();
        let alice = h.tokens(StdDuration::from_secs(3600));
        let first = tokio::spawn(async move { gate.sign_in(alice).await });
        // Bob signs in while alice's check waits on the backend (400 ms).
        h.wait_for(StdDuration::from_secs(1), |s| {
            s.status.attempt_in_flight.is_some()
        })
        .await;
        let bob = Tokens::new(bob.access_token, bob.refresh_token, StdDuration::from_secs(3600));
        let second = h.gate.sign_in(bob).await.unwrap();
        assert_eq!(second.access, Access::Denied);
        let first = first.await.unwrap();
        assert!(matches!(first, Err(GateError::Superseded)), "{first:?}");
        let s = h.gate.snapshot();
        assert_eq!(s.status.generation, second.generation);
        assert_eq!(s.status.access, Access::Denied);
        assert_eq!(s.counters.grants, 0, "alice's cancelled check never counted");
    })
    .await;
}

/// Tokens that cannot be sent in a header, or that exceed the session's capacity, are refused
/// up front and change nothing.
#[tokio::test]
async fn unusable_tokens_are_refused() {
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        let bad = [
            Tokens::new("", "rt", StdDuration::from_secs(60)),
            Tokens::new("at\r\nX-Evil: 1", "rt", StdDuration::from_secs(60)),
            Tokens::new("at", "rt with space", StdDuration::from_secs(60)),
            Tokens::new(
                "a".repeat(accessgate::DEFAULT_TOKEN_CAPACITY + 1),
                "rt",
                StdDuration::from_secs(60),
            ),
        ];
        for t in bad {
            let r = h.gate.sign_in(t).await;
            assert!(matches!(r, Err(GateError::InvalidToken(_))), "{r:?}");
        }
        assert!(!h.gate.status().signed_in);
        assert_eq!(h.control.counts().total(), 0);
    })
    .await;
}

/// A closed port is a `Connect` failure; a plain-HTTP port spoken to over TLS is a `Tls` one.
#[tokio::test]
async fn transport_errors_are_classified() {
    bounded(async {
        let b = backend(Scheme::Http).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
            // dropped: nothing listens there any more
        };
        for (base, class) in [
            (format!("http://{closed}"), TransientClass::Connect),
            (format!("https://{}", b.http_addr()), TransientClass::Tls),
        ] {
            let mut cfg = config_for(&b, Scheme::Http);
            let path = GateClientConfig::new(&base);
            cfg.check_url = path.check_url;
            let gate = AccessGate::spawn(cfg).unwrap();
            let mut events = Recorder::new(&gate);
            let tokens = b.control().issue_token(USER, StdDuration::from_secs(60));
            let status = gate
                .sign_in(Tokens::new(
                    tokens.access_token,
                    tokens.refresh_token,
                    StdDuration::from_secs(60),
                ))
                .await
                .unwrap();
            assert_eq!(status.access, Access::Unknown);
            assert_eq!(events.failure_classes().first(), Some(&class), "{base}");
            gate.shutdown().await;
        }
    })
    .await;
}
