//! What the defmt log of the QEMU scenario (targets/firmware-scenario) must show an operator,
//! per R13: every access change with its cause, transient failures with their class and
//! detail, and the counters (attempts, transient failures by class, stale results, fail-closed
//! events, recoveries, logouts), which must agree with what the app read from the plain struct.
//!
//! Only the gate's own frames count as its log: frames with a level from the `accessgate` and
//! `accessgate_embassy` crates. The scenario's lines are `println` frames (no level); they say
//! similar things and must not satisfy an expectation about the library.

use std::fmt;

/// A frame's level (`None` on the [`Line`]: a `println`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// From defmt's level names (`trace` ... `error`); anything else counts as `Error`, the
    /// level nothing filters out.
    pub fn parse(s: &str) -> Level {
        match s {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            _ => Level::Error,
        }
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub level: Option<Level>,
    /// The module that logged it (`accessgate::gate`), empty if the ELF had no debug info.
    pub module: String,
    /// Embassy time since boot as the device stamped it, empty without a timestamp.
    pub timestamp: String,
    pub text: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = self.level.map_or("     ", |l| match l {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO ",
            Level::Warn => "WARN ",
            Level::Error => "ERROR",
        });
        write!(f, "{:>10} {level} {}", self.timestamp, self.text)?;
        if !self.module.is_empty() {
            write!(f, "  [{}]", self.module)?;
        }
        Ok(())
    }
}

impl Line {
    /// A line of the gate's log an operator sees at the `info` level a device ships with.
    fn is_gate_info(&self) -> bool {
        let crate_name = self.module.split("::").next().unwrap_or_default();
        self.level.is_some_and(|l| l >= Level::Info)
            && matches!(crate_name, "accessgate" | "accessgate_embassy")
    }
    /// A line the scenario printed.
    fn is_scenario(&self) -> bool {
        self.level.is_none()
    }
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each expectation, in the order the scenario meets them, with the frame that met it.
    pub expectations: Vec<(String, Option<usize>)>,
    /// Everything else that is wrong.
    pub problems: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.expectations.iter().all(|(_, found)| found.is_some())
    }
}

/// The causes R13 names; an access change logged with anything else is a defect.
const CAUSES: [&str; 6] = [
    "ServerGranted",
    "ServerDenied",
    "FailedClosed",
    "Recovered",
    "Unauthorized",
    "LoggedOut",
];

/// A gate line the log must have.
struct Expect {
    what: &'static str,
    matches: fn(&str) -> bool,
}

/// The scenario's chapters as the gate logs them, in order (scenario.rs: grant, a refused
/// connection held, 503s until failing closed, recovery, revocation, 401).
const EXPECTED: [Expect; 12] = [
    Expect {
        what: "ch.1 access change with its cause: Unknown -> Granted (ServerGranted)",
        matches: |t| t == "access Unknown -> Granted (ServerGranted)",
    },
    Expect {
        what: "ch.1 counters after the grant: 1 attempt, 1 grant",
        matches: |t| t.starts_with("counters: attempts 1, ") && t.contains(", grants 1,"),
    },
    Expect {
        what: "ch.2 transient failure with class and detail: connect (Net(Refused))",
        matches: |t| failure(t).is_some_and(|f| f == "connect (Net(Refused))"),
    },
    Expect {
        what: "ch.3 transient failure with class and detail: server_error (Status(503))",
        matches: |t| failure(t).is_some_and(|f| f == "server_error (Status(503))"),
    },
    Expect {
        what: "ch.3 access change: Granted -> Denied (FailedClosed)",
        matches: |t| t == "access Granted -> Denied (FailedClosed)",
    },
    Expect {
        what: "ch.3 counters: the fail-closed event and failures by class",
        matches: |t| {
            t.starts_with("counters: ")
                && t.contains(", failed closed 1,")
                && count(t, "connect ").is_some_and(|n| n > 0)
                && count(t, "server_error ").is_some_and(|n| n > 0)
        },
    },
    Expect {
        what: "ch.4 access change: Denied -> Granted (Recovered)",
        matches: |t| t == "access Denied -> Granted (Recovered)",
    },
    Expect {
        what: "ch.4 counters: the recovery",
        matches: |t| t.starts_with("counters: ") && t.contains(", recoveries 1,"),
    },
    Expect {
        what: "ch.5 access change: Granted -> Denied (ServerDenied)",
        matches: |t| t == "access Granted -> Denied (ServerDenied)",
    },
    Expect {
        what: "ch.5 counters: the denial",
        matches: |t| t.starts_with("counters: ") && t.contains(", denials 1,"),
    },
    Expect {
        what: "ch.6 access change: Denied -> Unknown (Unauthorized)",
        matches: |t| t == "access Denied -> Unknown (Unauthorized)",
    },
    Expect {
        what: "ch.6 counters: the 401 logout, no app logout",
        matches: |t| {
            t.starts_with("counters: ")
                && t.contains(", logouts 0, unauthorized logouts 1,")
                && t.contains(", stale dropped ")
        },
    },
];

/// `check 3 failed: connect (Net(Refused))` -> `connect (Net(Refused))`.
fn failure(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("check ")?;
    let (attempt, rest) = rest.split_once(" failed: ")?;
    attempt.parse::<u32>().ok()?;
    Some(rest)
}

/// The number after `label` (`"attempts "` in `"attempts 19, ..."`): the gate's counters line.
fn count(text: &str, label: &str) -> Option<u32> {
    let at = text.find(label)? + label.len();
    digits(&text[at..])
}

/// The number before `label` (`" attempts"` in `"19 attempts"`): the scenario's counters line.
fn count_before(text: &str, label: &str) -> Option<u32> {
    let head = &text[..text.find(label)?];
    let start = head.rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    head[start..].parse().ok()
}

fn digits(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// Checks `lines` (every frame of one run, in order).
pub fn check(lines: &[Line]) -> Report {
    let mut report = Report::default();
    let gate: Vec<(usize, &Line)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_gate_info())
        .collect();
    if gate.is_empty() {
        report.problems.push(
            "no info-level frame from the gate (accessgate, accessgate_embassy): DEFMT_LOG below info, or no debug info for module paths?"
                .into(),
        );
    }

    // In order: each expectation is met by a gate line after the previous one's.
    let mut from = 0;
    for e in &EXPECTED {
        let found = gate[from.min(gate.len())..]
            .iter()
            .position(|(_, l)| (e.matches)(&l.text))
            .map(|p| from + p);
        report
            .expectations
            .push((e.what.to_string(), found.map(|p| gate[p].0)));
        if let Some(p) = found {
            from = p + 1;
        }
    }

    // R13: every access change and counters line of the gate carries a cause / reaches the
    // info level (the expectations above only look at info lines; this names the culprit).
    for (i, l) in lines.iter().enumerate() {
        if l.is_scenario() {
            continue;
        }
        if !l.is_gate_info() && (l.text.starts_with("access ") || l.text.starts_with("counters: ")) {
            report.problems.push(format!("frame {i}: below info: {l}"));
        }
        if let Some(rest) = l.text.strip_prefix("access ") {
            let cause = rest.rsplit_once(" (").and_then(|(_, c)| c.strip_suffix(')'));
            if !cause.is_some_and(|c| CAUSES.contains(&c)) {
                report
                    .problems
                    .push(format!("frame {i}: an access change without a known cause: {l}"));
            }
        }
    }
    // The gate's last counters agree with what the app read from the plain struct and the
    // backend saw (the scenario's `counters:` line).
    let gate_counters = gate.iter().rev().find(|(_, l)| l.text.starts_with("counters: "));
    let app = lines
        .iter()
        .rev()
        .find(|l| l.is_scenario() && l.text.starts_with("counters: "));
    match (gate_counters, app) {
        (Some((i, g)), Some(a)) => {
            let pairs: [(&str, Option<u32>, Option<u32>); 8] = [
                (
                    "attempts",
                    count(&g.text, "attempts "),
                    count_before(&a.text, " attempts"),
                ),
                (
                    "transient failures",
                    count(&g.text, "transient failures "),
                    count_before(&a.text, " transient failures"),
                ),
                // Every connection the backend refused is one `connect` failure.
                (
                    "connect failures",
                    count(&g.text, "(connect "),
                    count_before(&a.text, " refused"),
                ),
                (
                    "grants",
                    count(&g.text, "grants "),
                    count_before(&a.text, " grants"),
                ),
                (
                    "denials",
                    count(&g.text, "denials "),
                    count_before(&a.text, " denials"),
                ),
                (
                    "fail-closed events",
                    count(&g.text, "failed closed "),
                    count_before(&a.text, " fail-closed"),
                ),
                (
                    "recoveries",
                    count(&g.text, "recoveries "),
                    count_before(&a.text, " recoveries"),
                ),
                (
                    "stale results dropped",
                    count(&g.text, "stale dropped "),
                    count_before(&a.text, " stale dropped"),
                ),
            ];
            for (name, logged, read) in pairs {
                match (logged, read) {
                    (Some(x), Some(y)) if x == y => {}
                    _ => report.problems.push(format!(
                        "{name}: the gate's last counters line (frame {i}) says {logged:?}, the app read {read:?}"
                    )),
                }
            }
        }
        (g, a) => report.problems.push(format!(
            "counters to compare: gate line {}, app line {}",
            if g.is_some() { "found" } else { "missing" },
            if a.is_some() { "found" } else { "missing" }
        )),
    }

    if !lines
        .iter()
        .any(|l| l.is_scenario() && l.text.starts_with("PASS: "))
    {
        report.problems.push("the scenario did not print PASS".into());
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(text: &str) -> Line {
        Line {
            level: Some(Level::Info),
            module: "accessgate::gate::{impl#5}::set_access".into(),
            timestamp: "0.000000".into(),
            text: text.into(),
        }
    }
    fn scenario(text: &str) -> Line {
        Line {
            level: None,
            module: "accessgate_firmware_qemu::print_line".into(),
            timestamp: "0.000000".into(),
            text: text.into(),
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn counters(
        attempts: u32,
        connect: u32,
        server: u32,
        g: u32,
        d: u32,
        fc: u32,
        rec: u32,
        unauth: u32,
    ) -> Line {
        gate(&format!(
            "counters: attempts {attempts}, transient failures {} (connect {connect}, dns 0, tls 0, timeout 0, io 0, forbidden 0, throttled 0, server_error {server}, other_status 0, invalid_body 0, token_expired 0), grants {g}, denials {d}, stale dropped 0, failed closed {fc}, recoveries {rec}, logouts 0, unauthorized logouts {unauth}, refreshes 0, refresh failures 0, events lost 0",
            connect + server
        ))
    }

    /// A run as the QEMU scenario logs it (abridged: one failure of each kind).
    fn good_run() -> Vec<Line> {
        vec![
            scenario("chapter 1: sign in"),
            gate("access Unknown -> Granted (ServerGranted)"),
            counters(1, 0, 0, 1, 0, 0, 0, 0),
            gate("check 1 failed: connect (Net(Refused))"),
            gate("check 2 failed: server_error (Status(503))"),
            gate("access Granted -> Denied (FailedClosed)"),
            counters(4, 1, 1, 2, 0, 1, 0, 0),
            scenario("      +1.671s  access granted -> denied (failed_closed)"),
            gate("access Denied -> Granted (Recovered)"),
            counters(5, 1, 1, 3, 0, 1, 1, 0),
            gate("access Granted -> Denied (ServerDenied)"),
            counters(6, 1, 1, 3, 1, 1, 1, 0),
            gate("access Denied -> Unknown (Unauthorized)"),
            counters(7, 1, 1, 3, 1, 1, 1, 1),
            scenario("counters: 7 attempts (1 refused, 4 answered), 2 transient failures, 3 grants, 1 denials, 1 fail-closed, 1 recoveries, 0 stale dropped"),
            scenario("PASS: all 6 chapters held, 2327 ms of embassy time"),
        ]
    }

    fn missing(r: &Report) -> Vec<&str> {
        r.expectations
            .iter()
            .filter(|(_, f)| f.is_none())
            .map(|(w, _)| w.as_str())
            .collect()
    }

    #[test]
    fn a_run_with_every_r13_line_passes() {
        let r = check(&good_run());
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.expectations.len(), EXPECTED.len());
    }

    #[test]
    fn a_missing_fail_closed_line_fails_even_when_the_scenario_printed_it() {
        let mut run = good_run();
        run.retain(|l| l.text != "access Granted -> Denied (FailedClosed)");
        let r = check(&run);
        assert!(!r.passed());
        assert_eq!(
            missing(&r),
            ["ch.3 access change: Granted -> Denied (FailedClosed)"]
        );
    }

    #[test]
    fn an_access_change_logged_below_info_does_not_count() {
        let mut run = good_run();
        run[1].level = Some(Level::Debug);
        let r = check(&run);
        assert!(!r.passed());
        assert!(missing(&r)[0].starts_with("ch.1 access change"), "{r:?}");
        assert!(r.problems.iter().any(|p| p.contains("below info")), "{r:?}");
    }

    #[test]
    fn a_line_from_another_crate_does_not_count() {
        let mut run = good_run();
        run[1].module = "accessgate_firmware_scenario::scenario".into();
        assert!(!check(&run).passed());
    }

    #[test]
    fn a_failure_without_its_detail_fails() {
        let mut run = good_run();
        run[3] = gate("check 1 failed: connect");
        let r = check(&run);
        assert_eq!(
            missing(&r),
            ["ch.2 transient failure with class and detail: connect (Net(Refused))"]
        );
    }

    #[test]
    fn an_access_change_without_a_known_cause_fails() {
        let mut run = good_run();
        run.insert(2, gate("access Granted -> Granted (Other)"));
        let r = check(&run);
        assert!(!r.passed());
        assert!(
            r.problems.iter().any(|p| p.contains("without a known cause")),
            "{r:?}"
        );
    }

    #[test]
    fn changes_out_of_order_fail() {
        let mut run = good_run();
        // Recovered (and its counters) before FailedClosed.
        run.swap(5, 8);
        assert!(!check(&run).passed());
    }

    #[test]
    fn counters_that_disagree_with_the_app_fail() {
        let mut run = good_run();
        run[13] = counters(7, 0, 2, 3, 1, 1, 1, 1);
        let r = check(&run);
        assert!(!r.passed());
        assert!(
            r.problems.iter().any(|p| p.starts_with("connect failures")),
            "{r:?}"
        );
    }

    #[test]
    fn a_run_without_counters_lines_fails() {
        let mut run = good_run();
        run.retain(|l| !(l.level.is_some() && l.text.starts_with("counters: ")));
        let r = check(&run);
        assert!(!r.passed());
        assert_eq!(missing(&r).len(), 5, "{r:?}");
    }

    #[test]
    fn a_run_that_did_not_pass_fails() {
        let mut run = good_run();
        run.pop();
        assert!(!check(&run).passed());
    }
}
