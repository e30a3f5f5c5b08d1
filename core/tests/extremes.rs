//! A hostile property test of the session at the extremes the simulator's profiles and the
//! default-config fuzz target do not reach: configurations that pass `validate()` but sit at
//! their edges (1 µs timeouts, `Duration::MAX` budgets and periods, a refresh skew longer than
//! any token, zero recheck interval, retry counts 0 and N, 16 ramp probes, `N`/`W`/`T` of 1),
//! clocks that start at `Instant::ZERO` or near `Instant::MAX`, jump by huge amounts or go
//! backwards, and every input in every state with current, stale and made-up tags.
//!
//! Each run draws a configuration and a clock from a seed (`fastrand`, the core's own PRNG
//! crate), then feeds random inputs, draining the outputs after every input as a driver must,
//! and checks after every input:
//! - no panic (tests run in debug: an arithmetic overflow is a panic);
//! - R5: a fail-closed deadline that has passed never leaves access `Granted`, and it never
//!   moves while its run of failures lasts;
//! - R1, R10: access becomes `Granted` only through a current grant; a stale result (another
//!   generation, a finished attempt, a signed-out session) changes nothing a plain
//!   `handle_timeout` at the same instant would not (checked against a clone);
//! - R12: nothing left due after an input (`poll_timeout` is after the input's instant), so a
//!   driver that sleeps until `poll_timeout` always makes progress; the events of one input fit
//!   the queue and none is lost; at most one check and one refresh handed out at a time;
//! - R11: refresh starts never closer together than the refresh backoff's base; a token handed
//!   to a waiter or to a check is the current one and not expired;
//! - time never runs backwards: `last_now` never decreases, whatever `now` an input carries.
//!
//! An input at the last representable instant, `Instant::MAX` ("never", where every timer
//! planned near the end of time saturates), happens 1 µs before it.

use accessgate::*;

type Rng = fastrand::Rng;

const US: Duration = Duration::from_micros(1);

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// A duration from a set of edges and random values of every magnitude.
fn edge_duration(rng: &mut Rng) -> Duration {
    match rng.u8(0..12) {
        0 => US,
        1 => us(2),
        2 => Duration::from_secs(1),
        3 => Duration::from_secs(10),
        4 => Duration::from_secs(120),
        5 => Duration::from_secs(86_400 * 365),
        6 => Duration::MAX,
        7 => us(u64::MAX - 1),
        8 => us(u64::MAX / 2),
        9 => us(rng.u64(..) >> rng.u32(0..64)),
        10 => Duration::ZERO,
        _ => us(rng.u64(1..1_000)),
    }
}

/// A valid configuration with every field at or near an edge; falls back field by field to
/// the default's value where a drawn one is refused. `n` is the retry schedule's capacity.
fn extreme_config(rng: &mut Rng, n: usize) -> SessionConfig {
    let mut c = SessionConfig::DEFAULT;
    // Budget and attempt timeout first: every retry window hangs off them.
    let budget = edge_duration(rng).max(us(2));
    let timeout = match rng.u8(0..5) {
        0 => US,
        1 => budget.saturating_sub(US),
        2 => us(budget.as_micros() / 2),
        3 => us(rng.u64(1..budget.as_micros())),
        _ => edge_duration(rng).max(US).min(budget.saturating_sub(US)),
    };
    c.gate.budget = budget;
    c.gate.attempt_timeout = timeout;
    let room = budget.saturating_sub(timeout);
    let final_window = match rng.u8(0..4) {
        0 => Duration::ZERO,
        1 => room.saturating_sub(US), // leaves 1 µs for the spread window
        2 => us(rng.u64(0..room.as_micros())),
        _ => US.min(room.saturating_sub(US)),
    };
    let spread_room = room.saturating_sub(final_window);
    let spread = match rng.u8(0..3) {
        0 => US,
        1 => spread_room, // the maximum
        _ => us(rng.u64(1..=spread_room.as_micros())),
    };
    c.gate.retry = Retries {
        spread,
        final_window,
        count: match rng.u8(0..4) {
            0 => 0,
            1 => 1,
            2 => u16::try_from(n).unwrap_or(u16::MAX),
            _ => rng.u16(0..=u16::try_from(n).unwrap_or(u16::MAX)),
        },
    };
    let ramp_probes = match rng.u8(0..4) {
        0 => 0,
        1 => 1,
        2 => Probing::MAX_RAMP_PROBES,
        _ => rng.u32(0..=Probing::MAX_RAMP_PROBES),
    };
    c.gate.probe = Probing {
        period: edge_duration(rng).max(US),
        ramp: if ramp_probes == 0 {
            Duration::ZERO
        } else {
            edge_duration(rng).max(US)
        },
        ramp_probes,
    };
    c.gate.max_body = if rng.bool() { 1 } else { usize::MAX };
    c.gate.min_recheck_interval = edge_duration(rng);
    c.refresh_skew = edge_duration(rng);
    let base = edge_duration(rng).max(US);
    c.refresh_retry = Backoff {
        base,
        factor: match rng.u8(0..3) {
            0 => 1,
            1 => u32::MAX,
            _ => rng.u32(1..10),
        },
        cap: if rng.bool() {
            base
        } else {
            edge_duration(rng).max(base)
        },
    };
    c.refresh_timeout = edge_duration(rng).max(US);
    c.refresh_spread = edge_duration(rng);
    assert_eq!(
        c.validate(),
        Ok(()),
        "the generator must only draw valid configs: {c:?}"
    );
    c
}

/// Where the clock starts.
fn start_instant(rng: &mut Rng) -> Instant {
    match rng.u8(0..6) {
        0 | 1 => Instant::ZERO,
        2 => Instant::from_micros(rng.u64(..) >> rng.u32(0..64)),
        3 => Instant::from_micros(u64::MAX - 1 - rng.u64(0..1 << 40)),
        4 if rng.bool() => Instant::MAX.saturating_sub(Duration::from_secs(rng.u64(1..1_000))),
        _ => Instant::from_secs(1_000),
    }
}

/// The `now` of the next input: small and huge steps, the session's own deadline (and just
/// around it), the last instant, and steps backwards.
fn next_now(rng: &mut Rng, now: Instant, poll: Option<Instant>) -> Instant {
    // The session's next deadline; one at the end of time is taken only now and then, so runs
    // spend most of their steps before it.
    let poll = poll.filter(|&t| t - now < Duration::from_secs(86_400 * 365) || rng.u8(..) == 0);
    match rng.u16(0..400) {
        0..=59 => now,
        60..=89 => now + US,
        90..=139 => now + us(rng.u64(0..1_000_000)),
        140..=149 => now + us(rng.u64(..) >> rng.u32(16..64)), // up to years
        150 => Instant::MAX,
        151..=169 => now.saturating_sub(us(rng.u64(..) >> rng.u32(0..64))), // backwards
        170..=174 => Instant::ZERO,                                         // far backwards
        175..=204 => poll.map_or(now, |t| t.saturating_sub(US)),
        205..=234 => poll.map_or(now, |t| t + US),
        _ => poll.unwrap_or_else(|| now + us(rng.u64(0..1 << 30))),
    }
}

fn edge_expires_in(rng: &mut Rng, cfg: &SessionConfig) -> Duration {
    match rng.u8(0..8) {
        0 => Duration::ZERO,
        1 => US,
        2 => cfg.refresh_skew,
        3 => cfg.refresh_skew + US,
        4 => cfg.refresh_skew.saturating_sub(US),
        5 => Duration::MAX,
        6 => Duration::from_secs(3_600),
        _ => edge_duration(rng),
    }
}

fn outcome(rng: &mut Rng) -> CheckOutcome {
    match rng.u8(0..16) {
        0..=4 => CheckOutcome::Granted,
        5 | 6 => CheckOutcome::Denied,
        7 => CheckOutcome::Unauthorized,
        _ => CheckOutcome::Transient {
            class: TransientClass::ALL[rng.usize(0..TransientClass::COUNT)],
            retry_after: match rng.u8(0..5) {
                0 => None,
                1 => Some(Duration::ZERO),
                2 => Some(Duration::MAX),
                3 => Some(Duration::from_secs(u64::from(u32::MAX))),
                _ => Some(edge_duration(rng)),
            },
            detail: FailureDetail::Status(rng.u16(..)),
        },
    }
}

const TOKENS: [&[u8]; 6] = [b"a", b"at", b"", b"at-long-token", b"bad token", b"\x7f"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Input {
    SignIn,
    Restore,
    Logout,
    Recheck,
    RequestToken,
    Timeout,
    Check(Generation, u32, CheckOutcome),
    Refresh(RefreshId, u8),
}

/// One run: a config, a clock, `steps` random inputs, every oracle after every input.
struct Run<const N: usize, const W: usize, const T: usize> {
    s: Session<N, W, T>,
    rng: Rng,
    now: Instant,
    /// Every check and refresh ever handed out (results for them are fed, current or stale).
    checks: Vec<(Generation, u32)>,
    refreshes: Vec<RefreshId>,
    /// Handed out and neither answered nor cancelled: never more than one of each.
    live_check: Vec<(Generation, u32)>,
    live_refresh: Vec<RefreshId>,
    /// The fail-closed deadline of the current run of failures, once seen (R5).
    deadline: Option<Instant>,
    last_refresh_start: Option<Instant>,
    /// The last input was a refused sign-in.
    refused: bool,
    /// The most events one input queued.
    max_events: usize,
    /// The silent network settled callers or a first check that were waiting.
    settled_waiters: bool,
    /// The immediate check started and not yet settled, by the events (R3).
    open_first: Option<Generation>,
    log: Vec<String>,
}

impl<const N: usize, const W: usize, const T: usize> Run<N, W, T> {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::with_seed(seed);
        let cfg = extreme_config(&mut rng, N);
        let s = Session::<N, W, T>::new(cfg, rng.u64(..)).expect("valid config");
        let now = start_instant(&mut rng);
        Run {
            s,
            rng,
            now,
            checks: Vec::new(),
            refreshes: Vec::new(),
            live_check: Vec::new(),
            live_refresh: Vec::new(),
            deadline: None,
            last_refresh_start: None,
            refused: false,
            max_events: 0,
            settled_waiters: false,
            open_first: None,
            log: vec![format!(
                "seed {seed} N {N} W {W} T {T} config {cfg:?} start {now:?}"
            )],
        }
    }

    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(25).collect();
        if std::env::var_os("EXTREMES_DUMP").is_some() {
            eprintln!("{:?}", self.s.status());
            eprintln!(
                "expires_at {:?} poll {:?}",
                self.s.expires_at(),
                self.s.poll_timeout()
            );
        }
        panic!("{what}\n{}\nlast inputs (newest first):\n{tail:#?}", self.log[0]);
    }

    fn draw_input(&mut self) -> Input {
        let rng = &mut self.rng;
        match rng.u8(0..20) {
            0 => Input::SignIn,
            1 => Input::Restore,
            2 => Input::Logout,
            3 | 4 => Input::Recheck,
            5 | 6 => Input::RequestToken,
            7..=9 => Input::Timeout,
            10..=15 => {
                let (g, a) = match rng.u8(0..6) {
                    // The latest check handed out (usually the current one).
                    0..=2 => self.checks.last().copied().unwrap_or((Generation(0), 0)),
                    3 if !self.checks.is_empty() => self.checks[rng.usize(0..self.checks.len())],
                    4 => (Generation(rng.u32(..)), rng.u32(..)),
                    _ => (self.s.status().generation, rng.u32(0..3)),
                };
                Input::Check(g, a, outcome(rng))
            }
            _ => {
                let id = match rng.u8(0..4) {
                    0..=1 => self.refreshes.last().copied().unwrap_or(RefreshId(0)),
                    2 if !self.refreshes.is_empty() => self.refreshes[rng.usize(0..self.refreshes.len())],
                    _ => RefreshId(rng.u32(..)),
                };
                Input::Refresh(id, rng.u8(..))
            }
        }
    }

    /// Feeds one input at `now`. Returns whether it fed a grant for the attempt the session
    /// had in flight after its timers ran (the only way to `Granted`, R1, R10), and whether it
    /// may end a run of failures (a sign-in, a logout, a current definitive answer).
    fn feed(&mut self, input: Input, now: Instant) -> (bool, bool) {
        let cfg = *self.s.config();
        let rng = &mut self.rng;
        match input {
            Input::SignIn | Input::Restore => {
                let at = TOKENS[rng.usize(0..TOKENS.len())];
                let rt = TOKENS[rng.usize(0..TOKENS.len())];
                let expires_in = edge_expires_in(rng, &cfg);
                let r = if input == Input::SignIn {
                    self.s.sign_in(now, at, rt, expires_in)
                } else {
                    self.s.restore(now, at, rt, expires_in)
                };
                let refused =
                    at.len() > T || rt.len() > T || !header_safe(at) || (!rt.is_empty() && !header_safe(rt));
                if r.is_err() != refused {
                    self.fail(&format!("sign-in with {at:?} / {rt:?}: {r:?}"));
                }
                // A refused sign-in changes nothing, not even the time (its doc).
                self.refused = refused;
                (false, true)
            }
            Input::Logout => {
                self.s.logout(now);
                (false, true)
            }
            Input::Recheck => {
                let _ = self.s.recheck_now(now);
                (false, false)
            }
            Input::RequestToken => {
                let signed_in = self.s.status().signed_in;
                match self.s.request_token(now) {
                    Ok(TokenReply::Ready(h)) => {
                        // R11, I9: a ready token is the current one and not expired.
                        let t = self.s.last_now();
                        if self.s.access_token(h).is_none() || self.s.expires_at().is_none_or(|e| t >= e) {
                            self.fail(&format!("Ready({h:?}) at {t:?}: expired or not current"));
                        }
                    }
                    Ok(TokenReply::Wait(_)) => {}
                    Err(TokenRequestError::NotSignedIn) if !signed_in => {}
                    // R12: the table is full (drained after every input, so it holds W).
                    Err(TokenRequestError::WaitersFull) => {}
                    Err(e) => self.fail(&format!("request_token: {e:?} while signed in: {signed_in}")),
                }
                (false, false)
            }
            Input::Timeout => {
                self.s.handle_timeout(now);
                (false, false)
            }
            Input::Check(g, a, o) => {
                // The same result with another outcome: a dropped result's outcome must not
                // matter (R10).
                let mut reference = self.s.clone();
                let neutral = CheckOutcome::transient(TransientClass::Connect);
                reference.handle_check_result(now, g, a, neutral);
                let was_live = self.live_check.contains(&(g, a));
                let stale_before = self.s.counters().stale_dropped;
                let current_generation = self.s.status().signed_in && self.s.status().generation == g;
                self.live_check.retain(|&c| c != (g, a));
                self.s.handle_check_result(now, g, a, o);
                let dropped = self.s.counters().stale_dropped > stale_before;
                if !dropped && !was_live {
                    self.fail(&format!(
                        "a result for ({g:?}, {a}), never handed out or cancelled, was taken"
                    ));
                }
                // Allowed for the current generation's token even when the attempt is over: a
                // late 401 ends the session (R8), a late 403 asks for the early refresh (R9).
                let token_verdict = current_generation
                    && matches!(
                        o,
                        CheckOutcome::Unauthorized
                            | CheckOutcome::Transient {
                                class: TransientClass::Forbidden,
                                ..
                            }
                    );
                if dropped && !token_verdict {
                    let (got, want) = (self.s.status(), reference.status());
                    if got != want || self.s.poll_timeout() != reference.poll_timeout() {
                        self.fail(&format!(
                            "stale result ({g:?}, {a}, {o:?}) changed state:\n{got:?}\nvs\n{want:?}"
                        ));
                    }
                }
                (!dropped && o == CheckOutcome::Granted, !dropped || token_verdict)
            }
            Input::Refresh(id, pick) => {
                let long = [b'x'; 40];
                let o = match pick % 9 {
                    0 => RefreshOutcome::Rejected,
                    1 | 2 => RefreshOutcome::transient(
                        TransientClass::ALL[usize::from(pick) % TransientClass::COUNT],
                    ),
                    3 => RefreshOutcome::Refreshed {
                        access_token: &long[..usize::from(pick) % 40 + 1],
                        refresh_token: None,
                        expires_in: edge_expires_in(rng, &cfg),
                    },
                    4 => RefreshOutcome::Refreshed {
                        access_token: b"bad token",
                        refresh_token: Some(b"r"),
                        expires_in: edge_expires_in(rng, &cfg),
                    },
                    _ => RefreshOutcome::Refreshed {
                        access_token: b"n",
                        refresh_token: (pick & 1 == 1).then_some(b"r".as_slice()),
                        expires_in: edge_expires_in(rng, &cfg),
                    },
                };
                self.live_refresh.retain(|&r| r != id);
                self.s.handle_refresh_result(now, id, o);
                (false, false)
            }
        }
    }

    /// Drains the outputs after an input at `t` (the session's instant), checking them.
    fn drain(&mut self, t: Instant) {
        let mut checks = 0;
        let mut refreshes = 0;
        while let Some(action) = self.s.poll_action() {
            match action {
                Action::CancelCheck { generation, attempt } => {
                    self.live_check.retain(|&c| c != (generation, attempt));
                }
                Action::CancelRefresh(id) => self.live_refresh.retain(|&r| r != id),
                Action::Refresh(req) => {
                    refreshes += 1;
                    self.refreshes.push(req.id);
                    self.live_refresh.push(req.id);
                    // R11: never closer together than the refresh backoff's base.
                    let base = self.s.config().refresh_retry.base;
                    if let Some(last) = self.last_refresh_start {
                        if req.started < last + base {
                            self.fail(&format!(
                                "refresh started at {:?}, {last:?} + {base:?}",
                                req.started
                            ));
                        }
                    }
                    self.last_refresh_start = Some(req.started);
                    if self.s.refresh_token().is_none() {
                        self.fail("a refresh handed out with no session");
                    }
                }
                Action::Check(req) => {
                    checks += 1;
                    self.checks.push((req.generation, req.attempt));
                    self.live_check.push((req.generation, req.attempt));
                    // R11: the check's token is the current one and not expired.
                    let st = self.s.status();
                    if req.generation != st.generation
                        || self.s.access_token(req.token).is_none()
                        || self.s.expires_at().is_none_or(|e| t >= e)
                        || req.started > t
                    {
                        self.fail(&format!("check {req:?} at {t:?}: stale or dead token"));
                    }
                }
            }
        }
        if checks > 1 || refreshes > 1 {
            self.fail(&format!(
                "one input handed out {checks} checks and {refreshes} refreshes"
            ));
        }
        // At most one of each in flight (R11: single-flight refresh; one attempt at a time).
        if self.live_check.len() > 1 || self.live_refresh.len() > 1 {
            self.fail(&format!(
                "in flight: checks {:?}, refreshes {:?}",
                self.live_check, self.live_refresh
            ));
        }
        let mut events = 0;
        while let Some(e) = self.s.poll_event() {
            events += 1;
            self.log.push(format!("  event {e:?}"));
            // R3: each immediate check settles once, for its own generation (a refresh that
            // lands while it runs starts a new one, which settles instead).
            match e {
                SessionEvent::Gate(Event::CheckStarted {
                    generation,
                    attempt: 0,
                }) => {
                    self.open_first = Some(generation);
                }
                SessionEvent::Gate(Event::FirstCheckSettled { generation }) => {
                    if self.open_first != Some(generation) {
                        self.fail(&format!(
                            "{e:?} while the open first check is {:?}",
                            self.open_first
                        ));
                    }
                    self.open_first = None;
                }
                _ => {}
            }
        }
        if self.s.first_check_running() != self.open_first.is_some() {
            self.fail(&format!(
                "first_check_running {} but the events say {:?}",
                self.s.first_check_running(),
                self.open_first
            ));
        }
        // R12: one input queues fewer events than the queue holds (its doc: the worst input
        // queues 9 of 11), and none is lost.
        self.max_events = self.max_events.max(events);
        if events >= SESSION_EVENT_CAPACITY || self.s.counters().events_lost != 0 {
            self.fail(&format!(
                "{events} events, {} lost",
                self.s.counters().events_lost
            ));
        }
        while let Some((id, r)) = self.s.poll_waiter() {
            if let Ok(h) = r {
                // R11, I9: a waiter gets the current, unexpired token.
                if self.s.access_token(h).is_none() || self.s.expires_at().is_none_or(|e| t >= e) {
                    self.fail(&format!(
                        "waiter {id:?} got {h:?} at {t:?}: expired or not current"
                    ));
                }
            }
        }
    }

    fn step(&mut self) {
        self.step_with(None)
    }

    /// The network went silent: a driver that answers nothing. Once the longest wait the
    /// configuration allows has passed three times over (the refresh floor or a refresh retry,
    /// then a refresh timeout, then an attempt timeout), every caller waiting for a token has
    /// its answer and the immediate check has settled (R3, R11: a waiter is never stranded),
    /// unless that lies beyond the end of time ("never").
    fn quiesce(&mut self) {
        let cfg = *self.s.config();
        let longest =
            cfg.refresh_retry.cap.max(cfg.gate.probe.period) + cfg.refresh_timeout + cfg.gate.attempt_timeout;
        let never = Instant::MAX.saturating_sub(US);
        let waiting = self.s.waiting() != 0 || self.s.first_check_running();
        for _ in 0..3 {
            let t = self.s.last_now() + longest + US;
            if t >= never {
                return;
            }
            self.step_with(Some(t));
        }
        self.settled_waiters = waiting;
        if self.s.waiting() != 0 || self.s.first_check_running() {
            self.fail(&format!(
                "silent network, {longest:?} three times over: {} callers still waiting, first check running: {}",
                self.s.waiting(),
                self.s.first_check_running()
            ));
        }
    }

    /// One input: drawn, or (`wake`) a `handle_timeout` at that instant.
    fn step_with(&mut self, wake: Option<Instant>) {
        let before = self.s.status();
        let prev_now = self.s.last_now();
        let input = if wake.is_some() {
            Input::Timeout
        } else {
            self.draw_input()
        };
        let now = wake.unwrap_or_else(|| next_now(&mut self.rng, self.now, self.s.poll_timeout()));
        self.now = now;
        self.log.push(format!(
            "{input:?} at {now:?} (poll_timeout {:?})",
            self.s.poll_timeout()
        ));
        let (granted_by_input, ends_run) = self.feed(input, now);
        let t = self.s.last_now();
        // Time never runs backwards (R5: only monotonic time).
        // An input at the last instant (`Instant::MAX`, "never") happens 1 µs before it.
        let last_input = Instant::MAX.saturating_sub(US);
        let want = if core::mem::take(&mut self.refused) {
            prev_now
        } else {
            prev_now.max(now.min(last_input))
        };
        if t != want {
            self.fail(&format!(
                "last_now {t:?} after {prev_now:?} and an input at {now:?}"
            ));
        }
        self.drain(t);
        let st = self.s.status();
        // R1, R10: `Granted` only through a current grant.
        if st.access == Access::Granted && before.access != Access::Granted && !granted_by_input {
            self.fail("granted without a current grant");
        }
        // R5: a deadline never moves while its run of failures lasts, and once it has passed
        // access is not `Granted` (a grant that arrived after it is a recovery, R7).
        // A new session or a definitive answer ends the run (and one input may start the next).
        if ends_run {
            self.deadline = None;
        }
        if let (Some(d), Some(old)) = (st.reverifying_until, self.deadline) {
            if d != old {
                self.fail(&format!("the deadline moved from {old:?} to {d:?}"));
            }
        }
        self.deadline = st.reverifying_until;
        if st.reverifying_until.is_some_and(|d| d <= t) {
            self.fail(&format!(
                "deadline {:?} passed at {t:?} without failing closed",
                st.reverifying_until
            ));
        }
        if st.access == Access::Granted && st.probing {
            self.fail("granted while probing after failing closed");
        }
        // R12: after an input nothing is left due, so sleeping until `poll_timeout` makes
        // progress (no busy loop), even at the end of time.
        if let Some(next) = self.s.poll_timeout() {
            if next <= t {
                self.fail(&format!(
                    "poll_timeout {next:?} not after the input's instant {t:?}"
                ));
            }
        }
        // Signed out, nothing is owed.
        if !st.signed_in && self.s.poll_timeout().is_some() {
            self.fail("signed out with a timer armed");
        }
        if !st.signed_in && (!self.live_check.is_empty() || !self.live_refresh.is_empty()) {
            self.fail("signed out with a request in flight that was not cancelled");
        }
        // R5: the session is woken by its deadline at the latest.
        if let Some(d) = st.reverifying_until {
            if self.s.poll_timeout().is_none_or(|p| p > d) {
                self.fail(&format!(
                    "deadline {d:?} but poll_timeout {:?}",
                    self.s.poll_timeout()
                ));
            }
        }
        // R7: after failing closed the gate keeps probing while signed in.
        if st.signed_in && st.probing && st.next_attempt.is_none() && st.attempt_in_flight.is_none() {
            self.fail("failed closed with no probe planned and none in flight");
        }
        // R11: nobody waits on a session that ended.
        if !st.signed_in && self.s.waiting() != 0 {
            self.fail(&format!("signed out with {} callers waiting", self.s.waiting()));
        }
        // An attempt in flight has its timeout, a planned one its timer (R4, R6).
        if st.attempt_in_flight.is_some() && self.s.poll_timeout().is_none() {
            self.fail("an attempt in flight without a timeout");
        }
        if st
            .next_attempt
            .is_some_and(|n| self.s.poll_timeout().is_none_or(|p| p > n))
        {
            self.fail("a planned attempt without its timer");
        }
    }
}

/// `seeds`, lengthened `EXTREMES_SCALE` times (1 by default: a longer hunt on demand).
fn scaled(seeds: core::ops::Range<u64>) -> core::ops::Range<u64> {
    let scale: u64 = std::env::var("EXTREMES_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    seeds.start..seeds.start + (seeds.end - seeds.start) * scale.max(1)
}

/// Runs `seeds` (see [`scaled`]), `steps` inputs each, then a silent network.
fn run<const N: usize, const W: usize, const T: usize>(seeds: core::ops::Range<u64>, steps: usize) {
    let seeds = scaled(seeds);
    // What the runs reached, so a generator that stops reaching a state shows (printed with
    // `--nocapture`; the floor below fails the test if a whole family goes missing).
    let mut reached = [0u64; 9];
    let mut max_events = 0;
    for seed in seeds.clone() {
        let mut r = Run::<N, W, T>::new(seed);
        for _ in 0..steps {
            r.step();
        }
        r.quiesce();
        let c = r.s.counters();
        for (i, v) in [
            c.grants,
            c.failed_closed,
            c.recoveries,
            c.refreshes,
            c.refresh_failures,
            c.stale_dropped,
            c.unauthorized_logouts,
            u32::from(r.s.last_now() >= Instant::MAX.saturating_sub(US)),
            u32::from(r.settled_waiters),
        ]
        .into_iter()
        .enumerate()
        {
            reached[i] += u64::from(v.min(1));
        }
        max_events = max_events.max(r.max_events);
    }
    eprintln!(
        "N {N} W {W} T {T}: {} runs; runs with grants, fail-closed, recoveries, refreshes, \
         refresh failures, stale drops, 401 logouts, the last instant, waiters settled by a \
         silent network: {reached:?}; most events \
         from one input: {max_events}",
        seeds.end - seeds.start
    );
    for (i, &n) in reached.iter().enumerate() {
        assert!(
            n * 300 >= seeds.end - seeds.start,
            "family {i} reached in only {n} runs: {reached:?}"
        );
    }
}

#[test]
fn every_input_at_extreme_configs_and_clocks_keeps_the_oracles_default_capacities() {
    run::<8, 4, 1024>(0..20_000, 150);
}

#[test]
fn every_input_at_extreme_configs_and_clocks_keeps_the_oracles_capacities_of_one() {
    run::<1, 1, 1>(1_000_000..1_020_000, 150);
}

#[test]
fn every_input_at_extreme_configs_and_clocks_keeps_the_oracles_retry_capacity_two() {
    // N = 2: one stratified retry and the final one (the only capacity with a single slice).
    run::<2, 2, 8>(3_000_000..3_010_000, 150);
}

#[test]
fn every_input_at_extreme_configs_and_clocks_keeps_the_oracles_large_retry_capacity() {
    // Retry counts up to 1,000 slots: many empty slices to skip per failure (bounded, R12).
    run::<1_000, 2, 8>(2_000_000..2_003_000, 150);
}

/// R12, R11 at the end of time: a session whose timers saturate at `Instant::MAX` and a
/// driver that sleeps until `poll_timeout` and feeds it back. Before inputs at `MAX` happened
/// 1 µs earlier, the attempt timing out at `MAX` planned its probe at `MAX`, whose attempt
/// timed out at `MAX` again: every `handle_timeout(MAX)` started another check, with a token
/// already expired at that instant, and `poll_timeout` stayed at `MAX` (a busy loop).
#[test]
fn at_the_last_instant_a_driver_sleeping_until_poll_timeout_makes_progress() {
    for (seed, expires_in) in [(1, Duration::from_secs(3_600)), (2, Duration::MAX), (3, US)] {
        let mut s: Session = Session::new(SessionConfig::DEFAULT, seed).unwrap();
        let start = Instant::MAX.saturating_sub(Duration::from_secs(30));
        s.sign_in(start, b"at", b"rt", expires_in).unwrap();
        let mut attempts_at_the_end = 0;
        let mut last_poll = None;
        for _ in 0..1_000 {
            let t = s.last_now();
            while let Some(action) = s.poll_action() {
                if let Action::Check(req) = action {
                    // R11: never a check with a token expired at its instant.
                    assert!(s.expires_at().is_some_and(|e| t < e), "{req:?} at {t:?}");
                    if t >= Instant::MAX.saturating_sub(US) {
                        attempts_at_the_end += 1;
                    }
                    // The backend is gone: every check fails (hostile driver: at once).
                    let o = CheckOutcome::transient(TransientClass::Connect);
                    s.handle_check_result(t, req.generation, req.attempt, o);
                }
            }
            while s.poll_event().is_some() {}
            let Some(next) = s.poll_timeout() else { break };
            // No busy loop: what the driver sleeps until is later than the last input.
            assert!(next > t, "poll_timeout {next:?} at {t:?}");
            assert!(last_poll.is_none_or(|p| next >= p));
            last_poll = Some(next);
            s.handle_timeout(next);
        }
        assert_eq!(
            s.last_now(),
            Instant::MAX.saturating_sub(US),
            "time ends 1 µs before MAX"
        );
        assert!(
            attempts_at_the_end <= 1,
            "{attempts_at_the_end} checks at the last instant"
        );
    }
}

/// R12 at a retry capacity no streak can use: the schedule holds no array of `N`, so a gate of
/// capacity 2^32 builds and passes validation. A streak gets at most `u16::MAX` retries (the
/// most `Retries::count` can say): uncapped, `RetrySchedule::remaining` overflowed (a panic in
/// debug) and one input skipped billions of empty slices of the spread window.
#[cfg(target_pointer_width = "64")]
#[test]
fn a_retry_capacity_beyond_u16_is_bounded_by_what_count_can_say() {
    const HUGE: usize = 1 << 32;
    let cfg = GateConfig::DEFAULT;
    let plan: RetrySchedule<HUGE> = RetrySchedule::new(Instant::ZERO);
    assert_eq!(plan.remaining(&cfg), usize::from(u16::MAX));
    assert_eq!(cfg.retry.slots(HUGE), u32::from(u16::MAX));
    // A whole streak of a gate with that capacity: every attempt times out (10 s, most slices
    // of the 70 s spread window are gone by then), bounded work per input, and it fails
    // closed at the deadline (R5).
    let mut g: Gate<HUGE> = Gate::new(cfg, 7).unwrap();
    g.start_session(Instant::ZERO, TokenHandle(1));
    let began = std::time::Instant::now();
    let mut inputs = 0;
    while let Some(t) = g.poll_timeout().filter(|&t| t <= Instant::from_secs(200)) {
        while g.poll_check().is_some() {}
        g.handle_timeout(t);
        inputs += 1;
    }
    assert_eq!(g.access(), Access::Denied);
    assert_eq!(g.counters().failed_closed, 1);
    assert!(inputs < 100, "{inputs} inputs");
    assert!(
        began.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
}

/// The bare gate (the entitlement part with no tokens) under the same extreme configs and
/// clocks, with its own inputs (`token_refreshed`, `unauthorized`, `transient_failure`):
/// the per-input event bound it documents ([`MAX_EVENTS_PER_INPUT`]), R5, R10, R12, and
/// `check_owed()` implying a timer ("`poll_timeout` is `Some` while this is true").
#[test]
fn the_bare_gate_keeps_its_promises_at_the_extremes() {
    let last_input = Instant::MAX.saturating_sub(US);
    for seed in scaled(3_000_000..3_050_000) {
        let mut rng = Rng::with_seed(seed);
        let cfg = extreme_config(&mut rng, 8).gate;
        let mut g: Gate<8> = Gate::new(cfg, rng.u64(..)).unwrap();
        let mut now = start_instant(&mut rng);
        let mut handed: Vec<(Generation, u32)> = Vec::new();
        let mut live: Option<(Generation, u32)> = None;
        let mut deadline: Option<Instant> = None;
        for step in 0..150 {
            let ctx = || format!("seed {seed} step {step} config {cfg:?}");
            now = next_now(&mut rng, now, g.poll_timeout());
            let before = g.status();
            let mut took_grant = false;
            let mut ends_run = false;
            match rng.u8(0..12) {
                0 => {
                    g.start_session(now, TokenHandle(rng.u32(..)));
                    ends_run = true;
                }
                1 => {
                    let _ = g.token_refreshed(now, TokenHandle(rng.u32(..)));
                }
                2 => {
                    g.logout(now);
                    ends_run = true;
                }
                3 => {
                    g.unauthorized(now);
                    ends_run = true;
                }
                4 => {
                    let class = TransientClass::ALL[rng.usize(0..TransientClass::COUNT)];
                    let _ = g.transient_failure(now, class, FailureDetail::of_class(class));
                }
                5 => {
                    let _ = g.recheck_now(now);
                }
                6 | 7 => g.handle_timeout(now),
                _ => {
                    let (gen, a) = match rng.u8(0..4) {
                        0..=1 => handed.last().copied().unwrap_or_default(),
                        2 if !handed.is_empty() => handed[rng.usize(0..handed.len())],
                        _ => (Generation(rng.u32(..)), rng.u32(..)),
                    };
                    let o = outcome(&mut rng);
                    let mut reference = g.clone();
                    reference.handle_check_result(
                        now,
                        gen,
                        a,
                        CheckOutcome::transient(TransientClass::Connect),
                    );
                    let stale_before = g.counters().stale_dropped;
                    g.handle_check_result(now, gen, a, o);
                    let dropped = g.counters().stale_dropped > stale_before;
                    if dropped {
                        // R10: the outcome of a dropped result does not matter.
                        assert_eq!(g.status(), reference.status(), "{}", ctx());
                        assert_eq!(g.poll_timeout(), reference.poll_timeout(), "{}", ctx());
                    } else {
                        assert_eq!(
                            live,
                            Some((gen, a)),
                            "a result taken for a check not in flight: {}",
                            ctx()
                        );
                        took_grant = o == CheckOutcome::Granted;
                        ends_run = true;
                    }
                    if live == Some((gen, a)) {
                        live = None;
                    }
                }
            }
            let t = g.last_now();
            assert!(t <= last_input, "{}", ctx());
            while let Some(c) = g.poll_cancel() {
                if live == Some(c) {
                    live = None;
                }
            }
            let mut checks = 0;
            while let Some(req) = g.poll_check() {
                checks += 1;
                assert_eq!(req.generation, g.generation(), "{}", ctx());
                assert!(live.is_none(), "a second check in flight: {}", ctx());
                handed.push((req.generation, req.attempt));
                live = Some((req.generation, req.attempt));
            }
            assert!(checks <= 1, "{}", ctx());
            let mut events = 0;
            while g.poll_event().is_some() {
                events += 1;
            }
            // R12: the documented bound, and nothing lost.
            assert!(events <= MAX_EVENTS_PER_INPUT, "{events} events: {}", ctx());
            assert_eq!(g.counters().events_lost, 0, "{}", ctx());
            let st = g.status();
            // R1, R10.
            if st.access == Access::Granted && before.access != Access::Granted {
                assert!(took_grant, "granted without a current grant: {}", ctx());
            }
            // R5: the deadline stays put, wakes the gate, and is never passed while granted.
            if ends_run {
                deadline = None;
            }
            if let (Some(d), Some(old)) = (st.reverifying_until, deadline) {
                assert_eq!(d, old, "the deadline moved: {}", ctx());
            }
            deadline = st.reverifying_until;
            if let Some(d) = st.reverifying_until {
                assert!(d > t, "deadline passed without failing closed: {}", ctx());
                assert!(g.poll_timeout().is_some_and(|p| p <= d), "{}", ctx());
            }
            assert!(!(st.access == Access::Granted && st.probing), "{}", ctx());
            // R12: nothing left due; its doc: `poll_timeout` is `Some` while a check is owed,
            // and `None` when signed out.
            assert!(g.poll_timeout().is_none_or(|p| p > t), "{}", ctx());
            assert_eq!(g.check_owed(), g.poll_timeout().is_some(), "{}", ctx());
            if !st.signed_in {
                assert!(live.is_none(), "signed out with a check not cancelled: {}", ctx());
            }
        }
    }
}

/// R12, "nothing is dropped silently": a driver that drains the events only now and then loses
/// the oldest, keeps the newest `SESSION_EVENT_CAPACITY`, and each loss is counted. Checked
/// against a twin session fed the same inputs (events never change state) and drained after
/// every input, under the extreme configs and clocks.
#[test]
fn events_a_slow_driver_misses_are_the_oldest_and_every_one_is_counted() {
    let mut runs_with_losses = 0;
    for seed in scaled(4_000_000..4_002_000) {
        let mut rng = Rng::with_seed(seed);
        let cfg = extreme_config(&mut rng, 8);
        let mut a: Session = Session::new(cfg, seed).unwrap();
        let mut b = a.clone();
        let mut now = start_instant(&mut rng);
        let mut unseen: Vec<SessionEvent> = Vec::new(); // a's events b still holds or dropped
        let mut lost = 0u32;
        let mut last_check = None;
        let mut last_refresh = None;
        for _ in 0..200 {
            now = next_now(&mut rng, now, a.poll_timeout());
            let o = outcome(&mut rng);
            let expires_in = edge_expires_in(&mut rng, &cfg);
            let op = rng.u8(0..8);
            for s in [&mut a, &mut b] {
                match op {
                    0 => drop(s.sign_in(now, b"at", b"rt", expires_in)),
                    1 => s.logout(now),
                    2 => drop(s.request_token(now)),
                    3 => drop(s.recheck_now(now)),
                    4 | 5 => {
                        if let Some((g, k)) = last_check {
                            s.handle_check_result(now, g, k, o);
                        }
                    }
                    6 => {
                        if let Some(id) = last_refresh {
                            let r = RefreshOutcome::Refreshed {
                                access_token: b"n",
                                refresh_token: None,
                                expires_in,
                            };
                            s.handle_refresh_result(now, id, r);
                        }
                    }
                    _ => s.handle_timeout(now),
                }
            }
            let actions = |s: &mut Session| std::iter::from_fn(|| s.poll_action()).collect::<Vec<_>>();
            let (acts, acts_b) = (actions(&mut a), actions(&mut b));
            assert_eq!(acts, acts_b, "seed {seed}: the twins diverged");
            for act in acts {
                match act {
                    Action::Check(req) => last_check = Some((req.generation, req.attempt)),
                    Action::Refresh(req) => last_refresh = Some(req.id),
                    _ => {}
                }
            }
            while a.poll_waiter().is_some() | b.poll_waiter().is_some() {}
            unseen.extend(std::iter::from_fn(|| a.poll_event()));
            // Exactly the events b no longer holds are counted as lost.
            let held = unseen.len().min(SESSION_EVENT_CAPACITY);
            lost += (unseen.len() - held) as u32;
            assert_eq!(b.counters().events_lost, lost, "seed {seed}");
            assert_eq!(a.counters().events_lost, 0);
            if rng.u8(0..6) == 0 {
                let got: Vec<SessionEvent> = std::iter::from_fn(|| b.poll_event()).collect();
                assert_eq!(
                    got[..],
                    unseen[unseen.len() - held..],
                    "seed {seed}: not the newest"
                );
                unseen.clear();
            } else {
                // Counted once: what b dropped so far is off the books of `unseen`.
                unseen.drain(..unseen.len() - held);
            }
            assert_eq!(a.status(), b.status(), "seed {seed}");
        }
        runs_with_losses += usize::from(lost > 0);
    }
    assert!(
        runs_with_losses > 200,
        "only {runs_with_losses} runs lost events: the test lost its teeth"
    );
}
