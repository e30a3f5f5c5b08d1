//! The modelled backend: capacity per 1 s bucket, 503 above it (optionally with a
//! `Retry-After` slot hand-out), and an outage window.

use crate::policy::Response;
use crate::scenario::{OutageMode, Scenario};

const SEC: u64 = 1_000_000;

/// What the network does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `response` arrives after `latency` microseconds.
    After { latency: u64, response: Response },
    /// Nothing ever comes back (black-holed); the client times out.
    Never,
}

pub(crate) struct Backend {
    capacity: u32,
    retry_after: bool,
    outage: Option<(u64, u64)>,
    mode: OutageMode,
    latency: u64,
    reject_latency: u64,
    refused_latency: u64,
    /// Per second: requests served plus slots reserved.
    used: Vec<u32>,
    /// Per second: requests that arrived (offered load), whatever their fate.
    pub(crate) offered: Vec<u32>,
    /// Per second: definitive answers given.
    pub(crate) served: Vec<u32>,
    /// No second before this one has free capacity for a hand-out (`used` only grows).
    free_cursor: usize,
}

impl Backend {
    pub(crate) fn new(sc: &Scenario, horizon_secs: usize) -> Self {
        let micros = |d: std::time::Duration| d.as_micros() as u64;
        Backend {
            capacity: sc.capacity,
            retry_after: sc.retry_after,
            outage: sc.outage_window().map(|(s, e)| (micros(s), micros(e))),
            mode: sc.outage_mode,
            latency: micros(sc.latency),
            reject_latency: micros(sc.reject_latency),
            refused_latency: micros(sc.refused_latency),
            used: vec![0; horizon_secs + 1],
            offered: vec![0; horizon_secs + 1],
            served: vec![0; horizon_secs + 1],
            free_cursor: 0,
        }
    }

    pub(crate) fn in_outage(&self, now: u64) -> bool {
        self.outage.is_some_and(|(s, e)| now >= s && now < e)
    }

    fn grow(&mut self, sec: usize) {
        if sec >= self.used.len() {
            let n = (sec + 1).max(self.used.len() * 2);
            self.used.resize(n, 0);
            self.offered.resize(n, 0);
            self.served.resize(n, 0);
        }
    }

    /// A request from a device arrives at `now`. `reservation` is the device's slot (its
    /// second plus one, 0 for none); a reservation is honoured in its second or the next
    /// one, since response latency can push the holder's arrival just past the boundary.
    pub(crate) fn request(&mut self, now: u64, entitled: bool, reservation: &mut u32) -> Reply {
        let sec = (now / SEC) as usize;
        self.grow(sec);
        self.offered[sec] += 1;
        if self.in_outage(now) {
            return match self.mode {
                OutageMode::Refused => Reply::After {
                    latency: self.refused_latency,
                    response: Response::Refused,
                },
                OutageMode::Blackhole => Reply::Never,
            };
        }
        let answer = Reply::After {
            latency: self.latency,
            response: if entitled {
                Response::Granted
            } else {
                Response::Denied
            },
        };
        let held = *reservation as usize;
        if held != 0 {
            let slot = held - 1;
            if sec == slot || sec == slot + 1 {
                // Capacity was taken when the slot was handed out.
                *reservation = 0;
                self.served[sec] += 1;
                return answer;
            }
            if sec > slot + 1 {
                *reservation = 0; // missed: that capacity is lost
            }
        }
        if self.used[sec] < self.capacity {
            self.used[sec] += 1;
            self.served[sec] += 1;
            *reservation = 0; // an early arrival frees nothing, but needs no slot any more
            return answer;
        }
        let retry_after = if !self.retry_after {
            None
        } else if *reservation != 0 {
            // Already holds a future slot: point at it again.
            Some((*reservation as usize - 1 - sec) as u32)
        } else {
            let slot = self.first_free_after(sec);
            self.used[slot] += 1;
            *reservation = slot as u32 + 1;
            Some((slot - sec) as u32)
        };
        Reply::After {
            latency: self.reject_latency,
            response: Response::Unavailable { retry_after },
        }
    }

    /// The first second after `sec` with unreserved capacity.
    fn first_free_after(&mut self, sec: usize) -> usize {
        let mut s = self.free_cursor.max(sec + 1);
        loop {
            self.grow(s);
            if self.used[s] < self.capacity {
                break;
            }
            s += 1;
        }
        // Every second in (sec, s) is full and stays full; arrivals only move forward.
        self.free_cursor = s;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(cap: u32, retry_after: bool) -> Backend {
        let mut sc = Scenario::boot_storm(10, cap);
        sc.retry_after = retry_after;
        Backend::new(&sc, 10)
    }

    #[test]
    fn serves_up_to_capacity_per_second_then_503() {
        let mut b = backend(2, false);
        let mut r = 0;
        let got: Vec<Reply> = (0..3).map(|i| b.request(i * 1000, true, &mut r)).collect();
        assert!(matches!(
            got[1],
            Reply::After {
                response: Response::Granted,
                ..
            }
        ));
        assert!(matches!(
            got[2],
            Reply::After {
                response: Response::Unavailable { retry_after: None },
                ..
            }
        ));
        assert!(matches!(
            b.request(SEC, true, &mut r),
            Reply::After {
                response: Response::Granted,
                ..
            }
        ));
        assert_eq!(&b.offered[..2], &[3, 1]);
    }

    #[test]
    fn retry_after_hands_out_future_slots_in_order() {
        let mut b = backend(2, true);
        let mut res = [0u32; 8];
        let ras: Vec<Option<u32>> = res
            .iter_mut()
            .map(|r| match b.request(500_000, true, r) {
                Reply::After {
                    response: Response::Unavailable { retry_after },
                    ..
                } => retry_after,
                _ => Some(0),
            })
            .collect();
        // Two served now (Some(0) marks a grant), then two per later second.
        assert_eq!(
            ras,
            [
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(3),
                Some(3)
            ]
        );
        // A holder arriving in its second (or just after) is served even though it is full.
        let mut other = 0;
        assert!(matches!(
            b.request(SEC + 10, true, &mut other),
            Reply::After {
                response: Response::Unavailable { .. },
                ..
            }
        ));
        assert!(matches!(
            b.request(2 * SEC + 10, true, &mut res[4]),
            Reply::After {
                response: Response::Granted,
                ..
            }
        ));
        assert!(matches!(
            b.request(3 * SEC + 10, true, &mut res[5]),
            Reply::After {
                response: Response::Granted,
                ..
            }
        ));
        assert_eq!(res[4], 0);
    }
}
