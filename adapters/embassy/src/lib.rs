//! # accessgate-embassy
//!
//! Runs the [`accessgate`] core (a sans-IO session + gate) on embassy: `no_std`, no
//! `alloc`, every capacity fixed at compile time or handed in by the caller.
//!
//! - **Time**: embassy-time. The session's next deadline is awaited with `Timer::at`, each
//!   HTTP exchange is bounded by `embassy_time::with_timeout` (one deadline for DNS, connect,
//!   handshake, request and response), and
//!   clock values are converted at the boundary in [`time`] only.
//! - **Network**: the embedded-nal-async 0.9 `TcpConnect` + `Dns` traits, so the same
//!   driver runs on embassy-net (a board), `std-embedded-nal-async` (a PC) or an in-memory
//!   stack (QEMU). HTTP/1.1 is the adapter's own (`httparse` for the head, strict framing
//!   for the body; see `wire.rs`): broken framing never yields a body (R1).
//! - **TLS** ([`Transport::Tls`], feature `tls`): TLS 1.3 through embedded-tls with the
//!   project's verifier, which checks, before the first byte of the request (the bearer
//!   token) is written, the chain to the configured trust anchor (intermediates allowed),
//!   basicConstraints on every issuer, keyUsage/extendedKeyUsage serverAuth on the leaf,
//!   the host against subjectAltName (DNS names case-insensitively, IP addresses for IP
//!   URLs; the CN only without SAN), validity dates when a [`UnixClock`] is configured, a
//!   pinned self-signed certificate, and the CertificateVerify signature with the leaf's
//!   key; a handshake that skips the Certificate or the CertificateVerify gets no
//!   connection (R14). What the device **cannot** check: dates without a clock (the chain is
//!   then judged at the leaf's notBefore), RSA and Ed25519 (refused: RSA needs an
//!   allocator, no Ed25519 verifier is linked; such a CA is a [`ConfigError`], such a server
//!   key a TLS failure), revocation. The full table is in the `tls` module. Plain HTTP only when
//!   [`Transport::PlainHttp`] is chosen, and a URL whose scheme disagrees with the transport
//!   is a [`ConfigError`].
//! - **URLs**: checked by the adapter's own rules when the driver is built (see
//!   [`DriverConfig::check_url`]): `http[s]://host[:port][/path][?query]` with a DNS name,
//!   an IPv4 dotted quad or a bracketed IPv6 address; a space, control character or
//!   non-ASCII byte, `user:password@`, a `#fragment`, port 0 or an unescaped path character
//!   is refused with [`ConfigError::Url`] naming the [`UrlProblem`], so whatever is accepted
//!   makes a valid HTTP/1.1 request line and `Host` header. The rules are the core's
//!   ([`accessgate::check_url`]): the desktop adapter refuses the same URLs.
//! - **App side**: a [`Link`] (`static`-friendly) with a bounded command channel, a status
//!   `Watch` of [`Snapshot`]s and a bounded event channel that counts drops instead of
//!   blocking. One driver per link (a second is [`ConfigError::LinkInUse`] until the first
//!   is dropped); once a driver is dropped the link refuses commands ([`NoDriver`]) until
//!   another attaches, and answers or wipes those still queued; one waiting task per
//!   [`TokenSlot`] (a second is told [`TokenError::SlotInUse`]). See the [`Link`] docs.
//! - **Memory**: [`Buffers`] (or [`BufferStorage`]) per lane; a body is read into a
//!   `max_body + 1` window and never further. See [`buffers`] for sizes.
//!
//! ## Wiring
//!
//! Three values describe a driver: a [`DriverConfig`] (what to check and how; `const`-
//! friendly), [`DriverBuffers`] (each lane's memory) and [`Seeds`] (randomness from the
//! RNG). [`Driver::new`] checks them together, once, and refuses a bad combination with a
//! [`ConfigError`]. The app then talks to the running driver through a [`Link`].
//!
//! ```
//! use accessgate::Duration;
//! use accessgate_embassy::{
//!     Driver, DriverBuffers, DriverConfig, Link, PlainCheckStorage, Seeds, Transport,
//! };
//! use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
//! use static_cell::StaticCell;
//! use std_embedded_nal_async::Stack; // on a board: embassy-net's TcpClient + DnsSocket
//!
//! // Plain HTTP for a closed test network; a device on a real network uses
//! // `Transport::Tls(TlsConfig::new(CA_DER))`, TLS-sized storage (`CheckStorage`) and
//! // `Seeds::with_tls`.
//! const GATE: DriverConfig<'static> =
//!     DriverConfig::new("http://gate.lan/api/code/invites/check-access/", Transport::PlainHttp);
//! static LINK: Link<'static, CriticalSectionRawMutex> = Link::new();
//! static CHECK_BUFFERS: StaticCell<PlainCheckStorage> = StaticCell::new();
//! static NET: StaticCell<Stack> = StaticCell::new();
//!
//! # fn hardware_rng_u64() -> u64 { 0x5eed }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let net: &'static Stack = NET.init(Stack::default());
//! let buffers = DriverBuffers::new(CHECK_BUFFERS.init(PlainCheckStorage::new()).buffers());
//! let seeds = Seeds::new(hardware_rng_u64());
//! let driver: Driver<'_, _, _, _> = Driver::new(&LINK, net, net, GATE, buffers, seeds)?;
//! // spawner.spawn(driver_task(driver).unwrap());
//! // with #[embassy_executor::task] async fn driver_task(d: Driver<...>) -> ! { d.run().await }
//!
//! // Tokens copied straight into the link's queue (see "Token hygiene").
//! LINK.try_sign_in(b"access", b"refresh", Duration::from_secs(3600))?;
//! // let mut status = LINK.status_receiver().unwrap();
//! // loop { render(status.changed().await); }
//! # drop(driver);
//! # Ok(())
//! # }
//! ```
//! `targets/embassy-host` is a complete program doing this on a PC.
//!
//! ## Memory
//! Measured on x86_64 (a 32-bit target is a little smaller; the test
//! `driver_future_size_stays_within_its_budget` prints and bounds it): the [`Driver`] value
//! is about 4.2 KiB with the `tls` feature and 3.5 KiB without (the session with two 1 KiB
//! token buffers); the future of [`Driver::run`] about 24 KiB with the `tls` feature (both
//! lanes' connection state: the embedded-tls connection and its verifier; it was about 47 KiB
//! through reqwless) and about 16 KiB without it. It lives in the embassy task's static storage, not on the stack. A
//! [`Link`] is about 10 KiB (four command slots of about 2 KiB, each able to carry two tokens,
//! and 32 events); [`CheckStorage`] about 25 KiB of buffers, [`PlainCheckStorage`] about
//! 4 KiB.
//!
//! ## Token hygiene
//!
//! The core wipes its own copies of the tokens when a session ends (R11: logout, a 401, a
//! rejected refresh). The adapter's copies are wiped as soon as they are no longer needed,
//! whatever the outcome of the exchange that used them (an answer, an error, a timeout, a
//! cancel by a newer request or a logout):
//!
//! | copy | where | wiped |
//! |---|---|---|
//! | `Bearer <access token>`, the refresh form | the lane's `tx` | once the request is written, and with every buffer at the end of the exchange |
//! | the answer's head and read-ahead, its body (a token answer holds both new tokens) | `rx`, `body` | at the end of every exchange (after the tokens were handed over) |
//! | an unflushed request in plaintext; a decrypted answer | `tls.write`, `tls.read` | at the end of every exchange |
//! | the token a lane is to send | the driver's in-task hand-over | as soon as the lane copied it into `tx`; at a cancel |
//! | a token answer's tokens | the driver's hand-over to the session | as soon as the session took them |
//! | sign-in / restore tokens | the [`Link`]'s command slot | as soon as the driver copied them out (under the link's lock); when the driver is dropped with them still queued |
//! | sign-in / restore tokens | the driver's copy (its future) | as soon as the session took them (after the lock) |
//! | the token answered to a [`Command::RequestToken`] | the [`TokenSlot`] | when the answer is taken, or when a new request on the slot is queued or taken by the driver |
//! | a [`Credentials`] value | wherever it is | when it is dropped |
//! | all of the driver's, and its session's | the driver's future | when it is dropped (its task cancelled): the buffers are wiped and the session logged out |
//!
//! How: zeroes, then `core::hint::black_box` over the memory so the stores cannot be
//! optimised away (the core's approach: no `unsafe`, no dependency); whole buffers, so the
//! adapter need not know how much of a TLS record buffer embedded-tls used. Tokens go from
//! one buffer to the next as slices (`extend_from_slice`, `copy_from_slice`), never as
//! values moved around, and every queue slot that holds one is written and wiped field by
//! field. The tests `tests/hygiene.rs` and `tests/hygiene_tls.rs` read this memory back
//! through `/proc/self/mem` after checks, refreshes, logouts, 401s, cancels, timeouts and a
//! dropped driver, and find no token in it.
//!
//! What is **not** wiped, because the adapter cannot reach it:
//! - **Stack temporaries, and what later moves carry out of them.** Rust moves are copies that
//!   leave the source bytes where they were. [`Command::sign_in`], [`Credentials::new`],
//!   [`TokenSlot::wait`] and [`TokenSlot::try_take`] give the app token *values*; the copies its
//!   code makes of them on the stack stay until the stack is reused, and a later move of a
//!   partly initialised value (an enum's unused payload, a future's state) can carry those
//!   stale bytes into static memory, the driver's task memory included: seen in a release
//!   build, where a sign-in built with `Command::sign_in` left the access token inside the
//!   driver's future. Use [`Link::try_sign_in`] / [`Link::try_restore`] (tokens copied from
//!   your slices straight into the queue) and [`TokenSlot::wait_with`] (the token read where
//!   it is), and wipe your own copies with [`wipe_token`].
//! - **Your copies and the network stack's.** Wherever the app got the tokens from (and keeps
//!   them for a restore); the socket buffers of the TCP stack (embassy-net / smoltcp), which
//!   hold the request and, over plain HTTP, the token answer, until overwritten; over TLS they
//!   only see ciphertext.
//! - **embedded-tls' connection state.** The traffic keys of an exchange stay in the driver's
//!   future until the next exchange on that lane overwrites them (embedded-tls 0.19 does not
//!   zeroise them and the adapter cannot reach them). With a capture of the traffic, they
//!   decrypt that exchange (the request carries the token); with a memory dump alone they
//!   reveal no token.
//! - **Bytes in padding.** Small non-secret values (a request's description, an outcome: at
//!   most 56 bytes on x86_64) are moved through the driver's in-task queues; their padding
//!   and unused bytes come from the stack too, so a few stale stack bytes (part of a token,
//!   or a whole very short one) could travel with them.
//!
//! ## Features
//! - `tls` (default): HTTPS ([`Transport::Tls`], the `tls` module): embedded-tls 0.19 for
//!   the protocol, rustls-webpki 0.103 (no alloc) for X.509 path validation, RustCrypto
//!   `p256`/`p384`/`sha2` for the signatures. About 220 KiB of flash on Cortex-M. Without it
//!   (`default-features = false`) neither embedded-tls nor its crypto is linked, and a
//!   driver given [`Transport::Tls`] is refused with [`ConfigError::TlsNotEnabled`]. The
//!   public types are the same either way (every variant, field and constant exists); only
//!   the `tls` module is left out, and the [`CheckStorage`]/[`RefreshStorage`] aliases are
//!   the plain sizes.
//! - `log`: log lines (the adapter's and the core's) go to the `log` facade (host).
//! - `defmt`: they go to `defmt`, and public types derive `defmt::Format` (firmware).
//!   Enabling both is a compile error. Host tests run without `defmt`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod fmt;

pub mod buffers;
mod config;
mod driver;
mod failure;
mod handover;
mod http;
mod link;
mod report;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
mod wipe;
mod wire;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use wire::fuzz_read_response;

pub use accessgate::UrlProblem;
pub use buffers::{
    BufferStorage, Buffers, CheckStorage, DriverBuffers, PlainCheckStorage, RefreshStorage, TlsBuffers,
};
pub use config::{
    BufferKind, ConfigError, DriverConfig, Endpoint, RefreshEndpoint, Seeds, TlsConfig, Transport, UnixClock,
    MIN_RX, MIN_TLS_READ, MIN_TLS_WRITE,
};
pub use driver::Driver;
pub use failure::{NetFailure, TlsFailure};
pub use link::{
    Command, Credentials, CredentialsError, Link, NoDriver, Refusal, Snapshot, TimedEvent, Token, TokenError,
    TokenSlot, TrySendError, TrySignInError, COMMAND_CAPACITY, EVENT_CAPACITY, STATUS_RECEIVERS,
};
pub use report::{until_refreshes, until_verdict, write_event_text, write_verdict_text, NoStatusReceiver};
pub use wipe::wipe_token;
