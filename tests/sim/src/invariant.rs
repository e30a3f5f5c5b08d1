//! What a checker reports when the machine under test did something it must not.

use core::fmt;

/// The property a [`Violation`] breaks.
///
/// I1–I5 are the gate's invariants (issue "proven by a deterministic simulator"); I6–I9 are the
/// session layer's (issue 3, "Extend the deterministic simulator with sessions"), and I10 bounds
/// how often refreshes start (issue 14: a token endpoint answering `expires_in: 0` caused a
/// refresh storm that millions of scenarios did not notice, for want of this invariant). At session
/// level I1, I3 and I5 are also checked, in the weaker forms the session model can predict
/// (see `session::Checker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// Access is `Granted` only while the last definitive answer since sign-in was a grant and
    /// no fail-closed deadline has passed since it; a grant never survives a logout (R1, R5, R8).
    I1,
    /// A transient failure never changes access before its deadline (R3, R4).
    I2,
    /// Without a definitive answer, access is `Denied` by the deadline, to the tick; the
    /// deadline is fixed by the first transient failure and never moves (R5).
    I3,
    /// Nothing tagged with an older generation, or with an attempt that is not the one in
    /// flight, changes anything: it is only counted and reported as stale (R10).
    I4,
    /// Each input yields a bounded number of outputs, and the machine never stalls: while a
    /// check is owed, a wake-up is scheduled (R12, R3).
    I5,
    /// No waiter (and no caller of `request_token`, and no check) ever gets a token of a session
    /// that was logged out or superseded: a handle handed out resolves to the bytes of the latest
    /// token delivered to the live session, and every waiter registered before a logout, a 401
    /// or a rejected refresh gets `NotAuthenticated`, never `Ok` (R10, R11).
    I6,
    /// Never two refreshes in flight: between a `RefreshRequest` and its answer, its timeout or
    /// the end of its session, no other `RefreshRequest` is emitted; ids are never reused (R11).
    I7,
    /// After a 401 (a current check answered `Unauthorized`, or a rejected refresh) no check and
    /// no refresh is started for that session, until a new sign-in (R8, R11).
    I8,
    /// A token handed out (`Ready`, a waiter's `Ok`) or sent with a check is never past its
    /// expiry: at that instant `now < expires_at` of that token (R11).
    I9,
    /// Refreshes never start more often than the refresh retry backoff allows, whatever the
    /// token endpoint says about lifetimes: two refresh starts in a run (each less than twice
    /// the backoff cap after the previous one) are at least `refresh_retry.ceiling(k)` apart,
    /// `k` being the earlier one's place in the run (1 s, 2 s, 4 s, then 5 s by default) (R11).
    I10,
    /// Any other disagreement between the machine's outputs and the reference model: replies,
    /// generation and attempt tags, the cause chain of access changes (R13), retry slots (R6).
    Model,
    /// The machine (or the checker) panicked (R12: nothing panics).
    Panic,
}

impl Invariant {
    /// A one-line statement of the property.
    pub const fn statement(self) -> &'static str {
        match self {
            Invariant::I1 => {
                "Granted only while the last definitive answer was a grant and no deadline passed since"
            }
            Invariant::I2 => "a transient failure never changes access before its deadline",
            Invariant::I3 => "with no definitive answer, access is Denied by the deadline (to the tick)",
            Invariant::I4 => "nothing stale (older generation / not the attempt in flight) changes anything",
            Invariant::I5 => "bounded outputs per input, and no stall while a check is owed",
            Invariant::I6 => "no waiter or caller ever gets a token of a logged-out or superseded session",
            Invariant::I7 => "never two refreshes in flight",
            Invariant::I8 => {
                "after a 401 or a rejected refresh, no check or refresh starts until a new sign-in"
            }
            Invariant::I9 => "a token handed out or sent is never past its expiry",
            Invariant::I10 => "refreshes never start more often than the refresh backoff allows",
            Invariant::Model => "outputs agree with the reference model",
            Invariant::Panic => "nothing panics",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", self.statement())
    }
}

/// A broken invariant, with a message saying what was observed and what the model expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property.
    pub invariant: Invariant,
    /// What happened, in words.
    pub message: String,
}

impl Violation {
    /// A violation of `invariant`.
    pub fn new(invariant: Invariant, message: impl Into<String>) -> Self {
        Violation {
            invariant,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.message)
    }
}

impl std::error::Error for Violation {}
