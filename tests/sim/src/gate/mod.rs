//! The gate machine: [`accessgate::Gate`] under random interleavings.
//!
//! - [`Checker`] owns a reference model of what the gate may do and checks I1–I5 after every
//!   step. It sees only what any driver sees: the inputs it gave ([`Step`]), the replies and
//!   outputs it got back, and public snapshots ([`Observed`]) before and after. It derives
//!   deadlines, the last definitive answer, generations and the attempt in flight itself, and
//!   never reads them back from the gate; so a gate that is wrong cannot make it agree.
//! - [`GateWorld`] drives one `Gate<N>` from a seed; [`GateScenario`] picks `N` (1, 2, 3 or 8)
//!   and a configuration profile ([`Profile`]) from the seed and implements
//!   [`Scenario`](crate::Scenario).
//!
//! Seed families: `seed % 4` picks the family, so a test can run one family per `#[test]` and
//! `SIM_SEED` still replays any seed on its own:
//! 0 = `Gate<1>` with a microsecond-scale configuration (many timers on the same tick),
//! 1 = `Gate<3>` with a small random configuration (seconds),
//! 2 = `Gate<8>` with [`GateConfig::DEFAULT`](accessgate::GateConfig::DEFAULT),
//! 3 = any `N` of 1, 2, 3, 8 with any profile.

mod driver;
mod model;

pub use driver::{family_of, GateScenario, GateWorld, Profile, Tamper, FAMILIES};
pub use model::{Checker, Input, InputError, Observed, Reply, Step};
