//! The reference model of the session layer and its invariant checker (I6–I10, plus the gate's
//! I1, I3 and I5 in the forms the session model can predict).
//!
//! Like the gate's checker, it is written from the spec (behaviour.md R8–R11) and sees only
//! what a driver sees: the inputs it gave (with the token bytes it delivered), the replies, the
//! actions, waiter outcomes and events drained after the input, and public snapshots
//! ([`Observed`]) before and after. It derives everything else itself:
//!
//! - whether a session is live and which one (a count of sign-ins), and the generation (bumped
//!   by a sign-in, by the end of a live session, and by a successful refresh);
//! - the latest access and refresh tokens the driver delivered to the live session (the
//!   sign-in's, then every successful refresh that fits the capacity `T`), and when the access
//!   token expires (`now + expires_in` of the input that delivered it);
//! - the refresh in flight: the last emitted [`RefreshRequest`], until its id is answered, its
//!   `started + refresh_timeout` passes, or the session ends (I7);
//! - the check in flight: the last emitted [`CheckRequest`], until it is answered, its
//!   `started + attempt_timeout` passes, or a new generation supersedes it; a 401 answering it,
//!   or a rejected answer to the refresh in flight, ends the session (I8);
//! - the waiters: every `Wait(id)` reply registers one for the live session; each must be
//!   answered once, `Ok` only with the latest token of the still-live session (I6), before its
//!   expiry (I9), and `NotAuthenticated` in the very step its session ends (I6);
//! - the floor of refresh starts (R11, I10): the instant of the last refresh start and its
//!   place `k` in the current run (starts less than twice `refresh_retry.cap` apart); the next
//!   start may come no earlier than `refresh_retry.ceiling(k)` after it, however short-lived
//!   the tokens, whoever asks, across sign-ins;
//! - the last definitive answer since sign-in, and the first transient failure it knows of
//!   since then (a current transient result or an attempt that timed out): the gate's
//!   fail-closed deadline is at or before that failure plus the budget (R5), so from then on
//!   access must be `Denied` (I3 at session level), and `Granted` needs a current grant (I1).

use super::machine::SessionError;
use crate::invariant::{Invariant, Violation};
use crate::timefmt::{At, OptAt, Span};
use accessgate::{
    Access, Cause, CheckOutcome, CheckRequest, Counters, Duration, Event, Generation, Instant, RefreshId,
    RefreshRequest, SessionConfig, SessionEvent, Status, TokenHandle, TransientClass, WaitError, WaiterId,
};
use core::fmt;

/// Whether a [`Tok`] is an access or a refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokKind {
    /// An access token (sent with checks, handed to callers).
    Access,
    /// A refresh token (sent with refresh requests).
    Refresh,
}

/// A token the driver delivers, described compactly: its bytes are a pure function of
/// `(kind, id, len)` (first byte `a` or `r`, then letters and digits mixed from `id` and the
/// position), so the model can compare what the session hands out with what it was given
/// without keeping copies, and distinct ids give distinct bytes (for lengths of 3 or more,
/// with overwhelming probability).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tok {
    /// Access or refresh token.
    pub kind: TokKind,
    /// Which one (the driver counts them).
    pub id: u32,
    /// Length in bytes (may exceed the session's capacity `T`).
    pub len: usize,
}

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Tok {
    /// Access token `id` of `len` bytes.
    pub const fn access(id: u32, len: usize) -> Self {
        Tok {
            kind: TokKind::Access,
            id,
            len,
        }
    }
    /// Refresh token `id` of `len` bytes.
    pub const fn refresh(id: u32, len: usize) -> Self {
        Tok {
            kind: TokKind::Refresh,
            id,
            len,
        }
    }
    /// Byte `i` of the token.
    pub fn byte(&self, i: usize) -> u8 {
        if i == 0 {
            return match self.kind {
                TokKind::Access => b'a',
                TokKind::Refresh => b'r',
            };
        }
        // splitmix64 finaliser of (id, i).
        let mut z = (u64::from(self.id) << 32 | i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ALPHABET[(z % 62) as usize]
    }
    /// Writes the token's bytes into `buf` (cleared first).
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend((0..self.len).map(|i| self.byte(i)));
    }
    /// The token's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        self.write_to(&mut v);
        v
    }
    /// Whether `bytes` are exactly this token.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() == self.len && bytes.iter().enumerate().all(|(i, &b)| b == self.byte(i))
    }
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            TokKind::Access => "at",
            TokKind::Refresh => "rt",
        };
        write!(f, "{k}#{}/{}B", self.id, self.len)
    }
}

/// Formats observed token bytes for traces: up to 8 characters, then `…` and the length.
pub struct Shown<'a>(pub Option<&'a [u8]>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("<none>"),
            Some(b) => {
                let head: String = b.iter().take(8).map(|&c| c as char).collect();
                if b.len() > 8 {
                    write!(f, "\"{head}…\"/{}B", b.len())
                } else {
                    write!(f, "\"{head}\"")
                }
            }
        }
    }
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sent::Check { request: c, token } => write!(
                f,
                "check (g{} #{}, {})",
                c.generation.0,
                c.attempt,
                Shown(token.as_deref())
            ),
            Sent::Refresh {
                request: r,
                refresh_token,
            } => write!(f, "refresh {} ({})", r.id.0, Shown(refresh_token.as_deref())),
        }
    }
}

/// What the token endpoint answered to a refresh, as the driver delivers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshAnswer {
    /// New tokens ([`accessgate::RefreshOutcome::Refreshed`]).
    Refreshed {
        /// The new access token.
        access: Tok,
        /// The rotated refresh token, if any.
        refresh: Option<Tok>,
        /// Its lifetime.
        expires_in: Duration,
    },
    /// `400 invalid_grant` or `401`.
    Rejected,
    /// Anything else.
    Transient(TransientClass),
}

/// One input given to the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// [`accessgate::Session::sign_in`], or [`accessgate::Session::restore`] when `restore`.
    SignIn {
        /// The access token.
        access: Tok,
        /// The refresh token.
        refresh: Tok,
        /// Remaining lifetime of the access token.
        expires_in: Duration,
        /// Whether `restore` was called rather than `sign_in`.
        restore: bool,
    },
    /// [`accessgate::Session::logout`].
    Logout,
    /// [`accessgate::Session::request_token`].
    RequestToken,
    /// [`accessgate::Session::recheck_now`].
    RecheckNow,
    /// [`accessgate::Session::handle_check_result`]: possibly late, duplicated or forged.
    CheckResult {
        /// The generation the result is tagged with.
        generation: Generation,
        /// The attempt the result is tagged with.
        attempt: u32,
        /// The classified outcome.
        outcome: CheckOutcome,
    },
    /// [`accessgate::Session::handle_refresh_result`]: possibly late, for an old id, or forged.
    RefreshResult {
        /// The refresh the answer is for.
        id: RefreshId,
        /// The answer.
        answer: RefreshAnswer,
    },
    /// [`accessgate::Session::handle_timeout`].
    Timeout,
}

/// A token handle handed out, with the bytes `access_token(handle)` gave right after the
/// input (`None`: the handle leads to no token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handout {
    /// The handle.
    pub handle: TokenHandle,
    /// What `access_token(handle)` returned.
    pub token: Option<Vec<u8>>,
}

/// What an input returned (the error side is [`SessionError`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `Ok(())`.
    Done,
    /// `sign_in` / `restore` returned this generation.
    Started(Generation),
    /// `request_token` returned `Ready(handle)`.
    Ready(Handout),
    /// `request_token` returned `Wait(id)`.
    Wait(WaiterId),
}

/// An action drained with `poll_action`, with the token the driver would send along.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A check, with `access_token(request.token)` at the time it was drained.
    Check {
        /// The request.
        request: CheckRequest,
        /// The bytes behind its handle.
        token: Option<Vec<u8>>,
    },
    /// A refresh, with `refresh_token()` at the time it was drained.
    Refresh {
        /// The request.
        request: RefreshRequest,
        /// The refresh token to post.
        refresh_token: Option<Vec<u8>>,
    },
}

/// One step of a trace: the input at `now`, and everything drained after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The `now` passed with the input.
    pub now: Instant,
    /// The input.
    pub input: Input,
    /// What the call returned.
    pub reply: Result<Reply, SessionError>,
    /// Actions drained with `poll_action`, in order.
    pub actions: Vec<Sent>,
    /// Waiter outcomes drained with `poll_waiter`, in order.
    pub waiters: Vec<(WaiterId, Result<Handout, WaitError>)>,
    /// Events drained with `poll_event`, in order.
    pub events: Vec<SessionEvent>,
}

impl Step {
    /// A step with no outputs yet and an `Ok(Done)` reply.
    pub fn new(now: Instant, input: Input) -> Self {
        Step {
            now,
            input,
            reply: Ok(Reply::Done),
            actions: Vec::new(),
            waiters: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// A public snapshot of the session, taken before and after each step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `status()`.
    pub status: Status,
    /// `poll_timeout()`.
    pub poll_timeout: Option<Instant>,
    /// `counters()`.
    pub counters: Counters,
    /// `current_token()`.
    pub current_token: Option<TokenHandle>,
    /// `expires_at()`.
    pub expires_at: Option<Instant>,
    /// `refresh_in_flight()`.
    pub refresh_in_flight: bool,
    /// `waiting()`.
    pub waiting: usize,
}

impl Observed {
    /// Snapshot of `m`.
    pub fn of<M: super::SessionMachine>(m: &M) -> Self {
        Observed {
            status: m.status(),
            poll_timeout: m.poll_timeout(),
            counters: m.counters(),
            current_token: m.current_token(),
            expires_at: m.expires_at(),
            refresh_in_flight: m.refresh_in_flight(),
            waiting: m.waiting(),
        }
    }
}

/// Deviations of the core that the simulator found, which the checker can be told to let pass
/// so that a random run can look for other problems while one is being fixed. Each is
/// reproduced by a test in `tests/core_findings.rs` and tolerated only in the narrow shape
/// described here. A default run tolerates [`Tolerate::KNOWN`]; `SIM_STRICT=1` tolerates
/// nothing and `SIM_TOLERATE=<mask>` exactly the findings of the mask (bit `n - 1` is finding
/// S`n`).
///
/// All eight session findings (S1–S8) are fixed in the core (b44ea8e, 3ad7ab3), so
/// [`Tolerate::KNOWN`] is empty. The flags of the last two to be fixed stay, for a regression
/// that has to be tolerated while it is fixed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tolerate {
    /// Findings tolerated, as a bit mask of the constants below.
    pub flags: u32,
}

impl Tolerate {
    /// Tolerate nothing.
    pub const NONE: Tolerate = Tolerate { flags: 0 };
    /// Finding S2 (R13), fixed: a refresh that comes due in an input that ends the session is
    /// started, announced (`RefreshStarted`) and counted (`counters().refreshes`), then torn
    /// down before the driver can take it: a phantom refresh in the event log and the counters.
    /// Tolerated only in a step that ended a session.
    pub const S2_PHANTOM_REFRESH_AT_SESSION_END: u32 = 1 << 1;
    /// Finding S6 (I6, R11), fixed: when the refresh in flight times out in an input that ends
    /// the session, the timeout answers the waiters first (`Ok(handle)` while the token is
    /// valid, else `Unavailable`) and the teardown finds nobody left to tell: callers that
    /// waited through the end never get `NotAuthenticated`. Tolerated only for waiters of the
    /// session that ended in a step where the refresh timed out.
    pub const S6_WAITERS_ANSWERED_BEFORE_TEARDOWN: u32 = 1 << 5;
    /// The findings tolerated by default: none (every finding is fixed).
    pub const KNOWN: Tolerate = Tolerate::NONE;
    /// Whether `flag` is tolerated.
    pub const fn has(self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    id: WaiterId,
    session: u32,
    since: Instant,
}

#[derive(Clone, Copy, Debug)]
struct InFlightCheck {
    generation: Generation,
    attempt: u32,
    started: Instant,
}

#[derive(Clone, Copy, Debug)]
struct InFlightRefresh {
    id: RefreshId,
    started: Instant,
}

/// What the model expects from the outputs of the current step.
#[derive(Clone, Copy, Debug, Default)]
struct Expect {
    /// Sessions ended in this step (logout, sign-in over a live one, 401, rejected refresh).
    ended: u32,
    logouts: u32,
    unauthorized: u32,
    end_cause: Option<Cause>,
    /// Results dropped as stale (checks and refreshes).
    stale: u32,
    stale_refresh: Option<RefreshId>,
    refresh_failures: u32,
    /// The refresh in flight timed out by this step's `now`.
    refresh_timed_out: bool,
    /// A 401 for an attempt of the current generation that is not in flight (late, or a
    /// duplicate) ended the session in the model.
    late_401: Option<u32>,
    /// Classes of the refresh failures of this step, in no particular order.
    failure_classes: [Option<TransientClass>; 2],
    n_classes: u8,
    /// The session that ended in this step, if any.
    ended_session: Option<u32>,
    refreshed: Option<(Generation, Instant)>,
    rejected: bool,
    /// Attempt 0 of this generation must start in this step (R3).
    check0: Option<Generation>,
    /// A refresh must start in this step (a sign-in inside the skew, R11), or, when the floor
    /// of refresh starts holds it back (I10), be planned for the floor.
    refresh_at_once: bool,
    /// An early refresh may start (a 403 of the current generation, R9).
    early_ok: bool,
    /// Whether a new session started in this step.
    signed_in: bool,
}

fn fail<T>(invariant: Invariant, message: String) -> Result<T, Violation> {
    Err(Violation::new(invariant, message))
}

/// The session model plus the invariant checks. Feed it every step of a trace, in order,
/// starting from a freshly constructed (signed-out) session.
///
/// ```
/// use accessgate::{Duration, Instant, Session, SessionConfig};
/// use accessgate_sim::session::{Checker, Input, Observed, Reply, Sent, SessionMachine, Step, Tok};
///
/// let mut s: Session<3, 2, 16> = Session::new(SessionConfig::DEFAULT, 7).unwrap();
/// let mut checker = Checker::new(SessionConfig::DEFAULT, 2, 16);
/// let before = Observed::of(&s);
/// let now = Instant::from_secs(1);
/// let (at, rt) = (Tok::access(1, 6), Tok::refresh(1, 6));
/// let input = Input::SignIn { access: at, refresh: rt, expires_in: Duration::from_secs(3600), restore: false };
/// let mut step = Step::new(now, input);
/// step.reply = SessionMachine::sign_in(&mut s, now, &at.bytes(), &rt.bytes(), Duration::from_secs(3600)).map(Reply::Started);
/// while let Some(accessgate::Action::Check(request)) = s.poll_action() {
///     let token = s.access_token(request.token).map(<[u8]>::to_vec);
///     step.actions.push(Sent::Check { request, token });
/// }
/// step.events.extend(core::iter::from_fn(|| s.poll_event()));
/// checker.observe(&step, &before, &Observed::of(&s)).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Checker {
    config: SessionConfig,
    waiter_capacity: usize,
    token_capacity: usize,
    tolerate: Tolerate,
    now: Instant,
    live: bool,
    /// Sign-ins accepted so far; the live session's number.
    session: u32,
    generation: Generation,
    access: Tok,
    refresh_tok: Tok,
    expires_at: Instant,
    check: Option<InFlightCheck>,
    refresh: Option<InFlightRefresh>,
    issued_refresh_ids: Vec<RefreshId>,
    /// The last session ended with a 401 or a rejected refresh, and none started since.
    ended_by_401: bool,
    definitive: Option<Access>,
    first_failure: Option<Instant>,
    /// Refresh failures in a row while the token was valid / expired (R11 backoff steps).
    refresh_fails_valid: u32,
    refresh_fails_expired: u32,
    /// The last refresh start and its place in its run (I10, R11).
    last_refresh_start: Option<Instant>,
    refresh_run: u32,
    /// Refreshes that started exactly at the floor: the floor held them back (coverage).
    floor_starts: u64,
    /// A 403 of this session asked for an early refresh and none has started since: the
    /// floor held it back (I10), and when it starts it is named early (R9, R13).
    early_held: bool,
    waiters: Vec<Waiter>,
    seen_waiters: Vec<WaiterId>,
}

impl Checker {
    /// A model of a freshly constructed, signed-out `Session<_, W, T>` with `config`, where
    /// `waiter_capacity` is `W` and `token_capacity` is `T`. Tolerates nothing.
    pub fn new(config: SessionConfig, waiter_capacity: usize, token_capacity: usize) -> Self {
        Checker {
            config,
            waiter_capacity,
            token_capacity,
            tolerate: Tolerate::NONE,
            now: Instant::ZERO,
            live: false,
            session: 0,
            generation: Generation(0),
            access: Tok::access(0, 0),
            refresh_tok: Tok::refresh(0, 0),
            expires_at: Instant::ZERO,
            check: None,
            refresh: None,
            issued_refresh_ids: Vec::new(),
            ended_by_401: false,
            definitive: None,
            first_failure: None,
            refresh_fails_valid: 0,
            refresh_fails_expired: 0,
            last_refresh_start: None,
            refresh_run: 0,
            floor_starts: 0,
            early_held: false,
            waiters: Vec::new(),
            seen_waiters: Vec::new(),
        }
    }

    /// Lets the given known core findings pass (see [`Tolerate`]).
    pub fn with_tolerance(mut self, tolerate: Tolerate) -> Self {
        self.tolerate = tolerate;
        self
    }

    /// The model's generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Whether the model has a live session.
    pub fn live(&self) -> bool {
        self.live
    }

    /// When the latest access token delivered expires (meaningful while live).
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// The latest access token delivered to the live session.
    pub fn latest_access(&self) -> Option<Tok> {
        self.live.then_some(self.access)
    }

    /// Waiters registered and not yet answered.
    pub fn pending_waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Refreshes that started exactly at the floor of R11 (the floor held them back).
    pub fn floor_starts(&self) -> u64 {
        self.floor_starts
    }

    /// The earliest instant the next refresh may start (R11, I10).
    fn refresh_floor(&self) -> Option<Instant> {
        self.last_refresh_start
            .map(|t| t + self.config.refresh_retry.ceiling(self.refresh_run))
    }

    fn bump(&mut self) {
        self.generation = Generation(self.generation.0.wrapping_add(1));
    }

    fn end(&mut self, x: &mut Expect, cause: Cause) {
        self.bump(); // R10: everything in flight is stale from now on
        self.live = false;
        self.check = None;
        self.refresh = None;
        self.definitive = None;
        self.first_failure = None;
        self.ended_by_401 = cause == Cause::Unauthorized;
        x.ended += 1;
        x.ended_session = Some(self.session);
        if cause == Cause::Unauthorized {
            x.unauthorized += 1;
        } else {
            x.logouts += 1;
        }
        x.end_cause = Some(cause);
    }

    fn check_failed(&mut self, at: Instant) {
        // R5: the streak's deadline is at or before the first failure we know of + budget.
        if self.first_failure.is_none() {
            self.first_failure = Some(at);
        }
    }

    /// Whether a token can be used: at most the capacity, and not empty (an empty bearer token
    /// is not header-safe; the alphabet is otherwise visible ASCII).
    fn fits(&self, t: &Tok) -> bool {
        t.len <= self.token_capacity && t.len > 0
    }

    /// Judges a handle handed to a caller (`what`) at `now`: I6 (live session, the latest token)
    /// and I9 (not expired).
    fn judge_handout(&self, what: &str, h: &Handout, now: Instant) -> Result<(), Violation> {
        if !self.live {
            return fail(
                Invariant::I6,
                format!(
                    "{what}: handle {} handed out at {} but the session is over ({})",
                    h.handle.0,
                    At(now),
                    if self.ended_by_401 {
                        "401 / rejected refresh"
                    } else {
                        "logged out"
                    }
                ),
            );
        }
        match &h.token {
            None => {
                return fail(
                    Invariant::I6,
                    format!(
                    "{what}: access_token(handle {}) is None: the handle is of a replaced token or an ended \
                         session (latest token delivered: {})",
                    h.handle.0, self.access
                ),
                )
            }
            Some(b) if !self.access.matches(b) => {
                return fail(
                    Invariant::I6,
                    format!(
                        "{what}: handle {} leads to {}, not the latest token delivered ({})",
                        h.handle.0,
                        Shown(Some(b)),
                        self.access
                    ),
                )
            }
            Some(_) => {}
        }
        if now >= self.expires_at {
            return fail(
                Invariant::I9,
                format!(
                    "{what}: token {} handed out at {}, but it expired at {}",
                    self.access,
                    At(now),
                    At(self.expires_at)
                ),
            );
        }
        Ok(())
    }

    /// Checks one step. `before` and `after` are the snapshots around it; `step` holds the
    /// input, its reply and every output drained after it. Returns the first violation found.
    pub fn observe(&mut self, step: &Step, before: &Observed, after: &Observed) -> Result<(), Violation> {
        let cfg = self.config;

        // ---- I5 (R12): nothing lost ----
        if after.counters.events_lost != before.counters.events_lost {
            return fail(
                Invariant::I5,
                format!("{} events lost (R12)", after.counters.events_lost),
            );
        }

        // ---- an oversized or empty (not header-safe) sign-in is refused before anything happens ----
        if let Input::SignIn { access, refresh, .. } = step.input {
            // An empty refresh token at sign-in means "none"; an empty access token cannot be sent.
            if !self.fits(&access) || refresh.len > self.token_capacity {
                let want = if access.len > self.token_capacity || refresh.len > self.token_capacity {
                    SessionError::TokenTooLong
                } else {
                    SessionError::TokenNotHeaderSafe
                };
                if step.reply != Err(want) {
                    return fail(
                        Invariant::Model,
                        format!(
                            "sign-in with {access} / {refresh} (capacity {}B) replied {:?}, model wants {want:?}",
                            self.token_capacity, step.reply
                        ),
                    );
                }
                if !step.actions.is_empty()
                    || !step.waiters.is_empty()
                    || !step.events.is_empty()
                    || after != before
                {
                    return fail(
                        Invariant::Model,
                        format!(
                            "a sign-in refused with TokenTooLong changed something: actions {:?}, waiters {:?}, events \
                             {:?}, {before:?} -> {after:?}",
                            step.actions, step.waiters, step.events
                        ),
                    );
                }
                return Ok(());
            }
        }

        // Time is monotonic: an earlier `now` counts as the last one.
        let now = step.now.max(self.now);
        self.now = now;
        let dead_before = !self.live && self.ended_by_401;
        let floor_before = self.refresh_floor();
        let mut x = Expect::default();

        // ---- what came due by `now` fires first ----
        if let Some(c) = self.check {
            let t = c.started + cfg.gate.attempt_timeout;
            if t <= now {
                // R4: the attempt timed out at `t`, a transient failure at that instant.
                self.check = None;
                self.check_failed(t);
            }
        }
        if let Some(r) = self.refresh {
            // Never answered in time: a transient refresh failure (R11). The session may fire
            // its timers before the input (then an answer to that refresh in this input is
            // stale) or after it (then the answer counts, and a session ended by the input
            // reports no timeout): both orders are allowed, the step's events tell which.
            let answered_first = matches!(step.input, Input::RefreshResult { id, .. } if id == r.id)
                && !step.events.contains(&SessionEvent::StaleRefresh { id: r.id });
            if r.started + cfg.refresh_timeout <= now && !answered_first {
                self.refresh = None;
                x.refresh_failures += 1;
                x.refresh_timed_out = true;
                x.failure_classes[usize::from(x.n_classes.min(1))] = Some(TransientClass::Timeout);
                x.n_classes += 1;
            }
        }

        // ---- the input ----
        let waiters_before = self.waiters.len();
        match step.input {
            Input::SignIn {
                access,
                refresh,
                expires_in,
                ..
            } => {
                if self.live {
                    self.end(&mut x, Cause::LoggedOut);
                }
                self.bump();
                self.live = true;
                self.session += 1;
                self.access = access;
                self.refresh_tok = refresh;
                self.expires_at = now + expires_in;
                self.ended_by_401 = false;
                self.definitive = None;
                self.first_failure = None;
                self.refresh_fails_valid = 0;
                self.refresh_fails_expired = 0;
                self.early_held = false;
                x.signed_in = true;
                x.check0 = (expires_in > Duration::ZERO).then_some(self.generation);
                x.refresh_at_once = expires_in <= cfg.refresh_skew;
                let want = Reply::Started(self.generation);
                if step.reply.as_ref() != Ok(&want) {
                    return fail(
                        Invariant::Model,
                        format!("sign-in replied {:?}, model wants Ok({want:?})", step.reply),
                    );
                }
            }
            Input::Logout => {
                if self.live {
                    self.end(&mut x, Cause::LoggedOut);
                }
                self.want_done(step)?;
            }
            Input::RequestToken => {
                if !self.live {
                    if step.reply != Err(SessionError::NotSignedIn) {
                        return fail(
                            Invariant::Model,
                            format!(
                                "request_token while signed out replied {:?}, model wants NotSignedIn",
                                step.reply
                            ),
                        );
                    }
                } else {
                    let fresh = now < self.expires_at.saturating_sub(cfg.refresh_skew);
                    // A refresh that times out in this very step may still be shared (timers
                    // after the input).
                    let idle = self.refresh.is_none() && waiters_before == 0 && !x.refresh_timed_out;
                    match &step.reply {
                        Ok(Reply::Ready(h)) => self.judge_handout("request_token -> Ready", h, now)?,
                        Ok(Reply::Wait(id)) => {
                            if self.seen_waiters.contains(id) {
                                return fail(
                                    Invariant::Model,
                                    format!("waiter id {} handed out twice", id.0),
                                );
                            }
                            self.seen_waiters.push(*id);
                            self.waiters.push(Waiter {
                                id: *id,
                                session: self.session,
                                since: now,
                            });
                        }
                        Err(SessionError::WaitersFull) if waiters_before >= self.waiter_capacity => {}
                        other => {
                            return fail(
                                Invariant::Model,
                                format!(
                                    "request_token replied {other:?} with {waiters_before} of {} waiters registered",
                                    self.waiter_capacity
                                ),
                            )
                        }
                    }
                    // A refresh that a due timer started in this very input is shared.
                    let timer_refresh = step.actions.iter().any(|a| matches!(a, Sent::Refresh { .. }));
                    if fresh && idle && !timer_refresh && !matches!(step.reply, Ok(Reply::Ready(_))) {
                        return fail(
                            Invariant::Model,
                            format!(
                                "R11: the token is fresh until {} (expiry {} - skew), no refresh runs and nobody waits, \
                                 yet request_token replied {:?}",
                                At(self.expires_at.saturating_sub(cfg.refresh_skew)),
                                At(self.expires_at),
                                step.reply
                            ),
                        );
                    }
                }
            }
            Input::RecheckNow => {
                let ok = if self.live {
                    matches!(
                        step.reply,
                        Ok(Reply::Done) | Err(SessionError::RateLimited { .. })
                    )
                } else {
                    step.reply == Err(SessionError::NotSignedIn)
                };
                if !ok {
                    return fail(
                        Invariant::Model,
                        format!("recheck_now (live: {}) replied {:?}", self.live, step.reply),
                    );
                }
            }
            Input::CheckResult {
                generation,
                attempt,
                outcome,
            } => {
                let this_generation = self.live && generation == self.generation;
                let current = this_generation
                    && self
                        .check
                        .is_some_and(|c| c.generation == generation && c.attempt == attempt);
                if this_generation
                    && matches!(
                        outcome,
                        CheckOutcome::Transient {
                            class: TransientClass::Forbidden,
                            ..
                        }
                    )
                {
                    x.early_ok = true; // R9
                }
                if !current {
                    x.stale += 1; // R10
                    if this_generation && outcome == CheckOutcome::Unauthorized {
                        // R8: the server rejected the current token, even if the gate had
                        // given up on that attempt: the session ends (I8 as issue 3 states it:
                        // "a check answered Unauthorized for the current generation").
                        self.end(&mut x, Cause::Unauthorized);
                        x.late_401 = Some(attempt);
                    }
                } else {
                    self.check = None;
                    match outcome {
                        CheckOutcome::Granted | CheckOutcome::Denied => {
                            self.definitive = Some(if outcome == CheckOutcome::Granted {
                                Access::Granted
                            } else {
                                Access::Denied
                            });
                            self.first_failure = None;
                        }
                        CheckOutcome::Unauthorized => self.end(&mut x, Cause::Unauthorized), // R8
                        CheckOutcome::Transient { .. } => self.check_failed(now),
                    }
                }
                self.want_done(step)?;
            }
            Input::RefreshResult { id, answer } => {
                let current = self.live && self.refresh.is_some_and(|r| r.id == id);
                if !current {
                    x.stale += 1; // R10
                    x.stale_refresh = Some(id);
                } else {
                    self.refresh = None;
                    match answer {
                        RefreshAnswer::Refreshed {
                            access,
                            refresh,
                            expires_in,
                        } if self.fits(&access) && refresh.is_none_or(|r| self.fits(&r)) => {
                            self.bump();
                            self.access = access;
                            if let Some(r) = refresh {
                                self.refresh_tok = r;
                            }
                            self.expires_at = now + expires_in;
                            self.check = None; // superseded by the new generation's check
                            self.refresh_fails_valid = 0;
                            self.refresh_fails_expired = 0;
                            x.refreshed = Some((self.generation, self.expires_at));
                            x.check0 = (expires_in > Duration::ZERO).then_some(self.generation);
                        }
                        // An oversized token is a malformed answer: transient.
                        RefreshAnswer::Refreshed { .. } | RefreshAnswer::Transient(_) => {
                            x.refresh_failures += 1;
                            let class = match answer {
                                RefreshAnswer::Transient(c) => c,
                                _ => TransientClass::InvalidBody,
                            };
                            x.failure_classes[usize::from(x.n_classes.min(1))] = Some(class);
                            x.n_classes += 1;
                        }
                        RefreshAnswer::Rejected => {
                            x.rejected = true;
                            self.end(&mut x, Cause::Unauthorized); // R11
                        }
                    }
                }
                self.want_done(step)?;
            }
            Input::Timeout => self.want_done(step)?,
        }

        if let Some(attempt) = x.late_401 {
            if after.status.signed_in && !x.signed_in {
                return fail(
                    Invariant::I8,
                    format!(
                        "check (g{} #{attempt}) of the current generation was answered 401 at {} (after the gate \
                         had given up on that attempt), and the session carried on (R8)",
                        self.generation.0.wrapping_sub(1),
                        At(now)
                    ),
                );
            }
        }

        // ---- actions: I8 (nothing after a 401), I7 (one refresh), I6/I9 (check tokens) ----
        let mut refreshes_sent = 0u32;
        let mut check0_seen = false;
        for a in &step.actions {
            if !self.live {
                let (inv, why) = if self.ended_by_401 {
                    (
                        Invariant::I8,
                        "the session ended with a 401 / rejected refresh and no sign-in followed",
                    )
                } else {
                    (Invariant::Model, "the session is logged out (R10)")
                };
                return fail(inv, format!("{a} started at {}, but {why}", At(now)));
            }
            match a {
                Sent::Check { request: c, token } => {
                    match token {
                        None => {
                            return fail(
                                Invariant::I6,
                                format!("check {c:?} carries a handle that leads to no token"),
                            )
                        }
                        Some(b) if !self.access.matches(b) => {
                            return fail(
                                Invariant::I6,
                                format!(
                                    "check (g{} #{}) sends {}, not the latest token delivered ({})",
                                    c.generation.0,
                                    c.attempt,
                                    Shown(Some(b)),
                                    self.access
                                ),
                            )
                        }
                        Some(_) => {}
                    }
                    if now >= self.expires_at {
                        return fail(
                            Invariant::I9,
                            format!(
                                "check (g{} #{}) sent at {} with {}, which expired at {}",
                                c.generation.0,
                                c.attempt,
                                At(now),
                                self.access,
                                At(self.expires_at)
                            ),
                        );
                    }
                    if c.generation != self.generation
                        || c.started != now
                        || c.timeout != cfg.gate.attempt_timeout
                    {
                        return fail(
                            Invariant::Model,
                            format!(
                                "check {c:?}: model wants generation {}, started {}, timeout {:?}",
                                self.generation.0,
                                At(now),
                                cfg.gate.attempt_timeout
                            ),
                        );
                    }
                    if let Some(prev) = self.check {
                        return fail(
                            Invariant::Model,
                            format!(
                                "check (g{} #{}) started while attempt #{} (started {}) is in flight",
                                c.generation.0,
                                c.attempt,
                                prev.attempt,
                                At(prev.started)
                            ),
                        );
                    }
                    if x.check0 == Some(c.generation) && c.attempt == 0 {
                        check0_seen = true;
                    }
                    self.check = Some(InFlightCheck {
                        generation: c.generation,
                        attempt: c.attempt,
                        started: now,
                    });
                }
                Sent::Refresh {
                    request: r,
                    refresh_token,
                } => {
                    if let Some(prev) = self.refresh {
                        return fail(
                            Invariant::I7,
                            format!(
                                "refresh {} emitted at {} while refresh {} (started {}, times out {}) is in flight",
                                r.id.0,
                                At(now),
                                prev.id.0,
                                At(prev.started),
                                At(prev.started + cfg.refresh_timeout)
                            ),
                        );
                    }
                    if self.issued_refresh_ids.contains(&r.id) {
                        return fail(
                            Invariant::I7,
                            format!(
                                "refresh id {} reused: a late answer to the old refresh would count for the new one",
                                r.id.0
                            ),
                        );
                    }
                    if r.started != now || r.timeout != cfg.refresh_timeout {
                        return fail(
                            Invariant::Model,
                            format!(
                                "refresh {r:?}: model wants started {}, timeout {:?}",
                                At(now),
                                cfg.refresh_timeout
                            ),
                        );
                    }
                    if !refresh_token
                        .as_deref()
                        .is_some_and(|b| self.refresh_tok.matches(b))
                    {
                        return fail(
                            Invariant::Model,
                            format!(
                                "refresh {} posts refresh token {}, not the latest delivered ({})",
                                r.id.0,
                                Shown(refresh_token.as_deref()),
                                self.refresh_tok
                            ),
                        );
                    }
                    // I10 (R11): never more often than the refresh backoff allows.
                    if let Some(floor) = self.refresh_floor() {
                        if now < floor {
                            return fail(
                                Invariant::I10,
                                format!(
                                    "refresh {} started at {}, {} after the previous start at {}: the backoff \
                                     allows the start #{} of this run no earlier than {} (ceiling {})",
                                    r.id.0,
                                    At(now),
                                    Span(now - self.last_refresh_start.unwrap_or(now)),
                                    OptAt(self.last_refresh_start),
                                    self.refresh_run + 1,
                                    At(floor),
                                    Span(cfg.refresh_retry.ceiling(self.refresh_run))
                                ),
                            );
                        }
                        if now == floor {
                            self.floor_starts += 1;
                        }
                    }
                    let quiet = cfg.refresh_retry.cap.saturating_mul(2);
                    self.refresh_run = match self.last_refresh_start {
                        Some(t) if now < t + quiet => self.refresh_run.saturating_add(1),
                        _ => 0,
                    };
                    self.last_refresh_start = Some(now);
                    self.refresh = Some(InFlightRefresh {
                        id: r.id,
                        started: now,
                    });
                    self.issued_refresh_ids.push(r.id);
                    refreshes_sent += 1;
                }
            }
        }
        if let Some(g) = x.check0.filter(|_| self.live) {
            if !check0_seen {
                return fail(
                    Invariant::Model,
                    format!(
                        "R3: generation {} has a valid token (expires {}) but its check did not start at once: {:?}",
                        g.0,
                        At(self.expires_at),
                        step.actions
                    ),
                );
            }
        }
        if x.refresh_at_once && self.live && refreshes_sent == 0 && self.refresh.is_none() {
            match floor_before.filter(|&f| now < f) {
                // Held back by the floor (I10): then planned for it.
                Some(floor) if after.poll_timeout.is_some_and(|t| t <= floor) => {}
                Some(floor) => {
                    return fail(
                        Invariant::Model,
                        format!(
                            "R11: signed in with a token expiring at {} (within the skew); the refresh floor \
                             holds the refresh until {}, but the next wake-up is {}",
                            At(self.expires_at),
                            At(floor),
                            OptAt(after.poll_timeout)
                        ),
                    )
                }
                None => {
                    return fail(
                        Invariant::Model,
                        format!(
                            "R11: signed in with a token expiring at {} (within the skew), but no refresh started",
                            At(self.expires_at)
                        ),
                    )
                }
            }
        }

        // ---- events ----
        let (mut refreshed_ev, mut failed_ev, mut rejected_ev, mut ended_ev) = (0u32, 0u32, 0u32, 0u32);
        let mut stale_refresh_ev = None;
        let mut phantoms = 0u32;
        let dead_all_step = dead_before && !x.signed_in;
        let mut started_ev = false;
        for e in &step.events {
            match *e {
                SessionEvent::RefreshStarted { id, early } => {
                    started_ev = true;
                    if dead_all_step {
                        return fail(
                            Invariant::I8,
                            format!("refresh {} started after a 401 ended the session", id.0),
                        );
                    }
                    let sent = step
                        .actions
                        .iter()
                        .any(|a| matches!(a, Sent::Refresh { request, .. } if request.id == id));
                    if !sent && x.ended > 0 && self.tolerate.has(Tolerate::S2_PHANTOM_REFRESH_AT_SESSION_END)
                    {
                        phantoms += 1;
                    } else if !sent {
                        return fail(
                            Invariant::Model,
                            format!(
                                "RefreshStarted {} but no such refresh was handed out (R13: a refresh that is never sent)",
                                id.0
                            ),
                        );
                    }
                    if early && !x.early_ok && !self.early_held {
                        return fail(
                            Invariant::Model,
                            format!(
                                "early refresh {} without a 403 of the current generation (R9); input {:?}",
                                id.0, step.input
                            ),
                        );
                    }
                }
                SessionEvent::Refreshed {
                    generation,
                    expires_at,
                } => {
                    refreshed_ev += 1;
                    if x.refreshed != Some((generation, expires_at)) {
                        return fail(
                            Invariant::Model,
                            format!(
                                "Refreshed {{ g{}, expires {} }}, model wants {:?}",
                                generation.0,
                                At(expires_at),
                                x.refreshed.map(|(g, t)| (g.0, At(t).to_string()))
                            ),
                        );
                    }
                }
                SessionEvent::RefreshFailed {
                    class, next_attempt, ..
                } => {
                    failed_ev += 1;
                    if !x.failure_classes.contains(&Some(class)) {
                        return fail(
                            Invariant::Model,
                            format!(
                                "RefreshFailed({}), model saw refresh failures {:?}",
                                class.name(),
                                x.failure_classes
                            ),
                        );
                    }
                    // R11: retried with backoff, 1 s doubling to 5 s while the token is valid
                    // (the probe backoff of R7 once it has expired), full jitter, later than now.
                    let valid = now < self.expires_at;
                    let (k, backoff) = if valid {
                        (&mut self.refresh_fails_valid, cfg.refresh_retry)
                    } else {
                        (&mut self.refresh_fails_expired, cfg.gate.probe.backoff())
                    };
                    let ceiling = backoff.ceiling(*k);
                    *k = k.saturating_add(1);
                    // ... and never before the floor of refresh starts (I10): a retry drawn
                    // earlier waits for it.
                    let floor = floor_before.unwrap_or(now);
                    let latest = (now + ceiling).max(floor);
                    if next_attempt <= now || next_attempt > latest || next_attempt < floor {
                        return fail(
                            Invariant::Model,
                            format!(
                                "refresh retry at {}: R11 wants it in ({}, {}], not before the floor {} (backoff \
                                 step {} of {}, token {})",
                                At(next_attempt),
                                At(now),
                                At(latest),
                                At(floor),
                                *k - 1,
                                if valid { "refresh_retry" } else { "probe" },
                                if valid { "valid" } else { "expired" }
                            ),
                        );
                    }
                    if self.live && after.poll_timeout.is_none_or(|t| t > next_attempt) {
                        return fail(
                            Invariant::I5,
                            format!(
                                "refresh retry planned at {} but poll_timeout is {}",
                                At(next_attempt),
                                OptAt(after.poll_timeout)
                            ),
                        );
                    }
                }
                SessionEvent::RefreshRejected => rejected_ev += 1,
                SessionEvent::StaleRefresh { id } => {
                    if stale_refresh_ev.replace(id).is_some() {
                        return fail(Invariant::Model, "two StaleRefresh events from one input".into());
                    }
                }
                SessionEvent::Gate(Event::CheckStarted { generation, attempt }) if dead_all_step => {
                    return fail(
                        Invariant::I8,
                        format!(
                            "check (g{} #{attempt}) started after a 401 ended the session",
                            generation.0
                        ),
                    );
                }
                SessionEvent::Gate(Event::SessionEnded { .. }) => ended_ev += 1,
                SessionEvent::Gate(_) => {}
            }
        }
        // A refresh timeout and a session end in the same step: with the session's timers
        // after the input, the teardown comes first and no timeout is reported.
        if x.refresh_timed_out && x.ended > 0 && failed_ev + 1 == x.refresh_failures {
            x.refresh_failures -= 1;
        }
        let events_want = [
            ("Refreshed", refreshed_ev, u32::from(x.refreshed.is_some())),
            ("RefreshFailed", failed_ev, x.refresh_failures),
            ("RefreshRejected", rejected_ev, u32::from(x.rejected)),
            ("SessionEnded", ended_ev, x.ended),
        ];
        for (name, got, want) in events_want {
            if got != want {
                return fail(
                    Invariant::Model,
                    format!("{got} {name} events, model wants {want}: {:?}", step.events),
                );
            }
        }
        if stale_refresh_ev != x.stale_refresh {
            return fail(
                Invariant::Model,
                format!(
                    "StaleRefresh event {:?}, model wants {:?} (R10)",
                    stale_refresh_ev.map(|i| i.0),
                    x.stale_refresh.map(|i| i.0)
                ),
            );
        }
        // R9, R13: an early refresh the floor held back may start, named early, at the floor.
        if started_ev || !self.live {
            self.early_held = false;
        } else if x.early_ok {
            self.early_held = true;
        }

        // ---- waiters: I6, I9 ----
        for (id, outcome) in &step.waiters {
            let Some(pos) = self.waiters.iter().position(|w| w.id == *id) else {
                return fail(
                    Invariant::Model,
                    format!("outcome {outcome:?} for waiter {}, which is not waiting", id.0),
                );
            };
            let w = self.waiters.remove(pos);
            let current = self.live && w.session == self.session;
            if !current
                && outcome.is_ok() | (outcome.as_ref().err() == Some(&WaitError::Unavailable))
                && x.refresh_timed_out
                && x.ended_session == Some(w.session)
                && self.tolerate.has(Tolerate::S6_WAITERS_ANSWERED_BEFORE_TEARDOWN)
            {
                continue;
            }
            match outcome {
                Ok(h) => {
                    if !current {
                        return fail(
                            Invariant::I6,
                            format!(
                                "waiter {} (registered at {} in session {}) got Ok(handle {} -> {}) after its session ended",
                                id.0,
                                At(w.since),
                                w.session,
                                h.handle.0,
                                Shown(h.token.as_deref())
                            ),
                        );
                    }
                    self.judge_handout(&format!("waiter {}", id.0), h, now)?;
                }
                Err(WaitError::NotAuthenticated) => {
                    if current {
                        return fail(
                            Invariant::Model,
                            format!("waiter {} got NotAuthenticated while its session is live", id.0),
                        );
                    }
                }
                Err(WaitError::Unavailable) => {
                    if !current {
                        return fail(
                            Invariant::I6,
                            format!(
                                "waiter {} of ended session {} got Unavailable, not NotAuthenticated",
                                id.0, w.session
                            ),
                        );
                    }
                    // "The current token has expired; ask again later" (a failed refresh, or
                    // a refreshed token that expired while its check ran).
                    if now < self.expires_at {
                        return fail(
                            Invariant::Model,
                            format!(
                                "waiter {} got Unavailable at {}, but the token is valid until {} (R11: hand it out)",
                                id.0,
                                At(now),
                                At(self.expires_at)
                            ),
                        );
                    }
                }
            }
        }
        if let Some(w) = self
            .waiters
            .iter()
            .find(|w| !(self.live && w.session == self.session))
        {
            return fail(
                Invariant::I6,
                format!(
                    "waiter {} (registered at {} in session {}) was not told NotAuthenticated when its session ended",
                    w.id.0,
                    At(w.since),
                    w.session
                ),
            );
        }
        if self.waiters.len() != after.waiting {
            return fail(
                Invariant::Model,
                format!(
                    "waiting() is {}, model has {} waiters pending",
                    after.waiting,
                    self.waiters.len()
                ),
            );
        }

        // ---- the status ----
        let s = &after.status;
        if s.signed_in != self.live
            || after.current_token.is_some() != self.live
            || s.generation != self.generation
        {
            return fail(
                Invariant::Model,
                format!(
                    "signed_in {} current_token {:?} g{}, model wants live {} g{}",
                    s.signed_in, after.current_token, s.generation.0, self.live, self.generation.0
                ),
            );
        }
        if after.expires_at != self.live.then_some(self.expires_at) {
            return fail(
                Invariant::Model,
                format!(
                    "expires_at() is {}, model wants {} (now + expires_in of the input that delivered the token)",
                    OptAt(after.expires_at),
                    OptAt(self.live.then_some(self.expires_at))
                ),
            );
        }
        if after.refresh_in_flight != self.refresh.is_some() {
            return fail(
                Invariant::Model,
                format!(
                    "refresh_in_flight() is {}, model has {:?}",
                    after.refresh_in_flight, self.refresh
                ),
            );
        }
        let deadline = self.first_failure.map(|t| t + cfg.gate.budget);
        if !self.live {
            if s.access == Access::Granted {
                return fail(
                    Invariant::I1,
                    format!("Granted at {} with no live session", At(now)),
                );
            }
            if s.access != Access::Unknown {
                return fail(
                    Invariant::Model,
                    format!("access {:?} while signed out", s.access),
                );
            }
            if x.end_cause == Some(Cause::Unauthorized) && s.cause != Some(Cause::Unauthorized) {
                return fail(
                    Invariant::Model,
                    format!(
                        "session ended by a 401 / rejected refresh, cause {:?} (R8, R13)",
                        s.cause
                    ),
                );
            }
        } else {
            if s.access == Access::Granted && self.definitive != Some(Access::Granted) {
                return fail(
                    Invariant::I1,
                    format!(
                        "Granted at {}, but the last definitive answer in this session is {:?}",
                        At(now),
                        self.definitive
                    ),
                );
            }
            if let Some(d) = deadline.filter(|&d| d <= now) {
                if s.access != Access::Denied {
                    return fail(
                        Invariant::I3,
                        format!(
                            "access {:?} at {}, but a transient failure at {} without a definitive answer since \
                             put the fail-closed deadline at or before {}",
                            s.access,
                            At(now),
                            OptAt(self.first_failure),
                            At(d)
                        ),
                    );
                }
            }
            if self.definitive == Some(Access::Denied) && s.access != Access::Denied {
                return fail(
                    Invariant::Model,
                    format!("access {:?} after a definitive denial (R2)", s.access),
                );
            }
        }

        // ---- counters (R13) ----
        let (b, a) = (&before.counters, &after.counters);
        let d = |x: u32, y: u32| y.wrapping_sub(x);
        let counters = [
            (
                "refreshes",
                d(b.refreshes, a.refreshes),
                refreshes_sent + phantoms,
            ),
            (
                "refresh_failures",
                d(b.refresh_failures, a.refresh_failures),
                x.refresh_failures,
            ),
            (
                "unauthorized_logouts",
                d(b.unauthorized_logouts, a.unauthorized_logouts),
                x.unauthorized,
            ),
            ("logouts", d(b.logouts, a.logouts), x.logouts),
            ("stale_dropped", d(b.stale_dropped, a.stale_dropped), x.stale),
        ];
        for (name, got, want) in counters {
            if got != want {
                return fail(
                    Invariant::Model,
                    format!("counter {name} grew by {got}, model wants {want} (R13)"),
                );
            }
        }

        // ---- I5: no stall ----
        if self.live && after.poll_timeout.is_none() {
            return fail(
                Invariant::I5,
                "a live session has no wake-up planned (its token is never refreshed)".into(),
            );
        }
        if !self.waiters.is_empty() && after.poll_timeout.is_none() {
            return fail(
                Invariant::I5,
                format!("{} waiters pending but nothing is planned", self.waiters.len()),
            );
        }
        if step.input == Input::Timeout && after.poll_timeout.is_some_and(|t| t <= now) {
            return fail(
                Invariant::I5,
                format!(
                    "after handle_timeout({}) poll_timeout is {}: a driver would spin",
                    At(now),
                    OptAt(after.poll_timeout)
                ),
            );
        }
        Ok(())
    }

    fn want_done(&self, step: &Step) -> Result<(), Violation> {
        if step.reply != Ok(Reply::Done) {
            return fail(
                Invariant::Model,
                format!("{:?} replied {:?}, model wants Ok(())", step.input, step.reply),
            );
        }
        Ok(())
    }
}
