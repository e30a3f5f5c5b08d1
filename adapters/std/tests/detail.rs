//! R13 failure detail on the desktop path: each transport, TLS and HTTP failure the
//! reference backend can produce reaches the `CheckFailed` event (and `Status::last_failure`)
//! with the detail that names it.

mod common;

use std::time::Duration as StdDuration;

use accessgate::{Event, FailureDetail, NetFailure, SessionEvent, TlsFailure, TransientClass};
use accessgate_backend::{Endpoint, Fault};
use accessgate_std::{AccessGate, GateClientConfig, Tokens};
use common::*;

/// The (class, detail) of every CheckFailed event seen so far.
fn failures(rec: &mut Recorder) -> Vec<(TransientClass, FailureDetail)> {
    rec.poll();
    rec.seen
        .iter()
        .filter_map(|e| match e.event {
            SessionEvent::Gate(Event::CheckFailed { class, detail, .. }) => Some((class, detail)),
            _ => None,
        })
        .collect()
}

/// Signs in against a backend with `fault` on the check endpoint; returns the first failure.
async fn first_failure(scheme: Scheme, fault: Fault) -> (TransientClass, FailureDetail) {
    let mut h = Harness::new(scheme).await;
    h.control.set_fault(Endpoint::Check, Some(fault.clone()));
    let status = h.sign_in().await;
    let got = failures(&mut h.rec);
    let first = *got.first().unwrap_or_else(|| panic!("{fault:?}: no CheckFailed"));
    let last = status.last_failure.expect("Status::last_failure is set (R13)");
    assert_eq!((last.class, last.detail), first, "{fault:?}");
    h.gate.shutdown().await;
    first
}

#[tokio::test]
async fn http_statuses_and_broken_responses_are_named() {
    bounded(async {
        let net = FailureDetail::Net;
        let cases = [
            (
                Fault::Status {
                    code: 503,
                    retry_after: None,
                },
                TransientClass::ServerError,
                vec![FailureDetail::Status(503)],
            ),
            (
                Fault::Status {
                    code: 404,
                    retry_after: None,
                },
                TransientClass::OtherStatus,
                vec![FailureDetail::Status(404)],
            ),
            (
                Fault::Truncated,
                TransientClass::Io,
                vec![net(NetFailure::Truncated)],
            ),
            (
                Fault::BrokenChunked,
                TransientClass::Io,
                vec![net(NetFailure::BadFraming)],
            ),
            (
                Fault::Hang,
                TransientClass::Timeout,
                vec![net(NetFailure::Timeout)],
            ),
        ];
        for (fault, class, details) in cases {
            let (c, d) = first_failure(Scheme::Http, fault.clone()).await;
            assert_eq!(c, class, "{fault:?}: {d}");
            assert!(
                details.contains(&d),
                "{fault:?}: got {d:?} ({d}), want one of {details:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn refused_port_says_connection_refused() {
    bounded(async {
        let b = backend(Scheme::Http).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut cfg = config_for(&b, Scheme::Http);
        cfg.check_url = GateClientConfig::new(&format!("http://{closed}")).check_url;
        let gate = AccessGate::spawn(cfg).unwrap();
        let mut rec = Recorder::new(&gate);
        let status = gate
            .sign_in(Tokens::new("at_1", "rt_1", StdDuration::from_secs(60)))
            .await
            .unwrap();
        let first = failures(&mut rec)[0];
        assert_eq!(
            first,
            (TransientClass::Connect, FailureDetail::Net(NetFailure::Refused))
        );
        assert_eq!(first.1.to_string(), "connection refused");
        assert_eq!(status.last_failure.map(|l| l.detail), Some(first.1));
        gate.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn tls_without_the_ca_says_unknown_issuer() {
    bounded(async {
        let mut h = Harness::with(Scheme::Https, |c| c.extra_ca_pem = None).await;
        h.sign_in().await;
        let first = failures(&mut h.rec)[0];
        assert_eq!(
            first,
            (TransientClass::Tls, FailureDetail::Tls(TlsFailure::UnknownIssuer))
        );
        assert!(first.1.to_string().contains("unknown issuer"), "{}", first.1);
        // Plain HTTP spoken to by a TLS client: the server's answer is not a handshake.
        let b = backend(Scheme::Http).await;
        let mut cfg = config_for(&b, Scheme::Http);
        cfg.check_url = GateClientConfig::new(&format!("https://{}", b.http_addr())).check_url;
        let gate = AccessGate::spawn(cfg).unwrap();
        let mut rec = Recorder::new(&gate);
        gate.sign_in(Tokens::new("at_1", "rt_1", StdDuration::from_secs(60)))
            .await
            .unwrap();
        let (class, detail) = failures(&mut rec)[0];
        assert_eq!(class, TransientClass::Tls);
        assert!(
            matches!(
                detail,
                FailureDetail::Tls(TlsFailure::UnexpectedMessage | TlsFailure::HandshakeFailure)
            ),
            "{detail:?}"
        );
        gate.shutdown().await;
    })
    .await;
}
