//! What a session machine owns once: the clock, the generation counter, the timer table, the
//! event queue, the PRNG, the counters and the outputs not yet polled. The entitlement part
//! ([`crate::gate`]) and the token part ([`crate::session`]) both work on this one value, so
//! nothing is kept twice and nothing has to be re-synchronised after an input.

use crate::gate::{Counters, Event, Generation};
use crate::session::RefreshId;
use crate::time::Instant;
use crate::timer::TimerTable;

/// The latest instant an input can happen at: `Instant::MAX` is "never" (see
/// [`Shared::advance`]).
const LAST_INPUT: Instant = Instant::MAX.saturating_sub(crate::time::Duration::from_micros(1));

/// The shared state of one machine. `E` is the event type of its queue (the gate's [`Event`]
/// for a bare [`Gate`](crate::Gate), [`SessionEvent`](crate::SessionEvent) for a session),
/// `Q` the queue's capacity.
#[derive(Clone, Debug)]
#[repr(C)] // the fields used most first, the queue last: short offsets on a Cortex-M0+ (flash)
pub(crate) struct Shared<E, const Q: usize> {
    /// The latest `now` any input carried; inputs with an earlier `now` happen at this instant.
    pub now: Instant,
    pub timers: TimerTable,
    /// Where the request of the attempt in flight is (the entitlement part builds it from
    /// its own state when the driver polls).
    pub check: Handout,
    /// Bumped on every session start, token refresh and session end (R10). It doubles as the
    /// token handle of a session: a token belongs to exactly one generation.
    pub generation: Generation,
    /// A handed-out check that no longer matters, until the driver polls it.
    pub cancel_check: Option<(Generation, u32)>,
    /// A handed-out refresh that no longer matters, until the driver polls it.
    pub cancel_refresh: Option<RefreshId>,
    pub rng: fastrand::Rng,
    pub counters: Counters,
    events: heapless::Deque<E, Q>,
}

impl<E: From<Event>, const Q: usize> Shared<E, Q> {
    pub(crate) const fn new(seed: u64) -> Self {
        Shared {
            now: Instant::ZERO,
            generation: Generation(0),
            timers: TimerTable::NONE,
            rng: fastrand::Rng::with_seed(seed),
            counters: Counters::ZERO,
            events: heapless::Deque::new(),
            check: Handout::None,
            cancel_check: None,
            cancel_refresh: None,
        }
    }

    /// Time passes to `now`, never backwards: the instant every input then works with. Out of
    /// line: every input starts with it (flash, issue 11).
    ///
    /// No input happens at the last instant, [`Instant::MAX`], which is "never" (every timer
    /// planned near the end of time saturates there): an input at it happens 1 µs earlier. At
    /// `MAX` itself a timer planned by the input would be due at once, so an attempt timing out
    /// at `MAX` planned its probe at `MAX`, whose attempt timed out at `MAX`: a driver sleeping
    /// until `poll_timeout` looped, starting a check with an expired token each time (R12: no
    /// busy loop; R11: no dead token sent).
    #[inline(never)]
    pub(crate) fn advance(&mut self, now: Instant) -> Instant {
        let now = if now == Instant::MAX { LAST_INPUT } else { now };
        self.now = self.now.max(now);
        self.now
    }

    /// Queues an event. Inputs never fail for lack of room (R12): when a driver has not drained
    /// the queue, the oldest event makes room and the loss is counted.
    pub(crate) fn push(&mut self, e: impl Into<E>) {
        let e = e.into();
        if self.events.is_full() {
            self.events.pop_front();
            self.counters.events_lost = self.counters.events_lost.saturating_add(1);
        }
        let _ = self.events.push_back(e);
    }

    pub(crate) fn pop_event(&mut self) -> Option<E> {
        self.events.pop_front()
    }
}

/// Counts one more, saturating (R13: counters never wrap). Out of line: every counter of the
/// machine goes through it (flash).
#[inline(never)]
pub(crate) fn inc(c: &mut u32) {
    *c = c.saturating_add(1);
}

/// Where the request of the attempt in flight is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handout {
    /// No attempt in flight, or its request was answered.
    None,
    /// Started, not yet polled by the driver: withdrawn silently if it stops mattering.
    Pending,
    /// Polled by the driver: ending it early owes the driver a cancel.
    HandedOut,
}
