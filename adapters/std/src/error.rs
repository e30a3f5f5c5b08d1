//! Error types of the adapter.

use accessgate::{ConfigError, Instant, RecheckError};

/// Why an [`AccessGate`](crate::AccessGate) operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The core refused the configuration ([`accessgate::SessionConfig::validate`]).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A configured URL does not parse or is not `http`/`https`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`GateClientConfig::extra_ca_pem`](crate::GateClientConfig::extra_ca_pem) holds no
    /// usable certificate.
    #[error("extra CA certificate: {0}")]
    Certificate(String),
    /// The HTTP client could not be built (e.g. the OS root store is unreadable).
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// The OS RNG failed while drawing the jitter seed.
    #[error("OS random number generator: {0}")]
    Rng(getrandom::Error),
    /// [`AccessGate::spawn`](crate::AccessGate::spawn) was called outside a Tokio runtime.
    #[error("AccessGate::spawn must be called inside a Tokio runtime")]
    NoRuntime,
    /// The blocking wrapper could not start its runtime.
    #[error("cannot start the Tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A token is empty, longer than the session's capacity
    /// ([`accessgate::DEFAULT_TOKEN_CAPACITY`] bytes), or not usable in an HTTP header.
    #[error("token rejected: {0}")]
    InvalidToken(&'static str),
    /// The operation needs a signed-in session.
    #[error("not signed in")]
    NotSignedIn,
    /// A re-check was asked for too soon ([`AccessGate::recheck`](crate::AccessGate::recheck)).
    #[error("re-check rate-limited for another {retry_in:?}")]
    RateLimited {
        /// Earliest instant a re-check is accepted, on the gate's clock.
        retry_at: accessgate::Instant,
        /// How long from the refusal until then.
        retry_in: std::time::Duration,
    },
    /// Another [`AccessGate::sign_in`](crate::AccessGate::sign_in) or `restore` (from any
    /// clone) replaced the session this call started before the call could answer for it: the
    /// status it would have answered with is not this session's (R10). Read
    /// [`AccessGate::status`](crate::AccessGate::status) for the session that replaced it.
    #[error("another sign-in replaced this session")]
    Superseded,
    /// The gate was shut down (or its task ended); nothing more will happen.
    #[error("the access gate was shut down")]
    Closed,
}

/// Why [`AccessGate::access_token`](crate::AccessGate::access_token) has no token (R11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No session, or the session ended (logout, 401, rejected refresh) while the caller
    /// waited: show sign-in. A torn-down session's token is never handed out.
    #[error("not authenticated")]
    NotAuthenticated,
    /// The refresh failed transiently and the current token has expired; ask again later.
    #[error("token unavailable: refresh failed and the token has expired")]
    Unavailable,
    /// Too many callers are already waiting for a token
    /// ([`MAX_TOKEN_WAITERS`](crate::MAX_TOKEN_WAITERS), not counting callers that gave up);
    /// nothing was registered (R12).
    #[error("too many callers waiting for a token")]
    WaitersFull,
    /// The gate was shut down.
    #[error("the access gate was shut down")]
    Closed,
}

impl From<accessgate::SignInError> for GateError {
    fn from(e: accessgate::SignInError) -> Self {
        GateError::InvalidToken(match e {
            accessgate::SignInError::TokenTooLong => "longer than the session's token capacity",
            _ => "access token empty, or a token not printable ASCII",
        })
    }
}

impl From<accessgate::TokenRequestError> for TokenError {
    fn from(e: accessgate::TokenRequestError) -> Self {
        match e {
            accessgate::TokenRequestError::WaitersFull => TokenError::WaitersFull,
            _ => TokenError::NotAuthenticated,
        }
    }
}

impl From<accessgate::WaitError> for TokenError {
    fn from(e: accessgate::WaitError) -> Self {
        match e {
            accessgate::WaitError::NotAuthenticated => TokenError::NotAuthenticated,
            accessgate::WaitError::Unavailable => TokenError::Unavailable,
        }
    }
}

impl GateError {
    /// A refused re-check; `now` is when it was asked for (for `retry_in`).
    pub(crate) fn from_recheck(e: RecheckError, now: Instant) -> Self {
        match e {
            RecheckError::RateLimited { retry_at } => GateError::RateLimited {
                retry_at,
                retry_in: (retry_at - now).into(),
            },
            _ => GateError::NotSignedIn,
        }
    }
}
