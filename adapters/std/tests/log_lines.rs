//! R13: what happens reaches the `log` facade on desktops. A failed check's event with its
//! detail, every access change with its cause, and the counters after it, are log lines an operator can read without
//! subscribing to anything. One logger per test binary, so this file holds the one test.

mod common;

use std::sync::Mutex;
use std::time::Duration as StdDuration;

use accessgate::Access;
use accessgate_backend::{Endpoint, Fault};
use common::*;

/// Keeps every log line as `LEVEL target: message`.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[tokio::test]
async fn failures_and_access_changes_reach_the_log_facade() {
    log::set_logger(&CAPTURE).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Debug);
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        h.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        );
        assert_eq!(h.sign_in().await.access, Access::Unknown);
        h.control.set_fault(Endpoint::Check, None);
        h.wait_for(StdDuration::from_secs(3), |s| s.status.access == Access::Granted)
            .await;
        h.gate.shutdown().await;
    })
    .await;
    let lines = CAPTURE.0.lock().unwrap().clone();
    let failed = lines
        .iter()
        .find(|l| l.contains("CheckFailed") && l.contains("Status(503)"))
        .unwrap_or_else(|| panic!("no failed check with its detail in the log: {lines:#?}"));
    assert!(failed.starts_with("DEBUG accessgate"), "{failed}");
    let granted = lines
        .iter()
        // ServerGranted, or Recovered on a machine so slow the budget ran out first.
        .find(|l| l.contains(" -> Granted (ServerGranted)") || l.contains(" -> Granted (Recovered)"))
        .unwrap_or_else(|| panic!("no access change with its cause in the log: {lines:#?}"));
    assert!(granted.starts_with("INFO accessgate"), "{granted}");
    // R13: the counters follow the access change, at info, every class by name.
    let counters = lines
        .iter()
        .rev()
        .find(|l| l.contains("counters: attempts "))
        .unwrap_or_else(|| panic!("no counters in the log: {lines:#?}"));
    assert!(counters.starts_with("INFO accessgate"), "{counters}");
    // At least the sign-in's 503 (a retry may have met it too on a slow machine).
    let server_errors = counters
        .split("server_error ")
        .nth(1)
        .and_then(|rest| rest.split([',', ')']).next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(server_errors.is_some_and(|n| n >= 1), "{counters}");
    assert!(counters.contains("grants 1"), "{counters}");
}
