//! Issue 14, items 3, 5 and 6 on the device path: flag values that used to panic (exit 101)
//! or were silently ignored are usage errors (exit 64) whose message names the flag.

/// A loopback port nothing listens on.
const NOWHERE: &str = "http://127.0.0.1:1/api/code/invites/check-access/";

mod common;
use common::run;

/// `check --url NOWHERE --token t EXTRA` exits 64 with every needle on stderr.
async fn usage(extra: &[&str], needles: &[&str]) {
    let mut args = vec!["check", "--url", NOWHERE, "--token", "at_1"];
    args.extend_from_slice(extra);
    let out = run(&args).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_durations_are_usage_errors_not_panics() {
    usage(&["--budget", "18446744073709551615s"], &["--budget", "too long"]).await;
    usage(&["--budget", "1000000years"], &["--budget", "too long"]).await;
    usage(&["--timeout", "18446744073709551615s"], &["--timeout"]).await;
    usage(&["--final-window", "1000000years"], &["--final-window"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_is_validated_for_http_urls_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello, not a certificate\n").expect("write");
    for ca in [&missing, &dir.path().to_path_buf(), &not_pem] {
        usage(&["--ca", &ca.display().to_string()], &["--ca"]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn error_messages_say_which_flag_and_what_is_wrong() {
    let out = run(&["check", "--url", "localhost:8080/api/", "--token", "t"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("--url") && err.contains("no scheme") && err.contains("http://localhost:8080/api/"),
        "{err}"
    );
    usage(
        &["--retry-spread", "100s", "--final-window", "20s"],
        &["--retry-spread 1m 40s", "--final-window 20s"],
    )
    .await;
    usage(
        &["--timeout", "1ns", "--budget", "2ns"],
        &["--timeout", "too short"],
    )
    .await;
    usage(&["--budget", "90"], &["--budget", "no unit"]).await;
    usage(&["--retries", "0"], &["--retries 0", "at least 1"]).await;
    usage(&["--retries", "9"], &["--retries 9", "at most 8"]).await;
    usage(&["--token", "a b"], &["--token"]).await;
    usage(&["--token", ""], &["--token"]).await;
}
