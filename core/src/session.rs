//! The session layer: owns the tokens and drives the [`Gate`] (R8, R9, R10, R11).
//!
//! Same shape as the gate: getters, inputs carrying `now`, polled outputs
//! ([`Session::poll_action`], [`Session::poll_event`], [`Session::poll_waiter`],
//! [`Session::poll_timeout`]). A driver, after every input, starts the actions, delivers the
//! waiter outcomes, drains the events, and sleeps until `poll_timeout`.
//!
//! Tokens are bounded byte strings of at most `T` bytes ([`DEFAULT_TOKEN_CAPACITY`] by
//! default); a longer token is refused with [`SessionError::TokenTooLong`], never truncated.

use crate::classify::TransientClass;
use crate::config::{Backoff, ConfigError, GateConfig, Which};
use crate::gate::{
    Access, CheckRequest, Counters, Event, Gate, Generation, InputError, Status, TokenHandle,
    MAX_EVENTS_PER_INPUT,
};
use crate::json::{self, JsonStr, JsonValue, Top};
use crate::schedule::{delay_jitter, full_jitter};
use crate::time::{Duration, Instant};
use crate::CheckOutcome;

/// Default maximum length of an access or refresh token, in bytes.
pub const DEFAULT_TOKEN_CAPACITY: usize = 1024;
/// Capacity of the session's own event queue (gate events are queued in the gate).
pub const SESSION_EVENT_CAPACITY: usize = 8;
/// Free gate event slots a session input needs: one full gate input, then at most two more
/// events from the gate calls at the end of the input, each of which needs
/// [`MAX_EVENTS_PER_INPUT`] free slots when it starts.
const SESSION_GATE_ROOM: usize = 2 * MAX_EVENTS_PER_INPUT + 4;

/// Settings of a [`Session`]. [`SessionConfig::DEFAULT`] holds the spec's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct SessionConfig {
    /// The gate's settings.
    pub gate: GateConfig,
    /// Refresh this long before the access token expires (R11; default 60 s).
    pub refresh_skew: Duration,
    /// Backoff of a refresh that failed transiently while the token is valid (R11; 1 s x2, 5 s cap).
    pub refresh_retry: Backoff,
    /// How long one refresh request may take.
    pub refresh_timeout: Duration,
    /// Spreads the refresh point (R11, on by default): each refresh is due at a uniformly
    /// random instant in `[expiry - skew - spread, expiry - skew]`, the spread never more than
    /// half the lifetime left beyond the skew. Devices that signed in together otherwise
    /// refresh, and re-check, together every token lifetime: at 1,000,000 devices that echo
    /// took the grant from 80 % of a granted fleet (tests/fleet/RESULTS.md). The default,
    /// 10 min, spreads an hourly token's refreshes over its last 11 minutes, so a fleet the
    /// backend can check within 10 minutes never comes back as one herd. Zero refreshes
    /// exactly `skew` ahead.
    pub refresh_spread: Duration,
}

impl SessionConfig {
    /// The defaults of behaviour.md.
    pub const DEFAULT: SessionConfig = SessionConfig {
        gate: GateConfig::DEFAULT,
        refresh_skew: Duration::from_secs(60),
        refresh_retry: Backoff {
            base: Duration::from_secs(1),
            factor: 2,
            cap: Duration::from_secs(5),
        },
        refresh_timeout: Duration::from_secs(10),
        refresh_spread: Duration::from_secs(600),
    };

    /// Checks that the configuration can be honoured.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.gate.validate()?;
        if self.refresh_retry.base == Duration::ZERO {
            return Err(ConfigError::ZeroBackoffBase(Which::Refresh));
        }
        if self.refresh_retry.factor == 0 {
            return Err(ConfigError::ZeroBackoffFactor(Which::Refresh));
        }
        if self.refresh_retry.cap < self.refresh_retry.base {
            return Err(ConfigError::CapBelowBase(Which::Refresh));
        }
        if self.refresh_timeout == Duration::ZERO {
            return Err(ConfigError::ZeroAttemptTimeout);
        }
        Ok(())
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig::DEFAULT
    }
}

/// Identifies one refresh request; results for any other id are stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RefreshId(pub u32);

/// Identifies a caller waiting for a valid token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WaiterId(pub u32);

/// "Refresh the token now": the driver posts the refresh token ([`Session::refresh_token`])
/// to the token endpoint and reports with [`Session::handle_refresh_result`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RefreshRequest {
    /// The request's id.
    pub id: RefreshId,
    /// Give up after this long (the session also times it out by itself).
    pub timeout: Duration,
    /// When the session started it.
    pub started: Instant,
}

/// Something the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Run a check with the token behind `req.token` ([`Session::access_token`]).
    Check(CheckRequest),
    /// Run a token refresh.
    Refresh(RefreshRequest),
}

/// What a refresh request produced, as the session consumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome<'a> {
    /// `200` with new tokens.
    Refreshed {
        /// The new access token.
        access_token: &'a [u8],
        /// The new refresh token, if the server rotated it.
        refresh_token: Option<&'a [u8]>,
        /// Lifetime of the new access token.
        expires_in: Duration,
    },
    /// `400 invalid_grant` or `401`: the refresh token is dead; the session ends (R11).
    Rejected,
    /// Anything else; retried with backoff (R11).
    Transient(TransientClass),
}

/// Why a waiter did not get a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WaitError {
    /// The session ended (logout, 401, rejected refresh) while the caller waited (R11).
    NotAuthenticated,
    /// The refresh failed transiently and the current token has expired; ask again later.
    Unavailable,
}

/// An answer to [`Session::request_token`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TokenReply {
    /// The current token is valid: read it with [`Session::access_token`].
    Ready(TokenHandle),
    /// A refresh is needed or running: the outcome arrives through [`Session::poll_waiter`].
    Wait(WaiterId),
}

/// Why a session input was refused. A refused input changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SessionError {
    /// A token is longer than the capacity `T`.
    TokenTooLong,
    /// Event queues lack room: drain [`Session::poll_event`] and give the input again (R12).
    QueueFull,
    /// The waiter table is full; nothing was registered (R12).
    WaitersFull,
    /// The input needs an active session.
    NotSignedIn,
    /// A re-check was asked for too soon.
    RateLimited {
        /// Earliest instant a re-check is accepted.
        retry_at: Instant,
    },
}

impl From<InputError> for SessionError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::QueueFull => SessionError::QueueFull,
            InputError::NotSignedIn => SessionError::NotSignedIn,
            InputError::RateLimited { retry_at } => SessionError::RateLimited { retry_at },
        }
    }
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionError::TokenTooLong => f.write_str("token longer than the session's capacity"),
            SessionError::QueueFull => f.write_str("event queue full: drain poll_event first"),
            SessionError::WaitersFull => f.write_str("too many callers waiting for a token"),
            SessionError::NotSignedIn => f.write_str("no active session"),
            SessionError::RateLimited { .. } => f.write_str("re-check rate-limited"),
        }
    }
}

impl core::error::Error for SessionError {}

/// Something that happened in the session or its gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum SessionEvent {
    /// An event of the gate.
    Gate(Event),
    /// A refresh started (`early`: asked for by a 403, R9).
    RefreshStarted {
        /// Its id.
        id: RefreshId,
        /// Whether a 403 asked for it.
        early: bool,
    },
    /// New tokens arrived; the gate moved to `generation` and re-checks (R3).
    Refreshed {
        /// The new generation.
        generation: Generation,
        /// When the new access token expires.
        expires_at: Instant,
    },
    /// A refresh failed transiently.
    RefreshFailed {
        /// What went wrong.
        class: TransientClass,
        /// When it is retried.
        next_attempt: Instant,
    },
    /// The server rejected the refresh token; the session ended (R11).
    RefreshRejected,
    /// A refresh result for another request was dropped (R10).
    StaleRefresh {
        /// The result's id.
        id: RefreshId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Due = 0,
    Retry = 1,
    Timeout = 2,
}
const TIMERS: [Timer; 3] = [Timer::Due, Timer::Retry, Timer::Timeout];

#[derive(Clone, Copy, Debug)]
struct InFlight {
    id: u32,
}

/// A session around a [`Gate`]: sign-in, refresh ahead of expiry, single-flight refresh
/// with waiters, logout races. `N`: retry schedule capacity; `W`: waiter table capacity;
/// `T`: maximum token length in bytes.
#[derive(Clone, Debug)]
pub struct Session<const N: usize = 8, const W: usize = 4, const T: usize = DEFAULT_TOKEN_CAPACITY> {
    gate: Gate<N>,
    config: SessionConfig,
    rng: fastrand::Rng,
    live: bool,
    access_token: heapless::Vec<u8, T>,
    refresh_token: heapless::Vec<u8, T>,
    expires_at: Instant,
    epoch: u32,
    refresh: Option<InFlight>,
    next_refresh_id: u32,
    failures_valid: u32,
    failures_expired: u32,
    /// When the last refresh started, and its place in the current run of refresh starts
    /// (R11 floor: see [`Session::refresh_floor`]). Kept across sign-ins: the floor protects
    /// the token endpoint from this device, whichever session asks.
    last_refresh_start: Option<Instant>,
    refresh_streak: u32,
    timers: [Option<Instant>; 3],
    early_refresh_used: bool,
    early_refresh_for: Option<Generation>,
    waiters: heapless::Vec<WaiterId, W>,
    waiter_generation: Option<Generation>,
    resolved: heapless::Deque<(WaiterId, Result<TokenHandle, WaitError>), W>,
    next_waiter: u32,
    pending_refresh: Option<RefreshRequest>,
    pending_check: Option<CheckRequest>,
    deferred_failure: Option<TransientClass>,
    last_now: Instant,
    events: heapless::Deque<SessionEvent, SESSION_EVENT_CAPACITY>,
}

impl<const N: usize, const W: usize, const T: usize> Session<N, W, T> {
    /// A signed-out session. `seed` must differ per device (see [`Gate::new`]).
    ///
    /// ```
    /// use accessgate::{Session, SessionConfig};
    /// let s: Session = Session::new(SessionConfig::DEFAULT, 0x5eed).unwrap();
    /// assert!(!s.status().signed_in);
    /// // Zero-capacity token buffers are refused (a zero-capacity waiter table does not compile).
    /// assert!(Session::<8, 4, 0>::new(SessionConfig::DEFAULT, 1).is_err());
    /// ```
    pub fn new(config: SessionConfig, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        if W == 0 || T == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        Ok(Session {
            gate: Gate::new(config.gate, seed)?,
            config,
            rng: fastrand::Rng::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15),
            live: false,
            access_token: heapless::Vec::new(),
            refresh_token: heapless::Vec::new(),
            expires_at: Instant::ZERO,
            epoch: 0,
            refresh: None,
            next_refresh_id: 0,
            failures_valid: 0,
            failures_expired: 0,
            last_refresh_start: None,
            refresh_streak: 0,
            timers: [None; 3],
            early_refresh_used: false,
            early_refresh_for: None,
            waiters: heapless::Vec::new(),
            waiter_generation: None,
            resolved: heapless::Deque::new(),
            next_waiter: 0,
            pending_refresh: None,
            pending_check: None,
            deferred_failure: None,
            last_now: Instant::ZERO,
            events: heapless::Deque::new(),
        })
    }

    // ---- getters ----

    /// The gate's status (what the app renders from).
    pub fn status(&self) -> Status {
        self.gate.status()
    }
    /// Current access.
    pub fn access(&self) -> Access {
        self.gate.access()
    }
    /// The gate inside (read-only).
    pub fn gate(&self) -> &Gate<N> {
        &self.gate
    }
    /// Counters of the gate and of refreshes (R13).
    pub fn counters(&self) -> &Counters {
        self.gate.counters()
    }
    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
    /// The access token behind `handle`, or `None` if the handle belongs to a token that was
    /// replaced or a session that ended (R11: a torn-down session's token is never handed out).
    pub fn access_token(&self, handle: TokenHandle) -> Option<&[u8]> {
        (self.live && handle.0 == self.epoch).then_some(&self.access_token[..])
    }
    /// The handle of the current access token, while signed in.
    pub fn current_token(&self) -> Option<TokenHandle> {
        self.live.then_some(TokenHandle(self.epoch))
    }
    /// The refresh token to send with a [`RefreshRequest`], while signed in.
    pub fn refresh_token(&self) -> Option<&[u8]> {
        self.live.then_some(&self.refresh_token[..])
    }
    /// When the current access token expires, while signed in.
    pub fn expires_at(&self) -> Option<Instant> {
        self.live.then_some(self.expires_at)
    }
    /// Whether a refresh is in flight (never more than one, R11).
    pub fn refresh_in_flight(&self) -> bool {
        self.refresh.is_some()
    }
    /// Callers currently waiting for a token.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    // ---- inputs ----

    /// Signs in with fresh tokens: a new generation and an immediate check (R3). Signing in
    /// while signed in ends the old session first (its waiters get `NotAuthenticated`).
    pub fn sign_in(
        &mut self,
        now: Instant,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Generation, SessionError> {
        if access_token.len() > T || refresh_token.len() > T {
            return Err(SessionError::TokenTooLong);
        }
        self.input(now, |s, now| {
            if s.live {
                s.gate.logout(now)?;
                s.teardown(WaitError::NotAuthenticated);
            }
            s.access_token.clear();
            s.refresh_token.clear();
            // Cannot fail: lengths were checked above.
            let _ = s.access_token.extend_from_slice(access_token);
            let _ = s.refresh_token.extend_from_slice(refresh_token);
            s.live = true;
            s.epoch = s.epoch.wrapping_add(1);
            s.early_refresh_used = false;
            s.failures_valid = 0;
            s.failures_expired = 0;
            let generation = s.gate.start_session(now, TokenHandle(s.epoch))?;
            s.set_expiry(now, expires_in, false);
            Ok(generation)
        })
    }

    /// Restores a stored session at start-up. Access stays `Unknown` until its first check
    /// answers (R3). `expires_in` is the stored token's remaining lifetime; if it is within
    /// the skew a refresh starts at once, and if it has already expired the check waits for
    /// that refresh instead of sending a dead token.
    pub fn restore(
        &mut self,
        now: Instant,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Generation, SessionError> {
        self.sign_in(now, access_token, refresh_token, expires_in)
    }

    /// Logs out: waiters get `NotAuthenticated`, nothing in flight counts any more (R10, R11).
    pub fn logout(&mut self, now: Instant) -> Result<(), SessionError> {
        self.input(now, |s, now| {
            if s.live {
                s.gate.logout(now)?;
                s.teardown(WaitError::NotAuthenticated);
            }
            Ok(())
        })
    }

    /// A caller needs a valid access token. Single-flight (R11): callers that arrive while a
    /// refresh runs share it. The waiter table holds `W` callers; when it is full the caller
    /// gets [`SessionError::WaitersFull`] (R12).
    pub fn request_token(&mut self, now: Instant) -> Result<TokenReply, SessionError> {
        self.input(now, |s, now| {
            if !s.live {
                return Err(SessionError::NotSignedIn);
            }
            let valid = now < s.expires_at;
            let fresh = now < s.expires_at.saturating_sub(s.config.refresh_skew);
            let retry_pending = s.timers[Timer::Retry as usize].is_some();
            let sharing = s.refresh.is_some() || s.waiter_generation.is_some();
            if !sharing && (fresh || (valid && retry_pending)) {
                return Ok(TokenReply::Ready(TokenHandle(s.epoch))); // R11, I9: not expired
            }
            if !sharing && !retry_pending && valid && s.refresh_floor().is_some_and(|f| now < f) {
                // R11: the refresh floor holds the refresh back (planned by start_refresh);
                // the token is still valid, so the caller gets it rather than wait.
                s.start_refresh(now, false);
                return Ok(TokenReply::Ready(TokenHandle(s.epoch)));
            }
            if s.waiters.len() + s.resolved.len() >= W {
                return Err(SessionError::WaitersFull);
            }
            let id = WaiterId(s.next_waiter);
            s.next_waiter = s.next_waiter.wrapping_add(1);
            // Cannot fail: room checked above.
            let _ = s.waiters.push(id);
            if !sharing && !retry_pending {
                s.start_refresh(now, false);
            }
            Ok(TokenReply::Wait(id))
        })
    }

    /// The outcome of a check. A 403 also asks for one early refresh per generation (R9).
    pub fn handle_check_result(
        &mut self,
        now: Instant,
        generation: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) -> Result<(), SessionError> {
        self.input(now, |s, now| s.check_result(now, generation, attempt, outcome))
    }

    fn check_result(
        &mut self,
        now: Instant,
        generation: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) -> Result<(), SessionError> {
        let forbidden = matches!(
            outcome,
            CheckOutcome::Transient {
                class: TransientClass::Forbidden,
                ..
            }
        );
        let current = self.live && generation == self.gate.generation();
        self.gate.handle_check_result(now, generation, attempt, outcome)?;
        if current && outcome == CheckOutcome::Unauthorized && self.gate.signed_in() {
            // R8: the server rejected the current token. The gate dropped the answer because
            // it had already timed that attempt out, but the rejection still stands: a late
            // 401 for the current generation ends the session too.
            self.gate.unauthorized(now)?;
        }
        if current && outcome.is_definitive() {
            self.early_refresh_used = false;
        }
        if forbidden
            && current
            && self.live
            && !self.early_refresh_used
            && self.early_refresh_for != Some(generation)
        {
            // R9: some backends answer an expired token with 403: refresh early, once per
            // generation, and once per run of failures: a backend that keeps answering 403
            // would otherwise get a refresh per new generation, a refresh storm.
            self.early_refresh_used = true;
            self.early_refresh_for = Some(generation);
            if self.refresh.is_none() {
                self.start_refresh(now, true);
            }
        }
        Ok(())
    }

    /// The outcome of refresh `id`. A result for any other id (an older refresh, or one that
    /// was in flight at logout) changes nothing (R10).
    pub fn handle_refresh_result(
        &mut self,
        now: Instant,
        id: RefreshId,
        outcome: RefreshOutcome<'_>,
    ) -> Result<(), SessionError> {
        self.input(now, |s, now| s.refresh_result(now, id, outcome))
    }

    fn refresh_result(
        &mut self,
        now: Instant,
        id: RefreshId,
        outcome: RefreshOutcome<'_>,
    ) -> Result<(), SessionError> {
        if !self.live || self.refresh.map(|r| r.id) != Some(id.0) {
            self.gate.counters_mut().stale_dropped = self.gate.counters().stale_dropped.saturating_add(1);
            self.push(SessionEvent::StaleRefresh { id });
            return Ok(());
        }
        self.refresh = None;
        self.timers[Timer::Timeout as usize] = None;
        match outcome {
            RefreshOutcome::Refreshed {
                access_token,
                refresh_token,
                expires_in,
            } if access_token.len() <= T && refresh_token.is_none_or(|r| r.len() <= T) => {
                self.access_token.clear();
                let _ = self.access_token.extend_from_slice(access_token);
                if let Some(r) = refresh_token {
                    self.refresh_token.clear();
                    let _ = self.refresh_token.extend_from_slice(r);
                }
                self.epoch = self.epoch.wrapping_add(1);
                self.failures_valid = 0;
                self.failures_expired = 0;
                self.set_expiry(now, expires_in, true);
                let generation = self.gate.token_refreshed(now, TokenHandle(self.epoch))?;
                if !self.waiters.is_empty() {
                    // Waiters get the new token once its immediate check settles (R3), so a
                    // 401 on that check rejects them instead (R11).
                    self.waiter_generation = Some(generation);
                }
                info!("token refreshed, generation {}", generation.0);
                self.push(SessionEvent::Refreshed {
                    generation,
                    expires_at: self.expires_at,
                });
            }
            // An oversized token is a malformed answer, not something to truncate.
            RefreshOutcome::Refreshed { .. } => self.refresh_failed(now, TransientClass::InvalidBody),
            RefreshOutcome::Rejected => {
                warn!("refresh token rejected: signing out");
                self.push(SessionEvent::RefreshRejected);
                self.gate.unauthorized(now)?; // R11
                self.teardown(WaitError::NotAuthenticated);
            }
            RefreshOutcome::Transient(class) => self.refresh_failed(now, class),
        }
        Ok(())
    }

    /// Time passed: fires every due timer of the session and its gate. Harmless when early.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        self.input(now, |_, _| Ok(()))
    }

    /// The app asks for a re-check now (rate-limited; see [`Gate::recheck_now`]).
    pub fn recheck_now(&mut self, now: Instant) -> Result<(), SessionError> {
        self.input(now, |s, now| s.gate.recheck_now(now).map_err(SessionError::from))
    }

    // ---- outputs ----

    /// The next thing to do: a refresh, then a check.
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(r) = self.pending_refresh.take() {
            return Some(Action::Refresh(r));
        }
        self.pending_check.take().map(Action::Check)
    }

    /// The next waiter outcome: a token handle, or why there is none.
    pub fn poll_waiter(&mut self) -> Option<(WaiterId, Result<TokenHandle, WaitError>)> {
        self.resolved.pop_front()
    }

    /// The next event (gate events first).
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.gate
            .poll_event()
            .map(SessionEvent::Gate)
            .or_else(|| self.events.pop_front())
    }

    /// When to call [`Session::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.iter().flatten().min().copied();
        match (own, self.gate.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    fn begin(&mut self, now: Instant) -> Result<Instant, SessionError> {
        // Room for one full gate input (the caller's) plus the few events after_input's gate
        // calls can add (a started retry, a failed check), and for our own events.
        if self.gate.event_room() < SESSION_GATE_ROOM || SESSION_EVENT_CAPACITY - self.events.len() < 4 {
            return Err(SessionError::QueueFull);
        }
        // Monotonic: an input with an earlier `now` happens at the latest instant seen.
        let now = now.max(self.last_now).max(self.gate.last_now());
        self.last_now = now;
        Ok(now)
    }

    /// Runs one session input: the prologue, the input itself, then [`Session::after_input`],
    /// whatever the input returned (a refused input still lets time pass, as in the gate).
    fn input<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Self, Instant) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        let now = self.begin(now)?;
        let r = f(self, now);
        self.after_input(now);
        r
    }

    /// After every input: follow a logout the gate did by itself (401), hold back checks
    /// whose token has expired, and settle waiters.
    fn after_input(&mut self, now: Instant) {
        // A 401 the input delivered ended the gate's session: tear down first, so no refresh
        // comes due and no waiter is answered for a session that is already over (R8, R11).
        if self.live && !self.gate.signed_in() {
            self.teardown(WaitError::NotAuthenticated);
        }
        // The session's own timers fire after the input, like the gate's due retries: a
        // refresh that comes due is never started (or a timed-out one answered) by the
        // prologue of an input that then ends the session or answers it.
        for _ in 0..TIMERS.len() {
            let due = TIMERS
                .iter()
                .filter_map(|&t| self.timers[t as usize].filter(|&at| at <= now).map(|at| (at, t)))
                .min_by_key(|&(at, t)| (at, t as usize));
            let Some((_, timer)) = due else { break };
            self.timers[timer as usize] = None;
            match timer {
                Timer::Due | Timer::Retry => self.start_refresh(now, false),
                Timer::Timeout => {
                    self.refresh = None;
                    self.pending_refresh = None;
                    self.refresh_failed(now, TransientClass::Timeout);
                }
            }
        }
        // Gate inputs of this session input ran first, each firing the gate's due timers
        // itself; this fires them for inputs that did not touch the gate. In this order a
        // retry that came due is never started and then superseded by the same input. The
        // room for these calls was reserved in begin(), so they cannot be refused.
        if let Some(class) = self.deferred_failure.take() {
            let _ = self.gate.transient_failure(now, class);
        }
        let _ = self.gate.handle_timeout(now);
        if self.live && !self.gate.signed_in() {
            self.teardown(WaitError::NotAuthenticated); // R8, R11
            return;
        }
        if let Some(req) = self.gate.poll_check() {
            if now >= self.expires_at {
                // Never send a dead token: the check fails transiently and a refresh runs.
                let expired = CheckOutcome::transient(TransientClass::TokenExpired);
                // Room was reserved in begin().
                let _ = self
                    .gate
                    .handle_check_result(now, req.generation, req.attempt, expired);
                if self.refresh.is_none() && self.timers[Timer::Retry as usize].is_none() {
                    self.start_refresh(now, false);
                }
            } else {
                self.pending_check = Some(req);
            }
        }
        if let Some(g) = self.waiter_generation {
            if !self.live {
                self.resolve_waiters(Err(WaitError::NotAuthenticated));
            } else if self.gate.generation() != g || self.gate.status().attempt_in_flight != Some(0) {
                if self.gate.status().attempt_in_flight == Some(0) {
                    // A newer refresh's check is running: wait for that one.
                    self.waiter_generation = Some(self.gate.generation());
                } else {
                    self.waiter_generation = None;
                    // I9: never hand out a token that expired while its check ran.
                    if now < self.expires_at {
                        self.resolve_waiters(Ok(TokenHandle(self.epoch)));
                    } else {
                        self.resolve_waiters(Err(WaitError::Unavailable));
                    }
                }
            }
        }
    }

    fn set_expiry(&mut self, now: Instant, expires_in: Duration, from_refresh: bool) {
        self.expires_at = now + expires_in;
        self.timers[Timer::Retry as usize] = None;
        let skew = self.config.refresh_skew;
        if expires_in > skew {
            // R11: refresh `skew` ahead of expiry, optionally spread earlier (never earlier
            // than half the remaining lifetime beyond the skew).
            let latest = self.expires_at.saturating_sub(skew);
            let spread = self.config.refresh_spread.min(Duration::from_micros(
                expires_in.saturating_sub(skew).as_micros() / 2,
            ));
            let due = if spread == Duration::ZERO {
                latest
            } else {
                latest.saturating_sub(full_jitter(spread, &mut self.rng))
            };
            self.timers[Timer::Due as usize] = Some(due);
        } else if from_refresh {
            // The server hands out tokens shorter-lived than the skew: refresh at half-life
            // (at least 1 s later) rather than in a tight loop.
            let half = Duration::from_micros(expires_in.as_micros() / 2).max(Duration::from_secs(1));
            self.timers[Timer::Due as usize] = Some(now + half);
        } else {
            // A stored session inside the skew, or already expired: refresh at once.
            self.timers[Timer::Due as usize] = None;
            self.start_refresh(now, false);
        }
    }

    /// The earliest instant the next refresh may start (R11): the last start plus the refresh
    /// retry backoff's ceiling for its place in the run (1 s, 2 s, 4 s, then 5 s apart by
    /// default). Whatever `expires_in` says (0, 1 s, a token already expired), whoever asks
    /// (a due refresh, a check held back by an expired token, a waiting caller, a 403, a
    /// sign-in), refreshes never start more often: a broken token endpoint gets a trickle.
    fn refresh_floor(&self) -> Option<Instant> {
        self.last_refresh_start
            .map(|t| t + self.config.refresh_retry.ceiling(self.refresh_streak))
    }

    /// Starts a refresh now, or, when the floor of R11 holds it back, plans it for the floor
    /// (as a retry: callers that need a token wait for it).
    fn start_refresh(&mut self, now: Instant, early: bool) {
        if !self.live || self.refresh.is_some() {
            return; // R11: at most one refresh in flight
        }
        if let Some(floor) = self.refresh_floor().filter(|&f| now < f) {
            self.timers[Timer::Retry as usize] = Some(floor); // R11: never faster than the floor
            self.timers[Timer::Due as usize] = None;
            debug!("refresh held back until the floor (early: {})", early);
            return;
        }
        // A start within twice the backoff cap of the previous one continues the run (the
        // floor grows); after a quiet spell the run starts over at the backoff's base.
        let quiet = self.config.refresh_retry.cap.saturating_mul(2);
        self.refresh_streak = match self.last_refresh_start {
            Some(t) if now < t + quiet => self.refresh_streak.saturating_add(1),
            _ => 0,
        };
        self.last_refresh_start = Some(now);
        let id = self.next_refresh_id;
        self.next_refresh_id = self.next_refresh_id.wrapping_add(1);
        self.refresh = Some(InFlight { id });
        self.timers[Timer::Timeout as usize] = Some(now + self.config.refresh_timeout);
        self.timers[Timer::Retry as usize] = None;
        self.timers[Timer::Due as usize] = None;
        let c = self.gate.counters_mut();
        c.refreshes = c.refreshes.saturating_add(1);
        self.pending_refresh = Some(RefreshRequest {
            id: RefreshId(id),
            timeout: self.config.refresh_timeout,
            started: now,
        });
        debug!("refresh {} started (early: {})", id, early);
        self.push(SessionEvent::RefreshStarted {
            id: RefreshId(id),
            early,
        });
    }

    fn refresh_failed(&mut self, now: Instant, class: TransientClass) {
        self.pending_refresh = None;
        let c = self.gate.counters_mut();
        c.refresh_failures = c.refresh_failures.saturating_add(1);
        let valid = now < self.expires_at;
        let delay = if valid {
            // R11: 1 s doubling to 5 s while the token is still valid.
            let k = self.failures_valid;
            self.failures_valid = self.failures_valid.saturating_add(1);
            delay_jitter(self.config.refresh_retry.ceiling(k), &mut self.rng)
        } else {
            // The token is dead and the backend unreachable: back off like recovery probes
            // (R7) instead of hammering the token endpoint.
            let k = self.failures_expired;
            self.failures_expired = self.failures_expired.saturating_add(1);
            delay_jitter(self.config.gate.probe.ceiling(k), &mut self.rng)
        };
        // R11: and never before the floor of refresh starts.
        let next_attempt = (now + delay).max(self.refresh_floor().unwrap_or(now));
        self.timers[Timer::Retry as usize] = Some(next_attempt);
        // R5: a refresh that cannot reach the backend starts the fail-closed clock, or pulling
        // the cable before the hourly refresh would keep a grant for ever (applied to the
        // gate at the end of this input, after_input).
        self.deferred_failure = Some(class);
        self.push(SessionEvent::RefreshFailed { class, next_attempt });
        if !self.waiters.is_empty() && self.waiter_generation.is_none() {
            if valid {
                // The current token is still good: hand it out rather than block (R11).
                self.resolve_waiters(Ok(TokenHandle(self.epoch)));
            } else {
                self.resolve_waiters(Err(WaitError::Unavailable));
            }
        }
    }

    fn teardown(&mut self, why: WaitError) {
        self.live = false;
        // Forget the tokens: nothing of a torn-down session may be handed out (R11).
        self.access_token.iter_mut().for_each(|b| *b = 0);
        self.refresh_token.iter_mut().for_each(|b| *b = 0);
        self.access_token.clear();
        self.refresh_token.clear();
        self.epoch = self.epoch.wrapping_add(1);
        self.refresh = None;
        self.pending_refresh = None;
        self.pending_check = None;
        self.timers = [None; 3];
        self.waiter_generation = None;
        self.deferred_failure = None;
        self.resolve_waiters(Err(why));
    }

    fn resolve_waiters(&mut self, result: Result<TokenHandle, WaitError>) {
        for id in self.waiters.iter().copied() {
            // Cannot fail: registration keeps waiters + resolved within W.
            let _ = self.resolved.push_back((id, result));
        }
        self.waiters.clear();
    }

    fn push(&mut self, e: SessionEvent) {
        if self.events.push_back(e).is_err() {
            let c = self.gate.counters_mut();
            c.events_lost = c.events_lost.saturating_add(1);
        }
    }
}

/// Classifies a token endpoint response, as strictly as R1: a malformed 200 is transient.
///
/// ```
/// use accessgate::{classify_refresh, Duration, RefreshOutcome};
/// let body = br#"{"access_token":"at_1","refresh_token":"rt_2","expires_in":3600,"token_type":"Bearer"}"#;
/// assert_eq!(
///     classify_refresh(200, body, 4096),
///     RefreshOutcome::Refreshed {
///         access_token: b"at_1",
///         refresh_token: Some(b"rt_2"),
///         expires_in: Duration::from_secs(3600),
///     }
/// );
/// assert_eq!(classify_refresh(400, br#"{"error":"invalid_grant"}"#, 4096), RefreshOutcome::Rejected);
/// ```
pub fn classify_refresh(status: u16, body: &[u8], max_body: usize) -> RefreshOutcome<'_> {
    match status {
        200 => match token_body(body, max_body) {
            Some(t) => t,
            None => RefreshOutcome::Transient(TransientClass::InvalidBody),
        },
        401 => RefreshOutcome::Rejected,
        400 if error_is_invalid_grant(body, max_body) => RefreshOutcome::Rejected,
        403 => RefreshOutcome::Transient(TransientClass::Forbidden),
        429 => RefreshOutcome::Transient(TransientClass::Throttled),
        500..=599 => RefreshOutcome::Transient(TransientClass::ServerError),
        _ => RefreshOutcome::Transient(TransientClass::OtherStatus),
    }
}

/// Reads a token endpoint's 200 body (RFC 6749 §5.1) in one strict pass, as strictly as R1
/// reads a check body: a well-formed JSON object; keys compared after unescaping; each of
/// `access_token`, `refresh_token`, `expires_in`, `token_type` at most once (a duplicate under
/// any spelling makes the answer malformed); other fields ignored. `access_token` (non-empty)
/// and `expires_in` (a non-negative integer of seconds) are required; `refresh_token` (non-empty)
/// and `token_type` (`Bearer`, any case) may be absent or `null`. Token values are handed out
/// as slices of the body, so a token written with a JSON escape is refused rather than
/// unescaped into a buffer (OAuth tokens are plain ASCII, RFC 6750 `b64token`).
fn token_body(body: &[u8], max_body: usize) -> Option<RefreshOutcome<'_>> {
    if body.len() > max_body {
        return None;
    }
    #[derive(Clone, Copy)]
    enum Field<'a> {
        Absent,
        Once(JsonValue<'a>),
        Twice,
    }
    fn put<'a>(f: &mut Field<'a>, v: JsonValue<'a>) {
        *f = match f {
            Field::Absent => Field::Once(v),
            _ => Field::Twice,
        };
    }
    let (mut access, mut refresh, mut expires, mut kind) =
        (Field::Absent, Field::Absent, Field::Absent, Field::Absent);
    let top = json::scan(body, |key: JsonStr<'_>, v| {
        if key.eq_ascii(b"access_token") {
            put(&mut access, v);
        } else if key.eq_ascii(b"refresh_token") {
            put(&mut refresh, v);
        } else if key.eq_ascii(b"expires_in") {
            put(&mut expires, v);
        } else if key.eq_ascii(b"token_type") {
            put(&mut kind, v);
        }
    })
    .ok()?;
    if top != Top::Object {
        return None;
    }
    fn token(v: JsonValue<'_>) -> Option<&[u8]> {
        match v {
            JsonValue::Str(s) => s.unescaped().filter(|t| !t.is_empty()),
            _ => None,
        }
    }
    let Field::Once(a) = access else { return None };
    let access_token = token(a)?;
    let refresh_token = match refresh {
        Field::Absent | Field::Once(JsonValue::Null) => None,
        Field::Once(r) => Some(token(r)?),
        Field::Twice => return None,
    };
    let Field::Once(JsonValue::Number(n)) = expires else {
        return None;
    };
    let mut secs: u64 = 0;
    for &d in n {
        // Digits only: a sign, a fraction or an exponent is not a lifetime in seconds.
        if !d.is_ascii_digit() {
            return None;
        }
        secs = secs.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    match kind {
        Field::Absent | Field::Once(JsonValue::Null) => {}
        Field::Once(JsonValue::Str(t)) if t.eq_ascii_ignore_case(b"bearer") => {}
        _ => return None,
    }
    Some(RefreshOutcome::Refreshed {
        access_token,
        refresh_token,
        expires_in: Duration::from_secs(secs),
    })
}

/// Whether a 400 body is `{"error": "invalid_grant", ...}` (RFC 6749 §5.2), read as strictly
/// as a 200 body: exactly one `error` key, a string equal to `invalid_grant` after unescaping.
fn error_is_invalid_grant(body: &[u8], max_body: usize) -> bool {
    if body.len() > max_body {
        return false;
    }
    let (mut seen, mut grant) = (0u32, false);
    let top = json::scan(body, |key, v| {
        if key.eq_ascii(b"error") {
            seen += 1;
            grant = matches!(v, JsonValue::Str(s) if s.eq_ascii(b"invalid_grant"));
        }
    });
    top == Ok(Top::Object) && seen == 1 && grant
}
