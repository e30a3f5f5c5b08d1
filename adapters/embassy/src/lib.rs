//! # accessgate-embassy
//!
//! Runs the [`accessgate`] core (a sans-IO session + gate) on embassy: `no_std`, no
//! `alloc`, every capacity fixed at compile time or handed in by the caller.
//!
//! - **Time**: embassy-time. The session's next deadline is awaited with `Timer::at`, each
//!   HTTP exchange is bounded by `embassy_time::with_timeout` (reqwless has no timeout), and
//!   clock values are converted at the boundary in [`time`] only.
//! - **Network**: reqwless 0.14 over the embedded-nal-async 0.9 `TcpConnect` + `Dns` traits,
//!   so the same driver runs on embassy-net (a board), `std-embedded-nal-async` (a PC) or an
//!   in-memory stack (QEMU). HTTPS through embedded-tls with the server certificate verified
//!   against a configured CA (`Transport::Tls`, feature `tls`; see its docs for embedded-tls'
//!   limits: TLS 1.3 only, ECDSA certificates, CN matching, CA signing the server certificate
//!   directly, no date check). Plain HTTP only when [`Transport::PlainHttp`] is chosen, and
//!   a URL whose scheme disagrees with the transport is a [`ConfigError`].
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
//!     transport: Transport::Tls { ca_der: CA_DER },
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
//! Measured on x86_64 (a 32-bit target is a little smaller): the [`Driver`] value is about
//! 4.8 KiB (the session with two 1 KiB token buffers); the future of [`Driver::run`] about
//! 47 KiB, most of it reqwless/embedded-tls connection state for the two lanes (it lives in
//! the embassy task's static storage, not on the stack); a [`Link`] about 10.5 KiB (four
//! commands of about 2 KiB, each able to carry two tokens, and 32 events); [`CheckStorage`]
//! about 25 KiB of buffers, [`PlainCheckStorage`] about 4 KiB. Without the `tls` feature the
//! lanes hold no TLS state: the QEMU firmware's driver task storage is about 27 KiB instead of
//! about 50 KiB.
//!
//! ## Features
//! - `tls` (default): HTTPS through reqwless' `embedded-tls` (`Transport::Tls`,
//!   `TlsBuffers`, `MIN_TLS_READ`/`MIN_TLS_WRITE`, `Seeds::tls`, the TLS variants of
//!   [`ConfigError`] and [`BufferKind`]). About 250 KiB of flash on Cortex-M. Without it
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

#[cfg(feature = "tls")]
pub use buffers::TlsBuffers;
pub use buffers::{BufferStorage, Buffers, CheckStorage, PlainCheckStorage, RefreshStorage};
pub use config::{BufferKind, ConfigError, DriverConfig, Endpoint, RefreshEndpoint, Transport, MIN_RX};
#[cfg(feature = "tls")]
pub use config::{MIN_TLS_READ, MIN_TLS_WRITE};
pub use driver::{Driver, Seeds};
pub use failure::{NetFailure, TlsFailure};
pub use link::{
    Command, Credentials, CredentialsError, Link, Snapshot, TimedEvent, Token, TokenError, TokenSlot,
    TrySendError, COMMAND_CAPACITY, EVENT_CAPACITY, STATUS_RECEIVERS,
};
pub use report::{until_verdict, write_event_text, write_verdict_text, NoStatusReceiver};
#[cfg(feature = "tls")]
pub use tls::UnixClock;
