//! R13 failure detail on the desktop path: each transport, TLS and HTTP failure the
//! reference backend can produce reaches the `CheckFailed` event (and `Status::last_failure`)
//! with the detail that names it, and a failed token refresh reaches the `RefreshFailed` event
//! (and `Status::last_failure`) the same way.

mod common;

use std::time::Duration as StdDuration;

use accessgate::{
    write_event_json, Event, FailureDetail, Instant, NetFailure, SessionEvent, Status, TlsFailure,
    TransientClass,
};
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

/// Signs in with tokens that expire 1.5 s from now, so the refresh is due 0.5 s in (skew 1 s)
/// after the first check granted; returns the first `RefreshFailed`'s class and detail, its
/// JSON line, and the status once it records that failure (R13).
async fn first_refresh_failure(h: &mut Harness) -> (TransientClass, FailureDetail, String, Status) {
    let signed_in = h
        .gate
        .sign_in(h.tokens(StdDuration::from_millis(1500)))
        .await
        .expect("sign_in");
    assert_eq!(
        signed_in.access,
        accessgate::Access::Granted,
        "the check endpoint is fine"
    );
    let e = h
        .rec
        .next(StdDuration::from_secs(3), |e| {
            matches!(e, SessionEvent::RefreshFailed { .. })
        })
        .await;
    let SessionEvent::RefreshFailed { class, detail, .. } = e.event else {
        unreachable!("matched above")
    };
    let mut line = String::new();
    write_event_json(&mut line, &e.event, e.at, Instant::ZERO).unwrap();
    let snap = h
        .wait_for(StdDuration::from_secs(1), |s| {
            s.status.last_failure.is_some_and(|l| l.detail == detail)
        })
        .await;
    let last = snap.status.last_failure.expect("recorded");
    assert_eq!(last.class, class, "the status names the refresh's failure");
    assert!(
        snap.status.signed_in,
        "a transient refresh failure keeps the session"
    );
    (class, detail, line, snap.status)
}

#[tokio::test]
async fn a_refresh_answered_503_says_http_503_in_the_event_and_the_status() {
    bounded(async {
        let mut h = Harness::new(Scheme::Http).await;
        h.control.set_fault(
            Endpoint::Token,
            Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        );
        let (class, detail, line, _) = first_refresh_failure(&mut h).await;
        assert_eq!(
            (class, detail),
            (TransientClass::ServerError, FailureDetail::Status(503))
        );
        assert!(
            line.contains(r#""event":"refresh_failed","class":"server_error","detail":"HTTP 503""#),
            "{line}"
        );
        h.gate.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_token_endpoint_with_an_unknown_issuer_says_so_in_the_event_and_the_status() {
    bounded(async {
        // Checks go over plain HTTP; the token endpoint is an HTTPS backend whose generated
        // CA the gate does not trust (no anchors at all): only the refresh fails (R14).
        let other = backend(Scheme::Https).await;
        let token_url = GateClientConfig::new(&other.https_url().expect("https")).token_url;
        let mut h = Harness::with(Scheme::Http, |c| {
            c.token_url = token_url;
            c.extra_ca_pem = None;
            c.system_roots = false;
        })
        .await;
        let (class, detail, line, status) = first_refresh_failure(&mut h).await;
        assert_eq!(
            (class, detail),
            (TransientClass::Tls, FailureDetail::Tls(TlsFailure::UnknownIssuer))
        );
        assert!(
            line.contains(r#""detail":"certificate: unknown issuer""#),
            "{line}"
        );
        assert_eq!(
            status.access,
            accessgate::Access::Granted,
            "held through the failure (R4)"
        );
        h.gate.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_token_endpoint_says_connection_refused() {
    bounded(async {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let token_url = GateClientConfig::new(&format!("http://{closed}")).token_url;
        let mut h = Harness::with(Scheme::Http, |c| c.token_url = token_url).await;
        let (class, detail, _, status) = first_refresh_failure(&mut h).await;
        assert_eq!(
            (class, detail),
            (TransientClass::Connect, FailureDetail::Net(NetFailure::Refused))
        );
        assert_eq!(
            status.last_failure.map(|l| l.detail.to_string()).as_deref(),
            Some("connection refused")
        );
        h.gate.shutdown().await;
    })
    .await;
}
