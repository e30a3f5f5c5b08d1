//! Shared harness: the real reference backend on loopback, a gate with small durations, and
//! an event recorder. Durations: attempt timeout 300 ms, budget 2 s, retries stratified over
//! 1 s plus a 200 ms final window, probes every 1 s after a ramp of 1 probe in 300 ms, re-check
//! every 50 ms at most, refresh skew 1 s (no spread), refresh retry 100 ms ×2 cap 400 ms,
//! refresh timeout 500 ms.
#![allow(dead_code)] // each test binary uses a part of it

use std::future::Future;
use std::time::Duration as StdDuration;

use accessgate::{
    Backoff, Duration, Event, Instant, Probing, Retries, SessionConfig, SessionEvent, TransientClass,
};
use accessgate_backend::{Backend, BackendConfig, Control, TokenPair};
use accessgate_std::{AccessGate, GateClientConfig, Snapshot, TimedEvent, Tokens};
use tokio::sync::broadcast;

pub const USER: &str = "alice";
pub const BUDGET: StdDuration = StdDuration::from_secs(2);
pub const ATTEMPT_TIMEOUT: StdDuration = StdDuration::from_millis(300);
pub const SKEW: StdDuration = StdDuration::from_secs(1);

/// Runs a test body with an overall bound, so a hang fails instead of stalling the suite.
pub async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(StdDuration::from_secs(20), f)
        .await
        .expect("test exceeded its 20 s bound");
}

pub fn fast_session() -> SessionConfig {
    let mut s = SessionConfig::DEFAULT;
    s.gate.attempt_timeout = Duration::from_millis(300);
    s.gate.budget = Duration::from_secs(2);
    s.gate.retry = Retries {
        spread: Duration::from_millis(1000),
        final_window: Duration::from_millis(200),
        count: 0,
    };
    s.gate.probe = Probing {
        period: Duration::from_secs(1),
        ramp: Duration::from_millis(300),
        ramp_probes: 1,
    };
    s.gate.min_recheck_interval = Duration::from_millis(50);
    s.refresh_skew = Duration::from_secs(1);
    s.refresh_retry = Backoff {
        base: Duration::from_millis(100),
        factor: 2,
        cap: Duration::from_millis(400),
    };
    s.refresh_timeout = Duration::from_millis(500);
    // Refresh exactly `skew` ahead (R11's spreading is on by default; these tests time it).
    s.refresh_spread = Duration::ZERO;
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

pub async fn backend(scheme: Scheme) -> Backend {
    Backend::start(BackendConfig {
        https_port: (scheme == Scheme::Https).then_some(0),
        ..BackendConfig::default()
    })
    .await
    .expect("backend starts")
}

/// A config for `backend`: over HTTPS it trusts the backend's generated CA only.
pub fn config_for(backend: &Backend, scheme: Scheme) -> GateClientConfig {
    let base = match scheme {
        Scheme::Http => backend.http_url(),
        Scheme::Https => backend.https_url().expect("https listener"),
    };
    let mut c = GateClientConfig::new(&base);
    c.session = fast_session();
    c.system_roots = false;
    c.proxy_from_env = false;
    c.extra_ca_pem = backend.ca_pem().map(str::to_string);
    c.seed = Some(0x5eed);
    c
}

pub struct Harness {
    pub backend: Backend,
    pub control: Control,
    pub gate: AccessGate,
    pub rec: Recorder,
    pub tokens: TokenPair,
}

impl Harness {
    pub async fn new(scheme: Scheme) -> Harness {
        Self::with(scheme, |_| {}).await
    }

    pub async fn with(scheme: Scheme, tweak: impl FnOnce(&mut GateClientConfig)) -> Harness {
        let backend = backend(scheme).await;
        let mut cfg = config_for(&backend, scheme);
        tweak(&mut cfg);
        let control = backend.control();
        let tokens = control.issue_token(USER, StdDuration::from_secs(3600));
        let gate = AccessGate::spawn(cfg).expect("gate spawns");
        let rec = Recorder::new(&gate);
        Harness {
            backend,
            control,
            gate,
            rec,
            tokens,
        }
    }

    /// The issued tokens, telling the gate they expire in `expires_in`.
    pub fn tokens(&self, expires_in: StdDuration) -> Tokens {
        Tokens::new(
            self.tokens.access_token.clone(),
            self.tokens.refresh_token.clone(),
            expires_in,
        )
    }

    /// Signs in with the issued tokens (one hour of validity).
    pub async fn sign_in(&self) -> accessgate::Status {
        self.gate
            .sign_in(self.tokens(StdDuration::from_secs(3600)))
            .await
            .expect("sign_in")
    }

    /// Asks for a re-check, waiting out the rate limit if needed.
    pub async fn recheck(&self) {
        loop {
            match self.gate.recheck().await {
                Ok(()) => return,
                Err(accessgate_std::GateError::RateLimited { retry_in, .. }) => {
                    tokio::time::sleep(retry_in + StdDuration::from_millis(1)).await
                }
                Err(e) => panic!("recheck: {e}"),
            }
        }
    }

    /// Waits (at most `within`) for a snapshot satisfying `pred`.
    pub async fn wait_for(&self, within: StdDuration, pred: impl FnMut(&Snapshot) -> bool) -> Snapshot {
        let mut rx = self.gate.subscribe();
        let found = match tokio::time::timeout(within, rx.wait_for(pred)).await {
            Ok(Ok(s)) => *s,
            Ok(Err(_)) => panic!("gate closed"),
            Err(_) => panic!(
                "no matching snapshot within {within:?}; last: {:?}",
                self.gate.snapshot()
            ),
        };
        found
    }
}

/// Records every event of a gate, in order.
pub struct Recorder {
    rx: broadcast::Receiver<TimedEvent>,
    pub seen: Vec<TimedEvent>,
}

impl Recorder {
    pub fn new(gate: &AccessGate) -> Self {
        Recorder {
            rx: gate.events(),
            seen: Vec::new(),
        }
    }

    /// Pulls whatever has arrived.
    pub fn poll(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
    }

    /// Waits (at most `within`) for the next event satisfying `pred`, recording all.
    pub async fn next(
        &mut self,
        within: StdDuration,
        mut pred: impl FnMut(&SessionEvent) -> bool,
    ) -> TimedEvent {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Ok(e)) => {
                    self.seen.push(e);
                    if pred(&e.event) {
                        return e;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("recorder lagged by {n}"),
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("gate closed"),
                Err(_) => panic!("no matching event within {within:?}; seen: {:#?}", self.seen),
            }
        }
    }

    /// Every gate event recorded so far.
    pub fn gate_events(&mut self) -> Vec<(Instant, Event)> {
        self.poll();
        self.seen
            .iter()
            .filter_map(|e| match e.event {
                SessionEvent::Gate(g) => Some((e.at, g)),
                _ => None,
            })
            .collect()
    }

    /// Classes of every failed check recorded so far.
    pub fn failure_classes(&mut self) -> Vec<TransientClass> {
        self.gate_events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::CheckFailed { class, .. } => Some(class),
                _ => None,
            })
            .collect()
    }

    /// Every access change recorded so far.
    pub fn access_changes(&mut self) -> Vec<(Instant, accessgate::Access, accessgate::Cause)> {
        self.gate_events()
            .into_iter()
            .filter_map(|(at, e)| match e {
                Event::AccessChanged { to, cause, .. } => Some((at, to, cause)),
                _ => None,
            })
            .collect()
    }
}

pub fn is_check_failed(e: &SessionEvent) -> bool {
    matches!(e, SessionEvent::Gate(Event::CheckFailed { .. }))
}

pub fn is_access_changed_to(to: accessgate::Access) -> impl FnMut(&SessionEvent) -> bool {
    move |e| matches!(e, SessionEvent::Gate(Event::AccessChanged { to: t, .. }) if *t == to)
}

/// Milliseconds between two gate instants, signed.
pub fn ms_between(from: Instant, to: Instant) -> i64 {
    to.as_micros() as i64 / 1000 - from.as_micros() as i64 / 1000
}
