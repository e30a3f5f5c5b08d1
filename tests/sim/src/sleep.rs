//! How a driver's virtual clock moves in a step that ends in a timer input: the four ways a
//! real driver wakes (on time, early, late, on a tick), shared by the gate and the session
//! worlds so both exercise the machines' timers alike.

use accessgate::{Duration, Instant};
use rand::RngExt;
use rand_pcg::Pcg64Mcg;

/// The ways a driver's timer wakes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// At the machine's `poll_timeout` (or, with no timer set, after up to one `unit`).
    OnTime,
    /// Another input or a spurious wake-up: any instant before the timer.
    Early,
    /// The driver oversleeps: past the timer, maybe past the deadline and more.
    Oversleep,
    /// A periodic tick of up to half a `unit`, whatever the timer says.
    Tick,
}

impl Wake {
    /// The step's label in a trace.
    pub(crate) fn note(self) -> &'static str {
        match self {
            Wake::OnTime => "wake",
            Wake::Early => "early",
            Wake::Oversleep => "oversleep",
            Wake::Tick => "tick",
        }
    }

    /// The instant the driver wakes at, from `now`, with the machine's timer at `timer`;
    /// `unit` is the attempt timeout and `budget` the fail-closed budget. Also whether this
    /// wake was early before its timer (for the coverage counts).
    pub(crate) fn at(
        self,
        now: Instant,
        timer: Option<Instant>,
        unit: Duration,
        budget: Duration,
        rng: &mut Pcg64Mcg,
    ) -> (Instant, bool) {
        let up_to =
            |rng: &mut Pcg64Mcg, max: Duration| Duration::from_micros(rng.random_range(0..=max.as_micros()));
        match (self, timer) {
            (Wake::OnTime, Some(t)) => (now.max(t), false),
            (Wake::Early, Some(t)) if t > now => {
                let room = t - now;
                (
                    now + Duration::from_micros(rng.random_range(0..room.as_micros())),
                    true,
                )
            }
            (Wake::OnTime | Wake::Early, _) => (now + up_to(rng, unit), false),
            (Wake::Oversleep, _) => {
                let d = Duration::from_micros(rng.random_range(1..=budget.saturating_mul(2).as_micros()));
                (now.max(timer.unwrap_or(now)) + d, false)
            }
            (Wake::Tick, _) => (
                now + up_to(rng, Duration::from_micros(unit.as_micros() / 2)),
                false,
            ),
        }
    }
}
