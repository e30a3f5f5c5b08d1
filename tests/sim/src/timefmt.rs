//! Compact time formatting for traces: microsecond precision, because small configurations
//! work in microseconds and ties to the tick matter (I3).

use accessgate::{Duration, Instant};
use core::fmt;

/// Formats an [`Instant`] as seconds with six decimals (`12.000345s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At(pub Instant);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        write!(f, "{}.{:06}s", us / 1_000_000, us % 1_000_000)
    }
}

/// Formats an optional instant, `-` for `None`.
pub(crate) struct OptAt(pub Option<Instant>);

impl fmt::Display for OptAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => At(t).fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Formats a [`Duration`] exactly: `3us`, `2s`, `1.500000s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if us.is_multiple_of(1_000_000) {
            write!(f, "{}s", us / 1_000_000)
        } else if us < 1_000_000 {
            write!(f, "{us}us")
        } else {
            write!(f, "{}.{:06}s", us / 1_000_000, us % 1_000_000)
        }
    }
}
