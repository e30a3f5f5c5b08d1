//! `--url` / `--token-url` on the device path: hostile or malformed URLs are usage errors
//! (exit 64) naming the flag and the problem, before anything is sent; the accepted forms
//! that nourl's split got wrong (IPv6 literals, a query, an upper-case or trailing-dot host
//! over TLS) make valid requests over real loopback sockets, to a raw listener that records
//! the bytes and to the reference backend.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use accessgate_backend::{Backend, BackendConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{assert_exit, ca_file, path, run};

const GOOD: &str = "http://127.0.0.1:1/api/code/invites/check-access/";

/// `check` with `url` as --url (or as --token-url), dry run: exit 64, and the message.
async fn refused(url: &str, token_lane: bool) -> String {
    let mut args = vec!["check", "--dry-run", "--token", "at_1"];
    if token_lane {
        args.extend([
            "--url",
            GOOD,
            "--token-url",
            url,
            "--refresh-token",
            "rt_1",
            "--expires-in",
            "30s",
        ]);
    } else {
        args.extend(["--url", url]);
    }
    let out = run(&args).await;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{url:?}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_urls_are_usage_errors_naming_the_flag_and_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("http://127.0.0.1:1/check\r\nX-Evil: 1", "control character"),
        (
            "http://127.0.0.1:1/check HTTP/1.1\r\n\r\nGET /admin",
            "control character",
        ),
        ("http://127.0.0.1:1/a b", "space"),
        ("http://127.0.0.1:1/caf\u{e9}", "non-ASCII"),
        ("http://b\u{fc}cher.test/check", "punycode"),
        ("http://127.0.0.1:1/check#frag", "#fragment"),
        ("http://127.0.0.1:1#frag", "#fragment"),
        ("http://127.0.0.1:0/check", "1 to 65535"),
        ("http://[fe80::1%1]:8080/check", "zone ID"),
        ("http://127.1/check", "IPv4"),
        ("http://127.0.0.1:1/a%zz", "percent-encoded"),
        ("http://127.0.0.1:1/a|b", "percent-encoded"),
    ];
    for &(url, needle) in cases {
        for (token_lane, flag) in [(false, "--url"), (true, "--token-url")] {
            let err = refused(url, token_lane).await;
            assert!(
                err.contains(flag) && err.contains(needle),
                "{url:?}: {needle:?} not in {err}"
            );
            // The URL is echoed quoted: a CR/LF shows as an escape, never as a line break.
            assert!(!err.trim_end().contains(['\r', '\n']), "{url:?}: {err:?}");
        }
    }
    // Credentials in the URL are refused and not echoed back.
    for (token_lane, flag) in [(false, "--url"), (true, "--token-url")] {
        let err = refused("http://kiosk:s3cret@127.0.0.1:1/check", token_lane).await;
        assert!(err.contains(flag) && err.contains("user:password@"), "{err}");
        assert!(!err.contains("s3cret"), "the password is not echoed: {err}");
    }
}

/// A one-shot HTTP server on `[::1]`: records the first request head, answers a grant.
async fn recording_listener() -> (SocketAddr, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0))
        .await
        .expect("bind [::1]");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("a connection");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the end of the head");
            head.extend_from_slice(&buf[..n]);
        }
        let body = br#"{"has_access": true}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        sock.write_all(reply.as_bytes()).await.expect("write");
        sock.write_all(body).await.expect("write");
        String::from_utf8(head).expect("ASCII head")
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv6_literal_gets_a_bracketed_host_header_on_the_wire() {
    let (addr, task) = recording_listener().await;
    let port = addr.port();
    let url = format!("http://[::1]:{port}/check?device=k%2F1&x=a+b");
    let out = run(&["check", "--url", &url, "--token", "at_1", "--quiet"]).await;
    assert_exit(&out, 0);
    let head = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("request recorded")
        .expect("listener task");
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "GET /check?device=k%2F1&x=a+b HTTP/1.1", "{head}");
    // RFC 9110 7.2: `Host: [::1]:PORT` (nourl's split wrote `Host: ::1:PORT`).
    assert_eq!(lines[1], format!("Host: [::1]:{port}"), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_and_query_urls_grant_against_the_reference_backend_over_http_and_https() {
    let b = Backend::start(BackendConfig {
        bind: IpAddr::V6(Ipv6Addr::LOCALHOST),
        https_port: Some(0),
        ..BackendConfig::default()
    })
    .await
    .expect("backend on [::1]");
    let t = b.control().issue_token("v6", Duration::from_secs(3600));
    let ca_pem = ca_file(&b);
    let ca = path(&ca_pem);
    let http = format!("{}{}?device=k%2F1", b.http_url(), Backend::check_path());
    assert!(http.starts_with("http://[::1]:"), "{http}");
    let out = run(&["check", "--url", &http, "--token", &t.access_token, "--quiet"]).await;
    assert_exit(&out, 0);
    // The certificate's iPAddress SAN ::1 matches the bracketed literal (R14), with a query.
    let https = format!(
        "https://[::1]:{}{}?x=1",
        b.https_addr().expect("https").port(),
        Backend::check_path()
    );
    let https_check: [&str; 8] = [
        "check",
        "--url",
        &https,
        "--token",
        &t.access_token,
        "--ca",
        &ca,
        "--quiet",
    ];
    let out = run(&https_check).await;
    assert_exit(&out, 0);
    // And a denial still comes through the same URL: the query did not change the endpoint.
    b.control().set_access("v6", false);
    let out = run(&https_check).await;
    assert_exit(&out, 1);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upper_case_and_trailing_dot_hosts_verify_over_tls() {
    let b = Backend::start(BackendConfig {
        https_port: Some(0),
        ..BackendConfig::default()
    })
    .await
    .expect("backend");
    let t = b.control().issue_token("case", Duration::from_secs(3600));
    let ca_pem = ca_file(&b);
    let ca = path(&ca_pem);
    let port = b.https_addr().expect("https").port();
    for host in ["LOCALHOST", "LocalHost", "localhost."] {
        let url = format!("HTTPS://{host}:{port}{}", Backend::check_path());
        let out = run(&[
            "check",
            "--url",
            &url,
            "--token",
            &t.access_token,
            "--ca",
            &ca,
            "--quiet",
        ])
        .await;
        assert_exit(&out, 0);
    }
    b.shutdown().await;
}
