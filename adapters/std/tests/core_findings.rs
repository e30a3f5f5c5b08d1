//! Regression tests for two findings in the core (`accessgate`), found while writing this
//! adapter and since fixed there: a persistent 403 looped early refreshes, and the end of the
//! fail-closed budget went unwatched after the planned retries. Driven sans-IO so they are
//! exact and instant.

use accessgate::{classify, Access, Action, Duration, Instant, RefreshOutcome, Session, SessionConfig};

/// Drives `s` until it has nothing to do at `now`: checks get `status`, refreshes succeed.
/// Returns how many refreshes ran.
fn settle(s: &mut Session, now: Instant, status: u16, steps: usize) -> usize {
    let mut refreshes = 0;
    for _ in 0..steps {
        match s.poll_action() {
            Some(Action::Check(req)) => {
                let body: &[u8] = br#"{"has_access": true}"#;
                let outcome = classify(status, None, body, 1024);
                s.handle_check_result(now, req.generation, req.attempt, outcome);
            }
            Some(Action::Refresh(req)) => {
                refreshes += 1;
                let reply = RefreshOutcome::Refreshed {
                    access_token: b"at_new",
                    refresh_token: Some(b"rt_new"),
                    expires_in: Duration::from_secs(3600),
                };
                s.handle_refresh_result(now, req.id, reply);
            }
            Some(_) => {} // cancels: nothing runs here
            None => break,
        }
        while s.poll_event().is_some() {}
    }
    refreshes
}

/// R9 says a 403 asks for one early refresh. With a backend that keeps answering 403, every
/// refresh starts a new generation whose immediate check gets 403 and asks for another early
/// refresh (`early_refresh_for` is compared with the *new* generation), so refresh and
/// check alternate at network speed with no backoff: ~200 token requests in 800 ms against
/// the reference backend (see `rules.rs::r9_persistent_forbidden_refreshes_once`).
#[test]
fn persistent_403_asks_for_one_early_refresh() {
    let mut s: Session = Session::new(SessionConfig::DEFAULT, 1).unwrap();
    let now = Instant::from_secs(1);
    s.sign_in(now, b"at", b"rt", Duration::from_secs(3600)).unwrap();
    let refreshes = settle(&mut s, now, 403, 100);
    assert_eq!(refreshes, 1, "one early refresh for a run of 403s");
}

/// Not a rule violation, a gap worth a decision: the 8 planned retries use on average about
/// half of their ceilings (full jitter), ~55 s of the 120 s budget with the defaults. After
/// the last one the gate waits for the deadline without checking, so an outage that ends
/// well inside the budget can still fail closed, and the user waits for the first probe
/// (up to 30 s more). Here: 503 for the first 70 s, healthy afterwards, yet access ends
/// `Denied` for most seeds.
#[test]
fn outage_shorter_than_budget_keeps_access_for_every_seed() {
    let mut denied = 0;
    for seed in 0..100u64 {
        let mut s: Session = Session::new(SessionConfig::DEFAULT, seed).unwrap();
        let mut now = Instant::ZERO;
        s.sign_in(now, b"at", b"rt", Duration::from_secs(100_000))
            .unwrap();
        settle(&mut s, now, 200, 10);
        s.recheck_now(Instant::from_secs(10)).unwrap();
        now = Instant::from_secs(10);
        for _ in 0..1000 {
            // Outage from 10 s to 80 s: 70 s, well inside the 120 s budget.
            let status = if now < Instant::from_secs(80) { 503 } else { 200 };
            settle(&mut s, now, status, 10);
            if s.access() == Access::Denied {
                denied += 1;
                break;
            }
            match s.poll_timeout() {
                Some(t) if t < Instant::from_secs(200) => {
                    now = t;
                    s.handle_timeout(now);
                }
                _ => break,
            }
        }
    }
    assert_eq!(
        denied, 0,
        "{denied} of 100 seeds failed closed after a 70 s outage"
    );
}
