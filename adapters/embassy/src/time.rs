//! The one place where embassy's clock meets the core's (like embassy-net's `time.rs` for
//! smoltcp): the core keeps its own [`accessgate::Instant`] (microseconds on a monotonic
//! clock), the driver keeps [`embassy_time::Instant`] (ticks since boot). Both count from
//! boot, so the conversion is a change of unit. That clock must keep counting through any
//! low-power mode the board enters (an RTC-backed time driver does; a SysTick stopped in deep
//! sleep does not): a clock that stops would stretch the fail-closed deadline (R5) and the
//! token's lifetime (R11) by the time slept. The desktop adapter reads the boot clock for the
//! same reason.
//!
//! Rounding is chosen so that waking up never happens early: [`to_embassy`] rounds **up**
//! to the next tick and [`to_core`] rounds **down** to the microsecond, so once
//! `embassy_time::Instant::now() >= to_embassy(t)`, `to_core(now) >= t` holds and the core
//! sees its timer as due (R5: the gate fails closed on the tick, not one wake-up later).

/// The core's time for an embassy instant (ticks rounded down to whole microseconds).
pub fn to_core(t: embassy_time::Instant) -> accessgate::Instant {
    // In u128 so no tick count can overflow; saturates at the core's far end.
    let micros = u128::from(t.as_ticks()) * 1_000_000 / u128::from(embassy_time::TICK_HZ);
    accessgate::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// The embassy instant at or just after a core instant; [`embassy_time::Instant::MAX`] if it
/// is beyond embassy's range, or the core's far end ([`accessgate::Instant::MAX`]).
pub fn to_embassy(t: accessgate::Instant) -> embassy_time::Instant {
    if t == accessgate::Instant::MAX {
        return embassy_time::Instant::MAX;
    }
    embassy_time::Instant::from_ticks(ticks_ceil(t.as_micros()))
}

/// A core duration as an embassy duration (rounded up; saturating).
pub fn duration_to_embassy(d: accessgate::Duration) -> embassy_time::Duration {
    embassy_time::Duration::from_ticks(ticks_ceil(d.as_micros()))
}

/// Microseconds to ticks, rounded up, saturating. Done in u128 by hand: embassy-time 0.5.1's
/// own `try_from_micros` overflows near `u64::MAX` (its `div_ceil` adds before dividing).
fn ticks_ceil(micros: u64) -> u64 {
    let ticks = (u128::from(micros) * u128::from(embassy_time::TICK_HZ)).div_ceil(1_000_000);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// An embassy duration as a core duration (rounded down, saturating).
pub fn duration_to_core(d: embassy_time::Duration) -> accessgate::Duration {
    let micros = u128::from(d.as_ticks()) * 1_000_000 / u128::from(embassy_time::TICK_HZ);
    accessgate::Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Now, on the core's clock.
pub fn now() -> accessgate::Instant {
    to_core(embassy_time::Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_never_wakes_early() {
        for us in [0u64, 1, 999, 1_000, 30_517, 1_000_001, 86_400_000_000] {
            let core = accessgate::Instant::from_micros(us);
            let e = to_embassy(core);
            assert!(to_core(e) >= core, "{us} µs -> {} ticks", e.as_ticks());
        }
    }

    #[test]
    fn far_future_saturates_instead_of_overflowing() {
        let _ = to_core(embassy_time::Instant::MAX); // must not panic
        assert_eq!(
            to_embassy(accessgate::Instant::from_micros(u64::MAX)),
            embassy_time::Instant::MAX
        );
        assert_eq!(
            duration_to_embassy(accessgate::Duration::MAX),
            embassy_time::Duration::MAX
        );
    }

    #[test]
    fn durations_round_trip() {
        let d = accessgate::Duration::from_millis(300);
        assert_eq!(duration_to_core(duration_to_embassy(d)), d);
    }
}
