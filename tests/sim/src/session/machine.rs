//! The session machine as the driver sees it: the public API of [`accessgate::Session`],
//! behind a trait so that tests can wrap the real session in a deliberately wrong one and prove
//! that the simulator catches it.

use accessgate::{
    Action, CheckOutcome, Counters, Duration, Generation, Instant, RecheckError, RefreshId, RefreshOutcome,
    Session, SessionConfig, SessionEvent, SignInError, Status, TokenHandle, TokenReply, TokenRequestError,
    WaitError, WaiterId,
};

/// Every refusal of a session operation, in one type so the model can compare replies. The core
/// has one error type per operation ([`SignInError`], [`TokenRequestError`], [`RecheckError`]);
/// reports of what happened (check and refresh results, timeouts, logout) cannot fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// [`SignInError::TokenTooLong`].
    TokenTooLong,
    /// [`SignInError::TokenNotHeaderSafe`].
    TokenNotHeaderSafe,
    /// [`TokenRequestError::WaitersFull`].
    WaitersFull,
    /// [`TokenRequestError::NotSignedIn`] / [`RecheckError::NotSignedIn`].
    NotSignedIn,
    /// [`RecheckError::RateLimited`].
    RateLimited {
        /// Earliest instant a re-check is accepted.
        retry_at: Instant,
    },
}

impl From<SignInError> for SessionError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::TokenTooLong => SessionError::TokenTooLong,
            _ => SessionError::TokenNotHeaderSafe,
        }
    }
}
impl From<TokenRequestError> for SessionError {
    fn from(e: TokenRequestError) -> Self {
        match e {
            TokenRequestError::WaitersFull => SessionError::WaitersFull,
            _ => SessionError::NotSignedIn,
        }
    }
}
impl From<RecheckError> for SessionError {
    fn from(e: RecheckError) -> Self {
        match e {
            RecheckError::RateLimited { retry_at } => SessionError::RateLimited { retry_at },
            _ => SessionError::NotSignedIn,
        }
    }
}

/// Everything the driver calls on a session. [`Session<N, W, T>`] implements it by forwarding
/// to its inherent methods; a test wrapper implements it by forwarding with a twist.
///
/// See [`accessgate::Session`] for what each method means.
pub trait SessionMachine {
    /// The waiter table's capacity (`W`).
    const WAITERS: usize;
    /// The token capacity in bytes (`T`).
    const TOKEN_CAPACITY: usize;
    /// A short name for traces, such as `Session<3, 2, 16>`.
    fn name() -> String;
    /// A signed-out machine (the configuration is valid).
    fn create(config: SessionConfig, seed: u64) -> Self;

    /// [`Session::sign_in`].
    fn sign_in(
        &mut self,
        now: Instant,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Generation, SessionError>;
    /// [`Session::restore`].
    fn restore(
        &mut self,
        now: Instant,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Generation, SessionError>;
    /// [`Session::logout`].
    fn logout(&mut self, now: Instant) -> Result<(), SessionError>;
    /// [`Session::request_token`].
    fn request_token(&mut self, now: Instant) -> Result<TokenReply, SessionError>;
    /// [`Session::handle_check_result`].
    fn handle_check_result(
        &mut self,
        now: Instant,
        generation: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) -> Result<(), SessionError>;
    /// [`Session::handle_refresh_result`].
    fn handle_refresh_result(
        &mut self,
        now: Instant,
        id: RefreshId,
        outcome: RefreshOutcome<'_>,
    ) -> Result<(), SessionError>;
    /// [`Session::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError>;
    /// [`Session::recheck_now`].
    fn recheck_now(&mut self, now: Instant) -> Result<(), SessionError>;

    /// [`Session::poll_action`].
    fn poll_action(&mut self) -> Option<Action>;
    /// [`Session::poll_waiter`].
    fn poll_waiter(&mut self) -> Option<(WaiterId, Result<TokenHandle, WaitError>)>;
    /// [`Session::poll_event`].
    fn poll_event(&mut self) -> Option<SessionEvent>;
    /// [`Session::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;

    /// [`Session::access_token`].
    fn access_token(&self, handle: TokenHandle) -> Option<&[u8]>;
    /// [`Session::refresh_token`].
    fn refresh_token(&self) -> Option<&[u8]>;
    /// [`Session::current_token`].
    fn current_token(&self) -> Option<TokenHandle>;
    /// [`Session::expires_at`].
    fn expires_at(&self) -> Option<Instant>;
    /// [`Session::refresh_in_flight`].
    fn refresh_in_flight(&self) -> bool;
    /// [`Session::waiting`].
    fn waiting(&self) -> usize;
    /// [`Session::status`].
    fn status(&self) -> Status;
    /// [`Session::counters`].
    fn counters(&self) -> Counters;
}

impl<const N: usize, const W: usize, const T: usize> SessionMachine for Session<N, W, T> {
    const WAITERS: usize = W;
    const TOKEN_CAPACITY: usize = T;
    fn name() -> String {
        format!("Session<{N}, {W}, {T}>")
    }
    fn create(config: SessionConfig, seed: u64) -> Self {
        Session::new(config, seed).expect("profiles give valid configurations")
    }
    fn sign_in(
        &mut self,
        now: Instant,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Generation, SessionError> {
        Ok(Session::sign_in(
            self,
            now,
            access_token,
            refresh_token,
            expires_in,
        )?)
    }
    fn restore(
        &mut self,
        now: Instant,
        access_token: &[u8],
        refresh_token: &[u8],
        expires_in: Duration,
    ) -> Result<Generation, SessionError> {
        Ok(Session::restore(
            self,
            now,
            access_token,
            refresh_token,
            expires_in,
        )?)
    }
    fn logout(&mut self, now: Instant) -> Result<(), SessionError> {
        Session::logout(self, now);
        Ok(())
    }
    fn request_token(&mut self, now: Instant) -> Result<TokenReply, SessionError> {
        Ok(Session::request_token(self, now)?)
    }
    fn handle_check_result(
        &mut self,
        now: Instant,
        generation: Generation,
        attempt: u32,
        outcome: CheckOutcome,
    ) -> Result<(), SessionError> {
        Session::handle_check_result(self, now, generation, attempt, outcome);
        Ok(())
    }
    fn handle_refresh_result(
        &mut self,
        now: Instant,
        id: RefreshId,
        outcome: RefreshOutcome<'_>,
    ) -> Result<(), SessionError> {
        Session::handle_refresh_result(self, now, id, outcome);
        Ok(())
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        Session::handle_timeout(self, now);
        Ok(())
    }
    fn recheck_now(&mut self, now: Instant) -> Result<(), SessionError> {
        Ok(Session::recheck_now(self, now)?)
    }
    fn poll_action(&mut self) -> Option<Action> {
        Session::poll_action(self)
    }
    fn poll_waiter(&mut self) -> Option<(WaiterId, Result<TokenHandle, WaitError>)> {
        Session::poll_waiter(self)
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        Session::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Session::poll_timeout(self)
    }
    fn access_token(&self, handle: TokenHandle) -> Option<&[u8]> {
        Session::access_token(self, handle)
    }
    fn refresh_token(&self) -> Option<&[u8]> {
        Session::refresh_token(self)
    }
    fn current_token(&self) -> Option<TokenHandle> {
        Session::current_token(self)
    }
    fn expires_at(&self) -> Option<Instant> {
        Session::expires_at(self)
    }
    fn refresh_in_flight(&self) -> bool {
        Session::refresh_in_flight(self)
    }
    fn waiting(&self) -> usize {
        Session::waiting(self)
    }
    fn status(&self) -> Status {
        Session::status(self)
    }
    fn counters(&self) -> Counters {
        *Session::counters(self)
    }
}
