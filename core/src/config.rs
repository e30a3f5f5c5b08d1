//! Gate configuration: every figure of behaviour.md's defaults table, validated at
//! construction so an impossible configuration is an error, never a panic.

use crate::time::Duration;

/// An exponential backoff with full jitter: the `k`-th delay (from 0) is drawn uniformly from
/// `[0, min(cap, base * factor^k)]` (R6, R7).
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

    fn validate(&self, which: Which) -> Result<(), ConfigError> {
        if self.base == Duration::ZERO {
            return Err(ConfigError::ZeroBackoffBase(which));
        }
        if self.factor == 0 {
            return Err(ConfigError::ZeroBackoffFactor(which));
        }
        if self.cap < self.base {
            return Err(ConfigError::CapBelowBase(which));
        }
        Ok(())
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
    /// Retry backoff between the first failure and the deadline (R6).
    pub retry: Backoff,
    /// Probe backoff after failing closed (R7). Its cap also caps `Retry-After`.
    pub probe: Backoff,
    /// Largest check body that can be definitive (R1); larger bodies are transient.
    pub max_body: usize,
    /// Shortest interval between two app-requested re-checks ([`Gate::recheck_now`](crate::Gate::recheck_now)).
    pub min_recheck_interval: Duration,
}

impl GateConfig {
    /// The defaults of behaviour.md: 10 s per attempt, 120 s budget, retries 2 s x2 cap 20 s,
    /// probes 30 s x2 cap 10 min, 1 KiB body, re-check at most every 5 s.
    pub const DEFAULT: GateConfig = GateConfig {
        attempt_timeout: Duration::from_secs(10),
        budget: Duration::from_secs(120),
        retry: Backoff {
            base: Duration::from_secs(2),
            factor: 2,
            cap: Duration::from_secs(20),
        },
        probe: Backoff {
            base: Duration::from_secs(30),
            factor: 2,
            cap: Duration::from_secs(600),
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
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.budget == Duration::ZERO {
            return Err(ConfigError::ZeroBudget);
        }
        if self.attempt_timeout == Duration::ZERO {
            return Err(ConfigError::ZeroAttemptTimeout);
        }
        // R6: the last attempt must be able to start and finish before the deadline.
        if self.attempt_timeout >= self.budget {
            return Err(ConfigError::TimeoutNotBelowBudget);
        }
        self.retry.validate(Which::Retry)?;
        self.probe.validate(Which::Probe)?;
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
            ConfigError::ZeroBackoffBase(w) => write!(f, "{w:?} backoff base must be longer than zero"),
            ConfigError::ZeroBackoffFactor(w) => write!(f, "{w:?} backoff factor must be at least 1"),
            ConfigError::CapBelowBase(w) => write!(f, "{w:?} backoff cap must not be below its base"),
            ConfigError::ZeroMaxBody => f.write_str("maximum body size must be at least one byte"),
            ConfigError::ZeroRetryCapacity => f.write_str("retry schedule capacity N must be at least 1"),
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
        let mut c = GateConfig::DEFAULT;
        c.budget = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::ZeroBudget));
        let mut c = GateConfig::DEFAULT;
        c.attempt_timeout = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::ZeroAttemptTimeout));
        let mut c = GateConfig::DEFAULT;
        c.attempt_timeout = c.budget;
        assert_eq!(c.validate(), Err(ConfigError::TimeoutNotBelowBudget));
        let mut c = GateConfig::DEFAULT;
        c.retry.cap = Duration::from_secs(1);
        assert_eq!(c.validate(), Err(ConfigError::CapBelowBase(Which::Retry)));
        let mut c = GateConfig::DEFAULT;
        c.probe.factor = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroBackoffFactor(Which::Probe)));
        let mut c = GateConfig::DEFAULT;
        c.retry.base = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::ZeroBackoffBase(Which::Retry)));
        let mut c = GateConfig::DEFAULT;
        c.max_body = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroMaxBody));
    }

    #[test]
    fn backoff_ceiling_grows_then_caps_without_overflow() {
        let b = GateConfig::DEFAULT.retry;
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
}
