//! Device policies: ours (the real [`accessgate::Gate`]) and the peers of
//! `shared/notes/peers.md`, all behind one sans-IO [`Policy`] trait shaped like the gate.
//!
//! A device holds exactly one policy value. The simulator gives it inputs with the current
//! time (sign-in, token refresh, a response, a timer) and then polls it: the request to send
//! (`poll_request`), when to call back (`poll_timeout`), and what the app shows (`access`).
//!
//! Modelling choices for the peers, where their published behaviour leaves a gap:
//! - Access is kept unchanged while a check is being retried (every peer, like ours).
//! - "Keeps trying" (gRPC, LaunchDarkly) means retrying until a definitive answer; a token
//!   refresh while such a loop runs does not start a second loop (the channel or stream is
//!   already reconnecting), and access is never taken away by a failure.
//! - AWS "standard" returns an error after its attempts (or when its retry quota is empty); we
//!   model an app that treats that error as "no access" until the next check, like the
//!   original PR's give-up.
//! - None of the peers honours `Retry-After` on a 503 (the published schedules have no such
//!   rule); only ours does (R6, R7).
//! - Per-attempt timeout: 10 s for every policy, except gRPC's published minimum connect
//!   timeout of 20 s.

use accessgate::{classify, Access, CheckOutcome, Gate, GateConfig, Instant, TokenHandle, TransientClass};

use crate::old::OldGate;

/// Time value meaning "not set".
pub(crate) const NONE: u64 = u64::MAX;

/// What the modelled backend (or the network) answered one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    /// `200 {"has_access": true}`.
    Granted,
    /// `200 {"has_access": false}`.
    Denied,
    /// `503`, with `Retry-After: <secs>` when the backend hands out a slot.
    Unavailable {
        /// Whole seconds until the slot the backend reserved, if it sent `Retry-After`.
        retry_after: Option<u32>,
    },
    /// The connection was refused (the backend is down): a fast transport error.
    Refused,
}

impl Response {
    /// Whether this is a definitive answer (R1).
    pub fn is_definitive(self) -> bool {
        matches!(self, Response::Granted | Response::Denied)
    }
}

/// One device's check policy, driven sans-IO by the simulator.
///
/// Call order after every input: drain [`Policy::poll_request`] (send each), then read
/// [`Policy::access`] and [`Policy::poll_timeout`]. A request is identified by an opaque tag;
/// a response with a tag the policy no longer waits for must be ignored.
pub trait Policy {
    /// The user signed in: a new session whose first check starts now.
    fn sign_in(&mut self, now: Instant);
    /// The access token was refreshed (hourly): one check per refresh (R3).
    fn token_refreshed(&mut self, now: Instant);
    /// The response to the request tagged `tag`.
    fn handle_response(&mut self, now: Instant, tag: u64, response: Response);
    /// Time passed: fire whatever timer is due at `now` (harmless when early).
    fn handle_timeout(&mut self, now: Instant);
    /// A request to send now, as its tag.
    fn poll_request(&mut self) -> Option<u64>;
    /// When to call [`Policy::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// What the app renders.
    fn access(&self) -> Access;
}

/// Which policy a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PolicyKind {
    /// accessgate's [`Gate`] with the scenario's [`GateConfig`] (default: the spec's).
    #[cfg_attr(feature = "cli", value(help = PolicyKind::Ours.describe()))]
    Ours,
    /// The original PR's final schedule: 1 awaited attempt + 9 retries sleeping 2, 4, 8, 16,
    /// 20, 20, 20, 20, 20 s, then denied with no re-check until the next token refresh.
    #[cfg_attr(feature = "cli", value(help = PolicyKind::PrFinal.describe()))]
    PrFinal,
    /// The original PR's prime round: sleeps 2, 3, 5, 7, 11, 13, 17, 19, 23 s, then as above.
    #[cfg_attr(feature = "cli", value(help = PolicyKind::PrPrime.describe()))]
    PrPrime,
    /// The simpler fix that shipped: 3 attempts 1 s then 2 s apart, keeps the previous value
    /// on any failure, for ever.
    #[cfg_attr(feature = "cli", value(help = PolicyKind::ShippedFix.describe()))]
    ShippedFix,
    /// AWS SDK "standard": 3 attempts, full jitter 1 s x2 cap 20 s, a per-client retry quota
    /// of 500 tokens (retry costs 5, 10 after a timeout; success +1), then an error (denied).
    #[cfg_attr(feature = "cli", value(help = PolicyKind::Aws.describe()))]
    Aws,
    /// gRPC connection backoff: 1 s x1.6 cap 120 s, +/-20 % jitter, 20 s connect timeout,
    /// keeps trying, keeps the previous value.
    #[cfg_attr(feature = "cli", value(help = PolicyKind::Grpc.describe()))]
    Grpc,
    /// LaunchDarkly stream reconnect: 1 s x2 cap 30 s, delay in [d/2, d], keeps trying,
    /// serves the last known value.
    #[cfg_attr(
        feature = "cli",
        value(name = "launchdarkly", help = PolicyKind::LaunchDarkly.describe())
    )]
    LaunchDarkly,
    /// Ours with a retry capacity of 16 instead of 8 (`Gate<16>`), same config. Not in
    /// [`PolicyKind::ALL`]: a what-if for more retries within the same budget.
    #[cfg_attr(feature = "cli", value(name = "ours16", help = PolicyKind::Ours16.describe()))]
    Ours16,
    /// Ours before issue 10 (`ours, old schedule`): full-jitter retries on 2 s doubling to
    /// 20 s, probes on 30 s doubling to 10 min, refresh points not spread ([`crate::old`]).
    #[cfg_attr(feature = "cli", value(name = "ours-old", help = PolicyKind::OursOld.describe()))]
    OursOld,
}

impl PolicyKind {
    /// Every policy of the brief, ours first, then ours with the old schedule
    /// ([`PolicyKind::Ours16`] is extra).
    pub const ALL: [PolicyKind; 8] = [
        PolicyKind::Ours,
        PolicyKind::OursOld,
        PolicyKind::PrFinal,
        PolicyKind::PrPrime,
        PolicyKind::ShippedFix,
        PolicyKind::Aws,
        PolicyKind::Grpc,
        PolicyKind::LaunchDarkly,
    ];

    /// A short name for tables and plots.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyKind::Ours => "ours",
            PolicyKind::PrFinal => "PR final",
            PolicyKind::PrPrime => "PR prime",
            PolicyKind::ShippedFix => "shipped fix",
            PolicyKind::Aws => "AWS standard",
            PolicyKind::Grpc => "gRPC backoff",
            PolicyKind::LaunchDarkly => "LaunchDarkly",
            PolicyKind::Ours16 => "ours, N = 16",
            PolicyKind::OursOld => "ours, old schedule",
        }
    }

    /// What the policy is, in operator words (no rustdoc syntax): the help text of each
    /// `--policies` value in `accessgate simulate --help` and `fleet --help`. The figures are
    /// the defaults of `shared/notes/peers.md` and of our gate's config.
    pub const fn describe(self) -> &'static str {
        match self {
            PolicyKind::Ours => {
                "ours: stratified retries + periodic probes (R6/R7). 7 retries, one per 10 s slice \
of the 70 s after the first failure, the 8th just before the fail-closed deadline (120 s); then \
2 probes in 2 min and one every 5 min at a random phase; token refreshes spread over 10 min (R11)"
            }
            PolicyKind::OursOld => {
                "ours before issue 10: full-jitter retries from 2 s doubling to 20 s, probes from \
30 s doubling to 10 min, token refreshes not spread"
            }
            PolicyKind::Ours16 => {
                "ours with room for 16 attempts instead of 8, same budget (a what-if; not in the \
default set)"
            }
            PolicyKind::PrFinal => {
                "fixed schedule, no jitter (original PR): 1 try + 9 retries 2, 4, 8, 16, 20, 20, \
20, 20, 20 s apart; then denied, no re-check until the next hourly token refresh"
            }
            PolicyKind::PrPrime => {
                "fixed prime schedule, no jitter (original PR, prime round): retries 2, 3, 5, 7, \
11, 13, 17, 19, 23 s apart; then denied until the next token refresh"
            }
            PolicyKind::ShippedFix => {
                "3 tries then keep (shipped fix): retries 1 s then 2 s apart, no jitter; keeps the \
last answer for ever (never fails closed)"
            }
            PolicyKind::Aws => {
                "AWS SDK standard retry mode: 3 attempts, full jitter on 1 s doubling to 20 s, \
500-token retry quota (5 per retry, 10 after a timeout); then an error, shown as denied"
            }
            PolicyKind::Grpc => {
                "gRPC connection backoff: 1 s x1.6 up to 120 s, +/-20 % jitter, 20 s connect \
timeout; keeps trying and keeps the last answer"
            }
            PolicyKind::LaunchDarkly => {
                "LaunchDarkly SDK stream reconnect: 1 s doubling to 30 s, delay drawn in [d/2, d]; \
keeps trying and serves the last known value"
            }
        }
    }

    /// The command-line name (`ours`, `pr-final`, ...): no spaces or commas, for CSV and
    /// file names.
    pub const fn id(self) -> &'static str {
        match self {
            PolicyKind::Ours => "ours",
            PolicyKind::PrFinal => "pr-final",
            PolicyKind::PrPrime => "pr-prime",
            PolicyKind::ShippedFix => "shipped-fix",
            PolicyKind::Aws => "aws",
            PolicyKind::Grpc => "grpc",
            PolicyKind::LaunchDarkly => "launchdarkly",
            PolicyKind::Ours16 => "ours16",
            PolicyKind::OursOld => "ours-old",
        }
    }

    /// Whether the policy ever takes access away without a server denial.
    pub const fn fails_closed(self) -> bool {
        matches!(
            self,
            PolicyKind::Ours
                | PolicyKind::Ours16
                | PolicyKind::OursOld
                | PolicyKind::PrFinal
                | PolicyKind::PrPrime
                | PolicyKind::Aws
        )
    }

    /// Whether the device spreads its token refresh points (R11, ours since issue 10): each
    /// refresh comes a uniform random time up to the scenario's spread before the refresh
    /// interval is over. The old schedule and the peers refresh exactly every interval.
    pub const fn spreads_refresh(self) -> bool {
        matches!(self, PolicyKind::Ours | PolicyKind::Ours16)
    }

    /// The probe ramp right after failing closed, for the frontier of the periodic part
    /// (zero for policies without one).
    pub fn probe_ramp(self, gate: &GateConfig) -> std::time::Duration {
        match self {
            PolicyKind::Ours | PolicyKind::Ours16 => {
                std::time::Duration::from_micros(gate.probe.ramp.as_micros())
            }
            _ => std::time::Duration::ZERO,
        }
    }
}

impl core::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------
// Ours: the real gate.

/// Ours: the real [`Gate`] (retry capacity `N`), responses classified by the real
/// [`classify`] from status, `Retry-After` and body bytes.
#[derive(Clone, Debug)]
pub struct Ours<const N: usize = 8> {
    gate: Gate<N>,
}

impl<const N: usize> Ours<N> {
    /// A signed-out gate with its own seed.
    ///
    /// # Panics
    /// If `config` is invalid (check it with [`GateConfig::validate`] first).
    pub fn new(config: GateConfig, seed: u64) -> Self {
        Ours {
            gate: Gate::new(config, seed).expect("valid gate config"),
        }
    }

    /// The gate, for inspection.
    pub fn gate(&self) -> &Gate<N> {
        &self.gate
    }

    fn drain_events(&mut self) {
        // The simulator reads access directly; events are drained so the queue never fills
        // (R12: a full queue refuses inputs).
        while self.gate.poll_event().is_some() {}
    }
}

const GRANTED_BODY: &[u8] = br#"{"has_access": true}"#;
const DENIED_BODY: &[u8] = br#"{"has_access": false}"#;

/// The check outcome of a modelled response, classified by the real [`classify`].
fn outcome_of(response: Response, max_body: usize) -> CheckOutcome {
    match response {
        Response::Granted => classify(200, None, GRANTED_BODY, max_body),
        Response::Denied => classify(200, None, DENIED_BODY, max_body),
        Response::Unavailable { retry_after: None } => classify(503, None, b"", max_body),
        Response::Unavailable { retry_after: Some(s) } => {
            let mut buf = [0u8; 10];
            classify(503, Some(format_u32(s, &mut buf)), b"", max_body)
        }
        Response::Refused => CheckOutcome::transient(TransientClass::Connect),
    }
}

/// Ours with the schedule before issue 10 ([`crate::old::OldGate`]).
#[derive(Clone, Debug)]
pub struct OursOld {
    gate: OldGate,
}

impl OursOld {
    /// A signed-out gate with its own seed.
    pub fn new(seed: u64) -> Self {
        OursOld {
            gate: OldGate::new(seed),
        }
    }
}

impl Policy for OursOld {
    fn sign_in(&mut self, now: Instant) {
        self.gate.start_session(now);
    }

    fn token_refreshed(&mut self, now: Instant) {
        self.gate.token_refreshed(now);
    }

    fn handle_response(&mut self, now: Instant, tag: u64, response: Response) {
        let outcome = outcome_of(response, GateConfig::DEFAULT.max_body);
        let generation = accessgate::Generation((tag >> 32) as u32);
        self.gate
            .handle_check_result(now, generation, tag as u32, outcome);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gate.handle_timeout(now);
    }

    fn poll_request(&mut self) -> Option<u64> {
        self.gate
            .poll_check()
            .map(|(g, a)| (u64::from(g.0) << 32) | u64::from(a))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gate.poll_timeout()
    }

    fn access(&self) -> Access {
        self.gate.access()
    }
}

impl<const N: usize> Policy for Ours<N> {
    fn sign_in(&mut self, now: Instant) {
        self.gate.start_session(now, TokenHandle(1));
        self.drain_events();
    }

    fn token_refreshed(&mut self, now: Instant) {
        let r = self.gate.token_refreshed(now, TokenHandle(1));
        debug_assert!(r.is_ok(), "{r:?}");
        self.drain_events();
    }

    fn handle_response(&mut self, now: Instant, tag: u64, response: Response) {
        let outcome = outcome_of(response, self.gate.config().max_body);
        let generation = accessgate::Generation((tag >> 32) as u32);
        self.gate
            .handle_check_result(now, generation, tag as u32, outcome);
        self.drain_events();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gate.handle_timeout(now);
        self.drain_events();
    }

    fn poll_request(&mut self) -> Option<u64> {
        self.gate
            .poll_check()
            .map(|c| (u64::from(c.generation.0) << 32) | u64::from(c.attempt))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gate.poll_timeout()
    }

    fn access(&self) -> Access {
        self.gate.access()
    }
}

/// Decimal digits of `v` in `buf` (a `Retry-After` header value).
fn format_u32(mut v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

// ---------------------------------------------------------------------------------------
// Peers.

/// Attempt bookkeeping shared by the peers: one request in flight at most, its timeout, and
/// one retry timer. Times are microseconds, [`NONE`] when unset.
#[derive(Clone, Copy, Debug)]
struct Attempts {
    /// Tag of the latest request; responses with another tag are stale.
    tag: u32,
    in_flight: bool,
    send_now: bool,
    timeout_at: u64,
    retry_at: u64,
    /// Requests made in the current check (the first included).
    made: u32,
}

impl Attempts {
    const fn new() -> Self {
        Attempts {
            tag: 0,
            in_flight: false,
            send_now: false,
            timeout_at: NONE,
            retry_at: NONE,
            made: 0,
        }
    }

    /// Whether a check is running (in flight or waiting to retry).
    fn active(&self) -> bool {
        self.in_flight || self.retry_at != NONE
    }

    /// A new check: forget the old one (its responses become stale) and send now.
    fn restart(&mut self, now: u64, timeout: u64) {
        self.made = 0;
        self.send(now, timeout);
    }

    fn send(&mut self, now: u64, timeout: u64) {
        self.tag = self.tag.wrapping_add(1);
        self.in_flight = true;
        self.send_now = true;
        self.timeout_at = now.saturating_add(timeout);
        self.retry_at = NONE;
        self.made += 1;
    }

    /// Accepts a response if it answers the request in flight.
    fn accept(&mut self, tag: u64) -> bool {
        if self.in_flight && tag == u64::from(self.tag) {
            self.in_flight = false;
            self.timeout_at = NONE;
            true
        } else {
            false
        }
    }

    fn stop(&mut self) {
        self.in_flight = false;
        self.timeout_at = NONE;
        self.retry_at = NONE;
    }

    fn next_timer(&self) -> Option<Instant> {
        let t = self.timeout_at.min(self.retry_at);
        (t != NONE).then(|| Instant::from_micros(t))
    }

    fn poll(&mut self) -> Option<u64> {
        std::mem::take(&mut self.send_now).then_some(u64::from(self.tag))
    }
}

/// What a peer does after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Retry at this instant.
    RetryAt(Instant),
    /// Stop retrying; access becomes what [`PeerRules::give_up`] says.
    GiveUp,
}

/// The per-peer part of a [`Peer`]: what to do after a failed attempt, and on a new check.
/// Implement it to add a peer.
pub trait PeerRules {
    /// Per-attempt timeout in microseconds.
    const ATTEMPT_TIMEOUT: u64 = 10_000_000;
    /// Whether a new check (refresh) restarts a running loop; "keeps trying" peers do not.
    const RESTART_ON_NEW_CHECK: bool = true;
    /// Access after giving up.
    fn give_up(&self, access: Access) -> Access;
    /// The attempt `made` (1-based, the one that just failed) failed at `now`.
    fn after_failure(
        &mut self,
        now: Instant,
        made: u32,
        timed_out: bool,
        rng: &mut fastrand::Rng,
    ) -> AfterFailure;
    /// A definitive answer arrived.
    fn on_success(&mut self) {}
    /// A new check starts (reset per-check state).
    fn on_new_check(&mut self) {}
}

/// A peer policy: shared attempt plumbing plus per-peer rules `R`.
#[derive(Clone, Debug)]
pub struct Peer<R> {
    rules: R,
    rng: fastrand::Rng,
    access: Access,
    attempts: Attempts,
}

impl<R: PeerRules> Peer<R> {
    fn with_rules(rules: R, seed: u64) -> Self {
        Peer {
            rules,
            rng: fastrand::Rng::with_seed(seed),
            access: Access::Unknown,
            attempts: Attempts::new(),
        }
    }

    fn new_check(&mut self, now: Instant) {
        if self.attempts.active() && !R::RESTART_ON_NEW_CHECK {
            return;
        }
        self.rules.on_new_check();
        self.attempts.restart(now.as_micros(), R::ATTEMPT_TIMEOUT);
    }

    fn failed(&mut self, now: u64, timed_out: bool) {
        let at = Instant::from_micros(now);
        match self
            .rules
            .after_failure(at, self.attempts.made, timed_out, &mut self.rng)
        {
            AfterFailure::RetryAt(t) => self.attempts.retry_at = t.as_micros().max(now),
            AfterFailure::GiveUp => {
                self.attempts.stop();
                self.access = self.rules.give_up(self.access);
            }
        }
    }
}

impl<R: PeerRules> Policy for Peer<R> {
    fn sign_in(&mut self, now: Instant) {
        self.access = Access::Unknown;
        self.attempts.stop();
        self.new_check(now);
    }

    fn token_refreshed(&mut self, now: Instant) {
        self.new_check(now);
    }

    fn handle_response(&mut self, now: Instant, tag: u64, response: Response) {
        self.handle_timeout(now);
        if !self.attempts.accept(tag) {
            return;
        }
        match response {
            Response::Granted | Response::Denied => {
                self.attempts.stop();
                self.rules.on_success();
                self.access = if response == Response::Granted {
                    Access::Granted
                } else {
                    Access::Denied
                };
            }
            Response::Unavailable { .. } | Response::Refused => self.failed(now.as_micros(), false),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = now.as_micros();
        if self.attempts.in_flight && self.attempts.timeout_at <= now {
            let at = self.attempts.timeout_at;
            self.attempts.in_flight = false;
            self.attempts.timeout_at = NONE;
            self.failed(at, true);
        }
        if self.attempts.retry_at <= now {
            self.attempts.send(now, R::ATTEMPT_TIMEOUT);
        }
    }

    fn poll_request(&mut self) -> Option<u64> {
        self.attempts.poll()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.attempts.next_timer()
    }

    fn access(&self) -> Access {
        self.access
    }
}

fn us(micros: u64) -> accessgate::Duration {
    accessgate::Duration::from_micros(micros)
}

/// The original PR: fixed sleeps, then denied until the next token refresh.
#[derive(Clone, Copy, Debug)]
pub struct FixedSleeps {
    sleeps: &'static [u32],
}

/// The original PR's final schedule (seconds).
pub const PR_FINAL_SLEEPS: [u32; 9] = [2, 4, 8, 16, 20, 20, 20, 20, 20];
/// The original PR's prime round (seconds).
pub const PR_PRIME_SLEEPS: [u32; 9] = [2, 3, 5, 7, 11, 13, 17, 19, 23];
/// The shipped fix: 3 attempts, 1 s then 2 s apart.
pub const SHIPPED_FIX_SLEEPS: [u32; 2] = [1, 2];

impl PeerRules for FixedSleeps {
    fn give_up(&self, access: Access) -> Access {
        let _ = access;
        Access::Denied
    }
    fn after_failure(&mut self, now: Instant, made: u32, _: bool, _: &mut fastrand::Rng) -> AfterFailure {
        match self.sleeps.get(made as usize - 1) {
            Some(&s) => AfterFailure::RetryAt(now + us(u64::from(s) * 1_000_000)),
            None => AfterFailure::GiveUp,
        }
    }
}

/// The shipped fix: like [`FixedSleeps`] but keeps the previous value after giving up.
#[derive(Clone, Copy, Debug)]
pub struct KeepPrevious;

impl PeerRules for KeepPrevious {
    fn give_up(&self, access: Access) -> Access {
        access // never fails closed
    }
    fn after_failure(&mut self, now: Instant, made: u32, _: bool, _: &mut fastrand::Rng) -> AfterFailure {
        match SHIPPED_FIX_SLEEPS.get(made as usize - 1) {
            Some(&s) => AfterFailure::RetryAt(now + us(u64::from(s) * 1_000_000)),
            None => AfterFailure::GiveUp,
        }
    }
}

/// AWS SDK "standard" retry mode with its per-client retry quota.
#[derive(Clone, Copy, Debug)]
pub struct AwsStandard {
    tokens: u16,
}

impl AwsStandard {
    /// Capacity of the retry quota bucket.
    pub const BUCKET: u16 = 500;
    /// Tokens a retry costs.
    pub const RETRY_COST: u16 = 5;
    /// Tokens a retry after a timeout costs.
    pub const TIMEOUT_COST: u16 = 10;
    /// Attempts in all, the first included.
    pub const MAX_ATTEMPTS: u32 = 3;
}

impl PeerRules for AwsStandard {
    fn give_up(&self, _: Access) -> Access {
        Access::Denied
    }
    fn after_failure(
        &mut self,
        now: Instant,
        made: u32,
        timed_out: bool,
        rng: &mut fastrand::Rng,
    ) -> AfterFailure {
        let cost = if timed_out {
            Self::TIMEOUT_COST
        } else {
            Self::RETRY_COST
        };
        if made >= Self::MAX_ATTEMPTS || self.tokens < cost {
            return AfterFailure::GiveUp;
        }
        self.tokens -= cost;
        // Delay before retry n (1-based) is U(0, min(1 s x 2^(n-1), 20 s)).
        let ceiling = (1_000_000u64 << (made - 1).min(10)).min(20_000_000);
        AfterFailure::RetryAt(now + us(rng.u64(0..=ceiling)))
    }
    fn on_success(&mut self) {
        self.tokens = (self.tokens + 1).min(Self::BUCKET);
    }
}

/// gRPC connection backoff (gRPC's `connection-backoff.md`).
#[derive(Clone, Copy, Debug)]
pub struct GrpcBackoff {
    /// Current backoff in microseconds.
    current: u64,
}

impl GrpcBackoff {
    const INITIAL: u64 = 1_000_000;
    const MAX: u64 = 120_000_000;
}

impl PeerRules for GrpcBackoff {
    const ATTEMPT_TIMEOUT: u64 = 20_000_000; // MIN_CONNECT_TIMEOUT
    const RESTART_ON_NEW_CHECK: bool = false;
    fn give_up(&self, access: Access) -> Access {
        access
    }
    fn after_failure(&mut self, now: Instant, _: u32, _: bool, rng: &mut fastrand::Rng) -> AfterFailure {
        // sleep = current +/- 20 %, then current = min(current x 1.6, max).
        let d = self.current;
        let jittered = d - d / 5 + rng.u64(0..=(2 * d / 5));
        self.current = (d * 8 / 5).min(Self::MAX);
        AfterFailure::RetryAt(now + us(jittered))
    }
    fn on_success(&mut self) {
        self.current = Self::INITIAL;
    }
    fn on_new_check(&mut self) {
        self.current = Self::INITIAL;
    }
}

/// LaunchDarkly's stream reconnect backoff.
#[derive(Clone, Copy, Debug)]
pub struct LaunchDarklyBackoff {
    failures: u32,
}

impl PeerRules for LaunchDarklyBackoff {
    const RESTART_ON_NEW_CHECK: bool = false;
    fn give_up(&self, access: Access) -> Access {
        access
    }
    fn after_failure(&mut self, now: Instant, _: u32, _: bool, rng: &mut fastrand::Rng) -> AfterFailure {
        // d = min(1 s x 2^failures, 30 s); delay uniform in [d/2, d].
        let d = (1_000_000u64 << self.failures.min(10)).min(30_000_000);
        self.failures = self.failures.saturating_add(1);
        AfterFailure::RetryAt(now + us(d / 2 + rng.u64(0..=d / 2)))
    }
    fn on_success(&mut self) {
        self.failures = 0;
    }
    fn on_new_check(&mut self) {
        self.failures = 0;
    }
}

/// The original PR (final or prime schedule).
pub type OriginalPr = Peer<FixedSleeps>;
/// The simpler fix that shipped.
pub type ShippedFix = Peer<KeepPrevious>;
/// AWS SDK standard retries.
pub type Aws = Peer<AwsStandard>;
/// gRPC connection backoff.
pub type Grpc = Peer<GrpcBackoff>;
/// LaunchDarkly reconnect.
pub type LaunchDarkly = Peer<LaunchDarklyBackoff>;

impl OriginalPr {
    /// The final schedule.
    pub fn final_schedule(seed: u64) -> Self {
        Peer::with_rules(
            FixedSleeps {
                sleeps: &PR_FINAL_SLEEPS,
            },
            seed,
        )
    }
    /// The prime schedule.
    pub fn prime_schedule(seed: u64) -> Self {
        Peer::with_rules(
            FixedSleeps {
                sleeps: &PR_PRIME_SLEEPS,
            },
            seed,
        )
    }
}

impl ShippedFix {
    /// A signed-out device.
    pub fn new(seed: u64) -> Self {
        Peer::with_rules(KeepPrevious, seed)
    }
}

impl Aws {
    /// A signed-out device with a full retry quota.
    pub fn new(seed: u64) -> Self {
        Peer::with_rules(
            AwsStandard {
                tokens: AwsStandard::BUCKET,
            },
            seed,
        )
    }
}

impl Grpc {
    /// A signed-out device.
    pub fn new(seed: u64) -> Self {
        Peer::with_rules(
            GrpcBackoff {
                current: GrpcBackoff::INITIAL,
            },
            seed,
        )
    }
}

impl LaunchDarkly {
    /// A signed-out device.
    pub fn new(seed: u64) -> Self {
        Peer::with_rules(LaunchDarklyBackoff { failures: 0 }, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_failures<P: Policy>(p: &mut P, n: usize) -> Vec<u64> {
        // Sign in at 0 and answer every request with Refused at once; return send times.
        let mut now = Instant::ZERO;
        p.sign_in(now);
        let mut sends = Vec::new();
        for _ in 0..4 * n {
            if sends.len() == n {
                break;
            }
            let Some(tag) = p.poll_request() else {
                match p.poll_timeout() {
                    Some(t) => {
                        now = t;
                        p.handle_timeout(now);
                        continue;
                    }
                    None => break,
                }
            };
            sends.push(now.as_micros() / 1_000_000);
            p.handle_response(now, tag, Response::Refused);
        }
        sends
    }

    #[test]
    fn pr_final_sleeps_then_denies() {
        let mut p = OriginalPr::final_schedule(1);
        let sends = run_failures(&mut p, 40);
        assert_eq!(sends, [0, 2, 6, 14, 30, 50, 70, 90, 110, 130]);
        assert_eq!(p.access(), Access::Denied);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn shipped_fix_keeps_previous_value() {
        let mut p = ShippedFix::new(1);
        p.sign_in(Instant::ZERO);
        let tag = p.poll_request().unwrap();
        p.handle_response(Instant::ZERO, tag, Response::Granted);
        p.token_refreshed(Instant::from_secs(10));
        let mut sends = 0;
        let mut now = Instant::from_secs(10);
        loop {
            if let Some(tag) = p.poll_request() {
                sends += 1;
                p.handle_response(now, tag, Response::Refused);
            } else if let Some(t) = p.poll_timeout() {
                now = t;
                p.handle_timeout(now);
            } else {
                break;
            }
        }
        assert_eq!(sends, 3);
        assert_eq!(now, Instant::from_secs(13));
        assert_eq!(p.access(), Access::Granted);
    }

    #[test]
    fn aws_makes_three_attempts_then_denies() {
        let mut p = Aws::new(5);
        let sends = run_failures(&mut p, 10);
        assert_eq!(sends.len(), 3);
        assert!(sends[2] <= 3);
        assert_eq!(p.access(), Access::Denied);
    }

    #[test]
    fn grpc_and_launchdarkly_keep_trying_with_capped_backoff() {
        let mut g = Grpc::new(9);
        let sends = run_failures(&mut g, 30);
        assert_eq!(sends.len(), 30);
        let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g <= 144), "{gaps:?}");
        assert!(gaps[20..].iter().all(|&g| g >= 95), "{gaps:?}");
        assert_eq!(g.access(), Access::Unknown);
        let mut l = LaunchDarkly::new(9);
        let sends = run_failures(&mut l, 30);
        let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[10..].iter().all(|&g| (14..=30).contains(&g)), "{gaps:?}");
    }

    #[test]
    fn ours_reads_retry_after_through_the_real_classifier() {
        let mut o: Ours = Ours::new(GateConfig::DEFAULT, 1);
        o.sign_in(Instant::ZERO);
        let tag = o.poll_request().unwrap();
        o.handle_response(
            Instant::ZERO,
            tag,
            Response::Unavailable {
                retry_after: Some(37),
            },
        );
        assert_eq!(o.poll_timeout(), Some(Instant::from_secs(37)));
        o.handle_timeout(Instant::from_secs(37));
        let tag = o.poll_request().unwrap();
        o.handle_response(Instant::from_secs(37), tag, Response::Granted);
        assert_eq!(o.access(), Access::Granted);
    }

    #[cfg(feature = "cli")]
    #[test]
    fn ids_are_the_command_line_names() {
        use clap::ValueEnum;
        for p in PolicyKind::value_variants() {
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.id());
        }
    }

    #[test]
    fn retry_after_digits() {
        let mut b = [0u8; 10];
        assert_eq!(format_u32(0, &mut b), b"0");
        assert_eq!(format_u32(4_294_967_295, &mut b), b"4294967295");
    }
}
