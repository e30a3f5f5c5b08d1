//! The discrete-event loop: one queue entry per device (its next wake-up), devices never
//! touch each other, only the shared backend.

use std::time::Duration;

use accessgate::{Access, Instant};

use crate::backend::{Backend, Reply};
use crate::policy::{Policy, PolicyKind, Response, NONE};
use crate::queue::TimingWheel;
use crate::report::{Row, Series};
use crate::scenario::{Scenario, ScenarioKind};

const SEC: u64 = 1_000_000;
/// Bound on input rounds for one device at one instant; a policy that keeps asking to be
/// woken at the same instant is pushed one microsecond on rather than looping.
const MAX_ROUNDS: usize = 16;
/// How many events ahead device state is touched.
const LOOKAHEAD: usize = 4;
/// How often (in events) the progress callback is called.
const PROGRESS_EVERY: u64 = 1 << 16;

/// SplitMix64: derives independent per-device seeds from the run seed.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fleet's fixed facts about one device, identical for every policy of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceFacts {
    /// Sign-in time (boot storm) or first refresh (outage), microseconds.
    pub first_check: u64,
    pub entitled: bool,
    /// Seed for the device's policy (ours: the gate's jitter seed, R6).
    pub policy_seed: u64,
}

pub(crate) fn device_facts(sc: &Scenario, seed: u64, i: u32) -> DeviceFacts {
    let dseed = splitmix64(seed ^ splitmix64(u64::from(i)));
    let mut rng = fastrand::Rng::with_seed(dseed);
    let first_check = match sc.kind {
        ScenarioKind::BootStorm { window } => rng.u64(0..(window.as_micros() as u64).max(1)),
        // The first refresh after the warm start at t = 0: uniform phase in (0, interval].
        ScenarioKind::Outage { .. } => 1 + rng.u64(0..sc.refresh_interval.as_micros() as u64),
    };
    let entitled = rng.f64() >= sc.denied_fraction;
    DeviceFacts {
        first_check,
        entitled,
        policy_seed: splitmix64(dseed ^ 0x00ac_ce55_6a7e),
    }
}

/// Per-device simulator state besides the policy (about 100 bytes).
#[derive(Clone, Copy, Debug)]
struct Dev {
    resp_at: u64,
    tag: u64,
    next_check: u64,
    first_granted: u64,
    last_granted: u64,
    unverified_since: u64,
    unverified_max: u64,
    bypass_max: u64,
    resp: Response,
    reservation: u32,
    requests: u32,
    requests_to_grant: u32,
    outage_requests: u32,
    access: Access,
    entitled: bool,
    signed_in: bool,
    ever_denied: bool,
    denied_first_interval: bool,
    /// Granted, then denied during the hourly echo (boot storm).
    denied_in_echo: bool,
    /// Refreshes done (numbers the refresh spread draws).
    refreshes: u32,
    /// Since when the device is denied (entitled devices; `NONE` when not denied).
    denied_since: u64,
    /// Total time denied, and the part after the probe ramp.
    denied_time: u64,
    denied_time_periodic: u64,
    /// Requests made while denied, and the part after the probe ramp.
    denied_requests: u32,
    denied_requests_periodic: u32,
    /// What the last request was: 0 not a probe, 1 a probe, 2 a probe after the ramp.
    last_probe: u8,
    denied_backend_up: bool,
    affected: bool,
}

/// What the loop reports while running.
pub(crate) type Tick<'a> = &'a mut dyn FnMut(u64, u64);

struct Sim<'a, P> {
    sc: &'a Scenario,
    seed: u64,
    horizon: u64,
    interval: u64,
    /// Refresh spread of this policy (0: refreshes exactly every interval).
    spread: u64,
    /// When the boot storm's echo may begin: the earliest first refresh.
    echo_start: u64,
    /// The policy's probe ramp, for the frontier of the periodic part.
    ramp: u64,
    outage: Option<(u64, u64)>,
    devs: Vec<Dev>,
    pols: Vec<P>,
    backend: Backend,
    queue: TimingWheel,
    // Running counts over entitled devices.
    granted: u32,
    denied: u32,
    entitled: u32,
    need_99: u32,
    granted_99: Option<u64>,
    granted_100: Option<u64>,
    // Series (per second, sampled at the end of each second).
    s_granted: Vec<u32>,
    s_denied: Vec<u32>,
    denied_at_outage_end: Option<u32>,
}

/// Runs one policy over the scenario. `make` builds a device's policy from its seed.
pub(crate) fn simulate<P: Policy>(
    sc: &Scenario,
    seed: u64,
    kind: PolicyKind,
    make: impl Fn(u64) -> P,
    tick: Tick<'_>,
) -> (Row, Series) {
    let horizon = sc.horizon().as_micros() as u64;
    let horizon_secs = horizon.div_ceil(SEC) as usize;
    let outage = sc
        .outage_window()
        .map(|(s, e)| (s.as_micros() as u64, e.as_micros() as u64));
    let n = sc.devices as usize;
    let interval = sc.refresh_interval.as_micros() as u64;
    let spread = if kind.spreads_refresh() {
        sc.effective_refresh_spread().as_micros() as u64
    } else {
        0
    };
    let mut sim = Sim {
        sc,
        seed,
        horizon,
        interval,
        spread,
        echo_start: interval - sc.effective_refresh_spread().as_micros() as u64,
        ramp: kind.probe_ramp(&sc.gate).as_micros() as u64,
        outage,
        devs: Vec::with_capacity(n),
        pols: Vec::with_capacity(n),
        backend: Backend::new(sc, horizon_secs),
        queue: TimingWheel::new(),
        granted: 0,
        denied: 0,
        entitled: 0,
        need_99: 0,
        granted_99: None,
        granted_100: None,
        s_granted: Vec::with_capacity(horizon_secs),
        s_denied: Vec::with_capacity(horizon_secs),
        denied_at_outage_end: None,
    };
    sim.init(seed, make);
    sim.run(tick);
    sim.finish(kind)
}

impl<P: Policy> Sim<'_, P> {
    fn init(&mut self, seed: u64, make: impl Fn(u64) -> P) {
        let warm = matches!(self.sc.kind, ScenarioKind::Outage { .. });
        for i in 0..self.sc.devices {
            let f = device_facts(self.sc, seed, i);
            let mut p = make(f.policy_seed);
            let mut dev = Dev {
                resp_at: NONE,
                tag: 0,
                next_check: f.first_check,
                first_granted: NONE,
                last_granted: NONE,
                unverified_since: NONE,
                unverified_max: 0,
                bypass_max: 0,
                resp: Response::Refused,
                reservation: 0,
                requests: 0,
                requests_to_grant: 0,
                outage_requests: 0,
                access: Access::Unknown,
                entitled: f.entitled,
                signed_in: false,
                ever_denied: false,
                denied_first_interval: false,
                denied_in_echo: false,
                refreshes: 0,
                denied_since: NONE,
                denied_time: 0,
                denied_time_periodic: 0,
                denied_requests: 0,
                denied_requests_periodic: 0,
                last_probe: 0,
                denied_backend_up: false,
                affected: false,
            };
            if warm {
                // Steady state: signed in before the run, with the backend's answer in hand.
                // This pre-history is not counted as load.
                p.sign_in(Instant::ZERO);
                if let Some(tag) = p.poll_request() {
                    let r = if f.entitled {
                        Response::Granted
                    } else {
                        Response::Denied
                    };
                    p.handle_response(Instant::ZERO, tag, r);
                }
                dev.signed_in = true;
                dev.access = p.access();
                if dev.access == Access::Granted {
                    dev.first_granted = 0;
                    dev.last_granted = 0;
                }
            }
            if f.entitled {
                self.entitled += 1;
                match dev.access {
                    Access::Granted => self.granted += 1,
                    Access::Denied => self.denied += 1,
                    Access::Unknown => {}
                }
            }
            let wake = Self::wake_of(&dev, &p, 0);
            self.queue.push(wake, i);
            self.devs.push(dev);
            self.pols.push(p);
        }
        self.need_99 = (u64::from(self.entitled) * 99).div_ceil(100) as u32;
        self.check_thresholds(0);
    }

    fn wake_of(dev: &Dev, p: &P, now: u64) -> u64 {
        let timer = p.poll_timeout().map_or(NONE, |t| t.as_micros());
        dev.resp_at.min(dev.next_check).min(timer).max(now)
    }

    fn run(&mut self, tick: Tick<'_>) {
        let mut events = 0u64;
        while let Some((t, d)) = self.queue.pop() {
            if t > self.horizon {
                break;
            }
            // The run is bound by cache misses on device state (a gate is about 1.2 KB and
            // devices come up in random order). Touch a device a few events ahead so its
            // first cache lines are on their way while this one is processed.
            if let Some(next) = self.queue.ahead(LOOKAHEAD) {
                let dev = &self.devs[next as usize];
                std::hint::black_box((dev.resp_at, self.pols[next as usize].poll_timeout()));
            }
            self.sample_until(t);
            if let Some((_, end)) = self.outage {
                if t >= end && self.denied_at_outage_end.is_none() {
                    self.denied_at_outage_end = Some(self.denied);
                }
            }
            let next = self.step(d as usize, t);
            if next != NONE {
                self.queue.push(next, d);
            }
            events += 1;
            if events.is_multiple_of(PROGRESS_EVERY) {
                tick(t, self.horizon);
            }
        }
        self.sample_until(self.horizon + 1);
        if self.outage.is_some() && self.denied_at_outage_end.is_none() {
            self.denied_at_outage_end = Some(self.denied);
        }
        tick(self.horizon, self.horizon);
    }

    /// Records the per-second series for every second that ended at or before `t`.
    fn sample_until(&mut self, t: u64) {
        let horizon_secs = self.horizon.div_ceil(SEC) as usize;
        while self.s_granted.len() < horizon_secs && (self.s_granted.len() as u64 + 1) * SEC <= t {
            self.s_granted.push(self.granted);
            self.s_denied.push(self.denied);
        }
    }

    /// Handles everything due for device `d` at `t`; returns its next wake-up.
    fn step(&mut self, d: usize, t: u64) -> u64 {
        let now = Instant::from_micros(t);
        for _ in 0..MAX_ROUNDS {
            let mut acted = false;
            let mut refreshed = false;
            let dev = &mut self.devs[d];
            let p = &mut self.pols[d];
            if dev.resp_at <= t {
                dev.resp_at = NONE;
                let r = dev.resp;
                if r.is_definitive() {
                    Self::close_unverified(dev, t, self.outage);
                }
                p.handle_response(now, dev.tag, r);
                acted = true;
            }
            if p.poll_timeout().is_some_and(|at| at <= now) {
                p.handle_timeout(now);
                acted = true;
            }
            if dev.next_check <= t {
                if dev.signed_in {
                    p.token_refreshed(now);
                    refreshed = true;
                } else {
                    p.sign_in(now);
                    dev.signed_in = true;
                }
                dev.next_check = dev.next_check.saturating_add(self.interval);
                if self.spread > 0 {
                    // R11: the next refresh point is drawn per device and per refresh.
                    dev.refreshes += 1;
                    let z = splitmix64(self.seed ^ splitmix64(((d as u64) << 24) ^ u64::from(dev.refreshes)));
                    dev.next_check -= z % (self.spread + 1);
                    dev.next_check = dev.next_check.max(t + 1);
                }
                acted = true;
            }
            self.send_requests(d, t, refreshed);
            self.observe(d, t);
            if !acted {
                break;
            }
        }
        let next = Self::wake_of(&self.devs[d], &self.pols[d], t);
        if next == t {
            t + 1
        } else {
            next
        }
    }

    /// Sends what the policy asks for. `refreshed`: the device's token was just refreshed, so
    /// its first request is that refresh's check (R3), not a probe.
    fn send_requests(&mut self, d: usize, t: u64, mut refreshed: bool) {
        let in_outage = self.backend.in_outage(t);
        while let Some(tag) = self.pols[d].poll_request() {
            let dev = &mut self.devs[d];
            dev.requests += 1;
            if dev.first_granted == NONE {
                dev.requests_to_grant += 1;
            }
            if in_outage {
                dev.outage_requests += 1;
            }
            dev.last_probe = 0;
            if dev.denied_since != NONE && !std::mem::take(&mut refreshed) {
                dev.denied_requests += 1;
                dev.last_probe = 1;
                if t >= dev.denied_since + self.ramp {
                    dev.denied_requests_periodic += 1;
                    dev.last_probe = 2;
                }
            }
            // A newer request replaces one still in flight: its answer would be stale.
            let reply = self.backend.request(t, dev.entitled, &mut dev.reservation);
            let fails = match reply {
                Reply::After { latency, response } => {
                    dev.resp_at = t + latency;
                    dev.resp = response;
                    dev.tag = tag;
                    !response.is_definitive()
                }
                Reply::Never => {
                    dev.resp_at = NONE;
                    true
                }
            };
            // Bypass starts with the first request that cannot get an answer while the
            // device lets the user in.
            if fails && dev.access == Access::Granted && dev.unverified_since == NONE {
                dev.unverified_since = t;
            }
        }
    }

    fn close_unverified(dev: &mut Dev, t: u64, outage: Option<(u64, u64)>) {
        if dev.unverified_since == NONE {
            return;
        }
        let since = dev.unverified_since;
        dev.unverified_since = NONE;
        dev.unverified_max = dev.unverified_max.max(t - since);
        if let Some((s, e)) = outage {
            let overlap = t.min(e).saturating_sub(since.max(s));
            dev.bypass_max = dev.bypass_max.max(overlap);
        }
    }

    fn observe(&mut self, d: usize, t: u64) {
        let a = self.pols[d].access();
        let dev = &mut self.devs[d];
        let from = dev.access;
        if a == from {
            return;
        }
        dev.access = a;
        if from == Access::Granted {
            Self::close_unverified(dev, t, self.outage);
        }
        if a == Access::Granted {
            dev.last_granted = t;
            if dev.first_granted == NONE {
                dev.first_granted = t;
            }
        }
        if !dev.entitled {
            return;
        }
        if from == Access::Denied {
            Self::close_denied(dev, t, self.ramp);
            if a == Access::Granted {
                // Count the probes that found the backend still away: not the one that got
                // the grant back.
                if dev.last_probe >= 1 {
                    dev.denied_requests -= 1;
                }
                if dev.last_probe == 2 {
                    dev.denied_requests_periodic -= 1;
                }
            }
        }
        if a == Access::Denied {
            dev.denied_since = t;
            dev.ever_denied = true;
            dev.denied_first_interval |= t < self.echo_start;
            dev.denied_in_echo |= from == Access::Granted && t >= self.echo_start;
            dev.denied_backend_up |= self.outage.is_none_or(|(_, e)| t >= e);
        }
        if a != Access::Granted && self.outage.is_some_and(|(s, _)| t >= s) {
            dev.affected = true;
        }
        for (x, delta) in [(from, -1i64), (a, 1)] {
            match x {
                Access::Granted => self.granted = (i64::from(self.granted) + delta) as u32,
                Access::Denied => self.denied = (i64::from(self.denied) + delta) as u32,
                Access::Unknown => {}
            }
        }
        self.check_thresholds(t);
    }

    /// Ends a stretch of denial at `t` (time denied, and the part after the probe ramp).
    fn close_denied(dev: &mut Dev, t: u64, ramp: u64) {
        if dev.denied_since == NONE {
            return;
        }
        dev.denied_time += t - dev.denied_since;
        dev.denied_time_periodic += t.saturating_sub(dev.denied_since + ramp);
        dev.denied_since = NONE;
    }

    fn check_thresholds(&mut self, t: u64) {
        if self.granted_99.is_none() && self.granted >= self.need_99 {
            self.granted_99 = Some(t);
        }
        if self.granted_100.is_none() && self.granted >= self.entitled {
            self.granted_100 = Some(t);
        }
    }

    fn finish(mut self, kind: PolicyKind) -> (Row, Series) {
        let horizon = self.horizon;
        let outage = self.outage;
        let mut requests = 0u64;
        let (mut req_max, mut to_grant_sum, mut to_grant_max) = (0u32, 0u64, 0u32);
        let (mut out_n, mut out_sum, mut out_max) = (0u32, 0u64, 0u32);
        let (mut bypass, mut unverified) = (0u64, 0u64);
        let (mut ever_denied, mut affected, mut granted_at_end) = (0u32, 0u32, 0u32);
        let (mut denied_first_interval, mut denied_backend_up, mut denied_in_echo) = (0u32, 0u32, 0u32);
        // Devices that were denied, their time denied and their requests meanwhile (all, and
        // after the probe ramp).
        let (mut fc_n, mut fc_time, mut fc_req) = (0u32, 0u64, 0u64);
        let (mut fc_time_periodic, mut fc_req_periodic) = (0u64, 0u64);
        let mut recovery: Vec<u64> = Vec::new();
        for dev in &mut self.devs {
            Self::close_unverified(dev, horizon, outage);
            Self::close_denied(dev, horizon, self.ramp);
            requests += u64::from(dev.requests);
            req_max = req_max.max(dev.requests);
            bypass = bypass.max(dev.bypass_max);
            unverified = unverified.max(dev.unverified_max);
            if dev.outage_requests > 0 {
                out_n += 1;
                out_sum += u64::from(dev.outage_requests);
                out_max = out_max.max(dev.outage_requests);
            }
            if !dev.entitled {
                continue;
            }
            to_grant_sum += u64::from(dev.requests_to_grant);
            to_grant_max = to_grant_max.max(dev.requests_to_grant);
            ever_denied += u32::from(dev.ever_denied);
            denied_first_interval += u32::from(dev.denied_first_interval);
            denied_backend_up += u32::from(dev.denied_backend_up);
            denied_in_echo += u32::from(dev.denied_in_echo);
            if dev.ever_denied {
                fc_n += 1;
                fc_time += dev.denied_time;
                fc_req += u64::from(dev.denied_requests);
                fc_time_periodic += dev.denied_time_periodic;
                fc_req_periodic += u64::from(dev.denied_requests_periodic);
            }
            granted_at_end += u32::from(dev.access == Access::Granted);
            if dev.affected {
                affected += 1;
                let end = outage.map_or(0, |(_, e)| e);
                recovery.push(if dev.access == Access::Granted {
                    dev.last_granted.saturating_sub(end)
                } else {
                    NONE
                });
            }
        }
        recovery.sort_unstable();
        let pct = |p: f64| -> Option<Duration> {
            if recovery.is_empty() {
                return Some(Duration::ZERO);
            }
            let rank = ((p * recovery.len() as f64).ceil() as usize).clamp(1, recovery.len());
            let v = recovery[rank - 1];
            (v != NONE).then(|| Duration::from_micros(v))
        };
        let unrecovered = recovery.iter().filter(|&&v| v == NONE).count() as u32;
        let n = self.devs.len().max(1) as f64;
        let entitled = self.entitled;
        let offered = std::mem::take(&mut self.backend.offered);
        let served = std::mem::take(&mut self.backend.served);
        let horizon_secs = self.s_granted.len();
        let end_sec = outage.map(|(_, e)| e.div_ceil(SEC) as usize);
        let peak_offered = offered.iter().take(horizon_secs).copied().max().unwrap_or(0);
        let peak_after = end_sec.map_or(0, |e| {
            offered
                .iter()
                .take(horizon_secs)
                .skip(e)
                .copied()
                .max()
                .unwrap_or(0)
        });
        let echo_sec = (self.echo_start / SEC) as usize;
        let peak_echo = offered
            .iter()
            .take(horizon_secs)
            .skip(echo_sec)
            .copied()
            .max()
            .unwrap_or(0);
        let per_fc = |x: u64| {
            if fc_n == 0 {
                0.0
            } else {
                x as f64 / f64::from(fc_n)
            }
        };
        let us = |t: Option<u64>| t.map(Duration::from_micros);
        let row = Row {
            policy: kind,
            entitled,
            capacity: self.sc.capacity,
            requests,
            requests_mean: requests as f64 / n,
            requests_max: req_max,
            requests_to_grant_mean: to_grant_sum as f64 / f64::from(entitled.max(1)),
            requests_to_grant_max: to_grant_max,
            peak_offered,
            peak_offered_after_outage: peak_after,
            granted_99: us(self.granted_99),
            granted_100: us(self.granted_100),
            ever_denied,
            denied_first_interval,
            denied_in_echo,
            peak_offered_echo: peak_echo,
            failed_closed_devices: fc_n,
            failed_closed_time_mean: Duration::from_micros(per_fc(fc_time) as u64),
            failed_closed_probes_mean: per_fc(fc_req),
            failed_closed_time_periodic_mean: Duration::from_micros(per_fc(fc_time_periodic) as u64),
            failed_closed_probes_periodic_mean: per_fc(fc_req_periodic),
            denied_backend_up,
            denied_at_outage_end: self.denied_at_outage_end.unwrap_or(0),
            affected,
            unrecovered,
            recovery_p50: pct(0.50),
            recovery_p99: pct(0.99),
            recovery_max: pct(1.0),
            outage_requesters: out_n,
            outage_requests_mean: if out_n == 0 {
                0.0
            } else {
                out_sum as f64 / f64::from(out_n)
            },
            outage_requests_max: out_max,
            bypass_max: Duration::from_micros(bypass),
            unverified_max: Duration::from_micros(unverified),
            granted_at_end,
        };
        let mut offered = offered;
        let mut served = served;
        offered.resize(horizon_secs, 0);
        served.resize(horizon_secs, 0);
        let series = Series {
            policy: kind,
            offered,
            served,
            granted: self.s_granted,
            denied: self.s_denied,
        };
        (row, series)
    }
}
