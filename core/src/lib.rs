//! # accessgate
//!
//! Decides whether a signed-in user or device may use a product, and keeps deciding
//! correctly when the network does not cooperate: it holds the last answer through transient
//! failures, retries stratified over a spread window plus a final window (R6), fails closed at a
//! fixed deadline, probes at a fixed period with a per-device phase until the backend answers
//! again (R7), logs out on 401, and never lets a stale retry overwrite a newer answer. The
//! contract is `docs/behaviour.md` in the repository, rules R1–R14 (its section "What a driver
//! must do" goes with the loop below); the code cites the rule a line enforces.
//!
//! This crate is the **sans-IO core**: `no_std`, no `alloc`, no `unsafe`. It never reads a
//! clock and never touches a socket. Every input carries `now` (the crate's own monotonic
//! [`Instant`]); outputs are polled; [`Session::poll_timeout`] says when to call back. Adapters
//! (tokio on desktops, embassy on devices) are thin loops around it, and a seeded simulator can
//! drive it through millions of fault schedules.
//!
//! ## The driver loop
//!
//! A [`Session`] is the whole machine of one signed-in user or device: it owns one clock, one
//! timer table, one event queue and one PRNG, the entitlement part (R1–R8, R10) and the tokens
//! (R9, R11). A driver feeds it inputs and, **after every input**, drains its outputs in this
//! order:
//!
//! 1. [`Session::poll_action`] until `None`. Cancels come first (they free a lane), then a
//!    refresh, then a check:
//!    - [`Action::CancelCheck`] / [`Action::CancelRefresh`]: a request handed out earlier no
//!      longer matters (it timed out, or a refresh, logout or answer superseded it). Abort
//!      it. A result that still arrives is dropped as stale (R10; a late 401 still ends the
//!      session, R8), so a driver that cannot abort may let the request finish.
//!    - [`Action::Refresh`]: `POST` the refresh token ([`Session::refresh_token`]) to the
//!      token endpoint, then report with [`Session::handle_refresh_result`] (the body goes
//!      through [`classify_refresh`]; a transport or TLS failure is reported with its detail,
//!      [`RefreshOutcome::transient_with`], mapped as for checks: R13).
//!    - [`Action::Check`]: `GET` the check URL with the token behind `req.token`
//!      ([`Session::access_token`]) as a bearer token, then report with
//!      [`Session::handle_check_result`], tagged with the request's `generation` and
//!      `attempt` (the response goes through [`classify`](fn@classify), so every platform
//!      applies R1 the same way).
//! 2. [`Session::poll_event`] until `None`: log it, update the UI. Access changes come as
//!    [`Event::AccessChanged`] inside [`SessionEvent::Gate`]. [`Event::FirstCheckSettled`]
//!    says the immediate check of a sign-in or refresh is over (R3): wake whoever awaits "the
//!    first answer" then, or test [`Session::first_check_running`]; do not watch
//!    [`Status::attempt_in_flight`] for it.
//! 3. [`Session::poll_waiter`] until `None`: answer the callers that got
//!    [`TokenReply::Wait`] from [`Session::request_token`]. After the events, so a caller that
//!    got its answer reads the state that produced it.
//! 4. Sleep until a request finishes, the app asks for something, or
//!    [`Session::poll_timeout`] passes; then feed that in ([`Session::handle_timeout`] for
//!    the deadline) and start over.
//!
//! ```
//! use accessgate::{
//!     classify, classify_refresh, Access, Action, Cause, Duration, Event, Generation, Instant,
//!     RefreshId, Session, SessionConfig, SessionEvent,
//! };
//!
//! /// A request the fake network below is running.
//! #[derive(Clone, Copy, PartialEq, Debug)]
//! enum Job {
//!     Check(Generation, u32),
//!     Refresh(RefreshId),
//! }
//!
//! /// A fake network for the example: the first check and the first refresh hang (a
//! /// black-holed connection), every other request answers after 50 ms.
//! #[derive(Default)]
//! struct Net {
//!     running: Vec<(Option<Instant>, Job)>, // when it answers (if ever), what it is
//!     cancelled: u32,
//! }
//!
//! impl Net {
//!     fn start(&mut self, now: Instant, job: Job) {
//!         let hangs = matches!(job, Job::Check(Generation(1), 0) | Job::Refresh(RefreshId(0)));
//!         let answers_at = (!hangs).then(|| now + Duration::from_millis(50));
//!         self.running.push((answers_at, job));
//!     }
//!     fn cancel(&mut self, job: Job) {
//!         self.running.retain(|r| r.1 != job);
//!         self.cancelled += 1;
//!     }
//!     /// The first request to answer, if it answers by `by`.
//!     fn next_answer(&mut self, by: Option<Instant>) -> Option<(Instant, Job)> {
//!         let (i, at) = self.running.iter().enumerate()
//!             .filter_map(|(i, r)| Some((i, r.0?)))
//!             .min_by_key(|&(_, at)| at)?;
//!         if by.is_some_and(|by| at > by) {
//!             return None;
//!         }
//!         Some((at, self.running.remove(i).1))
//!     }
//! }
//!
//! let mut session: Session = Session::new(SessionConfig::DEFAULT, /* per-device seed */ 0x5eed)
//!     .unwrap();
//! let mut net = Net::default();
//! let mut now = Instant::ZERO;
//! // Tokens must be usable in a header (visible ASCII); an empty refresh token means none.
//! session.sign_in(now, b"at-1", b"rt-1", Duration::from_secs(300)).unwrap();
//! let log_out_at = Instant::from_secs(600); // the user signs out after ten minutes
//! let mut first_answer = None;
//!
//! loop {
//!     // 1. Actions: cancels, then a refresh, then a check.
//!     while let Some(action) = session.poll_action() {
//!         match action {
//!             Action::CancelCheck { generation, attempt } => {
//!                 net.cancel(Job::Check(generation, attempt))
//!             }
//!             Action::CancelRefresh(id) => net.cancel(Job::Refresh(id)),
//!             Action::Refresh(req) => {
//!                 let _refresh_token: &[u8] = session.refresh_token().unwrap_or_default();
//!                 net.start(now, Job::Refresh(req.id));
//!             }
//!             Action::Check(req) => {
//!                 // `Authorization: Bearer <token>`; `None` never happens for a fresh action.
//!                 let _token: Option<&[u8]> = session.access_token(req.token);
//!                 net.start(now, Job::Check(req.generation, req.attempt));
//!             }
//!         }
//!     }
//!     // 2. Events.
//!     let t = now.saturating_duration_since(Instant::ZERO);
//!     while let Some(event) = session.poll_event() {
//!         match event {
//!             SessionEvent::Gate(Event::AccessChanged { to, cause, .. }) => {
//!                 println!("{t}: access is now {to:?} because {cause:?}")
//!             }
//!             // R3: what a "sign in and wait for the answer" call returns.
//!             SessionEvent::Gate(Event::FirstCheckSettled { generation }) => {
//!                 first_answer.get_or_insert((generation, session.access()));
//!             }
//!             other => println!("{t}: {other:?}"),
//!         }
//!     }
//!     // 3. Callers waiting for a token (none in this example).
//!     while let Some((_waiter, _result)) = session.poll_waiter() {}
//!
//!     // 4. Wait for the first of: an answer, the session's deadline, the user.
//!     let deadline = session.poll_timeout();
//!     let user = session.status().signed_in.then_some(log_out_at);
//!     let wake = match (deadline, user) {
//!         (Some(d), Some(u)) => Some(d.min(u)),
//!         (d, u) => d.or(u),
//!     };
//!     if let Some((at, job)) = net.next_answer(wake) {
//!         now = at;
//!         match job {
//!             Job::Check(generation, attempt) => {
//!                 let outcome = classify(200, None, br#"{"has_access": true}"#, 1024);
//!                 session.handle_check_result(now, generation, attempt, outcome);
//!             }
//!             Job::Refresh(id) => {
//!                 let body = br#"{"access_token":"at-2","refresh_token":"rt-2","expires_in":3600}"#;
//!                 session.handle_refresh_result(now, id, classify_refresh(200, body, 4096));
//!             }
//!         }
//!     } else if let Some(at) = wake {
//!         now = at;
//!         if user == Some(at) {
//!             session.logout(now);
//!         } else {
//!             session.handle_timeout(now);
//!         }
//!     } else {
//!         break; // signed out and nothing in flight: nothing is owed
//!     }
//! }
//!
//! // The first check hung and timed out (R4): the sign-in settled with access still unknown,
//! // and the retry granted.
//! assert_eq!(first_answer, Some((Generation(1), Access::Unknown)));
//! let c = session.counters();
//! assert_eq!((c.attempts, c.grants), (3, 2)); // the hung one, its retry, the refreshed check
//! // The first refresh hung too, timed out and was retried (R11).
//! assert_eq!((c.refreshes, c.refresh_failures), (2, 1));
//! assert_eq!(net.cancelled, 2); // the hung check and the hung refresh
//! assert_eq!(c.events_lost, 0); // this loop drains after every input
//! assert_eq!(session.status().cause, Some(Cause::LoggedOut));
//! ```
//!
//! Inputs that report what happened ([`Session::handle_timeout`],
//! [`Session::handle_check_result`], [`Session::handle_refresh_result`],
//! [`Session::logout`]) cannot fail. Operations that can be refused return an error type of
//! their own, so every driver maps them the same way: [`SignInError`] from
//! [`Session::sign_in`] / [`Session::restore`] (a token too long, or not usable in a header:
//! see [`header_safe`]), [`TokenRequestError`] from [`Session::request_token`],
//! [`RecheckError`] from [`Session::recheck_now`], [`NotSignedIn`] from the [`Gate`]'s token
//! inputs. A refused sign-in changes nothing at all. Any other refused operation changes
//! nothing of the session either, but time still passes to its `now` (timers that were due
//! fire), so drain the outputs as after any input.
//!
//! The event queue holds more than one input can produce ([`SESSION_EVENT_CAPACITY`]), so a
//! driver that drains after every input never loses an event. One that does not loses the
//! oldest: the queue keeps the newest and counts each loss in [`Counters::events_lost`] (R12).
//!
//! ## A gate without tokens
//!
//! [`Gate`] is the entitlement part with a machine of its own, for drivers that keep tokens
//! themselves (an app with its own token store, the fleet simulator). Its outputs are
//! [`Gate::poll_check`], [`Gate::poll_cancel`], [`Gate::poll_event`] and
//! [`Gate::poll_timeout`]; token refreshes come in as [`Gate::token_refreshed`].
//!
//! ```
//! use accessgate::{classify, Access, Gate, GateConfig, Instant, TokenHandle};
//!
//! // A fake network for the example: the first two attempts hit an outage, then a grant.
//! fn http_get(attempt: u32) -> (u16, &'static [u8]) {
//!     if attempt < 2 { (503, b"") } else { (200, br#"{"has_access": true}"#) }
//! }
//!
//! let mut gate: Gate = Gate::new(GateConfig::DEFAULT, /* per-device seed */ 0x5eed).unwrap();
//! let mut now = Instant::ZERO;
//! gate.start_session(now, TokenHandle(1));
//! loop {
//!     // A real driver starts the request and reports later; this one answers at once.
//!     while let Some(req) = gate.poll_check() {
//!         let (status, body) = http_get(req.attempt);
//!         let outcome = classify(status, None, body, gate.config().max_body);
//!         gate.handle_check_result(now, req.generation, req.attempt, outcome);
//!     }
//!     while let Some((_generation, _attempt)) = gate.poll_cancel() {} // abort that request
//!     while let Some(event) = gate.poll_event() {
//!         println!("{event:?}");
//!     }
//!     match gate.poll_timeout() {
//!         Some(at) => {
//!             now = at;
//!             gate.handle_timeout(now);
//!         }
//!         None => break, // a definitive answer arrived: nothing is owed
//!     }
//! }
//! assert_eq!(gate.access(), Access::Granted);
//! assert_eq!(gate.counters().attempts, 3);
//! assert!(now < Instant::from_secs(120)); // well inside the fail-closed budget (R5)
//! ```
//!
//! ## Pieces
//! - [`Session`]: one machine per signed-in user or device: the entitlement part plus the
//!   token lifecycle (R9, R11): single-flight refresh, waiters, logout races.
//! - [`Gate`]: the entitlement part alone (R1–R8, R10, R12, R13), for drivers that keep
//!   tokens themselves.
//! - [`RetrySchedule`] / [`ProbeSchedule`]: where retries (R6) and probes (R7) go, a few words
//!   of state each.
//! - [`classify`](fn@classify) / [`classify_refresh`] / [`parse_check_body`]: strict response
//!   classification (R1, R4, R11), read in one bounded, allocation-free JSON pass that
//!   compares keys after unescaping.
//! - [`GateConfig`] / [`SessionConfig`]: every figure of the spec's defaults table, validated.
//! - [`Status`] (with [`Status::since`], the instant of the last access change) and
//!   [`Counters`]: what an app renders and exports (R13).
//! - [`check_url`]: the endpoint URL rules both adapters apply (a valid HTTP/1.1 request
//!   line and `Host` header, or a [`UrlProblem`] naming what is wrong).
//!
//! ## Features
//! - `log`: log lines go to the `log` facade (desktop).
//! - `defmt`: log lines go to `defmt`, and every public type derives `defmt::Format`
//!   (firmware). Enabling both is a compile error.
//! - `serde`: `Serialize` + `Deserialize` on the config types ([`GateConfig`],
//!   [`SessionConfig`], [`Backoff`], [`Duration`]), so settings can come from a file, and
//!   `Serialize` on what a driver reports ([`Status`], [`Counters`], [`Event`],
//!   [`SessionEvent`], [`LastFailure`], [`FailureDetail`], [`Instant`], ...). `no_std`, no
//!   alloc. [`Duration`] and [`Instant`] serialise as `{"micros": N}`; a config struct with
//!   fields missing takes them from its `DEFAULT`. A deserialised config is not validated
//!   until [`Gate::new`] / [`Session::new`] (or `validate()`) sees it.
//!
//! ## Dependencies, and why
//! - `heapless`: fixed-capacity containers (retry plan, event queue, token buffers), R12.
//! - `fastrand`: a small, well-kept seeded PRNG for jitter; no hand-rolled generator.
//! - `defmt` / `log`: optional logging back-ends.
//! - `serde` (optional, derives only, `no_std`): the `serde` feature above; the check-body
//!   parser is the crate's own.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod fmt;

mod classify;
mod config;
mod detail;
mod error;
mod gate;
mod json;
mod machine;
mod report;
mod schedule;
mod session;
mod time;
mod timer;
mod url;

pub use classify::{
    classify, classify_refresh, parse_check_body, parse_retry_after, BodyError, CheckOutcome, RefreshOutcome,
    TransientClass, MAX_JSON_DEPTH,
};
pub use config::{Backoff, ConfigError, GateConfig, Probing, Retries, Which};
pub use detail::{FailureDetail, LastFailure, NetFailure, TlsFailure};
pub use error::{header_safe, NotSignedIn, RecheckError, SignInError, TokenRequestError};
pub use gate::{
    Access, Cause, CheckRequest, Counters, Event, Gate, Generation, Status, TokenHandle, EVENT_CAPACITY,
    MAX_EVENTS_PER_INPUT,
};
pub use report::{access_name, write_event_json, write_final_json, Verdict};
pub use schedule::{retry_after_delay, ProbeSchedule, RetrySchedule};
pub use session::{
    Action, RefreshId, RefreshRequest, Session, SessionConfig, SessionEvent, TokenReply, WaitError, WaiterId,
    DEFAULT_TOKEN_CAPACITY, SESSION_EVENT_CAPACITY,
};
pub use time::{Duration, Instant};
pub use url::{check_url, UrlProblem, UrlTarget};
