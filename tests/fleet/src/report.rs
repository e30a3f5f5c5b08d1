//! Results: one [`Row`] and one [`Series`] per policy, and their markdown / CSV renderers.

use std::fmt::Write as _;
use std::time::Duration;

use crate::policy::PolicyKind;
use crate::scenario::{Scenario, ScenarioKind};

/// Figures of one policy in one scenario. Device counts are over entitled devices unless
/// said otherwise. Times are simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The policy.
    pub policy: PolicyKind,
    /// Devices the backend grants.
    pub entitled: u32,
    /// Backend capacity (requests/s), to scale loads.
    pub capacity: u32,
    /// Requests made by all devices over the whole run.
    pub requests: u64,
    /// Requests per device over the run: mean.
    pub requests_mean: f64,
    /// Requests per device over the run: max.
    pub requests_max: u32,
    /// Requests per entitled device up to and including its first grant (all its requests if
    /// never granted): mean.
    pub requests_to_grant_mean: f64,
    /// Same, max.
    pub requests_to_grant_max: u32,
    /// Highest offered load (requests arriving in one 1 s bucket) over the run.
    pub peak_offered: u32,
    /// Highest offered load in a 1 s bucket from the end of the outage on (0 without one).
    pub peak_offered_after_outage: u32,
    /// First time 99 % of entitled devices were granted at once (from t = 0).
    pub granted_99: Option<Duration>,
    /// First time every entitled device was granted at once (from t = 0).
    pub granted_100: Option<Duration>,
    /// Entitled devices denied at some point (each one failed closed: the backend never
    /// denies them).
    pub ever_denied: u32,
    /// Entitled devices denied at some point before the hourly echo could begin (the earliest
    /// first refresh): the boot storm itself.
    pub denied_first_interval: u32,
    /// Entitled devices granted, then denied during the hourly echo: at or after the earliest
    /// first refresh (the refresh interval minus the refresh spread).
    pub denied_in_echo: u32,
    /// Highest offered load in a 1 s bucket from the earliest first refresh on (the echo).
    pub peak_offered_echo: u32,
    /// Entitled devices that were denied at some point (failed closed).
    pub failed_closed_devices: u32,
    /// Time such a device spent denied (failed closed), up to its re-grant or the horizon:
    /// mean.
    pub failed_closed_time_mean: Duration,
    /// Probes such a device made while denied that found the backend still away (every
    /// request except the checks of token refreshes, R3, and the probe that got the grant
    /// back): mean. Evenly spaced probes at period `P` make about `S / P - 1/2` of them in a
    /// time failed closed `S`, and `S / P + 1/2` counting the last one.
    pub failed_closed_probes_mean: f64,
    /// Like `failed_closed_time_mean`, counting only the time after the probe ramp.
    pub failed_closed_time_periodic_mean: Duration,
    /// Like `failed_closed_probes_mean`, counting only the probes after the probe ramp.
    pub failed_closed_probes_periodic_mean: f64,
    /// Entitled devices that became denied while the backend was up: after the outage
    /// ended (or at any time without an outage). A few are by design: a device whose last
    /// possible attempt (deadline - attempt timeout) fell inside the outage fails closed at
    /// its deadline even if that comes after the outage (R5, R6). The rest are devices that
    /// stopped retrying before their deadline while the backend was up.
    pub denied_backend_up: u32,
    /// Entitled devices denied at the end of the outage.
    pub denied_at_outage_end: u32,
    /// Entitled devices that lost their grant at or after the outage start.
    pub affected: u32,
    /// Affected devices not granted at the horizon.
    pub unrecovered: u32,
    /// Time from the end of the outage until an affected device was granted again: median.
    /// `None` when more than half never recovered by the horizon.
    pub recovery_p50: Option<Duration>,
    /// Same, 99th percentile.
    pub recovery_p99: Option<Duration>,
    /// Same, max: when every entitled device was granted again.
    pub recovery_max: Option<Duration>,
    /// Devices that made at least one request during the outage.
    pub outage_requesters: u32,
    /// Requests per such device during the outage: mean.
    pub outage_requests_mean: f64,
    /// Same, max.
    pub outage_requests_max: u32,
    /// Bypass window: the longest stretch any device held `Granted` during the outage after a
    /// request of its own had failed (it could not reach the backend and still let the user
    /// in). Bounded by the budget for ours; the whole outage for the shipped fix.
    pub bypass_max: Duration,
    /// Unverified grant: the longest stretch any device held `Granted` from a failed request
    /// to its next definitive answer (or loss of the grant), outage or not. Unlike
    /// `bypass_max` this keeps counting after the backend is back, until the device asks.
    pub unverified_max: Duration,
    /// Entitled devices granted at the horizon.
    pub granted_at_end: u32,
}

/// Per 1 s bucket figures of one policy, for plotting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// The policy.
    pub policy: PolicyKind,
    /// Requests arriving at the backend in each second (offered load).
    pub offered: Vec<u32>,
    /// Definitive answers the backend gave in each second.
    pub served: Vec<u32>,
    /// Entitled devices granted at the end of each second.
    pub granted: Vec<u32>,
    /// Entitled devices denied at the end of each second.
    pub denied: Vec<u32>,
}

/// The result of [`run`](crate::run): rows and series per policy, in the order asked.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario that ran.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// One row per policy.
    pub rows: Vec<Row>,
    /// One series per policy.
    pub series: Vec<Series>,
    /// Wall-clock time each policy's simulation took (not part of the deterministic result).
    pub wall: Vec<Duration>,
}

/// Formats an optional simulated duration: `12.3 s`, `4 min 05 s`, `1 h 02 min`; `None` as
/// `never` (not by the horizon).
pub fn fmt_duration(d: Option<Duration>) -> String {
    let Some(d) = d else { return "never".into() };
    let s = d.as_secs_f64();
    if s < 60.0 {
        let t = format!("{s:.1}");
        format!("{} s", t.trim_end_matches(".0"))
    } else if s < 3600.0 {
        let whole = s.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        let m = (s / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

fn ratio(x: u32, c: u32) -> String {
    format!("{:.2}", f64::from(x) / f64::from(c))
}

impl Row {
    /// Distance from the probing frontier: probes per failed-closed device x p99 re-grant /
    /// (0.99 x mean time failed closed). Evenly spaced probes at a random phase need about
    /// `S / P` probes for a p99 wait of `0.99 P`, which is 1.00; more is waste. `None` without
    /// failed-closed devices or a p99.
    pub fn frontier(&self) -> Option<f64> {
        frontier(
            self.failed_closed_probes_mean,
            self.recovery_p99,
            self.failed_closed_time_mean,
        )
    }

    /// The same for the periodic part (after the probe ramp): probes and time after the ramp.
    pub fn frontier_periodic(&self) -> Option<f64> {
        frontier(
            self.failed_closed_probes_periodic_mean,
            self.recovery_p99,
            self.failed_closed_time_periodic_mean,
        )
    }
}

fn frontier(probes: f64, p99: Option<Duration>, time: Duration) -> Option<f64> {
    let p99 = p99?.as_secs_f64();
    let s = time.as_secs_f64();
    (probes > 0.0 && s > 0.0 && p99 > 0.0).then(|| probes * p99 / (0.99 * s))
}

fn opt2(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

impl Report {
    /// The row of `policy`, if it ran.
    pub fn row(&self, policy: PolicyKind) -> Option<&Row> {
        self.rows.iter().find(|r| r.policy == policy)
    }

    /// The series of `policy`, if it ran.
    pub fn series_of(&self, policy: PolicyKind) -> Option<&Series> {
        self.series.iter().find(|s| s.policy == policy)
    }

    /// A markdown section: a header line with the scenario, then one table row per policy,
    /// with the columns that matter for the scenario.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let sc = &self.scenario;
        let _ = writeln!(
            out,
            "**{}** (seed {}, horizon {})\n",
            sc.describe(),
            self.seed,
            fmt_duration(Some(sc.horizon()))
        );
        match sc.kind {
            ScenarioKind::BootStorm { .. } => {
                let limit = f64::from(sc.devices) / f64::from(sc.capacity);
                out.push_str("| policy | 99 % granted | 100 % granted | vs N/C | req/device to grant (mean / max) | req/device in run (mean / max) | failed closed, backend up: storm / in run | granted, then denied in the echo | peak offered / C: storm / echo |\n");
                out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
                for r in &self.rows {
                    let vs = r
                        .granted_100
                        .map(|d| format!("x{:.2}", d.as_secs_f64() / limit))
                        .unwrap_or_else(|| "-".into());
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {:.2} / {} | {:.2} / {} | {} / {} | {} ({:.1} %) | {} / {} |",
                        r.policy,
                        fmt_duration(r.granted_99),
                        fmt_duration(r.granted_100),
                        vs,
                        r.requests_to_grant_mean,
                        r.requests_to_grant_max,
                        r.requests_mean,
                        r.requests_max,
                        r.denied_first_interval,
                        r.ever_denied,
                        r.denied_in_echo,
                        100.0 * f64::from(r.denied_in_echo) / f64::from(r.entitled.max(1)),
                        ratio(r.peak_offered, r.capacity),
                        ratio(r.peak_offered_echo, r.capacity),
                    );
                }
            }
            ScenarioKind::Outage { .. } => {
                out.push_str("| policy | ever denied | denied at outage end | denied after outage | affected | regranted after outage p50 / p99 / max | still denied at horizon | peak offered / C after | req/device in outage (mean / max) | bypass window | unverified grant | mean time failed closed | probes per failed-closed device | frontier (periodic part) |\n");
                out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
                for r in &self.rows {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {} | {:.1} / {} | {} | {} | {} | {:.2} | {} ({}) |",
                        r.policy,
                        r.ever_denied,
                        r.denied_at_outage_end,
                        r.denied_backend_up,
                        r.affected,
                        fmt_duration(r.recovery_p50),
                        fmt_duration(r.recovery_p99),
                        fmt_duration(r.recovery_max),
                        r.unrecovered,
                        ratio(r.peak_offered_after_outage, r.capacity),
                        r.outage_requests_mean,
                        r.outage_requests_max,
                        fmt_duration(Some(r.bypass_max)),
                        fmt_duration(Some(r.unverified_max)),
                        fmt_duration(Some(r.failed_closed_time_mean)),
                        r.failed_closed_probes_mean,
                        opt2(r.frontier()),
                        opt2(r.frontier_periodic()),
                    );
                }
            }
        }
        out
    }

    /// The time series as CSV: `second,policy,offered,served,granted,denied`, with the
    /// policy's command-line id ([`PolicyKind::id`]).
    pub fn series_csv(&self) -> String {
        let mut out = String::from("second,policy,offered,served,granted,denied\n");
        for s in &self.series {
            for i in 0..s.granted.len() {
                let _ = writeln!(
                    out,
                    "{i},{},{},{},{},{}",
                    s.policy.id(),
                    s.offered.get(i).copied().unwrap_or(0),
                    s.served.get(i).copied().unwrap_or(0),
                    s.granted[i],
                    s.denied[i]
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(None), "never");
        assert_eq!(fmt_duration(Some(Duration::from_millis(50_040))), "50 s");
        assert_eq!(fmt_duration(Some(Duration::from_millis(1_250))), "1.2 s");
        assert_eq!(fmt_duration(Some(Duration::from_secs(245))), "4 min 05 s");
        assert_eq!(fmt_duration(Some(Duration::from_secs(3725))), "1 h 02 min");
    }
}
