//! The driver: one task that owns the [`accessgate::Session`] and does its I/O.
//!
//! It waits for whichever comes first: a command from a handle, a finished request, or the
//! session's next deadline ([`accessgate::Session::poll_timeout`]), and feeds it to the session
//! with `now`. After every input it drains the session's outputs in this order, the same as the
//! embassy driver:
//!
//! 1. actions ([`accessgate::Session::poll_action`]: cancels first, then a refresh, then a check);
//! 2. events, broadcast as [`TimedEvent`]s;
//! 3. the [`Snapshot`], published when the state changed;
//! 4. answers: token waiters, callers awaiting the first check (R3), then the caller whose
//!    command it was; so whoever gets an answer reads the state that produced it.
//!
//! Requests are polled inside this task, not spawned, in two lanes: one check and one refresh,
//! as the session never has more in flight (R11). A new request, or the session's cancel, drops
//! the one in its lane. The session owns every timeout (R4): it cancels a request whose time is
//! up, so a request never times itself out and an attempt counts once.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use accessgate::{
    Action, Generation, Instant, RefreshId, Session, Status, TokenHandle, TokenReply, WaiterId,
    DEFAULT_TOKEN_CAPACITY,
};
use futures_util::FutureExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{GateError, TokenError};
use crate::gate::{Snapshot, TimedEvent, Tokens};
use crate::http::{RefreshReply, Transport};
use crate::time::Clock;

/// How many callers may wait for a token at once (R11, R12): the session's waiter table.
pub const MAX_TOKEN_WAITERS: usize = 64;

/// The session type the adapter drives: retry capacity 8, [`MAX_TOKEN_WAITERS`] waiters,
/// tokens of up to [`accessgate::DEFAULT_TOKEN_CAPACITY`] bytes.
pub(crate) type CoreSession = Session<8, MAX_TOKEN_WAITERS, DEFAULT_TOKEN_CAPACITY>;

/// A request from a handle.
pub(crate) enum Command {
    SignIn {
        tokens: Tokens,
        restore: bool,
        reply: oneshot::Sender<Result<Status, GateError>>,
    },
    Logout(oneshot::Sender<Result<(), GateError>>),
    Token(oneshot::Sender<Result<String, TokenError>>),
    Recheck(oneshot::Sender<Result<(), GateError>>),
    WaitFirstCheck(oneshot::Sender<Result<Status, GateError>>),
    Shutdown,
}

/// At most one request in flight and the key the session knows it by. `Err` once it panicked:
/// the panic stays in the request, and the session times the attempt out by itself (R4).
struct Lane<K, T>(Option<(K, Pin<Box<dyn Future<Output = std::thread::Result<T>> + Send>>)>);

impl<K: Copy + PartialEq, T> Lane<K, T> {
    /// Starts `request`, dropping the one in the lane (the session superseded it).
    fn start(&mut self, key: K, request: impl Future<Output = T> + Send + 'static) {
        self.0 = Some((key, Box::pin(AssertUnwindSafe(request).catch_unwind())));
    }

    /// Drops request `key` if it still runs: the session no longer needs it, and a result that
    /// still arrived would only be dropped as stale (R10).
    fn cancel(&mut self, key: K) {
        if self.0.as_ref().is_some_and(|(k, _)| *k == key) {
            self.0 = None;
        }
    }

    /// The next finished request; never ready while the lane is empty. Cancel-safe: the
    /// request stays in the lane until it finishes.
    async fn finished(&mut self) -> (K, std::thread::Result<T>) {
        let Some((key, request)) = &mut self.0 else {
            return std::future::pending().await;
        };
        let result = request.await;
        let key = *key;
        self.0 = None;
        (key, result)
    }
}

pub(crate) struct Driver {
    session: Box<CoreSession>,
    clock: Clock,
    transport: Arc<Transport>,
    checks: Lane<(Generation, u32), accessgate::CheckOutcome>,
    refreshes: Lane<RefreshId, RefreshReply>,
    waiters: HashMap<WaiterId, oneshot::Sender<Result<String, TokenError>>>,
    first_check: Vec<oneshot::Sender<Result<Status, GateError>>>,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<TimedEvent>,
}

impl Driver {
    pub(crate) fn new(
        session: Box<CoreSession>,
        clock: Clock,
        transport: Transport,
        snapshot: watch::Sender<Snapshot>,
        events: broadcast::Sender<TimedEvent>,
    ) -> Self {
        Driver {
            session,
            clock,
            transport: Arc::new(transport),
            checks: Lane(None),
            refreshes: Lane(None),
            waiters: HashMap::new(),
            first_check: Vec::new(),
            snapshot,
            events,
        }
    }

    /// Runs until a [`Command::Shutdown`] or until every handle is gone. Dropping the driver
    /// drops (cancels) the requests in flight and closes every pending reply (callers see
    /// `Closed`).
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // One timer for the session's deadline, moved only when the deadline moves.
        let timer = tokio::time::sleep_until(self.clock.to_tokio(Instant::ZERO));
        tokio::pin!(timer);
        let mut armed = None;
        loop {
            self.drain();
            let wake = self.session.poll_timeout().map(|t| self.clock.to_tokio(t));
            if let Some(at) = wake.filter(|&at| armed != Some(at)) {
                timer.as_mut().reset(at);
            }
            armed = wake;
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.command(cmd),
                },
                ((generation, attempt), outcome) = self.checks.finished() => match outcome {
                    Ok(outcome) => {
                        log::debug!("accessgate: check gen {} attempt {attempt}: {outcome:?}", generation.0);
                        self.session.handle_check_result(self.clock.now(), generation, attempt, outcome);
                    }
                    Err(_) => log::error!("accessgate: a check request panicked"),
                },
                // The session logs and reports every refresh result as an event.
                (id, reply) = self.refreshes.finished() => match reply {
                    Ok(reply) => self.session.handle_refresh_result(self.clock.now(), id, reply.as_outcome()),
                    Err(_) => log::error!("accessgate: a refresh request panicked"),
                },
                () = &mut timer, if wake.is_some() => {
                    // Fired: re-armed below even if the session asks for the same instant.
                    armed = None;
                    self.session.handle_timeout(self.clock.now());
                }
            }
        }
        log::debug!("accessgate: driver stopped");
    }

    fn command(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::SignIn {
                tokens,
                restore,
                reply,
            } => {
                let start = if restore {
                    CoreSession::restore
                } else {
                    CoreSession::sign_in
                };
                let (access, refresh) = (tokens.access_token.as_bytes(), tokens.refresh_token.as_bytes());
                // The core checks lengths and header safety (SignInError).
                match start(&mut self.session, now, access, refresh, tokens.expires_in.into()) {
                    // R3: the reply waits for the immediate check (answered by drain()).
                    Ok(_) => self.first_check.push(reply),
                    Err(e) => self.answer(reply, Err(e.into())),
                }
            }
            Command::Logout(reply) => {
                self.session.logout(now);
                self.answer(reply, Ok(()));
            }
            Command::Token(reply) => match self.session.request_token(now) {
                Ok(TokenReply::Ready(handle)) => {
                    let token = self.token(Ok(handle));
                    self.answer(reply, token);
                }
                // R11: the outcome arrives through poll_waiter (answered by drain()).
                Ok(TokenReply::Wait(id)) => {
                    self.waiters.insert(id, reply);
                }
                Err(e) => self.answer(reply, Err(e.into())),
            },
            Command::Recheck(reply) => {
                let result = self.session.recheck_now(now);
                self.answer(reply, result.map_err(|e| GateError::from_recheck(e, now)));
            }
            Command::WaitFirstCheck(reply) => self.first_check.push(reply),
            Command::Shutdown => {}
        }
    }

    /// Answers the caller of a command once the outputs of its input are drained (step 4).
    fn answer<T>(&mut self, reply: oneshot::Sender<T>, value: T) {
        self.drain();
        let _ = reply.send(value);
    }

    /// The token behind `handle` (visible ASCII: the core checks it before storing it).
    fn token(&self, handle: Result<TokenHandle, TokenError>) -> Result<String, TokenError> {
        let token = self
            .session
            .access_token(handle?)
            .ok_or(TokenError::NotAuthenticated)?;
        Ok(String::from_utf8_lossy(token).into_owned())
    }

    /// Drains every output of the session after an input, in the order of the module doc.
    /// Idempotent.
    fn drain(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::CancelCheck { generation, attempt } => self.checks.cancel((generation, attempt)),
                Action::CancelRefresh(id) => self.refreshes.cancel(id),
                Action::Check(req) => {
                    let Some(token) = self.session.access_token(req.token) else {
                        // Cannot happen (the session only asks for its current token); its
                        // attempt timer fails the check transiently anyway (R4).
                        log::error!("accessgate: check for an unknown token handle");
                        continue;
                    };
                    let request = self.transport.clone().check(token.to_vec());
                    // One `tracing` span per attempt with the feature; the bare request without.
                    let request = crate::trace::check(req.generation, req.attempt, request);
                    self.checks.start((req.generation, req.attempt), request);
                }
                Action::Refresh(req) => {
                    let token = self.session.refresh_token().unwrap_or_default().to_vec();
                    let request = self.transport.clone().refresh(token);
                    self.refreshes
                        .start(req.id, crate::trace::refresh(req.id, request));
                }
            }
        }
        // Events are stamped with the `now` of the input that produced them; no subscriber
        // is fine.
        let at = self.session.last_now();
        while let Some(event) = self.session.poll_event() {
            log::debug!("accessgate: {event:?}");
            let origin = Instant::ZERO;
            let _ = self.events.send(TimedEvent { event, at, origin });
        }
        let snap = Snapshot::of(&self.session, at);
        self.snapshot.send_if_modified(|old| {
            let changed = !old.same_state(&snap);
            if changed {
                *old = snap;
            }
            changed
        });
        while let Some((id, outcome)) = self.session.poll_waiter() {
            let token = self.token(outcome.map_err(TokenError::from));
            if let Some(reply) = self.waiters.remove(&id) {
                let _ = reply.send(token);
            }
        }
        // R3: callers awaiting the immediate check are answered once it is over (a definitive
        // answer, a transient failure, or the session ended). A refresh that lands meanwhile
        // starts a new attempt 0, which they then await.
        if !self.session.first_check_running() {
            for reply in self.first_check.drain(..) {
                let _ = reply.send(Ok(snap.status));
            }
        }
    }
}
