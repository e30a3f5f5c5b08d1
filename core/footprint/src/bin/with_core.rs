//! Drives every input of a default `Session` (gate + session + classifiers) with opaque
//! values so the optimiser keeps all of it. The .text difference to `baseline` is the core.
#![no_std]
#![no_main]

use accessgate::{
    classify, classify_refresh, Action, Duration, Instant, RefreshOutcome, Session, SessionConfig,
};
use core::hint::black_box;
use cortex_m_rt::entry;
use panic_halt as _;

static mut SESSION: Option<Session> = None;

#[entry]
fn main() -> ! {
    // One-time init of a static so the Session lives in .bss, as it would on a device.
    #[allow(static_mut_refs)]
    let s = unsafe { SESSION.insert(Session::new(SessionConfig::DEFAULT, black_box(7)).unwrap()) };
    let body: &[u8] = black_box(br#"{"has_access": true}"#);
    let mut now = Instant::ZERO;
    loop {
        now += Duration::from_millis(black_box(100));
        let _ = s.sign_in(now, black_box(b"at"), black_box(b"rt"), Duration::from_secs(3600));
        let _ = s.request_token(now);
        let _ = s.recheck_now(now);
        while let Some(a) = s.poll_action() {
            match a {
                Action::Check(c) => {
                    let o = classify(black_box(200), black_box(None), body, 1024);
                    let _ = s.handle_check_result(now, c.generation, c.attempt, o);
                }
                Action::Refresh(r) => {
                    let o = classify_refresh(black_box(200), body, 1024);
                    let o = if black_box(false) { RefreshOutcome::Rejected } else { o };
                    let _ = s.handle_refresh_result(now, r.id, o);
                }
                cancel => {
                    black_box(cancel);
                }
            }
        }
        while let Some(e) = s.poll_event() {
            black_box(e);
        }
        while let Some(w) = s.poll_waiter() {
            let _ = black_box(w);
        }
        if let Some(t) = s.poll_timeout() {
            let _ = s.handle_timeout(t);
        }
        black_box(s.status());
        black_box(s.counters());
        if black_box(false) {
            let _ = s.logout(now);
        }
    }
}
