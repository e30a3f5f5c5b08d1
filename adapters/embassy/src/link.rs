//! The app-facing side: what tasks of the application share with the driver.
//!
//! A [`Link`] bundles three fixed-capacity queues, all with `const` constructors so a link can
//! live in a `static` (or a `static_cell::StaticCell`):
//!
//! - a bounded **command** queue (capacity [`COMMAND_CAPACITY`]) for sign-in, restore,
//!   logout, re-check and token requests. [`Link::try_send`] never blocks: when the queue is
//!   full it returns [`TrySendError::Full`] with the command inside, nothing is lost (R12).
//!   [`Link::send`] waits for room instead. Both hand the command back when no driver is
//!   attached any more ([`TrySendError::NoDriver`], [`NoDriver`]; see [`Link`]).
//!   [`Link::try_sign_in`] / [`Link::try_restore`]
//!   copy tokens from slices straight into the queue. The driver reads a command in its
//!   slot and wipes the slot's tokens right after ("Token hygiene" in the crate docs).
//! - a status [`Watch`] (up to [`STATUS_RECEIVERS`] receivers) carrying the latest
//!   [`Snapshot`] (status, counters, events dropped, commands refused and the last refusal). A watch keeps only the newest value: a slow reader
//!   skips intermediate snapshots but never sees a stale one after a newer one.
//! - a bounded **event** [`Channel`] (capacity [`EVENT_CAPACITY`]) of [`TimedEvent`]s for
//!   timelines and JSON output. The driver never blocks on it: when it is full the event is
//!   dropped and counted in [`Snapshot::events_dropped`], so a reader that falls behind loses
//!   timeline lines, never gate progress. Nobody has to read it; a kiosk that only renders the
//!   status can ignore it (it then fills up and every later event is counted as dropped).
//!
//! A token request's answer comes back through a [`TokenSlot`] the requesting task owns (one
//! waiting task per slot).
//!
//! `M` is the embassy-sync raw mutex: `CriticalSectionRawMutex` when app tasks and the driver
//! may run in different executors or interrupt priorities, `ThreadModeRawMutex` or
//! `NoopRawMutex` when everything runs in one thread-mode executor.

use accessgate::{
    Counters, Duration, Instant, RecheckError, SessionEvent, SignInError, Status, TokenRequestError,
    WaitError,
};
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::Poll;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::channel::Channel;
use embassy_sync::waitqueue::{MultiWakerRegistration, WakerRegistration};
use embassy_sync::watch::{Receiver, Watch};

use crate::config::ConfigError;
use crate::wipe::wipe_token;

/// Capacity of a link's command channel.
pub const COMMAND_CAPACITY: usize = 4;
/// Capacity of a link's event channel.
pub const EVENT_CAPACITY: usize = 32;
/// How many [`Link::status_receiver`]s can exist at once.
pub const STATUS_RECEIVERS: usize = 4;
/// How many tasks can wait in [`Link::send`] at once without waking each other (more still
/// get through, but then every sender is woken whenever one more starts to wait).
const COMMAND_SENDERS: usize = 4;

/// A token copied out of the session: at most `T` bytes.
pub type Token<const T: usize> = heapless::Vec<u8, T>;

/// Tokens to start a session with, copied into fixed-capacity buffers. Its `Debug` shows the
/// tokens' lengths only: tokens are secrets and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials<const T: usize> {
    pub(crate) access_token: Token<T>,
    pub(crate) refresh_token: Token<T>,
    pub(crate) expires_in: Duration,
}

/// Wiped when dropped: after the driver copied the tokens into its session, or when a
/// refused or unsent command is dropped.
impl<const T: usize> Drop for Credentials<T> {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl<const T: usize> core::fmt::Debug for Credentials<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_token_len", &self.access_token.len())
            .field("refresh_token_len", &self.refresh_token.len())
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why [`Credentials::new`] refused a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CredentialsError {
    /// A token is longer than the capacity `T`.
    TooLong,
    /// A token is empty or holds a byte that cannot go into an HTTP header or form unescaped
    /// (only visible ASCII, `0x21..=0x7e`, is accepted): refusing it here rules out header
    /// injection through a token.
    NotHeaderSafe,
}

impl core::fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CredentialsError::TooLong => "token longer than the link's capacity",
            CredentialsError::NotHeaderSafe => "token is empty or not visible ASCII",
        })
    }
}

impl core::error::Error for CredentialsError {}

/// Whether `token` fits `T` bytes and can go into a header as it is.
fn check_token<const T: usize>(token: &[u8]) -> Result<(), CredentialsError> {
    if !accessgate::header_safe(token) {
        return Err(CredentialsError::NotHeaderSafe);
    }
    if token.len() > T {
        return Err(CredentialsError::TooLong);
    }
    Ok(())
}

/// A copy of `token`, if it fits `T` bytes and can go into a header as it is.
fn copy_token<const T: usize>(token: &[u8]) -> Result<Token<T>, CredentialsError> {
    check_token::<T>(token)?;
    Token::from_slice(token).map_err(|_| CredentialsError::TooLong)
}

/// Why [`Link::try_sign_in`] or [`Link::try_restore`] queued nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TrySignInError {
    /// A token was refused, as [`Credentials::new`] refuses it.
    Credentials(CredentialsError),
    /// The command queue is full (R12); try again.
    Full,
    /// No driver serves the link any more (it was dropped; see [`Link`]).
    NoDriver,
}

impl From<CredentialsError> for TrySignInError {
    fn from(e: CredentialsError) -> Self {
        TrySignInError::Credentials(e)
    }
}

impl core::fmt::Display for TrySignInError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TrySignInError::Credentials(e) => e.fmt(f),
            TrySignInError::Full => f.write_str("command queue full"),
            TrySignInError::NoDriver => f.write_str(NO_DRIVER),
        }
    }
}

impl core::error::Error for TrySignInError {}

const NO_DRIVER: &str = "no driver serves the link (it was dropped)";

/// Why [`Link::try_send`] queued nothing; the command comes back inside, nothing is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TrySendError<C> {
    /// The command queue is full (R12); try again.
    Full(C),
    /// No driver serves the link any more (it was dropped; see [`Link`]).
    NoDriver(C),
}

impl<C> core::fmt::Display for TrySendError<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "command queue full",
            TrySendError::NoDriver(_) => NO_DRIVER,
        })
    }
}

impl<C: core::fmt::Debug> core::error::Error for TrySendError<C> {}

/// Why [`Link::send`] queued nothing: no driver serves the link any more (it was dropped; see
/// [`Link`]). The command comes back inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoDriver<C>(pub C);

impl<C> core::fmt::Display for NoDriver<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(NO_DRIVER)
    }
}

impl<C: core::fmt::Debug> core::error::Error for NoDriver<C> {}

impl<const T: usize> Credentials<T> {
    pub(crate) const fn empty() -> Self {
        Credentials {
            access_token: Token::new(),
            refresh_token: Token::new(),
            expires_in: Duration::from_micros(0),
        }
    }

    fn parts(&self) -> (&[u8], &[u8], Duration) {
        (&self.access_token, &self.refresh_token, self.expires_in)
    }

    pub(crate) fn wipe(&mut self) {
        wipe_token(&mut self.access_token);
        wipe_token(&mut self.refresh_token);
    }

    /// Replaces these tokens with a copy of `other`'s, field by field (no value moved).
    pub(crate) fn copy_from(&mut self, other: &Self) {
        self.wipe();
        // Cannot fail: the same capacity.
        let _ = self.access_token.extend_from_slice(&other.access_token);
        let _ = self.refresh_token.extend_from_slice(&other.refresh_token);
        self.expires_in = other.expires_in;
    }

    /// Copies an access token, a refresh token and the access token's remaining lifetime.
    pub fn new(
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Self, CredentialsError> {
        Ok(Credentials {
            access_token: copy_token(access_token)?,
            refresh_token: copy_token(refresh_token)?,
            expires_in,
        })
    }
}

/// Something the app asks the driver to do.
#[non_exhaustive]
pub enum Command<'a, M: RawMutex, const T: usize = { accessgate::DEFAULT_TOKEN_CAPACITY }> {
    /// Sign in with fresh tokens: a new generation and an immediate check (R3).
    SignIn(Credentials<T>),
    /// Restore a stored session at start-up (access stays `Unknown` until the first answer).
    Restore(Credentials<T>),
    /// Log out: nothing in flight counts any more (R10, R11).
    Logout,
    /// Re-check now (a "retry" button); rate-limited by the core.
    Recheck,
    /// Ask for a valid access token; the answer arrives in the slot (single-flight refresh, R11).
    RequestToken(&'a TokenSlot<M, T>),
}

impl<M: RawMutex, const T: usize> core::fmt::Debug for Command<'_, M, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "defmt")]
impl<M: RawMutex, const T: usize> defmt::Format for Command<'_, M, T> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.name())
    }
}

impl<'a, M: RawMutex, const T: usize> Command<'a, M, T> {
    /// The command's name, for logs (tokens are secrets and never printed).
    pub const fn name(&self) -> &'static str {
        match self {
            Command::SignIn(_) => "sign_in",
            Command::Restore(_) => "restore",
            Command::Logout => "logout",
            Command::Recheck => "recheck",
            Command::RequestToken(_) => "request_token",
        }
    }
    /// [`Command::SignIn`] with tokens copied from slices.
    pub fn sign_in(
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Self, CredentialsError> {
        Credentials::new(access_token, refresh_token, expires_in).map(Command::SignIn)
    }
    /// [`Command::Restore`] with tokens copied from slices.
    pub fn restore(
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Self, CredentialsError> {
        Credentials::new(access_token, refresh_token, expires_in).map(Command::Restore)
    }
}

/// Why a [`Command::RequestToken`] got no token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TokenError {
    /// No session is active.
    NotSignedIn,
    /// The session ended while the caller waited (logout, 401, rejected refresh; R11).
    NotAuthenticated,
    /// The refresh failed transiently and the token has expired; ask again later.
    Unavailable,
    /// Too many callers are waiting already (the session's `W`; R12).
    WaitersFull,
    /// The driver could not take the request (its queues were full); ask again.
    Busy,
    /// Another task waits on this [`TokenSlot`] already (one waiter per slot): this one was
    /// not made to wait, and the answer goes to the other.
    SlotInUse,
}

impl From<WaitError> for TokenError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::NotAuthenticated => TokenError::NotAuthenticated,
            WaitError::Unavailable => TokenError::Unavailable,
        }
    }
}

impl From<TokenRequestError> for TokenError {
    fn from(e: TokenRequestError) -> Self {
        match e {
            TokenRequestError::WaitersFull => TokenError::WaitersFull,
            _ => TokenError::NotSignedIn,
        }
    }
}

impl core::fmt::Display for TokenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TokenError::NotSignedIn => "not signed in",
            TokenError::NotAuthenticated => "session ended while waiting for a token",
            TokenError::Unavailable => "token expired and refresh failing; try again later",
            TokenError::WaitersFull => "too many callers waiting for a token",
            TokenError::Busy => "driver busy; try again",
            TokenError::SlotInUse => "another task waits on this token slot",
        })
    }
}

impl core::error::Error for TokenError {}

/// Where the driver answers one [`Command::RequestToken`]. `static`-friendly; reuse it for
/// the next request (queueing a request, and the driver taking it, drops and wipes an answer
/// to an earlier one that nobody took).
///
/// One task waits on a slot at a time: while one does ([`TokenSlot::wait`],
/// [`TokenSlot::wait_with`]), another task that starts waiting is told
/// [`TokenError::SlotInUse`] at once and the answer stays for the first (one waker per slot:
/// two waiting tasks would wake each other for ever). A waiter that gives up (its future is
/// dropped) frees the place; one whose future is leaked (`mem::forget`, after its first poll)
/// keeps it for good: every later waiter is told [`TokenError::SlotInUse`] (never made to
/// wait for ever, never given another's token) and [`TokenSlot::try_take`] still reads the
/// answers.
///
/// The driver copies the token from its session straight into the slot; taking the answer
/// ([`TokenSlot::wait`], [`TokenSlot::try_take`]) hands out a copy and wipes the slot's, so
/// the only copy left is the caller's (wipe it with [`wipe_token`](crate::wipe_token) once
/// the request that needed it is written).
pub struct TokenSlot<M: RawMutex, const T: usize = { accessgate::DEFAULT_TOKEN_CAPACITY }> {
    state: Mutex<M, RefCell<SlotState<T>>>,
    /// A task waits on the slot (it holds a [`Claim`]). Apart from `state`, so taking and
    /// giving it back never needs `state`'s `RefCell` (borrowed inside `wait_with`'s `f`).
    waiting: Mutex<M, Cell<bool>>,
    /// An answer that came while the slot was borrowed inside its own `wait_with`'s `f` (a
    /// driver dropped there answers a request still queued for this slot, R11): an error only
    /// (an `Ok` becomes [`TokenError::Busy`], no token kept), put in place once `f` returns.
    late: Mutex<M, Cell<Option<TokenError>>>,
}

/// The one waiting place of a [`TokenSlot`], given back when the waiting future ends or is
/// dropped.
struct Claim<'s, M: RawMutex, const T: usize>(&'s TokenSlot<M, T>);

impl<M: RawMutex, const T: usize> Drop for Claim<'_, M, T> {
    fn drop(&mut self) {
        self.0.waiting.lock(|w| w.set(false));
    }
}

struct SlotState<const T: usize> {
    /// The answer not taken yet; an `Ok` one's token is in `token`.
    answer: Option<Result<(), TokenError>>,
    token: Token<T>,
    waker: WakerRegistration,
}

impl<const T: usize> SlotState<T> {
    /// The answer, if there is one: a copy of the token goes to the caller, the slot's is
    /// wiped.
    fn take(&mut self) -> Option<Result<Token<T>, TokenError>> {
        let answer = self.answer.take()?;
        let taken = answer.map(|()| self.token.clone());
        wipe_token(&mut self.token);
        Some(taken)
    }
}

impl<M: RawMutex, const T: usize> TokenSlot<M, T> {
    /// An empty slot.
    pub const fn new() -> Self {
        TokenSlot {
            state: Mutex::new(RefCell::new(SlotState {
                answer: None,
                token: Token::new(),
                waker: WakerRegistration::new(),
            })),
            waiting: Mutex::new(Cell::new(false)),
            late: Mutex::new(Cell::new(None)),
        }
    }
    /// The slot's waiting place, unless another task has it.
    fn claim(&self) -> Result<Claim<'_, M, T>, TokenError> {
        match self.waiting.lock(|w| w.replace(true)) {
            true => Err(TokenError::SlotInUse),
            false => Ok(Claim(self)),
        }
    }
    /// Waits for the answer (and takes it). [`TokenError::SlotInUse`] at once if another task
    /// waits on this slot already.
    pub async fn wait(&self) -> Result<Token<T>, TokenError> {
        let _claim = self.claim()?;
        poll_fn(|cx| {
            self.state.lock(|s| {
                let mut s = s.borrow_mut();
                match s.take() {
                    Some(answer) => Poll::Ready(answer),
                    None => {
                        s.waker.register(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }
    /// Waits for the answer and hands it to `f` where it is, in the slot; then the slot's
    /// copy is wiped. Unlike [`TokenSlot::wait`], no copy of the token is made on the way (on
    /// the stack, or in the caller's future): `f` can write it straight where the request
    /// needs it. `f` runs under the slot's lock: keep it short (a copy). If another task
    /// waits on this slot already, `f` gets [`TokenError::SlotInUse`] at once.
    pub async fn wait_with<R>(&self, f: impl FnOnce(Result<&[u8], TokenError>) -> R) -> R {
        let _claim = match self.claim() {
            Ok(claim) => claim,
            Err(e) => return f(Err(e)),
        };
        let mut f = Some(f);
        poll_fn(|cx| {
            self.state.lock(|s| {
                let mut s = s.borrow_mut();
                // `f` is gone only if polled again after it ended: then nothing is taken.
                if s.answer.is_none() || f.is_none() {
                    s.waker.register(cx.waker());
                    return Poll::Pending;
                }
                let (Some(answer), Some(f)) = (s.answer.take(), f.take()) else {
                    return Poll::Pending; // not reached: both checked above
                };
                let r = f(answer.map(|()| &s.token[..]));
                wipe_token(&mut s.token);
                // R11: an answer that came while `f` ran is the next one taken, not lost.
                s.answer = self.late.lock(Cell::take).map(Err);
                Poll::Ready(r)
            })
        })
        .await
    }
    /// Takes the answer if it is there (`None` inside this slot's own
    /// [`TokenSlot::wait_with`], whose answer is taken already).
    pub fn try_take(&self) -> Option<Result<Token<T>, TokenError>> {
        self.state
            .lock(|s| s.try_borrow_mut().ok().and_then(|mut s| s.take()))
    }
    /// Drops an answer not taken yet and wipes its token. From inside this slot's own
    /// [`TokenSlot::wait_with`] (whose answer is taken already), drops one that came while
    /// its `f` ran.
    fn clear(&self) {
        self.late.lock(|l| l.set(None));
        self.state.lock(|s| {
            // Without an answer the token is wiped already (every way out of `answer` wipes
            // it): no `T` bytes of stores under the link's lock for every token request.
            if let Ok(mut s) = s.try_borrow_mut() {
                if s.answer.take().is_some() {
                    wipe_token(&mut s.token);
                }
            }
        });
    }
    /// Answers (replacing an answer not taken yet), copying the token in. From inside this
    /// slot's own [`TokenSlot::wait_with`] (a driver dropped by its `f`) no panic: the answer
    /// waits in `late` until `f` returns (R11: a request queued for this slot is answered,
    /// its caller not left waiting for ever).
    pub(crate) fn answer(&self, answer: Result<&[u8], TokenError>) {
        self.state.lock(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                let late = answer.err().unwrap_or(TokenError::Busy);
                self.late.lock(|l| l.set(Some(late)));
                return;
            };
            wipe_token(&mut s.token);
            // Cannot fail: the session's tokens are at most `T` bytes too.
            let stored = answer.and_then(|t| s.token.extend_from_slice(t).map_err(|_| TokenError::Busy));
            s.answer = Some(stored);
            s.waker.wake();
        });
    }
}

impl<M: RawMutex, const T: usize> Default for TokenSlot<M, T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A slot dropped with an answer nobody took leaves no token.
impl<M: RawMutex, const T: usize> Drop for TokenSlot<M, T> {
    fn drop(&mut self) {
        wipe_token(&mut self.state.get_mut().get_mut().token);
    }
}

/// A session event and when the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct TimedEvent {
    /// When (the core's clock: microseconds since boot).
    pub at: Instant,
    /// What.
    pub event: SessionEvent,
}

impl TimedEvent {
    /// `event`, seen at `at`.
    pub const fn new(at: Instant, event: SessionEvent) -> Self {
        TimedEvent { at, event }
    }
}

/// What the app renders from, published after every input that changed something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Snapshot {
    /// When it was taken (the core's clock).
    pub at: Instant,
    /// Access, cause, signed-in, re-verifying deadline, probing...
    pub status: Status,
    /// The core's counters (R13).
    pub counters: Counters,
    /// Events dropped because the event channel was full.
    pub events_dropped: u32,
    /// Commands the session refused (rate-limited re-check, re-check while signed out...).
    pub commands_refused: u32,
    /// Why the last refused command was refused.
    pub last_refusal: Option<Refusal>,
}

/// Why the session refused a [`Command`]: the core's error for that operation, as is.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refusal {
    /// A sign-in or restore ([`Command::SignIn`], [`Command::Restore`]).
    SignIn(SignInError),
    /// A token request ([`Command::RequestToken`]).
    TokenRequest(TokenRequestError),
    /// A re-check ([`Command::Recheck`]).
    Recheck(RecheckError),
}

/// The shared handles between the app and one [`Driver`](crate::Driver): a bounded command
/// queue ([`Link::try_send`], [`Link::send`], [`Link::try_sign_in`], [`Link::try_restore`];
/// the driver reads a command in its slot and wipes its tokens right after), the latest
/// [`Snapshot`] ([`Link::status_receiver`], [`Link::snapshot`]) and a bounded event channel
/// ([`Link::next_event`]; a full one drops events and counts them, never blocking the driver).
///
/// **One driver per link, and what happens without one.** [`Driver::new`](crate::Driver::new)
/// attaches the driver to the link and refuses a link that has one already
/// ([`ConfigError::LinkInUse`]: two would take turns waking each other on the queue's one
/// receiver); dropping the driver (its task cancelled) detaches it, so a restarted task can
/// attach a new one (a driver leaked with `mem::forget` is never dropped: the link stays
/// `LinkInUse` for good). Commands queued before the first driver attaches (a session restored
/// at boot, before the driver task is spawned) wait for it. Once a driver is dropped and until
/// the next one attaches, the link refuses new commands ([`TrySendError::NoDriver`],
/// [`NoDriver`], [`TrySignInError::NoDriver`]: the command comes back, R12), tasks waiting
/// in [`Link::send`] are woken and get theirs back (one that runs again only after a new
/// driver attached queues it for that driver), and the commands still queued at the
/// drop are not kept for nobody: a token request's slot is answered
/// [`TokenError::NotAuthenticated`] (the dropped driver signed its session out, R11), a
/// sign-in's or restore's tokens are wiped.
pub struct Link<'a, M: RawMutex, const T: usize = { accessgate::DEFAULT_TOKEN_CAPACITY }> {
    commands: Mutex<M, RefCell<Commands<'a, M, T>>>,
    status: Watch<M, Snapshot, STATUS_RECEIVERS>,
    events: Channel<M, TimedEvent, EVENT_CAPACITY>,
}

/// A queued command as the driver reads it, in place: the tokens are borrowed from the
/// queue slot, which is wiped once the driver is done with it.
pub(crate) enum Queued<'s, 'a, M: RawMutex, const T: usize> {
    SignIn(&'s Credentials<T>),
    Restore(&'s Credentials<T>),
    Logout,
    Recheck,
    RequestToken(&'a TokenSlot<M, T>),
}

impl<M: RawMutex, const T: usize> Queued<'_, '_, M, T> {
    /// The command's name, for logs.
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            Queued::SignIn(_) => "sign_in",
            Queued::Restore(_) => "restore",
            Queued::Logout => "logout",
            Queued::Recheck => "recheck",
            Queued::RequestToken(_) => "request_token",
        }
    }
}

/// What kind of command a queue slot holds (a token request with its slot, so a request
/// without one cannot be queued).
enum Kind<'a, M: RawMutex, const T: usize> {
    SignIn,
    Restore,
    Logout,
    Recheck,
    RequestToken(&'a TokenSlot<M, T>),
}

impl<M: RawMutex, const T: usize> Clone for Kind<'_, M, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: RawMutex, const T: usize> Copy for Kind<'_, M, T> {}

/// One slot of the command queue. Written field by field (the tokens with
/// `extend_from_slice`), never by moving a whole `Command` in: a move copies the value's
/// unused bytes too (a `Logout` is as large as a `SignIn`), and those come from wherever the
/// value was built, which may be stack memory that held a token a moment before.
struct Slot<'a, M: RawMutex, const T: usize> {
    kind: Kind<'a, M, T>,
    credentials: Credentials<T>,
}

/// Whether a driver serves the link.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Served {
    /// None has attached yet: commands wait for the first (a session restored at boot).
    NotYet,
    /// One is attached; a second is refused (one receiver, one waker).
    Driven,
    /// The last one was dropped: commands are refused until another attaches.
    Dropped,
}

/// Why [`Commands::push_parts`] queued nothing.
enum Refused {
    Full,
    NoDriver,
}

/// The command queue: a bounded FIFO like an embassy-sync `Channel`, but the driver reads a
/// command in its slot and the slot's tokens are wiped right after (a `Channel` moves the
/// value out and leaves its bytes in the slot until a later command overwrites them).
struct Commands<'a, M: RawMutex, const T: usize> {
    slots: [Slot<'a, M, T>; COMMAND_CAPACITY],
    /// The oldest command's slot.
    head: usize,
    len: usize,
    served: Served,
    /// The driver (one receiver: [`Link::attach`] refuses a second).
    receiver: WakerRegistration,
    /// Tasks waiting in [`Link::send`]: all woken when a slot frees (one `WakerRegistration`
    /// would have two waiting senders wake each other in a loop while the queue is full, and
    /// on a higher-priority executor than the driver's that loop starves the driver for good).
    senders: MultiWakerRegistration<COMMAND_SENDERS>,
}

impl<'a, M: RawMutex, const T: usize> Commands<'a, M, T> {
    /// Copies `command` into the next free slot.
    fn push(&mut self, command: &Command<'a, M, T>) -> Result<(), Refused> {
        let (kind, tokens) = match command {
            Command::SignIn(c) => (Kind::SignIn, Some(c.parts())),
            Command::Restore(c) => (Kind::Restore, Some(c.parts())),
            Command::Logout => (Kind::Logout, None),
            Command::Recheck => (Kind::Recheck, None),
            Command::RequestToken(t) => (Kind::RequestToken(*t), None),
        };
        self.push_parts(kind, tokens)
    }

    /// Fills the next free slot field by field.
    fn push_parts(
        &mut self,
        kind: Kind<'a, M, T>,
        tokens: Option<(&[u8], &[u8], Duration)>,
    ) -> Result<(), Refused> {
        // R12: told at once, never queued for a driver that is gone.
        if self.served == Served::Dropped {
            return Err(Refused::NoDriver);
        }
        if self.len == COMMAND_CAPACITY {
            return Err(Refused::Full);
        }
        if let Kind::RequestToken(t) = kind {
            // A slot reused for a new request: an answer to an earlier one nobody took (its
            // waiter gave up) must not be taken as this one's, and its token, perhaps of a
            // session that has ended since, goes now (R11).
            t.clear();
        }
        let slot = &mut self.slots[(self.head + self.len) % COMMAND_CAPACITY];
        slot.kind = kind;
        // A free slot's tokens are wiped already (at its take); wiped again before new ones
        // go in, but not for a command without tokens: no 2 x `T` bytes of stores under the
        // lock for a re-check.
        if let Some((access, refresh, expires_in)) = tokens {
            slot.credentials.wipe();
            // Cannot fail: checked against `T` when the tokens were accepted.
            let _ = slot.credentials.access_token.extend_from_slice(access);
            let _ = slot.credentials.refresh_token.extend_from_slice(refresh);
            slot.credentials.expires_in = expires_in;
        }
        self.len += 1;
        self.receiver.wake();
        Ok(())
    }

    /// Hands the oldest command to `f` where it is, then wipes its slot and frees it.
    fn take<R>(&mut self, f: impl FnOnce(Queued<'_, 'a, M, T>) -> R) -> Option<R> {
        if self.len == 0 {
            return None;
        }
        let head = self.head;
        let slot = &mut self.slots[head];
        let queued = match slot.kind {
            Kind::SignIn => Queued::SignIn(&slot.credentials),
            Kind::Restore => Queued::Restore(&slot.credentials),
            Kind::Logout => Queued::Logout,
            Kind::Recheck => Queued::Recheck,
            Kind::RequestToken(t) => {
                // R11: an answer to an earlier request on this slot, delivered after this one
                // was queued, goes now: its session may have ended since (a sign-in queued in
                // between), and this request's waiter must not take it as its own.
                t.clear();
                Queued::RequestToken(t)
            }
        };
        let had_tokens = matches!(slot.kind, Kind::SignIn | Kind::Restore);
        let r = f(queued);
        if had_tokens {
            slot.credentials.wipe();
        }
        // Free slots are never read; this one no longer names the token slot.
        slot.kind = Kind::Logout;
        self.head = (head + 1) % COMMAND_CAPACITY;
        self.len -= 1;
        self.senders.wake();
        Some(r)
    }
}

impl<'a, M: RawMutex, const T: usize> Link<'a, M, T> {
    /// An idle link, usable in a `static`.
    pub const fn new() -> Self {
        const fn slot<'a, M: RawMutex, const T: usize>() -> Slot<'a, M, T> {
            Slot {
                kind: Kind::Logout,
                credentials: Credentials::empty(),
            }
        }
        Link {
            commands: Mutex::new(RefCell::new(Commands {
                slots: [slot(), slot(), slot(), slot()],
                head: 0,
                len: 0,
                served: Served::NotYet,
                receiver: WakerRegistration::new(),
                senders: MultiWakerRegistration::new(),
            })),
            status: Watch::new(),
            events: Channel::new(),
        }
    }

    /// Queues a command without waiting. When the queue is full the command comes back in
    /// [`TrySendError::Full`] (R12), after a dropped driver in [`TrySendError::NoDriver`].
    /// The queue keeps its own copy of the tokens; `command`'s are wiped when it is dropped
    /// here.
    pub fn try_send(&self, command: Command<'a, M, T>) -> Result<(), TrySendError<Command<'a, M, T>>> {
        match self.commands.lock(|c| c.borrow_mut().push(&command)) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(TrySendError::Full(command)),
            Err(Refused::NoDriver) => Err(TrySendError::NoDriver(command)),
        }
    }

    /// Queues a [`Command::SignIn`], copying the tokens from these slices straight into the
    /// queue's slot: no [`Credentials`] value is built, so no copy of a token is left in
    /// stack memory on the way (see "Token hygiene" in the crate docs). The tokens are
    /// checked as [`Credentials::new`] checks them.
    pub fn try_sign_in(
        &self,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<(), TrySignInError> {
        self.try_send_tokens(Kind::SignIn, access_token, refresh_token, expires_in)
    }

    /// [`Link::try_sign_in`] for a [`Command::Restore`].
    pub fn try_restore(
        &self,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<(), TrySignInError> {
        self.try_send_tokens(Kind::Restore, access_token, refresh_token, expires_in)
    }

    fn try_send_tokens(
        &self,
        kind: Kind<'a, M, T>,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<(), TrySignInError> {
        check_token::<T>(access_token)?;
        check_token::<T>(refresh_token)?;
        let tokens = Some((access_token, refresh_token, expires_in));
        self.commands
            .lock(|c| c.borrow_mut().push_parts(kind, tokens))
            .map_err(|e| match e {
                Refused::Full => TrySignInError::Full,
                Refused::NoDriver => TrySignInError::NoDriver,
            })
    }

    /// Queues a command, waiting for room. Up to four tasks can wait here at once and sleep
    /// until the driver frees a slot (more still get through, but then they wake each other
    /// every time one more starts to wait). After a dropped driver, and for the tasks waiting
    /// here when it is dropped, the command comes back in [`NoDriver`].
    pub async fn send(&self, command: Command<'a, M, T>) -> Result<(), NoDriver<Command<'a, M, T>>> {
        let queued = poll_fn(|cx| {
            self.commands.lock(|c| {
                let mut c = c.borrow_mut();
                match c.push(&command) {
                    Ok(()) => Poll::Ready(true),
                    Err(Refused::NoDriver) => Poll::Ready(false),
                    Err(Refused::Full) => {
                        c.senders.register(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await;
        match queued {
            true => Ok(()),
            false => Err(NoDriver(command)),
        }
    }

    /// Attaches a driver: refused while another one is attached (one receiver).
    pub(crate) fn attach(&self) -> Result<(), ConfigError> {
        self.commands.lock(|c| {
            let mut c = c.borrow_mut();
            if c.served == Served::Driven {
                return Err(ConfigError::LinkInUse);
            }
            c.served = Served::Driven;
            Ok(())
        })
    }

    /// Detaches the driver (it is being dropped): what is still queued is answered or wiped,
    /// not kept for nobody, and commands are refused until a driver attaches again.
    pub(crate) fn detach(&self) {
        self.commands.lock(|c| {
            let mut c = c.borrow_mut();
            c.served = Served::Dropped;
            // R11: the dropped driver signed its session out; a sign-in's tokens are wiped
            // by `take`.
            while c
                .take(|q| {
                    if let Queued::RequestToken(slot) = q {
                        slot.answer(Err(TokenError::NotAuthenticated));
                    }
                })
                .is_some()
            {}
            // Senders waiting for room learn there is none to come.
            c.senders.wake();
        })
    }

    /// Waits until a command is queued (for the driver, which then takes it with
    /// [`Link::take_command`]).
    pub(crate) async fn command_ready(&self) {
        poll_fn(|cx| {
            self.commands.lock(|c| {
                let mut c = c.borrow_mut();
                if c.len > 0 {
                    Poll::Ready(())
                } else {
                    c.receiver.register(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Hands the oldest command to `f` where it is, then wipes its slot and frees it. `None`
    /// when the queue is empty. `f` runs under the link's lock (interrupts off with a
    /// `CriticalSectionRawMutex`): a copy at most. The driver copies a sign-in's tokens out
    /// and feeds its session after the lock is released.
    pub(crate) fn take_command<R>(&self, f: impl FnOnce(Queued<'_, 'a, M, T>) -> R) -> Option<R> {
        self.commands.lock(|c| c.borrow_mut().take(f))
    }

    /// [`Link::take_command`] for the driver: a sign-in's or restore's tokens are copied into
    /// `staged` (a copy at most under the lock) and the queue slot's wiped; the session is
    /// fed from `staged` after the lock is released.
    pub(crate) fn take_staged<'s>(&self, staged: &'s mut Credentials<T>) -> Option<Queued<'s, 'a, M, T>> {
        self.take_command(move |command| match command {
            Queued::SignIn(c) => {
                staged.copy_from(c);
                Queued::SignIn(staged)
            }
            Queued::Restore(c) => {
                staged.copy_from(c);
                Queued::Restore(staged)
            }
            Queued::Logout => Queued::Logout,
            Queued::Recheck => Queued::Recheck,
            Queued::RequestToken(slot) => Queued::RequestToken(slot),
        })
    }

    /// A receiver of status snapshots (its `changed()` waits for the next one), or
    /// `None` when [`STATUS_RECEIVERS`] receivers exist already.
    pub fn status_receiver(&self) -> Option<Receiver<'_, M, Snapshot, STATUS_RECEIVERS>> {
        self.status.receiver()
    }

    /// The latest snapshot, `None` before the driver published one.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.status.try_get()
    }

    /// Waits for the next event.
    pub async fn next_event(&self) -> TimedEvent {
        self.events.receive().await
    }

    /// The next event, if one is queued.
    pub fn try_next_event(&self) -> Option<TimedEvent> {
        self.events.try_receive().ok()
    }

    /// Publishes a snapshot unless it equals the current one (apart from its time).
    pub(crate) fn publish(&self, snapshot: Snapshot) {
        self.status.sender().send_if_modified(|cur| {
            if cur
                .as_ref()
                .is_some_and(|c| Snapshot { at: c.at, ..snapshot } == *c)
            {
                false
            } else {
                *cur = Some(snapshot);
                true
            }
        });
    }

    /// Offers an event without blocking; `false` when the channel was full.
    pub(crate) fn offer_event(&self, event: TimedEvent) -> bool {
        self.events.try_send(event).is_ok()
    }
}

impl<M: RawMutex, const T: usize> Default for Link<'_, M, T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The command queue and the token slot on their own, polled by hand: FIFO order across every
/// way in and around the ring, full-queue refusals, who is woken and how often.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wipe::in_memory;
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    const T: usize = 16;
    type L = Link<'static, NoopRawMutex, T>;
    type Slot = TokenSlot<NoopRawMutex, T>;
    const HOUR: Duration = Duration::from_secs(3600);

    /// A waker that records that it was woken, and how often.
    #[derive(Default)]
    struct Flag {
        woken: AtomicBool,
        wakes: AtomicUsize,
    }

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, SeqCst);
            self.wakes.fetch_add(1, SeqCst);
        }
    }

    /// A future polled only when its waker was woken (as an executor does).
    struct Task<'f> {
        fut: Pin<Box<dyn Future<Output = ()> + 'f>>,
        flag: Arc<Flag>,
        done: bool,
        polls: usize,
    }

    impl<'f> Task<'f> {
        fn new(fut: impl Future<Output = ()> + 'f) -> Self {
            let flag = Arc::new(Flag::default());
            flag.woken.store(true, SeqCst); // a new task is polled once
            Task {
                fut: Box::pin(fut),
                flag,
                done: false,
                polls: 0,
            }
        }

        /// Polls it if it was woken; `true` if it was.
        fn step(&mut self) -> bool {
            if self.done || !self.flag.woken.swap(false, SeqCst) {
                return false;
            }
            self.polls += 1;
            let waker = Waker::from(self.flag.clone());
            self.done = self
                .fut
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            true
        }
    }

    /// Polls woken tasks until none is woken, at most `rounds` rounds; the polls it made.
    fn run_until_idle(tasks: &mut [Task<'_>], rounds: usize) -> usize {
        let mut polls = 0;
        for _ in 0..rounds {
            let polled = tasks.iter_mut().filter_map(|t| t.step().then_some(())).count();
            if polled == 0 {
                break;
            }
            polls += polled;
        }
        polls
    }

    /// Polls `fut` once with a waker nobody looks at.
    fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn leak<V>(v: V) -> &'static V {
        Box::leak(Box::new(v))
    }

    fn text(t: &[u8]) -> &str {
        core::str::from_utf8(t).unwrap_or("<not utf-8>")
    }

    /// The oldest command as text (token requests name their slot's index in `slots`).
    fn take(link: &L, slots: &[Slot]) -> Option<String> {
        link.take_command(|q| match q {
            Queued::SignIn(c) | Queued::Restore(c) => format!(
                "{} {} {} {}",
                q.name(),
                text(&c.access_token),
                text(&c.refresh_token),
                c.expires_in.as_secs()
            ),
            Queued::RequestToken(t) => {
                let i = slots.iter().position(|s| core::ptr::eq(s, t));
                format!("request_token {i:?}")
            }
            other => other.name().to_string(),
        })
    }

    fn queue_len(link: &L) -> (usize, usize) {
        link.commands.lock(|c| {
            let c = c.borrow();
            (c.head, c.len)
        })
    }

    #[test]
    fn the_queue_keeps_fifo_order_across_every_way_in_and_many_laps_of_the_ring() {
        let slots: &'static [Slot; 3] = leak(core::array::from_fn(|_| Slot::new()));
        let link: &'static L = leak(Link::new());
        let mut model: VecDeque<String> = VecDeque::new();
        // A fixed pseudo-random walk: pushes of every kind, refusals when full, takes.
        let mut x: u32 = 0x9e37_79b9;
        for step in 0..600u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let full = model.len() == COMMAND_CAPACITY;
            let (at, rt, secs) = (format!("at{step}"), format!("rt{step}"), u64::from(step % 97));
            let expires = Duration::from_secs(secs);
            let expect = |name: &str| format!("{name} {at} {rt} {secs}");
            match x % 7 {
                0 => match link.try_send(Command::sign_in(at.as_bytes(), rt.as_bytes(), expires).unwrap()) {
                    Ok(()) => model.push_back(expect("sign_in")),
                    Err(TrySendError::Full(Command::SignIn(c))) => {
                        assert!(full, "refused with room at step {step}");
                        // R12: the refused command comes back whole.
                        assert_eq!(
                            c,
                            Credentials::new(at.as_bytes(), rt.as_bytes(), expires).unwrap()
                        );
                    }
                    Err(other) => panic!("{other:?} came back at step {step}"),
                },
                1 => match link.try_sign_in(at.as_bytes(), rt.as_bytes(), expires) {
                    Ok(()) => model.push_back(expect("sign_in")),
                    Err(e) => assert!(full && e == TrySignInError::Full, "{e:?} at step {step}"),
                },
                2 => match link.try_restore(at.as_bytes(), rt.as_bytes(), expires) {
                    Ok(()) => model.push_back(expect("restore")),
                    Err(e) => assert!(full && e == TrySignInError::Full, "{e:?} at step {step}"),
                },
                3 => {
                    let i = (x / 7 % 3) as usize;
                    match link.try_send(Command::RequestToken(&slots[i])) {
                        Ok(()) => model.push_back(format!("request_token Some({i})")),
                        Err(TrySendError::Full(Command::RequestToken(t))) => {
                            assert!(full && core::ptr::eq(t, &slots[i]), "step {step}")
                        }
                        Err(other) => panic!("{other:?} came back at step {step}"),
                    }
                }
                4 => {
                    // `send`: ready at once with room; when full, pending, then dropped
                    // (cancelled): it queued nothing.
                    let (cmd, name) = if x & 0x100 == 0 {
                        (Command::Recheck, "recheck")
                    } else {
                        (
                            Command::restore(at.as_bytes(), rt.as_bytes(), expires).unwrap(),
                            "restore",
                        )
                    };
                    let mut send = core::pin::pin!(link.send(cmd));
                    match poll_once(send.as_mut()) {
                        Poll::Ready(Ok(())) => {
                            assert!(!full, "sent into a full queue at step {step}");
                            model.push_back(if name == "recheck" {
                                name.to_string()
                            } else {
                                expect(name)
                            });
                        }
                        Poll::Pending => assert!(full, "waited with room at step {step}"),
                        Poll::Ready(Err(e)) => panic!("{e} at step {step}"),
                    }
                }
                5 => {
                    if link.try_send(Command::Logout).is_ok() {
                        model.push_back("logout".to_string());
                    } else {
                        assert!(full, "step {step}");
                    }
                }
                _ => assert_eq!(take(link, slots), model.pop_front(), "step {step}"),
            }
            let (head, len) = queue_len(link);
            assert!(head < COMMAND_CAPACITY, "head {head} at step {step}");
            assert_eq!(len, model.len(), "len at step {step}");
            // Free slots hold no tokens (a re-check queued there writes none, wipes none).
            link.commands.lock(|c| {
                let c = c.borrow();
                for free in len..COMMAND_CAPACITY {
                    let slot = &c.slots[(head + free) % COMMAND_CAPACITY];
                    assert!(
                        slot.credentials.access_token.is_empty() && slot.credentials.refresh_token.is_empty(),
                        "free slot {free} holds tokens at step {step}"
                    );
                }
            });
        }
        while let Some(expected) = model.pop_front() {
            assert_eq!(take(link, slots).as_deref(), Some(&expected[..]));
        }
        assert_eq!(take(link, slots), None);
        assert_eq!(queue_len(link).1, 0);
    }

    #[test]
    fn a_full_queue_refuses_try_sign_in_and_try_restore_and_keeps_what_it_holds() {
        let link: &'static L = leak(Link::new());
        for i in 0..COMMAND_CAPACITY {
            link.try_sign_in(format!("at{i}").as_bytes(), b"rt", HOUR)
                .unwrap();
        }
        assert_eq!(link.try_sign_in(b"atX", b"rtX", HOUR), Err(TrySignInError::Full));
        assert_eq!(link.try_restore(b"atY", b"rtY", HOUR), Err(TrySignInError::Full));
        // A refused token is refused before the queue is looked at.
        assert_eq!(
            link.try_sign_in(b"at\n", b"rt", HOUR),
            Err(TrySignInError::Credentials(CredentialsError::NotHeaderSafe))
        );
        for i in 0..COMMAND_CAPACITY {
            assert_eq!(take(link, &[]), Some(format!("sign_in at{i} rt 3600")));
        }
        assert_eq!(take(link, &[]), None);
    }

    #[test]
    fn tokens_of_exactly_the_capacity_are_queued_whole_and_one_byte_more_is_refused() {
        // R12: a token of `T` bytes fits and is queued whole, on every way in; `T + 1` is
        // `TooLong`, never cut to `T`.
        let full = "a".repeat(T);
        let over = "a".repeat(T + 1);
        let link: &'static L = leak(Link::new());
        link.try_sign_in(full.as_bytes(), full.as_bytes(), HOUR).unwrap();
        assert_eq!(take(link, &[]), Some(format!("sign_in {full} {full} 3600")));
        link.try_send(Command::restore(full.as_bytes(), b"rt", HOUR).unwrap())
            .unwrap();
        assert_eq!(take(link, &[]), Some(format!("restore {full} rt 3600")));
        let too_long = Err(TrySignInError::Credentials(CredentialsError::TooLong));
        assert_eq!(link.try_sign_in(over.as_bytes(), b"rt", HOUR), too_long);
        assert_eq!(link.try_restore(b"at", over.as_bytes(), HOUR), too_long);
        assert_eq!(
            Credentials::<T>::new(over.as_bytes(), b"rt", HOUR).err(),
            Some(CredentialsError::TooLong)
        );
        assert_eq!(take(link, &[]), None);
    }

    #[test]
    fn refusals_say_why_in_words() {
        // R13: what an app logs or shows when a command is refused names the reason.
        let texts = [
            CredentialsError::TooLong.to_string(),
            CredentialsError::NotHeaderSafe.to_string(),
            TrySignInError::Credentials(CredentialsError::TooLong).to_string(),
            TrySignInError::Full.to_string(),
            TrySignInError::NoDriver.to_string(),
            TrySendError::Full(()).to_string(),
            TrySendError::NoDriver(()).to_string(),
            NoDriver(()).to_string(),
        ];
        assert_eq!(
            texts,
            [
                "token longer than the link's capacity",
                "token is empty or not visible ASCII",
                "token longer than the link's capacity",
                "command queue full",
                "no driver serves the link (it was dropped)",
                "command queue full",
                "no driver serves the link (it was dropped)",
                "no driver serves the link (it was dropped)",
            ]
        );
        let token_errors = [
            TokenError::NotSignedIn,
            TokenError::NotAuthenticated,
            TokenError::Unavailable,
            TokenError::WaitersFull,
            TokenError::Busy,
            TokenError::SlotInUse,
        ]
        .map(|e| e.to_string());
        assert_eq!(
            token_errors,
            [
                "not signed in",
                "session ended while waiting for a token",
                "token expired and refresh failing; try again later",
                "too many callers waiting for a token",
                "driver busy; try again",
                "another task waits on this token slot",
            ]
        );
        // A command's Debug is its name (what `TrySendError`'s Debug shows in a log).
        let sign_in: Command<'_, NoopRawMutex, T> =
            Command::sign_in(b"at_secret", b"rt_secret", HOUR).unwrap();
        assert_eq!(format!("{sign_in:?}"), "sign_in");
        assert_eq!(format!("{:?}", TrySendError::Full(sign_in)), "Full(sign_in)");
        // Debug of credentials shows the tokens' lengths, never the tokens.
        let c = Credentials::<T>::new(b"at_secret", b"rt_secret", HOUR).unwrap();
        let debug = format!("{c:?}");
        assert!(
            debug.contains("access_token_len: 9") && debug.contains("refresh_token_len: 9"),
            "{debug}"
        );
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn a_slot_dropped_with_an_answer_nobody_took_leaves_no_token() {
        // Token hygiene (crate docs): the driver copied a token into the slot; nobody took
        // it; the slot goes (its owner's task ended). The token goes with it.
        type BigSlot = TokenSlot<NoopRawMutex, 64>;
        let token = b"at_slot_dropped_with_an_answer_0001";
        let slot = Box::new(BigSlot::new());
        slot.answer(Ok(token));
        let (addr, mut bytes) = (&*slot as *const BigSlot as usize, vec![0u8; size_of::<BigSlot>()]);
        let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
        assert!(
            in_memory(&mut mem, addr, &mut bytes, token),
            "the dump sees the answer"
        );
        drop(slot);
        assert!(
            !in_memory(&mut mem, addr, &mut bytes, token),
            "token left by a dropped slot"
        );
    }

    #[test]
    fn a_snapshot_that_differs_only_in_its_time_is_not_published_again() {
        // "Published after every input that changed something": an app waiting on its
        // status receiver is not woken for a snapshot that only carries a later time, and
        // the published one keeps the time of the change.
        let link: &'static L = leak(Link::new());
        let mut rx = link.status_receiver().unwrap();
        let first = Snapshot {
            at: Instant::from_secs(1),
            ..Snapshot::default()
        };
        link.publish(first);
        assert_eq!(rx.try_changed(), Some(first));
        link.publish(Snapshot {
            at: Instant::from_secs(2),
            ..first
        });
        assert_eq!(rx.try_changed(), None);
        assert_eq!(link.snapshot(), Some(first));
        let changed = Snapshot {
            at: Instant::from_secs(3),
            commands_refused: 1,
            ..first
        };
        link.publish(changed);
        assert_eq!(rx.try_changed(), Some(changed));
    }

    /// `n` tasks, each sending a sign-in with access token `at{i}` (waiting for room).
    fn sign_in_senders(link: &'static L, n: usize) -> Vec<Task<'static>> {
        (0..n)
            .map(|i| {
                Task::new(async move {
                    let at = format!("at{i}");
                    link.send(Command::sign_in(at.as_bytes(), b"rt", HOUR).unwrap())
                        .await
                        .unwrap();
                })
            })
            .collect()
    }

    #[test]
    fn senders_blocked_on_a_full_queue_sleep_until_a_slot_frees_and_all_get_through() {
        let link: &'static L = leak(Link::new());
        for _ in 0..COMMAND_CAPACITY {
            link.try_send(Command::Recheck).unwrap();
        }
        let mut tasks = sign_in_senders(link, COMMAND_SENDERS);
        assert_eq!(run_until_idle(&mut tasks, 1), COMMAND_SENDERS, "each polled once");
        assert!(tasks.iter().all(|t| !t.done));
        // Nothing frees a slot: nobody is woken (one `WakerRegistration` had the senders wake
        // each other for ever here: the executor never slept, and one with a higher priority
        // than the driver's never let it run).
        assert_eq!(run_until_idle(&mut tasks, 1000), 0, "senders woke each other");
        let mut taken = Vec::new();
        for _ in 0..2 * COMMAND_CAPACITY {
            taken.push(take(link, &[]).expect("a command"));
            run_until_idle(&mut tasks, 100);
        }
        assert!(tasks.iter().all(|t| t.done), "a sender was never woken");
        assert!(
            tasks.iter().all(|t| t.polls <= 1 + COMMAND_CAPACITY),
            "polls: {:?}",
            tasks.iter().map(|t| t.polls).collect::<Vec<_>>()
        );
        assert_eq!(&taken[..COMMAND_CAPACITY], ["recheck"; COMMAND_CAPACITY]);
        let mut signed: Vec<_> = taken[COMMAND_CAPACITY..].to_vec();
        signed.sort();
        let expected: Vec<_> = (0..COMMAND_SENDERS)
            .map(|i| format!("sign_in at{i} rt 3600"))
            .collect();
        assert_eq!(signed, expected, "each sender's command once");
        assert_eq!(take(link, &[]), None);
    }

    #[test]
    fn more_senders_than_the_waker_table_all_get_through_once() {
        let link: &'static L = leak(Link::new());
        for _ in 0..COMMAND_CAPACITY {
            link.try_send(Command::Logout).unwrap();
        }
        let n = 3 * COMMAND_SENDERS + 1;
        let mut tasks = sign_in_senders(link, n);
        let mut taken = Vec::new();
        for _ in 0..n + COMMAND_CAPACITY {
            run_until_idle(&mut tasks, 50);
            taken.push(take(link, &[]).expect("a command"));
        }
        run_until_idle(&mut tasks, 50);
        assert!(tasks.iter().all(|t| t.done), "a sender was lost");
        assert_eq!(take(link, &[]), None);
        let mut signed: Vec<_> = taken[COMMAND_CAPACITY..].to_vec();
        signed.sort();
        let mut expected: Vec<_> = (0..n).map(|i| format!("sign_in at{i} rt 3600")).collect();
        expected.sort();
        assert_eq!(signed, expected);
    }

    #[test]
    fn the_driver_is_woken_by_every_way_in_and_sleeps_on_an_empty_queue() {
        let link: &'static L = leak(Link::new());
        let slot: &'static Slot = leak(Slot::new());
        let ready = AtomicUsize::new(0);
        let mut driver = [Task::new(async {
            loop {
                link.command_ready().await;
                ready.fetch_add(1, SeqCst);
                while take(link, &[]).is_some() {}
            }
        })];
        run_until_idle(&mut driver, 10);
        assert_eq!(ready.load(SeqCst), 0, "ready on an empty queue");
        let ways: [&dyn Fn(); 5] = [
            &|| link.try_send(Command::Recheck).unwrap(),
            &|| link.try_sign_in(b"at", b"rt", HOUR).unwrap(),
            &|| link.try_restore(b"at", b"rt", HOUR).unwrap(),
            &|| link.try_send(Command::RequestToken(slot)).unwrap(),
            &|| {
                let mut send = core::pin::pin!(link.send(Command::Logout));
                assert!(poll_once(send.as_mut()).is_ready());
            },
        ];
        for (i, way) in ways.iter().enumerate() {
            way();
            assert!(
                run_until_idle(&mut driver, 10) >= 1,
                "way {i} did not wake the driver"
            );
            assert_eq!(ready.load(SeqCst), i + 1);
            assert_eq!(queue_len(link).1, 0);
        }
        // Idle again: polled no more.
        assert_eq!(run_until_idle(&mut driver, 10), 0);
    }

    #[test]
    fn a_replaced_answer_is_the_one_taken_and_only_once() {
        let slot = Slot::new();
        slot.answer(Ok(b"first_token_xx"));
        slot.answer(Ok(b"second"));
        assert_eq!(slot.try_take().unwrap().unwrap().as_slice(), b"second");
        assert_eq!(slot.try_take(), None);
        slot.answer(Ok(b"third"));
        slot.answer(Err(TokenError::NotAuthenticated));
        assert_eq!(slot.try_take(), Some(Err(TokenError::NotAuthenticated)));
        // The replaced token is gone from the slot: nothing left but zeroes.
        slot.state.lock(|s| assert!(s.borrow().token.is_empty()));
        // A token longer than the slot is never truncated.
        slot.answer(Ok(&[b'a'; T + 1]));
        assert_eq!(slot.try_take(), Some(Err(TokenError::Busy)));
    }

    #[test]
    fn a_new_request_on_a_slot_drops_an_answer_nobody_took() {
        let link: &'static L = leak(Link::new());
        let slot: &'static Slot = leak(Slot::new());
        link.try_send(Command::RequestToken(slot)).unwrap();
        assert!(take(link, &[]).is_some());
        // Its waiter gave up before the answer came (a timeout, say): the answer stays.
        {
            let mut wait = core::pin::pin!(slot.wait());
            assert!(poll_once(wait.as_mut()).is_pending());
        }
        slot.answer(Ok(b"old_session_at"));
        // The slot is reused: the next request's waiter must not get the old answer (it may
        // be a token of a session that has ended since, R11), and the old token is wiped.
        link.try_send(Command::RequestToken(slot)).unwrap();
        slot.state.lock(|s| assert!(s.borrow().token.is_empty()));
        let mut wait = core::pin::pin!(slot.wait());
        assert!(poll_once(wait.as_mut()).is_pending(), "the old answer was taken");
        assert!(take(link, &[]).is_some());
        slot.answer(Ok(b"new_at"));
        match poll_once(wait.as_mut()) {
            Poll::Ready(Ok(t)) => assert_eq!(t.as_slice(), b"new_at"),
            other => panic!("{other:?}"),
        }
        // Refused (full queue): the untaken answer stays for the caller still waiting.
        slot.answer(Ok(b"kept"));
        for _ in 0..COMMAND_CAPACITY {
            link.try_send(Command::Recheck).unwrap();
        }
        assert!(link.try_send(Command::RequestToken(slot)).is_err());
        assert_eq!(slot.try_take().unwrap().unwrap().as_slice(), b"kept");
    }

    #[test]
    fn a_wait_with_dropped_before_or_after_the_answer_loses_nothing_and_runs_nothing() {
        let slot = Slot::new();
        let ran = AtomicUsize::new(0);
        // Dropped while waiting.
        {
            let mut w = core::pin::pin!(slot.wait_with(|_| ran.fetch_add(1, SeqCst)));
            assert!(poll_once(w.as_mut()).is_pending());
        }
        slot.answer(Ok(b"tok1"));
        // Made after the answer came, dropped before it was polled.
        drop(slot.wait_with(|_| ran.fetch_add(1, SeqCst)));
        assert_eq!(ran.load(SeqCst), 0);
        assert_eq!(slot.try_take().unwrap().unwrap().as_slice(), b"tok1", "lost");
        // Pending, then answered: woken once, reads the token in place, leaves none.
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut w = core::pin::pin!(slot.wait_with(|t| t.map(<[u8]>::to_vec)));
        assert!(w.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        // Another one, never polled, dropped with the answer still to come.
        drop(slot.wait_with(|_| ran.fetch_add(1, SeqCst)));
        slot.answer(Ok(b"tok2"));
        assert_eq!(flag.wakes.load(SeqCst), 1);
        assert_eq!(
            w.as_mut().poll(&mut Context::from_waker(&waker)),
            Poll::Ready(Ok(b"tok2".to_vec()))
        );
        assert_eq!(slot.try_take(), None);
        assert_eq!(ran.load(SeqCst), 0);
        slot.state.lock(|s| assert!(s.borrow().token.is_empty()));
    }

    #[test]
    fn try_take_racing_wait_gives_each_answer_once() {
        let slot = Slot::new();
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = core::pin::pin!(slot.wait());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        slot.answer(Ok(b"one"));
        assert_eq!(flag.wakes.load(SeqCst), 1, "the waiter is woken");
        // Another task takes it first: the waiter, polled, finds nothing and waits on.
        assert_eq!(slot.try_take().unwrap().unwrap().as_slice(), b"one");
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        slot.answer(Err(TokenError::Unavailable));
        assert_eq!(
            wait.as_mut().poll(&mut cx),
            Poll::Ready(Err(TokenError::Unavailable))
        );
        assert_eq!(slot.try_take(), None);
    }

    #[test]
    fn the_slot_and_link_used_from_inside_wait_with_never_panic() {
        let link: &'static L = leak(Link::new());
        let slot: &'static Slot = leak(Slot::new());
        slot.answer(Ok(b"tok"));
        let mut w = core::pin::pin!(slot.wait_with(|t| {
            // The answer is taken already: nothing more here, and a new request on the same
            // slot queues (the slot is locked by this very call).
            assert_eq!(t, Ok(&b"tok"[..]));
            (
                slot.try_take(),
                link.try_send(Command::RequestToken(slot)).is_ok(),
            )
        }));
        assert_eq!(poll_once(w.as_mut()), Poll::Ready((None, true)));
        assert_eq!(
            take(link, core::slice::from_ref(slot)).as_deref(),
            Some("request_token Some(0)")
        );
    }

    #[test]
    fn a_second_task_waiting_on_a_slot_is_told_at_once_and_nobody_wakes_anybody_in_a_loop() {
        let slot: &'static Slot = leak(Slot::new());
        type Got = Option<Result<Vec<u8>, TokenError>>;
        let got: RefCell<[Got; 3]> = RefCell::new([None, None, None]);
        let mut tasks = [
            Task::new(async {
                let r = slot.wait().await.map(|t| t.to_vec());
                got.borrow_mut()[0] = Some(r);
            }),
            Task::new(async {
                let r = slot.wait_with(|t| t.map(<[u8]>::to_vec)).await;
                got.borrow_mut()[1] = Some(r);
            }),
            Task::new(async {
                let r = slot.wait().await.map(|t| t.to_vec());
                got.borrow_mut()[2] = Some(r);
            }),
        ];
        // One waker per slot: with every task registering in turn, each woke the one before
        // it for ever (polled without end, no token for anybody). Now the first one waits
        // and the others are told at once: three polls, then sleep.
        assert_eq!(run_until_idle(&mut tasks, 1000), 3, "waiters woke each other");
        assert_eq!(
            *got.borrow(),
            [
                None,
                Some(Err(TokenError::SlotInUse)),
                Some(Err(TokenError::SlotInUse))
            ]
        );
        slot.answer(Ok(b"tok"));
        assert_eq!(run_until_idle(&mut tasks, 1000), 1);
        assert_eq!(
            got.borrow()[0],
            Some(Ok(b"tok".to_vec())),
            "the answer went to the first"
        );
        assert_eq!(tasks.iter().map(|t| t.polls).collect::<Vec<_>>(), [2, 1, 1]);
        // The place is free again once its waiter is done, or gives up (dropped).
        {
            let mut w = core::pin::pin!(slot.wait());
            assert!(poll_once(w.as_mut()).is_pending());
            assert_eq!(slot.try_take(), None);
        }
        let mut w = core::pin::pin!(slot.wait_with(|t| t.map(<[u8]>::to_vec)));
        assert!(
            poll_once(w.as_mut()).is_pending(),
            "a waiter that gave up kept the place"
        );
        slot.answer(Ok(b"tok2"));
        assert_eq!(poll_once(w.as_mut()), Poll::Ready(Ok(b"tok2".to_vec())));
    }

    #[test]
    fn a_link_takes_one_driver_at_a_time_and_a_new_one_once_the_last_is_dropped() {
        let link: &'static L = leak(Link::new());
        assert_eq!(link.attach(), Ok(()));
        assert_eq!(link.attach(), Err(ConfigError::LinkInUse));
        assert_eq!(link.attach(), Err(ConfigError::LinkInUse));
        link.detach();
        assert_eq!(link.attach(), Ok(()), "a restarted driver is refused");
        assert_eq!(link.attach(), Err(ConfigError::LinkInUse));
    }

    #[test]
    fn commands_wait_for_the_first_driver_and_after_a_drop_are_answered_wiped_and_refused() {
        let link: &'static L = leak(Link::new());
        let slots: &'static [Slot; 2] = leak([Slot::new(), Slot::new()]);
        // Before any driver (a session restored at boot, the driver task not spawned yet).
        link.try_restore(b"at_boot", b"rt_boot", HOUR).unwrap();
        link.try_send(Command::RequestToken(&slots[0])).unwrap();
        link.try_sign_in(b"at_new", b"rt_new", HOUR).unwrap();
        link.try_send(Command::Recheck).unwrap();
        link.attach().unwrap();
        assert_eq!(take(link, slots).as_deref(), Some("restore at_boot rt_boot 3600"));
        // The driver is dropped with three commands still queued.
        slots[1].answer(Ok(b"untaken"));
        link.detach();
        // R11: the token request is answered (its session was signed out), not kept for
        // nobody; the sign-in's tokens are wiped; nothing stays queued.
        assert_eq!(slots[0].try_take(), Some(Err(TokenError::NotAuthenticated)));
        assert_eq!(queue_len(link).1, 0);
        link.commands.lock(|c| {
            for slot in &c.borrow().slots {
                assert!(
                    slot.credentials.access_token.is_empty() && slot.credentials.refresh_token.is_empty()
                );
            }
        });
        // New commands are refused at once and come back; a refused request leaves its slot
        // (and the answer a caller may still take from it) alone.
        match link.try_send(Command::RequestToken(&slots[1])) {
            Err(TrySendError::NoDriver(Command::RequestToken(t))) => assert!(core::ptr::eq(t, &slots[1])),
            other => panic!("{other:?}"),
        }
        assert_eq!(slots[1].try_take().unwrap().unwrap().as_slice(), b"untaken");
        assert!(matches!(
            link.try_send(Command::Logout),
            Err(TrySendError::NoDriver(Command::Logout))
        ));
        assert_eq!(
            link.try_sign_in(b"at", b"rt", HOUR),
            Err(TrySignInError::NoDriver)
        );
        assert_eq!(
            link.try_restore(b"at", b"rt", HOUR),
            Err(TrySignInError::NoDriver)
        );
        let mut send = core::pin::pin!(link.send(Command::Recheck));
        assert!(matches!(
            poll_once(send.as_mut()),
            Poll::Ready(Err(NoDriver(Command::Recheck)))
        ));
        assert_eq!(take(link, slots), None);
        // A restarted driver: the link takes commands again.
        link.attach().unwrap();
        link.try_sign_in(b"at_again", b"rt", HOUR).unwrap();
        assert_eq!(take(link, slots).as_deref(), Some("sign_in at_again rt 3600"));
    }

    #[test]
    fn senders_waiting_for_room_when_the_driver_is_dropped_are_woken_and_get_their_command_back() {
        let link: &'static L = leak(Link::new());
        link.attach().unwrap();
        for _ in 0..COMMAND_CAPACITY {
            link.try_send(Command::Recheck).unwrap();
        }
        let back = RefCell::new(Vec::new());
        let mut tasks: Vec<Task<'_>> = (0..COMMAND_SENDERS)
            .map(|i| {
                let back = &back;
                Task::new(async move {
                    let at = format!("at{i}");
                    let r = link
                        .send(Command::sign_in(at.as_bytes(), b"rt", HOUR).unwrap())
                        .await;
                    back.borrow_mut().push(match r {
                        Err(NoDriver(Command::SignIn(c))) => text(&c.access_token).to_string(),
                        other => format!("{other:?}"),
                    });
                })
            })
            .collect();
        assert_eq!(run_until_idle(&mut tasks, 10), COMMAND_SENDERS);
        link.detach();
        assert_eq!(run_until_idle(&mut tasks, 10), COMMAND_SENDERS, "each woken once");
        assert!(
            tasks.iter().all(|t| t.done),
            "a sender waits for a driver that is gone"
        );
        drop(tasks);
        let mut back = back.into_inner();
        back.sort();
        assert_eq!(
            back,
            (0..COMMAND_SENDERS).map(|i| format!("at{i}")).collect::<Vec<_>>()
        );
        assert_eq!(queue_len(link).1, 0);
    }

    #[test]
    fn a_driver_dropped_inside_wait_with_still_answers_the_request_queued_for_that_slot() {
        let link: &'static L = leak(Link::new());
        let slot: &'static Slot = leak(Slot::new());
        link.attach().unwrap();
        // Two requests on one slot: the first answered (its token waits in the slot), the
        // second still queued when the waiter reads the first answer and, from inside
        // `wait_with`'s `f`, the driver is dropped (its task cancelled there).
        link.try_send(Command::RequestToken(slot)).unwrap();
        assert!(take(link, &[]).is_some());
        link.try_send(Command::RequestToken(slot)).unwrap();
        slot.answer(Ok(b"first"));
        let mut w = core::pin::pin!(slot.wait_with(|t| {
            let got = t.map(<[u8]>::to_vec);
            link.detach();
            got
        }));
        assert_eq!(poll_once(w.as_mut()), Poll::Ready(Ok(b"first".to_vec())));
        // R11: the queued request is answered too (its session ended with the driver); it
        // was lost, and its caller waited for ever, when the slot was busy in `f`.
        assert_eq!(queue_len(link).1, 0);
        assert_eq!(slot.try_take(), Some(Err(TokenError::NotAuthenticated)));
        slot.state.lock(|s| assert!(s.borrow().token.is_empty()));
        // A request queued from inside `f` after that drops the kept answer, as any new
        // request drops an untaken one.
        link.attach().unwrap();
        link.try_send(Command::RequestToken(slot)).unwrap();
        slot.answer(Ok(b"second"));
        let mut w = core::pin::pin!(slot.wait_with(|t| {
            link.detach(); // answers the queued request: kept
            link.attach().unwrap();
            link.try_send(Command::RequestToken(slot)).unwrap(); // drops it
            t.map(<[u8]>::to_vec)
        }));
        assert_eq!(poll_once(w.as_mut()), Poll::Ready(Ok(b"second".to_vec())));
        assert_eq!(slot.try_take(), None);
        assert_eq!(
            take(link, core::slice::from_ref(slot)).as_deref(),
            Some("request_token Some(0)")
        );
    }

    #[test]
    fn a_sender_woken_by_a_drop_gets_its_command_back_or_the_next_driver_takes_it_once() {
        let link: &'static L = leak(Link::new());
        link.attach().unwrap();
        for _ in 0..COMMAND_CAPACITY {
            link.try_send(Command::Recheck).unwrap();
        }
        // Polled (waits for room), the driver dropped, polled again: its command comes back.
        let mut a = core::pin::pin!(link.send(Command::sign_in(b"at_a", b"rt", HOUR).unwrap()));
        assert!(poll_once(a.as_mut()).is_pending());
        // Polled, the driver dropped, a new one attached before the sender runs again: the
        // new driver takes it, once.
        let mut b = core::pin::pin!(link.send(Command::sign_in(b"at_b", b"rt", HOUR).unwrap()));
        assert!(poll_once(b.as_mut()).is_pending());
        link.detach();
        link.detach(); // twice: nothing more happens
        match poll_once(a.as_mut()) {
            Poll::Ready(Err(NoDriver(Command::SignIn(c)))) => assert_eq!(text(&c.access_token), "at_a"),
            other => panic!("{other:?}"),
        }
        assert_eq!(queue_len(link).1, 0);
        link.attach().unwrap();
        assert_eq!(link.attach(), Err(ConfigError::LinkInUse));
        assert!(matches!(poll_once(b.as_mut()), Poll::Ready(Ok(()))));
        assert_eq!(take(link, &[]).as_deref(), Some("sign_in at_b rt 3600"));
        assert_eq!(take(link, &[]), None);
    }

    #[test]
    fn a_leaked_wait_keeps_the_slots_place_and_nothing_else_changes() {
        let slot: &'static Slot = leak(Slot::new());
        // Polled once, then leaked (`mem::forget`): its claim is never given back. By design
        // (see `TokenSlot`): later waiters are told `SlotInUse`, never made to wait for
        // ever; `try_take` still reads the answers.
        let mut w = Box::pin(slot.wait());
        assert!(poll_once(w.as_mut()).is_pending());
        core::mem::forget(w);
        let mut w2 = core::pin::pin!(slot.wait());
        assert_eq!(poll_once(w2.as_mut()), Poll::Ready(Err(TokenError::SlotInUse)));
        slot.answer(Ok(b"tok"));
        assert_eq!(slot.try_take().unwrap().unwrap().as_slice(), b"tok");
    }
}
