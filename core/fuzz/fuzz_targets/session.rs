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
        let _ = match op % 9 {
            0 => {
                granted_this_session = false;
                s.sign_in(now, b"at", b"rt", Duration::from_secs(u64::from(a))).map(|_| ())
            }
            1 => {
                granted_this_session = false;
                s.logout(now)
            }
            2 => s.request_token(now).map(|_| ()),
            3 => s.recheck_now(now),
            4 | 5 => match checks.get(a as usize % checks.len().max(1)).copied() {
                Some((g, k)) => {
                    if outcome == CheckOutcome::Granted && s.status().signed_in {
                        granted_this_session = true;
                    }
                    s.handle_check_result(now, g, k, outcome)
                }
                None => Ok(()),
            },
            6 => match refreshes.get(a as usize % refreshes.len().max(1)).copied() {
                Some(id) => {
                    let o = match b % 3 {
                        0 => RefreshOutcome::Refreshed {
                            access_token: b"new",
                            refresh_token: Some(b"rt2"),
                            expires_in: Duration::from_secs(u64::from(a)),
                        },
                        1 => RefreshOutcome::Rejected,
                        _ => RefreshOutcome::transient(TransientClass::Connect),
                    };
                    s.handle_refresh_result(now, id, o)
                }
                None => Ok(()),
            },
            _ => {
                if let Some(t) = s.poll_timeout() {
                    now = now.max(t);
                }
                s.handle_timeout(now)
            }
        };
        let mut actions = 0;
        while let Some(a) = s.poll_action() {
            actions += 1;
            match a {
                Action::Check(c) => checks.push((c.generation, c.attempt)),
                Action::Refresh(r) => refreshes.push(r.id),
            }
        }
        assert!(actions <= 2, "one input started {actions} actions");
        let mut events = 0;
        while s.poll_event().is_some() {
            events += 1;
        }
        assert!(events <= 2 * accessgate::MAX_EVENTS_PER_INPUT + 4);
        while s.poll_waiter().is_some() {}
        if !s.status().signed_in {
            granted_this_session = false;
        }
        if s.access() == Access::Granted {
            assert!(granted_this_session, "granted without a grant in this session");
        }
        assert_eq!(s.counters().events_lost, 0);
        if s.status().signed_in && s.gate().check_owed() {
            assert!(s.poll_timeout().is_some(), "a check is owed but no timer is set");
        }
    }
});
