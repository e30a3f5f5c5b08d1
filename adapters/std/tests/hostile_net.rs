//! The network path against a server (or a network) that the attacker controls, over loopback
//! raw sockets: redirects, compression, broken framing, `Retry-After`, and keep-alive reuse.
//! Each answer ends as one transient failure (R4) with the detail that names it (R13), within
//! the attempt timeout, never a grant (R1), and no token goes anywhere but the configured
//! endpoint.

mod common;
mod raw;

use std::io::Write as _;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use accessgate::{Access, BodyError, Event, FailureDetail, NetFailure, SessionEvent, Status, TransientClass};
use accessgate_std::{AccessGate, Tokens};
use common::{bounded, fast_session, ms_between, ATTEMPT_TIMEOUT};
use raw::*;

fn tokens(expires_in: StdDuration) -> Tokens {
    Tokens::new(ACCESS, REFRESH, expires_in)
}

/// Signs in against `server` (both endpoints), returns the status after the first check and
/// how long the sign-in took.
async fn first_check(server: &Raw) -> (Status, StdDuration) {
    let gate = AccessGate::spawn(config(&server.url(), fast_session())).expect("gate spawns");
    let t0 = StdInstant::now();
    let status = gate
        .sign_in(tokens(StdDuration::from_secs(3600)))
        .await
        .expect("sign_in");
    let took = t0.elapsed();
    gate.shutdown().await;
    (status, took)
}

/// What is wrong with the first check against `server`, if anything: it must end as the one
/// transient failure `want`, within the attempt timeout (700 ms of slack), never granted.
async fn one_transient_failure(
    name: &str,
    server: &Raw,
    want: (TransientClass, FailureDetail),
) -> Vec<String> {
    let (status, took) = first_check(server).await;
    let got = status.last_failure.map(|f| (f.class, f.detail));
    let mut wrong = Vec::new();
    if status.access == Access::Granted || got != Some(want) {
        wrong.push(format!("{name}: {:?}, {got:?}, want {want:?}", status.access));
    }
    if took > ATTEMPT_TIMEOUT + StdDuration::from_millis(700) {
        wrong.push(format!("{name}: took {took:?}"));
    }
    wrong
}

fn failure(status: &Status) -> (TransientClass, FailureDetail) {
    let f = status
        .last_failure
        .unwrap_or_else(|| panic!("no failure: {status:?}"));
    (f.class, f.detail)
}

const NET: fn(NetFailure) -> FailureDetail = FailureDetail::Net;

/// R4/R13 + R1: every broken or hostile framing of an answer that would grant if read
/// leniently ends as one transient failure with a detail naming it, within the attempt
/// timeout; none grants. (The device's `wire.rs` refuses the same cases.)
#[tokio::test]
async fn hostile_framing_is_one_transient_failure_within_the_attempt_timeout() {
    bounded(async {
        let ok = "HTTP/1.1 200 OK";
        let chunked = |body: &[u8]| {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            r.extend_from_slice(body);
            r
        };
        let mut huge_head_line = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        huge_head_line.resize(huge_head_line.len() + 1024 * 1024, b'a');
        huge_head_line.extend_from_slice(b"\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}");
        let mut header_flood = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..10_000 {
            header_flood.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        header_flood.extend_from_slice(b"Content-Length: 19\r\n\r\n{\"has_access\":true}");
        let mut huge_extension = chunked(b"13;x=");
        huge_extension.resize(huge_extension.len() + 1024 * 1024, b'a');
        huge_extension.extend_from_slice(b"\r\n{\"has_access\":true}\r\n0\r\n\r\n");
        let drip: Vec<Step> = std::iter::once(w(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n"))
            .chain(GRANT.iter().flat_map(|b| [Step::Sleep(StdDuration::from_millis(100)), w([*b])]))
            .collect();
        let endless_interim: Vec<Step> = (0..2000)
            .flat_map(|_| [w(b"HTTP/1.1 100 Continue\r\n\r\n"), Step::Sleep(StdDuration::from_millis(1))])
            .collect();
        let io = TransientClass::Io;
        let timeout = (TransientClass::Timeout, NET(NetFailure::Timeout));
        let bad_framing = (io, NET(NetFailure::BadFraming));
        let cases: Vec<(&str, Vec<Step>, (TransientClass, FailureDetail))> = vec![
            // HTTP/0.9: a bare body, no status line.
            ("http/0.9 body", vec![w(GRANT), Step::Close], bad_framing),
            ("garbage status line", vec![w(b"HTTP/1.1 2OO OK\r\n\r\n{\"has_access\":true}"), Step::Close], bad_framing),
            ("not http", vec![w(b"SSH-2.0-OpenSSH\r\n\r\n"), Step::Close], bad_framing),
            ("HTTP/2 status line", vec![w(response("HTTP/2 200", &[], GRANT)), Step::Close], bad_framing),
            ("HTTP/2.0 status line", vec![w(response("HTTP/2.0 200 OK", &[], GRANT)), Step::Close], bad_framing),
            // An h2c upgrade the client never asked for.
            (
                "101 switching to h2c",
                vec![
                    w(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"),
                    w(response(ok, &[], GRANT)),
                    Step::Close,
                ],
                bad_framing,
            ),
            ("head never ends", vec![w(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n"), Step::Close], (io, NET(NetFailure::Closed))),
            ("head never ends, connection held", vec![w(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n"), Step::Hold], timeout),
            ("obs-fold header", vec![w(response(ok, &["X-A: 1", "  folded"], GRANT)), Step::Close], bad_framing),
            ("1 MiB header line", vec![w(&huge_head_line), Step::Close], (io, NET(NetFailure::HeadTooLarge))),
            ("10,000 headers", vec![w(&header_flood), Step::Close], (io, NET(NetFailure::HeadTooLarge))),
            (
                "conflicting Content-Lengths",
                vec![w(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\nContent-Length: 20\r\n\r\n{\"has_access\":true}"), Step::Close],
                bad_framing,
            ),
            ("signed Content-Length", vec![w(b"HTTP/1.1 200 OK\r\nContent-Length: +19\r\n\r\n{\"has_access\":true}"), Step::Close], bad_framing),
            (
                "Content-Length longer than the body",
                vec![w(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{\"has_access\":true}"), Step::Close],
                (io, NET(NetFailure::Truncated)),
            ),
            (
                "Content-Length shorter than the body",
                vec![w(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"has_access\":true}"), Step::Close],
                (TransientClass::InvalidBody, FailureDetail::Body(BodyError::Malformed)),
            ),
            (
                "Content-Length and chunked",
                vec![
                    w(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n\r\n"),
                    Step::Close,
                ],
                bad_framing,
            ),
            ("coding other than chunked", vec![w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{\"has_access\":true}"), Step::Close], bad_framing),
            (
                "chunked not the last coding",
                vec![w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n\r\n"), Step::Close],
                bad_framing,
            ),
            ("non-hex chunk size", vec![w(chunked(b"zz\r\n{\"has_access\":true}\r\n0\r\n\r\n")), Step::Close], bad_framing),
            ("chunk size overflowing u64", vec![w(chunked(b"fffffffffffffffffffff\r\n{\"has_access\":true}\r\n0\r\n\r\n")), Step::Close], bad_framing),
            ("empty chunk-size line", vec![w(chunked(b"13\r\n{\"has_access\":true}\r\n\r\n")), Step::Close], bad_framing),
            ("chunk data without CRLF", vec![w(chunked(b"13\r\n{\"has_access\":true}XX0\r\n\r\n")), Step::Close], bad_framing),
            ("chunk-size line of 1 MiB", vec![w(&huge_extension), Step::Close], bad_framing),
            ("chunk shorter than announced", vec![w(chunked(b"14\r\n{\"has_access\":true}")), Step::Close], (io, NET(NetFailure::Truncated))),
            ("no last chunk", vec![w(chunked(b"13\r\n{\"has_access\":true}\r\n")), Step::Close], (io, NET(NetFailure::Truncated))),
            // A 4 GiB chunk announced, 2 KiB sent: the body is refused as oversized at
            // max_body + 1 bytes, without waiting for (or buffering) the rest.
            ("4 GiB chunk", vec![w(chunked(b"100000000\r\n")), w([b' '; 2048]), Step::Hold], (TransientClass::InvalidBody, FailureDetail::Body(BodyError::TooLarge))),
            ("body dripped past the attempt timeout", drip, timeout),
            ("interim responses for ever", endless_interim, timeout),
            ("silence after the request", vec![Step::Hold], timeout),
            ("closed without a byte", vec![Step::Close], (io, NET(NetFailure::Closed))),
            // An HTTP/2 server's first frame (an empty SETTINGS) where a status line belongs.
            ("h2 SETTINGS frame", vec![w(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), Step::Close], bad_framing),
        ];
        // Every case runs; the mismatches are reported together.
        let mut wrong = Vec::new();
        for (name, steps, want) in cases {
            let server = Raw::start(move |_: &Seen| steps.clone()).await;
            wrong.extend(one_transient_failure(name, &server, want).await);
        }
        // A server that accepts and never reads the request (it fits the socket buffers).
        let deaf = Raw::unread(vec![Step::Hold]).await;
        wrong.extend(one_transient_failure("never reads", &deaf, timeout).await);
        assert!(wrong.is_empty(), "{wrong:#?}");
    })
    .await;
}

/// What hyper reads like the device does (httparse): a valid answer after interim `1xx`
/// responses, and a status line without a reason phrase, grant as a plain 200 would.
#[tokio::test]
async fn interim_responses_and_a_missing_reason_phrase_are_still_http() {
    bounded(async {
        for (name, answer) in [
            (
                "100 and 103 before the answer",
                [
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".to_vec(),
                    response("HTTP/1.1 200 OK", &[], GRANT),
                ]
                .concat(),
            ),
            ("no reason phrase", response("HTTP/1.1 200 ", &[], GRANT)),
        ] {
            let server = Raw::start(move |_: &Seen| vec![w(&answer)]).await;
            let (status, _) = first_check(&server).await;
            assert_eq!(status.access, Access::Granted, "{name}: {status:?}");
        }
    })
    .await;
}

/// Waits (at most 3 s) for the first event `pick` maps to a value.
async fn next_event<T>(
    rx: &mut tokio::sync::broadcast::Receiver<accessgate_std::TimedEvent>,
    mut pick: impl FnMut(&accessgate_std::TimedEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(StdDuration::from_secs(3), async {
        loop {
            let e = rx.recv().await.expect("gate events");
            if let Some(v) = pick(&e) {
                return v;
            }
        }
    })
    .await
    .expect("the event within 3 s")
}

fn refresh_failed(e: &accessgate_std::TimedEvent) -> Option<(TransientClass, FailureDetail)> {
    match e.event {
        SessionEvent::RefreshFailed { class, detail, .. } => Some((class, detail)),
        _ => None,
    }
}

/// A token endpoint's valid answer, for a lenient client to take.
const NEW_TOKENS: &[u8] =
    br#"{"access_token":"at_NEW_c3","refresh_token":"rt_NEW_d4","expires_in":3600,"token_type":"Bearer"}"#;

/// R4/R13 and the tokens: a redirect (301/302/303/307/308) from the check or the token
/// endpoint, to another port, with userinfo, scheme-relative or to https, is not followed: the
/// check is transient with the status as its detail, the refresh fails transiently the same
/// way, and the redirect target never sees a connection, so neither the bearer token nor the
/// refresh form (a 307/308 would re-send it) reaches it.
#[tokio::test]
async fn redirects_are_not_followed_and_no_token_reaches_their_target() {
    bounded(async {
        let target = Raw::start(|s: &Seen| {
            let body = if s.is_post() { NEW_TOKENS } else { GRANT };
            vec![w(response("HTTP/1.1 200 OK", &[], body))]
        })
        .await;
        let port = target.addr.port();
        let locations = [
            format!("{}/check", target.url()),
            format!("http://kiosk:pw@127.0.0.1:{port}/check"),
            format!("//127.0.0.1:{port}/check"),
            format!("https://127.0.0.1:{port}/check"),
        ];
        for code in [301u16, 302, 303, 307, 308] {
            for location in &locations {
                let header = format!("Location: {location}");
                let origin = Raw::start(move |_: &Seen| {
                    vec![w(response(&format!("HTTP/1.1 {code} Moved"), &[&header], b""))]
                })
                .await;
                let gate = AccessGate::spawn(config(&origin.url(), fast_session())).expect("gate spawns");
                let mut events = gate.events();
                // Expiring within the refresh skew (1 s): the refresh starts at once (R11).
                let status = gate
                    .sign_in(tokens(StdDuration::from_secs(1)))
                    .await
                    .expect("sign_in");
                let want = (TransientClass::OtherStatus, FailureDetail::Status(code));
                assert_ne!(status.access, Access::Granted, "{code} {location}");
                assert_eq!(failure(&status), want, "{code} {location}: the check");
                assert_eq!(
                    next_event(&mut events, refresh_failed).await,
                    want,
                    "{code} {location}: the refresh"
                );
                gate.shutdown().await;
                let seen = origin.seen();
                assert!(seen.iter().any(|s| !s.is_post() && s.text().contains(ACCESS)));
                assert!(seen.iter().any(|s| s.is_post() && s.text().contains(REFRESH)));
            }
        }
        assert_eq!(target.accepts(), 0, "a redirect target was contacted");
    })
    .await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("deflate");
    e.finish().expect("deflate")
}

/// R1, bounded memory, one behaviour on every platform: the gate asks for no content coding
/// (no `Accept-Encoding`, even when another crate turns on reqwest's `gzip`/`deflate`, as this
/// test binary does), and decodes none: a compressed grant is a malformed body, a compressed
/// token answer is no token, and a gzip bomb is read raw and refused at `max_body + 1`
/// bytes.
#[tokio::test]
async fn compressed_answers_are_neither_asked_for_nor_decoded() {
    bounded(async {
        let mut bomb_plain = GRANT.to_vec();
        bomb_plain.resize(16 * 1024 * 1024, b' ');
        let bomb = gzip(&bomb_plain);
        assert!(bomb.len() > 1025 && bomb.len() < 64 * 1024, "{}", bomb.len());
        let malformed = (
            TransientClass::InvalidBody,
            FailureDetail::Body(BodyError::Malformed),
        );
        let too_large = (
            TransientClass::InvalidBody,
            FailureDetail::Body(BodyError::TooLarge),
        );
        for (coding, body, want) in [
            ("gzip", gzip(GRANT), malformed),
            ("deflate", zlib(GRANT), malformed),
            ("gzip", bomb, too_large),
        ] {
            let token_answer = match coding {
                "gzip" => gzip(NEW_TOKENS),
                _ => zlib(NEW_TOKENS),
            };
            let header = format!("Content-Encoding: {coding}");
            let server = Raw::start(move |s: &Seen| {
                let body = if s.is_post() { &token_answer } else { &body };
                vec![w(response("HTTP/1.1 200 OK", &[&header], body))]
            })
            .await;
            let gate = AccessGate::spawn(config(&server.url(), fast_session())).expect("gate spawns");
            let mut events = gate.events();
            let status = gate
                .sign_in(tokens(StdDuration::from_secs(1)))
                .await
                .expect("sign_in");
            assert_ne!(status.access, Access::Granted, "{coding}");
            assert_eq!(failure(&status), want, "{coding}");
            let (class, _) = next_event(&mut events, refresh_failed).await;
            assert_eq!(class, TransientClass::InvalidBody, "{coding}: the token answer");
            gate.shutdown().await;
            let seen = server.seen();
            assert!(seen.iter().any(|s| s.is_post()) && seen.iter().any(|s| !s.is_post()));
            for s in &seen {
                assert_eq!(s.header("accept-encoding"), None, "{}", s.text());
            }
        }
    })
    .await;
}

/// R6: `Retry-After` on a 429 or 503 is delay-seconds only, floored at 1 s and capped at the
/// probe period (5 s here); anything else (negative, fractional, an HTTP-date, too long, on
/// another status) leaves the drawn delay (the first of 7 slices of the 1 s spread). A header
/// sent twice counts by its last value, as on the device (`wire.rs`).
#[tokio::test]
async fn retry_after_is_delay_seconds_floored_and_capped() {
    bounded(async {
        let mut session = fast_session();
        session.gate.probe.period = accessgate::Duration::from_secs(5);
        let drawn = None;
        let cases: &[(u16, &[&str], Option<i64>)] = &[
            (503, &["Retry-After: 2"], Some(2000)),
            (429, &["Retry-After: 2"], Some(2000)),
            (503, &["Retry-After:  3 "], Some(3000)),
            (503, &["Retry-After: 0"], Some(1000)),
            (503, &["Retry-After: 86400"], Some(5000)),
            (503, &["Retry-After: 9999999999"], Some(5000)),
            (503, &["Retry-After: 99999999999"], drawn),
            (503, &["Retry-After: -1"], drawn),
            (503, &["Retry-After: 1.5"], drawn),
            (503, &["Retry-After: soon"], drawn),
            (503, &["Retry-After: 0x10"], drawn),
            (503, &["Retry-After:"], drawn),
            (503, &["Retry-After: Wed, 21 Oct 2015 07:28:00 GMT"], drawn),
            (500, &["Retry-After: 2"], drawn),
            (408, &["Retry-After: 2"], drawn),
            (503, &["Retry-After: 2", "Retry-After: 3"], Some(3000)),
            (503, &["Retry-After: 3", "Retry-After: soon"], drawn),
        ];
        let mut wrong = Vec::new();
        for &(code, lines, want) in cases {
            let headers: Vec<String> = lines.iter().map(|h| h.to_string()).collect();
            let server = Raw::start(move |_: &Seen| {
                let hs: Vec<&str> = headers.iter().map(String::as_str).collect();
                vec![w(response(&format!("HTTP/1.1 {code} X"), &hs, b""))]
            })
            .await;
            let gate = AccessGate::spawn(config(&server.url(), session)).expect("gate spawns");
            let mut events = gate.events();
            gate.sign_in(tokens(StdDuration::from_secs(3600)))
                .await
                .expect("sign_in");
            let (at, next) = next_event(&mut events, |e| match e.event {
                SessionEvent::Gate(Event::CheckFailed {
                    next_attempt: Some(next),
                    ..
                }) => Some((e.at, next)),
                _ => None,
            })
            .await;
            gate.shutdown().await;
            let gap = ms_between(at, next);
            let fine = match want {
                Some(ms) => gap == ms,
                None => (0..=143).contains(&gap),
            };
            if !fine {
                wrong.push(format!("{code} {lines:?}: {gap} ms, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    })
    .await;
}

/// A second answer queued behind the first on a keep-alive connection (sent with it, or while
/// the connection idles in the pool) is never taken as the answer to the next request: the
/// next check goes out and gets its own answer (here 503), so a grant planted earlier cannot
/// answer a later check (R1, R10).
#[tokio::test]
async fn an_answer_queued_behind_another_never_answers_the_next_request() {
    bounded(async {
        for late in [false, true] {
            let n = std::sync::atomic::AtomicUsize::new(0);
            let server = Raw::start(move |_: &Seen| {
                if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                    return vec![w(response("HTTP/1.1 503 Busy", &[], b""))];
                }
                let deny = w(response("HTTP/1.1 200 OK", &[], br#"{"has_access":false}"#));
                let planted = w(response("HTTP/1.1 200 OK", &[], GRANT));
                match late {
                    false => vec![deny, planted],
                    true => vec![deny, Step::Sleep(StdDuration::from_millis(20)), planted],
                }
            })
            .await;
            let gate = AccessGate::spawn(config(&server.url(), fast_session())).expect("gate spawns");
            let status = gate
                .sign_in(tokens(StdDuration::from_secs(3600)))
                .await
                .expect("sign_in");
            assert_eq!(status.access, Access::Denied, "late {late}");
            tokio::time::sleep(StdDuration::from_millis(100)).await;
            gate.recheck().await.expect("recheck");
            let status = gate.status();
            gate.shutdown().await;
            assert_eq!(status.access, Access::Denied, "late {late}: {status:?}");
            assert_eq!(
                failure(&status),
                (TransientClass::ServerError, FailureDetail::Status(503)),
                "late {late}"
            );
            assert_eq!(
                server.seen().len(),
                2,
                "late {late}: the re-check reached the server"
            );
            assert_eq!(server.accepts(), 2, "late {late}: on a new connection");
        }
    })
    .await;
}

/// After a logout, and after a refresh, a pooled keep-alive connection carries only the
/// current session's token: nothing of the ended session (access or refresh token) is sent on
/// it, and the token endpoint never gets the bearer token.
#[tokio::test]
async fn a_reused_connection_carries_only_the_current_sessions_tokens() {
    bounded(async {
        let server = Raw::start(|s: &Seen| {
            let body = if s.is_post() { NEW_TOKENS } else { GRANT };
            vec![w(response("HTTP/1.1 200 OK", &[], body))]
        })
        .await;
        let gate = AccessGate::spawn(config(&server.url(), fast_session())).expect("gate spawns");
        let mut events = gate.events();
        let first = gate
            .sign_in(tokens(StdDuration::from_secs(3600)))
            .await
            .expect("sign_in");
        assert_eq!(first.access, Access::Granted);
        gate.logout().await.expect("logout");
        // Expiring within the skew: refreshed at once, then checked with the new token.
        let second = gate
            .sign_in(Tokens::new("at_B_5e1f", "rt_B_9a0c", StdDuration::from_secs(1)))
            .await
            .expect("second sign_in");
        assert_eq!(second.access, Access::Granted);
        next_event(&mut events, |e| {
            matches!(e.event, SessionEvent::Refreshed { .. }).then_some(())
        })
        .await;
        let deadline = StdInstant::now() + StdDuration::from_secs(3);
        while !server.seen().iter().any(|s| s.text().contains("at_NEW_c3")) {
            assert!(StdInstant::now() < deadline, "{:#?}", server.seen());
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        gate.shutdown().await;
        let seen = server.seen();
        assert!(seen[0].text().contains(ACCESS));
        assert_eq!(seen[1].conn, seen[0].conn, "the pooled connection was reused");
        for s in &seen[1..] {
            let t = s.text();
            assert!(!t.contains(ACCESS) && !t.contains(REFRESH), "{t}");
        }
        for s in seen.iter().filter(|s| s.is_post()) {
            assert_eq!(s.header("authorization"), None, "{}", s.text());
            assert!(s.text().contains("refresh_token=rt_B_9a0c"), "{}", s.text());
        }
        let bearers: Vec<String> = seen.iter().filter_map(|s| s.header("authorization")).collect();
        assert_eq!(
            bearers,
            [
                format!("Bearer {ACCESS}"),
                "Bearer at_B_5e1f".to_string(),
                "Bearer at_NEW_c3".to_string()
            ],
            "{seen:#?}"
        );
    })
    .await;
}

/// A TLS server (rustls, `scenario`'s chain) answering every request with `answer`, on a
/// thread of its own, for at most 16 connections; what it read comes back on the receiver.
fn tls_server(
    scenario: &accessgate_tlskit::Scenario,
    answer: Vec<u8>,
) -> (u16, std::sync::mpsc::Receiver<String>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::io::Read as _;
    let chain = scenario
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(scenario.key_pkcs8.clone()));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    let config = std::sync::Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(16) {
            let Ok(tcp) = tcp else { return };
            let _ = tcp.set_read_timeout(Some(StdDuration::from_secs(5)));
            let conn = rustls::ServerConnection::new(config.clone()).expect("server connection");
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The head is enough: it says which request this is.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = tls.write_all(&answer).and_then(|()| tls.flush());
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tx.send(String::from_utf8_lossy(&request).into_owned());
        }
    });
    (port, rx)
}

/// R14 and the tokens across schemes: an https endpoint (verified) that redirects the check and
/// the refresh to plain http gets the tokens (inside TLS), and the http target never gets a
/// connection: no downgrade carries a token into the clear.
#[tokio::test]
async fn a_redirect_from_https_to_http_carries_no_token() {
    bounded(async {
        let target = Raw::start(|_: &Seen| vec![w(response("HTTP/1.1 200 OK", &[], GRANT))]).await;
        let scenario = accessgate_tlskit::Case::ValidP256
            .scenario()
            .expect("certificates generate");
        for code in [302u16, 307, 308] {
            let location = format!("Location: {}/api/code/invites/check-access/", target.url());
            let answer = response(&format!("HTTP/1.1 {code} Moved"), &[&location], b"");
            let (port, requests) = tls_server(&scenario, answer);
            let mut cfg = config(&scenario.url(port, ""), fast_session());
            cfg.extra_ca_pem = Some(scenario.trust_pem.clone());
            let gate = AccessGate::spawn(cfg).expect("gate spawns");
            let mut events = gate.events();
            let status = gate
                .sign_in(tokens(StdDuration::from_secs(1)))
                .await
                .expect("sign_in");
            let want = (TransientClass::OtherStatus, FailureDetail::Status(code));
            assert_eq!(failure(&status), want, "{code}: the check");
            assert_eq!(
                next_event(&mut events, refresh_failed).await,
                want,
                "{code}: the refresh"
            );
            gate.shutdown().await;
            // The check and the refresh reached the https endpoint (its thread reports each
            // after answering it).
            let got: Vec<String> = (0..2)
                .filter_map(|_| requests.recv_timeout(StdDuration::from_secs(3)).ok())
                .collect();
            assert!(
                got.iter().any(|r| r.contains(&format!("Bearer {ACCESS}"))),
                "{got:#?}"
            );
            assert!(got.iter().any(|r| r.starts_with("POST")), "{got:#?}");
        }
        assert_eq!(target.accepts(), 0, "the http target was contacted");
    })
    .await;
}

/// R11 + R13: the token endpoint's answer is framed as strictly as a check's: a valid token
/// answer under a transfer coding the device refuses (hyper would read it until the
/// connection closes), or with `Transfer-Encoding` beside `Content-Length`, is bad framing,
/// and no token is taken from it.
#[tokio::test]
async fn a_token_answer_in_broken_framing_is_no_token() {
    bounded(async {
        let mut chunked_too = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            NEW_TOKENS.len()
        )
        .into_bytes();
        chunked_too.extend_from_slice(NEW_TOKENS);
        chunked_too.extend_from_slice(b"\r\n0\r\n\r\n");
        let coded = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".as_slice(),
            NEW_TOKENS,
        ]
        .concat();
        for (name, answer) in [
            ("Transfer-Encoding: gzip", coded),
            ("chunked and Content-Length", chunked_too),
        ] {
            let server = Raw::start(move |s: &Seen| match s.is_post() {
                true => vec![w(&answer), Step::Close],
                false => vec![w(response("HTTP/1.1 200 OK", &[], GRANT))],
            })
            .await;
            let gate = AccessGate::spawn(config(&server.url(), fast_session())).expect("gate spawns");
            let mut events = gate.events();
            gate.sign_in(tokens(StdDuration::from_secs(1)))
                .await
                .expect("sign_in");
            let failed = next_event(&mut events, |e| match e.event {
                SessionEvent::Refreshed { .. } => Some(None),
                SessionEvent::RefreshFailed { class, detail, .. } => Some(Some((class, detail))),
                _ => None,
            })
            .await;
            gate.shutdown().await;
            assert_eq!(
                failed,
                Some((TransientClass::Io, NET(NetFailure::BadFraming))),
                "{name}"
            );
        }
    })
    .await;
}

/// A keep-alive connection idle for more than 2 s is not reused (http.rs, `POOL_IDLE`): after
/// a laptop wakes, its first check must not go out on a connection from before the night.
/// Back-to-back requests still share one (`a_reused_connection_carries_...` above).
#[tokio::test]
async fn a_connection_idle_for_seconds_is_not_reused() {
    bounded(async {
        let server = Raw::start(|_: &Seen| vec![w(response("HTTP/1.1 200 OK", &[], GRANT))]).await;
        let gate = AccessGate::spawn(config(&server.url(), fast_session())).expect("gate spawns");
        let status = gate
            .sign_in(tokens(StdDuration::from_secs(3600)))
            .await
            .expect("sign_in");
        assert_eq!(status.access, Access::Granted);
        // Past the rate limit, well inside the pool's idle time: the same connection.
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        gate.recheck().await.expect("recheck");
        tokio::time::sleep(StdDuration::from_millis(2_500)).await;
        gate.recheck().await.expect("recheck");
        gate.shutdown().await;
        let conns: Vec<usize> = server.seen().iter().map(|s| s.conn).collect();
        assert_eq!(conns.len(), 3, "{conns:?}");
        assert_eq!(conns[1], conns[0], "back to back: reused");
        assert_ne!(conns[2], conns[1], "idle 2.5 s: a new connection");
    })
    .await;
}
