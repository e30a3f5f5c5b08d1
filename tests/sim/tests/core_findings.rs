//! Disagreements between the core and its own documented contract that the simulator's
//! traces brought up, kept as regression tests now that they are fixed: finding 1 by stating
//! the contract precisely (`InputError`: only `QueueFull` leaves time unadvanced), finding 2 in
//! the gate (a retry that comes due is started at the end of the input, so an input that
//! supersedes it never starts it). Neither broke I1–I5 for a driver that follows the
//! documented loop, which is why the random runs passed.

use accessgate::{
    Access, Backoff, CheckOutcome, Duration, Event, Gate, GateConfig, InputError, Instant, TokenHandle,
    TransientClass,
};

const FAIL: CheckOutcome = CheckOutcome::transient(TransientClass::ServerError);

fn drain<const N: usize>(g: &mut Gate<N>) -> Vec<Event> {
    core::iter::from_fn(|| g.poll_event()).collect()
}

/// Finding 1. `InputError` says "A refused input changed nothing", but `recheck_now` runs the
/// timer prologue before it refuses with `RateLimited`: at the deadline, the refused call
/// fails the gate closed (access `Granted`/`Unknown` -> `Denied`, an `AccessChanged` event is
/// queued). A driver that trusts the doc and skips draining after a refusal keeps rendering
/// the old access until its next input. Fix either the doc ("due timers still fire") or the
/// order (refuse before `begin`, which would then have to leave the timers for the next
/// input).
#[test]
fn rate_limited_recheck_still_advances_time() {
    let cfg = GateConfig {
        attempt_timeout: Duration::from_secs(1),
        budget: Duration::from_secs(10),
        retry: Backoff {
            base: Duration::from_millis(100),
            factor: 1,
            cap: Duration::from_millis(100),
        },
        probe: Backoff {
            base: Duration::from_secs(1),
            factor: 2,
            cap: Duration::from_secs(10),
        },
        max_body: 1024,
        // Longer than the budget: any attempt in the budget rate-limits a re-check at its end.
        min_recheck_interval: Duration::from_secs(20),
    };
    let mut g: Gate<1> = Gate::new(cfg, 3).unwrap();
    let deadline = Instant::from_secs(10);
    let gen = g.start_session(Instant::ZERO, TokenHandle(1)).unwrap();
    let r = g.poll_check().unwrap();
    g.handle_check_result(Instant::ZERO, gen, r.attempt, FAIL)
        .unwrap(); // deadline 10 s
                   // Every planned retry fails at once, until only the deadline is left.
    while let Some(at) = g.poll_timeout().filter(|&at| at < deadline) {
        g.handle_timeout(at).unwrap();
        if let Some(r) = g.poll_check() {
            g.handle_check_result(at, gen, r.attempt, FAIL).unwrap();
        }
    }
    drain(&mut g);
    assert_eq!(g.access(), Access::Unknown);
    assert_eq!(g.poll_timeout(), Some(deadline));
    let before = g.status();

    // At the deadline the app asks for a re-check: refused, rate-limited ...
    let reply = g.recheck_now(deadline);
    assert!(matches!(reply, Err(InputError::RateLimited { .. })), "{reply:?}");
    // ... and, as `InputError` documents, time still advanced: the deadline fired (R5).
    let events = drain(&mut g);
    assert_ne!(g.status(), before);
    assert_eq!(g.access(), Access::Denied);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::AccessChanged {
            to: Access::Denied,
            ..
        }
    )));
    // Only a full queue refuses without advancing time.
    let mut g2: Gate<1> = Gate::new(cfg, 3).unwrap();
    g2.start_session(Instant::ZERO, TokenHandle(1)).unwrap();
    while g2.event_room() >= accessgate::MAX_EVENTS_PER_INPUT {
        let _ = g2.recheck_now(Instant::ZERO);
        let _ = g2.token_refreshed(Instant::ZERO, TokenHandle(2));
    }
    let frozen = g2.status();
    assert_eq!(
        g2.handle_timeout(Instant::from_secs(1_000)),
        Err(InputError::QueueFull)
    );
    assert_eq!(g2.status(), frozen);
}

/// Finding 2. When a retry timer is due and the same input supersedes it (`token_refreshed`,
/// `start_session` or `logout` at or after the retry instant), the prologue starts the retry
/// (`CheckStarted` event, `attempts` + 1) and the input then overwrites or clears the pending
/// request, so `poll_check` never hands it out. The event log shows a check that was never
/// sent and `counters().attempts` counts it (R13), and the request is dropped without any
/// event saying so (R12: "nothing is dropped silently"). Harmless for access (the phantom
/// attempt belongs to a superseded generation), but it inflates the attempt counter a fleet
/// dashboard reads.
#[test]
fn every_started_attempt_is_handed_out() {
    let mut g: Gate<8> = Gate::new(GateConfig::DEFAULT, 42).unwrap();
    let t0 = Instant::from_secs(100);
    let gen = g.start_session(t0, TokenHandle(1)).unwrap();
    let mut handed_out = 0u32;
    let r = g.poll_check().unwrap();
    handed_out += 1;
    g.handle_check_result(t0, gen, r.attempt, FAIL).unwrap();
    drain(&mut g);
    let retry_at = g.status().next_attempt.expect("a retry is planned");

    // The token is refreshed exactly when the retry is due.
    g.token_refreshed(retry_at, TokenHandle(2)).unwrap();
    handed_out += u32::try_from(core::iter::from_fn(|| g.poll_check()).count()).unwrap();
    let started = drain(&mut g)
        .iter()
        .filter(|e| matches!(e, Event::CheckStarted { .. }))
        .count();

    assert_eq!(
        handed_out, 2,
        "attempt 0 of generation 1, then attempt 0 of generation 2"
    );
    assert_eq!(started, 1, "CheckStarted events for checks never handed out");
    assert_eq!(
        g.counters().attempts,
        handed_out,
        "attempts counts a check that was never sent"
    );
}
