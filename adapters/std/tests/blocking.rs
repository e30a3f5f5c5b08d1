//! The blocking wrapper, from a plain thread (no async context), against the reference
//! backend running on its own runtime.

mod common;

use std::time::Duration;

use accessgate::{Access, Cause};
use accessgate_backend::{Endpoint, Fault};
use accessgate_std::{BlockingAccessGate, GateError, TokenError, Tokens};
use common::{backend, config_for, Scheme, USER};

#[test]
fn blocking_gate_signs_in_checks_and_logs_out() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let backend = server_rt.block_on(backend(Scheme::Https));
    let control = backend.control();
    let issued = control.issue_token(USER, Duration::from_secs(3600));

    let gate = BlockingAccessGate::spawn(config_for(&backend, Scheme::Https)).unwrap();
    assert!(matches!(gate.recheck(), Err(GateError::NotSignedIn)));
    assert_eq!(gate.access_token(), Err(TokenError::NotAuthenticated));
    let status = gate
        .sign_in(Tokens::new(
            issued.access_token.clone(),
            issued.refresh_token,
            Duration::from_secs(3600),
        ))
        .unwrap();
    assert_eq!(
        (status.access, status.cause),
        (Access::Granted, Some(Cause::ServerGranted))
    );
    assert_eq!(gate.access_token().unwrap(), issued.access_token);

    // A genuine denial, seen through wait_for.
    control.set_access(USER, false);
    std::thread::sleep(Duration::from_millis(60)); // past the 50 ms re-check rate limit
    gate.recheck().unwrap();
    let snap = gate
        .wait_for(Duration::from_secs(2), |s| s.status.access == Access::Denied)
        .unwrap()
        .expect("denied within 2 s");
    assert_eq!(snap.status.cause, Some(Cause::ServerDenied));
    // wait_for times out with None.
    assert!(gate
        .wait_for(Duration::from_millis(50), |s| s.status.access == Access::Granted)
        .unwrap()
        .is_none());

    // A hanging backend does not hang the caller beyond the attempt timeout (R3, R12).
    control.set_fault(Endpoint::Check, Some(Fault::Hang));
    let t0 = std::time::Instant::now();
    let status = gate.wait_first_check().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(status.access, Access::Denied);

    gate.logout().unwrap();
    assert!(!gate.status().signed_in);
    gate.shutdown();
    assert!(matches!(gate.logout(), Err(GateError::Closed)));
    drop(gate);
    server_rt.block_on(backend.shutdown());
}

#[test]
fn blocking_gate_can_be_dropped_inside_async_code() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let backend = server_rt.block_on(backend(Scheme::Http));
    let gate = BlockingAccessGate::spawn(config_for(&backend, Scheme::Http)).unwrap();
    // Dropping the last clone must not panic even where blocking is not allowed.
    server_rt.block_on(async move { drop(gate) });
}
