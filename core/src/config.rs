//! Gate configuration: every figure of behaviour.md's defaults table, validated at
//! construction so an impossible configuration is an error, never a panic.

use crate::time::{div_rem, Duration};

/// An exponential backoff with full jitter: the `k`-th delay (from 0) is drawn uniformly from
/// `[0, min(cap, base * factor^k)]`. Used for token refresh retries (R11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Backoff {
    /// Upper bound of the first delay.
    pub base: Duration,
    /// Growth of the upper bound per step (at least 1).
    pub factor: u32,
    /// The upper bound never grows past this.
    pub cap: Duration,
}

impl Backoff {
    /// Upper bound of the `k`-th delay (from 0): `min(cap, base * factor^k)`, without overflow.
    pub fn ceiling(&self, k: u32) -> Duration {
        let mut d = self.base;
        let mut i = 0;
        // Bounded loop (R12): at most 64 multiplications before saturation or the cap.
        while i < k && d < self.cap && i < 64 {
            d = d.saturating_mul(self.factor as u64);
            i += 1;
        }
        d.min(self.cap)
    }
}

/// Which backoff a [`ConfigError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Which {
    /// Retries before the fail-closed deadline (R6).
    Retry,
    /// Recovery probes after failing closed (R7).
    Probe,
    /// Token refresh retries (R11).
    Refresh,
}

/// Where the retries between the first transient failure and the deadline go (R6).
///
/// With a retry capacity `N` (the gate's const generic), retries 1..N-1 are stratified over
/// `spread` after the first failure: retry `k` is drawn uniformly inside the `k`-th of `N - 1`
/// equal slices of that window. Retry `N` is drawn in the `final_window` that ends one attempt
/// timeout before the deadline, so it can finish in time. A slice that has already ended when
/// the previous attempt fails is skipped (a retry never starts outside its slice); a slice the
/// failure lands in is drawn from the part still ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Retries {
    /// The spread window `W` after the first failure that holds retries 1..N-1 (default 70 s).
    pub spread: Duration,
    /// Width of the window that holds the last retry and ends at `deadline - attempt_timeout`
    /// (default 10 s).
    pub final_window: Duration,
    /// How many retries a streak gets, set at run time up to the schedule's capacity (the
    /// const generic `N` of [`Gate`](crate::Gate) / [`Session`](crate::Session), 8 by default);
    /// `0`, the default, uses every slot of the capacity. More than the capacity is refused at
    /// construction ([`ConfigError::RetryCountOverCapacity`]).
    #[cfg_attr(feature = "serde", serde(default))]
    pub count: u16,
}

impl Retries {
    /// The retries a streak gets with a schedule of capacity `n`: `count`, or `n` when it is
    /// 0 (or above `n`, which construction refuses). At most `u16::MAX`, the most `count` can
    /// say, whatever the capacity.
    pub const fn slots(&self, n: usize) -> u32 {
        // R12: a retry plan skips at most this many slots in one input. The schedule holds no
        // array of `N`, so `Gate::<{ 1 << 32 }>` builds; uncapped, it made one input skip
        // billions of empty slices and `RetrySchedule::remaining` overflow (`slots + 1`).
        let n = if n > u16::MAX as usize {
            u16::MAX as u32
        } else {
            n as u32
        };
        if self.count == 0 || self.count as u32 > n {
            n
        } else {
            self.count as u32
        }
    }

    /// The default shape for a given budget and attempt timeout: the defaults (70 s spread,
    /// 10 s final window) when they fit in `budget - attempt_timeout`, otherwise the same
    /// proportions of that room (7/11 spread, 1/11 final window), so a short budget gets a
    /// valid schedule without hand-tuning.
    ///
    /// ```
    /// use accessgate::{Duration, GateConfig, Retries};
    /// let ms = Duration::from_millis;
    /// assert_eq!(Retries::fitted(ms(120_000), ms(10_000)), GateConfig::DEFAULT.retry);
    /// let r = Retries::fitted(ms(1_000), ms(300));
    /// assert_eq!((r.spread, r.final_window), (Duration::from_micros(445_454), Duration::from_micros(63_636)));
    /// ```
    pub fn fitted(budget: Duration, attempt_timeout: Duration) -> Retries {
        let d = GateConfig::DEFAULT.retry;
        let room = budget.saturating_sub(attempt_timeout);
        if d.spread + d.final_window <= room {
            return d;
        }
        let part = |n: u64| Duration::from_micros((u128::from(room.as_micros()) * u128::from(n) / 11) as u64);
        Retries {
            spread: part(7).max(Duration::from_micros(1)),
            final_window: part(1),
            count: 0,
        }
    }
}

/// How a gate that failed closed probes for recovery (R7).
///
/// Right after failing closed at `D`, `ramp_probes` probes are stratified over `ramp` (probe `j`
/// uniform in the `j`-th of `ramp_probes` equal slices of `[D, D + ramp)`), so a brief outage
/// ends quickly for most users. After that, probes run at a fixed `period` `P` with a random
/// per-device phase `φ` in `(0, P]`: at `D + ramp + φ + k·P`. A probe that fails comes back at
/// the next of those instants, so probing never stops and a user waits at most about one
/// period after the backend is back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Probing {
    /// The period `P` of the periodic probes (default 300 s). Also caps `Retry-After`.
    pub period: Duration,
    /// The early ramp right after failing closed (zero: no ramp).
    pub ramp: Duration,
    /// Probes stratified over the ramp (zero exactly when `ramp` is zero; at most
    /// [`Probing::MAX_RAMP_PROBES`]).
    pub ramp_probes: u32,
}

impl Probing {
    /// Upper bound of [`Probing::ramp_probes`] (R12: an input's work stays bounded).
    pub const MAX_RAMP_PROBES: u32 = 16;

    /// A backoff shaped like this probing, for token refreshes that fail after the token
    /// expired (R11 keeps those from hammering the token endpoint): full jitter from the
    /// ramp's slice width (the period without a ramp), doubling, capped at the period.
    pub fn backoff(&self) -> Backoff {
        let first = if self.ramp_probes == 0 {
            self.period
        } else {
            Duration::from_micros(div_rem(self.ramp.as_micros(), u64::from(self.ramp_probes)).0)
        };
        Backoff {
            base: first.max(Duration::from_micros(1)).min(self.period),
            factor: 2,
            cap: self.period,
        }
    }

    /// Upper bound of the `k`-th refresh retry delay after the token expired: see
    /// [`Probing::backoff`].
    pub fn ceiling(&self, k: u32) -> Duration {
        self.backoff().ceiling(k)
    }
}

/// Default probe ramp window (R7): measured in the fleet simulator, see tests/fleet/RESULTS.md.
const RAMP_SECS: u64 = 120;
/// Default number of ramp probes (R7).
const RAMP_PROBES: u32 = 2;

/// Settings of a [`Gate`](crate::Gate). [`GateConfig::DEFAULT`] holds the spec's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct GateConfig {
    /// How long one check attempt may take before it counts as a transient failure (R4).
    pub attempt_timeout: Duration,
    /// Fail-closed budget: deadline = first transient failure + budget (R5).
    pub budget: Duration,
    /// Retries between the first failure and the deadline (R6).
    pub retry: Retries,
    /// Probes after failing closed (R7). Its period also caps `Retry-After`.
    pub probe: Probing,
    /// Largest check body that can be definitive (R1); larger bodies are transient.
    pub max_body: usize,
    /// Shortest interval between two app-requested re-checks ([`Gate::recheck_now`](crate::Gate::recheck_now)).
    pub min_recheck_interval: Duration,
}

impl GateConfig {
    /// The defaults of behaviour.md: 10 s per attempt, 120 s budget, retries stratified over
    /// 70 s plus one in the 10 s before `deadline - 10 s`, probes every 300 s at a random
    /// phase after a ramp of 2 probes over the first 120 s, 1 KiB body, re-check at most every 5 s.
    pub const DEFAULT: GateConfig = GateConfig {
        attempt_timeout: Duration::from_secs(10),
        budget: Duration::from_secs(120),
        retry: Retries {
            spread: Duration::from_secs(70),
            final_window: Duration::from_secs(10),
            count: 0,
        },
        probe: Probing {
            period: Duration::from_secs(300),
            ramp: Duration::from_secs(RAMP_SECS),
            ramp_probes: RAMP_PROBES,
        },
        max_body: 1024,
        min_recheck_interval: Duration::from_secs(5),
    };

    /// Checks that the configuration can be honoured.
    ///
    /// ```
    /// use accessgate::{ConfigError, Duration, GateConfig};
    /// let mut c = GateConfig::DEFAULT;
    /// assert_eq!(c.validate(), Ok(()));
    /// c.attempt_timeout = Duration::from_secs(300);
    /// assert_eq!(c.validate(), Err(ConfigError::TimeoutNotBelowBudget));
    /// let mut c = GateConfig::DEFAULT;
    /// c.retry.spread = Duration::from_secs(105); // 105 + 10 > 120 - 10
    /// assert_eq!(c.validate(), Err(ConfigError::SpreadWindowTooLong));
    /// ```
    pub const fn validate(&self) -> Result<(), ConfigError> {
        // In micros: a `const fn` (a session can be built at compile time) compares plain
        // integers; `Duration` orders exactly as its micros do.
        let (budget, timeout) = (self.budget.as_micros(), self.attempt_timeout.as_micros());
        if budget == 0 {
            return Err(ConfigError::ZeroBudget);
        }
        if timeout == 0 {
            return Err(ConfigError::ZeroAttemptTimeout);
        }
        // R6: the last attempt must be able to start and finish before the deadline.
        if timeout >= budget {
            return Err(ConfigError::TimeoutNotBelowBudget);
        }
        // R6: the final window ends one attempt timeout before the deadline and starts after
        // the first failure; the spread window ends before the final window starts.
        let room = budget - timeout;
        let (spread, final_window) = (self.retry.spread.as_micros(), self.retry.final_window.as_micros());
        if final_window > room {
            return Err(ConfigError::FinalWindowTooLong);
        }
        if spread == 0 {
            return Err(ConfigError::ZeroSpreadWindow);
        }
        if spread.saturating_add(final_window) > room {
            return Err(ConfigError::SpreadWindowTooLong);
        }
        // R7.
        if self.probe.period.as_micros() == 0 {
            return Err(ConfigError::ZeroProbePeriod);
        }
        if (self.probe.ramp.as_micros() == 0) != (self.probe.ramp_probes == 0) {
            return Err(ConfigError::RampMismatch);
        }
        if self.probe.ramp_probes > Probing::MAX_RAMP_PROBES {
            return Err(ConfigError::TooManyRampProbes);
        }
        if self.max_body == 0 {
            return Err(ConfigError::ZeroMaxBody);
        }
        Ok(())
    }
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig::DEFAULT
    }
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// The fail-closed budget is zero.
    ZeroBudget,
    /// The per-attempt timeout is zero.
    ZeroAttemptTimeout,
    /// The per-attempt timeout is not shorter than the budget, so no attempt could finish in time.
    TimeoutNotBelowBudget,
    /// The retry spread window is zero (R6).
    ZeroSpreadWindow,
    /// The retry spread window plus the final window is longer than the budget minus one
    /// attempt timeout, so the stratified retries would run into the final window (R6).
    SpreadWindowTooLong,
    /// The final retry window is longer than the budget minus one attempt timeout, so it
    /// would start before the first failure (R6).
    FinalWindowTooLong,
    /// The probe period is zero (R7).
    ZeroProbePeriod,
    /// The probe ramp has a window but no probes, or probes but no window (R7).
    RampMismatch,
    /// More ramp probes than [`Probing::MAX_RAMP_PROBES`].
    TooManyRampProbes,
    /// A backoff's base delay is zero.
    ZeroBackoffBase(Which),
    /// A backoff's growth factor is zero.
    ZeroBackoffFactor(Which),
    /// A backoff's cap is below its base.
    CapBelowBase(Which),
    /// The maximum body size is zero.
    ZeroMaxBody,
    /// The retry schedule's capacity (the const generic `N`) is zero.
    ZeroRetryCapacity,
    /// [`Retries::count`] asks for more retries than the schedule's capacity `N` holds.
    RetryCountOverCapacity,
    /// A capacity given as a const generic is zero where at least one is needed.
    ZeroCapacity,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::ZeroBudget => f.write_str("fail-closed budget must be longer than zero"),
            ConfigError::ZeroAttemptTimeout => f.write_str("per-attempt timeout must be longer than zero"),
            ConfigError::TimeoutNotBelowBudget => {
                f.write_str("per-attempt timeout must be shorter than the fail-closed budget")
            }
            ConfigError::ZeroSpreadWindow => f.write_str("retry spread window must be longer than zero"),
            ConfigError::SpreadWindowTooLong => f.write_str(
                "retry spread window plus final window must fit in the budget minus one attempt timeout",
            ),
            ConfigError::FinalWindowTooLong => {
                f.write_str("final retry window must fit in the budget minus one attempt timeout")
            }
            ConfigError::ZeroProbePeriod => f.write_str("probe period must be longer than zero"),
            ConfigError::RampMismatch => {
                f.write_str("probe ramp needs both a window and at least one probe, or neither")
            }
            ConfigError::TooManyRampProbes => write!(f, "at most {} ramp probes", Probing::MAX_RAMP_PROBES),
            ConfigError::ZeroBackoffBase(w) => write!(f, "{w:?} backoff base must be longer than zero"),
            ConfigError::ZeroBackoffFactor(w) => write!(f, "{w:?} backoff factor must be at least 1"),
            ConfigError::CapBelowBase(w) => write!(f, "{w:?} backoff cap must not be below its base"),
            ConfigError::ZeroMaxBody => f.write_str("maximum body size must be at least one byte"),
            ConfigError::ZeroRetryCapacity => f.write_str("retry schedule capacity N must be at least 1"),
            ConfigError::RetryCountOverCapacity => {
                f.write_str("retry count is above the retry schedule's capacity N")
            }
            ConfigError::ZeroCapacity => f.write_str("a fixed capacity must be at least 1"),
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(GateConfig::DEFAULT.validate(), Ok(()));
    }

    #[test]
    fn impossible_configs_are_errors() {
        fn secs(s: u64) -> Duration {
            Duration::from_secs(s)
        }
        let bad = |f: fn(&mut GateConfig)| {
            let mut c = GateConfig::DEFAULT;
            f(&mut c);
            c.validate()
        };
        assert_eq!(bad(|c| c.budget = Duration::ZERO), Err(ConfigError::ZeroBudget));
        assert_eq!(
            bad(|c| c.attempt_timeout = Duration::ZERO),
            Err(ConfigError::ZeroAttemptTimeout)
        );
        assert_eq!(
            bad(|c| c.attempt_timeout = c.budget),
            Err(ConfigError::TimeoutNotBelowBudget)
        );
        assert_eq!(
            bad(|c| c.retry.spread = Duration::ZERO),
            Err(ConfigError::ZeroSpreadWindow)
        );
        // 70 s + 41 s > 120 s - 10 s.
        assert_eq!(
            bad(|c| c.retry.final_window = secs(41)),
            Err(ConfigError::SpreadWindowTooLong)
        );
        assert_eq!(
            bad(|c| c.retry.spread = secs(101)),
            Err(ConfigError::SpreadWindowTooLong)
        );
        assert_eq!(
            bad(|c| c.retry.final_window = secs(111)),
            Err(ConfigError::FinalWindowTooLong)
        );
        assert_eq!(
            bad(|c| c.probe.period = Duration::ZERO),
            Err(ConfigError::ZeroProbePeriod)
        );
        assert_eq!(
            bad(|c| {
                c.probe.ramp = secs(60);
                c.probe.ramp_probes = 0;
            }),
            Err(ConfigError::RampMismatch)
        );
        assert_eq!(
            bad(|c| {
                c.probe.ramp = Duration::ZERO;
                c.probe.ramp_probes = 2;
            }),
            Err(ConfigError::RampMismatch)
        );
        assert_eq!(
            bad(|c| {
                c.probe.ramp = secs(60);
                c.probe.ramp_probes = Probing::MAX_RAMP_PROBES + 1;
            }),
            Err(ConfigError::TooManyRampProbes)
        );
        assert_eq!(bad(|c| c.max_body = 0), Err(ConfigError::ZeroMaxBody));
        // The edges are valid: spread + final window exactly fill budget - timeout; no ramp.
        assert_eq!(bad(|c| c.retry.spread = secs(100)), Ok(()));
        assert_eq!(
            bad(|c| {
                c.probe.ramp = Duration::ZERO;
                c.probe.ramp_probes = 0;
            }),
            Ok(())
        );
    }

    #[test]
    fn backoff_ceiling_grows_then_caps_without_overflow() {
        let b = Backoff {
            base: Duration::from_secs(2),
            factor: 2,
            cap: Duration::from_secs(20),
        };
        let got: [u64; 6] = core::array::from_fn(|k| b.ceiling(k as u32).as_secs());
        assert_eq!(got, [2, 4, 8, 16, 20, 20]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(20));
        let huge = Backoff {
            base: Duration::from_secs(1),
            factor: u32::MAX,
            cap: Duration::MAX,
        };
        assert_eq!(huge.ceiling(1000), Duration::MAX);
    }

    #[test]
    fn expired_token_refresh_backoff_follows_the_probing() {
        let p = Probing {
            period: Duration::from_secs(300),
            ramp: Duration::from_secs(120),
            ramp_probes: 2,
        };
        let got: [u64; 4] = core::array::from_fn(|k| p.ceiling(k as u32).as_secs());
        assert_eq!(got, [60, 120, 240, 300]);
        let flat = Probing {
            ramp: Duration::ZERO,
            ramp_probes: 0,
            ..p
        };
        assert_eq!(flat.ceiling(0), Duration::from_secs(300));
    }
}
