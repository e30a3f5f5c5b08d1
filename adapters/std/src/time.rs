//! The one place where tokio's clock meets the core's [`accessgate::Instant`].
//!
//! The core counts microseconds since an origin the adapter picks; ours is the
//! [`tokio::time::Instant`] at which the gate was spawned. Using `tokio::time` (not
//! `std::time`) lets tests pause and advance time. Only monotonic time is used (R5).

use tokio::time::Instant as TokioInstant;

/// Converts between tokio instants and the core's instants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: TokioInstant,
}

impl Clock {
    /// A clock whose origin is now.
    pub(crate) fn start() -> Self {
        Clock {
            origin: TokioInstant::now(),
        }
    }

    /// The origin as a tokio instant.
    pub(crate) fn origin(self) -> TokioInstant {
        self.origin
    }

    /// The core's `now`.
    pub(crate) fn now(self) -> accessgate::Instant {
        self.to_core(TokioInstant::now())
    }

    /// A tokio instant as the core's instant (saturating at the origin and at `u64::MAX` µs).
    pub(crate) fn to_core(self, t: TokioInstant) -> accessgate::Instant {
        let micros = t.saturating_duration_since(self.origin).as_micros();
        accessgate::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The core's instant as a tokio instant. An instant too far out for the platform clock
    /// (the core saturates at `u64::MAX` µs) becomes "in about a year": never reached by a
    /// live timer, and never a panic.
    pub(crate) fn to_tokio(self, t: accessgate::Instant) -> TokioInstant {
        const FAR: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);
        self.origin
            .checked_add(std::time::Duration::from_micros(t.as_micros()))
            .or_else(|| TokioInstant::now().checked_add(FAR))
            .unwrap_or_else(TokioInstant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn round_trips_and_saturates() {
        let clock = Clock::start();
        assert_eq!(clock.now(), accessgate::Instant::ZERO);
        tokio::time::advance(std::time::Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), accessgate::Instant::from_millis(1500));
        let t = accessgate::Instant::from_millis(2500);
        assert_eq!(clock.to_core(clock.to_tokio(t)), t);
        // Before the origin saturates to the origin; a huge instant does not panic.
        assert_eq!(
            clock.to_core(clock.origin() - std::time::Duration::from_millis(1)),
            accessgate::Instant::ZERO
        );
        let _ = clock.to_tokio(accessgate::Instant::from_micros(u64::MAX));
    }
}
