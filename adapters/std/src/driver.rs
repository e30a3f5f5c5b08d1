//! The driver: one task that owns the [`accessgate::Session`] and does its I/O.
//!
//! After every input it drains the session's outputs: actions (HTTP requests), events
//! (broadcast), then it publishes a [`Snapshot`], and only then answers token waiters and
//! callers awaiting the first check, so whoever gets an answer reads the state that produced it.
//! Then it waits for whichever comes first: a command from a handle, a finished request, or
//! the session's next deadline ([`accessgate::Session::poll_timeout`]).
//! Requests are polled inside this task (a [`FuturesUnordered`]), not spawned; the loop never
//! blocks, so a slow request holds up nothing, and each bounds itself by its deadline (R4).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use accessgate::{
    Action, CheckOutcome, Generation, Instant, RecheckError, RefreshId, Session, Status, TokenReply,
    TransientClass, WaiterId, DEFAULT_TOKEN_CAPACITY,
};
use futures_util::future::{abortable, AbortHandle, Aborted};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{GateError, TokenError};
use crate::gate::{Snapshot, TimedEvent, Tokens};
use crate::http::{RefreshReply, Transport};
use crate::time::{to_core_duration, to_std, Clock};

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
    Logout {
        reply: oneshot::Sender<()>,
    },
    Token {
        reply: oneshot::Sender<Result<String, TokenError>>,
    },
    Recheck {
        reply: oneshot::Sender<Result<(), GateError>>,
    },
    WaitFirstCheck {
        reply: oneshot::Sender<Result<Status, GateError>>,
    },
    Shutdown,
}

/// What a request in flight is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Job {
    Check(Generation, u32),
    Refresh(RefreshId),
}

/// An HTTP request in flight, polled by the driver: `Err(Aborted)` once the session cancelled
/// it, `Ok(Err(_))` if it panicked.
type Request = Pin<Box<dyn Future<Output = Result<std::thread::Result<Done>, Aborted>> + Send>>;

/// A finished HTTP request, tagged with what it was for.
enum Done {
    Check {
        generation: Generation,
        attempt: u32,
        deadline: Instant,
        outcome: CheckOutcome,
    },
    Refresh {
        id: RefreshId,
        deadline: Instant,
        reply: RefreshReply,
    },
}

pub(crate) struct Driver {
    session: Box<CoreSession>,
    clock: Clock,
    transport: Arc<Transport>,
    requests: FuturesUnordered<Request>,
    /// How to stop each request in flight when the session says it no longer matters.
    running: HashMap<Job, AbortHandle>,
    waiters: HashMap<WaiterId, oneshot::Sender<Result<String, TokenError>>>,
    first_check: Vec<oneshot::Sender<Result<Status, GateError>>>,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<TimedEvent>,
}

fn token_string(bytes: &[u8]) -> String {
    // Tokens are checked to be printable ASCII before they enter the session.
    String::from_utf8_lossy(bytes).into_owned()
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
            requests: FuturesUnordered::new(),
            running: HashMap::new(),
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
                Some(done) = self.requests.next(), if !self.requests.is_empty() => match done {
                    Ok(Ok(done)) => self.finished(done),
                    // A request panicked: the session times the attempt out by itself (R4).
                    Ok(Err(_)) => log::error!("accessgate: a request panicked"),
                    // Cancelled by the session: nothing to report.
                    Err(Aborted) => {}
                },
                () = &mut timer, if wake.is_some() => {
                    // Fired: re-armed below even if the session asks for the same instant.
                    armed = None;
                    let now = self.clock.now();
                    self.session.handle_timeout(now);
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
                let access = tokens.access_token.as_bytes();
                let refresh = tokens.refresh_token.as_bytes();
                let expires_in = to_core_duration(tokens.expires_in);
                // The core checks lengths and header safety (SignInError).
                let r = if restore {
                    self.session.restore(now, access, refresh, expires_in)
                } else {
                    self.session.sign_in(now, access, refresh, expires_in)
                };
                match r {
                    // R3: the reply waits for the immediate check (settled in drain()).
                    Ok(_) => self.first_check.push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Logout { reply } => {
                self.session.logout(now);
                self.drain(); // the caller sees the new state once this returns
                let _ = reply.send(());
            }
            Command::Token { reply } => {
                let answer = match self.session.request_token(now) {
                    Ok(TokenReply::Ready(handle)) => self
                        .session
                        .access_token(handle)
                        .map(token_string)
                        .ok_or(TokenError::NotAuthenticated),
                    // R11: the outcome arrives through poll_waiter, delivered by drain().
                    Ok(TokenReply::Wait(id)) => {
                        self.waiters.insert(id, reply);
                        return;
                    }
                    Err(e) => Err(e.into()),
                };
                self.drain();
                let _ = reply.send(answer);
            }
            Command::Recheck { reply } => {
                let r = self.session.recheck_now(now);
                self.drain();
                let _ = reply.send(r.map_err(|e| recheck_error(e, now)));
            }
            Command::WaitFirstCheck { reply } => self.first_check.push(reply),
            Command::Shutdown => {}
        }
    }

    fn finished(&mut self, done: Done) {
        let now = self.clock.now();
        self.running.remove(&match done {
            Done::Check {
                generation, attempt, ..
            } => Job::Check(generation, attempt),
            Done::Refresh { id, .. } => Job::Refresh(id),
        });
        match done {
            // The session owns the per-attempt timeout (R4) and fires it itself at the same
            // instant; the task's timeout only stops the I/O. Feeding it as a result would
            // count a bogus stale result (R10), so let the session's timer decide.
            Done::Check {
                outcome:
                    CheckOutcome::Transient {
                        class: TransientClass::Timeout,
                        ..
                    },
                deadline,
                ..
            }
            | Done::Refresh {
                reply: RefreshReply::Transient(TransientClass::Timeout),
                deadline,
                ..
            } if now >= deadline => {
                self.session.handle_timeout(now);
            }
            Done::Check {
                generation,
                attempt,
                outcome,
                ..
            } => {
                log::debug!(
                    "accessgate: check gen {} attempt {attempt}: {outcome:?}",
                    generation.0
                );
                self.session
                    .handle_check_result(now, generation, attempt, outcome);
            }
            Done::Refresh { id, reply, .. } => {
                log::debug!(
                    "accessgate: refresh {} finished: {}",
                    id.0,
                    refresh_summary(&reply)
                );
                self.session.handle_refresh_result(now, id, reply.as_outcome());
            }
        }
    }

    /// Adds a request to those the driver polls; it starts at the driver's next poll.
    fn run_request(&mut self, job: Job, request: impl Future<Output = Done> + Send + 'static) {
        // A panic stays in the request, as it would in a task of its own.
        let (request, handle) = abortable(AssertUnwindSafe(request).catch_unwind());
        self.running.insert(job, handle);
        self.requests.push(Box::pin(request));
    }

    /// Drains every output of the session after an input: starts the requested actions,
    /// broadcasts events, publishes the snapshot, then answers token waiters and callers
    /// awaiting the immediate check. Idempotent.
    fn drain(&mut self) {
        let max_body = self.session.config().gate.max_body;
        while let Some(action) = self.session.poll_action() {
            match action {
                // The session no longer needs it (timed out, superseded, logged out): stop the
                // I/O; a result that still arrives would only be dropped as stale (R10).
                Action::CancelCheck { generation, attempt } => {
                    if let Some(h) = self.running.remove(&Job::Check(generation, attempt)) {
                        h.abort();
                    }
                }
                Action::CancelRefresh(id) => {
                    if let Some(h) = self.running.remove(&Job::Refresh(id)) {
                        h.abort();
                    }
                }
                Action::Check(req) => {
                    let Some(token) = self.session.access_token(req.token).map(<[u8]>::to_vec) else {
                        // Cannot happen (the session only asks for its current token); the
                        // session's own attempt timer would fail it transiently anyway.
                        log::error!("accessgate: check for an unknown token handle");
                        continue;
                    };
                    let deadline = req.started + req.timeout;
                    let at = self.clock.to_tokio(deadline);
                    let transport = self.transport.clone();
                    self.run_request(Job::Check(req.generation, req.attempt), async move {
                        // One `tracing` span per attempt with the feature; the bare request without (trace.rs).
                        let outcome = crate::trace::check(
                            req.generation,
                            req.attempt,
                            transport.check(&token, at, max_body),
                        )
                        .await;
                        Done::Check {
                            generation: req.generation,
                            attempt: req.attempt,
                            deadline,
                            outcome,
                        }
                    });
                }
                Action::Refresh(req) => {
                    let refresh_token = self
                        .session
                        .refresh_token()
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                    let deadline = req.started + req.timeout;
                    let at = self.clock.to_tokio(deadline);
                    let transport = self.transport.clone();
                    self.run_request(Job::Refresh(req.id), async move {
                        let reply =
                            crate::trace::refresh(req.id, transport.refresh(&refresh_token, at)).await;
                        Done::Refresh {
                            id: req.id,
                            deadline,
                            reply,
                        }
                    });
                }
            }
        }
        // Events are stamped with the `now` of the input that produced them.
        let at = self.session.last_now();
        while let Some(event) = self.session.poll_event() {
            log::debug!("accessgate: {event:?}");
            // No subscriber is fine.
            let _ = self.events.send(TimedEvent {
                event,
                at,
                origin: Instant::ZERO,
            });
        }
        let status = self.session.status();
        let snap = Snapshot {
            status,
            counters: *self.session.counters(),
            now: self.clock.now(),
            expires_at: self.session.expires_at(),
            refresh_in_flight: self.session.refresh_in_flight(),
        };
        self.snapshot.send_if_modified(|old| {
            let changed = !old.same_state(&snap);
            if changed {
                *old = snap;
            }
            changed
        });
        // Replies go out after the snapshot, so a caller that got its answer reads the
        // state that produced it.
        while let Some((id, outcome)) = self.session.poll_waiter() {
            let result = outcome.map_err(TokenError::from).and_then(|handle| {
                self.session
                    .access_token(handle)
                    .map(token_string)
                    .ok_or(TokenError::NotAuthenticated)
            });
            if let Some(reply) = self.waiters.remove(&id) {
                let _ = reply.send(result);
            }
        }
        // R3: callers awaiting the immediate check are settled once it is over (the core's
        // FirstCheckSettled; a definitive answer, a transient failure, or the session ended).
        // A refresh that lands meanwhile starts a new attempt 0, which they then await.
        if !self.session.first_check_running() && !self.first_check.is_empty() {
            for reply in self.first_check.drain(..) {
                let _ = reply.send(Ok(status));
            }
        }
    }
}

fn refresh_summary(reply: &RefreshReply) -> String {
    match reply {
        RefreshReply::Refreshed { expires_in, .. } => format!("refreshed, expires in {expires_in}"),
        RefreshReply::Rejected => "rejected".to_string(),
        RefreshReply::Transient(c) => format!("transient ({})", c.name()),
    }
}

fn recheck_error(e: RecheckError, now: Instant) -> GateError {
    match e {
        RecheckError::RateLimited { retry_at } => GateError::RateLimited {
            retry_at,
            retry_in: to_std(retry_at - now),
        },
        _ => GateError::NotSignedIn,
    }
}
