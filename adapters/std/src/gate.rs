//! [`AccessGate`]: the app-facing async handle.

use std::sync::Arc;

use accessgate::{Access, Counters, Instant, SessionEvent, Status, TokenReply, TokenRequestError};
use tokio::sync::{broadcast, oneshot, watch};
use zeroize::Zeroize;

use crate::config::GateClientConfig;
use crate::driver::{Closer, CoreSession, Shared, Start};
use crate::error::{GateError, TokenError};
use crate::http::Transport;
use crate::time::Clock;

/// Tokens to start a session with. Zeroed when dropped (the session keeps its own copy, which
/// the core wipes when the session ends).
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The access token, sent as `Authorization: Bearer <access_token>`. Printable ASCII,
    /// at most [`accessgate::DEFAULT_TOKEN_CAPACITY`] bytes.
    pub access_token: String,
    /// The refresh token, posted to the token endpoint (R11). May be empty if there is none
    /// (then a refresh fails and the session ends when the access token expires).
    pub refresh_token: String,
    /// Remaining lifetime of the access token (`expires_in` of the token answer, or what is
    /// left of it for a stored session).
    pub expires_in: std::time::Duration,
}

impl Tokens {
    /// Tokens from their parts.
    pub fn new(
        access_token: impl Into<String>,
        refresh_token: impl Into<String>,
        expires_in: std::time::Duration,
    ) -> Self {
        Tokens {
            access_token: access_token.into(),
            refresh_token: refresh_token.into(),
            expires_in,
        }
    }
}

impl Drop for Tokens {
    fn drop(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

impl std::fmt::Debug for Tokens {
    /// Never prints the tokens themselves, only their lengths.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (access, refresh) = (self.access_token.len(), self.refresh_token.len());
        f.debug_struct("Tokens")
            .field("access_token", &format_args!("<{access} bytes>"))
            .field("refresh_token", &format_args!("<{refresh} bytes>"))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What the app renders from, published after every change (R13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Access, cause, signed-in, reverifying deadline, probing, attempt in flight.
    pub status: Status,
    /// Attempts, transient failures by class, stale results, fail-closed events, ... (R13).
    pub counters: Counters,
    /// When this snapshot was taken, on the gate's clock ([`AccessGate::now`]).
    pub now: Instant,
    /// When the current access token expires, while signed in.
    pub expires_at: Option<Instant>,
    /// Whether a token refresh is in flight (never more than one, R11).
    pub refresh_in_flight: bool,
}

impl Snapshot {
    /// The state of `session`, as of `now`.
    pub(crate) fn of(session: &CoreSession, now: Instant) -> Self {
        Snapshot {
            status: session.status(),
            counters: *session.counters(),
            now,
            expires_at: session.expires_at(),
            refresh_in_flight: session.refresh_in_flight(),
        }
    }

    /// Whether two snapshots show the same state (everything but `now`).
    pub fn same_state(&self, other: &Snapshot) -> bool {
        let other = Snapshot {
            now: self.now,
            ..*other
        };
        *self == other
    }
}

/// A [`SessionEvent`] with the instant of the input that produced it, for timelines and JSON
/// lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedEvent {
    /// What happened.
    pub event: SessionEvent,
    /// When, on the gate's clock (microseconds since the gate was spawned).
    pub at: Instant,
    /// The gate clock's origin ([`Instant::ZERO`]); pass it to
    /// [`accessgate::write_event_json`] so times print as milliseconds since spawn.
    pub origin: Instant,
}

impl TimedEvent {
    /// The event as one line of JSON ([`accessgate::write_event_json`]), no newline.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = accessgate::write_event_json(&mut s, &self.event, self.at, self.origin);
        s
    }
}

/// The app-facing handle: cheap to clone, every clone drives the same session.
///
/// The [`accessgate::Session`] sits behind a lock that every call takes briefly: the call gives
/// the session its input and publishes what follows, and a check the call itself started
/// ([`AccessGate::sign_in`], [`AccessGate::restore`], [`AccessGate::recheck`]) runs in the
/// caller's task. A background task runs the session's timers, and the requests nobody awaits
/// (retries, refreshes) run in tasks of their own. [`AccessGate::access`] and [`AccessGate::status`] read a [`watch`]
/// channel and never wait. The gate closes on [`AccessGate::shutdown`] or when the last handle
/// is dropped.
#[derive(Clone, Debug)]
pub struct AccessGate {
    handle: Arc<Handle>,
}

/// What the clones of one [`AccessGate`] share: the state (closed when the last clone goes)
/// and one reader of the snapshots.
#[derive(Debug)]
struct Handle {
    shared: Closer,
    snapshot: watch::Receiver<Snapshot>,
}

impl AccessGate {
    /// Validates `config`, builds the HTTP client, draws the jitter seed (OS RNG unless
    /// [`GateClientConfig::seed`] is set) and spawns the background task on the current Tokio
    /// runtime. Signed out until [`AccessGate::sign_in`] or [`AccessGate::restore`].
    ///
    /// That runtime runs the session's timers (attempt timeouts, retries, the fail-closed
    /// deadline, R4/R5): keep it running for as long as the gate is used. A runtime that is
    /// shut down closes the gate (calls answer [`GateError::Closed`]); one left alive but never
    /// driven (a current-thread runtime nobody calls `block_on` on) leaves the timers stalled.
    pub fn spawn(config: GateClientConfig) -> Result<AccessGate, GateError> {
        Self::spawn_with(config, Clock::start())
    }

    /// [`AccessGate::spawn`] with `clock` (tests suspend a gate with a manual one).
    pub(crate) fn spawn_with(config: GateClientConfig, clock: Clock) -> Result<AccessGate, GateError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| GateError::NoRuntime)?;
        let seed = match config.seed {
            Some(seed) => seed,
            None => getrandom::u64().map_err(GateError::Rng)?,
        };
        let session = Box::new(CoreSession::new(config.session, seed)?);
        let transport = Transport::new(&config)?;
        let shared = Shared::spawn(session, clock, transport, runtime);
        let snapshot = shared.lock().snapshot.subscribe();
        let (check, token) = (&config.check_url, &config.token_url);
        log::debug!("accessgate: gate spawned ({check} -> {token})");
        let handle = Arc::new(Handle {
            shared: Closer(shared),
            snapshot,
        });
        Ok(AccessGate { handle })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared.0
    }

    async fn start(&self, tokens: Tokens, start: Start) -> Result<Status, GateError> {
        let (access, refresh) = (tokens.access_token.as_bytes(), tokens.refresh_token.as_bytes());
        let (started, mine) = self
            .shared()
            .input(true, |state, now| {
                // The core checks lengths and header safety (SignInError).
                let started = start(&mut state.session, now, access, refresh, tokens.expires_in.into());
                state.started = started.as_ref().ok().copied().or(state.started);
                started
            })
            .ok_or(GateError::Closed)?;
        let generation = started?;
        // R3: the answer waits for the immediate check; it is over once this caller's own
        // check settled it, unless a refresh started a new attempt 0 meanwhile.
        let status = match mine.await? {
            Some(status) => status,
            None => self.wait_first_check().await?,
        };
        // R10: a status of this start's generation is this session's. Another generation is
        // the same session's after a refresh, or, once another start replaced it, not this
        // call's answer.
        match status.generation == generation || self.shared().lock().started == Some(generation) {
            true => Ok(status),
            false => Err(GateError::Superseded),
        }
    }

    /// Signs in ([`accessgate::Session::sign_in`]; a session already signed in ends first) and
    /// waits for the immediate check (R3), run in the caller's task: it answered, failed
    /// transiently (access unchanged, retries go on in the background), or the session ended
    /// (401). If the call is dropped before, the check goes on in the background.
    /// [`GateError::Superseded`] if another sign-in (from any clone) replaced this session
    /// before the call could answer for it.
    pub async fn sign_in(&self, tokens: Tokens) -> Result<Status, GateError> {
        self.start(tokens, CoreSession::sign_in).await
    }

    /// Restores a stored session at start-up ([`accessgate::Session::restore`]: `expires_in` is
    /// what is left of the token's lifetime); waits like [`AccessGate::sign_in`].
    pub async fn restore(&self, tokens: Tokens) -> Result<Status, GateError> {
        self.start(tokens, CoreSession::restore).await
    }

    /// Logs out (a no-op when signed out): callers waiting in [`AccessGate::access_token`] get
    /// [`TokenError::NotAuthenticated`], and nothing in flight counts any more (R10, R11).
    pub async fn logout(&self) -> Result<(), GateError> {
        let logout = self.shared().input(false, |state, now| state.session.logout(now));
        logout.map(|_| ()).ok_or(GateError::Closed)
    }

    /// Current access, without waiting.
    pub fn access(&self) -> Access {
        self.handle.snapshot.borrow().status.access
    }

    /// Current status (access, cause, signed-in, reverifying deadline...), without waiting.
    pub fn status(&self) -> Status {
        self.handle.snapshot.borrow().status
    }

    /// Current snapshot: status, counters (R13), token expiry.
    pub fn snapshot(&self) -> Snapshot {
        *self.handle.snapshot.borrow()
    }

    /// A receiver that sees every new snapshot (`changed().await`); for UIs.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        let mut state = self.shared().lock();
        if std::mem::take(&mut state.quiet) {
            // What changed while nobody subscribed is new to the subscriber.
            state.snapshot.send_modify(|_| ());
        }
        self.handle.snapshot.clone()
    }

    /// A receiver of every event from now on (check started/failed, access changed, refresh
    /// started/failed, ...), timestamped. Slow receivers skip ahead with `Lagged`. Once the
    /// gate is closed, `recv` returns `Closed` (after the events already sent).
    pub fn events(&self) -> broadcast::Receiver<TimedEvent> {
        self.shared().events()
    }

    /// Waits until no immediate check (attempt 0, R3) runs, and returns the status.
    pub async fn wait_first_check(&self) -> Result<Status, GateError> {
        let (reply, answer) = oneshot::channel();
        let waiting = self.shared().input(false, |state, _| {
            // Callers that gave up no longer hold a place.
            state.first_check.retain(|r| !r.is_closed());
            state.first_check.push(reply);
        });
        waiting.ok_or(GateError::Closed)?;
        answer.await.map_err(|_| GateError::Closed)
    }

    /// A valid access token, for the app's own API calls (R11): at once while fresh; otherwise
    /// after the one refresh shared by every caller and the new token's immediate check (a 401
    /// there gives `NotAuthenticated`, not a dead token).
    pub async fn access_token(&self) -> Result<String, TokenError> {
        let (reply, answer) = oneshot::channel();
        let asked = self
            .shared()
            .input(false, |state, now| match state.session.request_token(now) {
                Ok(TokenReply::Ready(handle)) => Some(state.token(Ok(handle))),
                // R11: the outcome arrives through poll_waiter (answered by the drain).
                Ok(TokenReply::Wait(id)) => {
                    state.waiters.insert(id, reply);
                    None
                }
                // R12: the table is full, but a caller that gave up leaves its place to this
                // one. The session answers all its waiters at once, alike: the place's answer
                // is the one a new place would get.
                Err(TokenRequestError::WaitersFull) => {
                    match state.waiters.values_mut().find(|r| r.is_closed()) {
                        Some(place) => {
                            *place = reply;
                            None
                        }
                        None => Some(Err(TokenError::WaitersFull)),
                    }
                }
                Err(e) => Some(Err(e.into())),
            });
        match asked.ok_or(TokenError::Closed)? {
            (Some(ready), _) => ready,
            (None, _) => answer.await.unwrap_or(Err(TokenError::Closed)),
        }
    }

    /// Asks for a re-check now (a "retry" button) and returns once the session has the check's
    /// outcome (read it from [`AccessGate::status`]): answered, failed transiently (retries go
    /// on in the background), timed out (R4) or superseded. The check runs in the caller's
    /// task; if the call is dropped before, it goes on in the background. At once, without a
    /// check of its own, while a check already runs; [`GateError::RateLimited`] within
    /// [`accessgate::GateConfig::min_recheck_interval`] of the last attempt. The fail-closed
    /// deadline does not move (R5).
    pub async fn recheck(&self) -> Result<(), GateError> {
        let recheck = self.shared().input(true, |state, now| {
            let result = state.session.recheck_now(now);
            result.map_err(|e| GateError::from_recheck(e, now))
        });
        let (result, mine) = recheck.ok_or(GateError::Closed)?;
        result?;
        mine.await.map(drop)
    }

    /// Closes the gate and waits for its background task to stop: requests in flight are
    /// aborted, pending calls fail with `Closed`. The session is not logged out (its tokens
    /// stay with the app). Idempotent; other clones see `Closed` afterwards.
    pub async fn shutdown(&self) {
        self.shared().close();
        self.shared().stopped().await;
    }

    /// Now, on the gate's clock (microseconds since spawn, counting the time the machine was
    /// suspended): compare with [`Status::reverifying_until`] and friends.
    pub fn now(&self) -> Instant {
        self.shared().clock.now()
    }

    /// The gate clock's origin as a Tokio instant (the moment of [`AccessGate::spawn`]).
    pub fn origin(&self) -> tokio::time::Instant {
        self.shared().clock.origin()
    }

    /// A gate-clock instant as a Tokio instant, e.g. to sleep until
    /// [`Status::reverifying_until`]. As of now: tokio's clock stops while the machine is
    /// suspended and the gate's does not, so after a suspend the same instant maps earlier
    /// (one that passed during the suspend maps to the past).
    pub fn to_tokio_instant(&self, at: Instant) -> tokio::time::Instant {
        self.shared().clock.to_tokio(at)
    }
}
