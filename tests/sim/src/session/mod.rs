//! The session machine: [`accessgate::Session`] under random interleavings (issue 3).
//!
//! - [`Checker`] owns a reference model of the session layer and checks I6–I10 after every
//!   step (and I1, I3, I5 in the forms the session model can predict). It sees only what any
//!   driver sees: the inputs it gave ([`Step`], with the tokens as [`Tok`]s), the replies, the
//!   actions, waiter outcomes and events drained after the input, and public snapshots
//!   ([`Observed`]). It counts generations, tracks the refresh and the check in flight, the
//!   waiters, the latest tokens delivered and their expiry itself, and never reads them back.
//! - [`SessionMachine`] is the session's API as a trait, so that tests can wrap the real
//!   session in a deliberately wrong one.
//! - [`SessionWorld`] drives one machine from a seed; [`SessionScenario`] picks the capacities
//!   `Session<N, W, T>` and a [`Profile`] from the seed and implements
//!   [`Scenario`](crate::Scenario); [`FixedScenario`] does the same for one fixed machine type.
//!
//! Seed families (`seed % 4`): 0 = `Session<3, 2, 16>` in microseconds, 1 = `Session<3, 2, 16>`
//! in seconds, 2 = `Session<8, 4, 1024>` with [`SessionConfig::DEFAULT`](accessgate::SessionConfig),
//! 3 = any of `Session<1, 1, 8>`, `Session<3, 2, 16>`, `Session<8, 4, 64>`, `Session<2, 8, 1024>`
//! with any profile.

mod driver;
mod machine;
mod model;

pub use driver::{
    default_tolerance, family_of, strict_from_env, world_params, FixedScenario, Profile, SessionScenario,
    SessionWorld, FAMILIES,
};
pub use machine::{SessionError, SessionMachine};
pub use model::{
    Checker, Handout, Input, Observed, RefreshAnswer, Reply, Sent, Shown, Step, Tok, TokKind, Tolerate,
};
