//! `Debug` for [`Session`] that never prints a token: the token buffers show as their
//! lengths. A derived `Debug` printed them as byte lists, so an app that formats its session
//! (or a struct holding it) with `{:?}` would log its credentials (found through the std
//! adapter's `AccessGate`, whose `Debug` showed them).

use core::fmt;

use super::Session;

/// A token buffer as `<N bytes>`.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl<const N: usize, const W: usize, const T: usize> fmt::Debug for Session<N, W, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("gate", &self.gate)
            .field("expires_at", &self.expires_at)
            .field("last_refresh_start", &self.last_refresh_start)
            .field("refresh", &self.refresh)
            .field("early_refresh_for", &self.early_refresh_for)
            .field("waiter_generation", &self.waiter_generation)
            .field("next_refresh_id", &self.next_refresh_id)
            .field("failures_valid", &self.failures_valid)
            .field("failures_expired", &self.failures_expired)
            .field("refresh_streak", &self.refresh_streak)
            .field("next_waiter", &self.next_waiter)
            .field("refresh_pending", &self.refresh_pending)
            .field("early_refresh_used", &self.early_refresh_used)
            .field("io", &self.io)
            .field("config", &self.config)
            .field("waiters", &self.waiters)
            .field("resolved", &self.resolved)
            .field("access_token", &Redacted(self.access_token.len()))
            .field("refresh_token", &Redacted(self.refresh_token.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;

    use crate::{Duration, Instant, Session, SessionConfig};

    #[test]
    fn debug_shows_token_lengths_never_tokens() {
        let mut s: Session = Session::new(SessionConfig::DEFAULT, 1).unwrap();
        s.sign_in(
            Instant::ZERO,
            b"at-SECRET",
            b"rt-HIDDEN!",
            Duration::from_secs(60),
        )
        .unwrap();
        let text = format!("{s:?} {s:#?}");
        for secret in ["at-SECRET", "rt-HIDDEN!"] {
            assert!(!text.contains(secret), "{text}");
            // Nor as the byte list a derived Debug printed.
            let bytes = format!("{:?}", secret.as_bytes());
            let list = bytes.trim_start_matches('[').trim_end_matches(']');
            assert!(!text.contains(list), "{text}");
        }
        assert!(text.contains("access_token: <9 bytes>"), "{text}");
        assert!(text.contains("refresh_token: <10 bytes>"), "{text}");
        assert!(text.contains("expires_at"), "the rest is still shown: {text}");
    }
}
