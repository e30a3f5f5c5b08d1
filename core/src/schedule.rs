//! The fixed-capacity retry schedule (R6): at most `N` retries between the first transient
//! failure of a streak and the fail-closed deadline, with full-jitter delays drawn from the
//! gate's per-device PRNG when the streak begins.

use crate::config::Backoff;
use crate::time::{Duration, Instant};

/// Up to `N` planned retry delays. Planned once per failure streak so the schedule's memory is
/// fixed at compile time; a `Retry-After` replaces the next planned delay (R6).
#[derive(Clone, Debug)]
pub struct RetrySchedule<const N: usize> {
    delays: heapless::Vec<Duration, N>,
    next: usize,
}

impl<const N: usize> Default for RetrySchedule<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RetrySchedule<N> {
    /// An empty schedule (no retries planned).
    pub const fn new() -> Self {
        RetrySchedule {
            delays: heapless::Vec::new(),
            next: 0,
        }
    }

    /// Plans `N` retries: the `k`-th delay is uniform in `[0, backoff.ceiling(k)]` (full jitter).
    pub fn plan(&mut self, backoff: &Backoff, rng: &mut fastrand::Rng) {
        self.delays.clear();
        self.next = 0;
        for k in 0..N {
            // Cannot fail: exactly N pushes into capacity N.
            let _ = self.delays.push(delay_jitter(backoff.ceiling(k as u32), rng));
        }
    }

    /// Takes the next planned delay, or `None` when all `N` retries are used.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let d = self.delays.get(self.next).copied();
        if d.is_some() {
            self.next += 1;
        }
        d
    }

    /// Retries still available in this streak.
    pub fn remaining(&self) -> usize {
        self.delays.len() - self.next
    }

    /// Forgets the plan (the streak ended).
    pub fn clear(&mut self) {
        self.delays.clear();
        self.next = 0;
    }
}

/// A delay uniform in `[0, ceiling]`.
pub(crate) fn full_jitter(ceiling: Duration, rng: &mut fastrand::Rng) -> Duration {
    Duration::from_micros(rng.u64(0..=ceiling.as_micros()))
}

/// A delay uniform in `[1 µs, ceiling]` (full jitter that never lands on the current instant:
/// a timer planned by an input is always later than that input, so after any input no timer
/// is left due, R12).
pub(crate) fn delay_jitter(ceiling: Duration, rng: &mut fastrand::Rng) -> Duration {
    Duration::from_micros(rng.u64(1..=ceiling.as_micros().max(1)))
}

/// An instant uniform in `[from, to]` (`from` if the range is empty).
pub(crate) fn uniform_between(from: Instant, to: Instant, rng: &mut fastrand::Rng) -> Instant {
    from + full_jitter(to - from, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GateConfig;

    #[test]
    fn plans_n_delays_within_their_ceilings_then_runs_out() {
        let b = GateConfig::DEFAULT.retry;
        let mut rng = fastrand::Rng::with_seed(7);
        let mut s: RetrySchedule<8> = RetrySchedule::new();
        s.plan(&b, &mut rng);
        assert_eq!(s.remaining(), 8);
        for k in 0..8 {
            let d = s.next_delay().unwrap();
            assert!(d <= b.ceiling(k), "delay {k} = {d:?}");
        }
        assert_eq!(s.next_delay(), None);
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn different_seeds_spread_out() {
        let b = GateConfig::DEFAULT.retry;
        let firsts: [Duration; 16] = core::array::from_fn(|seed| {
            let mut s: RetrySchedule<1> = RetrySchedule::new();
            s.plan(&b, &mut fastrand::Rng::with_seed(seed as u64));
            s.next_delay().unwrap()
        });
        let distinct = firsts
            .iter()
            .filter(|d| firsts.iter().filter(|e| e == d).count() == 1)
            .count();
        assert!(distinct >= 15, "{firsts:?}");
    }
}
