//! The session: one state machine per signed-in user or device (R3, R8–R11), in the shape of
//! quinn-proto's `Connection`.
//!
//! A [`Session`] owns one clock, one generation counter, one timer table, one event queue and
//! one PRNG (the machine's [`Shared`] state), the entitlement part ([`Entitlement`], the logic
//! a bare [`Gate`](crate::Gate) runs too) and the tokens. Methods: getters, inputs carrying
//! `now`, polled outputs ([`Session::poll_action`], [`Session::poll_waiter`],
//! [`Session::poll_event`], [`Session::poll_timeout`]). A driver, after every input, runs the
//! actions (starting and cancelling requests), drains the events, then delivers the waiter
//! outcomes (last, so a caller reads the state that produced its answer), and sleeps until
//! `poll_timeout`.
//!
//! Reports of what happened (`handle_timeout`, `handle_check_result`, `handle_refresh_result`,
//! `logout`) cannot fail; operations that can be refused have an error type each
//! ([`SignInError`], [`TokenRequestError`], [`RecheckError`]).
//!
//! Tokens are bounded byte strings of at most `T` bytes ([`DEFAULT_TOKEN_CAPACITY`] by
//! default), usable in an HTTP header ([`header_safe`]); a longer token is refused, never
//! truncated.

use crate::classify::{BodyError, CheckOutcome, RefreshOutcome, TransientClass};
use crate::config::{Backoff, ConfigError, GateConfig, Which};
use crate::detail::FailureDetail;
use crate::error::{header_safe, RecheckError, SignInError, TokenRequestError};
use crate::gate::{
    Access, Cause, CheckRequest, Counters, Entitlement, Event, Generation, Status, TokenHandle,
};
use crate::machine::{inc, Shared};
use crate::schedule::{delay_jitter, full_jitter};
use crate::time::{Duration, Instant};
use crate::timer::{Timer, TOKEN_TIMERS};

/// Default maximum length of an access or refresh token, in bytes.
pub const DEFAULT_TOKEN_CAPACITY: usize = 1024;
/// Capacity of a session's event queue: more than one input can produce, so a driver that
/// drains after every input never loses one (R12). The worst inputs queue 9: a sign-in over a
/// live session whose attempt 0 timed out as its deadline passed (`CheckFailed`,
/// `FirstCheckSettled`, `AccessChanged`), which ends it (`AccessChanged`, `SessionEnded`), starts
/// the new one (`CheckStarted`) with an expired token (`CheckFailed`, `FirstCheckSettled`) and
/// its refresh (`RefreshStarted`); a check result is bounded the same way. The simulator checks
/// that no input of millions loses an event (`Counters::events_lost` stays 0) and reports how
/// many steps came near the bound.
pub const SESSION_EVENT_CAPACITY: usize = 11;

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
    /// Its steps are also the floor of refresh starts: in a run of starts less than twice the
    /// cap apart, each waits at least the next step after the one before, whatever the server
    /// says about lifetimes. Keep the cap below the token lifetime minus the skew: with a
    /// longer cap, healthy refreshes one lifetime apart form such a run, are held back to one
    /// per cap, and a token can expire before its refresh may start.
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
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.gate.validate() {
            return Err(e);
        }
        let retry = &self.refresh_retry;
        if retry.base.as_micros() == 0 {
            return Err(ConfigError::ZeroBackoffBase(Which::Refresh));
        }
        if retry.factor == 0 {
            return Err(ConfigError::ZeroBackoffFactor(Which::Refresh));
        }
        if retry.cap.as_micros() < retry.base.as_micros() {
            return Err(ConfigError::CapBelowBase(Which::Refresh));
        }
        if self.refresh_timeout.as_micros() == 0 {
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

/// Identifies one refresh request; results for any other id are stale. Ids wrap after 2^32
/// refreshes (with the default backoff, refreshes start at least 1 s apart: 136 years, R11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RefreshId(pub u32);

/// Identifies a caller waiting for a valid token. Ids wrap after 2^32 callers; at most `W` are
/// unanswered or unpolled at a time, so a wrapped id never meets one of them.
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
    /// A refresh failed transiently; [`Status::last_failure`] records it too (R13).
    RefreshFailed {
        /// What went wrong.
        class: TransientClass,
        /// What exactly went wrong (R13).
        detail: FailureDetail,
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

/// Something the driver must do, in the order [`Session::poll_action`] hands them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Stop the check `(generation, attempt)` handed out earlier: it timed out, or a refresh,
    /// logout or answer superseded it. Its result, should it still arrive, is dropped (R10).
    CancelCheck {
        /// The check's generation.
        generation: Generation,
        /// The check's attempt number.
        attempt: u32,
    },
    /// Stop the refresh handed out earlier: it timed out or the session ended. Its result,
    /// should it still arrive, is dropped (R10).
    CancelRefresh(RefreshId),
    /// Run a token refresh.
    Refresh(RefreshRequest),
    /// Run a check with the token behind `req.token` ([`Session::access_token`]).
    Check(CheckRequest),
}

/// A session: sign-in, the entitlement part, refresh ahead of expiry, single-flight refresh
/// with waiters, logout races. `N`: retry schedule capacity; `W`: waiter table capacity;
/// `T`: maximum token length in bytes. Its `Debug` shows the tokens' lengths, never the tokens.
#[derive(Clone)]
// In a fixed order, the fields inputs touch most first, the token buffers last: short offsets
// on a Cortex-M0+, whose loads and stores reach 124 bytes (flash, issue 11).
#[repr(C)]
pub struct Session<const N: usize = 8, const W: usize = 4, const T: usize = DEFAULT_TOKEN_CAPACITY> {
    gate: Entitlement<N>,
    expires_at: Instant,
    /// When the last refresh started, and its place in the current run of refresh starts
    /// (R11 floor: see [`Session::refresh_floor`]). Kept across sign-ins: the floor protects
    /// the token endpoint from this device, whichever session asks.
    last_refresh_start: Option<Instant>,
    /// The refresh in flight (never more than one, R11).
    refresh: Option<RefreshId>,
    early_refresh_for: Option<Generation>,
    /// The generation whose first check the waiters wait for (R3, R11).
    waiter_generation: Option<Generation>,
    next_refresh_id: u32,
    failures_valid: u32,
    failures_expired: u32,
    refresh_streak: u32,
    next_waiter: u32,
    early_refresh_used: bool,
    /// Whether the refresh R11's floor holds back was asked for by a 403 (R9, R13).
    held_early: bool,
    /// Whether it still waits for the driver to poll it.
    refresh_pending: bool,
    io: Shared<SessionEvent, SESSION_EVENT_CAPACITY>,
    config: SessionConfig,
    waiters: heapless::Vec<WaiterId, W>,
    resolved: heapless::Deque<(WaiterId, Result<TokenHandle, WaitError>), W>,
    access_token: heapless::Vec<u8, T>,
    refresh_token: heapless::Vec<u8, T>,
}

impl<const N: usize, const W: usize, const T: usize> Session<N, W, T> {
    /// A signed-out session. `seed` seeds the jitter PRNG and must differ per device (R6, R11).
    ///
    /// ```
    /// use accessgate::{Session, SessionConfig};
    /// let s: Session = Session::new(SessionConfig::DEFAULT, 0x5eed).unwrap();
    /// assert!(!s.status().signed_in);
    /// // Zero-capacity token buffers are refused (a zero-capacity waiter table does not compile).
    /// assert!(Session::<8, 4, 0>::new(SessionConfig::DEFAULT, 1).is_err());
    /// ```
    ///
    /// A `const fn`: on a device the session can be a `static` built at compile time, so the
    /// image holds its initial bytes once (as `.data`) and no code that builds it. It gets its
    /// per-device seed at start-up with [`Session::reseed`]. `SessionConfig::validate` is a
    /// `const fn` too, so a bad configuration can fail the build:
    ///
    /// ```
    /// use accessgate::{ConfigError, Session, SessionConfig};
    /// use std::sync::Mutex;
    ///
    /// const CONFIG: SessionConfig = SessionConfig::DEFAULT;
    /// const _: () = assert!(CONFIG.validate().is_ok());
    /// static SESSION: Mutex<Result<Session, ConfigError>> = Mutex::new(Session::new(CONFIG, 0));
    ///
    /// let mut built = SESSION.lock().unwrap();
    /// let s = built.as_mut().expect("checked at compile time");
    /// s.reseed(0x5eed); // at start-up, from the device's entropy (R6)
    /// assert!(!s.status().signed_in);
    /// ```
    pub const fn new(config: SessionConfig, seed: u64) -> Result<Self, ConfigError> {
        if let Err(e) = config.validate() {
            return Err(e);
        }
        if N == 0 {
            return Err(ConfigError::ZeroRetryCapacity);
        }
        if config.gate.retry.count as usize > N {
            return Err(ConfigError::RetryCountOverCapacity);
        }
        if W == 0 || T == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        Ok(Self::signed_out(config, seed))
    }

    /// The signed-out state. Out of line, so a caller that moves the session into its place at
    /// run time (a driver's state) gets it built there, not built elsewhere and copied (flash).
    #[inline(never)]
    const fn signed_out(config: SessionConfig, seed: u64) -> Self {
        Session {
            config,
            io: Shared::new(seed),
            gate: Entitlement::new(),
            access_token: heapless::Vec::new(),
            refresh_token: heapless::Vec::new(),
            expires_at: Instant::ZERO,
            refresh: None,
            refresh_pending: false,
            next_refresh_id: 0,
            failures_valid: 0,
            failures_expired: 0,
            last_refresh_start: None,
            refresh_streak: 0,
            early_refresh_used: false,
            held_early: false,
            early_refresh_for: None,
            waiters: heapless::Vec::new(),
            waiter_generation: None,
            resolved: heapless::Deque::new(),
            next_waiter: 0,
        }
    }

    /// Seeds the jitter PRNG anew (R6, R11), for a session built before its per-device seed
    /// was known (a `static` built at compile time, see [`Session::new`]). Called before the
    /// first input, the session then draws exactly as one built with that seed.
    pub fn reseed(&mut self, seed: u64) {
        self.io.rng = fastrand::Rng::with_seed(seed);
    }

    // ---- getters ----

    /// What the app renders from.
    pub fn status(&self) -> Status {
        self.gate.status(&self.io)
    }
    /// Current access.
    pub fn access(&self) -> Access {
        self.gate.access()
    }
    /// Counters of checks and refreshes (R13).
    pub fn counters(&self) -> &Counters {
        &self.io.counters
    }
    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
    /// Whether the immediate check of the current generation (attempt 0, R3) is still running:
    /// a caller that wants "the first answer after sign-in" waits for
    /// [`Event::FirstCheckSettled`] while this is true.
    pub fn first_check_running(&self) -> bool {
        self.gate.first_check_running()
    }
    /// The latest `now` any input carried (an input at [`Instant::MAX`] happens 1 µs earlier).
    pub fn last_now(&self) -> Instant {
        self.io.now
    }
    fn live(&self) -> bool {
        self.gate.signed_in()
    }
    /// The current token's handle: the generation (a token belongs to exactly one).
    fn handle(&self) -> TokenHandle {
        TokenHandle(self.io.generation.0)
    }
    /// The handle of a token about to start a generation. The new generation has not asked
    /// for its early refresh yet (R9): forget which one did, or 2^32 generations later, when
    /// the counter has wrapped back to it, its 403 would not refresh early.
    fn next_handle(&mut self) -> TokenHandle {
        self.early_refresh_for = None;
        TokenHandle(self.io.generation.0.wrapping_add(1))
    }
    /// The access token behind `handle`, or `None` if the handle belongs to a token that was
    /// replaced or a session that ended (R11: a torn-down session's token is never handed out).
    pub fn access_token(&self, handle: TokenHandle) -> Option<&[u8]> {
        (self.live() && handle == self.handle()).then_some(&self.access_token[..])
    }
    /// The handle of the current access token, while signed in.
    pub fn current_token(&self) -> Option<TokenHandle> {
        self.live().then_some(self.handle())
    }
    /// The refresh token to send with a [`RefreshRequest`], while signed in.
    pub fn refresh_token(&self) -> Option<&[u8]> {
        self.live().then_some(&self.refresh_token[..])
    }
    /// When the current access token expires, while signed in.
    pub fn expires_at(&self) -> Option<Instant> {
        self.live().then_some(self.expires_at)
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
    /// Tokens must fit `T` bytes and be usable in a header ([`header_safe`]; the refresh token
    /// may be empty, meaning there is none); a refused sign-in changes nothing, not even the
    /// time.
    pub fn sign_in(
        &mut self,
        now: Instant,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Generation, SignInError> {
        if access_token.len() > T || refresh_token.len() > T {
            return Err(SignInError::TokenTooLong);
        }
        // An empty refresh token means "none" (the session cannot refresh; its refresh is
        // then rejected by the server and the session ends, R11).
        if !header_safe(access_token) || (!refresh_token.is_empty() && !header_safe(refresh_token)) {
            return Err(SignInError::TokenNotHeaderSafe);
        }
        Ok(self.input(now, |s, now| {
            s.end(Cause::LoggedOut);
            s.store_tokens(access_token, Some(refresh_token));
            s.early_refresh_used = false;
            s.held_early = false;
            s.failures_valid = 0;
            s.failures_expired = 0;
            let token = s.next_handle();
            let generation = s.gate_input(|g, cfg, io| g.start_session(cfg, io, token));
            s.set_expiry(now, expires_in, false);
            generation
        }))
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
    ) -> Result<Generation, SignInError> {
        self.sign_in(now, access_token, refresh_token, expires_in)
    }

    /// Logs out: waiters get `NotAuthenticated`, nothing in flight counts any more (R10, R11),
    /// and what was handed out is named in cancel actions. A no-op when signed out.
    pub fn logout(&mut self, now: Instant) {
        self.input(now, |s, _| s.end(Cause::LoggedOut))
    }

    /// A caller needs a valid access token. Single-flight (R11): callers that arrive while a
    /// refresh runs share it. The waiter table holds `W` callers; when it is full the caller
    /// gets [`TokenRequestError::WaitersFull`] (R12).
    pub fn request_token(&mut self, now: Instant) -> Result<TokenReply, TokenRequestError> {
        self.input(now, |s, now| {
            if !s.live() {
                return Err(TokenRequestError::NotSignedIn);
            }
            let valid = now < s.expires_at;
            let fresh = now < s.expires_at.saturating_sub(s.config.refresh_skew);
            let retry_pending = s.io.timers.is_set(Timer::RefreshRetry);
            let sharing = s.refresh.is_some() || s.waiter_generation.is_some();
            if !sharing && (fresh || (valid && retry_pending)) {
                return Ok(TokenReply::Ready(s.handle())); // R11, I9: not expired
            }
            if !sharing && !retry_pending && valid && s.refresh_floor().is_some_and(|f| now < f) {
                // R11: the refresh floor holds the refresh back (planned by start_refresh);
                // the token is still valid, so the caller gets it rather than wait.
                s.start_refresh(false);
                return Ok(TokenReply::Ready(s.handle()));
            }
            if s.waiters.len() + s.resolved.len() >= W {
                return Err(TokenRequestError::WaitersFull);
            }
            let id = WaiterId(s.next_waiter);
            s.next_waiter = s.next_waiter.wrapping_add(1);
            // Cannot fail: room checked above.
            let _ = s.waiters.push(id);
            if !sharing && !retry_pending {
                s.start_refresh(false);
            }
            Ok(TokenReply::Wait(id))
        })
    }

    /// The outcome of a check. A result for another generation or a finished attempt is
    /// dropped (R10); a 401 ends the session (R8); a 403 also asks for one early refresh (R9).
    pub fn handle_check_result(
        &mut self,
        now: Instant,
        generation: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) {
        self.input(now, |s, now| s.check_result(now, generation, attempt, outcome))
    }

    fn check_result(&mut self, now: Instant, generation: Generation, attempt: u32, outcome: CheckOutcome) {
        let forbidden = matches!(
            outcome,
            CheckOutcome::Transient {
                class: TransientClass::Forbidden,
                ..
            }
        );
        let current = self.live() && generation == self.io.generation;
        let ended = self.gate_input(|g, cfg, io| g.check_result(cfg, io, now, generation, attempt, outcome));
        if ended {
            self.teardown(WaitError::NotAuthenticated); // R8, R11
            return;
        }
        if current && outcome == CheckOutcome::Unauthorized {
            // R8: the server rejected the current token. The answer was dropped because the
            // attempt had already timed out, but the rejection still stands: a late 401 for
            // the current generation ends the session too.
            self.end(Cause::Unauthorized);
            return;
        }
        if current && outcome.is_definitive() {
            self.early_refresh_used = false;
        }
        if forbidden && current && !self.early_refresh_used && self.early_refresh_for != Some(generation) {
            // R9: some backends answer an expired token with 403: refresh early, once per
            // generation, and once per run of failures: a backend that keeps answering 403
            // would otherwise get a refresh per new generation, a refresh storm.
            self.early_refresh_used = true;
            self.early_refresh_for = Some(generation);
            self.start_refresh(true);
        }
    }

    /// The outcome of refresh `id`. A result for any other id (an older refresh, or one that
    /// was in flight at logout) changes nothing (R10).
    pub fn handle_refresh_result(&mut self, now: Instant, id: RefreshId, outcome: RefreshOutcome<'_>) {
        self.input(now, |s, now| s.refresh_result(now, id, outcome))
    }

    fn refresh_result(&mut self, now: Instant, id: RefreshId, outcome: RefreshOutcome<'_>) {
        if !self.live() || self.refresh != Some(id) {
            inc(&mut self.io.counters.stale_dropped);
            self.io.push(SessionEvent::StaleRefresh { id });
            return;
        }
        self.refresh = None;
        self.refresh_pending = false;
        self.io.timers.stop(Timer::RefreshTimeout);
        let usable = |t: &[u8]| t.len() <= T && header_safe(t);
        match outcome {
            RefreshOutcome::Refreshed {
                access_token,
                refresh_token,
                expires_in,
            } if usable(access_token) && refresh_token.is_none_or(usable) => {
                self.store_tokens(access_token, refresh_token);
                self.failures_valid = 0;
                self.failures_expired = 0;
                self.set_expiry(now, expires_in, true);
                let token = self.next_handle();
                let Ok(generation) = self.gate_input(|g, cfg, io| g.token_refreshed(cfg, io, token)) else {
                    return; // unreachable: the session is live
                };
                if !self.waiters.is_empty() {
                    // Waiters get the new token once its immediate check settles (R3), so a
                    // 401 on that check rejects them instead (R11).
                    self.waiter_generation = Some(generation);
                }
                info!("token refreshed, generation {}", generation.0);
                self.io.push(SessionEvent::Refreshed {
                    generation,
                    expires_at: self.expires_at,
                });
            }
            // An oversized token, or one no header can carry, is a malformed answer: never
            // truncated, never sent.
            RefreshOutcome::Refreshed { .. } => self.refresh_failed(
                TransientClass::InvalidBody,
                FailureDetail::Body(BodyError::TokenSchema),
            ),
            RefreshOutcome::Rejected => {
                warn!("refresh token rejected: signing out");
                self.io.push(SessionEvent::RefreshRejected);
                self.end(Cause::Unauthorized); // R11
            }
            RefreshOutcome::Transient { class, detail } => self.refresh_failed(class, detail),
        }
    }

    /// Time passed: fires every due timer. Harmless when early.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.input(now, |_, _| ())
    }

    /// The app asks for a re-check now (rate-limited; see [`Gate::recheck_now`](crate::Gate::recheck_now)).
    pub fn recheck_now(&mut self, now: Instant) -> Result<(), RecheckError> {
        self.input(now, |s, now| {
            s.gate_input(|g, cfg, io| g.recheck_now(cfg, io, now))
        })
    }

    // ---- outputs ----

    /// The next thing to do: cancels first (they free a lane), then a refresh, then a check.
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some((generation, attempt)) = self.io.cancel_check.take() {
            return Some(Action::CancelCheck { generation, attempt });
        }
        if let Some(id) = self.io.cancel_refresh.take() {
            return Some(Action::CancelRefresh(id));
        }
        if let (Some(id), true) = (self.refresh, core::mem::take(&mut self.refresh_pending)) {
            return Some(Action::Refresh(RefreshRequest {
                id,
                timeout: self.config.refresh_timeout,
                started: self.last_refresh_start.unwrap_or(self.io.now),
            }));
        }
        self.gate
            .poll_check(&self.config.gate, &mut self.io)
            .map(Action::Check)
    }

    /// The next waiter outcome: a token handle, or why there is none.
    pub fn poll_waiter(&mut self) -> Option<(WaiterId, Result<TokenHandle, WaitError>)> {
        self.resolved.pop_front()
    }

    /// The next event, in the order they happened.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.io.pop_event()
    }

    /// When to call [`Session::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.io.timers.next_expiry()
    }

    // ---- internals ----

    /// One input: time passes to `now` (never backwards), the input runs, then
    /// [`Session::after_input`].
    fn input<R>(&mut self, now: Instant, f: impl FnOnce(&mut Self, Instant) -> R) -> R {
        let now = self.io.advance(now);
        let r = f(self, now);
        self.after_input();
        r
    }

    /// One input of the entitlement part (see [`Entitlement::step`]).
    fn gate_input<R>(
        &mut self,
        f: impl FnOnce(&mut Entitlement<N>, &GateConfig, &mut Shared<SessionEvent, SESSION_EVENT_CAPACITY>) -> R,
    ) -> R {
        let cfg = &self.config.gate;
        self.gate.step(cfg, &mut self.io, |g, io| f(g, cfg, io))
    }

    /// After every input: the token timers, then the check timers (a refresh that comes due is
    /// never started, or a timed-out one answered, by the prologue of an input that then ends
    /// the session or answers it), then hold back a check whose token has expired, then settle
    /// waiters.
    fn after_input(&mut self) {
        let now = self.io.now; // the input's instant
        for _ in 0..TOKEN_TIMERS.len() {
            let Some((_, timer)) = self.io.timers.take_due(&TOKEN_TIMERS, now) else {
                break;
            };
            match timer {
                Timer::RefreshTimeout => {
                    self.drop_refresh();
                    let class = TransientClass::Timeout;
                    self.refresh_failed(class, FailureDetail::of_class(class));
                }
                _ => self.start_refresh(false),
            }
        }
        self.gate_input(|_, _, _| ());
        let pending = self.gate.pending_attempt(&self.io);
        if let Some(attempt) = pending.filter(|_| now >= self.expires_at) {
            // Never send a dead token: the check fails transiently and a refresh runs.
            let expired = CheckOutcome::transient(TransientClass::TokenExpired);
            let generation = self.io.generation;
            self.gate_input(|g, cfg, io| g.check_result(cfg, io, now, generation, attempt, expired));
            if self.refresh.is_none() && !self.io.timers.is_set(Timer::RefreshRetry) {
                self.start_refresh(false);
            }
        }
        if let Some(g) = self.waiter_generation {
            if !self.live() {
                self.resolve_waiters(Err(WaitError::NotAuthenticated));
            } else if self.io.generation != g || !self.gate.first_check_running() {
                if self.gate.first_check_running() {
                    // A newer refresh's check is running: wait for that one.
                    self.waiter_generation = Some(self.io.generation);
                } else {
                    self.waiter_generation = None;
                    // I9: never hand out a token that expired while its check ran.
                    if now < self.expires_at {
                        self.resolve_waiters(Ok(self.handle()));
                    } else {
                        self.resolve_waiters(Err(WaitError::Unavailable));
                    }
                }
            }
        }
    }

    fn store_tokens(&mut self, access_token: &[u8], refresh_token: Option<&[u8]>) {
        put(&mut self.access_token, access_token);
        if let Some(r) = refresh_token {
            put(&mut self.refresh_token, r);
        }
    }

    fn set_expiry(&mut self, now: Instant, expires_in: Duration, from_refresh: bool) {
        self.expires_at = now + expires_in;
        self.io.timers.stop(Timer::RefreshRetry);
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
                latest.saturating_sub(full_jitter(spread, &mut self.io.rng))
            };
            self.io.timers.set(Timer::RefreshDue, due);
        } else if from_refresh {
            // The server hands out tokens shorter-lived than the skew: refresh at half-life
            // (at least 1 s later) rather than in a tight loop.
            let half = Duration::from_micros(expires_in.as_micros() / 2).max(Duration::from_secs(1));
            self.io.timers.set(Timer::RefreshDue, now + half);
        } else {
            // A stored session inside the skew, or already expired: refresh at once.
            self.io.timers.stop(Timer::RefreshDue);
            self.start_refresh(false);
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
    fn start_refresh(&mut self, early: bool) {
        let now = self.io.now;
        if !self.live() || self.refresh.is_some() {
            return; // R11: at most one refresh in flight
        }
        if let Some(floor) = self.refresh_floor().filter(|&f| now < f) {
            self.io.timers.set(Timer::RefreshRetry, floor); // R11: never faster than the floor
            self.io.timers.stop(Timer::RefreshDue);
            // R13: when it starts at the floor, it is still the one a 403 asked for (R9).
            if early {
                self.held_early = true;
            }
            debug!("refresh held back until the floor (early: {})", early);
            return;
        }
        let early = early | core::mem::take(&mut self.held_early);
        // A start within twice the backoff cap of the previous one continues the run (the
        // floor grows); after a quiet spell the run starts over at the backoff's base.
        let quiet = self.config.refresh_retry.cap.saturating_mul(2);
        self.refresh_streak = match self.last_refresh_start {
            Some(t) if now < t + quiet => self.refresh_streak.saturating_add(1),
            _ => 0,
        };
        self.last_refresh_start = Some(now);
        let id = RefreshId(self.next_refresh_id);
        self.next_refresh_id = self.next_refresh_id.wrapping_add(1);
        self.refresh = Some(id);
        self.io
            .timers
            .set(Timer::RefreshTimeout, now + self.config.refresh_timeout);
        self.io.timers.stop(Timer::RefreshRetry);
        self.io.timers.stop(Timer::RefreshDue);
        inc(&mut self.io.counters.refreshes);
        self.refresh_pending = true;
        debug!("refresh {} started (early: {})", id.0, early);
        self.io.push(SessionEvent::RefreshStarted { id, early });
    }

    /// The refresh in flight stops mattering without its own answer (timed out, session
    /// ended): withdrawn if the driver has not taken it yet, else named in a cancel action.
    fn drop_refresh(&mut self) {
        if let Some(id) = self.refresh.take() {
            if !core::mem::take(&mut self.refresh_pending) {
                self.io.cancel_refresh = Some(id);
            }
        }
        self.io.timers.stop(Timer::RefreshTimeout);
    }

    fn refresh_failed(&mut self, class: TransientClass, detail: FailureDetail) {
        let now = self.io.now;
        inc(&mut self.io.counters.refresh_failures);
        let valid = now < self.expires_at;
        // `k`: this failure's place in its run. Wrapping, not saturating (a few bytes of
        // flash): a run of 2^32 failures, at least a backoff base apart, only starts over.
        let (delay, k) = if valid {
            // R11: 1 s doubling to 5 s while the token is still valid.
            let k = self.failures_valid;
            self.failures_valid = k.wrapping_add(1);
            (
                delay_jitter(self.config.refresh_retry.ceiling(k), &mut self.io.rng),
                k,
            )
        } else {
            // The token is dead and the backend unreachable: back off like recovery probes
            // (R7) instead of hammering the token endpoint.
            let k = self.failures_expired;
            self.failures_expired = k.wrapping_add(1);
            (
                delay_jitter(self.config.gate.probe.ceiling(k), &mut self.io.rng),
                k,
            )
        };
        // R11: and never before the floor of refresh starts.
        let next_attempt = (now + delay).max(self.refresh_floor().unwrap_or(now));
        self.io.timers.set(Timer::RefreshRetry, next_attempt);
        // R5: the first failure of a run of failing refreshes (while the token is valid, and
        // again once it has expired) starts the fail-closed clock, or pulling the cable before
        // the hourly refresh would keep a grant for ever. Not every failure of the run: once
        // the checks that clock started have an answer, the backend's verdict is current, and
        // a check per refresh retry (every 5 s until expiry, R11) would load a check endpoint
        // that is up with one check every few seconds per device, e.g. for the hour after one
        // 403 (R9) on a device with no token endpoint.
        // R13: with its detail, in the event and in `Status::last_failure` (every one).
        let start = k == 0;
        let _ = self.gate_input(|g, cfg, io| g.transient_failure(cfg, io, now, class, detail, start));
        self.io.push(SessionEvent::RefreshFailed {
            class,
            detail,
            next_attempt,
        });
        if !self.waiters.is_empty() && self.waiter_generation.is_none() {
            if valid {
                // The current token is still good: hand it out rather than block (R11).
                self.resolve_waiters(Ok(self.handle()));
            } else {
                self.resolve_waiters(Err(WaitError::Unavailable));
            }
        }
    }

    /// Ends the session for `cause` (a no-op when signed out): the entitlement part ends it,
    /// then [`Session::teardown`]. Out of line: four inputs end a session (flash, issue 11).
    #[inline(never)]
    fn end(&mut self, cause: Cause) {
        if self.live() {
            self.gate_input(|g, _, io| g.end(io, cause));
            self.teardown(WaitError::NotAuthenticated); // R11: waiters learn the session ended
        }
    }

    /// The session is over (the entitlement part already ended it): forget the tokens,
    /// withdraw or cancel the refresh, answer the waiters.
    fn teardown(&mut self, why: WaitError) {
        // Nothing of a torn-down session may be handed out (R11).
        put(&mut self.access_token, &[]);
        put(&mut self.refresh_token, &[]);
        self.drop_refresh();
        self.io.timers.stop(Timer::RefreshDue);
        self.io.timers.stop(Timer::RefreshRetry);
        self.io.timers.stop(Timer::RefreshTimeout);
        self.waiter_generation = None;
        self.resolve_waiters(Err(why));
    }

    fn resolve_waiters(&mut self, result: Result<TokenHandle, WaitError>) {
        for id in self.waiters.iter().copied() {
            // Cannot fail: registration keeps waiters + resolved within W.
            let _ = self.resolved.push_back((id, result));
        }
        self.waiters.clear();
    }
}

/// Replaces a token's bytes, zeroing the old ones first (so a shorter new token leaves no tail
/// of the old one, R11); `put(token, &[])` wipes it. A plain loop, not a memset: no memset
/// routine is linked for it; `black_box` keeps the compiler from making one of it. One store
/// per byte, no length update per byte: a few times faster on a sign-in. Out of line: one copy
/// for both tokens and both uses (flash). Cannot fail: the caller checked the length.
#[inline(never)]
fn put<const T: usize>(token: &mut heapless::Vec<u8, T>, bytes: &[u8]) {
    for b in token.iter_mut() {
        *b = 0;
        core::hint::black_box(b);
    }
    token.clear();
    let _ = token.extend_from_slice(bytes);
}

impl From<Event> for SessionEvent {
    fn from(e: Event) -> Self {
        SessionEvent::Gate(e)
    }
}

mod debug;
#[cfg(test)]
mod wrap;
