//! # accessgate
//!
//! Decides whether a signed-in user or device may use a product, and keeps deciding
//! correctly when the network does not cooperate: it holds the last answer through transient
//! failures, retries stratified over a spread window plus a final window (R6), fails closed at a
//! fixed deadline, probes at a fixed period with a per-device phase until the backend answers
//! again (R7), logs out on 401, and never lets a stale retry overwrite a newer answer. The contract is
//! `docs/behaviour.md` in the repository, rules R1–R14; the code
//! cites the rule a line enforces.
//!
//! This crate is the **sans-IO core**: `no_std`, no `alloc`, no `unsafe`. It never reads a
//! clock and never touches a socket. Every input carries `now` (the crate's own monotonic
//! [`Instant`]); outputs are polled; [`Gate::poll_timeout`] says when to call back. Adapters
//! (tokio on desktops, embassy on devices) are thin loops around it, and a seeded simulator can
//! drive it through millions of fault schedules.
//!
//! ## The driver loop
//!
//! After every input, a driver starts the checks the gate asks for ([`Gate::poll_check`]),
//! drains its events ([`Gate::poll_event`]), then waits for either a result or the next
//! deadline ([`Gate::poll_timeout`]). Responses go through [`classify`], shared by every
//! adapter, so every platform applies R1 the same way.
//!
//! ```
//! use accessgate::{classify, Access, Event, Gate, GateConfig, Instant, Duration, TokenHandle};
//!
//! // A fake network for the example: the first two attempts hit an outage, then a grant.
//! fn http_get(attempt: u32) -> (u16, &'static [u8]) {
//!     if attempt < 2 { (503, b"") } else { (200, br#"{"has_access": true}"#) }
//! }
//!
//! let mut gate: Gate = Gate::new(GateConfig::DEFAULT, /* per-device seed */ 0x5eed).unwrap();
//! let mut now = Instant::ZERO;
//! gate.start_session(now, TokenHandle(1));
//!
//! for _ in 0..100 {
//!     // 1. Start the requested checks (a real driver spawns them; this one answers at once).
//!     while let Some(req) = gate.poll_check() {
//!         let (status, body) = http_get(req.attempt);
//!         let outcome = classify(status, None, body, gate.config().max_body);
//!         gate.handle_check_result(now, req.generation, req.attempt, outcome);
//!     }
//!     // 2. Drain events (log them, update the UI).
//!     while let Some(event) = gate.poll_event() {
//!         if let Event::AccessChanged { to, cause, .. } = event {
//!             println!("access is now {to:?} because {cause:?}");
//!         }
//!     }
//!     // 3. Sleep until the next deadline, then tell the gate the time.
//!     match gate.poll_timeout() {
//!         Some(at) => {
//!             now = at;
//!             gate.handle_timeout(now);
//!         }
//!         None => break, // nothing owed: a definitive answer arrived
//!     }
//! }
//! assert_eq!(gate.access(), Access::Granted);
//! assert_eq!(gate.counters().attempts, 3);
//! assert!(now < Instant::ZERO + Duration::from_secs(120)); // well inside the budget
//! ```
//!
//! ## Pieces
//! - [`Gate`]: one session's entitlement state machine (R1–R8, R10, R12, R13).
//! - [`RetrySchedule`] / [`ProbeSchedule`]: where retries (R6) and probes (R7) go, a few words
//!   of state each.
//! - [`classify`] / [`parse_check_body`]: strict response classification (R1, R4), read in one
//!   bounded, allocation-free JSON pass that compares keys after unescaping.
//! - [`GateConfig`]: every figure of the spec's defaults table, validated.
//! - [`Session`]: the token lifecycle around the gate (R9, R11): single-flight refresh,
//!   waiters, logout races.
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
