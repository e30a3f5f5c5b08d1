//! What went wrong in one exchange, in the core's terms: a [`TransientClass`] (R4) and the
//! [`FailureDetail`] an operator needs (R13). Every step of an exchange (DNS, connect, TLS
//! handshake, request, response framing) maps its own errors here, so the detail says which
//! step failed and why.

use accessgate::{BodyError, TransientClass};

pub use accessgate::{FailureDetail, NetFailure, TlsFailure};

/// A failed exchange: its class (R4) and detail (R13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub class: TransientClass,
    pub detail: FailureDetail,
}

impl Failure {
    /// A token answer longer than the token capacity: not a usable token response, as the
    /// session judges one (R13; never truncated).
    pub const TOKEN_TOO_LONG: Failure = Failure {
        class: TransientClass::InvalidBody,
        detail: FailureDetail::Body(BodyError::TokenSchema),
    };

    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub fn tls(f: TlsFailure) -> Self {
        Failure {
            class: TransientClass::Tls,
            detail: FailureDetail::Tls(f),
        }
    }

    pub fn net(class: TransientClass, f: NetFailure) -> Self {
        Failure {
            class,
            detail: FailureDetail::Net(f),
        }
    }
}
