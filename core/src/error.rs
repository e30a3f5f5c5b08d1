//! One error type per operation that can be refused (smoltcp style): the type says which
//! refusals an operation has, so every driver maps them the same way from the type alone.
//!
//! Inputs that report what happened (`handle_timeout`, `handle_check_result`,
//! `handle_refresh_result`, `logout`) cannot fail. A refused sign-in changes nothing at all,
//! not even the time (its tokens are checked before anything runs). A refused token request or
//! re-check changes nothing of the session, but time still passes to its `now`: timers that
//! were due have fired, so drain the outputs as after any input.

use core::fmt;

use crate::time::{Duration, Instant};

/// The operation needs an active session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NotSignedIn;

impl fmt::Display for NotSignedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no active session")
    }
}
impl core::error::Error for NotSignedIn {}

/// Why [`Session::sign_in`](crate::Session::sign_in) refused the tokens. Nothing changed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SignInError {
    /// A token is longer than the session's capacity `T`; tokens are never truncated.
    TokenTooLong,
    /// The access token is empty, or a token has a byte outside visible ASCII
    /// (`0x21..=0x7e`), so it cannot be sent in a header (RFC 6750 `b64token` is a subset).
    TokenNotHeaderSafe,
}

impl fmt::Display for SignInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignInError::TokenTooLong => "token longer than the session's capacity",
            SignInError::TokenNotHeaderSafe => "token is empty or not visible ASCII (not usable in a header)",
        })
    }
}
impl core::error::Error for SignInError {}

/// Why [`Session::request_token`](crate::Session::request_token) gave no answer.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TokenRequestError {
    /// No session: the caller is not authenticated.
    NotSignedIn,
    /// The waiter table is full; nothing was registered (R12). Ask again later.
    WaitersFull,
}

impl fmt::Display for TokenRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenRequestError::NotSignedIn => "no active session",
            TokenRequestError::WaitersFull => "too many callers waiting for a token",
        })
    }
}
impl core::error::Error for TokenRequestError {}

/// Why a re-check ([`Session::recheck_now`](crate::Session::recheck_now),
/// [`Gate::recheck_now`](crate::Gate::recheck_now)) was refused.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecheckError {
    /// The re-check needs an active session.
    NotSignedIn,
    /// Asked for too soon after the last attempt started; accepted again from `retry_at`.
    RateLimited {
        /// Earliest instant a re-check is accepted.
        retry_at: Instant,
    },
}

impl fmt::Display for RecheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecheckError::NotSignedIn => f.write_str("no active session"),
            RecheckError::RateLimited { retry_at } => write!(
                f,
                "re-check rate-limited until {}",
                Duration::from_micros(retry_at.as_micros())
            ),
        }
    }
}
impl core::error::Error for RecheckError {}

/// Whether `token` can be sent as a bearer token: non-empty, visible ASCII only (no space,
/// no control byte, no CR/LF that could split a header).
pub const fn header_safe(token: &[u8]) -> bool {
    if token.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < token.len() {
        if token[i] < 0x21 || token[i] > 0x7e {
            return false;
        }
        i += 1;
    }
    true
}
