//! The event queue: a bucketed timing wheel keyed by microsecond time.
//!
//! The wheel has `2^SLOT_BITS` slots of `SLOT_MICROS` each (1 ms x 65,536 = about 65 s ahead).
//! An event further ahead waits in an overflow binary heap and moves into the wheel when the
//! wheel comes within reach of it. When the simulation reaches a slot, the slot's events are
//! sorted by `(time, device)` once and popped in that order; an event pushed into the slot
//! being processed is inserted in order. Pops are therefore in `(time, device)` order, a total
//! order that does not depend on insertion order, which keeps a run deterministic.
//!
//! Compared with a plain binary heap over all events, pushes are O(1) (a `Vec::push` into
//! the slot), and sorting a slot touches a small, contiguous vector; the heap is only used
//! for events more than a minute ahead (hourly token refreshes), which are few per device.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

const SLOT_BITS: u32 = 16;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MICROS: u64 = 1_000;
const SPAN: u64 = SLOTS as u64 * SLOT_MICROS;

/// One queued wake-up: `(time in microseconds, device index)`.
pub type Entry = (u64, u32);

/// A monotone priority queue of `(time, device)` wake-ups: a pushed time must not be earlier
/// than the last popped one (the simulator never schedules into the past).
#[derive(Debug)]
pub struct TimingWheel {
    slots: Vec<Vec<Entry>>,
    /// Start time of the slot being processed (a multiple of `SLOT_MICROS`).
    cursor: u64,
    /// The current slot's events, sorted descending so the next one pops from the end.
    ready: Vec<Entry>,
    /// Events at or beyond `cursor + SPAN`.
    overflow: BinaryHeap<Reverse<Entry>>,
    /// Events in `slots` (not counting `ready` or `overflow`).
    in_wheel: usize,
}

impl Default for TimingWheel {
    fn default() -> Self {
        Self::new()
    }
}

impl TimingWheel {
    /// An empty wheel positioned at time zero.
    pub fn new() -> Self {
        TimingWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
            ready: Vec::new(),
            overflow: BinaryHeap::new(),
            in_wheel: 0,
        }
    }

    /// Number of queued entries.
    pub fn len(&self) -> usize {
        self.ready.len() + self.in_wheel + self.overflow.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a wake-up. A time earlier than the slot being processed is treated as "now"
    /// (it pops next); the simulator never does that.
    pub fn push(&mut self, time: u64, device: u32) {
        let time = time.max(self.cursor);
        if time < self.cursor + SLOT_MICROS {
            // Into the slot being processed, in order (descending vector).
            let e = (time, device);
            let at = self.ready.partition_point(|x| *x > e);
            self.ready.insert(at, e);
        } else if time < self.cursor + SPAN {
            self.slots[Self::slot_of(time)].push((time, device));
            self.in_wheel += 1;
        } else {
            self.overflow.push(Reverse((time, device)));
        }
    }

    /// Removes and returns the earliest `(time, device)`.
    pub fn pop(&mut self) -> Option<Entry> {
        loop {
            if let Some(e) = self.ready.pop() {
                return Some(e);
            }
            if self.in_wheel == 0 {
                // Nothing within the wheel's span: jump straight to the next overflow event.
                let Reverse((t, _)) = *self.overflow.peek()?;
                self.cursor = t - t % SLOT_MICROS;
            } else {
                self.cursor += SLOT_MICROS;
            }
            self.refill();
        }
    }

    /// The earliest queued time, without removing it.
    pub fn peek_time(&mut self) -> Option<u64> {
        let e = self.pop()?;
        // Put it back at the front; it is the minimum of the current slot.
        self.ready.push(e);
        Some(e.0)
    }

    /// The device of the `k`-th entry after the next one, if it is in the slot being
    /// processed (for touching its state early: see the simulator's look-ahead).
    pub fn ahead(&self, k: usize) -> Option<u32> {
        let n = self.ready.len();
        (k < n).then(|| self.ready[n - 1 - k].1)
    }

    fn slot_of(time: u64) -> usize {
        ((time / SLOT_MICROS) as usize) & (SLOTS - 1)
    }

    /// Loads the slot starting at `cursor` into `ready`, first pulling in overflow events
    /// that the wheel now covers.
    fn refill(&mut self) {
        let horizon = self.cursor + SPAN;
        while let Some(&Reverse((t, d))) = self.overflow.peek() {
            if t >= horizon {
                break;
            }
            self.overflow.pop();
            self.slots[Self::slot_of(t)].push((t, d));
            self.in_wheel += 1;
        }
        // `ready` is empty here: swap the vectors so both keep their capacity (no allocation
        // in the steady state).
        let slot = &mut self.slots[Self::slot_of(self.cursor)];
        self.in_wheel -= slot.len();
        std::mem::swap(&mut self.ready, slot);
        self.ready.sort_unstable_by(|a, b| b.cmp(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_device_order_like_a_heap() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut wheel = TimingWheel::new();
        let mut heap = BinaryHeap::new();
        let mut now = 0u64;
        for round in 0..20_000u32 {
            // Mix near (same slot), mid (within the wheel) and far (overflow) pushes.
            for _ in 0..rng.usize(0..3) {
                let dt = match rng.u8(0..4) {
                    0 => rng.u64(0..SLOT_MICROS),
                    1 => rng.u64(0..SPAN),
                    2 => rng.u64(SPAN..10 * SPAN),
                    _ => 0,
                };
                let dev = rng.u32(0..50);
                wheel.push(now + dt, dev);
                heap.push(Reverse((now + dt, dev)));
            }
            if round % 2 == 0 {
                let a = wheel.pop();
                let b = heap.pop().map(|Reverse(e)| e);
                assert_eq!(a, b, "round {round}");
                if let Some((t, _)) = a {
                    now = t;
                }
            }
            assert_eq!(wheel.len(), heap.len());
        }
        while let Some(Reverse(e)) = heap.pop() {
            assert_eq!(wheel.pop(), Some(e));
        }
        assert!(wheel.is_empty());
        assert_eq!(wheel.pop(), None);
    }

    #[test]
    fn peek_does_not_consume() {
        let mut w = TimingWheel::new();
        w.push(5_000_000_000, 1);
        w.push(7, 2);
        assert_eq!(w.peek_time(), Some(7));
        assert_eq!(w.pop(), Some((7, 2)));
        assert_eq!(w.peek_time(), Some(5_000_000_000));
        assert_eq!(w.pop(), Some((5_000_000_000, 1)));
    }
}
