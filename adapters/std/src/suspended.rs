//! Tests: a machine that sleeps (suspend to RAM) while a gate runs. tokio's clock stops while
//! a Linux or macOS machine is suspended; the gate's must not (time.rs). A manual clock plays
//! the suspend: the time slept jumps, tokio's clock does not move. The real reference backend
//! answers over loopback, with the default durations (a 120 s budget, R5).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use accessgate::{Access, Cause};
use accessgate_backend::{Backend, BackendConfig, Endpoint, Fault};

use crate::time::{Clock, RESUME_NAP};
use crate::{AccessGate, GateClientConfig, Tokens};

const HOUR_US: u64 = 3_600_000_000;

struct Asleep {
    backend: Backend,
    gate: AccessGate,
    /// The manual clock's time slept, in µs: store to suspend.
    slept: Arc<AtomicU64>,
    tokens: Tokens,
}

/// A gate on a manual clock, signed in with a token that expires in `expires_in`, granted.
async fn signed_in(expires_in: StdDuration) -> Asleep {
    let backend = Backend::start(BackendConfig::default())
        .await
        .expect("backend starts");
    let pair = backend
        .control()
        .issue_token("alice", StdDuration::from_secs(3600));
    let mut config = GateClientConfig::new(&backend.http_url());
    config.system_roots = false;
    config.proxy_from_env = false;
    config.seed = Some(7);
    // Re-checks at any time: the test re-checks right after the sign-in.
    config.session.gate.min_recheck_interval = accessgate::Duration::ZERO;
    let slept = Arc::new(AtomicU64::new(0));
    let gate = AccessGate::spawn_with(config, Clock::manual(slept.clone())).expect("gate spawns");
    let tokens = Tokens::new(pair.access_token, pair.refresh_token, expires_in);
    let status = gate.sign_in(tokens.clone()).await.expect("sign_in");
    assert_eq!(status.access, Access::Granted);
    Asleep {
        backend,
        gate,
        slept,
        tokens,
    }
}

fn refreshes(backend: &Backend) -> u64 {
    backend.control().counts().endpoint_total(Endpoint::Token)
}

/// R11: a token that expired while the machine slept is never handed out: the app's first
/// `access_token()` after waking gets a refreshed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expired_while_the_machine_slept_is_refreshed_before_it_is_handed_out() {
    let t = signed_in(StdDuration::from_secs(600)).await;
    // Awake and fresh: the token at once, no refresh.
    let token = t.gate.access_token().await.expect("token");
    assert_eq!(token, t.tokens.access_token);
    assert_eq!(refreshes(&t.backend), 0);

    // Two hours asleep: the 10-minute token expired during the night.
    t.slept.store(2 * HOUR_US, Ordering::Relaxed);
    let token = tokio::time::timeout(StdDuration::from_secs(10), t.gate.access_token())
        .await
        .expect("answered")
        .expect("token");
    assert_ne!(token, t.tokens.access_token, "the expired token was handed out");
    assert_eq!(refreshes(&t.backend), 1);
    let snap = t.gate.snapshot();
    assert!(snap.expires_at > Some(t.gate.now()), "{snap:?}");
    assert_eq!(snap.status.access, Access::Granted);
    t.gate.shutdown().await;
}

/// R5: a fail-closed deadline that passed while the machine slept closes the gate on waking,
/// within [`RESUME_NAP`] and without any call; awake, the same gate keeps access until its
/// deadline (120 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passed_while_the_machine_slept_fails_closed_on_waking_without_a_call() {
    let t = signed_in(StdDuration::from_secs(3 * 3600)).await;
    // `Retry-After: 60` (R6): the next timeout is a minute away, so only the nap wakes the
    // driver within the test's bound.
    let fault = Fault::Status {
        code: 503,
        retry_after: Some(60),
    };
    t.backend.control().set_fault(Endpoint::Check, Some(fault));
    t.gate.recheck().await.expect("recheck");
    let status = t.gate.status();
    assert_eq!(
        status.access,
        Access::Granted,
        "R4: a transient failure keeps access"
    );
    let deadline = status.reverifying_until.expect("reverifying");
    assert!(deadline > t.gate.now() + accessgate::Duration::from_secs(100));
    let next = status.next_attempt.expect("a retry is scheduled");
    assert!(
        next > t.gate.now() + accessgate::Duration::from_secs(50),
        "{status:?}"
    );
    // Awake, nothing changes for a while (the nap comes and goes).
    tokio::time::sleep(RESUME_NAP + StdDuration::from_millis(300)).await;
    assert_eq!(t.gate.status().access, Access::Granted);

    // An hour asleep, then no call: the driver notices by itself.
    t.slept.store(HOUR_US, Ordering::Relaxed);
    let mut rx = t.gate.subscribe();
    let closed = tokio::time::timeout(RESUME_NAP * 3, rx.wait_for(|s| s.status.access == Access::Denied))
        .await
        .expect("failed closed within the nap")
        .expect("gate open")
        .status;
    assert_eq!(closed.cause, Some(Cause::FailedClosed));
    assert_eq!(closed.reverifying_until, None);
    t.gate.shutdown().await;
}
