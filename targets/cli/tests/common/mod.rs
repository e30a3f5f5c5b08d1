//! Helpers shared by the CLI's integration tests: run the built `accessgate` binary with a
//! time limit, start a reference backend, write temporary files.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use accessgate_backend::{Backend, BackendConfig, Control};

/// Path of the check endpoint.
pub const CHECK: &str = "/api/code/invites/check-access/";

/// Runs `accessgate ARGS`, killing it if it outlives `limit` (the test then fails).
pub async fn accessgate(args: &[&str], limit: Duration) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_accessgate"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("ACCESSGATE_TOKEN")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, run).await {
        Ok(out) => out.expect("spawn accessgate"),
        Err(_) => panic!("accessgate {args:?} did not finish within {limit:?}"),
    }
}

/// The exit code (panics on death by signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A reference backend with HTTP and HTTPS on ephemeral ports.
pub async fn backend() -> Backend {
    Backend::start(BackendConfig {
        https_port: Some(0),
        ..BackendConfig::default()
    })
    .await
    .expect("backend starts")
}

/// A token for `user`, valid for an hour.
pub fn token(control: &Control, user: &str) -> String {
    control.issue_token(user, Duration::from_secs(3600)).access_token
}

/// A file in the temp directory, unique to this process and call, with `contents`.
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("accessgate-cli-test-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// `http://127.0.0.1:PORT/api/...` of a backend.
pub fn http_check_url(b: &Backend) -> String {
    format!("{}{CHECK}", b.http_url())
}

/// `https://localhost:PORT/api/...` of a backend.
pub fn https_check_url(b: &Backend) -> String {
    format!("{}{CHECK}", b.https_url().expect("https listener"))
}
