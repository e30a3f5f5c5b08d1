//! Where retries (R6) and recovery probes (R7) go. Both plans are a few words of state,
//! drawn lazily from the gate's per-device PRNG, so their memory is fixed and small.

use crate::config::{GateConfig, Probing};
use crate::time::{div_rem, mul_div, Duration, Instant};

const US: Duration = Duration::from_micros(1);

/// A `Retry-After` delay as R6 applies it: floored at 1 s, capped at the probe period.
pub fn retry_after_delay(retry_after: Duration, probe: &Probing) -> Duration {
    retry_after.max(Duration::from_secs(1)).min(probe.period)
}

/// The retry plan of one failure streak (R6): at most `N` retries. Retries `1..N-1` are
/// stratified over the spread window after the first failure (retry `k` uniform in the `k`-th
/// of `N - 1` equal slices), retry `N` is uniform in the final window that ends one attempt
/// timeout before the deadline.
///
/// ```
/// use accessgate::{Duration, GateConfig, Instant, RetrySchedule};
/// let cfg = GateConfig::DEFAULT;
/// let t0 = Instant::from_secs(100);
/// let mut plan: RetrySchedule<8> = RetrySchedule::new(t0);
/// // Slice 1 of 7 over 70 s is [t0, t0 + 10 s); the final window is [t0 + 100 s, t0 + 110 s].
/// assert_eq!(plan.window(&cfg, 1), Some((t0, t0 + Duration::from_micros(9_999_999))));
/// assert_eq!(plan.window(&cfg, 8), Some((t0 + Duration::from_secs(100), t0 + Duration::from_secs(110))));
/// let mut rng = fastrand::Rng::with_seed(1);
/// let first = plan.next_retry(&cfg, t0, None, &mut rng).unwrap();
/// assert!(first > t0 && first < t0 + Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule<const N: usize> {
    start: Instant,
    next: u32,
}

impl<const N: usize> RetrySchedule<N> {
    /// The plan of a streak whose first transient failure was at `first_failure`.
    pub const fn new(first_failure: Instant) -> Self {
        RetrySchedule {
            start: first_failure,
            next: 1,
        }
    }

    /// The first failure of the streak.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Retries not yet used or skipped, of the `config.retry.slots(N)` a streak gets.
    pub fn remaining(&self, config: &GateConfig) -> usize {
        (config.retry.slots(N) + 1).saturating_sub(self.next) as usize
    }

    /// The window of retry `k` (1-based) as `(first, last)` instants, both inclusive; `None`
    /// when `k` is out of `1..=n` (`n` = `config.retry.slots(N)`, the retries a streak gets)
    /// or its slice holds no microsecond.
    pub fn window(&self, config: &GateConfig, k: u32) -> Option<(Instant, Instant)> {
        let n = config.retry.slots(N);
        if k == 0 || k > n {
            return None;
        }
        if k == n {
            // R6: the final window ends one attempt timeout before the deadline.
            let latest = self.start + config.budget.saturating_sub(config.attempt_timeout);
            let first = latest.saturating_sub(config.retry.final_window).max(self.start);
            return Some((first, latest));
        }
        let (lo, hi) = slice(config.retry.spread, n - 1, k);
        (hi > lo).then(|| (self.start + lo, (self.start + hi).saturating_sub(US)))
    }

    /// The next retry after a transient failure at `at`, or `None` when no retry is left
    /// (then the gate waits for the deadline). Slots that end at or before `at` are skipped;
    /// inside the slot the retry is uniform over the part after `at`. A `Retry-After` delay
    /// replaces the drawn instant (and uses the slot up).
    pub fn next_retry(
        &mut self,
        config: &GateConfig,
        at: Instant,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Option<Instant> {
        // Bounded loop (R12): at most N slots.
        while self.next <= config.retry.slots(N) {
            let k = self.next;
            self.next += 1;
            let Some((first, last)) = self.window(config, k) else {
                continue;
            };
            if last <= at {
                continue;
            }
            return Some(match retry_after {
                Some(ra) => at + retry_after_delay(ra, &config.probe),
                None => uniform_after(at, first, last, rng),
            });
        }
        None
    }
}

/// Slice `k` (1-based) of `count` equal slices of `window`, as offsets `[lo, hi)` in whole
/// microseconds (`floor(window * j / count)` at both ends).
fn slice(window: Duration, count: u32, k: u32) -> (Duration, Duration) {
    let [lo, hi] = mul_div(window.as_micros(), [k - 1, k], count);
    (Duration::from_micros(lo), Duration::from_micros(hi))
}

/// The probe plan after failing closed at `closed_at` (R7): `ramp_probes` probes stratified
/// over the ramp, then periodic probes at `closed_at + ramp + phase + k * period`, the phase
/// drawn per device in `(0, period]`.
///
/// ```
/// use accessgate::{Duration, GateConfig, Instant, ProbeSchedule};
/// let cfg = GateConfig::DEFAULT.probe;
/// let d = Instant::from_secs(1000);
/// let mut rng = fastrand::Rng::with_seed(3);
/// let mut plan = ProbeSchedule::new(d, &cfg, &mut rng);
/// let mut at = d;
/// for _ in 0..cfg.ramp_probes {
///     at = plan.next_probe(&cfg, at, None, &mut rng); // one inside each ramp slice
/// }
/// let first_periodic = plan.next_probe(&cfg, at, None, &mut rng);
/// assert_eq!(first_periodic, d + cfg.ramp + plan.phase());
/// assert_eq!(plan.next_probe(&cfg, first_periodic, None, &mut rng), first_periodic + cfg.period);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSchedule {
    closed_at: Instant,
    phase: Duration,
    next_ramp: u32,
}

impl ProbeSchedule {
    /// The plan of a gate that failed closed at `closed_at`; draws the phase.
    pub fn new(closed_at: Instant, config: &Probing, rng: &mut fastrand::Rng) -> Self {
        ProbeSchedule {
            closed_at,
            phase: delay_jitter(config.period, rng),
            next_ramp: 1,
        }
    }

    /// The periodic probes' phase, in `(0, period]`.
    pub fn phase(&self) -> Duration {
        self.phase
    }

    /// When the gate failed closed.
    pub fn closed_at(&self) -> Instant {
        self.closed_at
    }

    /// The window of ramp probe `j` (1-based), `(first, last)` inclusive; `None` when out of
    /// range or empty.
    pub fn ramp_window(&self, config: &Probing, j: u32) -> Option<(Instant, Instant)> {
        if j == 0 || j > config.ramp_probes {
            return None;
        }
        let (lo, hi) = slice(config.ramp, config.ramp_probes, j);
        (hi > lo).then(|| (self.closed_at + lo, (self.closed_at + hi).saturating_sub(US)))
    }

    /// The next probe after a failure (or the fail-closed moment) at `at`: the next ramp slot
    /// still ahead, else the next periodic instant after `at`. A `Retry-After` delay replaces
    /// it (using up a ramp slot if the next probe was one).
    pub fn next_probe(
        &mut self,
        config: &Probing,
        at: Instant,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Instant {
        let slot = retry_after.map(|ra| at + retry_after_delay(ra, config));
        // Bounded loop (R12): at most MAX_RAMP_PROBES slots (validated).
        while self.next_ramp <= config.ramp_probes {
            let j = self.next_ramp;
            self.next_ramp += 1;
            let Some((first, last)) = self.ramp_window(config, j) else {
                continue;
            };
            if last <= at {
                continue;
            }
            return slot.unwrap_or_else(|| uniform_after(at, first, last, rng));
        }
        slot.unwrap_or_else(|| self.periodic_after(config, at))
    }

    /// The first periodic probe instant strictly after `at`.
    pub fn periodic_after(&self, config: &Probing, at: Instant) -> Instant {
        let first = self.closed_at + config.ramp + self.phase;
        if at < first {
            return first;
        }
        // The k-th point with k = q + 1, where (at - first) = q * p + r: first + (q + 1) * p is
        // at - r + p, so no multiplication is needed (the addition saturates, as before).
        let p = config.period.as_micros().max(1);
        let r = div_rem((at - first).as_micros(), p).1;
        at.saturating_sub(Duration::from_micros(r)) + Duration::from_micros(p)
    }
}

/// A value uniform in `[0, span]`.
///
/// Draws 64 random bits, keeps as many low bits as `span` has, and draws again while the value
/// is above `span`: every value of `[0, span]` is equally likely, and each draw is accepted
/// with probability above 1/2 (expected draws below 2; the loop ends with probability 1, as
/// the rejection loop of fastrand's own range methods does). Unlike those it needs no 128-bit
/// multiply-high and no 64-bit remainder, which a Cortex-M0+ does in software (flash).
#[inline(never)]
fn uniform_to(span: u64, rng: &mut fastrand::Rng) -> u64 {
    if span == 0 {
        return 0;
    }
    // All ones from the top bit of `span` down, grown one bit at a time: no count-leading-zeros
    // routine (a Cortex-M0+ has none) and no variable 64-bit shift.
    let mut mask = 0u64;
    while mask < span {
        mask = mask << 1 | 1;
    }
    loop {
        let x = rng.u64(..) & mask;
        if x <= span {
            return x;
        }
    }
}

/// A delay uniform in `[0, ceiling]`.
pub(crate) fn full_jitter(ceiling: Duration, rng: &mut fastrand::Rng) -> Duration {
    Duration::from_micros(uniform_to(ceiling.as_micros(), rng))
}

/// A delay uniform in `[1 µs, ceiling]` (full jitter that never lands on the current instant:
/// a timer planned by an input is always later than that input, so after any input no timer
/// is left due, R12).
#[inline(never)]
pub(crate) fn delay_jitter(ceiling: Duration, rng: &mut fastrand::Rng) -> Duration {
    Duration::from_micros(1 + uniform_to(ceiling.as_micros().max(1) - 1, rng))
}

/// An instant uniform in the part of the window `[first, last]` strictly after `at` (the
/// caller knows `last > at`). Out of line: retries and ramp probes share it (flash).
#[inline(never)]
fn uniform_after(at: Instant, first: Instant, last: Instant, rng: &mut fastrand::Rng) -> Instant {
    let from = first.max(at + US);
    from + full_jitter(last - from, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn retry_k_lands_in_its_slice_and_the_last_in_the_final_window() {
        let cfg = GateConfig::DEFAULT;
        let t0 = Instant::from_secs(50);
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut plan: RetrySchedule<8> = RetrySchedule::new(t0);
            let mut at = t0; // every attempt fails at once
            for k in 1..=7u64 {
                let t = plan.next_retry(&cfg, at, None, &mut rng).unwrap();
                assert!(
                    t >= t0 + secs(10 * (k - 1)) && t < t0 + secs(10 * k),
                    "retry {k} at {t:?}"
                );
                assert!(t > at);
                at = t;
            }
            let last = plan.next_retry(&cfg, at, None, &mut rng).unwrap();
            assert!(last >= t0 + secs(100) && last <= t0 + secs(110), "{last:?}");
            assert_eq!(plan.next_retry(&cfg, last, None, &mut rng), None);
            assert_eq!(plan.remaining(&cfg), 0);
        }
    }

    #[test]
    fn a_retry_plan_keeps_the_instant_of_its_first_failure() {
        // R5/R6: the streak's slices and its deadline are measured from the first failure.
        let t0 = Instant::from_secs(50);
        let mut plan: RetrySchedule<8> = RetrySchedule::new(t0);
        assert_eq!(plan.start(), t0);
        let mut rng = fastrand::Rng::with_seed(1);
        let t = plan.next_retry(&GateConfig::DEFAULT, t0, None, &mut rng).unwrap();
        assert_eq!(plan.start(), t0);
        assert!(t > t0);
    }

    #[test]
    fn windows_exist_only_for_retries_1_to_n() {
        // R6: a streak gets exactly n retries; retry 0 and retry n + 1 have no window.
        let cfg = GateConfig::DEFAULT;
        let t0 = Instant::from_secs(50);
        let plan: RetrySchedule<8> = RetrySchedule::new(t0);
        assert_eq!(plan.window(&cfg, 0), None);
        assert_eq!(plan.window(&cfg, 9), None);
        assert_eq!(plan.window(&cfg, u32::MAX), None);
        assert_eq!(
            plan.window(&cfg, 1),
            Some((t0, t0 + Duration::from_micros(9_999_999)))
        );
        assert_eq!(plan.window(&cfg, 8), Some((t0 + secs(100), t0 + secs(110))));
    }

    #[test]
    fn a_slice_without_a_microsecond_has_no_window_and_is_skipped() {
        // R6: 3 us spread over 7 slices: slices 1, 2, 4 and 6 hold no whole microsecond.
        let mut cfg = GateConfig::DEFAULT;
        cfg.retry.spread = Duration::from_micros(3);
        let t0 = Instant::from_secs(50);
        let mut plan: RetrySchedule<8> = RetrySchedule::new(t0);
        for k in [1, 2, 4, 6] {
            assert_eq!(plan.window(&cfg, k), None, "slice {k}");
        }
        assert_eq!(plan.window(&cfg, 3), Some((t0, t0)));
        let mut rng = fastrand::Rng::with_seed(2);
        // The first retry goes into slice 3, the first that holds an instant after t0 - 1 us.
        let before = Instant::from_micros(50_000_000 - 1);
        assert_eq!(plan.next_retry(&cfg, before, None, &mut rng), Some(t0));
        assert_eq!(plan.remaining(&cfg), 5);
    }

    #[test]
    fn a_probe_plan_keeps_the_instant_it_failed_closed_and_ramps_only_slots_1_to_n() {
        // R7: the ramp and the periodic points are measured from the fail-closed moment.
        let mut cfg = GateConfig::DEFAULT.probe;
        cfg.ramp = secs(40);
        cfg.ramp_probes = 4;
        let d = Instant::from_secs(1000);
        let mut rng = fastrand::Rng::with_seed(5);
        let plan = ProbeSchedule::new(d, &cfg, &mut rng);
        assert_eq!(plan.closed_at(), d);
        assert_eq!(plan.ramp_window(&cfg, 0), None);
        assert_eq!(plan.ramp_window(&cfg, 5), None);
        assert_eq!(plan.ramp_window(&cfg, u32::MAX), None);
        assert_eq!(
            plan.ramp_window(&cfg, 1),
            Some((d, d + Duration::from_micros(9_999_999)))
        );
        assert_eq!(
            plan.ramp_window(&cfg, 4),
            Some((d + secs(30), d + Duration::from_micros(39_999_999)))
        );
    }

    #[test]
    fn a_ramp_slice_without_a_microsecond_has_no_window_and_is_skipped() {
        // R7: a 3 us ramp over 7 probes: slices 1, 2, 4 and 6 hold no whole microsecond.
        let mut cfg = GateConfig::DEFAULT.probe;
        cfg.ramp = Duration::from_micros(3);
        cfg.ramp_probes = 7;
        let d = Instant::from_secs(1000);
        let mut rng = fastrand::Rng::with_seed(6);
        let mut plan = ProbeSchedule::new(d, &cfg, &mut rng);
        for j in [1, 2, 4, 6] {
            assert_eq!(plan.ramp_window(&cfg, j), None, "slice {j}");
        }
        assert_eq!(plan.ramp_window(&cfg, 3), Some((d, d)));
        let before = Instant::from_micros(1_000_000_000 - 1);
        assert_eq!(plan.next_probe(&cfg, before, None, &mut rng), d);
    }

    #[test]
    fn ended_slices_are_skipped_and_a_slice_in_progress_is_drawn_after_the_failure() {
        let cfg = GateConfig::DEFAULT;
        let t0 = Instant::ZERO;
        let mut rng = fastrand::Rng::with_seed(9);
        let mut plan: RetrySchedule<8> = RetrySchedule::new(t0);
        // The first retry's attempt timed out at 25 s: slices 1 (0-10 s) and 2 (10-20 s) are
        // gone, the retry lands in slice 3, after 25 s.
        let t = plan.next_retry(&cfg, t0 + secs(25), None, &mut rng).unwrap();
        assert!(t > t0 + secs(25) && t < t0 + secs(30), "{t:?}");
        assert_eq!(plan.remaining(&cfg), 5);
        // A failure after the final window: nothing left.
        assert_eq!(plan.next_retry(&cfg, t0 + secs(111), None, &mut rng), None);
    }

    #[test]
    fn retry_after_replaces_the_drawn_instant_floored_and_capped() {
        let cfg = GateConfig::DEFAULT;
        let mut rng = fastrand::Rng::with_seed(1);
        let mut plan: RetrySchedule<8> = RetrySchedule::new(Instant::ZERO);
        let at = Instant::from_secs(1);
        assert_eq!(
            plan.next_retry(&cfg, at, Some(secs(0)), &mut rng),
            Some(at + secs(1))
        );
        assert_eq!(
            plan.next_retry(&cfg, at, Some(secs(40)), &mut rng),
            Some(at + secs(40))
        );
        // Past the deadline and past the period: capped at the period, still used (R6).
        assert_eq!(
            plan.next_retry(&cfg, at, Some(secs(9_999)), &mut rng),
            Some(at + secs(300))
        );
        assert_eq!(plan.remaining(&cfg), 5);
    }

    #[test]
    fn one_retry_goes_into_the_final_window() {
        let cfg = GateConfig::DEFAULT;
        let mut rng = fastrand::Rng::with_seed(4);
        let mut plan: RetrySchedule<1> = RetrySchedule::new(Instant::ZERO);
        let t = plan.next_retry(&cfg, Instant::ZERO, None, &mut rng).unwrap();
        assert!(t >= Instant::from_secs(100) && t <= Instant::from_secs(110));
    }

    #[test]
    fn devices_failing_together_spread_out() {
        let cfg = GateConfig::DEFAULT;
        let firsts: [Instant; 16] = core::array::from_fn(|seed| {
            let mut plan: RetrySchedule<8> = RetrySchedule::new(Instant::ZERO);
            plan.next_retry(
                &cfg,
                Instant::ZERO,
                None,
                &mut fastrand::Rng::with_seed(seed as u64),
            )
            .unwrap()
        });
        let distinct = firsts
            .iter()
            .filter(|d| firsts.iter().filter(|e| e == d).count() == 1)
            .count();
        assert!(distinct >= 15, "{firsts:?}");
    }

    #[test]
    fn probes_fill_the_ramp_then_keep_the_period() {
        let cfg = Probing {
            period: secs(300),
            ramp: secs(120),
            ramp_probes: 2,
        };
        let d = Instant::from_secs(1_000);
        for seed in 0..100 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut plan = ProbeSchedule::new(d, &cfg, &mut rng);
            assert!(plan.phase() > Duration::ZERO && plan.phase() <= secs(300));
            let p1 = plan.next_probe(&cfg, d, None, &mut rng);
            assert!(p1 > d && p1 < d + secs(60), "{p1:?}");
            let p2 = plan.next_probe(&cfg, p1, None, &mut rng);
            assert!(p2 >= d + secs(60) && p2 < d + secs(120), "{p2:?}");
            let base = d + secs(120) + plan.phase();
            let mut at = p2;
            for k in 0..5u64 {
                let p = plan.next_probe(&cfg, at, None, &mut rng);
                assert_eq!(p, base + secs(300 * k));
                at = p + secs(10); // the probe timed out
            }
        }
    }

    #[test]
    fn a_probe_failing_late_waits_for_the_next_period_point() {
        let cfg = Probing {
            period: secs(300),
            ramp: Duration::ZERO,
            ramp_probes: 0,
        };
        let d = Instant::ZERO;
        let mut rng = fastrand::Rng::with_seed(5);
        let mut plan = ProbeSchedule::new(d, &cfg, &mut rng);
        let first = d + plan.phase();
        // A token refresh's check failed well after the first periodic point.
        let at = first + secs(700);
        assert_eq!(plan.next_probe(&cfg, at, None, &mut rng), first + secs(900));
        // Retry-After replaces the instant; the grid is kept for the probe after.
        assert_eq!(plan.next_probe(&cfg, at, Some(secs(20)), &mut rng), at + secs(20));
        assert_eq!(
            plan.next_probe(&cfg, at + secs(20), None, &mut rng),
            first + secs(900)
        );
    }

    #[test]
    fn bounded_draws_stay_in_range_and_are_uniform() {
        let mut rng = fastrand::Rng::with_seed(21);
        // Ranges of every bit width, and the edges: never outside [0, span].
        for bits in 0..64 {
            let span = (1u64 << bits) + bits; // just above a power of two: most rejections
            for _ in 0..200 {
                assert!(uniform_to(span, &mut rng) <= span);
            }
        }
        assert_eq!(uniform_to(0, &mut rng), 0);
        let _ = uniform_to(u64::MAX, &mut rng);
        // Uniform: 5 values (mask 7, so 3 of 8 masked draws are rejected), 100,000 draws;
        // each count within 5 standard deviations (sd ~ 126) of 20,000.
        let mut counts = [0u32; 5];
        for _ in 0..100_000 {
            counts[uniform_to(4, &mut rng) as usize] += 1;
        }
        for c in counts {
            assert!((19_370..=20_630).contains(&c), "{counts:?}");
        }
        // Both ends of a jitter range are reachable: [1 µs, 2 µs] and [0, 1 µs].
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[delay_jitter(Duration::from_micros(2), &mut rng).as_micros() as usize] = true;
            seen[full_jitter(Duration::from_micros(1), &mut rng).as_micros() as usize] = true;
        }
        assert_eq!(seen, [true, true, true]);
        assert_eq!(delay_jitter(Duration::ZERO, &mut rng), US);
    }

    #[test]
    fn periodic_points_match_the_multiplying_formula() {
        let mut rng = fastrand::Rng::with_seed(31);
        let reference = |plan: &ProbeSchedule, cfg: &Probing, at: Instant| {
            let first = plan.closed_at + cfg.ramp + plan.phase;
            if at < first {
                return first;
            }
            let p = cfg.period.as_micros().max(1);
            let k = (at - first).as_micros() / p + 1;
            first + Duration::from_micros(k.saturating_mul(p))
        };
        for i in 0..20_000u64 {
            let bits = rng.u32(1..40);
            let cfg = Probing {
                period: Duration::from_micros(rng.u64(1..=1 << bits)),
                ramp: Duration::from_micros(rng.u64(0..1_000_000)),
                ramp_probes: 1,
            };
            let plan = ProbeSchedule {
                closed_at: Instant::from_micros(rng.u64(0..1 << 40)),
                phase: Duration::from_micros(rng.u64(1..=cfg.period.as_micros())),
                next_ramp: 2,
            };
            // Near the end of time as well: the grid point saturates at the last instant.
            let at = match i % 4 {
                0 => Instant::from_micros(u64::MAX - rng.u64(0..1 << 20)),
                _ => plan.closed_at + Duration::from_micros(rng.u64(0..1 << 42)),
            };
            assert_eq!(
                plan.periodic_after(&cfg, at),
                reference(&plan, &cfg, at),
                "{cfg:?} {plan:?} {at:?}"
            );
        }
    }
}
