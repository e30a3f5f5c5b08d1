//! The gate in an app, end to end, against the reference backend started in-process over
//! HTTPS (trusting only its generated CA). Prints every event as a JSON line, then walks
//! through an outage: the grant holds, the gate fails closed at the deadline, and recovers
//! when the backend returns. Small durations so it finishes in a few seconds:
//!
//! ```text
//! cargo run -p accessgate-std --example basic
//! ```

use std::time::Duration;

use accessgate::{Access, Duration as GateDuration, Probing, Retries};
use accessgate_backend::{Backend, BackendConfig, Endpoint, Fault};
use accessgate_std::{AccessGate, GateClientConfig, GateError, Tokens};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = Backend::start(BackendConfig {
        https_port: Some(0),
        ..BackendConfig::default()
    })
    .await?;
    let control = backend.control();
    let issued = control.issue_token("alice", Duration::from_secs(3600));

    let mut config = GateClientConfig::new(&backend.https_url().ok_or("no https listener")?);
    config.extra_ca_pem = backend.ca_pem().map(str::to_string);
    config.system_roots = false;
    config.proxy_from_env = false;
    config.session.gate.attempt_timeout = GateDuration::from_millis(500);
    config.session.gate.budget = GateDuration::from_secs(3);
    config.session.gate.retry = Retries {
        spread: GateDuration::from_millis(1500),
        final_window: GateDuration::from_millis(500),
        count: 0,
    };
    config.session.gate.probe = Probing {
        period: GateDuration::from_secs(1),
        ramp: GateDuration::ZERO,
        ramp_probes: 0,
    };
    config.session.gate.min_recheck_interval = GateDuration::from_millis(200);
    let gate = AccessGate::spawn(config)?;

    // Print every event as one JSON line, as `accessgate watch` does.
    let mut events = gate.events();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            println!("{}", e.to_json());
        }
    });

    let tokens = Tokens::new(
        issued.access_token,
        issued.refresh_token,
        Duration::from_secs(3600),
    );
    let status = gate.sign_in(tokens).await?; // awaits the first check (R3)
    println!("signed in: access {:?}", status.access);
    let bearer = gate.access_token().await?;
    println!(
        "token for my own API calls: {}...",
        &bearer[..8.min(bearer.len())]
    );

    println!("-- outage (503) longer than the 3 s budget");
    control.set_fault(
        Endpoint::Check,
        Some(Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    // A "retry" button: re-checks are rate-limited; the error says for how long.
    if let Err(GateError::RateLimited { retry_in, .. }) = gate.recheck().await {
        tokio::time::sleep(retry_in).await;
        gate.recheck().await?;
    }
    let mut snapshots = gate.subscribe();
    snapshots.wait_for(|s| s.status.access == Access::Denied).await?;
    println!("failed closed: {:?}", gate.status().cause);

    println!("-- backend back");
    control.set_fault(Endpoint::Check, None);
    snapshots.wait_for(|s| s.status.access == Access::Granted).await?;
    let snap = gate.snapshot();
    println!(
        "recovered: {:?}; attempts {}, transient failures {}, failed closed {}, recoveries {}",
        snap.status.cause,
        snap.counters.attempts,
        snap.counters.transient_total(),
        snap.counters.failed_closed,
        snap.counters.recoveries
    );

    gate.logout().await?;
    gate.shutdown().await;
    backend.shutdown().await;
    Ok(())
}
