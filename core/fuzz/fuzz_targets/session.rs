//! Fuzzes the session with arbitrary input sequences under a configuration and a clock drawn
//! from the input: the first bytes pick every setting (edges such as 1 µs, `Duration::MAX`, a
//! refresh skew longer than any token, zero recheck interval, or raw values), fixed up only as
//! far as `SessionConfig::validate` requires, and the clock starts anywhere (the origin, the end
//! of time) and steps forward by any amount, backwards, or to the session's own deadline.
//! Oracles after every input: no panic; at most one check and one refresh started (R11);
//! fewer events than `SESSION_EVENT_CAPACITY` and none lost (R12); never `Granted` without a
//! grant fed for the current session (R1, R10); a fail-closed deadline ahead of the input and
//! never moved (R5); nothing left due, so a driver sleeping until `poll_timeout` makes progress
//! (R12); an attempt in flight has a timeout and a planned attempt its timer (R4, R6).
#![no_main]

use accessgate::{
    Access, Action, Backoff, CheckOutcome, Duration, Instant, Probing, RefreshOutcome, Retries, Session,
    SessionConfig, TransientClass,
};
use libfuzzer_sys::fuzz_target;

/// Reads the input front to back; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |x, _| x << 8 | u64::from(self.u8()))
    }
    /// A duration: an edge, or raw micros of any magnitude.
    fn duration(&mut self) -> Duration {
        match self.u8() % 10 {
            0 => Duration::ZERO,
            1 => Duration::from_micros(1),
            2 => Duration::from_micros(2),
            3 => Duration::from_secs(1),
            4 => Duration::from_secs(10),
            5 => Duration::from_secs(120),
            6 => Duration::MAX,
            7 => Duration::from_micros(u64::MAX - 1),
            8 => Duration::from_micros(u64::from(self.u8()) * 1_000_000),
            _ => Duration::from_micros(self.u64() >> (self.u8() % 64)),
        }
    }
}

/// A valid configuration from the input, every setting possibly at an edge.
fn config(b: &mut Bytes) -> SessionConfig {
    let us = Duration::from_micros;
    let budget = b.duration().max(us(2));
    let timeout = b.duration().max(us(1)).min(budget.saturating_sub(us(1)));
    let room = budget.saturating_sub(timeout);
    let final_window = b.duration().min(room.saturating_sub(us(1)));
    let spread = b.duration().max(us(1)).min(room.saturating_sub(final_window));
    let ramp_probes = u32::from(b.u8()) % (Probing::MAX_RAMP_PROBES + 1);
    let mut c = SessionConfig::DEFAULT;
    c.gate.budget = budget;
    c.gate.attempt_timeout = timeout;
    c.gate.retry = Retries {
        spread,
        final_window,
        count: u16::from(b.u8()) % 5, // up to the capacity, 4
    };
    c.gate.probe = Probing {
        period: b.duration().max(us(1)),
        ramp: if ramp_probes == 0 {
            Duration::ZERO
        } else {
            b.duration().max(us(1))
        },
        ramp_probes,
    };
    c.gate.min_recheck_interval = b.duration();
    c.refresh_skew = b.duration();
    let base = b.duration().max(us(1));
    c.refresh_retry = Backoff {
        base,
        factor: u32::from(b.u8()).max(1) << (b.u8() % 24),
        cap: b.duration().max(base),
    };
    c.refresh_timeout = b.duration().max(us(1));
    c.refresh_spread = b.duration();
    c
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let cfg = config(&mut b);
    let Ok(mut s) = Session::<4, 2, 32>::new(cfg, b.u64()) else {
        panic!("the fix-ups must give a valid config: {cfg:?}");
    };
    let mut now = match b.u8() % 4 {
        0 => Instant::ZERO,
        1 => Instant::MAX,
        2 => Instant::from_micros(u64::MAX - 1 - u64::from(b.u8()) * 1_000_000_000),
        _ => Instant::from_micros(b.u64()),
    };
    let mut checks = Vec::new();
    let mut refreshes = Vec::new();
    let mut granted_this_session = false;
    let mut deadline: Option<Instant> = None;
    let rest = b.0;
    for chunk in rest.chunks(4) {
        let byte = |i: usize| *chunk.get(i).unwrap_or(&0);
        let (op, a, b, step) = (byte(0), byte(1), byte(2), byte(3));
        now = match step % 8 {
            0 => now,
            1 => now + Duration::from_micros(u64::from(a) << (b % 64)),
            2 => now.saturating_sub(Duration::from_micros(u64::from(a) << (b % 64))), // backwards
            3 => Instant::MAX,
            4 => s
                .poll_timeout()
                .map_or(now, |t| t.saturating_sub(Duration::from_micros(1))),
            5 => s.poll_timeout().map_or(now, |t| t + Duration::from_micros(1)),
            _ => s.poll_timeout().unwrap_or(now),
        };
        let edge = |x: u8| match x % 6 {
            0 => Duration::ZERO,
            1 => Duration::from_micros(1),
            2 => cfg.refresh_skew,
            3 => cfg.refresh_skew + Duration::from_micros(1),
            4 => Duration::MAX,
            _ => Duration::from_secs(u64::from(x)),
        };
        let outcome = match b % 5 {
            0 => CheckOutcome::Granted,
            1 => CheckOutcome::Denied,
            2 => CheckOutcome::Unauthorized,
            _ => CheckOutcome::Transient {
                class: TransientClass::ALL[a as usize % TransientClass::COUNT],
                retry_after: (b & 1 == 1).then(|| match a % 3 {
                    0 => Duration::MAX,
                    _ => Duration::from_secs(u64::from(a)),
                }),
                detail: accessgate::FailureDetail::Status(u16::from(a)),
            },
        };
        let before = s.status();
        let mut ends_run = false;
        // Inputs cannot fail (issue 11); the operations that can be refused say why, and a
        // refusal changes nothing here.
        match op % 9 {
            0 => {
                granted_this_session = false;
                ends_run = true;
                let _ = s.sign_in(now, b"at", b"rt", edge(a));
            }
            1 => {
                granted_this_session = false;
                ends_run = true;
                s.logout(now);
            }
            2 => {
                let _ = s.request_token(now);
            }
            3 => {
                let _ = s.recheck_now(now);
            }
            4 | 5 => {
                if let Some((g, k)) = checks.get(a as usize % checks.len().max(1)).copied() {
                    let stale = s.counters().stale_dropped;
                    s.handle_check_result(now, g, k, outcome);
                    // Taken, not dropped as stale (R10): only then may it grant (R1).
                    let taken = s.counters().stale_dropped == stale;
                    granted_this_session |= taken && outcome == CheckOutcome::Granted;
                    ends_run = taken || outcome == CheckOutcome::Unauthorized;
                }
            }
            6 => {
                if let Some(id) = refreshes.get(a as usize % refreshes.len().max(1)).copied() {
                    let o = match b % 3 {
                        0 => RefreshOutcome::Refreshed {
                            access_token: b"new",
                            refresh_token: Some(b"rt2"),
                            expires_in: edge(a),
                        },
                        1 => RefreshOutcome::Rejected,
                        _ => RefreshOutcome::transient(TransientClass::Connect),
                    };
                    s.handle_refresh_result(now, id, o);
                }
            }
            _ => s.handle_timeout(now),
        }
        let t = s.last_now();
        let mut started = 0;
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => {
                    started += 1;
                    checks.push((c.generation, c.attempt));
                    // R11: never a check with a token expired at its instant.
                    assert!(s.expires_at().is_some_and(|e| t < e), "{c:?} at {t:?}");
                }
                Action::Refresh(r) => {
                    started += 1;
                    refreshes.push(r.id);
                }
                // R10: what the session withdrew; its results stay fed to test stale drops.
                Action::CancelCheck { .. } | Action::CancelRefresh(_) => {}
            }
        }
        // R11: at most one check and one refresh start per input.
        assert!(started <= 2, "one input started {started} requests");
        let mut events = 0;
        while s.poll_event().is_some() {
            events += 1;
        }
        // R12: drained after every input, the queue never fills (the worst input queues 9 of 11).
        assert!(
            events < accessgate::SESSION_EVENT_CAPACITY,
            "{events} events from one input"
        );
        while s.poll_waiter().is_some() {}
        let status = s.status();
        if !status.signed_in {
            granted_this_session = false;
        }
        if s.access() == Access::Granted {
            assert!(granted_this_session, "granted without a grant in this session");
        }
        if status.access == Access::Granted && before.access != Access::Granted {
            assert!(granted_this_session, "granted by an input that fed no grant");
        }
        assert_eq!(s.counters().events_lost, 0);
        // R5: the deadline is ahead of the input, wakes the session, and never moves within
        // its run of failures (a sign-in, logout or taken answer may end the run).
        if ends_run {
            deadline = None;
        }
        if let (Some(d), Some(old)) = (status.reverifying_until, deadline) {
            assert_eq!(d, old, "the fail-closed deadline moved");
        }
        deadline = status.reverifying_until;
        if let Some(d) = status.reverifying_until {
            assert!(d > t, "deadline {d:?} passed at {t:?} without failing closed");
            assert!(s.poll_timeout().is_some_and(|p| p <= d));
        }
        // R12: nothing left due after an input (no busy loop for a driver that sleeps until
        // `poll_timeout`), even at the end of time.
        assert!(
            s.poll_timeout().is_none_or(|p| p > t),
            "poll_timeout {:?} at {t:?}",
            s.poll_timeout()
        );
        // R4, R6: an attempt in flight has its timeout, a planned attempt its timer.
        if status.attempt_in_flight.is_some() {
            assert!(
                s.poll_timeout().is_some(),
                "an attempt in flight without a timeout"
            );
        }
        if let Some(next) = status.next_attempt {
            assert!(
                s.poll_timeout().is_some_and(|t| t <= next),
                "a planned attempt without its timer"
            );
        }
    }
});
