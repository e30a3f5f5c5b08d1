//! Fuzzes the session and gate with arbitrary input sequences: no panic, bounded outputs,
//! and never `Granted` unless a grant was fed for the current session (R1, R10, R12).
#![no_main]

use accessgate::{
    Access, Action, CheckOutcome, Duration, Instant, RefreshOutcome, Session, SessionConfig, TransientClass,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut s) = Session::<4, 2, 32>::new(SessionConfig::DEFAULT, 1) else { return };
    let mut now = Instant::ZERO;
    let mut checks = Vec::new();
    let mut refreshes = Vec::new();
    let mut granted_this_session = false;
    for chunk in data.chunks(3) {
        let (op, a, b) = (chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0));
        now += Duration::from_millis(u64::from(a) * u64::from(b) * 37);
        let outcome = match b % 5 {
            0 => CheckOutcome::Granted,
            1 => CheckOutcome::Denied,
            2 => CheckOutcome::Unauthorized,
            _ => CheckOutcome::Transient {
                class: TransientClass::ALL[a as usize % TransientClass::COUNT],
                retry_after: (b & 1 == 1).then(|| Duration::from_secs(u64::from(a))),
                detail: accessgate::FailureDetail::Status(u16::from(a)),
            },
        };
        // Inputs cannot fail (issue 11); the operations that can be refused say why, and a
        // refusal changes nothing here.
        match op % 9 {
            0 => {
                granted_this_session = false;
                let _ = s.sign_in(now, b"at", b"rt", Duration::from_secs(u64::from(a)));
            }
            1 => {
                granted_this_session = false;
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
                    if outcome == CheckOutcome::Granted && s.status().signed_in {
                        granted_this_session = true;
                    }
                    s.handle_check_result(now, g, k, outcome);
                }
            }
            6 => {
                if let Some(id) = refreshes.get(a as usize % refreshes.len().max(1)).copied() {
                    let o = match b % 3 {
                        0 => RefreshOutcome::Refreshed {
                            access_token: b"new",
                            refresh_token: Some(b"rt2"),
                            expires_in: Duration::from_secs(u64::from(a)),
                        },
                        1 => RefreshOutcome::Rejected,
                        _ => RefreshOutcome::transient(TransientClass::Connect),
                    };
                    s.handle_refresh_result(now, id, o);
                }
            }
            _ => {
                if let Some(t) = s.poll_timeout() {
                    now = now.max(t);
                }
                s.handle_timeout(now);
            }
        }
        let mut started = 0;
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => {
                    started += 1;
                    checks.push((c.generation, c.attempt));
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
        // R12: drained after every input, the queue never fills (the worst input queues 10).
        assert!(events < accessgate::SESSION_EVENT_CAPACITY, "{events} events from one input");
        while s.poll_waiter().is_some() {}
        if !s.status().signed_in {
            granted_this_session = false;
        }
        if s.access() == Access::Granted {
            assert!(granted_this_session, "granted without a grant in this session");
        }
        assert_eq!(s.counters().events_lost, 0);
        // R4, R6: an attempt in flight has its timeout, a planned attempt its timer.
        let status = s.status();
        if status.attempt_in_flight.is_some() {
            assert!(s.poll_timeout().is_some(), "an attempt in flight without a timeout");
        }
        if let Some(next) = status.next_attempt {
            assert!(s.poll_timeout().is_some_and(|t| t <= next), "a planned attempt without its timer");
        }
    }
});
