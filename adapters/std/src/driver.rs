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
use std::sync::Arc;

use accessgate::{
    Action, CheckOutcome, Duration, Generation, Instant, RefreshId, Session, SignInError, Status,
    TokenHandle, TokenReply, WaiterId, DEFAULT_TOKEN_CAPACITY,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{GateError, TokenError};
use crate::gate::{Snapshot, TimedEvent, Tokens};
use crate::http::{RefreshReply, Transport};
use crate::time::Clock;

/// How many callers may wait for a token at once (R11, R12): the session's waiter table.
pub const MAX_TOKEN_WAITERS: usize = 64;
/// Events kept for slow [`crate::AccessGate::events`] receivers before they see `Lagged`.
const EVENT_BUFFER: usize = 256;

/// The session type the adapter drives: retry capacity 8, [`MAX_TOKEN_WAITERS`] waiters,
/// tokens of up to [`accessgate::DEFAULT_TOKEN_CAPACITY`] bytes.
pub(crate) type CoreSession = Session<8, MAX_TOKEN_WAITERS, DEFAULT_TOKEN_CAPACITY>;

/// How a sign-in starts the session: [`CoreSession::sign_in`] or [`CoreSession::restore`].
pub(crate) type Start =
    fn(&mut CoreSession, Instant, &[u8], &[u8], Duration) -> Result<Generation, SignInError>;

/// A request from a handle.
pub(crate) enum Command {
    SignIn(Tokens, Start, oneshot::Sender<Result<Status, GateError>>),
    Logout(oneshot::Sender<Result<(), GateError>>),
    Token(oneshot::Sender<Result<String, TokenError>>),
    Recheck(oneshot::Sender<Result<(), GateError>>),
    WaitFirstCheck(oneshot::Sender<Result<Status, GateError>>),
    Shutdown,
}

/// At most one request in flight, with the key the session knows it by.
struct Lane<K, T>(Option<(K, BoxFuture<'static, std::thread::Result<T>>)>);

impl<K: Copy + PartialEq, T> Lane<K, T> {
    /// Starts `request`, dropping the one in the lane (the session superseded it).
    fn start(&mut self, key: K, request: impl Future<Output = T> + Send + 'static) {
        // A panic stays in the request, as it would in a task of its own.
        self.0 = Some((key, AssertUnwindSafe(request).catch_unwind().boxed()));
    }

    /// Drops request `key` if it still runs: the session no longer needs it (R10).
    fn cancel(&mut self, key: K) {
        if self.0.as_ref().is_some_and(|(k, _)| *k == key) {
            self.0 = None;
        }
    }

    /// The next finished request, `None` if it panicked (the session then times it out by
    /// itself, R4). Never ready while the lane is empty; cancel-safe.
    async fn finished(&mut self) -> (K, Option<T>) {
        let Some((key, request)) = &mut self.0 else {
            return std::future::pending().await;
        };
        let (key, result) = (*key, request.await);
        self.0 = None;
        let result = result.inspect_err(|_| log::error!("accessgate: a request panicked"));
        (key, result.ok())
    }
}

pub(crate) struct Driver {
    session: Box<CoreSession>,
    clock: Clock,
    transport: Arc<Transport>,
    checks: Lane<(Generation, u32), CheckOutcome>,
    refreshes: Lane<RefreshId, RefreshReply>,
    waiters: HashMap<WaiterId, oneshot::Sender<Result<String, TokenError>>>,
    first_check: Vec<oneshot::Sender<Result<Status, GateError>>>,
    pub(crate) snapshot: watch::Sender<Snapshot>,
    pub(crate) events: broadcast::Sender<TimedEvent>,
}

impl Driver {
    /// A driver for `session`, with its snapshot and event channels (subscribe before `run`).
    pub(crate) fn new(session: Box<CoreSession>, clock: Clock, transport: Transport) -> Self {
        Driver {
            snapshot: watch::Sender::new(Snapshot::of(&session, clock.now())),
            events: broadcast::Sender::new(EVENT_BUFFER),
            session,
            clock,
            transport: Arc::new(transport),
            checks: Lane(None),
            refreshes: Lane(None),
            waiters: HashMap::new(),
            first_check: Vec::new(),
        }
    }

    /// Runs until a [`Command::Shutdown`] or until every handle is gone. Dropping the driver
    /// drops the requests in flight and closes every pending reply (callers see `Closed`); the
    /// command receiver goes last, so a handle that sees the channel closed sees all that done.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // One timer for the session's deadline, moved only when the deadline moves or fired.
        let timer = tokio::time::sleep_until(self.clock.to_tokio(Instant::ZERO));
        tokio::pin!(timer);
        loop {
            self.drain();
            let wake = self.session.poll_timeout().map(|t| self.clock.to_tokio(t));
            if let Some(at) = wake.filter(|&at| at != timer.deadline() || timer.is_elapsed()) {
                timer.as_mut().reset(at);
            }
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.command(cmd),
                },
                ((generation, attempt), Some(outcome)) = self.checks.finished() => {
                    log::debug!("accessgate: check gen {} attempt {attempt}: {outcome:?}", generation.0);
                    self.session.handle_check_result(self.clock.now(), generation, attempt, outcome);
                }
                // The session reports every refresh result as an event.
                (id, Some(reply)) = self.refreshes.finished() => {
                    self.session.handle_refresh_result(self.clock.now(), id, reply.as_outcome());
                }
                () = &mut timer, if wake.is_some() => self.session.handle_timeout(self.clock.now()),
            }
        }
        log::debug!("accessgate: driver stopped");
        drop(self); // before `commands`: see the doc above
    }

    fn command(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::SignIn(tokens, start, reply) => {
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
                Ok(TokenReply::Ready(handle)) => self.answer(reply, self.token(Ok(handle))),
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
        let token = self.session.access_token(handle?);
        Ok(String::from_utf8_lossy(token.ok_or(TokenError::NotAuthenticated)?).into_owned())
    }

    /// Drains every output of the session after an input, in the order of the module doc.
    /// Idempotent.
    fn drain(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::CancelCheck { generation, attempt } => self.checks.cancel((generation, attempt)),
                Action::CancelRefresh(id) => self.refreshes.cancel(id),
                Action::Check(req) => {
                    // The session asks only with its current token; no token is not sent (R4).
                    let token = self.session.access_token(req.token).unwrap_or_default();
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
        if !snap.same_state(&self.snapshot.borrow()) {
            self.snapshot.send_replace(snap);
        }
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
