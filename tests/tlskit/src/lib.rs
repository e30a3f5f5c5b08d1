//! # accessgate-tlskit: test-only TLS kit for R14
//!
//! Shared by the TLS acceptance matrix of both binaries (`targets/cli/tests/tls_matrix.rs`,
//! `targets/embassy-host/tests/tls_matrix.rs`), so the certificates are made in one place:
//!
//! * [`pki`]: every row of the matrix ([`Case`]) as a freshly generated [`Scenario`] (rcgen):
//!   the chain the server sends, its key, the anchor the client trusts, the URL host. The
//!   reference backend serves it with [`Scenario::identity`].
//! * [`rogue`]: a hand-written TLS 1.3 server ([`RogueServer`]) that leaves out or reorders
//!   the steps by which a server proves who it is ([`Flow`]), answers any request with a grant,
//!   and reports whether an `Authorization: Bearer` header reached it.
//! * [`matrix`]: runs one row against a `check` binary and asserts R14's outcome
//!   ([`Expect::Granted`]: exit 0; [`Expect::Refused`]: exit 2 by TLS failures, never a panic,
//!   and no request reached the server; [`Expect::RefusedWithDetail`]: the same, each failure
//!   with that R13 detail; [`Expect::UnsupportedAnchor`]: exit 64 at start-up, no request).
//!
//! Loopback only; nothing here is meant for production.

pub mod matrix;
pub mod pki;
pub mod rogue;
pub mod silent;

pub use matrix::Expect;
pub use pki::{Case, Host, Scenario};
pub use rogue::{Flow, Report, RogueServer};
pub use silent::SilentServer;
