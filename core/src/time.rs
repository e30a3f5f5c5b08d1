//! The core's own monotonic time types.
//!
//! The core never reads a clock: every input carries `now` as an [`Instant`]. Adapters convert
//! from `std::time::Instant` or `embassy_time::Instant` at the boundary (R5: only monotonic
//! time is used, so setting the wall clock back buys nothing).
//!
//! The 64-bit operations the state machines use most (`Instant + Duration`,
//! `Instant::saturating_sub`, `Duration::min` / `max`) are `#[inline(never)]`: on a 32-bit
//! core each is a dozen instructions, inlined at dozens of places (flash over speed, issue 11).

use core::num::NonZeroU64;
use core::ops::{Add, AddAssign, Sub};

/// `x * unit`, saturating at `u64::MAX`: the same value as `x.saturating_mul(unit)`, but the
/// overflow test is a comparison with a constant, so a 32-bit core without a 64-bit multiply
/// does one multiplication instead of a full overflow-checked 64x64 product.
const fn saturating_scale(x: u64, unit: u64) -> u64 {
    if x > u64::MAX / unit {
        u64::MAX
    } else {
        x * unit
    }
}

/// A span of time with microsecond resolution. Arithmetic saturates instead of overflowing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Duration {
    micros: u64,
}

impl Duration {
    /// The empty duration.
    pub const ZERO: Duration = Duration { micros: 0 };
    /// The largest representable duration.
    pub const MAX: Duration = Duration { micros: u64::MAX };

    /// A duration of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Duration { micros }
    }
    /// A duration of `millis` milliseconds (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Duration {
            micros: saturating_scale(millis, 1_000),
        }
    }
    /// A duration of `secs` seconds (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            micros: saturating_scale(secs, 1_000_000),
        }
    }
    /// Whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }
    /// Whole milliseconds (truncated).
    pub const fn as_millis(self) -> u64 {
        self.micros / 1_000
    }
    /// Whole seconds (truncated).
    pub const fn as_secs(self) -> u64 {
        self.micros / 1_000_000
    }
    /// `self * k`, saturating at [`Duration::MAX`].
    pub const fn saturating_mul(self, k: u64) -> Self {
        Duration {
            micros: self.micros.saturating_mul(k),
        }
    }
    /// `self - other`, or zero if `other` is longer.
    pub const fn saturating_sub(self, other: Duration) -> Self {
        Duration {
            micros: self.micros.saturating_sub(other.micros),
        }
    }
    /// The shorter of the two.
    #[inline(never)]
    pub const fn min(self, other: Duration) -> Self {
        if self.micros <= other.micros {
            self
        } else {
            other
        }
    }
    /// The longer of the two.
    #[inline(never)]
    pub const fn max(self, other: Duration) -> Self {
        if self.micros >= other.micros {
            self
        } else {
            other
        }
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration {
            micros: self.micros.saturating_add(rhs.micros),
        }
    }
}

/// From the standard duration: whole microseconds, saturating at [`Duration::MAX`] (sub-microsecond
/// parts are truncated).
///
/// ```
/// let d: accessgate::Duration = core::time::Duration::from_millis(1500).into();
/// assert_eq!(d, accessgate::Duration::from_millis(1500));
/// assert_eq!(accessgate::Duration::from(core::time::Duration::MAX), accessgate::Duration::MAX);
/// ```
impl From<core::time::Duration> for Duration {
    fn from(d: core::time::Duration) -> Duration {
        Duration {
            micros: u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// To the standard duration (exact: every value fits).
///
/// ```
/// let d: core::time::Duration = accessgate::Duration::from_secs(120).into();
/// assert_eq!(d, core::time::Duration::from_secs(120));
/// ```
impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> core::time::Duration {
        core::time::Duration::from_micros(d.micros)
    }
}

impl core::fmt::Display for Duration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ms = self.as_millis();
        if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{}.{:03}s", ms / 1_000, ms % 1_000)
        }
    }
}

/// `(n / d, n % d)` for `d > 0` (`(0, n)` when `d` is zero), by binary long division.
///
/// The core's schedules divide 64-bit microsecond counts only a few times per input; on a
/// Cortex-M0+ (no divide instruction) the compiler's general `u64` division routine costs
/// about 1 KB of flash, this loop about 130 bytes. Bounded (R12): 64 steps.
#[inline(never)]
pub(crate) fn div_rem(n: u64, d: u64) -> (u64, u64) {
    if d == 0 {
        return (0, n);
    }
    // One register pair holds what is left of the dividend at the top and the quotient so far
    // at the bottom: each step moves the dividend's top bit into `r` and a quotient bit in
    // (constant one-bit shifts only).
    let (mut q, mut r) = (n, 0u64);
    let mut i = 0;
    while i < 64 {
        i += 1;
        // `r < d` before the shift, so `r` fits in 65 bits after it: track the lost top bit.
        let top = r >> 63;
        r = (r << 1) | (q >> 63);
        q <<= 1;
        if top == 1 || r >= d {
            r = r.wrapping_sub(d);
            q |= 1;
        }
    }
    (q, r)
}

/// `floor(x * j / k)` for both `j` of `js` (each `<= k`; a zero `k` counts as 1), exact and
/// without overflow or 128-bit arithmetic (see [`div_rem`]); `x / k` is divided once.
pub(crate) fn mul_div(x: u64, js: [u32; 2], k: u32) -> [u64; 2] {
    let k = u64::from(k.max(1));
    let (q, r) = div_rem(x, k);
    // x * j / k = q * j + (r * j) / k, and r * j < k * k < 2^64; q * j <= x.
    js.map(|j| {
        let j = u64::from(j);
        q.wrapping_mul(j).wrapping_add(div_rem(r.wrapping_mul(j), k).0)
    })
}

/// A point on a monotonic clock, in microseconds since an arbitrary origin chosen by the
/// adapter (usually its start-up). Never compared with wall-clock time.
///
/// Stored as microseconds + 1 in a `NonZeroU64`, so `Option<Instant>` is 8 bytes, not 16: the
/// timer table, the event queue and the status hold many of them (RAM, R12). The latest
/// representable instant is `u64::MAX - 1` µs after the origin (584,000 years); arithmetic
/// saturates there.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    raw: NonZeroU64,
}

impl Default for Instant {
    fn default() -> Self {
        Instant::ZERO
    }
}

impl core::fmt::Debug for Instant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Instant")
            .field("micros", &self.as_micros())
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Instant {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Instant {{ micros: {=u64} }}", self.as_micros())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Instant {
            micros: u64,
        }
        Instant {
            micros: self.as_micros(),
        }
        .serialize(s)
    }
}

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant { raw: NonZeroU64::MIN };
    /// The latest representable instant (`u64::MAX - 1` µs): where arithmetic saturates, and
    /// what "never" converts to. No input of a session or gate happens at it: one carrying it
    /// happens 1 µs earlier, so a timer that saturated here never fires (R12: no busy loop at
    /// the end of time).
    pub const MAX: Instant = Instant { raw: NonZeroU64::MAX };

    /// The instant `micros` microseconds after the origin (saturating at `u64::MAX - 1`).
    pub const fn from_micros(micros: u64) -> Self {
        Instant {
            raw: match NonZeroU64::new(micros.saturating_add(1)) {
                Some(raw) => raw,
                None => NonZeroU64::MIN, // unreachable: x + 1 saturating is never 0
            },
        }
    }
    /// The instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant::from_micros(saturating_scale(millis, 1_000))
    }
    /// The instant `secs` seconds after the origin (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Instant::from_micros(saturating_scale(secs, 1_000_000))
    }
    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.raw.get() - 1
    }
    /// The later of the two (as `Ord::max`, out of line: see the module doc).
    #[inline(never)]
    pub const fn max(self, other: Instant) -> Instant {
        if self.raw.get() >= other.raw.get() {
            self
        } else {
            other
        }
    }
    /// The earlier of the two (as `Ord::min`, out of line: see the module doc).
    #[inline(never)]
    pub const fn min(self, other: Instant) -> Instant {
        if self.raw.get() <= other.raw.get() {
            self
        } else {
            other
        }
    }
    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.raw.get().saturating_sub(earlier.raw.get()))
    }
    /// `self - d`, clamped at the origin.
    #[inline(never)]
    pub const fn saturating_sub(self, d: Duration) -> Instant {
        Instant::from_micros(self.as_micros().saturating_sub(d.as_micros()))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    #[inline(never)]
    fn add(self, rhs: Duration) -> Instant {
        // On the stored micros + 1: saturating there is saturating the micros (both end at the
        // last instant), and the sum of a nonzero value stays nonzero.
        Instant {
            raw: self.raw.saturating_add(rhs.as_micros()),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        assert_eq!(
            Instant::from_micros(u64::MAX) + Duration::from_secs(1),
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(Instant::from_secs(1) - Instant::from_secs(2), Duration::ZERO);
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(
            Instant::from_secs(3).saturating_sub(Duration::from_secs(5)),
            Instant::ZERO
        );
    }

    #[test]
    fn long_division_matches_the_hardware_one() {
        let mut rng = fastrand::Rng::with_seed(11);
        let edges = [
            0,
            1,
            2,
            3,
            7,
            1_000,
            1_000_000,
            u64::from(u32::MAX),
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &n in &edges {
            for &d in &edges[1..] {
                assert_eq!(div_rem(n, d), (n / d, n % d), "{n} / {d}");
            }
        }
        for _ in 0..100_000 {
            let n = rng.u64(..) >> rng.u32(0..64);
            let d = (rng.u64(..) >> rng.u32(0..64)).max(1);
            assert_eq!(div_rem(n, d), (n / d, n % d), "{n} / {d}");
        }
        assert_eq!(div_rem(5, 0), (0, 5));
    }

    #[test]
    fn mul_div_matches_128_bit_arithmetic() {
        let mut rng = fastrand::Rng::with_seed(12);
        let reference =
            |x: u64, j: u32, k: u32| (u128::from(x) * u128::from(j) / u128::from(k.max(1))) as u64;
        for &x in &[0, 1, 70_000_000, 120_000_000, u64::MAX / 3, u64::MAX] {
            for k in [0u32, 1, 2, 3, 7, 16, 1_000, u32::MAX] {
                for j in [0, 1, k / 2, k.saturating_sub(1), k] {
                    let got = mul_div(x, [j, k - k.min(1)], k);
                    assert_eq!(
                        got,
                        [reference(x, j, k), reference(x, k - k.min(1), k)],
                        "{x} * {j} / {k}"
                    );
                }
            }
        }
        for _ in 0..100_000 {
            let x = rng.u64(..) >> rng.u32(0..64);
            let k = rng.u32(..) >> rng.u32(0..32);
            let (j, i) = (rng.u32(0..=k), rng.u32(0..=k));
            assert_eq!(
                mul_div(x, [j, i], k),
                [reference(x, j, k), reference(x, i, k)],
                "{x} * {j} / {k}"
            );
        }
    }

    #[test]
    fn unit_constructors_saturate_exactly_like_saturating_mul() {
        for unit in [1_000u64, 1_000_000] {
            let edge = u64::MAX / unit;
            for x in [0, 1, 7, edge - 1, edge, edge + 1, u64::MAX / 2, u64::MAX] {
                assert_eq!(saturating_scale(x, unit), x.saturating_mul(unit), "{x} * {unit}");
            }
        }
        assert_eq!(Duration::from_secs(u64::MAX / 1_000_000 + 1), Duration::MAX);
        assert_eq!(
            Instant::from_millis(u64::MAX / 1_000).as_micros(),
            u64::MAX / 1_000 * 1_000
        );
    }
}
