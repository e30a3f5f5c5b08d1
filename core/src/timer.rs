//! The one timer table of a session (in the shape of quinn-proto's `timer.rs`): every timer
//! the machine can arm, one slot each, and the earliest of them is what `poll_timeout` says.

use crate::time::Instant;

/// Every timer of a session. The first three belong to the entitlement part (R4–R7), the last
/// three to the token part (R11). Declaration order breaks ties between timers due at the same
/// instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The attempt in flight times out (R4).
    Attempt = 0,
    /// The next check retry or recovery probe starts (R6, R7).
    Retry = 1,
    /// The fail-closed deadline of the current run of failures (R5).
    Deadline = 2,
    /// The access token should be refreshed (R11).
    RefreshDue = 3,
    /// A failed refresh is retried, or a held-back refresh may start (R11).
    RefreshRetry = 4,
    /// The refresh in flight times out.
    RefreshTimeout = 5,
}

/// The entitlement part's timers, fired at their own instants before an input's body.
pub(crate) const CHECK_TIMERS: [Timer; 2] = [Timer::Attempt, Timer::Deadline];
/// The token part's timers, fired after an input's body.
pub(crate) const TOKEN_TIMERS: [Timer; 3] = [Timer::RefreshDue, Timer::RefreshRetry, Timer::RefreshTimeout];

const COUNT: usize = 6;

/// One optional expiry per [`Timer`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; COUNT],
}

impl TimerTable {
    /// No timer armed.
    pub(crate) const NONE: TimerTable = TimerTable { at: [None; COUNT] };

    /// Arms `timer` for `at`, replacing whatever it was armed for.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer as usize] = Some(at);
    }
    /// Arms or disarms `timer`.
    pub(crate) fn put(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer as usize] = at;
    }
    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }
    /// When `timer` expires, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer as usize]
    }
    /// Whether `timer` is armed.
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.at[timer as usize].is_some()
    }
    /// Whether `timer` is armed for `now` or earlier.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }
    /// The earliest expiry of all timers.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for at in self.at.iter().flatten() {
            if next.is_none_or(|n| *at < n) {
                next = Some(*at);
            }
        }
        next
    }
    /// The earliest timer of `group` due at `now`, disarmed, with its expiry. Ties go to the
    /// timer declared first (`group` lists its timers in declaration order).
    pub(crate) fn take_due(&mut self, group: &[Timer], now: Instant) -> Option<(Instant, Timer)> {
        let mut best: Option<(Instant, Timer)> = None;
        for &t in group {
            if let Some(at) = self.get(t).filter(|&at| at <= now) {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, t));
                }
            }
        }
        if let Some((_, t)) = best {
            self.stop(t);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_due_timer_of_a_group_fires_first_and_ties_go_to_declaration_order() {
        let mut t = TimerTable::default();
        let at = Instant::from_micros;
        t.set(Timer::Deadline, at(5));
        t.set(Timer::Attempt, at(5));
        t.set(Timer::RefreshDue, at(1));
        assert_eq!(t.next_expiry(), Some(at(1)));
        assert_eq!(t.take_due(&CHECK_TIMERS, at(4)), None);
        assert_eq!(t.take_due(&CHECK_TIMERS, at(5)), Some((at(5), Timer::Attempt)));
        assert_eq!(t.take_due(&CHECK_TIMERS, at(5)), Some((at(5), Timer::Deadline)));
        assert_eq!(t.take_due(&CHECK_TIMERS, at(9)), None);
        // Different instants: the earliest first, whatever the declaration order (R5: timers
        // fire at their own instants, in order).
        t.set(Timer::Attempt, at(7));
        t.set(Timer::Deadline, at(6));
        assert_eq!(t.take_due(&CHECK_TIMERS, at(9)), Some((at(6), Timer::Deadline)));
        assert_eq!(t.take_due(&CHECK_TIMERS, at(9)), Some((at(7), Timer::Attempt)));
        assert!(t.is_due(Timer::RefreshDue, at(1)));
        t.stop(Timer::RefreshDue);
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn groups_list_their_timers_in_declaration_order() {
        // `take_due` breaks ties by the order of the group: it must be declaration order.
        for group in [&CHECK_TIMERS[..], &TOKEN_TIMERS[..]] {
            assert!(
                group.windows(2).all(|w| (w[0] as usize) < (w[1] as usize)),
                "{group:?}"
            );
        }
    }
}
