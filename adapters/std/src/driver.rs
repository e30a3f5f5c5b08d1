//! The shared state and the driver task.
//!
//! The [`accessgate::Session`] lives in [`Shared`] behind a `std::sync::Mutex`, never held
//! across an `.await`. Every handle method locks it, gives the session its input with `now`,
//! drains the outputs in the embassy driver's order, and unlocks:
//!
//! 1. actions ([`accessgate::Session::poll_action`]: cancels first, then a refresh, then a check);
//! 2. events, broadcast as [`TimedEvent`]s;
//! 3. the [`Snapshot`], published when the state changed;
//! 4. answers: token waiters, callers awaiting the first check (R3), then (after the unlock)
//!    the caller whose input it was; so whoever gets an answer reads the state that produced it.
//!
//! The check a caller's own input started (`sign_in`, `restore`, `recheck`) runs in that
//! caller's task ([`Inline`]): no hop to another task on the healthy path. Every request is
//! abortable under its key, so whoever drains a cancel stops it wherever it runs (R10). The
//! other requests (retries, refreshes, those of callers that went away) run in tasks of their
//! own, off the healthy path. The driver task runs the session's timers (retries, deadlines,
//! refresh, attempt timeouts: the session owns every timeout, R4). It is woken only when the
//! session's next timeout moved before its timer; a timer that fires early is harmless. While a
//! timeout is pending it naps at most `RESUME_NAP`, so that a deadline that passed while the
//! machine was suspended is noticed on waking (tokio's timers stop then; `time.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};

use accessgate::{
    Action, CheckOutcome, Duration, Event, Generation, Instant, RefreshId, Session, SessionEvent,
    SignInError, Status, TokenHandle, WaiterId, DEFAULT_TOKEN_CAPACITY,
};
use futures_util::future::{AbortHandle, Abortable, BoxFuture, FutureExt};
use tokio::sync::{broadcast, oneshot, watch, Notify};
use zeroize::Zeroizing;

use crate::error::{GateError, TokenError};
use crate::gate::{Snapshot, TimedEvent};
use crate::http::{bearer, RefreshReply, Transport};
use crate::time::{Clock, RESUME_NAP};

/// How many callers may wait for a token at once (R11, R12): the session's waiter table. A
/// caller that gave up (its `access_token()` future dropped) leaves its place to the next.
pub const MAX_TOKEN_WAITERS: usize = 64;
/// Events kept for slow [`crate::AccessGate::events`] receivers before they see `Lagged`.
const EVENT_BUFFER: usize = 256;

/// The session type the adapter drives: retry capacity 8, [`MAX_TOKEN_WAITERS`] waiters,
/// tokens of up to [`accessgate::DEFAULT_TOKEN_CAPACITY`] bytes.
pub(crate) type CoreSession = Session<8, MAX_TOKEN_WAITERS, DEFAULT_TOKEN_CAPACITY>;

/// How a sign-in starts the session: [`CoreSession::sign_in`] or [`CoreSession::restore`].
pub(crate) type Start =
    fn(&mut CoreSession, Instant, &[u8], &[u8], Duration) -> Result<Generation, SignInError>;

/// What the session knows a request by. At most one check and one refresh run (R11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Check(Generation, u32),
    Refresh(RefreshId),
}

impl Key {
    /// Its lane in [`State`]: checks and refreshes run side by side, one of each.
    fn lane(self) -> usize {
        matches!(self, Key::Refresh(_)) as usize
    }
}

/// A request's result.
pub(crate) enum Outcome {
    Check(CheckOutcome),
    Refresh(RefreshReply),
}

/// A request the session asked for, abortable; no outcome if it was aborted or panicked.
pub(crate) type Request = BoxFuture<'static, (Key, Option<Outcome>)>;

/// Everything behind the lock: the session and the adapter's bookkeeping. Its `Debug` (which
/// `{:?}` of an [`AccessGate`](crate::AccessGate) reaches) shows no token: the core's
/// `Session` prints its tokens' lengths only.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) session: Box<CoreSession>,
    /// The check and the refresh in flight, by key, wherever they run.
    lanes: [Option<(Key, AbortHandle)>; 2],
    pub(crate) waiters: HashMap<WaiterId, oneshot::Sender<Result<String, TokenError>>>,
    pub(crate) first_check: Vec<oneshot::Sender<Status>>,
    /// The generation the last `sign_in`/`restore` started: which session a caller's start
    /// belongs to (a refresh moves the generation, not this).
    pub(crate) started: Option<Generation>,
    pub(crate) snapshot: watch::Sender<Snapshot>,
    /// The snapshot changed while nobody subscribed: not yet published.
    pub(crate) quiet: bool,
    pub(crate) events: broadcast::Sender<TimedEvent>,
    /// Whether anyone ever called `events()`: until then no send (a lock of its own) is needed.
    pub(crate) listened: bool,
    /// When the driver's timer fires (`None`: not armed); never after the session's next
    /// timeout (R4): a drain that moves that earlier wakes the driver.
    driver_wake: Option<Instant>,
    closed: bool,
}

impl State {
    /// The token behind `handle` (visible ASCII: the core checks it before storing it).
    pub(crate) fn token(&self, handle: Result<TokenHandle, TokenError>) -> Result<String, TokenError> {
        let token = self.session.access_token(handle?);
        Ok(String::from_utf8_lossy(token.ok_or(TokenError::NotAuthenticated)?).into_owned())
    }

    /// Registers `request` under `key` (a newer request supersedes the one in its lane) and
    /// makes it abortable.
    fn start(&mut self, key: Key, request: impl Future<Output = Outcome> + Send + 'static) -> Request {
        let (handle, registration) = AbortHandle::new_pair();
        if let Some((_, old)) = self.lanes[key.lane()].replace((key, handle)) {
            old.abort();
        }
        // A panic stays in the request, also in the caller's task; the session times it out (R4).
        let request = Abortable::new(AssertUnwindSafe(request).catch_unwind(), registration);
        let panicked = |_: &_| log::error!("accessgate: a request panicked");
        request
            .map(move |done| (key, done.ok().and_then(|r| r.inspect_err(panicked).ok())))
            .boxed()
    }

    /// Takes request `key` out of its lane (the caller aborts it on a cancel). `None` if it
    /// is not in flight: a cancel or a newer request took its place, its result no longer counts.
    fn take(&mut self, key: Key) -> Option<AbortHandle> {
        let lane = &mut self.lanes[key.lane()];
        lane.take_if(|(k, _)| *k == key).map(|(_, handle)| handle)
    }

    /// Drains every output of the session after an input, in the order of the module doc.
    /// With `take`, the check the input started is returned for the caller to run; the other
    /// requests run in the background. Idempotent.
    fn drain(&mut self, shared: &Arc<Shared>, take: bool) -> Option<Request> {
        let mut mine = None;
        while let Some(action) = self.session.poll_action() {
            let (key, request) = match action {
                Action::CancelCheck { generation, attempt } => (Key::Check(generation, attempt), None),
                Action::CancelRefresh(id) => (Key::Refresh(id), None),
                Action::Check(req) => {
                    // The session asks only with its current token; no token is not sent (R4).
                    // The header is built here, from the token in place: no copy of it.
                    let auth = self.session.access_token(req.token).and_then(bearer);
                    // One `tracing` span per attempt with the feature; the bare request without.
                    let check = shared.transport.clone().check(auth);
                    let check = crate::trace::check(req.generation, req.attempt, check);
                    let key = Key::Check(req.generation, req.attempt);
                    (key, Some(self.start(key, check.map(Outcome::Check))))
                }
                Action::Refresh(req) => {
                    let token = Zeroizing::new(self.session.refresh_token().unwrap_or_default().to_vec());
                    let refresh = crate::trace::refresh(req.id, shared.transport.clone().refresh(token));
                    let key = Key::Refresh(req.id);
                    (key, Some(self.start(key, refresh.map(Outcome::Refresh))))
                }
            };
            match request {
                // A cancel: the request stops wherever it runs (R10).
                None => drop(self.take(key).inspect(AbortHandle::abort)),
                Some(request) if take && mine.is_none() && matches!(key, Key::Check(..)) => {
                    mine = Some(request);
                }
                Some(request) => shared.background(request),
            }
        }
        // Events are stamped with the `now` of the input that produced them; no subscriber
        // is fine.
        let (at, origin) = (self.session.last_now(), Instant::ZERO);
        let mut changed = false;
        while let Some(event) = self.session.poll_event() {
            log::debug!("accessgate: {event:?}");
            changed |= matches!(
                event,
                SessionEvent::Gate(Event::AccessChanged { .. } | Event::SessionEnded { .. })
            );
            if self.listened {
                let _ = self.events.send(TimedEvent { event, at, origin });
            }
        }
        // R13: the counters reach the log after every access change or end of session.
        if changed {
            log::info!("accessgate: counters: {}", self.session.counters());
        }
        // Only subscribers need waking, not the handles' own reader: without one the value is
        // updated in place, and `quiet` has `subscribe` publish it before a subscriber joins.
        let (snap, loud) = (
            Snapshot::of(&self.session, at),
            self.snapshot.receiver_count() > 1,
        );
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
                let _ = reply.send(snap.status);
            }
        }
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
    /// Where background requests run: the gate's runtime.
    runtime: tokio::runtime::Handle,
    /// Wakes the driver: its timer must move earlier, or the gate closed.
    wake: Notify,
    /// Closed once the driver task, which holds its only receiver, has stopped.
    driver: watch::Sender<()>,
}

impl Shared {
    /// The shared state of a new gate, with its driver task spawned on `runtime`.
    pub(crate) fn spawn(
        session: Box<CoreSession>,
        clock: Clock,
        transport: Transport,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        let (driver, alive) = watch::channel(());
        let (snapshot, events) = (
            watch::Sender::new(Snapshot::of(&session, clock.now())),
            broadcast::Sender::new(EVENT_BUFFER),
        );
        let (waiters, first_check, lanes) = (HashMap::new(), Vec::new(), [None, None]);
        let state = State {
            session,
            lanes,
            waiters,
            first_check,
            started: None,
            snapshot,
            quiet: false,
            events,
            listened: false,
            driver_wake: None,
            closed: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            clock,
            transport: Arc::new(transport),
            runtime,
            wake: Notify::new(),
            driver,
        });
        // The task owns its closer from the start: a runtime that drops it unpolled closes the
        // gate, so no check runs that nothing would time out (R4).
        let driver = Driver {
            shared: Closer(shared.clone()),
            _alive: alive,
        };
        shared.runtime.spawn(run(driver));
        shared
    }

    /// Runs `request` in a task of its own, then hands its result to the session.
    fn background(self: &Arc<Self>, request: Request) {
        let shared = self.clone();
        self.runtime.spawn(async move { shared.report(request.await) });
    }

    /// The state, also after a panic elsewhere (no critical section leaves it half-changed:
    /// the session's inputs do not panic).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One input: `f` gets the state and `now` under the lock, then the outputs are drained
    /// (with `take`, the check the input started is returned to run in the caller's task).
    /// `None` once closed.
    pub(crate) fn input<R>(
        self: &Arc<Self>,
        take: bool,
        f: impl FnOnce(&mut State, Instant) -> R,
    ) -> Option<(R, Inline<'_>)> {
        let mut state = self.lock();
        let r = (!state.closed).then(|| f(&mut state, self.clock.now()))?;
        let request = state.drain(self, take);
        Some((r, Inline(self, request)))
    }

    /// Hands a finished request's result to the session, unless a cancel or a newer request
    /// took its place (R10). Then the status if the immediate check (R3) is over, read under the
    /// same lock as the drain that settled it; `Closed` once closed.
    fn report(self: &Arc<Self>, (key, outcome): (Key, Option<Outcome>)) -> Result<Option<Status>, GateError> {
        let mut state = self.lock();
        let now = (!state.closed)
            .then(|| self.clock.now())
            .ok_or(GateError::Closed)?;
        match (state.take(key).is_some(), key, outcome) {
            (true, Key::Check(generation, attempt), Some(Outcome::Check(outcome))) => {
                log::debug!(
                    "accessgate: check gen {} attempt {attempt}: {outcome:?}",
                    generation.0
                );
                state
                    .session
                    .handle_check_result(now, generation, attempt, outcome);
            }
            // The session reports every refresh result as an event.
            (true, Key::Refresh(id), Some(Outcome::Refresh(reply))) => {
                state.session.handle_refresh_result(now, id, reply.as_outcome());
            }
            _ => {}
        }
        state.drain(self, false);
        let settled = !state.session.first_check_running();
        Ok(settled.then(|| state.snapshot.borrow().status))
    }

    /// Closes the gate: pending callers get `Closed` (their replies are dropped), requests in
    /// flight are aborted wherever they run, snapshot and event receivers see their channel
    /// closed, and the driver stops. The session is not logged out. Idempotent.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.waiters.clear();
        state.first_check.clear();
        state
            .lanes
            .iter_mut()
            .filter_map(Option::take)
            .for_each(|(_, h)| h.abort());
        let last = *state.snapshot.borrow();
        state.snapshot = watch::Sender::new(last);
        // Event receivers see `Closed` after what was sent, as snapshot subscribers do.
        state.events = broadcast::Sender::new(1);
        drop(state);
        self.wake.notify_one();
    }

    /// A receiver of the events from now on; once closed, one that says so at once.
    pub(crate) fn events(&self) -> broadcast::Receiver<TimedEvent> {
        let mut state = self.lock();
        state.listened = true;
        match state.closed {
            false => state.events.subscribe(),
            true => broadcast::channel(1).1,
        }
    }

    /// Waits until the driver task has stopped.
    pub(crate) async fn stopped(&self) {
        self.driver.closed().await;
    }
}

/// A caller's own request, run in its task; the session gets its result before the caller
/// resumes. A caller that goes away first (a dropped `recheck()` in a timeout or `select!`)
/// hands it to a task of its own, and the session gets its result all the same. Then, as
/// [`Shared::report`]: the status if the immediate check is over. Without a request, at once.
pub(crate) struct Inline<'a>(&'a Arc<Shared>, Option<Request>);

impl Future for Inline<'_> {
    type Output = Result<Option<Status>, GateError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(request) = self.1.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        let done = ready!(request.poll_unpin(cx));
        self.1 = None;
        Poll::Ready(self.0.report(done))
    }
}

impl Drop for Inline<'_> {
    fn drop(&mut self) {
        if let Some(request) = self.1.take() {
            self.0.background(request);
        }
    }
}

/// Closes the gate when dropped: with the last handle, or with the driver task (also when its
/// runtime drops it).
#[derive(Debug)]
pub(crate) struct Closer(pub(crate) Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What the driver task owns: fields drop in order, so the gate is closed before
/// [`Shared::stopped`] sees the receiver go, whether the task ran or not.
struct Driver {
    shared: Closer,
    _alive: watch::Receiver<()>,
}

/// The driver task: the session's timers, until the gate closes.
async fn run(driver: Driver) {
    let shared = &driver.shared.0;
    let timer = tokio::time::sleep_until(shared.clock.to_tokio(Instant::ZERO));
    tokio::pin!(timer);
    loop {
        // The timer (`driver_wake`) only moves earlier until it fires, also to what a caller
        // asked for: that spares the next callers a wake.
        let armed = {
            let mut state = shared.lock();
            if state.closed {
                break;
            }
            let armed = state
                .driver_wake
                .into_iter()
                .chain(state.session.poll_timeout())
                .min();
            state.driver_wake = armed;
            armed
        };
        // While a timeout is pending, sleep at most `RESUME_NAP`: tokio's timers stop while
        // the machine is suspended, the gate's clock does not (time.rs; R5, R11).
        let nap = tokio::time::Instant::now() + RESUME_NAP;
        let due = armed.map(|t| shared.clock.to_tokio(t));
        if let Some(at) = due.map(|due| due.min(nap)) {
            if at != timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            // A nap that ended before the timeout only loops, and re-reads the clock.
            () = &mut timer, if armed.is_some() => if due.is_some_and(|due| due <= nap) {
                shared.input(false, |state, now| {
                    state.driver_wake = None;
                    state.session.handle_timeout(now);
                });
            }
        }
    }
    log::debug!("accessgate: driver stopped");
}
