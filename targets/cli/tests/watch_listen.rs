//! `accessgate watch --listen`: the watched gate's status (JSON) and counters (Prometheus text)
//! scraped over HTTP by a real client (reqwest) while the session runs against the reference
//! backend; a transient fault shows up as a held grant with its failure detail (R4, R5, R13).

mod common;

use std::process::Stdio;
use std::time::Duration;

use accessgate_backend::{Endpoint, Fault};
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Every wait in this test ends by then.
const LIMIT: Duration = Duration::from_secs(20);

/// `GET base+path`: (status, content type, body).
async fn get(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.text().await.expect("body"))
}

async fn status(client: &reqwest::Client, base: &str) -> serde_json::Value {
    let (code, ct, body) = get(client, &format!("{base}/status")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ct, "application/json");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// Polls `/status` until `cond` holds; panics with the last status after [`LIMIT`].
async fn status_until(
    client: &reqwest::Client,
    base: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = tokio::time::Instant::now() + LIMIT;
    loop {
        let v = status(client, base).await;
        if cond(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "{what}: not reached; last /status: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample line `name` (with labels, exactly as printed) in a scrape.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: not a number ({e}) in:\n{text}"))
}

async fn metrics(client: &reqwest::Client, base: &str) -> String {
    let (code, ct, body) = get(client, &format!("{base}/metrics")).await;
    assert_eq!(code, 200, "{body}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content type {ct:?}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_listen_serves_status_and_metrics_to_a_scraper() {
    let backend = backend().await;
    let control = backend.control();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_accessgate"))
        .args([
            "watch",
            "--url",
            &backend.http_url(),
            "--issue-user",
            "alice",
            "--recheck-every",
            "1s",
            "--budget",
            "60s",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn accessgate watch");

    // The bound address (port 0 asked for) is announced on stderr.
    let mut err = BufReader::new(watch.stderr.take().expect("stderr")).lines();
    let base = tokio::time::timeout(LIMIT, async {
        while let Some(line) = err.next_line().await.expect("read stderr") {
            if let Some(url) = line.strip_prefix("accessgate: serving /status and /metrics on ") {
                return url.trim().to_string();
            }
        }
        panic!("watch ended without announcing its listen address");
    })
    .await
    .expect("listen address announced in time");
    assert!(
        base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
        "{base}"
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    // Granted by the server: the status says so in words, with when it happened.
    let v = status_until(&client, &base, "granted", |v| v["access"] == "granted").await;
    assert_eq!(v["cause"], "server_granted");
    assert_eq!(v["signed_in"], true);
    assert!(v["generation"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert_eq!(v["probing"], false);
    assert!(v["reverifying_until_ms"].is_null(), "{v}");
    assert!(v["last_failure"].is_null(), "{v}");
    let changed = v["access_changed_at_ms"]
        .as_u64()
        .expect("access change instant known");
    assert!(changed <= v["now_ms"].as_u64().expect("now_ms"), "{v}");

    let m = metrics(&client, &base).await;
    assert!(m.contains("# TYPE accessgate_attempts_total counter"), "{m}");
    assert!(sample(&m, "accessgate_attempts_total") >= 1.0, "{m}");
    assert!(sample(&m, "accessgate_grants_total") >= 1.0, "{m}");
    assert_eq!(sample(&m, "accessgate_access{state=\"granted\"}"), 1.0, "{m}");
    assert_eq!(sample(&m, "accessgate_access{state=\"denied\"}"), 0.0, "{m}");
    assert_eq!(sample(&m, "accessgate_signed_in"), 1.0, "{m}");
    assert_eq!(
        sample(&m, "accessgate_transient_failures_total{class=\"server_error\"}"),
        0.0,
        "{m}"
    );

    // A 503 outage: access is held (R4) while retries run to the deadline (R5), and the
    // status names the failure; the counters count it.
    control.set_fault(
        Endpoint::Check,
        Some(Fault::Status {
            code: 503,
            retry_after: None,
        }),
    );
    let v = status_until(&client, &base, "a 503 reported", |v| {
        v["last_failure"]["class"] == "server_error"
    })
    .await;
    assert_eq!(v["access"], "granted", "held through a transient failure: {v}");
    assert_eq!(v["last_failure"]["detail"], "HTTP 503", "{v}");
    assert!(v["reverifying_until_ms"].is_u64(), "{v}");
    assert_eq!(
        v["access_changed_at_ms"].as_u64(),
        Some(changed),
        "access did not change: {v}"
    );
    let m = metrics(&client, &base).await;
    assert!(
        sample(&m, "accessgate_transient_failures_total{class=\"server_error\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(sample(&m, "accessgate_reverifying"), 1.0, "{m}");
    assert_eq!(sample(&m, "accessgate_access{state=\"granted\"}"), 1.0, "{m}");

    // Only the two read-only endpoints exist.
    let (code, _, _) = get(&client, &format!("{base}/nope")).await;
    assert_eq!(code, 404);
    let post = client.post(format!("{base}/status")).send().await.expect("POST");
    assert_eq!(post.status().as_u16(), 405);

    // A malformed request gets a 400 and changes nothing; the server keeps answering.
    let raw = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"\x00\xffGARBAGE \r\n\r\n").await.expect("write");
        let mut buf = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        String::from_utf8_lossy(&buf).into_owned()
    };
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw:?}");
    assert_eq!(status(&client, &base).await["access"], "granted");

    control.set_fault(Endpoint::Check, None);
    let _ = watch.start_kill();
    let _ = tokio::time::timeout(LIMIT, watch.wait()).await;
    backend.shutdown().await;
}
