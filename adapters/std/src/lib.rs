//! # accessgate-std: the desktop adapter
//!
//! Runs the sans-IO [`accessgate::Session`] on Tokio, with HTTP(S) through `reqwest` +
//! `rustls`, and hands the app a small async handle ([`AccessGate`]) or a blocking one
//! ([`BlockingAccessGate`]). The rules it keeps are those of `docs/behaviour.md`
//! (R1–R14); the decisions are the core's, this crate only does I/O, clocks and channels.
//!
//! ## API summary
//!
//! ```text
//! GateClientConfig::builder(base_url)                        // std::time::Duration settings
//!     .budget(..).attempt_timeout(..).ca_pem(..).client_id(..) ... .build()? // validated once
//! GateClientConfig::new(base_url) -> GateClientConfig       // pub fields: check_url, token_url,
//!     client_id, session: accessgate::SessionConfig, extra_ca_pem, system_roots, seed,
//!     max_token_body, user_agent, proxy_from_env (#[non_exhaustive]: new fields are not breaking)
//! Tokens::new(access, refresh, expires_in: std::time::Duration)
//!
//! AccessGate::spawn(config) -> Result<AccessGate, GateError>  // inside a Tokio runtime; Clone
//!   async sign_in(Tokens)  -> Result<Status, GateError>       // awaits the first check (R3)
//!   async restore(Tokens)  -> Result<Status, GateError>
//!   async logout()         -> Result<(), GateError>
//!   access() -> Access; status() -> Status; snapshot() -> Snapshot   // cheap, from a watch
//!   subscribe() -> watch::Receiver<Snapshot>                  // Snapshot {status, counters, now, expires_at, refresh_in_flight}
//!   events() -> broadcast::Receiver<TimedEvent>               // TimedEvent {event, at, origin}, .to_json()
//!   async wait_first_check() -> Result<Status, GateError>
//!   async access_token()     -> Result<String, TokenError>    // single-flight refresh (R11)
//!   async recheck()          -> Result<(), GateError>         // returns after its check; RateLimited { retry_at, retry_in }
//!   async shutdown()
//!   now() -> accessgate::Instant; origin() -> tokio::time::Instant; to_tokio_instant(Instant)
//!
//! BlockingAccessGate::spawn(config)  // same methods, sync; plus wait_for(timeout, pred), handle(), runtime()
//!
//! GateError: Config, InvalidUrl, Certificate, Http, Rng, NoRuntime, Runtime, InvalidToken,
//!            NotSignedIn, RateLimited { retry_at, retry_in }, Superseded, Closed
//! TokenError: NotAuthenticated, Unavailable, WaitersFull, Closed
//! transport_failure(&reqwest::Error) -> (TransientClass, FailureDetail)   // R13, for your own requests
//! consts: DEFAULT_CHECK_PATH, DEFAULT_TOKEN_PATH, DEFAULT_CLIENT_ID, DEFAULT_MAX_TOKEN_BODY,
//!         MAX_TOKEN_WAITERS
//! ```
//!
//! ## Use it in your app
//!
//! ```no_run
//! use std::time::Duration;
//! use accessgate::Access;
//! use accessgate_std::{AccessGate, GateClientConfig, Tokens};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let gate = AccessGate::spawn(GateClientConfig::new("https://api.example.com"))?;
//!
//!     // After the user signed in with your OAuth flow:
//!     let tokens = Tokens::new("at_...", "rt_...", Duration::from_secs(3600));
//!     let status = gate.sign_in(tokens).await?; // waits for the first check (R3)
//!     println!("access: {:?}", status.access);
//!
//!     // Render from the watch channel; it changes only when something happened.
//!     let mut snapshots = gate.subscribe();
//!     while snapshots.changed().await.is_ok() {
//!         let snap = *snapshots.borrow_and_update();
//!         match snap.status.access {
//!             Access::Granted => { /* show the product */ }
//!             Access::Denied => { /* show the invite / paywall screen */ }
//!             Access::Unknown if !snap.status.signed_in => break, // show sign-in (401, R8)
//!             Access::Unknown => { /* show "checking" */ }
//!         }
//!         // Your own API calls take a valid token (refreshed ahead of expiry, R11):
//!         let _bearer = gate.access_token().await;
//!     }
//!     gate.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! `examples/basic.rs` runs the same against the reference backend
//! (`cargo run -p accessgate-std --example basic`).
//!
//! ## The loop
//!
//! There is no loop of its own on the healthy path. The session sits behind a
//! `std::sync::Mutex` (never held across an `.await`) that every handle method takes briefly:
//! it gives the session its input with `now`, then drains the outputs in the embassy driver's
//! order:
//!
//! 1. [`accessgate::Session::poll_action`]: a cancel aborts its request wherever it runs; a
//!    check (`GET check_url`, bearer token) or refresh (`POST token_url`, form) starts, its
//!    result tagged with `(generation, attempt)` or the `RefreshId` (R10: stale results are the
//!    core's to drop and count);
//! 2. [`accessgate::Session::poll_event`] into a `broadcast` channel ([`TimedEvent`]);
//! 3. a [`Snapshot`] on the `watch` channel (only when it changed);
//! 4. answers: [`accessgate::Session::poll_waiter`] outcomes to each
//!    [`AccessGate::access_token`] caller, callers awaiting the first check (R3), then the
//!    caller itself, so whoever got an answer reads the state that produced it.
//!
//! The check that a call itself started ([`AccessGate::sign_in`], [`AccessGate::restore`],
//! [`AccessGate::recheck`]) runs in the caller's task, which then hands the result to the
//! session the same way: no hop to another task, so a check costs about what the bare request
//! costs (`benches/OVERHEAD.md`). A call dropped mid-request hands its request to a task of its
//! own, and the session gets the result all the same. What nobody awaits runs in the
//! background: the session's timers (`sleep_until(poll_timeout)`: retries, probes, the
//! fail-closed deadline, the refresh, attempt timeouts) in a driver task spawned by
//! [`AccessGate::spawn`], and each request they start (retry, probe, refresh) in a task of its
//! own.
//!
//! Time is converted in one place (`time.rs`): the origin is the `tokio::time::Instant` at
//! spawn, and [`accessgate::Instant`] counts microseconds since then, **including the time the
//! machine spent suspended** (read from the boot clock on Linux, Android and Apple systems,
//! whose `std::time::Instant` stops during a suspend; Windows' does not). So a fail-closed
//! deadline or a token expiry that passed while a laptop slept has passed when it wakes (R5,
//! R11): the next call sees it at once, and the driver task (which naps at most 1 s while a
//! timeout is pending) within a second. `tokio::time` (not `std::time`) for the awake part, so
//! tests may pause and advance the clock. Only monotonic time is used, never the wall clock (R5).
//!
//! HTTP: the session times each attempt out (`CheckRequest::timeout`, R4) and cancels the
//! request, which is then aborted wherever it runs; at most `max_body + 1` body bytes are read, chunk by chunk, so a huge
//! body is never buffered (R1, R12); the body and `Retry-After` go to [`accessgate::classify`] /
//! [`accessgate::classify_refresh`], shared by every adapter; transport errors map to a
//! [`accessgate::TransientClass`] (refused → `Connect`, resolver → `Dns`, certificate or
//! handshake → `Tls`, broken/truncated body → `Io`), each with an
//! [`accessgate::FailureDetail`] (R13: "certificate: unknown issuer", "connection refused",
//! "body shorter than announced"; `failure.rs` walks reqwest's error chain down to rustls,
//! webpki, hyper and `io::Error`), on the token endpoint as on the check endpoint (the
//! `RefreshFailed` event and `Status::last_failure` carry it). Redirects are not followed: a
//! captive portal's `302` is a transient status like any other; no content coding is asked for or
//! decoded; framing the device refuses is refused here too; environment proxies are used unless
//! [`GateClientConfig::proxy_from_env`] is off (what they see: its docs).
//!
//! ## Dependencies, and why
//!
//! - `accessgate` (feature `log`): the decisions. Its logging shim targets `log` or `defmt`;
//!   we pick `log` (not `tracing`) because it is the lowest common denominator: the core
//!   logs through it, every desktop logger (env_logger, tracing-log...) can consume it, and
//!   apps using `tracing` get it through `tracing-log`.
//! - `tokio`: runtime, timers (pausable in tests), `oneshot`/`watch`/`broadcast`/`Notify`.
//! - `futures-util`: abortable requests (a cancel stops a request in whichever task runs it).
//! - `reqwest` (no default features; `rustls-tls-native-roots`): HTTP/1.1 client over
//!   rustls with the **ring** provider, so no OpenSSL and no aws-lc (which needs cmake).
//!   System roots come from the **OS trust store** (`rustls-native-certs`) rather than a
//!   compiled-in Mozilla list (`webpki-roots`): desktop apps run behind corporate
//!   TLS-inspecting proxies whose CA only the OS store knows, and the OS keeps the store
//!   up to date without a rebuild. [`GateClientConfig::extra_ca_pem`] adds a CA and
//!   [`GateClientConfig::system_roots`] `= false` trusts that CA only.
//! - `rustls` (ring, no default features; the same version reqwest uses): the adapter builds
//!   the rustls client config itself and hands it to reqwest, for its server verification
//!   (R14): webpki path validation (basicConstraints, keyUsage/EKU, SAN, dates), plus
//!   **pinning** of a self-signed certificate given as the CA (`CA:TRUE`, as
//!   `openssl req -x509` makes it, which webpki alone refuses as "CA used as end entity")
//!   and the **common name** for certificates without subjectAltName. Also used to
//!   recognise TLS errors in reqwest's error chain.
//! - `rustls-native-certs`: the OS trust store for that config.
//! - `x509-parser` (`verify`): validity, names and usage of a pinned certificate, and whether
//!   an anchor is self-signed.
//! - `getrandom`: the per-device jitter seed from the OS RNG (R6: there is no built-in seed).
//! - `log`: the adapter's own diagnostics; `thiserror`: the error types.
//! - `zeroize`: wipes the adapter's own token copies when they are dropped (below).
//!
//! ## Token hygiene
//!
//! The session keeps the tokens, and the core wipes them when the session ends. The adapter's
//! own copies are zeroed when dropped: [`Tokens`] (so the ones passed to
//! [`AccessGate::sign_in`] are gone when it returns), the refresh token copied for a refresh
//! request, and a token answer's body and the tokens taken from it. Copies it cannot reach stay
//! until their memory is reused: the `Authorization` header value and the refresh form inside
//! reqwest and hyper, their read and write buffers, rustls' TLS records, and the strings
//! [`AccessGate::access_token`] hands to the app (the app's to wipe).
//! `tests/hygiene.rs` reads a dropped `Tokens`' memory back through `/proc/self/mem`.
//!
//! ## Features
//!
//! - `serde`: forwards `accessgate/serde` (Serialize/Deserialize on the core's config types,
//!   Serialize on [`accessgate::Status`], [`accessgate::Counters`] and the events).
//! - `tracing`: a `tracing` span per check attempt (`accessgate.check`: `generation`,
//!   `attempt`, `outcome`, and `class`/`detail` of a transient failure) and per token refresh
//!   (`accessgate.refresh`: `id`, `outcome`, `class`, `detail`), around the HTTP request,
//!   beside the `log` lines. Off by default; without it the requests run unwrapped (no cost).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod blocking;
mod config;
mod driver;
mod error;
mod failure;
mod gate;
mod http;
#[cfg(test)]
mod suspended;
mod time;
mod tls;
mod trace;

pub use blocking::BlockingAccessGate;
pub use config::{
    GateClientConfig, GateClientConfigBuilder, DEFAULT_CHECK_PATH, DEFAULT_CLIENT_ID, DEFAULT_MAX_TOKEN_BODY,
    DEFAULT_TOKEN_PATH,
};
pub use driver::MAX_TOKEN_WAITERS;
pub use error::{GateError, TokenError};
pub use failure::transport_failure;
pub use gate::{AccessGate, Snapshot, TimedEvent, Tokens};

/// The core crate, re-exported so apps need one dependency.
pub use accessgate;

/// The README's Rust examples, compiled as doc-tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
