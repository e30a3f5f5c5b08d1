//! The shared state and the driver task.
//!
//! The [`accessgate::Session`] lives in [`Shared`], behind a `std::sync::Mutex` that is never
//! held across an `.await`. Every handle method locks it, gives the session its input with
//! `now`, drains the outputs and unlocks. The drain order is the same as the embassy driver's:
//!
//! 1. actions ([`accessgate::Session::poll_action`]: cancels first, then a refresh, then a check);
//! 2. events, broadcast as [`TimedEvent`]s;
//! 3. the [`Snapshot`], published when the state changed;
//! 4. answers: token waiters, callers awaiting the first check (R3), then (after the unlock)
//!    the caller whose input it was; so whoever gets an answer reads the state that produced it.
//!
//! The check that a caller's own input started (`sign_in`, `restore`, `recheck`) runs in that
//! caller's task ([`Inline`]): no hop to another task on the healthy path. Every request is
//! abortable under its key, so whoever drains a cancel stops it wherever it runs (R10).
//!
//! The driver task does what no caller awaits: the session's timers (retries, deadlines,
//! refresh due, attempt timeouts: the session owns every timeout, R4), background requests
//! (retries, refreshes) and requests whose caller went away. It is woken only when a request
//! is handed to it or the session's next timeout became earlier than its timer; a timer that
//! fires early costs one harmless `handle_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use accessgate::{
    Action, CheckOutcome, Duration, Generation, Instant, RefreshId, Session, SignInError, Status,
    TokenHandle, WaiterId, DEFAULT_TOKEN_CAPACITY,
};
use futures_util::future::{AbortHandle, Abortable, BoxFuture};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};

use crate::error::{GateError, TokenError};
use crate::gate::{Snapshot, TimedEvent};
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

type CheckKey = (Generation, u32);

/// A finished request with its key; `None` if it was aborted or panicked.
pub(crate) enum Done {
    Check(CheckKey, Option<CheckOutcome>),
    Refresh(RefreshId, Option<RefreshReply>),
}

/// A request the session asked for: abortable, a panic contained in it.
pub(crate) type Request = BoxFuture<'static, Done>;

/// Registers `request` under `key` in `slot` (the session has at most one check and one
/// refresh in flight, R11; a new one supersedes the old) and makes it abortable.
fn abortable<K, T: Send + 'static>(
    slot: &mut Option<(K, AbortHandle)>,
    key: K,
    request: impl Future<Output = T> + Send + 'static,
) -> impl Future<Output = Option<T>> + Send + 'static {
    let (handle, registration) = AbortHandle::new_pair();
    if let Some((_, old)) = slot.replace((key, handle)) {
        old.abort();
    }
    // A panic stays in the request, as it would in a task of its own; the session then times
    // it out by itself (R4).
    let request = Abortable::new(AssertUnwindSafe(request).catch_unwind(), registration);
    request.map(|r| match r {
        Ok(Ok(value)) => Some(value),
        Ok(Err(_)) => {
            log::error!("accessgate: a request panicked");
            None
        }
        Err(_aborted) => None,
    })
}

/// Takes `key`'s request out of `slot`: `false` if a cancel or a newer request took it first,
/// then its result no longer counts (R10) and is dropped here, as a stopped request's.
fn finish<K: PartialEq>(slot: &mut Option<(K, AbortHandle)>, key: K, abort: bool) -> bool {
    let Some((_, handle)) = slot.take_if(|(k, _)| *k == key) else {
        return false;
    };
    if abort {
        handle.abort();
    }
    true
}

/// Everything behind the lock: the session and the adapter's bookkeeping.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) session: Box<CoreSession>,
    check: Option<(CheckKey, AbortHandle)>,
    refresh: Option<(RefreshId, AbortHandle)>,
    pub(crate) waiters: HashMap<WaiterId, oneshot::Sender<Result<String, TokenError>>>,
    pub(crate) first_check: Vec<oneshot::Sender<Result<Status, GateError>>>,
    pub(crate) snapshot: watch::Sender<Snapshot>,
    /// The snapshot changed while nobody subscribed: not yet published.
    pub(crate) quiet: bool,
    pub(crate) events: broadcast::Sender<TimedEvent>,
    /// When the driver's timer fires (`None`: not armed). Never later than the session's next
    /// timeout: a drain that makes that earlier wakes the driver.
    driver_wake: Option<Instant>,
    closed: bool,
}

impl State {
    /// The token behind `handle` (visible ASCII: the core checks it before storing it).
    pub(crate) fn token(&self, handle: Result<TokenHandle, TokenError>) -> Result<String, TokenError> {
        let token = self.session.access_token(handle?);
        Ok(String::from_utf8_lossy(token.ok_or(TokenError::NotAuthenticated)?).into_owned())
    }

    /// Drains every output of the session after an input, in the order of the module doc.
    /// With `take`, the check the input started is returned for the caller to run; every other
    /// request goes to the driver. Idempotent.
    fn drain(&mut self, shared: &Shared, take: bool) -> Option<Request> {
        let mut mine = None;
        while let Some(action) = self.session.poll_action() {
            let request = match action {
                Action::CancelCheck { generation, attempt } => {
                    finish(&mut self.check, (generation, attempt), true);
                    continue;
                }
                Action::CancelRefresh(id) => {
                    finish(&mut self.refresh, id, true);
                    continue;
                }
                Action::Check(req) => {
                    let key = (req.generation, req.attempt);
                    // The session asks only with its current token; no token is not sent (R4).
                    let token = self.session.access_token(req.token).unwrap_or_default();
                    let request = shared.transport.clone().check(token.to_vec());
                    // One `tracing` span per attempt with the feature; the bare request without.
                    let request = crate::trace::check(req.generation, req.attempt, request);
                    let request = abortable(&mut self.check, key, request).map(move |o| Done::Check(key, o));
                    if take && mine.is_none() {
                        mine = Some(request.boxed());
                        continue;
                    }
                    request.boxed()
                }
                Action::Refresh(req) => {
                    let token = self.session.refresh_token().unwrap_or_default().to_vec();
                    let request = crate::trace::refresh(req.id, shared.transport.clone().refresh(token));
                    let request = abortable(&mut self.refresh, req.id, request);
                    request.map(move |r| Done::Refresh(req.id, r)).boxed()
                }
            };
            let _ = shared.background.send(request);
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
        // Only subscribers need waking, not the handles' own reader: without one the value is
        // updated in place, and `quiet` has `subscribe` publish it before a subscriber joins.
        let loud = self.snapshot.receiver_count() > 1;
        self.snapshot.send_if_modified(|old| {
            let changed = !snap.same_state(old);
            if changed {
                *old = snap;
            }
            self.quiet |= changed && !loud;
            changed && loud
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
        // R4: the driver's timer must not fire later than the session's next timeout.
        let next = self.session.poll_timeout();
        if next.is_some_and(|t| self.driver_wake.is_none_or(|w| t < w)) {
            self.driver_wake = next;
            shared.wake.notify_one();
        }
        mine
    }
}

/// What every handle and the driver task share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) clock: Clock,
    transport: Arc<Transport>,
    /// Requests for the driver task; it drops the receiver when it stops.
    background: mpsc::UnboundedSender<Request>,
    /// Wakes the driver: its timer must move earlier, or the gate closed.
    wake: Notify,
}

impl Shared {
    /// The shared state of a new gate and the driver task's receiver of requests.
    pub(crate) fn new(
        session: Box<CoreSession>,
        clock: Clock,
        transport: Transport,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<Request>) {
        let (background, requests) = mpsc::unbounded_channel();
        let state = State {
            snapshot: watch::Sender::new(Snapshot::of(&session, clock.now())),
            events: broadcast::Sender::new(EVENT_BUFFER),
            session,
            check: None,
            refresh: None,
            waiters: HashMap::new(),
            first_check: Vec::new(),
            quiet: false,
            driver_wake: None,
            closed: false,
        };
        let transport = Arc::new(transport);
        let wake = Notify::new();
        let state = Mutex::new(state);
        (
            Arc::new(Shared {
                state,
                clock,
                transport,
                background,
                wake,
            }),
            requests,
        )
    }

    /// The state, also after a panic elsewhere (every critical section leaves it consistent:
    /// the session's inputs do not panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One input: `f` gets the state and `now` under the lock, then the outputs are drained
    /// (with `take`, the check the input started is returned to run inline). `None` once closed.
    pub(crate) fn input<R>(
        &self,
        take: bool,
        f: impl FnOnce(&mut State, Instant) -> R,
    ) -> Option<(R, Option<Request>)> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let r = f(&mut state, self.clock.now());
        let mine = state.drain(self, take);
        Some((r, mine))
    }

    /// Hands a finished request's result to the session, unless a cancel or a newer request
    /// took its place (R10). `false` once closed.
    fn report(&self, done: Done) -> bool {
        self.input(false, |state, now| match done {
            Done::Check(key, outcome) => {
                if let (true, Some(outcome)) = (finish(&mut state.check, key, false), outcome) {
                    log::debug!(
                        "accessgate: check gen {} attempt {}: {outcome:?}",
                        key.0 .0,
                        key.1
                    );
                    state.session.handle_check_result(now, key.0, key.1, outcome);
                }
            }
            // The session reports every refresh result as an event.
            Done::Refresh(id, reply) => {
                if let (true, Some(reply)) = (finish(&mut state.refresh, id, false), reply) {
                    state.session.handle_refresh_result(now, id, reply.as_outcome());
                }
            }
        })
        .is_some()
    }

    /// Closes the gate: pending callers get `Closed` (their replies are dropped), requests in
    /// flight are aborted wherever they run, snapshot subscribers see the channel closed, and
    /// the driver stops. The session is not logged out. Idempotent.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.waiters.clear();
        state.first_check.clear();
        let (check, refresh) = (state.check.take(), state.refresh.take());
        check
            .map(|(_, h)| h)
            .into_iter()
            .chain(refresh.map(|(_, h)| h))
            .for_each(|h| h.abort());
        let last = *state.snapshot.borrow();
        state.snapshot = watch::Sender::new(last);
        drop(state);
        self.wake.notify_one();
    }

    /// Waits until the driver task has stopped.
    pub(crate) async fn stopped(&self) {
        self.background.closed().await;
    }

    /// Runs `request`, the check the caller's own input started, in the caller's task.
    pub(crate) fn inline(&self, request: Option<Request>) -> Inline<'_> {
        Inline {
            shared: self,
            request,
        }
    }
}

/// A caller's own request, run in its task; the session gets its result before the caller
/// resumes. If the caller goes away first (a dropped `recheck()` in a timeout or a `select!`),
/// the request goes to the driver task, and the session gets its result as if nothing had
/// happened. Resolves to `false` if the gate closed meanwhile.
pub(crate) struct Inline<'a> {
    shared: &'a Shared,
    request: Option<Request>,
}

impl Future for Inline<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let Some(request) = self.request.as_mut() else {
            return Poll::Ready(true);
        };
        let done = ready!(request.poll_unpin(cx));
        self.request = None;
        Poll::Ready(self.shared.report(done))
    }
}

impl Drop for Inline<'_> {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            let _ = self.shared.background.send(request);
        }
    }
}

/// Closes the gate when the driver task ends, also when its runtime drops it.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The driver task: the session's timers and the requests no caller runs. Runs until the gate
/// closes; dropping it drops the requests it polls, and the request receiver goes last, so
/// [`Shared::stopped`] sees all that done.
pub(crate) async fn run(shared: Arc<Shared>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let shared = CloseOnDrop(shared);
    let shared = &*shared.0;
    let mut running = FuturesUnordered::new();
    let timer = tokio::time::sleep_until(shared.clock.to_tokio(Instant::ZERO));
    tokio::pin!(timer);
    // The timer only moves earlier until it fires (see `State::drain`).
    let mut armed: Option<Instant> = None;
    loop {
        {
            let mut state = shared.lock();
            if state.closed {
                break;
            }
            // Also what a caller asked for: the deadline may be over already, but a timer
            // armed at it spares that caller's successors a wake (see `State::drain`).
            let next = state.session.poll_timeout();
            armed = armed.into_iter().chain(state.driver_wake).chain(next).min();
            state.driver_wake = armed;
        }
        if let Some(at) = armed.map(|t| shared.clock.to_tokio(t)) {
            if at != timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            Some(request) = requests.recv() => running.push(request),
            Some(done) = running.next(), if !running.is_empty() => {
                shared.report(done);
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                shared.input(false, |state, now| {
                    state.driver_wake = None;
                    state.session.handle_timeout(now);
                });
            }
        }
    }
    log::debug!("accessgate: driver stopped");
}
