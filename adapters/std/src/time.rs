//! The one place where the host's clocks meet the core's [`accessgate::Instant`].
//!
//! The core counts microseconds since an origin the adapter picks: ours is the
//! [`tokio::time::Instant`] at which the gate was spawned. The gate's `now` is tokio's clock
//! since then **plus the time the machine spent suspended since then**:
//!
//! - tokio's clock (`std::time::Instant`) stops while a Linux or macOS machine sleeps. A laptop
//!   that sleeps for a night would otherwise wake up with a fail-closed deadline that had not
//!   passed (R5: "going offline can never keep access past the deadline"), a grant nobody has
//!   re-checked for hours, and an access token it believes fresh though it expired during the
//!   night (R11: `access_token()` would hand it out, and the app's API calls would get 401).
//! - The boot clock (`CLOCK_BOOTTIME` on Linux and Android, `CLOCK_MONOTONIC` on Apple
//!   systems, read through `rustix`) keeps counting while suspended. Both clocks tick alike
//!   when awake and neither can be set, so how far the boot clock ran ahead of tokio's since
//!   the origin is the time slept ([`Slept`]). On Windows tokio's clock already counts
//!   suspended time, and on other systems the boot clock is not read: nothing is added there.
//! - tokio's timers also stop while suspended: the driver task sleeps at most
//!   [`RESUME_NAP`] at a time while a timeout is pending, so the session sees a resumed
//!   machine's real `now` within that time, also when no call comes.
//!
//! Using `tokio::time` (not `std::time`) for the awake part lets tests pause and advance time
//! (the slept part is 0 there: the real clocks do not move apart). Only monotonic time is
//! used, never the wall clock (R5).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant as TokioInstant;

/// The longest the driver task sleeps while a timeout is pending (see the module docs): how
/// late, at most, a deadline that passed while the machine slept is noticed without a call.
pub(crate) const RESUME_NAP: std::time::Duration = std::time::Duration::from_secs(1);

/// Converts between tokio instants and the core's instants.
#[derive(Debug)]
pub(crate) struct Clock {
    origin: TokioInstant,
    slept: Slept,
}

impl Clock {
    /// A clock whose origin is now.
    pub(crate) fn start() -> Self {
        Clock {
            origin: TokioInstant::now(),
            slept: Slept::system(),
        }
    }

    /// A clock whose slept time is what `slept` holds (µs): tests suspend a gate with it.
    #[cfg(test)]
    pub(crate) fn manual(slept: std::sync::Arc<AtomicU64>) -> Self {
        Clock {
            origin: TokioInstant::now(),
            slept: Slept {
                source: Source::Manual(slept),
                most: AtomicU64::new(0),
            },
        }
    }

    /// The origin as a tokio instant.
    pub(crate) fn origin(&self) -> TokioInstant {
        self.origin
    }

    /// The core's `now`: awake time since the origin plus time slept (module docs).
    pub(crate) fn now(&self) -> accessgate::Instant {
        let awake = TokioInstant::now().saturating_duration_since(self.origin);
        let micros = awake.as_micros().saturating_add(u128::from(self.slept.micros()));
        accessgate::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The core's instant as a tokio instant, as of now: the time slept so far is taken off
    /// (a later suspend moves the answer). An instant too far out for the platform clock (the
    /// core saturates at `u64::MAX` µs) becomes "in about a year": never reached by a live
    /// timer, and never a panic.
    pub(crate) fn to_tokio(&self, t: accessgate::Instant) -> TokioInstant {
        const FAR: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);
        let awake = t.as_micros().saturating_sub(self.slept.micros());
        self.origin
            .checked_add(std::time::Duration::from_micros(awake))
            .or_else(|| TokioInstant::now().checked_add(FAR))
            .unwrap_or_else(TokioInstant::now)
    }
}

/// The time the machine spent suspended since the origin, in microseconds; never decreases.
#[derive(Debug)]
struct Slept {
    source: Source,
    /// The most ever read: the gate's `now` never steps back on a noisy reading.
    most: AtomicU64,
}

#[derive(Debug)]
enum Source {
    /// The boot clock at the origin (µs), and tokio's awake clock at the same moment.
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    Boot { boot: u64, awake: std::time::Instant },
    /// Nothing to add: tokio's clock counts suspended time (Windows), or no boot clock is read.
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    Awake,
    #[cfg(test)]
    Manual(std::sync::Arc<AtomicU64>),
}

impl Slept {
    fn system() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
        let source = Source::Boot {
            boot: boot_micros(),
            awake: std::time::Instant::now(),
        };
        #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
        let source = Source::Awake;
        Slept {
            source,
            most: AtomicU64::new(0),
        }
    }

    fn micros(&self) -> u64 {
        let read = match &self.source {
            #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
            Source::Boot { boot, awake } => {
                // The boot clock read between two awake readings: it ran ahead of the awake
                // clock by the time slept, give or take the gap between the readings. A pair
                // far apart (the thread was preempted) is not used; whole milliseconds only,
                // so reading noise never adds time.
                let before = awake.elapsed();
                let boot = boot_micros().saturating_sub(*boot);
                let after = awake.elapsed();
                let close = after.saturating_sub(before) < std::time::Duration::from_millis(1);
                let ahead = boot.saturating_sub(u64::try_from(after.as_micros()).unwrap_or(u64::MAX));
                if close {
                    ahead / 1000 * 1000
                } else {
                    0
                }
            }
            #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
            Source::Awake => 0,
            #[cfg(test)]
            Source::Manual(slept) => slept.load(Ordering::Relaxed),
        };
        self.most.fetch_max(read, Ordering::Relaxed).max(read)
    }
}

/// The boot clock in microseconds: `CLOCK_BOOTTIME` on Linux and Android, `CLOCK_MONOTONIC`
/// on Apple systems (which there counts suspended time; `std::time::Instant` uses
/// `CLOCK_UPTIME_RAW`, which does not).
#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn boot_micros() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let id = rustix::time::ClockId::Boottime;
    #[cfg(target_vendor = "apple")]
    let id = rustix::time::ClockId::Monotonic;
    let t = rustix::time::clock_gettime(id);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn round_trips_and_saturates() {
        let clock = Clock::start();
        assert_eq!(clock.now(), accessgate::Instant::ZERO);
        tokio::time::advance(std::time::Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), accessgate::Instant::from_millis(1500));
        let t = accessgate::Instant::from_millis(2500);
        assert_eq!(clock.now().as_micros() + 1_000_000, t.as_micros());
        assert_eq!(
            clock.to_tokio(t),
            clock.origin() + std::time::Duration::from_millis(2500)
        );
        // A huge instant does not panic.
        let _ = clock.to_tokio(accessgate::Instant::from_micros(u64::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn time_slept_is_added_to_now_and_taken_off_timers_and_never_steps_back() {
        let slept = Arc::new(AtomicU64::new(0));
        let clock = Clock::manual(slept.clone());
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        // An hour asleep: tokio's clock did not move, the gate's did.
        slept.store(3_600_000_000, Ordering::Relaxed);
        assert_eq!(clock.now(), accessgate::Instant::from_secs(3_610));
        // A gate instant 5 s ahead is 5 s ahead on tokio's clock too.
        let at = clock.to_tokio(accessgate::Instant::from_secs(3_615));
        assert_eq!(at, TokioInstant::now() + std::time::Duration::from_secs(5));
        // An instant from before the suspend maps to the origin at the earliest: due at once.
        assert_eq!(clock.to_tokio(accessgate::Instant::from_secs(20)), clock.origin());
        // A lower reading (noise) never takes time back.
        slept.store(1_000_000, Ordering::Relaxed);
        assert_eq!(clock.now(), accessgate::Instant::from_secs(3_610));
    }

    /// On this machine (not suspended while the test runs) the real clocks add nothing, and
    /// whatever they read, `now` never steps back.
    #[test]
    fn the_real_clocks_add_nothing_while_awake() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let clock = Clock::start();
            let mut last = clock.now();
            for _ in 0..10_000 {
                let now = clock.now();
                assert!(now >= last, "now stepped back: {last:?} -> {now:?}");
                last = now;
            }
            // No suspend in a unit test's lifetime: at most a reading's rounding.
            assert!(clock.slept.micros() <= 1000, "slept {} µs", clock.slept.micros());
        });
    }
}
