//! The checker must be able to fail: hand-made traces, honest up to one fabricated
//! observation that breaks exactly one invariant, and the checker must name that invariant.
//!
//! Every trace here is fabricated (no gate is involved), so these tests also show that the
//! checker computes its expectations from inputs and outputs alone.

use accessgate::{
    Access, Cause, CheckOutcome, CheckRequest, Counters, Duration, Event, GateConfig, Generation, Instant,
    Probing, Status, TokenHandle, TransientClass,
};
use accessgate_sim::gate::{Checker, Input, InputError, Observed, Step};
use accessgate_sim::{Invariant, Violation};

/// 10 s attempts, 120 s budget; `N` = 2 retries: one in [f, f + 70 s) after the first failure
/// `f`, the other in [f + 100 s, f + 110 s]; probes: 2 over the 120 s after failing closed
/// (slices of 60 s), then every 300 s.
const CFG: GateConfig = GateConfig {
    probe: Probing {
        period: Duration::from_secs(300),
        ramp: Duration::from_secs(120),
        ramp_probes: 2,
    },
    ..GateConfig::DEFAULT
};
const N: usize = 2;
const TOK: TokenHandle = TokenHandle(1);
const G1: Generation = Generation(1);
const G2: Generation = Generation(2);
const SERVER_ERROR: CheckOutcome = CheckOutcome::transient(TransientClass::ServerError);

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

fn req(generation: Generation, attempt: u32, token: TokenHandle, started: Instant) -> CheckRequest {
    CheckRequest {
        generation,
        attempt,
        token,
        timeout: CFG.attempt_timeout,
        started,
    }
}

/// A fabricated trace: the checker plus the last observation fed to it.
struct Trace {
    checker: Checker,
    last: Observed,
}

impl Trace {
    fn new() -> Self {
        Trace {
            checker: Checker::new(CFG, N),
            last: Observed::default(),
        }
    }

    /// Feeds one step; `after` is built from the previous observation by `edit`.
    fn feed(
        &mut self,
        now: Instant,
        input: Input,
        reply: Result<Option<Generation>, InputError>,
        events: &[Event],
        checks: &[CheckRequest],
        edit: impl FnOnce(&mut Observed),
    ) -> Result<(), Violation> {
        let step = Step {
            now,
            input,
            reply,
            events: events.to_vec(),
            checks: checks.to_vec(),
        };
        let mut after = self.last;
        count(&mut after.counters, events);
        edit(&mut after);
        let r = self.checker.observe(&step, &self.last, &after);
        self.last = after;
        r
    }

    /// Session start at 0 s: attempt 0 in flight, access Unknown.
    fn signed_in() -> Self {
        let mut tr = Trace::new();
        tr.feed(
            t(0),
            Input::StartSession { token: TOK },
            Ok(Some(G1)),
            &[Event::CheckStarted {
                generation: G1,
                attempt: 0,
            }],
            &[req(G1, 0, TOK, t(0))],
            |o| {
                o.status = Status {
                    signed_in: true,
                    generation: G1,
                    attempt_in_flight: Some(0),
                    ..Status::default()
                };
                o.poll_timeout = Some(t(10));
                o.check_owed = true;
            },
        )
        .expect("honest session start");
        tr
    }

    /// Signed in at 0 s, granted at 1 s.
    fn granted() -> Self {
        let mut tr = Trace::signed_in();
        tr.feed(
            t(1),
            Input::CheckResult {
                generation: G1,
                attempt: 0,
                outcome: CheckOutcome::Granted,
            },
            Ok(None),
            &[Event::AccessChanged {
                from: Access::Unknown,
                to: Access::Granted,
                cause: Cause::ServerGranted,
            }],
            &[],
            |o| {
                o.status.access = Access::Granted;
                o.status.cause = Some(Cause::ServerGranted);
                o.status.attempt_in_flight = None;
                o.poll_timeout = None;
                o.check_owed = false;
            },
        )
        .expect("honest grant");
        tr
    }

    /// The retry planned at `start` starts as attempt `attempt` and fails (503) 1 s later,
    /// planning the next attempt at `next`; the deadline is `deadline`.
    fn retry_fails(&mut self, attempt: u32, start: Instant, next: Option<Instant>, deadline: Instant) {
        self.attempt_fails(attempt, start, next, Some(deadline))
            .expect("honest retry failure");
    }

    /// Like [`Trace::retry_fails`], with the deadline passed (`None`: failed closed, probing);
    /// returns what the checker said about the failure.
    fn attempt_fails(
        &mut self,
        attempt: u32,
        start: Instant,
        next: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<(), Violation> {
        self.feed(
            start,
            Input::Timeout,
            Ok(None),
            &[Event::CheckStarted {
                generation: G1,
                attempt,
            }],
            &[req(G1, attempt, TOK, start)],
            |o| {
                o.status.attempt_in_flight = Some(attempt);
                o.status.next_attempt = None;
                o.poll_timeout = Some(start + CFG.attempt_timeout);
            },
        )
        .expect("honest retry start");
        let at = start + Duration::from_secs(1);
        self.feed(
            at,
            Input::CheckResult {
                generation: G1,
                attempt,
                outcome: SERVER_ERROR,
            },
            Ok(None),
            &[Event::CheckFailed {
                generation: G1,
                attempt,
                class: TransientClass::ServerError,
                detail: accessgate::FailureDetail::of_class(TransientClass::ServerError),
                next_attempt: next,
                deadline,
            }],
            &[],
            |o| {
                o.status.attempt_in_flight = None;
                o.status.next_attempt = next;
                o.poll_timeout = match (next, deadline) {
                    (Some(n), Some(d)) => Some(n.min(d)),
                    (n, d) => n.or(d),
                };
            },
        )
    }

    /// Signed in at 0 s; attempt 0 failed (503) at 1 s: deadline 121 s, retry planned at 3 s.
    fn failing() -> Self {
        let mut tr = Trace::signed_in();
        tr.feed(
            t(1),
            Input::CheckResult {
                generation: G1,
                attempt: 0,
                outcome: SERVER_ERROR,
            },
            Ok(None),
            &[Event::CheckFailed {
                generation: G1,
                attempt: 0,
                class: TransientClass::ServerError,
                detail: accessgate::FailureDetail::of_class(TransientClass::ServerError),
                next_attempt: Some(t(3)),
                deadline: Some(t(121)),
            }],
            &[],
            |o| {
                o.status.attempt_in_flight = None;
                o.status.reverifying_until = Some(t(121));
                o.status.next_attempt = Some(t(3));
                o.poll_timeout = Some(t(3));
            },
        )
        .expect("honest transient failure");
        tr
    }
}

/// Counters as an honest gate would bump them for these events (R13), so a fabricated
/// trace only spells out what it breaks.
fn count(c: &mut Counters, events: &[Event]) {
    for e in events {
        match *e {
            Event::CheckStarted { .. } => c.attempts += 1,
            Event::CheckFailed { class, .. } => c.transient[class.index()] += 1,
            Event::StaleResult { .. } => c.stale_dropped += 1,
            Event::AccessChanged { cause, .. } => match cause {
                Cause::ServerGranted => c.grants += 1,
                Cause::Recovered => {
                    c.grants += 1;
                    c.recoveries += 1
                }
                Cause::ServerDenied => c.denials += 1,
                Cause::FailedClosed => c.failed_closed += 1,
                Cause::LoggedOut | Cause::Unauthorized => {}
            },
            Event::SessionEnded {
                cause: Cause::Unauthorized,
            } => c.unauthorized_logouts += 1,
            Event::SessionEnded { .. } => c.logouts += 1,
            Event::FirstCheckSettled { .. } => {}
        }
    }
}

#[track_caller]
fn assert_caught(r: Result<(), Violation>, invariant: Invariant) {
    match r {
        Err(v) => assert_eq!(v.invariant, invariant, "caught, but as the wrong invariant: {v}"),
        Ok(()) => panic!("the checker let a {invariant:?} violation through"),
    }
}

#[test]
fn honest_fabricated_traces_pass() {
    // The prefixes above are checked inside the constructors; a longer honest one here:
    // failure at 1 s, the retry at 3 s (slice [1 s, 71 s)) fails at 4 s, the last one at
    // 105 s (final window [101 s, 111 s]) at 106 s, the deadline fires at 121 s to the tick
    // and plans the first ramp probe inside [121 s, 181 s).
    let mut tr = Trace::failing();
    tr.retry_fails(1, t(3), Some(t(105)), t(121));
    tr.retry_fails(2, t(105), None, t(121));
    tr.feed(
        t(121),
        Input::Timeout,
        Ok(None),
        &[Event::AccessChanged {
            from: Access::Unknown,
            to: Access::Denied,
            cause: Cause::FailedClosed,
        }],
        &[],
        |o| {
            o.status.access = Access::Denied;
            o.status.cause = Some(Cause::FailedClosed);
            o.status.reverifying_until = None;
            o.status.probing = true;
            o.status.next_attempt = Some(t(140));
            o.poll_timeout = Some(t(140));
        },
    )
    .unwrap();
    // Probing: ramp probe 2 in [181 s, 241 s), then the period (300 s) at a phase after 241 s.
    tr.attempt_fails(3, t(140), Some(t(200)), None).unwrap();
    tr.attempt_fails(4, t(200), Some(t(300)), None).unwrap(); // phase 59 s
    tr.attempt_fails(5, t(300), Some(t(600)), None).unwrap();
    tr.attempt_fails(6, t(600), Some(t(900)), None).unwrap();
}

#[track_caller]
fn assert_schedule_caught(r: Result<(), Violation>, what: &str) {
    match r {
        Err(v) => {
            assert_eq!(
                v.invariant,
                Invariant::Model,
                "caught, but as the wrong invariant: {v}"
            );
            assert!(v.to_string().contains(what), "caught, but not as {what:?}: {v}");
        }
        Ok(()) => panic!("the checker let a schedule violation ({what}) through"),
    }
}

#[test]
fn r6_a_retry_outside_its_slice_or_the_final_window_is_caught() {
    // Attempt 0 fails at 1 s: retry 1 of 2 belongs in [1 s, 71 s); 75 s is outside.
    let mut tr = Trace::signed_in();
    let r = tr.feed(
        t(1),
        Input::CheckResult {
            generation: G1,
            attempt: 0,
            outcome: SERVER_ERROR,
        },
        Ok(None),
        &[Event::CheckFailed {
            generation: G1,
            attempt: 0,
            class: TransientClass::ServerError,
            detail: accessgate::FailureDetail::of_class(TransientClass::ServerError),
            next_attempt: Some(t(75)),
            deadline: Some(t(121)),
        }],
        &[],
        |o| {
            o.status.attempt_in_flight = None;
            o.status.reverifying_until = Some(t(121));
            o.status.next_attempt = Some(t(75));
            o.poll_timeout = Some(t(75));
        },
    );
    assert_schedule_caught(r, "inside its slice");

    // Retry 1 fails at 4 s: the last retry belongs in [101 s, 111 s]; 90 s is too early.
    let mut tr = Trace::failing();
    let r = tr.attempt_fails(1, t(3), Some(t(90)), Some(t(121)));
    assert_schedule_caught(r, "inside its final window");

    // Retry 1 fails at 4 s and plans nothing, although the final window is still ahead.
    let mut tr = Trace::failing();
    let r = tr.attempt_fails(1, t(3), None, Some(t(121)));
    assert_schedule_caught(r, "nothing planned");

    // Both retries used: a third one is planned.
    let mut tr = Trace::failing();
    tr.retry_fails(1, t(3), Some(t(105)), t(121));
    let r = tr.attempt_fails(2, t(105), Some(t(108)), Some(t(121)));
    assert_schedule_caught(r, "no retry slot is left");
}

#[test]
fn r7_a_probe_off_its_ramp_slot_or_its_period_is_caught() {
    // Failed closed at 121 s with the first ramp probe at 140 s (see the honest trace).
    let closed = || {
        let mut tr = Trace::failing();
        tr.retry_fails(1, t(3), Some(t(105)), t(121));
        tr.retry_fails(2, t(105), None, t(121));
        tr.feed(
            t(121),
            Input::Timeout,
            Ok(None),
            &[Event::AccessChanged {
                from: Access::Unknown,
                to: Access::Denied,
                cause: Cause::FailedClosed,
            }],
            &[],
            |o| {
                o.status.access = Access::Denied;
                o.status.cause = Some(Cause::FailedClosed);
                o.status.reverifying_until = None;
                o.status.probing = true;
                o.status.next_attempt = Some(t(140));
                o.poll_timeout = Some(t(140));
            },
        )
        .unwrap();
        tr
    };
    // Ramp probe 2 belongs in [181 s, 241 s).
    let mut tr = closed();
    let r = tr.attempt_fails(3, t(140), Some(t(250)), None);
    assert_schedule_caught(r, "ramp probe 2");

    // The first periodic probe at 300 s fixes the phase (59 s after the ramp ends at
    // 241 s); the one after must be at 600 s, not 601 s.
    let mut tr = closed();
    tr.attempt_fails(3, t(140), Some(t(200)), None).unwrap();
    tr.attempt_fails(4, t(200), Some(t(300)), None).unwrap();
    let r = tr.attempt_fails(5, t(300), Some(t(601)), None);
    assert_schedule_caught(r, "periodic probe");

    // A probe that hangs past its period point: the next one is the period point after the
    // failure (900 s), not one period after the failure (910 s).
    let mut tr = closed();
    tr.attempt_fails(3, t(140), Some(t(200)), None).unwrap();
    tr.attempt_fails(4, t(200), Some(t(300)), None).unwrap();
    tr.attempt_fails(5, t(300), Some(t(600)), None).unwrap();
    tr.feed(
        t(600),
        Input::Timeout,
        Ok(None),
        &[Event::CheckStarted {
            generation: G1,
            attempt: 6,
        }],
        &[req(G1, 6, TOK, t(600))],
        |o| {
            o.status.attempt_in_flight = Some(6);
            o.status.next_attempt = None;
            o.poll_timeout = Some(t(610));
        },
    )
    .unwrap();
    let r = tr.feed(
        t(610),
        Input::Timeout,
        Ok(None),
        &[Event::CheckFailed {
            generation: G1,
            attempt: 6,
            class: TransientClass::Timeout,
            detail: accessgate::FailureDetail::of_class(TransientClass::Timeout),
            next_attempt: Some(t(910)),
            deadline: None,
        }],
        &[],
        |o| {
            o.status.attempt_in_flight = None;
            o.status.next_attempt = Some(t(910));
            o.poll_timeout = Some(t(910));
        },
    );
    assert_schedule_caught(r, "periodic probe");

    // Probing never stops: a failed probe with nothing planned.
    let mut tr = closed();
    let r = tr.attempt_fails(3, t(140), None, None);
    match r {
        Err(v) => assert_eq!(v.invariant, Invariant::I5, "{v}"),
        Ok(()) => panic!("a probe loop that stops was let through"),
    }
}

#[test]
fn i1_grant_without_a_grant_after_logout_or_past_the_deadline_is_caught() {
    // A grant that survives a logout.
    let mut tr = Trace::granted();
    let r = tr.feed(
        t(2),
        Input::Logout,
        Ok(None),
        &[Event::SessionEnded {
            cause: Cause::LoggedOut,
        }],
        &[],
        |o| {
            o.status.signed_in = false;
            o.status.generation = G2;
            // access left Granted
        },
    );
    assert_caught(r, Invariant::I1);

    // A grant out of nowhere after a definitive denial.
    let mut tr = Trace::signed_in();
    tr.feed(
        t(1),
        Input::CheckResult {
            generation: G1,
            attempt: 0,
            outcome: CheckOutcome::Denied,
        },
        Ok(None),
        &[Event::AccessChanged {
            from: Access::Unknown,
            to: Access::Denied,
            cause: Cause::ServerDenied,
        }],
        &[],
        |o| {
            o.status.access = Access::Denied;
            o.status.cause = Some(Cause::ServerDenied);
            o.status.attempt_in_flight = None;
            o.poll_timeout = None;
            o.check_owed = false;
        },
    )
    .unwrap();
    let r = tr.feed(t(5), Input::Timeout, Ok(None), &[], &[], |o| {
        o.status.access = Access::Granted
    });
    assert_caught(r, Invariant::I1);

    // A status claiming Granted after the deadline: granted at 1 s, a re-check at 10 s
    // fails at 11 s (deadline 131 s), still Granted at 131 s.
    let mut tr = Trace::granted();
    tr.feed(
        t(10),
        Input::RecheckNow,
        Ok(None),
        &[Event::CheckStarted {
            generation: G1,
            attempt: 1,
        }],
        &[req(G1, 1, TOK, t(10))],
        |o| {
            o.status.attempt_in_flight = Some(1);
            o.poll_timeout = Some(t(20));
            o.check_owed = true;
        },
    )
    .unwrap();
    tr.feed(
        t(11),
        Input::CheckResult {
            generation: G1,
            attempt: 1,
            outcome: SERVER_ERROR,
        },
        Ok(None),
        &[Event::CheckFailed {
            generation: G1,
            attempt: 1,
            class: TransientClass::ServerError,
            detail: accessgate::FailureDetail::of_class(TransientClass::ServerError),
            next_attempt: Some(t(40)),
            deadline: Some(t(131)),
        }],
        &[],
        |o| {
            o.status.attempt_in_flight = None;
            o.status.reverifying_until = Some(t(131));
            o.status.next_attempt = Some(t(40));
            o.poll_timeout = Some(t(40));
        },
    )
    .unwrap();
    // Retry 1 in [11 s, 81 s), retry 2 (the last) in [111 s, 121 s].
    tr.retry_fails(2, t(40), Some(t(115)), t(131));
    tr.retry_fails(3, t(115), None, t(131));
    let r = tr.feed(t(131), Input::Timeout, Ok(None), &[], &[], |o| {
        o.status.reverifying_until = None;
        o.status.probing = true;
        o.poll_timeout = Some(t(150));
    });
    assert_caught(r, Invariant::I1);
}

#[test]
fn i2_transient_failure_flipping_access_early_is_caught() {
    // Unknown -> Denied on the first 503, 120 s before the deadline.
    let mut tr = Trace::signed_in();
    let r = tr.feed(
        t(1),
        Input::CheckResult {
            generation: G1,
            attempt: 0,
            outcome: SERVER_ERROR,
        },
        Ok(None),
        &[
            Event::CheckFailed {
                generation: G1,
                attempt: 0,
                class: TransientClass::ServerError,
                detail: accessgate::FailureDetail::of_class(TransientClass::ServerError),
                next_attempt: Some(t(3)),
                deadline: Some(t(121)),
            },
            Event::AccessChanged {
                from: Access::Unknown,
                to: Access::Denied,
                cause: Cause::FailedClosed,
            },
        ],
        &[],
        |o| {
            o.status.access = Access::Denied;
            o.status.cause = Some(Cause::FailedClosed);
            o.status.attempt_in_flight = None;
            o.status.reverifying_until = Some(t(121));
            o.poll_timeout = Some(t(3));
        },
    );
    assert_caught(r, Invariant::I2);

    // Granted -> Unknown when a re-check times out (the attempt timer is a transient failure).
    let mut tr = Trace::granted();
    tr.feed(
        t(10),
        Input::RecheckNow,
        Ok(None),
        &[Event::CheckStarted {
            generation: G1,
            attempt: 1,
        }],
        &[req(G1, 1, TOK, t(10))],
        |o| {
            o.status.attempt_in_flight = Some(1);
            o.poll_timeout = Some(t(20));
            o.check_owed = true;
        },
    )
    .unwrap();
    let r = tr.feed(
        t(20),
        Input::Timeout,
        Ok(None),
        &[
            Event::CheckFailed {
                generation: G1,
                attempt: 1,
                class: TransientClass::Timeout,
                detail: accessgate::FailureDetail::of_class(TransientClass::Timeout),
                next_attempt: Some(t(22)),
                deadline: Some(t(140)),
            },
            Event::AccessChanged {
                from: Access::Granted,
                to: Access::Unknown,
                cause: Cause::LoggedOut,
            },
        ],
        &[],
        |o| {
            o.status.access = Access::Unknown;
            o.status.attempt_in_flight = None;
            o.status.reverifying_until = Some(t(140));
            o.poll_timeout = Some(t(22));
        },
    );
    assert_caught(r, Invariant::I2);
}

#[test]
fn i3_no_denial_at_the_deadline_or_a_moving_deadline_is_caught() {
    // Still Unknown at the deadline (121 s) with no definitive answer since the 503 at 1 s.
    let mut tr = Trace::failing();
    let r = tr.feed(t(121), Input::Timeout, Ok(None), &[], &[], |o| {
        o.status.reverifying_until = None;
        o.poll_timeout = Some(t(130));
    });
    assert_caught(r, Invariant::I3);

    // One microsecond past the deadline, even after an oversleep.
    let mut tr = Trace::failing();
    let r = tr.feed(
        Instant::from_micros(121_000_001),
        Input::Timeout,
        Ok(None),
        &[],
        &[],
        |o| {
            o.status.reverifying_until = None;
            o.poll_timeout = Some(t(130));
        },
    );
    assert_caught(r, Invariant::I3);

    // The deadline moved: a token refresh reports a fresh 120 s budget.
    let mut tr = Trace::failing();
    let r = tr.feed(
        t(2),
        Input::TokenRefreshed {
            token: TokenHandle(2),
        },
        Ok(Some(G2)),
        &[Event::CheckStarted {
            generation: G2,
            attempt: 0,
        }],
        &[req(G2, 0, TokenHandle(2), t(2))],
        |o| {
            o.status.generation = G2;
            o.status.attempt_in_flight = Some(0);
            o.status.next_attempt = None;
            o.status.reverifying_until = Some(t(122));
            o.poll_timeout = Some(t(12));
        },
    );
    assert_caught(r, Invariant::I3);

    // The gate sleeps past its own deadline: a driver waiting for poll_timeout misses it.
    let mut tr = Trace::failing();
    let r = tr.feed(t(2), Input::Timeout, Ok(None), &[], &[], |o| {
        o.status.next_attempt = Some(t(200));
        o.poll_timeout = Some(t(200));
    });
    assert_caught(r, Invariant::I3);
}

#[test]
fn i4_stale_result_that_changes_anything_is_caught() {
    // Granted in generation 1, refreshed to generation 2; generation 1's late "denied" must
    // be dropped, not applied.
    let refreshed = || {
        let mut tr = Trace::granted();
        tr.feed(
            t(2),
            Input::TokenRefreshed {
                token: TokenHandle(2),
            },
            Ok(Some(G2)),
            &[Event::CheckStarted {
                generation: G2,
                attempt: 0,
            }],
            &[req(G2, 0, TokenHandle(2), t(2))],
            |o| {
                o.status.generation = G2;
                o.status.attempt_in_flight = Some(0);
                o.poll_timeout = Some(t(12));
                o.check_owed = true;
            },
        )
        .unwrap();
        tr
    };
    let stale_deny = Input::CheckResult {
        generation: G1,
        attempt: 0,
        outcome: CheckOutcome::Denied,
    };

    // Honest: dropped and counted.
    let mut tr = refreshed();
    tr.feed(
        t(3),
        stale_deny,
        Ok(None),
        &[Event::StaleResult {
            generation: G1,
            attempt: 0,
        }],
        &[],
        |_| {},
    )
    .unwrap();

    // Counted as stale, but it changed access anyway.
    let mut tr = refreshed();
    let r = tr.feed(
        t(3),
        stale_deny,
        Ok(None),
        &[
            Event::AccessChanged {
                from: Access::Granted,
                to: Access::Denied,
                cause: Cause::ServerDenied,
            },
            Event::StaleResult {
                generation: G1,
                attempt: 0,
            },
        ],
        &[],
        |o| {
            o.status.access = Access::Denied;
            o.status.cause = Some(Cause::ServerDenied);
        },
    );
    assert_caught(r, Invariant::I4);

    // Applied as if current (no stale event, no stale count).
    let mut tr = refreshed();
    let r = tr.feed(
        t(3),
        stale_deny,
        Ok(None),
        &[Event::AccessChanged {
            from: Access::Granted,
            to: Access::Denied,
            cause: Cause::ServerDenied,
        }],
        &[],
        |o| {
            o.status.access = Access::Denied;
            o.status.cause = Some(Cause::ServerDenied);
        },
    );
    assert_caught(r, Invariant::I4);

    // The right generation but not the attempt in flight: a 401 for attempt 5 must not log out.
    let mut tr = refreshed();
    let r = tr.feed(
        t(3),
        Input::CheckResult {
            generation: G2,
            attempt: 5,
            outcome: CheckOutcome::Unauthorized,
        },
        Ok(None),
        &[Event::StaleResult {
            generation: G2,
            attempt: 5,
        }],
        &[],
        |o| {
            o.status.signed_in = false;
        },
    );
    assert_caught(r, Invariant::I4);
}

#[test]
fn i5_unbounded_outputs_or_a_stall_is_caught() {
    // Nine events from one input.
    let mut tr = Trace::signed_in();
    let nine = [Event::CheckStarted {
        generation: G1,
        attempt: 0,
    }; 9];
    let r = tr.feed(t(1), Input::Timeout, Ok(None), &nine, &[], |_| {});
    assert_caught(r, Invariant::I5);

    // Two checks from one input.
    let mut tr = Trace::failing();
    let r = tr.feed(
        t(3),
        Input::Timeout,
        Ok(None),
        &[
            Event::CheckStarted {
                generation: G1,
                attempt: 1,
            },
            Event::CheckStarted {
                generation: G1,
                attempt: 2,
            },
        ],
        &[req(G1, 1, TOK, t(3)), req(G1, 2, TOK, t(3))],
        |_| {},
    );
    assert_caught(r, Invariant::I5);

    // A check is owed (attempt 0 failed, no definitive answer) but nothing is scheduled.
    let mut tr = Trace::signed_in();
    let r = tr.feed(
        t(1),
        Input::CheckResult {
            generation: G1,
            attempt: 0,
            outcome: SERVER_ERROR,
        },
        Ok(None),
        &[Event::CheckFailed {
            generation: G1,
            attempt: 0,
            class: TransientClass::ServerError,
            detail: accessgate::FailureDetail::of_class(TransientClass::ServerError),
            next_attempt: None,
            deadline: Some(t(121)),
        }],
        &[],
        |o| {
            o.status.attempt_in_flight = None;
            o.status.reverifying_until = Some(t(121));
            o.poll_timeout = None;
        },
    );
    assert_caught(r, Invariant::I5);

    // The gate claims nothing is owed right after a session start.
    let mut tr = Trace::new();
    let r = tr.feed(
        t(0),
        Input::StartSession { token: TOK },
        Ok(Some(G1)),
        &[Event::CheckStarted {
            generation: G1,
            attempt: 0,
        }],
        &[req(G1, 0, TOK, t(0))],
        |o| {
            o.status = Status {
                signed_in: true,
                generation: G1,
                attempt_in_flight: Some(0),
                ..Status::default()
            };
            o.poll_timeout = Some(t(10));
            o.check_owed = false;
        },
    );
    assert_caught(r, Invariant::I5);

    // handle_timeout leaves a timer in the past: a driver would spin.
    let mut tr = Trace::failing();
    let r = tr.feed(t(5), Input::Timeout, Ok(None), &[], &[], |_| {});
    assert_caught(r, Invariant::I5);

    // An event lost although every event was drained (R12: inputs cannot fail, so a lost
    // event is the only way a queue that is too small would show).
    let mut tr = Trace::signed_in();
    let r = tr.feed(t(1), Input::Logout, Ok(None), &[], &[], |o| {
        o.counters.events_lost += 1
    });
    assert_caught(r, Invariant::I5);
}

#[test]
fn model_catches_wrong_tags_and_broken_cause_chains() {
    // Attempt 0 of a session started with the wrong token.
    let mut tr = Trace::new();
    let r = tr.feed(
        t(0),
        Input::StartSession { token: TOK },
        Ok(Some(G1)),
        &[Event::CheckStarted {
            generation: G1,
            attempt: 0,
        }],
        &[req(G1, 0, TokenHandle(99), t(0))],
        |o| {
            o.status = Status {
                signed_in: true,
                generation: G1,
                attempt_in_flight: Some(0),
                ..Status::default()
            };
            o.poll_timeout = Some(t(10));
            o.check_owed = true;
        },
    );
    assert_caught(r, Invariant::Model);

    // Access changed with no AccessChanged event (R13).
    let mut tr = Trace::signed_in();
    let r = tr.feed(
        t(1),
        Input::CheckResult {
            generation: G1,
            attempt: 0,
            outcome: CheckOutcome::Granted,
        },
        Ok(None),
        &[],
        &[],
        |o| {
            o.status.access = Access::Granted;
            o.status.cause = Some(Cause::ServerGranted);
            o.status.attempt_in_flight = None;
            o.poll_timeout = None;
            o.check_owed = false;
        },
    );
    assert_caught(r, Invariant::Model);

    // A retry slot that ignores Retry-After.
    let mut tr = Trace::signed_in();
    let r = tr.feed(
        t(1),
        Input::CheckResult {
            generation: G1,
            attempt: 0,
            outcome: CheckOutcome::Transient {
                class: TransientClass::Throttled,
                detail: accessgate::FailureDetail::of_class(TransientClass::Throttled),
                retry_after: Some(Duration::from_secs(30)),
            },
        },
        Ok(None),
        &[Event::CheckFailed {
            generation: G1,
            attempt: 0,
            class: TransientClass::Throttled,
            detail: accessgate::FailureDetail::of_class(TransientClass::Throttled),
            next_attempt: Some(t(3)),
            deadline: Some(t(121)),
        }],
        &[],
        |o| {
            o.status.attempt_in_flight = None;
            o.status.reverifying_until = Some(t(121));
            o.poll_timeout = Some(t(3));
        },
    );
    assert_caught(r, Invariant::Model);
}
