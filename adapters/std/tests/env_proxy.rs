//! `GateClientConfig::proxy_from_env`: what a proxy named by `HTTP_PROXY` / `HTTPS_PROXY` /
//! `ALL_PROXY` sees. Off, the gate talks to its endpoints only. On (the default), a plain-http
//! endpoint's requests go through the proxy with the bearer token in them (the documented
//! limit: use https), while over https the proxy sees only `CONNECT host:port`: the token
//! travels inside TLS verified end to end (R14). The environment is the process's, so this
//! file holds one test.

mod common;
mod raw;

use std::time::Duration as StdDuration;

use accessgate::{Access, FailureDetail, Status, TransientClass};
use accessgate_std::{AccessGate, Tokens};
use common::{bounded, fast_session};
use raw::*;

async fn sign_in(base: &str, from_env: bool) -> Status {
    let mut cfg = config(base, fast_session());
    cfg.proxy_from_env = from_env;
    let gate = AccessGate::spawn(cfg).expect("gate spawns");
    let status = gate
        .sign_in(Tokens::new(ACCESS, REFRESH, StdDuration::from_secs(3600)))
        .await
        .expect("sign_in");
    gate.shutdown().await;
    status
}

fn set_proxies(vars: &[&str], url: &str) {
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ] {
        std::env::remove_var(var);
    }
    for var in vars {
        std::env::set_var(var, url);
    }
}

#[tokio::test]
async fn environment_proxies_are_used_only_when_asked_and_see_no_token_over_https() {
    bounded(async {
        let target = Raw::start(|_: &Seen| vec![w(response("HTTP/1.1 200 OK", &[], GRANT))]).await;
        let proxy = Raw::start(|s: &Seen| match s.bytes.starts_with(b"CONNECT ") {
            true => vec![w(response("HTTP/1.1 403 Forbidden", &[], b"")), Step::Close],
            false => vec![w(response("HTTP/1.1 502 Bad Gateway", &[], b""))],
        })
        .await;
        let http = target.url();
        let https = format!("https://{}", target.addr);
        let through_proxy = |n: usize| proxy.seen().len() == n;

        // Off: straight to the endpoint, whatever the environment says.
        set_proxies(&["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"], &proxy.url());
        assert_eq!(sign_in(&http, false).await.access, Access::Granted);
        assert_eq!((proxy.accepts(), target.seen().len()), (0, 1));

        // On, plain http: the proxy gets the request, bearer token included.
        let status = sign_in(&http, true).await;
        assert_ne!(status.access, Access::Granted);
        let f = status.last_failure.expect("a failure");
        assert_eq!(
            (f.class, f.detail),
            (TransientClass::ServerError, FailureDetail::Status(502))
        );
        assert!(through_proxy(1), "{:#?}", proxy.seen());
        let via = proxy.seen()[0].text();
        assert!(via.starts_with(&format!("GET {http}/")), "{via}");
        assert_eq!(
            proxy.seen()[0].header("authorization"),
            Some(format!("Bearer {ACCESS}"))
        );

        // On, https: a CONNECT naming the endpoint, nothing else; the refusal is a transient
        // connect failure.
        let status = sign_in(&https, true).await;
        assert_ne!(status.access, Access::Granted);
        assert_eq!(
            status.last_failure.expect("a failure").class,
            TransientClass::Connect
        );
        let connects: Vec<String> = proxy.seen()[1..].iter().map(Seen::text).collect();
        assert!(!connects.is_empty(), "the https check went through the proxy");
        for c in &connects {
            assert!(c.starts_with(&format!("CONNECT {} ", target.addr)), "{c}");
            assert!(!c.contains(ACCESS) && !c.contains(REFRESH), "{c}");
        }

        // ALL_PROXY alone is enough, NO_PROXY exempts a host.
        let before = proxy.seen().len();
        set_proxies(&["ALL_PROXY"], &proxy.url());
        assert_ne!(sign_in(&http, true).await.access, Access::Granted);
        assert!(proxy.seen().len() > before, "ALL_PROXY is honoured");
        set_proxies(&["HTTP_PROXY", "ALL_PROXY"], &proxy.url());
        std::env::set_var("NO_PROXY", "127.0.0.1");
        let before = proxy.seen().len();
        assert_eq!(sign_in(&http, true).await.access, Access::Granted);
        assert_eq!(proxy.seen().len(), before, "NO_PROXY is honoured");
        set_proxies(&[], "");
    })
    .await;
}
