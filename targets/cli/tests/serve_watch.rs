//! `accessgate serve` as a separate process, steered through its control surface, with
//! `accessgate check` and `accessgate watch` against it; Ctrl-C (SIGINT) ends both cleanly.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_accessgate"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn accessgate")
}

fn interrupt(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(ok.success());
}

/// Reads lines until one contains `needle`; returns every line read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{needle:?} not printed; got:\n{}",
        seen.join("\n")
    );
    seen
}

async fn wait_exit(mut child: Child) -> (i32, String) {
    let mut rest = String::new();
    let status = tokio::time::timeout(Duration::from_secs(20), async {
        if let Some(mut out) = child.stdout.take() {
            use tokio::io::AsyncReadExt;
            let _ = out.read_to_string(&mut rest).await;
        }
        child.wait().await.expect("wait")
    })
    .await
    .expect("exits within 20 s after SIGINT");
    (status.code().expect("exit code"), rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_check_watch_and_ctrl_c() {
    let ca = temp_file("serve-ca.pem", "");
    let ca = ca.to_str().expect("utf-8 path").to_string();
    let mut serve = spawn(&[
        "serve",
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--write-ca",
        &ca,
        "--user",
        "alice",
    ]);
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let head = read_until(&mut lines, "serving until Ctrl-C").await;
    let field = |prefix: &str| {
        head.iter()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", head.join("\n")))
    };
    let http = field("http ");
    let https = field("https ");
    let token = field("alice: access_token=");
    assert!(
        head.iter().any(|l| l.contains("/_control/fault?")),
        "control help printed"
    );
    assert!(std::fs::read_to_string(&ca)
        .expect("CA written")
        .contains("BEGIN CERTIFICATE"));

    // check over HTTPS with the CA serve wrote.
    let url = format!("{https}{CHECK}");
    let out = accessgate(
        &["check", "--url", &url, "--token", &token, "--ca", &ca, "--quiet"],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));

    // watch with a token issued through the control surface, re-checking every second (the
    // floor of --recheck-every).
    let mut watch = spawn(&[
        "watch",
        "--url",
        &https,
        "--ca",
        &ca,
        "--issue-user",
        "bob",
        "--token-lifetime",
        "4s",
        "--refresh-skew",
        "1s",
        "--recheck-every",
        "1s",
    ]);
    let mut wlines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    read_until(&mut wlines, "unknown -> granted (server_granted)").await;
    // Deny bob on the server (via the control surface, over plain HTTP): the next re-check sees it.
    let deny = accessgate_control(&http, "/_control/access?user=bob&has_access=false").await;
    assert!(deny.contains("\"ok\":true"), "{deny}");
    read_until(&mut wlines, "granted -> denied (server_denied)").await;
    // The token is refreshed 1 s before its 4 s expiry.
    read_until(&mut wlines, "new token").await;
    interrupt(&watch);
    watch.stdout = None;
    let status = tokio::time::timeout(Duration::from_secs(20), watch.wait())
        .await
        .expect("watch exits after SIGINT")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "watch: Ctrl-C is a clean exit");

    // A rejected token ends the watch by itself, with exit 3.
    let out = accessgate(
        &[
            "watch",
            "--url",
            &http,
            "--token",
            "at_bogus",
            "--refresh-token",
            "rt_bogus",
        ],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("session ended (unauthorized)"),
        "{}",
        stdout(&out)
    );

    // serve stops on Ctrl-C and reports what it saw.
    serve.stdout = Some(lines.into_inner().into_inner());
    interrupt(&serve);
    let (code, rest) = wait_exit(serve).await;
    assert_eq!(code, 0, "serve: Ctrl-C is a clean exit");
    assert!(rest.contains("stopping; requests seen"), "{rest}");
}

/// GET a control-surface path over plain HTTP with a bare TCP request.
async fn accessgate_control(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    buf
}
