//! `ours, old schedule`: the gate's retry and probe timing before issue 10, kept so the tables
//! show the change side by side. It reproduces the old core (`ddbdc23`) for everything the
//! fleet drives (sign-in, refresh, responses, timers), with the same PRNG draws in the same
//! order, so it gives that core's figures exactly:
//!
//! - R6 then: 8 retries planned when a streak begins, the `k`-th delay uniform in
//!   `[1 µs, min(20 s, 2 s * 2^k)]` (full jitter) after the previous failure; the last one
//!   uniform in the 20 s before `deadline - attempt timeout`; a delay that lands later than
//!   that is redrawn inside the window; `Retry-After` (floored 1 s, capped 10 min) replaces the
//!   delay.
//! - R7 then: probes after failing closed with full jitter on 30 s doubling to 10 min.
//!
//! Access, deadline (R5) and supersession (R10) follow the same rules as the real gate.

use accessgate::{Access, CheckOutcome, Duration, Generation, Instant};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const BUDGET: Duration = Duration::from_secs(120);
const RETRIES: usize = 8;
const RETRY_BASE: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(20);
const PROBE_BASE: Duration = Duration::from_secs(30);
const PROBE_CAP: Duration = Duration::from_secs(600);

/// `min(cap, base * 2^k)`.
fn ceiling(base: Duration, cap: Duration, k: u32) -> Duration {
    let mut d = base;
    for _ in 0..k.min(64) {
        if d >= cap {
            break;
        }
        d = d.saturating_mul(2);
    }
    d.min(cap)
}

fn delay_jitter(ceiling: Duration, rng: &mut fastrand::Rng) -> Duration {
    Duration::from_micros(rng.u64(1..=ceiling.as_micros().max(1)))
}

fn uniform_between(from: Instant, to: Instant, rng: &mut fastrand::Rng) -> Instant {
    from + Duration::from_micros(rng.u64(0..=(to - from).as_micros()))
}

#[derive(Clone, Copy, Debug)]
struct Streak {
    deadline: Instant,
    failed_closed: bool,
    probes: u32,
}

/// The old schedule's gate, reduced to what the fleet drives.
#[derive(Clone, Debug)]
pub struct OldGate {
    rng: fastrand::Rng,
    generation: u32,
    signed_in: bool,
    access: Access,
    in_flight: Option<u32>,
    next_attempt: u32,
    pending: Option<u32>,
    streak: Option<Streak>,
    delays: [Duration; RETRIES],
    used: usize,
    /// Timers: attempt timeout, retry, deadline (fired in this order at one instant).
    timers: [Option<Instant>; 3],
    retry_due: bool,
}

impl OldGate {
    /// A signed-out gate seeded like the real one.
    pub fn new(seed: u64) -> Self {
        OldGate {
            rng: fastrand::Rng::with_seed(seed),
            generation: 0,
            signed_in: false,
            access: Access::Unknown,
            in_flight: None,
            next_attempt: 0,
            pending: None,
            streak: None,
            delays: [Duration::ZERO; RETRIES],
            used: RETRIES,
            timers: [None; 3],
            retry_due: false,
        }
    }

    /// What the app renders.
    pub fn access(&self) -> Access {
        self.access
    }

    /// When to call [`OldGate::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// The check to send, as (generation, attempt).
    pub fn poll_check(&mut self) -> Option<(Generation, u32)> {
        self.pending.take().map(|a| (Generation(self.generation), a))
    }

    /// Sign-in: a new generation and attempt 0 (R3).
    pub fn start_session(&mut self, now: Instant) {
        self.input(now, |g, now| {
            if g.signed_in {
                g.end_session();
            }
            g.generation = g.generation.wrapping_add(1);
            g.signed_in = true;
            g.start_attempt(now);
        });
    }

    /// Token refresh: a new generation and attempt 0; the streak and its deadline stay.
    pub fn token_refreshed(&mut self, now: Instant) {
        self.input(now, |g, now| {
            if g.signed_in {
                g.generation = g.generation.wrapping_add(1);
                g.next_attempt = 0;
                g.start_attempt(now);
            }
        });
    }

    /// A check's outcome; stale ones are dropped (R10).
    pub fn handle_check_result(
        &mut self,
        now: Instant,
        generation: Generation,
        attempt: u32,
        o: CheckOutcome,
    ) {
        self.input(now, |g, now| {
            if !g.signed_in || generation.0 != g.generation || g.in_flight != Some(attempt) {
                return;
            }
            match o {
                CheckOutcome::Granted => g.definitive(Access::Granted),
                CheckOutcome::Denied => g.definitive(Access::Denied),
                CheckOutcome::Unauthorized => g.end_session(),
                CheckOutcome::Transient { retry_after, .. } => g.attempt_failed(now, retry_after),
            }
        });
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.input(now, |_, _| {});
    }

    fn input(&mut self, now: Instant, f: impl FnOnce(&mut Self, Instant)) {
        for _ in 0..8 {
            let due = (0..3)
                .filter_map(|i| self.timers[i].filter(|&at| at <= now).map(|at| (at, i)))
                .min();
            let Some((at, i)) = due else { break };
            self.timers[i] = None;
            match i {
                0 => self.attempt_failed(at, None),
                1 => self.retry_due = true,
                _ => self.fail_closed(at),
            }
        }
        f(self, now);
        if core::mem::take(&mut self.retry_due) && self.signed_in && self.in_flight.is_none() {
            self.start_attempt(now);
        }
    }

    fn start_attempt(&mut self, now: Instant) {
        let attempt = self.next_attempt;
        self.next_attempt = self.next_attempt.saturating_add(1);
        self.in_flight = Some(attempt);
        self.pending = Some(attempt);
        self.timers[0] = Some(now + ATTEMPT_TIMEOUT);
        self.timers[1] = None;
    }

    fn finish_attempt(&mut self) {
        self.in_flight = None;
        self.pending = None;
        self.timers[0] = None;
    }

    fn definitive(&mut self, answer: Access) {
        self.finish_attempt();
        self.streak = None;
        self.used = RETRIES;
        self.timers[1] = None;
        self.timers[2] = None;
        self.access = answer;
    }

    fn attempt_failed(&mut self, at: Instant, retry_after: Option<Duration>) {
        self.finish_attempt();
        let streak = match self.streak {
            Some(s) => s,
            None => {
                let s = Streak {
                    deadline: at + BUDGET,
                    failed_closed: false,
                    probes: 0,
                };
                for k in 0..RETRIES {
                    self.delays[k] = delay_jitter(ceiling(RETRY_BASE, RETRY_CAP, k as u32), &mut self.rng);
                }
                self.used = 0;
                self.timers[2] = Some(s.deadline);
                s
            }
        };
        let slot = retry_after.map(|ra| at + ra.max(Duration::from_secs(1)).min(PROBE_CAP));
        let mut probes = streak.probes;
        let next = if streak.failed_closed {
            let c = ceiling(PROBE_BASE, PROBE_CAP, probes);
            probes = probes.saturating_add(1);
            Some(slot.unwrap_or_else(|| at + delay_jitter(c, &mut self.rng)))
        } else if self.used < RETRIES {
            let delay = self.delays[self.used];
            self.used += 1;
            let latest = streak.deadline.saturating_sub(ATTEMPT_TIMEOUT);
            let soonest = at + Duration::from_micros(1);
            let last_window = latest.saturating_sub(RETRY_CAP).max(soonest);
            match slot {
                Some(s) => Some(s),
                None if self.used == RETRIES && soonest <= latest => {
                    Some(uniform_between(last_window, latest, &mut self.rng))
                }
                None if at + delay <= latest => Some(at + delay),
                None if soonest <= latest => Some(uniform_between(soonest, latest, &mut self.rng)),
                None => None,
            }
        } else {
            None
        };
        self.streak = Some(Streak { probes, ..streak });
        self.timers[1] = next;
    }

    fn fail_closed(&mut self, at: Instant) {
        let Some(mut streak) = self.streak else { return };
        streak.failed_closed = true;
        if self.access != Access::Denied {
            self.access = Access::Denied;
        }
        if self.in_flight.is_none() && self.timers[1].is_none() && !self.retry_due {
            streak.probes = 1;
            self.timers[1] = Some(at + delay_jitter(ceiling(PROBE_BASE, PROBE_CAP, 0), &mut self.rng));
        }
        self.streak = Some(streak);
    }

    fn end_session(&mut self) {
        self.finish_attempt();
        self.generation = self.generation.wrapping_add(1);
        self.signed_in = false;
        self.streak = None;
        self.used = RETRIES;
        self.timers = [None; 3];
        self.retry_due = false;
        self.next_attempt = 0;
        self.access = Access::Unknown;
    }
}
