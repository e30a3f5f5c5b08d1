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
//! - **TLS** (`Transport::Tls`, feature `tls`): TLS 1.3 through embedded-tls with the
//!   project's verifier, which checks, before the first byte of the request (the bearer
//!   token) is written, the chain to the configured trust anchor (intermediates allowed),
//!   basicConstraints on every issuer, keyUsage/extendedKeyUsage serverAuth on the leaf,
//!   the host against subjectAltName (DNS names case-insensitively, IP addresses for IP
//!   URLs; the CN only without SAN), validity dates when a [`UnixClock`] is configured, a
//!   pinned self-signed certificate, and the CertificateVerify signature with the leaf's
//!   key; a handshake that skips the Certificate or the CertificateVerify gets no
//!   connection (R14). What the device **cannot** check: dates without a clock (the chain is
//!   then judged at the leaf's notBefore), RSA and Ed25519 (refused: RSA needs an
//!   allocator), revocation. The full table is in [`tls`]. Plain HTTP only when
//!   [`Transport::PlainHttp`] is chosen, and a URL whose scheme disagrees with the transport
//!   is a [`ConfigError`].
//! - **App side**: a [`Link`] (`static`-friendly) with a bounded command channel, a status
//!   `Watch` of [`Snapshot`]s and a bounded event channel that counts drops instead of
//!   blocking.
//! - **Memory**: [`Buffers`] (or [`BufferStorage`]) per lane; a body is read into a
//!   `max_body + 1` window and never further. See [`buffers`] for sizes.
//!
//! ## Wiring
//!
//! ```ignore
//! static LINK: Link<'static, CriticalSectionRawMutex> = Link::new();
//! static CHECK_BUFS: StaticCell<CheckStorage> = StaticCell::new();
//!
//! let config = DriverConfig {
//!     session: SessionConfig::DEFAULT,
//!     check_url: "https://api.example.com/api/code/invites/check-access/",
//!     transport: Transport::Tls { ca_der: CA_DER, clock: Some(UnixClock(rtc_unix_seconds)) },
//!     refresh: None,
//! };
//! let seeds = Seeds { jitter: rng.next_u64(), tls: rng_bytes };
//! let driver = Driver::new(&LINK, &tcp, &dns, config, CHECK_BUFS.init(CheckStorage::new()).buffers(), None, seeds)?;
//! spawner.spawn(driver_task(driver).unwrap()); // async fn driver_task(d: Driver<...>) -> ! { d.run().await }
//!
//! LINK.try_send(Command::sign_in(access, refresh, Duration::from_secs(3600))?)?;
//! let mut status = LINK.status_receiver().unwrap();
//! loop { render(status.changed().await); }
//! ```
//! `targets/embassy-host` is a complete program doing this on a PC.
//!
//! ## Memory
//! Measured on x86_64 (a 32-bit target is a little smaller; the test
//! `driver_future_size_stays_within_its_budget` prints and bounds it): the [`Driver`] value
//! is about 4.9 KiB (the session with two 1 KiB token buffers); the future of
//! [`Driver::run`] about 32 KiB with the `tls` feature (both lanes' connection state: the
//! embedded-tls connection and its verifier; it was about 47 KiB through reqwless) and about
//! 23 KiB without it. It lives in the embassy task's static storage, not on the stack. A
//! [`Link`] is about 10.5 KiB (four commands of about 2 KiB, each able to carry two tokens,
//! and 32 events); [`CheckStorage`] about 25 KiB of buffers, [`PlainCheckStorage`] about
//! 4 KiB.
//!
//! ## Features
//! - `tls` (default): HTTPS (`Transport::Tls`, the [`tls`] module, [`UnixClock`],
//!   `TlsBuffers`, `MIN_TLS_READ`/`MIN_TLS_WRITE`, `Seeds::tls`, the TLS variants of
//!   [`ConfigError`] and [`BufferKind`]): embedded-tls 0.19 for the protocol,
//!   rustls-webpki 0.103 (no alloc) for X.509 path validation, RustCrypto `p256`/`p384`/
//!   `sha2` for the signatures. About 220 KiB of flash on Cortex-M. Without it
//!   (`default-features = false`) only [`Transport::PlainHttp`] exists, [`Buffers`] and
//!   [`BufferStorage`] have no TLS parts ([`CheckStorage`]/[`RefreshStorage`] are then the
//!   plain sizes), and neither embedded-tls nor its crypto is linked.
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
mod http;
mod link;
mod report;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
mod wire;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use wire::fuzz_read_response;

#[cfg(feature = "tls")]
pub use buffers::TlsBuffers;
pub use buffers::{BufferStorage, Buffers, CheckStorage, PlainCheckStorage, RefreshStorage};
pub use config::{BufferKind, ConfigError, DriverConfig, Endpoint, RefreshEndpoint, Transport, MIN_RX};
#[cfg(feature = "tls")]
pub use config::{MIN_TLS_READ, MIN_TLS_WRITE};
pub use driver::{Driver, Seeds};
pub use failure::{NetFailure, TlsFailure};
pub use link::{
    Command, Credentials, CredentialsError, Link, Refusal, Snapshot, TimedEvent, Token, TokenError,
    TokenSlot, TrySendError, COMMAND_CAPACITY, EVENT_CAPACITY, STATUS_RECEIVERS,
};
pub use report::{until_verdict, write_event_text, write_verdict_text, NoStatusReceiver};
#[cfg(feature = "tls")]
pub use tls::UnixClock;
