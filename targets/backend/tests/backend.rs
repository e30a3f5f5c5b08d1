//! Integration tests of the reference backend over real loopback sockets (127.0.0.1 only).
//! Every test is bounded by a Tokio timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use accessgate_backend::{Backend, BackendConfig, Capacity, Control, Endpoint, Fault, TokenPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOUR: Duration = Duration::from_secs(3600);

/// Run a test body with a hard time limit.
async fn bounded<F: Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time limit");
}

async fn start() -> Backend {
    Backend::start(BackendConfig::default()).await.unwrap()
}

async fn start_tls() -> Backend {
    Backend::start(BackendConfig {
        https_port: Some(0),
        ..BackendConfig::default()
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn check_url(b: &Backend) -> String {
    format!("{}{}", b.http_url(), Backend::check_path())
}

fn token_url(b: &Backend) -> String {
    format!("{}{}", b.http_url(), Backend::token_path())
}

async fn check(c: &reqwest::Client, b: &Backend, token: Option<&str>) -> (u16, String) {
    let mut rq = c.get(check_url(b));
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn refresh(c: &reqwest::Client, b: &Backend, form: &str) -> (u16, serde_json::Value) {
    let r = c
        .post(token_url(b))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn refresh_form(rt: &str) -> String {
    format!("grant_type=refresh_token&refresh_token={rt}&client_id=accessgate")
}

/// Send raw bytes, read until the server closes; returns everything received.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")
        .unwrap();
    out
}

fn check_request(token: &str) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n",
        Backend::check_path()
    )
    .into_bytes()
}

/// Split a raw response at the end of its head.
fn split(resp: &[u8]) -> (String, Vec<u8>) {
    let pos = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of head");
    (
        String::from_utf8(resp[..pos + 2].to_vec()).unwrap(),
        resp[pos + 4..].to_vec(),
    )
}

#[tokio::test]
async fn grant_deny_and_unauthorized() {
    bounded(20, async {
        let b = start().await;
        let ctl = b.control();
        let c = client();
        let alice = ctl.issue_token("alice", HOUR);
        assert!(alice.access_token.starts_with("at_"));
        assert!(alice.refresh_token.starts_with("rt_"));
        assert_eq!(alice.access_token.len(), 35);
        assert_eq!(alice.expires_in_secs, 3600);

        assert_eq!(
            check(&c, &b, Some(&alice.access_token)).await,
            (200, r#"{"has_access":true}"#.to_string())
        );
        ctl.set_access("alice", false);
        assert_eq!(
            check(&c, &b, Some(&alice.access_token)).await,
            (200, r#"{"has_access":false}"#.to_string())
        );
        ctl.set_access("alice", true);
        assert_eq!(check(&c, &b, Some(&alice.access_token)).await.0, 200);

        // Missing, unknown, malformed.
        assert_eq!(check(&c, &b, None).await.0, 401);
        assert_eq!(check(&c, &b, Some("at_unknown")).await.0, 401);
        let r = c
            .get(check_url(&b))
            .header("Authorization", format!("Basic {}", alice.access_token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert!(r.headers().contains_key("www-authenticate"));

        // Denied before first token: set_access creates the user.
        ctl.set_access("bob", false);
        let bob = ctl.issue_token("bob", HOUR);
        assert_eq!(
            check(&c, &b, Some(&bob.access_token)).await.1,
            r#"{"has_access":false}"#
        );

        // Expired by hand and by time.
        ctl.expire_token(&alice.access_token);
        assert_eq!(check(&c, &b, Some(&alice.access_token)).await.0, 401);
        let short = ctl.issue_token("carol", Duration::from_millis(300));
        assert_eq!(check(&c, &b, Some(&short.access_token)).await.0, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(check(&c, &b, Some(&short.access_token)).await.0, 401);

        let counts = ctl.counts();
        assert_eq!(counts.get(Endpoint::Check, 200), 5);
        assert_eq!(counts.get(Endpoint::Check, 401), 5);
        assert_eq!(counts.endpoint_total(Endpoint::Check), 10);
        assert_eq!(counts.endpoint_total(Endpoint::Token), 0);
        ctl.reset_counts();
        assert_eq!(ctl.counts().total(), 0);
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn token_refresh_rotates_and_rejects() {
    bounded(20, async {
        let b = start().await;
        let ctl = b.control();
        let c = client();
        let first = ctl.issue_token("alice", Duration::from_secs(120));

        let (status, json) = refresh(&c, &b, &refresh_form(&first.refresh_token)).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["token_type"], "Bearer");
        assert_eq!(json["expires_in"], 120);
        let at = json["access_token"].as_str().unwrap().to_string();
        let rt = json["refresh_token"].as_str().unwrap().to_string();
        assert!(at.starts_with("at_") && at != first.access_token);
        assert!(rt.starts_with("rt_") && rt != first.refresh_token);
        assert_eq!(check(&c, &b, Some(&at)).await.0, 200);
        // The old access token stays valid until it expires.
        assert_eq!(check(&c, &b, Some(&first.access_token)).await.0, 200);

        // Rotation: the old refresh token is dead.
        let (status, json) = refresh(&c, &b, &refresh_form(&first.refresh_token)).await;
        assert_eq!((status, json["error"].as_str()), (400, Some("invalid_grant")));

        // The new one works once, then revoke the next.
        let (status, json) = refresh(&c, &b, &refresh_form(&rt)).await;
        assert_eq!(status, 200);
        let rt2 = json["refresh_token"].as_str().unwrap().to_string();
        ctl.revoke_refresh(&rt2);
        let (status, json) = refresh(&c, &b, &refresh_form(&rt2)).await;
        assert_eq!((status, json["error"].as_str()), (400, Some("invalid_grant")));
        let (status, json) = refresh(&c, &b, &refresh_form("rt_unknown")).await;
        assert_eq!((status, json["error"].as_str()), (400, Some("invalid_grant")));

        // Malformed forms.
        for form in [
            "",
            "grant_type=refresh_token",
            "grant_type=refresh_token&refresh_token=%zz&client_id=accessgate",
            "refresh_token=x&client_id=accessgate",
            "grant_type=refresh_token&refresh_token=x",
            "grant_type=refresh_token&grant_type=refresh_token&refresh_token=x&client_id=accessgate",
        ] {
            let (status, json) = refresh(&c, &b, form).await;
            assert_eq!(
                (status, json["error"].as_str()),
                (400, Some("invalid_request")),
                "{form}"
            );
        }
        let (status, json) =
            refresh(&c, &b, "grant_type=password&refresh_token=x&client_id=accessgate").await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        let other = ctl.issue_token("alice", HOUR);
        let form = format!(
            "grant_type=refresh_token&refresh_token={}&client_id=someone-else",
            other.refresh_token
        );
        let (status, json) = refresh(&c, &b, &form).await;
        assert_eq!((status, json["error"].as_str()), (401, Some("invalid_client")));
        // The refresh token survived the rejected attempt.
        assert_eq!(refresh(&c, &b, &refresh_form(&other.refresh_token)).await.0, 200);

        // Wrong method and unknown path.
        let r = c.get(token_url(&b)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405);
        let r = c.get(format!("{}/nope", b.http_url())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let counts = ctl.counts();
        assert_eq!(counts.get(Endpoint::Token, 200), 3);
        assert_eq!(counts.get(Endpoint::Token, 405), 1);
        assert_eq!(counts.other, 1);
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn keep_alive_and_pipelining() {
    bounded(20, async {
        let b = start().await;
        let t = b.control().issue_token("alice", HOUR);
        let mut s = TcpStream::connect(b.http_addr()).await.unwrap();
        let mut two = check_request(&t.access_token);
        two.extend(check_request("at_bad"));
        s.write_all(&two).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.windows(12).filter(|w| w == b"HTTP/1.1 401").count() == 0 {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Connection: keep-alive"));
        // Connection: close is honoured.
        let mut req = check_request(&t.access_token);
        req.truncate(req.len() - 2);
        req.extend_from_slice(b"Connection: close\r\n\r\n");
        let resp = raw_exchange(b.http_addr(), &req).await;
        let (head, body) = split(&resp);
        assert!(head.contains("Connection: close"));
        assert_eq!(body, br#"{"has_access":true}"#);
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn status_faults_and_latency() {
    bounded(20, async {
        let b = start().await;
        let ctl = b.control();
        let c = client();
        let t = ctl.issue_token("alice", HOUR);
        for (code, ra) in [(503, Some(7)), (429, Some(2)), (403, None), (500, None)] {
            ctl.set_fault(
                Endpoint::Check,
                Some(Fault::Status {
                    code,
                    retry_after: ra,
                }),
            );
            let r = c
                .get(check_url(&b))
                .bearer_auth(&t.access_token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), code);
            let got_ra = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u32>().unwrap());
            assert_eq!(got_ra, ra);
        }
        assert_eq!(
            ctl.fault(Endpoint::Check),
            Some(Fault::Status {
                code: 500,
                retry_after: None
            })
        );
        // Token endpoint unaffected by a check fault, and vice versa.
        assert_eq!(refresh(&c, &b, &refresh_form(&t.refresh_token)).await.0, 200);
        ctl.set_fault(Endpoint::Check, None);
        ctl.set_fault(
            Endpoint::Token,
            Some(Fault::Status {
                code: 502,
                retry_after: None,
            }),
        );
        assert_eq!(check(&c, &b, Some(&t.access_token)).await.0, 200);
        assert_eq!(refresh(&c, &b, &refresh_form("rt_x")).await.0, 502);
        ctl.set_fault(Endpoint::Token, None);

        ctl.set_latency(Endpoint::Check, Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(check(&c, &b, Some(&t.access_token)).await.0, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
        ctl.set_latency(Endpoint::Check, Duration::ZERO);
        let counts = ctl.counts();
        assert_eq!(counts.get(Endpoint::Check, 503), 1);
        assert_eq!(counts.get(Endpoint::Check, 429), 1);
        assert_eq!(counts.get(Endpoint::Token, 502), 1);
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn hang_never_answers() {
    bounded(20, async {
        let b = start().await;
        let ctl = b.control();
        let t = ctl.issue_token("alice", HOUR);
        ctl.set_fault(Endpoint::Check, Some(Fault::Hang));
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let err = c
            .get(check_url(&b))
            .bearer_auth(&t.access_token)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(ctl.counts().get(Endpoint::Check, 0), 1);

        // The connection is held open with nothing written...
        let mut s = TcpStream::connect(b.http_addr()).await.unwrap();
        s.write_all(&check_request(&t.access_token)).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf))
            .await
            .is_err());
        // ...until the server shuts down.
        b.shutdown().await;
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("hanging connection not closed at shutdown")
            .unwrap_or(0);
        assert_eq!(n, 0);
    })
    .await;
}

/// Expected (status line, header that must be present, body) of each hostile check body.
fn hostile_cases() -> Vec<(Fault, &'static str, Vec<u8>)> {
    vec![
        (
            Fault::WrongType,
            "Content-Length: 21",
            br#"{"has_access":"true"}"#.to_vec(),
        ),
        (
            Fault::NullValue,
            "Content-Length: 19",
            br#"{"has_access":null}"#.to_vec(),
        ),
        (
            Fault::MissingField,
            "Content-Length: 11",
            br#"{"other":1}"#.to_vec(),
        ),
        (
            Fault::DuplicateKey,
            "Content-Length: 38",
            br#"{"has_access":false,"has_access":true}"#.to_vec(),
        ),
        (
            Fault::TrailingGarbage,
            "Content-Length: 22",
            br#"{"has_access":true}xyz"#.to_vec(),
        ),
        (
            Fault::Truncated,
            "Content-Length: 100",
            br#"{"has_access":tr"#.to_vec(),
        ),
        (
            Fault::BrokenChunked,
            "Transfer-Encoding: chunked",
            b"13\r\n{\"has_access\":true}\r\nzz\r\n".to_vec(),
        ),
    ]
}

#[tokio::test]
async fn hostile_check_bodies_are_byte_exact() {
    bounded(30, async {
        let b = start().await;
        let ctl = b.control();
        let t = ctl.issue_token("alice", HOUR);
        for (fault, header, body) in hostile_cases() {
            ctl.set_fault(Endpoint::Check, Some(fault.clone()));
            let resp = raw_exchange(b.http_addr(), &check_request(&t.access_token)).await;
            let (head, got) = split(&resp);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{fault:?}: {head}");
            assert!(head.contains(header), "{fault:?}: {head}");
            assert!(head.contains("Connection: close"), "{fault:?}: {head}");
            assert_eq!(got, body, "{fault:?}: {}", String::from_utf8_lossy(&got));
            if fault == Fault::BrokenChunked {
                assert!(!head.contains("Content-Length"));
            }
        }

        ctl.set_fault(Endpoint::Check, Some(Fault::HtmlPortal));
        let resp = raw_exchange(b.http_addr(), &check_request(&t.access_token)).await;
        let (head, body) = split(&resp);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("Content-Type: text/html"));
        let html = String::from_utf8(body).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("Wi-Fi"));
        assert!(head.contains(&format!("Content-Length: {}", html.len())));

        ctl.set_fault(Endpoint::Check, Some(Fault::Oversized));
        let resp = raw_exchange(b.http_addr(), &check_request(&t.access_token)).await;
        let (head, body) = split(&resp);
        assert!(head.contains("Content-Length: 65536"), "{head}");
        assert_eq!(body.len(), 65536);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["has_access"], true);

        // A real client sees them as 200s with unusable bodies.
        let c = client();
        ctl.set_fault(Endpoint::Check, Some(Fault::Truncated));
        let r = c
            .get(check_url(&b))
            .bearer_auth(&t.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.bytes().await.is_err());
        ctl.set_fault(Endpoint::Check, Some(Fault::BrokenChunked));
        let r = c
            .get(check_url(&b))
            .bearer_auth(&t.access_token)
            .send()
            .await
            .unwrap();
        assert!(r.bytes().await.is_err());

        assert_eq!(ctl.counts().get(Endpoint::Check, 200), 11);
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn hostile_token_bodies() {
    bounded(20, async {
        let b = start().await;
        let ctl = b.control();
        let t = ctl.issue_token("alice", HOUR);
        let form = refresh_form(&t.refresh_token);
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            Backend::token_path(),
            form.len()
        );
        for (fault, expect) in [
            (
                Fault::WrongType,
                &br#"{"access_token":1,"refresh_token":true,"expires_in":"3600","token_type":"Bearer"}"#[..],
            ),
            (Fault::MissingField, br#"{"other":1}"#),
            (Fault::Truncated, br#"{"access_token":"#),
        ] {
            ctl.set_fault(Endpoint::Token, Some(fault.clone()));
            let resp = raw_exchange(b.http_addr(), req.as_bytes()).await;
            let (head, body) = split(&resp);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{fault:?}");
            assert_eq!(body, expect, "{fault:?}");
        }
        // Faults answer without processing: the refresh token was not consumed.
        ctl.set_fault(Endpoint::Token, None);
        let resp = raw_exchange(b.http_addr(), req.as_bytes()).await;
        assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let (_, body) = split(&resp);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["access_token"].as_str().unwrap().starts_with("at_"));
        b.shutdown().await;
    })
    .await;
}

async fn assert_refused(addr: SocketAddr) {
    let r = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .expect("connect neither succeeded nor failed");
    match r {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("connect to {addr} succeeded during an outage"),
    }
}

#[tokio::test]
async fn refused_closes_listeners_and_reopens_same_ports() {
    bounded(20, async {
        let b = start_tls().await;
        let ctl = b.control();
        let t = ctl.issue_token("alice", HOUR);
        let http = b.http_addr();
        let https = b.https_addr().unwrap();

        // An idle keep-alive connection opened before the outage.
        let mut idle = TcpStream::connect(http).await.unwrap();
        idle.write_all(&check_request(&t.access_token)).await.unwrap();
        let mut buf = [0u8; 1024];
        assert!(idle.read(&mut buf).await.unwrap() > 0);

        ctl.set_fault(Endpoint::Token, Some(Fault::Refused));
        assert_eq!(ctl.fault(Endpoint::Check), Some(Fault::Refused));
        assert_refused(http).await;
        assert_refused(https).await;
        // The open connection is closed without an answer.
        let n = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = idle.write_all(&check_request(&t.access_token)).await;
            idle.read(&mut buf).await.unwrap_or(0)
        })
        .await
        .expect("open connection not closed by the outage");
        assert_eq!(n, 0);
        // Still refused a bit later (the accept loop does not re-listen by itself).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_refused(http).await;

        // Clearing re-binds the same ports before set_fault returns.
        ctl.set_fault(Endpoint::Check, None);
        assert_eq!(ctl.fault(Endpoint::Check), None);
        assert_eq!(b.http_addr(), http);
        let resp = raw_exchange(http, &{
            let mut r = check_request(&t.access_token);
            r.truncate(r.len() - 2);
            r.extend_from_slice(b"Connection: close\r\n\r\n");
            r
        })
        .await;
        assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"));
        TcpStream::connect(https).await.unwrap();

        // And again: outage twice in a row works.
        ctl.set_fault(Endpoint::Check, Some(Fault::Refused));
        assert_refused(http).await;
        ctl.set_fault(Endpoint::Check, None);
        let c = client();
        assert_eq!(check(&c, &b, Some(&t.access_token)).await.0, 200);
        b.shutdown().await;
        assert_refused(http).await;
    })
    .await;
}

/// Sleep until just after the next whole second of backend uptime.
async fn align_to_second(ctl: &Control) {
    let into = ctl.uptime().subsec_millis() as u64;
    tokio::time::sleep(Duration::from_millis(1000 - into + 30)).await;
}

async fn check_with_retry_after(c: &reqwest::Client, b: &Backend, t: &TokenPair) -> (u16, Option<u32>) {
    let r = c
        .get(check_url(b))
        .bearer_auth(&t.access_token)
        .send()
        .await
        .unwrap();
    let ra = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (r.status().as_u16(), ra)
}

#[tokio::test]
async fn capacity_hands_out_retry_after_slots() {
    bounded(30, async {
        let b = start().await;
        let ctl = b.control();
        let c = client();
        let t = ctl.issue_token("alice", HOUR);
        // Warm the connection so the burst fits in one second.
        assert_eq!(check(&c, &b, Some(&t.access_token)).await.0, 200);

        // Retry on the (unlikely) case that a burst straddles a second boundary.
        let mut done = false;
        for _attempt in 0..3 {
            ctl.set_capacity(
                Endpoint::Check,
                Some(Capacity {
                    per_second: 2,
                    retry_after: true,
                }),
            );
            align_to_second(&ctl).await;
            let second = ctl.uptime().as_secs();
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(check_with_retry_after(&c, &b, &t).await);
            }
            if ctl.uptime().as_secs() != second {
                continue;
            }
            assert_eq!(
                got,
                vec![
                    (200, None),
                    (200, None),
                    (503, Some(1)),
                    (503, Some(1)),
                    (503, Some(2)),
                ]
            );
            // Next second: the two holders of slot +1 are admitted; a newcomer gets the
            // remaining slot of the second after.
            align_to_second(&ctl).await;
            let second = ctl.uptime().as_secs();
            let next: Vec<_> = [
                check_with_retry_after(&c, &b, &t).await,
                check_with_retry_after(&c, &b, &t).await,
                check_with_retry_after(&c, &b, &t).await,
                check_with_retry_after(&c, &b, &t).await,
            ]
            .to_vec();
            if ctl.uptime().as_secs() != second {
                continue;
            }
            assert_eq!(
                next,
                vec![(200, None), (200, None), (503, Some(1)), (503, Some(2))]
            );
            done = true;
            break;
        }
        assert!(done, "could not fit a burst into one second three times");
        ctl.set_capacity(Endpoint::Check, None);
        assert_eq!(check(&c, &b, Some(&t.access_token)).await.0, 200);
        // Capacity on check does not limit token.
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn capacity_bare_503() {
    bounded(30, async {
        let b = start().await;
        let ctl = b.control();
        let c = client();
        let t = ctl.issue_token("alice", HOUR);
        assert_eq!(check(&c, &b, Some(&t.access_token)).await.0, 200);
        let mut done = false;
        for _attempt in 0..3 {
            ctl.set_capacity(
                Endpoint::Check,
                Some(Capacity {
                    per_second: 1,
                    retry_after: false,
                }),
            );
            align_to_second(&ctl).await;
            let second = ctl.uptime().as_secs();
            let got = vec![
                check_with_retry_after(&c, &b, &t).await,
                check_with_retry_after(&c, &b, &t).await,
                check_with_retry_after(&c, &b, &t).await,
            ];
            if ctl.uptime().as_secs() != second {
                continue;
            }
            assert_eq!(got, vec![(200, None), (503, None), (503, None)]);
            done = true;
            break;
        }
        assert!(done);
        // Other endpoint unaffected.
        assert_eq!(refresh(&c, &b, &refresh_form(&t.refresh_token)).await.0, 200);
        b.shutdown().await;
    })
    .await;
}

fn tls_client(ca_pem: &str, https_addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve("localhost", https_addr)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_trusted_ca_grants() {
    bounded(20, async {
        let b = start_tls().await;
        let ctl = b.control();
        let t = ctl.issue_token("alice", HOUR);
        let pem = b.ca_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!b.ca_der().unwrap().is_empty());
        let url = b.https_url().unwrap();
        assert_eq!(
            url,
            format!("https://localhost:{}", b.https_addr().unwrap().port())
        );
        let c = tls_client(pem, b.https_addr().unwrap());
        let r = c
            .get(format!("{url}{}", Backend::check_path()))
            .bearer_auth(&t.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.text().await.unwrap(), r#"{"has_access":true}"#);
        let r = c
            .post(format!("{url}{}", Backend::token_path()))
            .body(refresh_form(&t.refresh_token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        // Hostile bodies work over TLS too.
        ctl.set_fault(Endpoint::Check, Some(Fault::WrongType));
        let r = c
            .get(format!("{url}{}", Backend::check_path()))
            .bearer_auth(&t.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), r#"{"has_access":"true"}"#);
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn https_offers_tls13_aes128_gcm_with_single_level_chain() {
    use rustls::pki_types::ServerName;
    use std::sync::Arc;
    bounded(20, async {
        let b = start_tls().await;
        let t = b.control().issue_token("alice", HOUR);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                b.ca_der().unwrap().to_vec(),
            ))
            .unwrap();
        // A client that offers nothing but TLS 1.3 with TLS13_AES_128_GCM_SHA256 (what the
        // device stack speaks).
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
            ..rustls::crypto::ring::default_provider()
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(b.https_addr().unwrap()).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        {
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
            assert_eq!(
                conn.negotiated_cipher_suite().unwrap().suite(),
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            );
            // Only the leaf is sent; it verified against the CA directly.
            assert_eq!(conn.peer_certificates().unwrap().len(), 1);
        }
        let mut req = check_request(&t.access_token);
        req.truncate(req.len() - 2);
        req.extend_from_slice(b"Connection: close\r\n\r\n");
        tls.write_all(&req).await.unwrap();
        let mut resp = Vec::new();
        let _ = tls.read_to_end(&mut resp).await;
        assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(resp.ends_with(br#"{"has_access":true}"#));
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn https_untrusted_ca_fails_and_server_survives() {
    bounded(20, async {
        let b = start_tls().await;
        let other = start_tls().await; // a different, freshly generated CA
        let t = b.control().issue_token("alice", HOUR);
        let url = format!("{}{}", b.https_url().unwrap(), Backend::check_path());

        let wrong = tls_client(other.ca_pem().unwrap(), b.https_addr().unwrap());
        let err = wrong
            .get(&url)
            .bearer_auth(&t.access_token)
            .send()
            .await
            .expect_err("a client trusting another CA must not get an answer");
        assert!(err.is_connect() || err.is_request(), "{err}");

        let no_roots = reqwest::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .resolve("localhost", b.https_addr().unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        assert!(no_roots.get(&url).send().await.is_err());

        // Plain HTTP spoken to the TLS port, and garbage: handshake failures only.
        let resp = raw_exchange(b.https_addr().unwrap(), &check_request(&t.access_token)).await;
        assert!(!resp.starts_with(b"HTTP/1.1 200"));

        // No request reached the endpoint; the server still serves trusting clients.
        assert_eq!(b.control().counts().total(), 0);
        let good = tls_client(b.ca_pem().unwrap(), b.https_addr().unwrap());
        let r = good.get(&url).bearer_auth(&t.access_token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        other.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_and_disconnects_do_not_hurt() {
    bounded(20, async {
        let b = start().await;
        let t = b.control().issue_token("alice", HOUR);
        let addr = b.http_addr();

        let resp = raw_exchange(addr, b"\x16\x03\x01\x00garbage\r\n\r\n").await;
        assert!(
            resp.starts_with(b"HTTP/1.1 400 "),
            "{}",
            String::from_utf8_lossy(&resp)
        );

        let big = format!(
            "POST {} HTTP/1.1\r\nContent-Length: 20000\r\n\r\n",
            Backend::token_path()
        );
        let resp = raw_exchange(addr, big.as_bytes()).await;
        assert!(resp.starts_with(b"HTTP/1.1 413 "));

        let mut huge_head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        huge_head.resize(17 * 1024, b'a');
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&huge_head).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(
            out.starts_with(b"HTTP/1.1 431 "),
            "{}",
            String::from_utf8_lossy(&out)
        );

        // Connect and vanish; send half a request and vanish.
        drop(TcpStream::connect(addr).await.unwrap());
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/code/inv").await.unwrap();
        drop(s);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /oauth/token HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc")
            .await
            .unwrap();
        drop(s);

        let c = client();
        assert_eq!(check(&c, &b, Some(&t.access_token)).await.0, 200);
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn control_surface_over_http() {
    bounded(20, async {
        let b = start().await;
        let c = client();
        let ctl_url = |q: &str| format!("{}/_control/{q}", b.http_url());
        let get = |q: String| {
            let c = c.clone();
            async move {
                let r = c.get(q).send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.text().await.unwrap())
            }
        };

        let (s, help) = get(ctl_url("help")).await;
        assert_eq!(s, 200);
        assert!(help.contains("/_control/fault"));

        let (s, body) = get(ctl_url("token?user=bob&expires_in=60")).await;
        assert_eq!(s, 200);
        let tok: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(tok["expires_in"], 60);
        let at = tok["access_token"].as_str().unwrap().to_string();
        let rt = tok["refresh_token"].as_str().unwrap().to_string();
        assert_eq!(check(&c, &b, Some(&at)).await.1, r#"{"has_access":true}"#);

        assert_eq!(get(ctl_url("access?user=bob&has_access=false")).await.0, 200);
        assert_eq!(check(&c, &b, Some(&at)).await.1, r#"{"has_access":false}"#);
        assert_eq!(b.control().access("bob"), Some(false));

        let (s, body) = get(ctl_url(
            "fault?endpoint=check&fault=status&code=503&retry_after=7",
        ))
        .await;
        assert_eq!((s, body.as_str()), (200, r#"{"ok":true}"#));
        let r = c.get(check_url(&b)).bearer_auth(&at).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers()["retry-after"], "7");

        // POST with a form body works too.
        let r = c
            .post(ctl_url("fault"))
            .body("endpoint=all&fault=none")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(check(&c, &b, Some(&at)).await.0, 200);

        // Timed fault clears itself: held for its `for_ms` (a timer never fires early), then
        // gone; waited for rather than slept past, so a late timer on a loaded machine is fine.
        let set_at = Instant::now();
        get(ctl_url("fault?endpoint=check&fault=html_portal&for_ms=1000")).await;
        assert_eq!(b.control().fault(Endpoint::Check), Some(Fault::HtmlPortal));
        let held = fault_cleared(&b, set_at).await;
        assert!(held >= Duration::from_millis(1000), "cleared after {held:?}");

        get(ctl_url(&format!("expire?access_token={at}"))).await;
        assert_eq!(check(&c, &b, Some(&at)).await.0, 401);
        get(ctl_url(&format!("revoke?refresh_token={rt}"))).await;
        assert_eq!(refresh(&c, &b, &refresh_form(&rt)).await.0, 400);

        get(ctl_url("latency?endpoint=check&ms=200")).await;
        let started = Instant::now();
        check(&c, &b, Some("x")).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        get(ctl_url("capacity?endpoint=token&per_second=5&retry_after=true")).await;
        get(ctl_url("clear")).await;
        let started = Instant::now();
        check(&c, &b, Some("x")).await;
        assert!(started.elapsed() < Duration::from_millis(200));

        let (s, body) = get(ctl_url("counts")).await;
        assert_eq!(s, 200);
        let counts: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(counts["check"]["by_status"]["503"], 1);
        assert_eq!(counts["check"]["by_status"]["401"], 3);
        assert_eq!(counts["token"]["by_status"]["400"], 1);
        assert_eq!(counts["total"], b.control().counts().total());
        get(ctl_url("reset_counts")).await;
        assert_eq!(b.control().counts().total(), 0);

        // Errors.
        assert_eq!(get(ctl_url("nope")).await.0, 400);
        assert_eq!(get(ctl_url("fault?endpoint=check&fault=bogus")).await.0, 400);
        assert_eq!(get(ctl_url("fault?endpoint=check&fault=status")).await.0, 400);
        assert_eq!(get(ctl_url("access?user=bob")).await.0, 400);

        // A refused outage set over HTTP must carry for_ms to be recoverable remotely.
        let set_at = Instant::now();
        get(ctl_url("fault?endpoint=all&fault=refused&for_ms=1000")).await;
        assert_refused(b.http_addr()).await;
        let held = fault_cleared(&b, set_at).await;
        assert!(held >= Duration::from_millis(1000), "reopened after {held:?}");
        let fresh = client();
        assert_eq!(check(&fresh, &b, Some("x")).await.0, 401);
        b.shutdown().await;
    })
    .await;
}

/// Waits (at most 10 s after `set_at`) until the check endpoint's fault is gone; returns how
/// long after `set_at` that was seen.
async fn fault_cleared(b: &Backend, set_at: Instant) -> Duration {
    while b.control().fault(Endpoint::Check).is_some() {
        assert!(
            set_at.elapsed() < Duration::from_secs(10),
            "a timed fault still set after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set_at.elapsed()
}

/// Issue 14 item 8: no control input panics a connection task. Every hostile query gets a
/// complete answer (200 or 400), and the server keeps serving; a huge `expires_in`
/// saturates the token's expiry instead of overflowing `now + ttl`.
#[tokio::test]
async fn hostile_control_inputs_never_panic() {
    bounded(30, async {
        let b = start().await;
        let c = client();
        let ctl = |q: &str| format!("{}/_control/{q}", b.http_url());
        let max64 = u64::MAX.to_string();
        let max32 = u32::MAX.to_string();
        let queries = [
            format!("token?user=u&expires_in={max64}"),
            format!("token?user=u&expires_in={max64}0"),
            "token?user=u&expires_in=-1".to_string(),
            "token?user=u&expires_in=".to_string(),
            "token?user=&expires_in=0".to_string(),
            "token?user=%FF".to_string(),
            format!("latency?endpoint=all&ms={max64}"),
            format!("fault?endpoint=all&fault=status&code=503&for_ms={max64}"),
            format!("fault?endpoint=check&fault=status&code=65535&retry_after={max32}"),
            "fault?endpoint=check&fault=status&code=0".to_string(),
            "fault?endpoint=check&fault=status&code=65536".to_string(),
            "fault?endpoint=nowhere&fault=hang".to_string(),
            "fault?endpoint=all".to_string(),
            format!("capacity?endpoint=all&per_second={max32}&retry_after=true"),
            "capacity?endpoint=all&per_second=1&retry_after=maybe".to_string(),
            format!("capacity?endpoint=check&per_second={max64}"),
            "access?user=u&has_access=2".to_string(),
            "expire?access_token=".to_string(),
            "revoke".to_string(),
            "counts?x=%zz".to_string(),
            "a/b/../c".to_string(),
        ];
        for q in &queries {
            let r = c.get(ctl(q)).send().await;
            let r = r.unwrap_or_else(|e| panic!("{q}: no answer ({e}): the task died"));
            let status = r.status().as_u16();
            assert!(matches!(status, 200 | 400), "{q}: {status}");
            assert_eq!(
                c.get(ctl("clear")).send().await.unwrap().status().as_u16(),
                200,
                "after {q}"
            );
        }
        // The saturated token works, and so does refreshing it.
        let r = c
            .get(ctl(&format!("token?user=max&expires_in={max64}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let tok: serde_json::Value = r.json().await.unwrap();
        assert_eq!(tok["expires_in"], u64::MAX);
        let at = tok["access_token"].as_str().unwrap().to_string();
        let rt = tok["refresh_token"].as_str().unwrap().to_string();
        assert_eq!(
            check(&c, &b, Some(&at)).await,
            (200, r#"{"has_access":true}"#.to_string())
        );
        let (s, body) = refresh(&c, &b, &refresh_form(&rt)).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["expires_in"], u64::MAX);
        // The library API saturates the same way.
        let pair = b.control().issue_token("lib", Duration::MAX);
        assert_eq!(check(&c, &b, Some(&pair.access_token)).await.0, 200);
        b.shutdown().await;
    })
    .await;
}

/// Figures for issue 14 item 8 (not an assertion on wall time: the O(1) property is pinned
/// by `state::tests::retry_after_admission_does_constant_work_per_request`). Prints the
/// time of five successive batches of 2,000 checks at 1/s with Retry-After slots; before
/// the fix each batch was slower than the last. `cargo test -p accessgate-backend --release
/// --test backend -- --ignored --nocapture capacity_batches`.
#[tokio::test]
#[ignore = "prints figures; run by hand"]
async fn capacity_batches_take_the_same_time() {
    let b = start().await;
    let c = client();
    b.control().set_capacity(
        Endpoint::Check,
        Some(Capacity {
            per_second: 1,
            retry_after: true,
        }),
    );
    for batch in 1..=5 {
        let started = Instant::now();
        for _ in 0..2_000 {
            check(&c, &b, Some("x")).await;
        }
        println!(
            "batch {batch}: 2,000 checks in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    b.shutdown().await;
}
