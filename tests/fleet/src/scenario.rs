//! What to simulate: the fleet, the backend and its faults.

use std::time::Duration;

use accessgate::{GateConfig, SessionConfig};

/// The two scenarios of the brief.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScenarioKind {
    /// Every device signs in within `window` (uniformly), at time zero onwards.
    BootStorm {
        /// Sign-ins are uniform over `[0, window)`.
        window: Duration,
    },
    /// Devices are signed in and granted at time zero (steady state, hourly refresh at a
    /// uniform random phase); the backend is down over `[start, start + duration)`.
    Outage {
        /// When the outage starts (after warm-up).
        start: Duration,
        /// How long the backend is down.
        duration: Duration,
    },
}

/// How the backend fails during an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum OutageMode {
    /// Connection refused: a fast transport error after `refused_latency`.
    #[cfg_attr(feature = "cli", value(help = "Connection refused: a fast transport error"))]
    Refused,
    /// Requests vanish: each attempt ends at the policy's own per-attempt timeout.
    Blackhole,
}

/// A scenario: fleet size, backend capacity and latencies, faults, and our gate's config.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Boot storm or outage.
    pub kind: ScenarioKind,
    /// Number of devices.
    pub devices: u32,
    /// Backend capacity in served requests per second (1 s buckets). Requests above it get
    /// `503`.
    pub capacity: u32,
    /// Whether an over-capacity `503` carries `Retry-After`: a slot hand-out, whole seconds
    /// until the first second that still has unreserved capacity, reserving one request
    /// there.
    pub retry_after: bool,
    /// Latency of a served request (a definitive answer).
    pub latency: Duration,
    /// Latency of an over-capacity `503`.
    pub reject_latency: Duration,
    /// Latency of a refused connection during an outage.
    pub refused_latency: Duration,
    /// How the backend fails during the outage.
    pub outage_mode: OutageMode,
    /// Token refresh interval; each refresh triggers one check (R3).
    pub refresh_interval: Duration,
    /// Refresh spreading of the policies that do it (R11, ours): each refresh comes a uniform
    /// random time in `[0, min(spread, interval / 2)]` before the interval is over. Default:
    /// the session layer's default ([`SessionConfig::DEFAULT`]).
    pub refresh_spread: Duration,
    /// Simulated time span; `None` picks [`Scenario::default_horizon`].
    pub horizon: Option<Duration>,
    /// Fraction of devices the backend denies (`has_access: false`); they are excluded from
    /// the "entitled" figures.
    pub denied_fraction: f64,
    /// Configuration of our gate.
    pub gate: GateConfig,
}

impl Scenario {
    /// The defaults shared by both scenarios: 100,000 devices, 2,000 requests/s, 50 ms
    /// answers, 5 ms rejections, 1 ms refusals, hourly refresh, no Retry-After.
    fn base(kind: ScenarioKind) -> Self {
        Scenario {
            kind,
            devices: 100_000,
            capacity: 2_000,
            retry_after: false,
            latency: Duration::from_millis(50),
            reject_latency: Duration::from_millis(5),
            refused_latency: Duration::from_millis(1),
            outage_mode: OutageMode::Refused,
            refresh_interval: Duration::from_secs(3600),
            refresh_spread: Duration::from_micros(SessionConfig::DEFAULT.refresh_spread.as_micros()),
            horizon: None,
            denied_fraction: 0.0,
            gate: GateConfig::DEFAULT,
        }
    }

    /// Scenario 1: `devices` sign in within 1 s against `capacity` requests/s.
    pub fn boot_storm(devices: u32, capacity: u32) -> Self {
        Scenario {
            devices,
            capacity,
            ..Self::base(ScenarioKind::BootStorm {
                window: Duration::from_secs(1),
            })
        }
    }

    /// Scenario 2: `devices` in steady state, the backend down for `duration` from
    /// t = 10 min, then `capacity` requests/s.
    pub fn outage(devices: u32, capacity: u32, duration: Duration) -> Self {
        Scenario {
            devices,
            capacity,
            ..Self::base(ScenarioKind::Outage {
                start: Duration::from_secs(600),
                duration,
            })
        }
    }

    /// The refresh spread in effect for a policy that spreads (capped at half the interval,
    /// as the session layer caps it at half the lifetime beyond the skew).
    pub fn effective_refresh_spread(&self) -> Duration {
        self.refresh_spread.min(self.refresh_interval / 2)
    }

    /// The outage window `[start, end)`, if any.
    pub fn outage_window(&self) -> Option<(Duration, Duration)> {
        match self.kind {
            ScenarioKind::Outage { start, duration } => Some((start, start + duration)),
            ScenarioKind::BootStorm { .. } => None,
        }
    }

    /// Default simulated span: boot storm 75 min (past the first hourly refresh, so
    /// policies that give up until then are seen recovering); outage: until one refresh
    /// interval plus 5 min after the outage ends.
    pub fn default_horizon(&self) -> Duration {
        match self.kind {
            ScenarioKind::BootStorm { window } => {
                window + self.refresh_interval + Duration::from_secs(15 * 60)
            }
            ScenarioKind::Outage { start, duration } => {
                start + duration + self.refresh_interval + Duration::from_secs(5 * 60)
            }
        }
    }

    /// The simulated span in use.
    pub fn horizon(&self) -> Duration {
        self.horizon.unwrap_or_else(|| self.default_horizon())
    }

    /// Checks the scenario can be run.
    pub fn validate(&self) -> Result<(), String> {
        if self.devices == 0 {
            return Err("at least one device".into());
        }
        if self.capacity == 0 {
            return Err("capacity must be at least 1 request/s".into());
        }
        if !(0.0..=1.0).contains(&self.denied_fraction) {
            return Err("denied fraction must be within 0..=1".into());
        }
        if self.refresh_interval.is_zero() {
            return Err("refresh interval must be longer than zero".into());
        }
        if let ScenarioKind::BootStorm { window } = self.kind {
            if window.is_zero() {
                return Err("boot window must be longer than zero".into());
            }
        }
        self.gate.validate().map_err(|e| format!("gate config: {e}"))
    }

    /// A one-line description for report headers.
    pub fn describe(&self) -> String {
        let ra = if self.retry_after {
            "503 + Retry-After slot hand-out"
        } else {
            "plain 503"
        };
        match self.kind {
            ScenarioKind::BootStorm { window } => format!(
                "boot storm: {} devices sign in within {} s, capacity {}/s ({ra}), N/C = {:.1} s",
                self.devices,
                window.as_secs_f64(),
                self.capacity,
                f64::from(self.devices) / f64::from(self.capacity)
            ),
            ScenarioKind::Outage { start, duration } => format!(
                "outage: {} devices, backend {} for {} from t = {} s, then capacity {}/s ({ra})",
                self.devices,
                match self.outage_mode {
                    OutageMode::Refused => "refusing connections",
                    OutageMode::Blackhole => "black-holing requests",
                },
                crate::report::fmt_duration(Some(duration)),
                start.as_secs(),
                self.capacity
            ),
        }
    }
}
