//! What the core runs per healthy check of the std adapter, for instruction counts (issue 11).
//!
//! One operation is what `accessgate-std` does for `recheck()` / `sign_in()` on a healthy
//! backend: the input, the drain of its outputs (actions with the token lookup, events, the
//! snapshot's `status()` + `counters()` + `expires_at()` + `refresh_in_flight()`, waiters, the
//! R3 test, `poll_timeout`), then the check's `Granted` result and the same drain. The
//! operations are `#[inline(never)]` so callgrind can count them alone:
//!
//! ```text
//! cargo build -p accessgate --example per_check --profile release-debug
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     --toggle-collect='per_check::recheck_op' --toggle-collect='per_check::sign_in_op' \
//!     target/release-debug/examples/per_check 1000
//! callgrind_annotate --inclusive=yes cg.out | head -40
//! ```
//!
//! Each function's inclusive count divided by the operations (printed) is its cost per check.
//! Not run by the tests.
use accessgate::{Action, CheckOutcome, Counters, Duration, Instant, Session, SessionConfig, Status};
use std::hint::black_box;

/// The std adapter's session type (retry capacity 8, 64 waiters, 1 KiB tokens).
type S = Session<8, 64, 1024>;

/// The backend's token shapes: a prefix and 32 hex digits.
const ACCESS: &[u8] = b"at_0123456789abcdef0123456789abcdef";
const REFRESH: &[u8] = b"rt_0123456789abcdef0123456789abcdef";
const DAY: Duration = Duration::from_secs(86_400);

/// The adapter's `State::drain`, without the I/O: returns the check to run.
#[inline(always)]
fn drain(s: &mut S) -> Option<(accessgate::Generation, u32)> {
    let mut mine = None;
    while let Some(action) = s.poll_action() {
        if let Action::Check(req) = action {
            black_box(s.access_token(req.token).map(<[u8]>::len));
            mine = Some((req.generation, req.attempt));
        } else {
            black_box(&action);
        }
    }
    let at = s.last_now();
    while let Some(event) = s.poll_event() {
        black_box(&event);
    }
    black_box(at);
    // The snapshot's parts (`Snapshot::of`).
    let snap: (Status, Counters, Option<Instant>, bool) =
        (s.status(), *s.counters(), s.expires_at(), s.refresh_in_flight());
    black_box(&snap);
    while let Some(w) = s.poll_waiter() {
        black_box(&w);
    }
    black_box(s.first_check_running());
    black_box(s.poll_timeout());
    mine
}

/// The check's answer and its drain.
#[inline(always)]
fn answer(s: &mut S, now: Instant, check: Option<(accessgate::Generation, u32)>) -> bool {
    let Some((generation, attempt)) = check else {
        return false;
    };
    s.handle_check_result(now, generation, attempt, CheckOutcome::Granted);
    drain(s);
    true
}

/// One `recheck()`: the input, its drain, the granted answer, its drain.
#[inline(never)]
fn recheck_op(s: &mut S, now: Instant) -> bool {
    let started = s.recheck_now(now).is_ok();
    let check = drain(s);
    started && answer(s, now + Duration::from_micros(40), check)
}

/// One `sign_in()` over a live session: the input, its drain, the granted answer, its drain.
#[inline(never)]
fn sign_in_op(s: &mut S, now: Instant) -> bool {
    let started = s.sign_in(now, black_box(ACCESS), black_box(REFRESH), DAY).is_ok();
    let check = drain(s);
    started && answer(s, now + Duration::from_micros(40), check)
}

fn main() {
    let ops: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut config = SessionConfig::DEFAULT;
    config.gate.min_recheck_interval = Duration::ZERO;
    let Ok(session) = S::new(config, 0x5eed) else {
        panic!("default config is valid");
    };
    let mut s = Box::new(session);
    let mut now = Instant::from_micros(1_000_000);
    let first = s.sign_in(now, ACCESS, REFRESH, DAY).is_ok();
    let check = drain(&mut s);
    assert!(first && answer(&mut s, now, check), "signed in");
    let mut granted = 0u64;
    for _ in 0..ops {
        now += Duration::from_micros(100);
        granted += u64::from(recheck_op(&mut s, now));
    }
    for _ in 0..ops {
        now += Duration::from_micros(100);
        granted += u64::from(sign_in_op(&mut s, now));
    }
    let counters = *s.counters();
    assert_eq!(granted, 2 * ops, "every operation ends in a grant");
    assert_eq!(counters.grants as u64, 2 * ops + 1);
    println!("{ops} rechecks + {ops} sign-ins, {} grants", counters.grants);
}
