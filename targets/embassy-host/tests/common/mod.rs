//! What the device CLI's test binaries share: running the built binary, bounded in time,
//! checking its exit code, and the reference backend's CA as a PEM file.
#![allow(dead_code)] // each test binary uses a part of it

use std::process::Output;
use std::time::Duration;

use accessgate_backend::Backend;

pub const BIN: &str = env!("CARGO_BIN_EXE_accessgate-embassy");
/// No run may take longer than this, whatever happens.
pub const RUN_BOUND: Duration = Duration::from_secs(30);

/// Runs the binary with `args` (no token from the environment, warnings only on stderr).
pub async fn run(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("ACCESSGATE_TOKEN")
        .env_remove("ACCESSGATE_REFRESH_TOKEN")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(RUN_BOUND, child)
        .await
        .unwrap_or_else(|_| panic!("{BIN} {args:?} did not finish within {RUN_BOUND:?}"))
        .expect("the binary runs")
}

/// The exit code (the run exited, it was not killed).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

#[track_caller]
pub fn assert_exit(out: &Output, want: i32) {
    assert_eq!(
        code(out),
        want,
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The backend's CA, written to a temporary PEM file.
pub fn ca_file(backend: &Backend) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut f, backend.ca_pem().expect("https backend").as_bytes()).expect("write CA");
    f
}

/// A temporary file's path, for a flag.
pub fn path(f: &tempfile::NamedTempFile) -> String {
    f.path().display().to_string()
}
