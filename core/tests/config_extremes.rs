//! Configuration extremes and schedule arithmetic, pinned scenario by scenario (the random
//! hunt over the same ground is `extremes.rs`; this file states exact expectations): what
//! validation refuses at the `u64` edges, retry capacities 1 and 2 (R6), `Retry-After` at 0,
//! huge and past the deadline (R5, R6), short and absurd token lifetimes against the refresh
//! floor (R11).
//!
//! [`World`] is a driver and a backend in virtual time: it sleeps until the next deadline or
//! answer, feeds it in, drains every output, and answers each request `latency` after it
//! started.

use accessgate::*;

const T0: Instant = Instant::from_secs(1_000);
const US: Duration = Duration::from_micros(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

type CheckFn<'a> = &'a mut dyn FnMut(Instant, &CheckRequest) -> CheckOutcome;
type RefreshFn<'a> = &'a mut dyn FnMut(Instant) -> RefreshOutcome<'static>;

struct World<const N: usize> {
    s: Session<N, 4, 64>,
    latency: Duration,
    pending_check: Option<(Instant, CheckRequest)>,
    pending_refresh: Option<(Instant, RefreshRequest)>,
    events: Vec<(Instant, SessionEvent)>,
    /// Every check handed out: when, and its tags.
    checks: Vec<(Instant, Generation, u32)>,
    /// Every refresh handed out: when, and when the token in use then expires.
    refreshes: Vec<(Instant, Instant)>,
}

impl<const N: usize> World<N> {
    fn seeded(cfg: SessionConfig, latency: Duration, seed: u64) -> Self {
        World {
            s: Session::new(cfg, seed).expect("valid config"),
            latency,
            pending_check: None,
            pending_refresh: None,
            events: Vec::new(),
            checks: Vec::new(),
            refreshes: Vec::new(),
        }
    }

    /// Signed in at `at` and granted by the immediate check (R3).
    fn granted(cfg: SessionConfig, at: Instant, expires_in: Duration, latency: Duration) -> Self {
        Self::granted_seeded(cfg, at, expires_in, latency, 42)
    }

    fn granted_seeded(
        cfg: SessionConfig,
        at: Instant,
        expires_in: Duration,
        latency: Duration,
        seed: u64,
    ) -> Self {
        let mut w = Self::seeded(cfg, latency, seed);
        w.s.sign_in(at, b"at_1", b"rt_1", expires_in).unwrap();
        w.drain();
        w.run(
            at + latency,
            &mut |_, _| CheckOutcome::Granted,
            &mut fresh_tokens(expires_in),
        );
        assert_eq!(w.s.access(), Access::Granted);
        w
    }

    fn drain(&mut self) {
        let t = self.s.last_now();
        while let Some(a) = self.s.poll_action() {
            match a {
                Action::CancelCheck { .. } => self.pending_check = None,
                Action::CancelRefresh(_) => self.pending_refresh = None,
                Action::Check(c) => {
                    self.checks.push((t, c.generation, c.attempt));
                    self.pending_check = Some((t + self.latency, c));
                }
                Action::Refresh(r) => {
                    let expiry = self.s.expires_at().expect("signed in");
                    self.refreshes.push((t, expiry));
                    self.pending_refresh = Some((t + self.latency, r));
                }
            }
        }
        while let Some(e) = self.s.poll_event() {
            self.events.push((t, e));
        }
        while self.s.poll_waiter().is_some() {}
    }

    /// Runs until nothing is due before `end` (bounded: a livelock fails the test).
    fn run(&mut self, end: Instant, check: CheckFn<'_>, refresh: RefreshFn<'_>) {
        for _ in 0..1_000_000 {
            let next = [
                self.s.poll_timeout(),
                self.pending_check.map(|p| p.0),
                self.pending_refresh.map(|p| p.0),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(next) if next <= end => {}
                _ => return,
            }
            let next = next.unwrap_or(end);
            if let Some((at, c)) = self.pending_check.filter(|p| p.0 <= next) {
                self.pending_check = None;
                let o = check(at, &c);
                self.s.handle_check_result(at, c.generation, c.attempt, o);
            } else if let Some((at, r)) = self.pending_refresh.filter(|p| p.0 <= next) {
                self.pending_refresh = None;
                let o = refresh(at);
                self.s.handle_refresh_result(at, r.id, o);
            } else {
                self.s.handle_timeout(next);
            }
            self.drain();
        }
        panic!("no quiet point before {end:?}: a livelock");
    }

    /// When access changed, to what, in order.
    fn access_changes(&self) -> Vec<(Instant, Access, Cause)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                SessionEvent::Gate(Event::AccessChanged { to, cause, .. }) => Some((*t, *to, *cause)),
                _ => None,
            })
            .collect()
    }
}

fn transient(class: TransientClass, retry_after: Option<Duration>) -> CheckOutcome {
    CheckOutcome::Transient {
        class,
        retry_after,
        detail: FailureDetail::of_class(class),
    }
}

fn fresh_tokens(expires_in: Duration) -> impl FnMut(Instant) -> RefreshOutcome<'static> {
    move |_| RefreshOutcome::Refreshed {
        access_token: b"at_n",
        refresh_token: Some(b"rt_n"),
        expires_in,
    }
}

#[test]
fn validation_refuses_each_impossible_extreme_with_its_own_error() {
    let gate = |f: fn(&mut GateConfig)| {
        let mut c = GateConfig::DEFAULT;
        f(&mut c);
        c.validate()
    };
    // The whole range is usable: a budget of u64::MAX µs with a 1 µs attempt timeout, the
    // windows filling the room exactly (spread + final window = budget - timeout).
    assert_eq!(
        gate(|c| {
            c.budget = Duration::MAX;
            c.attempt_timeout = US;
            c.retry.final_window = Duration::from_micros(u64::MAX / 2);
            c.retry.spread = Duration::from_micros(u64::MAX - 1 - u64::MAX / 2);
            c.probe.period = Duration::MAX;
            c.probe.ramp = Duration::MAX;
            c.probe.ramp_probes = Probing::MAX_RAMP_PROBES;
        }),
        Ok(())
    );
    // Sums that would wrap are refused, not wrapped into range (R6).
    assert_eq!(
        gate(|c| {
            c.budget = Duration::MAX;
            c.attempt_timeout = US;
            c.retry.final_window = secs(10);
            c.retry.spread = Duration::MAX;
        }),
        Err(ConfigError::SpreadWindowTooLong)
    );
    assert_eq!(
        gate(|c| {
            c.budget = Duration::MAX;
            c.attempt_timeout = US;
            c.retry.final_window = Duration::MAX;
        }),
        Err(ConfigError::FinalWindowTooLong)
    );
    // Budget below (or at) the attempt timeout: no attempt could finish before the deadline.
    assert_eq!(
        gate(|c| c.attempt_timeout = Duration::MAX),
        Err(ConfigError::TimeoutNotBelowBudget)
    );
    assert_eq!(
        gate(|c| {
            c.budget = US;
            c.attempt_timeout = US;
        }),
        Err(ConfigError::TimeoutNotBelowBudget)
    );
    // The smallest budget that works: 2 µs, 1 µs per attempt, a 1 µs spread, no final window.
    assert_eq!(
        gate(|c| {
            c.budget = Duration::from_micros(2);
            c.attempt_timeout = US;
            c.retry.spread = US;
            c.retry.final_window = Duration::ZERO;
        }),
        Ok(())
    );
    // A final window filling the whole room is not too long itself; with any spread window
    // beside it, the two are (R6: each error says which window does not fit).
    assert_eq!(
        gate(|c| c.retry.final_window = secs(110)),
        Err(ConfigError::SpreadWindowTooLong)
    );
    // A spread window longer than the budget.
    assert_eq!(
        gate(|c| c.retry.spread = secs(121)),
        Err(ConfigError::SpreadWindowTooLong)
    );
    assert_eq!(
        gate(|c| c.probe.period = Duration::ZERO),
        Err(ConfigError::ZeroProbePeriod)
    );
    let session = |f: fn(&mut SessionConfig)| {
        let mut c = SessionConfig::DEFAULT;
        f(&mut c);
        c.validate()
    };
    assert_eq!(
        session(|c| c.refresh_retry.cap = Duration::ZERO),
        Err(ConfigError::CapBelowBase(Which::Refresh))
    );
    // A cap equal to its base is a constant backoff (R11): valid.
    assert_eq!(session(|c| c.refresh_retry.cap = c.refresh_retry.base), Ok(()));
    assert_eq!(
        session(|c| c.refresh_retry.factor = 0),
        Err(ConfigError::ZeroBackoffFactor(Which::Refresh))
    );
    assert_eq!(
        session(|c| c.refresh_timeout = Duration::ZERO),
        Err(ConfigError::ZeroAttemptTimeout)
    );
    // Lifetimes are the server's to say: any skew and spread are valid (a skew longer than
    // every token refreshes each token at half-life, R11).
    assert_eq!(
        session(|c| {
            c.refresh_skew = Duration::MAX;
            c.refresh_spread = Duration::MAX;
            c.refresh_timeout = Duration::MAX;
            c.refresh_retry.cap = Duration::MAX;
            c.refresh_retry.factor = u32::MAX;
        }),
        Ok(())
    );
    // Capacities: N = 0 and a retry count above N are refused when the session is built.
    let mut c = SessionConfig::DEFAULT;
    assert!(matches!(
        Session::<0>::new(c, 1),
        Err(ConfigError::ZeroRetryCapacity)
    ));
    c.gate.retry.count = 3;
    assert!(matches!(
        Session::<2>::new(c, 1),
        Err(ConfigError::RetryCountOverCapacity)
    ));
    c.gate.retry.count = 2;
    assert!(Session::<2>::new(c, 1).is_ok());
}

/// Every check fails at once from `t1` on: the retries of that run (R6) and the instant
/// access turns `Denied` (R5).
fn failing_run<const N: usize>(cfg: SessionConfig, latency: Duration, seed: u64) -> (World<N>, Instant) {
    let mut w = World::<N>::granted_seeded(cfg, T0, Duration::MAX, latency, seed);
    let t1 = T0 + secs(10);
    w.s.recheck_now(t1).unwrap();
    w.drain();
    let fail = transient(TransientClass::ServerError, None);
    w.run(t1 + cfg.gate.budget + secs(1), &mut |_, _| fail, &mut |_| {
        RefreshOutcome::Rejected
    });
    (w, t1 + latency)
}

#[track_caller]
fn assert_retries_in_their_windows<const N: usize>(cfg: SessionConfig, latency: Duration, seed: u64) {
    let (w, first_failure) = failing_run::<N>(cfg, latency, seed);
    let deadline = first_failure + cfg.gate.budget;
    // R5: Denied at the deadline, to the microsecond, and not before.
    assert_eq!(
        w.access_changes().last(),
        Some(&(deadline, Access::Denied, Cause::FailedClosed)),
        "N {N} {cfg:?}"
    );
    // R6: at most `slots` retries between the first failure and the deadline, retry k inside
    // its window (the last one in the final window that ends one attempt timeout before the
    // deadline).
    let retries: Vec<_> = w
        .checks
        .iter()
        .filter(|c| c.0 > first_failure.saturating_sub(latency) && c.0 < deadline)
        .skip(1) // the failing re-check itself
        .collect();
    let slots = cfg.gate.retry.slots(N);
    assert!(retries.len() as u32 <= slots, "{retries:?}");
    let plan = RetrySchedule::<N>::new(first_failure);
    let mut k = 1;
    for r in &retries {
        // Empty slices are skipped, so retry i uses the i-th window that holds it.
        loop {
            let (lo, hi) = match plan.window(&cfg.gate, k) {
                Some(window) => window,
                None if k <= slots => {
                    k += 1;
                    continue;
                }
                None => panic!("retry {r:?} outside every window: {retries:?}"),
            };
            k += 1;
            if r.0 >= lo && r.0 <= hi {
                break;
            }
            assert!(r.0 > hi, "retry {r:?} before its window [{lo:?}, {hi:?}]");
        }
    }
    if let Some(last) = retries.last() {
        assert!(last.0 + cfg.gate.attempt_timeout <= deadline, "{last:?}");
    }
}

#[test]
fn retry_capacities_one_and_two_retry_in_their_windows_and_fail_closed_to_the_microsecond() {
    let mut tiny = SessionConfig::DEFAULT;
    tiny.gate.budget = Duration::from_micros(2);
    tiny.gate.attempt_timeout = US;
    tiny.gate.retry.spread = US;
    tiny.gate.retry.final_window = Duration::ZERO;
    tiny.gate.min_recheck_interval = Duration::ZERO;
    let mut day = SessionConfig::DEFAULT;
    day.gate.budget = secs(86_400);
    day.gate.attempt_timeout = secs(86_399);
    day.gate.retry.spread = US;
    day.gate.retry.final_window = Duration::ZERO;
    for (cfg, latency) in [
        (SessionConfig::DEFAULT, Duration::ZERO),
        (SessionConfig::DEFAULT, Duration::from_millis(250)),
        (tiny, Duration::ZERO),
        (day, Duration::ZERO),
    ] {
        for seed in 0..50 {
            assert_retries_in_their_windows::<1>(cfg, latency, seed);
            assert_retries_in_their_windows::<2>(cfg, latency, seed);
            assert_retries_in_their_windows::<8>(cfg, latency, seed);
        }
    }
    // N = 1: the only retry is the final one, drawn in the 10 s before `deadline - 10 s`.
    let (w, f) = failing_run::<1>(SessionConfig::DEFAULT, Duration::ZERO, 1);
    let retries: Vec<_> = w
        .checks
        .iter()
        .filter(|c| c.0 > f && c.0 < f + secs(120))
        .collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(retries[0].0 >= f + secs(100) && retries[0].0 <= f + secs(110));
    // N = 2: one stratified over the 70 s spread window, then the final one.
    let (w, f) = failing_run::<2>(SessionConfig::DEFAULT, Duration::ZERO, 1);
    let retries: Vec<_> = w
        .checks
        .iter()
        .filter(|c| c.0 > f && c.0 < f + secs(120))
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries[0].0 < f + secs(70) && retries[1].0 >= f + secs(100));
}

#[test]
fn retry_after_is_floored_at_one_second_capped_at_the_period_and_a_late_slot_keeps_the_deadline() {
    let cfg = SessionConfig::DEFAULT;
    // 0 s: each retry one second after its failure (the floor), the deadline unchanged.
    let mut w = World::<8>::granted(cfg, T0, Duration::MAX, Duration::ZERO);
    let f = T0 + secs(10);
    w.s.recheck_now(f).unwrap();
    w.drain();
    let zero = transient(TransientClass::Throttled, Some(Duration::ZERO));
    w.run(f + secs(30), &mut |_, _| zero, &mut |_| RefreshOutcome::Rejected);
    let at: Vec<_> = w.checks.iter().skip(2).map(|c| c.0 - f).collect();
    assert_eq!(at, (1..=8).map(secs).collect::<Vec<_>>(), "8 retries (R6)");
    assert_eq!(w.s.status().reverifying_until, Some(f + secs(120)));
    // u64::MAX seconds (saturating to u64::MAX µs) is capped at the probe period, 300 s: a
    // slot past the deadline. The gate fails closed on time and still makes that attempt,
    // which a grant then answers (R7: recovered).
    for huge in [Duration::MAX, secs(u64::from(u32::MAX)), secs(301)] {
        let mut w = World::<8>::granted(cfg, T0, Duration::MAX, Duration::ZERO);
        w.s.recheck_now(f).unwrap();
        w.drain();
        let slot = transient(TransientClass::ServerError, Some(huge));
        w.run(f, &mut |_, _| slot, &mut |_| RefreshOutcome::Rejected);
        assert_eq!(w.s.status().next_attempt, Some(f + secs(300)), "{huge:?}");
        w.run(f + secs(400), &mut |_, _| CheckOutcome::Granted, &mut |_| {
            RefreshOutcome::Rejected
        });
        assert_eq!(
            w.access_changes()[1..],
            [
                (f + secs(120), Access::Denied, Cause::FailedClosed),
                (f + secs(300), Access::Granted, Cause::Recovered)
            ]
        );
        assert_eq!(w.checks.iter().filter(|c| c.0 > f).count(), 1, "only the slot");
    }
}

#[test]
fn below_one_second_a_probe_period_caps_retry_after_under_its_one_second_floor() {
    // R6 floors Retry-After at 1 s and caps it at the probe period; with a period below 1 s
    // the cap wins: a server's "come back in an hour" waits one period. Periods that short are
    // for simulations; a device configured so is not slowed by Retry-After.
    let mut p = GateConfig::DEFAULT.probe;
    p.period = Duration::from_millis(250);
    assert_eq!(retry_after_delay(secs(3600), &p), Duration::from_millis(250));
    assert_eq!(retry_after_delay(Duration::ZERO, &p), Duration::from_millis(250));
    p.period = secs(300);
    assert_eq!(retry_after_delay(Duration::ZERO, &p), secs(1));
    assert_eq!(retry_after_delay(Duration::MAX, &p), secs(300));
}

/// A healthy backend (latency 50 ms) for three hours with tokens of `lifetime`: the refresh
/// starts and when each one's token expired.
fn healthy_refreshes(cfg: SessionConfig, lifetime: Duration) -> World<8> {
    let latency = Duration::from_millis(50);
    let mut w = World::<8>::granted(cfg, T0, lifetime, latency);
    w.run(
        T0 + secs(3 * 3600),
        &mut |_, _| CheckOutcome::Granted,
        &mut fresh_tokens(lifetime),
    );
    w
}

#[test]
fn with_the_default_backoff_short_healthy_tokens_are_refreshed_before_they_expire() {
    for lifetime in [61, 62, 70, 90, 120, 300, 3600].map(secs) {
        let w = healthy_refreshes(SessionConfig::DEFAULT, lifetime);
        // R11: every refresh starts ahead of its token's expiry (so no check is held back for
        // an expired token, and access never moves).
        assert!(
            w.refreshes.iter().all(|(start, expiry)| start < expiry),
            "{lifetime:?}: {:?}",
            w.refreshes
        );
        assert_eq!(w.s.counters().transient_of(TransientClass::TokenExpired), 0);
        assert_eq!(w.access_changes().len(), 1, "{lifetime:?}");
        let least = (3 * 3600) / lifetime.as_secs();
        assert!(
            w.refreshes.len() as u64 >= least,
            "{lifetime:?}: {}",
            w.refreshes.len()
        );
    }
    // A skew longer than every token: each is refreshed at half-life, still ahead of expiry.
    let mut cfg = SessionConfig::DEFAULT;
    cfg.refresh_skew = secs(7200);
    let w = healthy_refreshes(cfg, secs(3600));
    assert!(w.refreshes.iter().all(|(start, expiry)| start < expiry));
    let gaps: Vec<_> = w.refreshes.windows(2).map(|r| r[1].0 - r[0].0).collect();
    assert!(
        gaps.iter().all(|g| *g >= secs(1800) && *g <= secs(1801)),
        "{gaps:?}"
    );
}

#[test]
fn a_backoff_cap_longer_than_the_token_lifetime_holds_healthy_refreshes_past_expiry() {
    // The configuration hazard `SessionConfig::refresh_retry` warns about: R11's floor allows
    // one refresh start per backoff cap in a run, and refreshes a token lifetime apart form a
    // run when the cap is longer than that. With a 10 min cap and 5 min tokens the floor grows
    // to 10 min, and each token is dead for about half of its cycle.
    let mut cfg = SessionConfig::DEFAULT;
    cfg.refresh_retry.cap = secs(600);
    let w = healthy_refreshes(cfg, secs(300));
    let late = w
        .refreshes
        .iter()
        .filter(|(start, expiry)| start >= expiry)
        .count();
    assert!(late > w.refreshes.len() / 2, "{:?}", w.refreshes);
    let gaps: Vec<_> = w.refreshes.windows(2).map(|r| r[1].0 - r[0].0).collect();
    assert!(gaps.iter().all(|g| *g <= secs(600) + secs(1)), "{gaps:?}");
    // With a cap below the token's refresh interval the same backend never finds a token dead.
    cfg.refresh_retry.cap = secs(60);
    let w = healthy_refreshes(cfg, secs(300));
    assert!(w.refreshes.iter().all(|(start, expiry)| start < expiry));
}

#[test]
fn a_token_endpoint_that_says_expires_in_0_or_max_gets_a_trickle_not_a_storm() {
    let cfg = SessionConfig::DEFAULT;
    // 0 s (every token dead on arrival), 1 µs, and one second past the skew: after the first
    // few (1, 2, 4 s apart) refreshes start at most once per backoff cap, 5 s (R11).
    for lifetime in [Duration::ZERO, US, secs(1), secs(61)] {
        let mut w = World::<8>::granted(cfg, T0, secs(3600), Duration::from_millis(50));
        w.s.recheck_now(T0 + secs(10)).unwrap();
        w.drain();
        // The first refresh comes due with the hour-long token; from then on the endpoint
        // answers `lifetime`.
        w.run(
            T0 + secs(2 * 3600),
            &mut |_, _| CheckOutcome::Granted,
            &mut fresh_tokens(lifetime),
        );
        let starts: Vec<_> = w.refreshes.iter().map(|r| r.0).collect();
        let gaps: Vec<_> = starts.windows(2).map(|s| s[1] - s[0]).collect();
        let floors = [1, 2, 4].map(secs);
        for (i, g) in gaps.iter().enumerate() {
            let floor = floors.get(i).copied().unwrap_or(secs(5));
            assert!(
                *g >= floor.min(secs(5)),
                "{lifetime:?}: gap {i} {g:?} in {gaps:?}"
            );
        }
        let hour_after_first = starts[0] + secs(3600);
        let in_that_hour = starts.iter().filter(|s| **s < hour_after_first).count();
        assert!(in_that_hour <= 3600 / 5 + 3, "{lifetime:?}: {in_that_hour}");
    }
    // u64::MAX µs: the token never expires and nothing more is refreshed, nothing overflows.
    let mut w = World::<8>::granted(cfg, T0, secs(3600), Duration::from_millis(50));
    w.run(
        T0 + secs(10 * 3600),
        &mut |_, _| CheckOutcome::Granted,
        &mut fresh_tokens(Duration::MAX),
    );
    assert_eq!(w.refreshes.len(), 1);
    assert_eq!(w.s.expires_at(), Some(Instant::MAX));
    assert_eq!(w.access_changes().len(), 1);
}

#[test]
fn a_clock_that_runs_backwards_neither_delays_the_deadline_nor_moves_it() {
    let cfg = SessionConfig::DEFAULT;
    let mut w = World::<8>::granted(cfg, T0, Duration::MAX, Duration::ZERO);
    let f = T0 + secs(10);
    w.s.recheck_now(f).unwrap();
    w.drain();
    let fail = transient(TransientClass::Connect, None);
    w.run(f, &mut |_, _| fail, &mut |_| RefreshOutcome::Rejected);
    let deadline = f + secs(120);
    assert_eq!(w.s.status().reverifying_until, Some(deadline));
    // Inputs from a clock set back (an hour, to zero) count as "now" at the latest instant
    // seen (R5: monotonic only): nothing moves, nothing fires twice.
    for back in [f.saturating_sub(secs(3600)), Instant::ZERO, f.saturating_sub(US)] {
        w.s.handle_timeout(back);
        w.drain();
        assert_eq!(w.s.last_now(), f);
        assert_eq!(w.s.status().reverifying_until, Some(deadline));
    }
    // The retries and the deadline come as planned; then the backwards clock again.
    w.run(deadline, &mut |_, _| fail, &mut |_| RefreshOutcome::Rejected);
    w.s.handle_timeout(Instant::ZERO);
    w.drain();
    assert_eq!(
        w.access_changes().last(),
        Some(&(deadline, Access::Denied, Cause::FailedClosed))
    );
    let retries = w.checks.iter().filter(|c| c.0 > f && c.0 < deadline).count();
    assert!(retries <= 8, "{retries}");
}

#[test]
fn retry_slots_are_the_count_capped_by_the_capacity_and_by_u16_max() {
    // R6/R12: a streak gets `count` retries, or the capacity `N` when `count` is 0 or above
    // it, and never more than `u16::MAX` (what `count` can say), however large `N` is.
    let with = |count: u16| Retries {
        count,
        ..GateConfig::DEFAULT.retry
    };
    assert_eq!(with(3).slots(8), 3);
    assert_eq!(with(8).slots(8), 8);
    assert_eq!(with(9).slots(8), 8);
    assert_eq!(with(0).slots(8), 8);
    assert_eq!(with(0).slots(usize::from(u16::MAX)), u32::from(u16::MAX));
    assert_eq!(with(0).slots(usize::from(u16::MAX) + 1), u32::from(u16::MAX));
    assert_eq!(with(0).slots(usize::MAX), u32::from(u16::MAX));
    assert_eq!(with(u16::MAX).slots(usize::MAX), u32::from(u16::MAX));
}

#[test]
fn every_config_error_says_what_is_wrong_in_its_own_words() {
    // R13: a refused configuration is reported in words an operator can act on, one message
    // per problem.
    let all = [
        ConfigError::ZeroBudget,
        ConfigError::ZeroAttemptTimeout,
        ConfigError::TimeoutNotBelowBudget,
        ConfigError::ZeroSpreadWindow,
        ConfigError::SpreadWindowTooLong,
        ConfigError::FinalWindowTooLong,
        ConfigError::ZeroProbePeriod,
        ConfigError::RampMismatch,
        ConfigError::TooManyRampProbes,
        ConfigError::ZeroBackoffBase(Which::Refresh),
        ConfigError::ZeroBackoffFactor(Which::Refresh),
        ConfigError::CapBelowBase(Which::Probe),
        ConfigError::ZeroMaxBody,
        ConfigError::ZeroRetryCapacity,
        ConfigError::RetryCountOverCapacity,
        ConfigError::ZeroCapacity,
    ];
    let texts: Vec<String> = all.iter().map(|e| e.to_string()).collect();
    for (e, t) in all.iter().zip(&texts) {
        assert!(t.len() > 10, "{e:?}: {t:?}");
        assert_eq!(
            texts.iter().filter(|u| *u == t).count(),
            1,
            "{e:?}: {t:?} repeated"
        );
    }
    assert_eq!(
        ConfigError::ZeroBudget.to_string(),
        "fail-closed budget must be longer than zero"
    );
    assert_eq!(
        ConfigError::CapBelowBase(Which::Refresh).to_string(),
        "Refresh backoff cap must not be below its base"
    );
}
