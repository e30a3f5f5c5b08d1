//! The app-facing side: what tasks of the application share with the driver.
//!
//! A [`Link`] bundles three fixed-capacity queues, all with `const` constructors so a link can
//! live in a `static` (or a `static_cell::StaticCell`):
//!
//! - a bounded **command** queue (capacity [`COMMAND_CAPACITY`]) for sign-in, restore,
//!   logout, re-check and token requests. [`Link::try_send`] never blocks: when the queue is
//!   full it returns [`TrySendError::Full`] with the command inside, nothing is lost (R12).
//!   [`Link::send`] waits for room instead. [`Link::try_sign_in`] / [`Link::try_restore`]
//!   copy tokens from slices straight into the queue. The driver reads a command in its
//!   slot and wipes the slot's tokens right after ("Token hygiene" in the crate docs).
//! - a status [`Watch`] (up to [`STATUS_RECEIVERS`] receivers) carrying the latest
//!   [`Snapshot`] (status + counters). A watch keeps only the newest value: a slow reader
//!   skips intermediate snapshots but never sees a stale one after a newer one.
//! - a bounded **event** [`Channel`] (capacity [`EVENT_CAPACITY`]) of [`TimedEvent`]s for
//!   timelines and JSON output. The driver never blocks on it: when it is full the event is
//!   dropped and counted in [`Snapshot::events_dropped`], so a reader that falls behind loses
//!   timeline lines, never gate progress. Nobody has to read it; a kiosk that only renders the
//!   status can ignore it (it then fills up and every later event is counted as dropped).
//!
//! `M` is the embassy-sync raw mutex: `CriticalSectionRawMutex` when app tasks and the driver
//! may run in different executors or interrupt priorities, `ThreadModeRawMutex` or
//! `NoopRawMutex` when everything runs in one thread-mode executor.

use accessgate::{
    Counters, Duration, Instant, RecheckError, SessionEvent, SignInError, Status, TokenRequestError,
    WaitError,
};
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::Poll;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::channel::Channel;
pub use embassy_sync::channel::TrySendError;
use embassy_sync::waitqueue::WakerRegistration;
use embassy_sync::watch::{Receiver, Watch};

use crate::wipe::wipe_token;

/// Capacity of a link's command channel.
pub const COMMAND_CAPACITY: usize = 4;
/// Capacity of a link's event channel.
pub const EVENT_CAPACITY: usize = 32;
/// How many [`Link::status_receiver`]s can exist at once.
pub const STATUS_RECEIVERS: usize = 4;

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
        }
    }
}

impl core::error::Error for TrySignInError {}

impl<const T: usize> Credentials<T> {
    const fn empty() -> Self {
        Credentials {
            access_token: Token::new(),
            refresh_token: Token::new(),
            expires_in: Duration::from_micros(0),
        }
    }

    fn parts(&self) -> (&[u8], &[u8], Duration) {
        (&self.access_token, &self.refresh_token, self.expires_in)
    }

    fn wipe(&mut self) {
        wipe_token(&mut self.access_token);
        wipe_token(&mut self.refresh_token);
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
        })
    }
}

impl core::error::Error for TokenError {}

/// Where the driver answers one [`Command::RequestToken`]. `static`-friendly; reuse it for
/// the next request once the answer was taken.
///
/// The driver copies the token from its session straight into the slot; taking the answer
/// ([`TokenSlot::wait`], [`TokenSlot::try_take`]) hands out a copy and wipes the slot's, so
/// the only copy left is the caller's (wipe it with [`wipe_token`](crate::wipe_token) once
/// the request that needed it is written).
pub struct TokenSlot<M: RawMutex, const T: usize = { accessgate::DEFAULT_TOKEN_CAPACITY }> {
    state: Mutex<M, RefCell<SlotState<T>>>,
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
        }
    }
    /// Waits for the answer (and takes it).
    pub async fn wait(&self) -> Result<Token<T>, TokenError> {
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
    /// needs it. `f` runs under the slot's lock: keep it short (a copy).
    pub async fn wait_with<R>(&self, f: impl FnOnce(Result<&[u8], TokenError>) -> R) -> R {
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
                Poll::Ready(r)
            })
        })
        .await
    }
    /// Takes the answer if it is there.
    pub fn try_take(&self) -> Option<Result<Token<T>, TokenError>> {
        self.state.lock(|s| s.borrow_mut().take())
    }
    /// Answers (replacing an answer not taken yet), copying the token in.
    pub(crate) fn answer(&self, answer: Result<&[u8], TokenError>) {
        self.state.lock(|s| {
            let mut s = s.borrow_mut();
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

/// The shared handles between the app and one [`Driver`](crate::Driver). See the module docs.
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

/// What kind of command a queue slot holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    SignIn,
    Restore,
    Logout,
    Recheck,
    RequestToken,
}

/// One slot of the command queue. Written field by field (the tokens with
/// `extend_from_slice`), never by moving a whole `Command` in: a move copies the value's
/// unused bytes too (a `Logout` is as large as a `SignIn`), and those come from wherever the
/// value was built, which may be stack memory that held a token a moment before.
struct Slot<'a, M: RawMutex, const T: usize> {
    kind: Kind,
    credentials: Credentials<T>,
    token_slot: Option<&'a TokenSlot<M, T>>,
}

/// The command queue: a bounded FIFO like an embassy-sync `Channel`, but the driver reads a
/// command in its slot and the slot's tokens are wiped right after (a `Channel` moves the
/// value out and leaves its bytes in the slot until a later command overwrites them).
struct Commands<'a, M: RawMutex, const T: usize> {
    slots: [Slot<'a, M, T>; COMMAND_CAPACITY],
    /// The oldest command's slot.
    head: usize,
    len: usize,
    receiver: WakerRegistration,
    senders: WakerRegistration,
}

impl<'a, M: RawMutex, const T: usize> Commands<'a, M, T> {
    /// Copies `command` into the next free slot; `false` when the queue is full.
    fn push(&mut self, command: &Command<'a, M, T>) -> bool {
        let (kind, tokens, token_slot) = match command {
            Command::SignIn(c) => (Kind::SignIn, Some(c.parts()), None),
            Command::Restore(c) => (Kind::Restore, Some(c.parts()), None),
            Command::Logout => (Kind::Logout, None, None),
            Command::Recheck => (Kind::Recheck, None, None),
            Command::RequestToken(t) => (Kind::RequestToken, None, Some(*t)),
        };
        self.push_parts(kind, tokens, token_slot)
    }

    /// Fills the next free slot field by field; `false` when the queue is full.
    fn push_parts(
        &mut self,
        kind: Kind,
        tokens: Option<(&[u8], &[u8], Duration)>,
        token_slot: Option<&'a TokenSlot<M, T>>,
    ) -> bool {
        if self.len == COMMAND_CAPACITY {
            return false;
        }
        let slot = &mut self.slots[(self.head + self.len) % COMMAND_CAPACITY];
        slot.kind = kind;
        slot.credentials.wipe();
        if let Some((access, refresh, expires_in)) = tokens {
            // Cannot fail: checked against `T` when the tokens were accepted.
            let _ = slot.credentials.access_token.extend_from_slice(access);
            let _ = slot.credentials.refresh_token.extend_from_slice(refresh);
            slot.credentials.expires_in = expires_in;
        }
        slot.token_slot = token_slot;
        self.len += 1;
        self.receiver.wake();
        true
    }
}

impl<'a, M: RawMutex, const T: usize> Link<'a, M, T> {
    /// An idle link, usable in a `static`.
    pub const fn new() -> Self {
        const fn slot<'a, M: RawMutex, const T: usize>() -> Slot<'a, M, T> {
            Slot {
                kind: Kind::Logout,
                credentials: Credentials::empty(),
                token_slot: None,
            }
        }
        Link {
            commands: Mutex::new(RefCell::new(Commands {
                slots: [slot(), slot(), slot(), slot()],
                head: 0,
                len: 0,
                receiver: WakerRegistration::new(),
                senders: WakerRegistration::new(),
            })),
            status: Watch::new(),
            events: Channel::new(),
        }
    }

    /// Queues a command without waiting. When the queue is full the command comes back in
    /// [`TrySendError::Full`] (R12). The queue keeps its own copy of the tokens; `command`'s
    /// are wiped when it is dropped here.
    pub fn try_send(&self, command: Command<'a, M, T>) -> Result<(), TrySendError<Command<'a, M, T>>> {
        if self.commands.lock(|c| c.borrow_mut().push(&command)) {
            Ok(())
        } else {
            Err(TrySendError::Full(command))
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
        kind: Kind,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<(), TrySignInError> {
        check_token::<T>(access_token)?;
        check_token::<T>(refresh_token)?;
        let tokens = Some((access_token, refresh_token, expires_in));
        if self
            .commands
            .lock(|c| c.borrow_mut().push_parts(kind, tokens, None))
        {
            Ok(())
        } else {
            Err(TrySignInError::Full)
        }
    }

    /// Queues a command, waiting for room.
    pub async fn send(&self, command: Command<'a, M, T>) {
        poll_fn(|cx| {
            self.commands.lock(|c| {
                let mut c = c.borrow_mut();
                if c.push(&command) {
                    Poll::Ready(())
                } else {
                    c.senders.register(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
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
    /// when the queue is empty. `f` runs under the link's lock: bounded work only (the
    /// driver feeds the command to its session).
    pub(crate) fn take_command<R>(&self, f: impl FnOnce(Queued<'_, 'a, M, T>) -> R) -> Option<R> {
        self.commands.lock(|c| {
            let mut c = c.borrow_mut();
            if c.len == 0 {
                return None;
            }
            let head = c.head;
            let slot = &mut c.slots[head];
            let queued = match slot.kind {
                Kind::SignIn => Queued::SignIn(&slot.credentials),
                Kind::Restore => Queued::Restore(&slot.credentials),
                Kind::Logout => Queued::Logout,
                Kind::Recheck => Queued::Recheck,
                Kind::RequestToken => match slot.token_slot {
                    Some(t) => Queued::RequestToken(t),
                    None => Queued::Logout, // not reached: set with the kind
                },
            };
            let r = f(queued);
            slot.credentials.wipe();
            slot.token_slot = None;
            c.head = (head + 1) % COMMAND_CAPACITY;
            c.len -= 1;
            c.senders.wake();
            Some(r)
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
