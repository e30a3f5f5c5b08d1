//! The rogue server against a plain rustls client, without the accessgate binaries: its
//! well-behaved flow completes a TLS 1.3 handshake and serves a response (so the rogue flows
//! differ only by the step they skip), and rustls refuses every rogue flow before sending a
//! byte of application data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use accessgate_tlskit::{Case, Flow, Report, RogueServer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Sends one request with a bearer token; returns the response bytes or the TLS/I/O error.
fn request(server: &RogueServer, trust_pem: &str) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(trust_pem.as_bytes()) {
        roots.add(c.expect("PEM")).expect("anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer at_secret\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => Ok(response),
        Err(e) if !response.is_empty() => Err(format!("after {} bytes: {e}", response.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// The report once `done` holds (the connection thread may still be finishing), at most 1 s.
fn settled(server: &RogueServer, done: impl Fn(&Report) -> bool) -> Report {
    let mut report = server.report();
    for _ in 0..100 {
        if done(&report) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        report = server.report();
    }
    report
}

#[test]
fn the_well_behaved_flow_completes_and_answers_a_grant() {
    let s = Case::ValidP256.scenario().expect("certificates");
    let server = RogueServer::start(Flow::WellBehaved, s.chain.clone(), &s.key_pkcs8).expect("server");
    let response = request(&server, &s.trust_pem).expect("handshake and response");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with(r#"{"has_access":true}"#), "{text}");
    let report = settled(&server, |r| r.responses == 1);
    assert_eq!(report.handshakes_completed, 1, "{report:?}");
    assert!(report.bearer_seen, "{report:?}");
    assert_eq!(report.responses, 1, "{report:?}");
}

#[test]
fn rustls_refuses_every_rogue_flow_before_any_application_data() {
    let cases = [
        (Flow::SkipCertificate, Case::ValidP256),
        (Flow::SkipCertificateVerify, Case::ValidP256),
        (Flow::CertificateVerifyFirst, Case::ValidP256),
        (Flow::WellBehaved, Case::Ed25519SignedLeaf),
    ];
    for (flow, case) in cases {
        let s = case.scenario().expect("certificates");
        let server = RogueServer::start(flow, s.chain.clone(), &s.key_pkcs8).expect("server");
        let err = request(&server, &s.trust_pem).expect_err("refused");
        // The connection ends with the client's alert, or a write into the closed socket.
        let report = settled(&server, |r| !r.alerts.is_empty() || !r.errors.is_empty());
        assert_eq!(report.server_hellos, 1, "{flow:?}/{case:?}: {report:?}");
        assert_eq!(report.handshakes_completed, 0, "{flow:?}/{case:?}: {report:?}");
        assert_eq!(report.application_bytes, 0, "{flow:?}/{case:?}: {report:?}");
        assert!(!report.bearer_seen, "{flow:?}/{case:?}: {report:?}");
        // rustls' own reason, e.g. "got Finished when expecting Certificate".
        assert!(
            err.contains("ertificate") || err.contains("expecting"),
            "{flow:?}/{case:?}: refused for another reason: {err}"
        );
    }
}
