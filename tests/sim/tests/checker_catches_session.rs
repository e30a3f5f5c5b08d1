//! The session checker must be able to fail: hand-made traces, honest up to one fabricated
//! observation that breaks exactly one of I6–I10, and the checker must name that invariant.
//!
//! No session is involved: every observation is written by hand, so these tests also show that
//! the checker computes its expectations from inputs and outputs alone.

use accessgate::{
    Access, Cause, CheckOutcome, CheckRequest, Duration, Event, Generation, Instant, RefreshId,
    RefreshRequest, SessionConfig, SessionEvent, TokenHandle, WaitError, WaiterId,
};
use accessgate_sim::session::{
    Checker, Handout, Input, Observed, RefreshAnswer, Reply, Sent, SessionError, Step, Tok, Tolerate,
};
use accessgate_sim::{Invariant, Violation};

/// 60 s skew, 10 s refresh timeout, 10 s attempts, 120 s budget.
const CFG: SessionConfig = SessionConfig::DEFAULT;
const W: usize = 2;
const T: usize = 16;
const AT1: Tok = Tok::access(1, 8);
const RT1: Tok = Tok::refresh(2, 8);
const AT2: Tok = Tok::access(3, 8);
const RT2: Tok = Tok::refresh(4, 8);
const G1: Generation = Generation(1);
const G2: Generation = Generation(2);
const H1: TokenHandle = TokenHandle(1);
const H2: TokenHandle = TokenHandle(2);

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn check(generation: Generation, attempt: u32, token: TokenHandle, started: Instant, bytes: Tok) -> Sent {
    Sent::Check {
        request: CheckRequest {
            generation,
            attempt,
            token,
            timeout: CFG.gate.attempt_timeout,
            started,
        },
        token: Some(bytes.bytes()),
    }
}

fn refresh(id: u32, started: Instant, rt: Tok) -> Sent {
    Sent::Refresh {
        request: RefreshRequest {
            id: RefreshId(id),
            timeout: CFG.refresh_timeout,
            started,
        },
        refresh_token: Some(rt.bytes()),
    }
}

fn started(generation: Generation, attempt: u32) -> SessionEvent {
    SessionEvent::Gate(Event::CheckStarted { generation, attempt })
}

fn handout(handle: TokenHandle, tok: Option<Tok>) -> Handout {
    Handout {
        handle,
        token: tok.map(|t| t.bytes()),
    }
}

/// A fabricated trace: the checker plus the last observation fed to it.
struct Trace {
    checker: Checker,
    last: Observed,
}

/// One step of a trace.
struct S {
    now: Instant,
    input: Input,
    reply: Result<Reply, SessionError>,
    actions: Vec<Sent>,
    waiters: Vec<(WaiterId, Result<Handout, WaitError>)>,
    events: Vec<SessionEvent>,
}

impl S {
    fn new(now: Instant, input: Input) -> Self {
        S {
            now,
            input,
            reply: Ok(Reply::Done),
            actions: vec![],
            waiters: vec![],
            events: vec![],
        }
    }
    fn reply(mut self, r: Result<Reply, SessionError>) -> Self {
        self.reply = r;
        self
    }
    fn actions(mut self, a: Vec<Sent>) -> Self {
        self.actions = a;
        self
    }
    fn waiters(mut self, w: Vec<(WaiterId, Result<Handout, WaitError>)>) -> Self {
        self.waiters = w;
        self
    }
    fn events(mut self, e: Vec<SessionEvent>) -> Self {
        self.events = e;
        self
    }
}

impl Trace {
    fn new(tolerate: Tolerate) -> Self {
        Trace {
            checker: Checker::new(CFG, W, T).with_tolerance(tolerate),
            last: Observed::default(),
        }
    }

    /// Feeds one step; `after` is the previous observation with the counters the actions and
    /// events imply, then `edit`.
    fn feed(&mut self, s: S, edit: impl FnOnce(&mut Observed)) -> Result<(), Violation> {
        let mut after = self.last;
        let c = &mut after.counters;
        for a in &s.actions {
            if matches!(a, Sent::Refresh { .. }) {
                c.refreshes += 1;
            }
        }
        for e in &s.events {
            match e {
                SessionEvent::RefreshFailed { .. } => c.refresh_failures += 1,
                SessionEvent::StaleRefresh { .. } | SessionEvent::Gate(Event::StaleResult { .. }) => {
                    c.stale_dropped += 1
                }
                SessionEvent::Gate(Event::SessionEnded {
                    cause: Cause::Unauthorized,
                }) => c.unauthorized_logouts += 1,
                SessionEvent::Gate(Event::SessionEnded { .. }) => c.logouts += 1,
                _ => {}
            }
        }
        edit(&mut after);
        let step = Step {
            now: s.now,
            input: s.input,
            reply: s.reply,
            actions: s.actions,
            waiters: s.waiters,
            events: s.events,
        };
        let r = self.checker.observe(&step, &self.last, &after);
        self.last = after;
        r
    }

    /// Signed in at 0 s with `AT1`/`RT1` for `lifetime` seconds; attempt 0 in flight.
    fn signed_in(lifetime: u64, tolerate: Tolerate) -> Self {
        let mut tr = Trace::new(tolerate);
        let input = Input::SignIn {
            access: AT1,
            refresh: RT1,
            expires_in: secs(lifetime),
            restore: false,
        };
        tr.feed(
            S::new(t(0), input)
                .reply(Ok(Reply::Started(G1)))
                .actions(vec![check(G1, 0, H1, t(0), AT1)])
                .events(vec![started(G1, 0)]),
            |o| live(o, G1, H1, t(lifetime), t(10)),
        )
        .expect("honest sign-in");
        tr
    }

    /// `signed_in(lifetime)`, then attempt 0 answered `Granted` at 1 s.
    fn granted(lifetime: u64, tolerate: Tolerate) -> Self {
        let mut tr = Trace::signed_in(lifetime, tolerate);
        tr.feed(
            S::new(t(1), result(G1, 0, CheckOutcome::Granted)).events(vec![SessionEvent::Gate(
                Event::AccessChanged {
                    from: Access::Unknown,
                    to: Access::Granted,
                    cause: Cause::ServerGranted,
                },
            )]),
            |o| {
                o.status.access = Access::Granted;
                o.status.cause = Some(Cause::ServerGranted);
                o.poll_timeout = Some(t(lifetime - 60));
            },
        )
        .expect("honest grant");
        tr
    }

    /// `granted(3600)`, then at 3550 s (inside the skew) a caller waits and refresh 0 starts.
    fn waiting_for_refresh(tolerate: Tolerate) -> Self {
        let mut tr = Trace::granted(3600, tolerate);
        tr.feed(
            S::new(t(3550), Input::RequestToken)
                .reply(Ok(Reply::Wait(WaiterId(0))))
                .actions(vec![refresh(0, t(3550), RT1)])
                .events(vec![SessionEvent::RefreshStarted {
                    id: RefreshId(0),
                    early: false,
                }]),
            |o| {
                o.refresh_in_flight = true;
                o.waiting = 1;
                o.poll_timeout = Some(t(3560));
            },
        )
        .expect("honest request_token");
        tr
    }
}

fn result(generation: Generation, attempt: u32, outcome: CheckOutcome) -> Input {
    Input::CheckResult {
        generation,
        attempt,
        outcome,
    }
}

fn live(o: &mut Observed, g: Generation, h: TokenHandle, expires_at: Instant, wake: Instant) {
    o.status.signed_in = true;
    o.status.generation = g;
    o.current_token = Some(h);
    o.expires_at = Some(expires_at);
    o.poll_timeout = Some(wake);
}

fn signed_out(o: &mut Observed, g: Generation) {
    o.status.signed_in = false;
    o.status.generation = g;
    o.status.access = Access::Unknown;
    o.current_token = None;
    o.expires_at = None;
    o.refresh_in_flight = false;
    o.waiting = 0;
    o.poll_timeout = None;
}

#[track_caller]
fn assert_caught(r: Result<(), Violation>, want: Invariant) {
    match r {
        Err(v) => {
            assert_eq!(v.invariant, want, "caught as the wrong invariant: {v}");
            println!("caught as expected: {v}");
        }
        Ok(()) => panic!("the checker accepted a trace that breaks {want:?}"),
    }
}

fn logged_out_events() -> Vec<SessionEvent> {
    vec![
        SessionEvent::Gate(Event::AccessChanged {
            from: Access::Granted,
            to: Access::Unknown,
            cause: Cause::LoggedOut,
        }),
        SessionEvent::Gate(Event::SessionEnded {
            cause: Cause::LoggedOut,
        }),
    ]
}

// ---- honest traces pass ----

#[test]
fn an_honest_trace_passes() {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    // The logout rejects the waiter; the refresh's late answer is stale.
    tr.feed(
        S::new(t(3551), Input::Logout)
            .waiters(vec![(WaiterId(0), Err(WaitError::NotAuthenticated))])
            .events(logged_out_events()),
        |o| signed_out(o, G2),
    )
    .unwrap();
    let late = Input::RefreshResult {
        id: RefreshId(0),
        answer: RefreshAnswer::Refreshed {
            access: AT2,
            refresh: Some(RT2),
            expires_in: secs(3600),
        },
    };
    tr.feed(
        S::new(t(3552), late).events(vec![SessionEvent::StaleRefresh { id: RefreshId(0) }]),
        |_| {},
    )
    .unwrap();
}

// ---- I6 ----

/// A caller that waited through a logout gets `Ok` with the torn-down session's token.
#[test]
fn i6_waiter_gets_ok_after_logout() {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    let r = tr.feed(
        S::new(t(3551), Input::Logout)
            .waiters(vec![(WaiterId(0), Ok(handout(H1, Some(AT1))))]) // fabricated
            .events(logged_out_events()),
        |o| signed_out(o, G2),
    );
    assert_caught(r, Invariant::I6);
}

/// A caller that waited through a logout is never told anything.
#[test]
fn i6_waiter_not_told_at_logout() {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    let r = tr.feed(
        S::new(t(3551), Input::Logout).events(logged_out_events()), // no waiter outcome
        |o| signed_out(o, G2),
    );
    assert_caught(r, Invariant::I6);
}

/// A caller waiting through a 401 (on the check of a live session) gets `Unavailable`
/// instead of `NotAuthenticated`.
#[test]
fn i6_waiter_of_a_401_session_gets_unavailable() {
    let mut tr = Trace::signed_in(3600, Tolerate::NONE);
    tr.feed(
        S::new(t(1), Input::RequestToken)
            .reply(Ok(Reply::Wait(WaiterId(0))))
            .actions(vec![refresh(0, t(1), RT1)])
            .events(vec![SessionEvent::RefreshStarted {
                id: RefreshId(0),
                early: false,
            }]),
        |o| {
            o.refresh_in_flight = true;
            o.waiting = 1;
        },
    )
    .expect("honest (an early refresh on request)");
    let r = tr.feed(
        S::new(t(2), result(G1, 0, CheckOutcome::Unauthorized))
            .waiters(vec![(WaiterId(0), Err(WaitError::Unavailable))]) // fabricated
            .events(vec![SessionEvent::Gate(Event::SessionEnded {
                cause: Cause::Unauthorized,
            })]),
        |o| {
            signed_out(o, G2);
            o.status.cause = Some(Cause::Unauthorized);
        },
    );
    assert_caught(r, Invariant::I6);
}

/// After a refresh, `Ready` hands out a handle that still leads to the previous token.
#[test]
fn i6_ready_hands_out_the_superseded_token() {
    let mut tr = Trace::granted(3600, Tolerate::NONE);
    tr.feed(
        S::new(t(3540), Input::Timeout)
            .actions(vec![refresh(0, t(3540), RT1)])
            .events(vec![SessionEvent::RefreshStarted {
                id: RefreshId(0),
                early: false,
            }]),
        |o| {
            o.refresh_in_flight = true;
            o.poll_timeout = Some(t(3550));
        },
    )
    .expect("honest refresh due");
    let answer = Input::RefreshResult {
        id: RefreshId(0),
        answer: RefreshAnswer::Refreshed {
            access: AT2,
            refresh: Some(RT2),
            expires_in: secs(3600),
        },
    };
    tr.feed(
        S::new(t(3541), answer)
            .actions(vec![check(G2, 0, H2, t(3541), AT2)])
            .events(vec![
                started(G2, 0),
                SessionEvent::Refreshed {
                    generation: G2,
                    expires_at: t(3541 + 3600),
                },
            ]),
        |o| {
            live(o, G2, H2, t(3541 + 3600), t(3551));
            o.refresh_in_flight = false;
        },
    )
    .expect("honest refresh");
    let r = tr.feed(
        S::new(t(3542), Input::RequestToken).reply(Ok(Reply::Ready(handout(H1, Some(AT1))))), // fabricated
        |_| {},
    );
    assert_caught(r, Invariant::I6);
}

/// A check is sent with bytes that are not the latest token.
#[test]
fn i6_check_sends_an_old_token() {
    let mut tr = Trace::granted(3600, Tolerate::NONE);
    let r = tr.feed(
        S::new(t(100), Input::RecheckNow)
            .actions(vec![check(G1, 1, H1, t(100), AT2)]) // fabricated: AT2 was never delivered
            .events(vec![started(G1, 1)]),
        |o| o.poll_timeout = Some(t(110)),
    );
    assert_caught(r, Invariant::I6);
}

// ---- I7 ----

/// A second caller starts a second refresh while the first is in flight.
#[test]
fn i7_second_refresh_while_one_is_in_flight() {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    let r = tr.feed(
        S::new(t(3555), Input::RequestToken)
            .reply(Ok(Reply::Wait(WaiterId(1))))
            .actions(vec![refresh(1, t(3555), RT1)]) // fabricated
            .events(vec![SessionEvent::RefreshStarted {
                id: RefreshId(1),
                early: false,
            }]),
        |o| o.waiting = 2,
    );
    assert_caught(r, Invariant::I7);
}

/// A new refresh reuses the id of an earlier one (whose late answer would then count).
#[test]
fn i7_refresh_id_reused() {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    // Refresh 0 times out at 3560 s: a transient failure; the token is valid, so the waiter
    // gets it, and a retry is planned.
    tr.feed(
        S::new(t(3560), Input::Timeout)
            .waiters(vec![(WaiterId(0), Ok(handout(H1, Some(AT1))))])
            .events(vec![SessionEvent::RefreshFailed {
                class: accessgate::TransientClass::Timeout,
                detail: accessgate::FailureDetail::Net(accessgate::NetFailure::Timeout),
                next_attempt: t(3561),
            }]),
        |o| {
            o.refresh_in_flight = false;
            o.waiting = 0;
            o.poll_timeout = Some(t(3561));
        },
    )
    .expect("honest refresh timeout");
    let r = tr.feed(
        S::new(t(3561), Input::Timeout)
            .actions(vec![refresh(0, t(3561), RT1)]) // fabricated: id 0 again
            .events(vec![SessionEvent::RefreshStarted {
                id: RefreshId(0),
                early: false,
            }]),
        |o| {
            o.refresh_in_flight = true;
            o.poll_timeout = Some(t(3571));
        },
    );
    assert_caught(r, Invariant::I7);
}

// ---- I8 ----

fn ended_by_401() -> Trace {
    let mut tr = Trace::signed_in(3600, Tolerate::NONE);
    tr.feed(
        S::new(t(5), result(G1, 0, CheckOutcome::Unauthorized)).events(vec![SessionEvent::Gate(
            Event::SessionEnded {
                cause: Cause::Unauthorized,
            },
        )]),
        |o| {
            signed_out(o, G2);
            o.status.cause = Some(Cause::Unauthorized);
        },
    )
    .expect("honest 401");
    tr
}

/// A check starts after a 401 ended the session.
#[test]
fn i8_check_after_a_401() {
    let mut tr = ended_by_401();
    let r = tr.feed(
        S::new(t(20), Input::Timeout)
            .actions(vec![check(G2, 0, TokenHandle(2), t(20), AT1)]) // fabricated
            .events(vec![started(G2, 0)]),
        |_| {},
    );
    assert_caught(r, Invariant::I8);
}

/// A refresh starts after a rejected refresh ended the session.
#[test]
fn i8_refresh_after_a_rejected_refresh() {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    let rejected = Input::RefreshResult {
        id: RefreshId(0),
        answer: RefreshAnswer::Rejected,
    };
    tr.feed(
        S::new(t(3551), rejected)
            .waiters(vec![(WaiterId(0), Err(WaitError::NotAuthenticated))])
            .events(vec![
                SessionEvent::RefreshRejected,
                SessionEvent::Gate(Event::SessionEnded {
                    cause: Cause::Unauthorized,
                }),
            ]),
        |o| {
            signed_out(o, G2);
            o.status.cause = Some(Cause::Unauthorized);
        },
    )
    .expect("honest rejection");
    let r = tr.feed(
        S::new(t(3552), Input::Timeout)
            .actions(vec![refresh(1, t(3552), RT1)]) // fabricated
            .events(vec![SessionEvent::RefreshStarted {
                id: RefreshId(1),
                early: false,
            }]),
        |_| {},
    );
    assert_caught(r, Invariant::I8);
}

/// The session ignores a 401 for the check in flight and checks again.
#[test]
fn i8_session_carries_on_after_a_401() {
    let mut tr = Trace::signed_in(3600, Tolerate::NONE);
    let r = tr.feed(
        // fabricated: no session end, a retry instead
        S::new(t(5), result(G1, 0, CheckOutcome::Unauthorized))
            .actions(vec![check(G1, 1, H1, t(5), AT1)])
            .events(vec![started(G1, 1)]),
        |o| o.poll_timeout = Some(t(15)),
    );
    assert_caught(r, Invariant::I8);
}

/// A late 401 (its attempt had timed out) for the current generation: the session must end
/// (I8 as the issue states it: "a check answered Unauthorized for the current generation");
/// carrying on is what the core did before it fixed finding S8 (see core_findings.rs).
#[test]
fn i8_session_carries_on_after_a_late_401_of_the_current_generation() {
    let mut tr = Trace::signed_in(3600, Tolerate::NONE);
    // Attempt 0 times out at 10 s; the retry is planned for 12 s; the deadline is 130 s.
    tr.feed(
        S::new(t(10), Input::Timeout).events(vec![SessionEvent::Gate(Event::CheckFailed {
            generation: G1,
            attempt: 0,
            class: accessgate::TransientClass::Timeout,
            detail: accessgate::FailureDetail::Net(accessgate::NetFailure::Timeout),
            next_attempt: Some(t(12)),
            deadline: Some(t(130)),
        })]),
        |o| o.poll_timeout = Some(t(12)),
    )
    .expect("honest attempt timeout");
    // Its answer arrives late: 401. The gate drops it as stale, and the session carries on.
    let r = tr.feed(
        S::new(t(11), result(G1, 0, CheckOutcome::Unauthorized)).events(vec![SessionEvent::Gate(
            Event::StaleResult {
                generation: G1,
                attempt: 0,
            },
        )]),
        |_| {},
    );
    assert_caught(r, Invariant::I8);
}

/// The same late 401, honestly followed by the end of the session, passes in every mode.
#[test]
fn a_late_401_that_ends_the_session_passes() {
    for tolerate in [Tolerate::NONE, Tolerate::KNOWN] {
        let mut tr = Trace::signed_in(3600, tolerate);
        tr.feed(
            S::new(t(10), Input::Timeout).events(vec![SessionEvent::Gate(Event::CheckFailed {
                generation: G1,
                attempt: 0,
                class: accessgate::TransientClass::Timeout,
                detail: accessgate::FailureDetail::Net(accessgate::NetFailure::Timeout),
                next_attempt: Some(t(12)),
                deadline: Some(t(130)),
            })]),
            |o| o.poll_timeout = Some(t(12)),
        )
        .unwrap();
        tr.feed(
            S::new(t(11), result(G1, 0, CheckOutcome::Unauthorized)).events(vec![
                SessionEvent::Gate(Event::StaleResult {
                    generation: G1,
                    attempt: 0,
                }),
                SessionEvent::Gate(Event::SessionEnded {
                    cause: Cause::Unauthorized,
                }),
            ]),
            |o| {
                signed_out(o, G2);
                o.status.cause = Some(Cause::Unauthorized);
            },
        )
        .unwrap();
    }
}

// ---- I9 ----

/// `Ready` hands out a token past its expiry.
#[test]
fn i9_ready_with_an_expired_token() {
    let mut tr = Trace::granted(100, Tolerate::NONE); // expires at 100 s
    let r = tr.feed(
        S::new(t(150), Input::RequestToken).reply(Ok(Reply::Ready(handout(H1, Some(AT1))))), // fabricated
        |o| o.poll_timeout = Some(t(160)),
    );
    assert_caught(r, Invariant::I9);
}

/// `Ready` exactly at the expiry instant: `now < expires_at` is required, to the tick.
#[test]
fn i9_ready_at_the_expiry_instant() {
    let mut tr = Trace::granted(100, Tolerate::NONE);
    let r = tr.feed(
        S::new(t(100), Input::RequestToken).reply(Ok(Reply::Ready(handout(H1, Some(AT1))))), // fabricated
        |o| o.poll_timeout = Some(t(110)),
    );
    assert_caught(r, Invariant::I9);
}

/// A check is sent with an expired token.
#[test]
fn i9_check_sent_with_an_expired_token() {
    let mut tr = Trace::granted(100, Tolerate::NONE);
    let r = tr.feed(
        S::new(t(150), Input::RecheckNow)
            .actions(vec![check(G1, 1, H1, t(150), AT1)]) // fabricated
            .events(vec![started(G1, 1)]),
        |o| o.poll_timeout = Some(t(160)),
    );
    assert_caught(r, Invariant::I9);
}

/// A caller waiting for a refresh gets the refreshed token after it expired (a 5 s token whose
/// check timed out after 10 s): what the core did before it fixed finding S4.
#[test]
fn i9_waiter_gets_a_refreshed_token_after_its_expiry() {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    let answer = Input::RefreshResult {
        id: RefreshId(0),
        answer: RefreshAnswer::Refreshed {
            access: AT2,
            refresh: None,
            expires_in: secs(5),
        },
    };
    tr.feed(
        S::new(t(3551), answer)
            .actions(vec![check(G2, 0, H2, t(3551), AT2)])
            .events(vec![
                started(G2, 0),
                SessionEvent::Refreshed {
                    generation: G2,
                    expires_at: t(3556),
                },
            ]),
        |o| {
            live(o, G2, H2, t(3556), t(3552));
            o.refresh_in_flight = false;
        },
    )
    .expect("honest refresh");
    let r = tr.feed(
        S::new(t(3561), Input::Timeout)
            .waiters(vec![(WaiterId(0), Ok(handout(H2, Some(AT2))))])
            .events(vec![SessionEvent::Gate(Event::CheckFailed {
                generation: G2,
                attempt: 0,
                class: accessgate::TransientClass::Timeout,
                detail: accessgate::FailureDetail::Net(accessgate::NetFailure::Timeout),
                next_attempt: Some(t(3562)),
                deadline: Some(t(3681)),
            })]),
        |o| {
            o.waiting = 0;
            o.poll_timeout = Some(t(3562));
        },
    );
    assert_caught(r, Invariant::I9);
}

// ---- I10 ----

/// A broken token endpoint: from `waiting_for_refresh` (refresh 0 started at 3550 s), every
/// refresh is answered at once with a token that has already expired (`expires_in: 0`), and
/// the next refresh starts `gaps[i]` seconds after the previous one (0: in the same step as the
/// answer, the storm of issue 14). Returns the first violation.
fn expired_tokens_at_once(gaps: &[u64]) -> Result<(), Violation> {
    let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
    let mut at = 3550;
    for (i, &gap) in gaps.iter().enumerate() {
        let i = i as u32;
        let g = Generation(2 + i);
        let answer = Input::RefreshResult {
            id: RefreshId(i),
            answer: RefreshAnswer::Refreshed {
                access: Tok::access(10 + i, 8),
                refresh: None,
                expires_in: Duration::ZERO,
            },
        };
        let next = refresh(i + 1, t(at + gap), RT1);
        let next_started = SessionEvent::RefreshStarted {
            id: RefreshId(i + 1),
            early: false,
        };
        let refreshed = SessionEvent::Refreshed {
            generation: g,
            expires_at: t(at),
        };
        // The caller of `waiting_for_refresh` learns that the new token is dead already.
        let waiters = if i == 0 {
            vec![(WaiterId(0), Err(WaitError::Unavailable))]
        } else {
            vec![]
        };
        if gap == 0 {
            // The storm: the answer restarts a refresh in the same instant.
            return tr.feed(
                S::new(t(at), answer)
                    .actions(vec![next])
                    .events(vec![refreshed, next_started])
                    .waiters(waiters),
                |o| {
                    live(o, g, TokenHandle(2 + i), t(at), t(at + 10));
                    o.waiting = 0;
                },
            );
        }
        tr.feed(
            S::new(t(at), answer).events(vec![refreshed]).waiters(waiters),
            |o| {
                live(o, g, TokenHandle(2 + i), t(at), t(at + gap));
                o.refresh_in_flight = false;
                o.waiting = 0;
            },
        )?;
        at += gap;
        tr.feed(
            S::new(t(at), Input::Timeout)
                .actions(vec![next])
                .events(vec![next_started]),
            |o| {
                o.refresh_in_flight = true;
                o.poll_timeout = Some(t(at + 10));
            },
        )?;
    }
    Ok(())
}

/// Issue 14 item 2: `expires_in: 0` answered at once, and the session refreshes again in the
/// same instant (9,947 refreshes in 5 s against `accessgate watch`).
#[test]
fn i10_refresh_storm_on_expires_in_zero() {
    assert_caught(expired_tokens_at_once(&[0]), Invariant::I10);
}

/// The same endpoint, with refreshes 1 s, 2 s, 4 s, then 5 s apart (the backoff of R11): a
/// trickle, accepted; one gap short of its step is caught, at every step of the run.
#[test]
fn i10_refreshes_must_follow_the_backoff_whatever_expires_in_says() {
    expired_tokens_at_once(&[1, 2, 4, 5, 5, 5]).expect("a trickle at the backoff's pace passes");
    // After a quiet spell (twice the cap) the run starts over at 1 s.
    expired_tokens_at_once(&[1, 2, 4, 10, 1, 2]).expect("a new run after a quiet spell");
    for short in [
        &[1, 1][..],
        &[1, 2, 3],
        &[1, 2, 4, 4],
        &[1, 2, 4, 5, 5, 4],
        &[1, 2, 4, 9, 4],
    ] {
        assert_caught(expired_tokens_at_once(short), Invariant::I10);
    }
}

// ---- the model beyond I6–I9 ----

/// R11: a refresh that fails while the token is valid is retried within 1 s first (then 2 s,
/// 4 s, 5 s): a retry planned 2 s after the first failure breaks the backoff.
#[test]
fn model_refresh_retry_outside_the_backoff() {
    for (next, ok) in [(3561, true), (3562, false)] {
        let mut tr = Trace::waiting_for_refresh(Tolerate::NONE);
        let r = tr.feed(
            S::new(t(3560), Input::Timeout)
                .waiters(vec![(WaiterId(0), Ok(handout(H1, Some(AT1))))])
                .events(vec![SessionEvent::RefreshFailed {
                    class: accessgate::TransientClass::Timeout,
                    detail: accessgate::FailureDetail::Net(accessgate::NetFailure::Timeout),
                    next_attempt: t(next),
                }]),
            |o| {
                o.refresh_in_flight = false;
                o.waiting = 0;
                o.poll_timeout = Some(t(next));
            },
        );
        if ok {
            r.expect("a retry 1 s later is inside the first backoff step");
        } else {
            assert_caught(r, Invariant::Model);
        }
    }
}
