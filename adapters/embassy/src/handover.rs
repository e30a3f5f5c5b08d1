//! Places a token passes through between the session loop and the lanes, wiped as soon as
//! the token moved on (see "Token hygiene" in the crate docs): no token travels by value
//! through a queue or a channel, whose slots would keep the bytes of a value moved out of them.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::signal::Signal;

use crate::link::Token;
use crate::wipe::wipe_token;

/// The tokens of a refresh answer between the refresh lane, which copies them out of its
/// body buffer, and the session, which takes them; wiped as soon as it did.
pub(crate) struct NewTokens<const T: usize> {
    access: Token<T>,
    refresh: Token<T>,
    has_refresh: bool,
}

impl<const T: usize> NewTokens<T> {
    pub(crate) const fn new() -> Self {
        NewTokens {
            access: Token::new(),
            refresh: Token::new(),
            has_refresh: false,
        }
    }

    /// Copies the tokens in; `Err` (and nothing kept) when one is longer than `T`.
    pub(crate) fn store(&mut self, access: &[u8], refresh: Option<&[u8]>) -> Result<(), ()> {
        self.wipe();
        let stored = self.access.extend_from_slice(access).is_ok()
            && refresh.is_none_or(|r| self.refresh.extend_from_slice(r).is_ok());
        if !stored {
            self.wipe();
            return Err(());
        }
        self.has_refresh = refresh.is_some();
        Ok(())
    }

    /// The access token and the refresh token (if the answer had one).
    pub(crate) fn tokens(&self) -> (&[u8], Option<&[u8]>) {
        (&self.access, self.has_refresh.then_some(&self.refresh[..]))
    }

    pub(crate) fn wipe(&mut self) {
        wipe_token(&mut self.access);
        wipe_token(&mut self.refresh);
        self.has_refresh = false;
    }
}

impl<const T: usize> Drop for NewTokens<T> {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// A lane's next request and the token it sends, in one place: the session loop copies the
/// token in straight from the session, the lane copies it into its request buffer and it is
/// wiped here at once (and at a cancel, or when the driver is dropped). No token travels
/// through a queue, whose slots would keep the bytes of a value moved out of them.
pub(crate) struct Inbox<J, const T: usize> {
    next: RefCell<Next<J, T>>,
    /// Wakes the lane: a new request or a cancel.
    pub(crate) wake: Signal<NoopRawMutex, ()>,
}

struct Next<J, const T: usize> {
    /// `None`: nothing to run (cancelled, or taken).
    job: Option<J>,
    token: Token<T>,
}

impl<J: Copy, const T: usize> Inbox<J, T> {
    pub(crate) const fn new() -> Self {
        Inbox {
            next: RefCell::new(Next {
                job: None,
                token: Token::new(),
            }),
            wake: Signal::new(),
        }
    }

    /// Hands `job` to the lane with a copy of `token`, replacing one it has not taken yet (a
    /// newer request also stops the running one). `false` if the token is longer than `T`
    /// (the session's never are).
    pub(crate) fn post(&self, job: J, token: &[u8]) -> bool {
        let mut next = self.next.borrow_mut();
        wipe_token(&mut next.token);
        let fits = next.token.extend_from_slice(token).is_ok();
        next.job = fits.then_some(job);
        if !fits {
            wipe_token(&mut next.token);
        }
        drop(next);
        self.wake.signal(());
        fits
    }

    /// Stops the running request, and drops (wipes) one not taken yet.
    pub(crate) fn cancel(&self) {
        let mut next = self.next.borrow_mut();
        wipe_token(&mut next.token);
        next.job = None;
        drop(next);
        self.wake.signal(());
    }

    /// The posted request, if any: `prepare` copies its token where the request needs it,
    /// then the inbox's copy is wiped.
    pub(crate) fn take<R>(&self, prepare: impl FnOnce(J, &[u8]) -> R) -> Option<(J, R)> {
        let mut next = self.next.borrow_mut();
        let job = next.job.take()?;
        let prepared = prepare(job, &next.token);
        wipe_token(&mut next.token);
        Some((job, prepared))
    }
}

impl<J, const T: usize> Drop for Inbox<J, T> {
    fn drop(&mut self) {
        wipe_token(&mut self.next.get_mut().token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wipe::in_memory;

    const AT: &[u8] = b"at_handover_secret_00000000000001";
    const RT: &[u8] = b"rt_handover_secret_00000000000001";

    #[test]
    fn new_tokens_keep_both_tokens_whole_or_nothing() {
        let mut t = NewTokens::<40>::new();
        t.store(AT, Some(RT)).unwrap();
        assert_eq!(t.tokens(), (AT, Some(RT)));
        // No refresh token in the answer: none handed on (the session keeps its own).
        t.store(b"at_2", None).unwrap();
        assert_eq!(t.tokens(), (&b"at_2"[..], None));
        // Longer than `T`, either one: refused, and nothing of the answer is kept.
        let long = [b'a'; 41];
        assert_eq!(t.store(&long, Some(RT)), Err(()));
        assert_eq!(t.tokens(), (&b""[..], None));
        assert_eq!(t.store(AT, Some(&long)), Err(()));
        assert_eq!(t.tokens(), (&b""[..], None));
    }

    #[test]
    fn an_inbox_hands_each_job_and_token_on_once_and_refuses_what_does_not_fit() {
        let inbox = Inbox::<u8, 40>::new();
        assert!(inbox.post(1, AT));
        assert_eq!(
            inbox.take(|job, token| (job, token.to_vec())),
            Some((1, (1, AT.to_vec())))
        );
        assert_eq!(inbox.take(|_, token| token.to_vec()), None);
        // Too long for `T`: not posted (never cut), and no job waits.
        assert!(!inbox.post(2, &[b'a'; 41]));
        assert_eq!(inbox.take(|_, token| token.to_vec()), None);
        // A cancelled job is not taken.
        assert!(inbox.post(3, AT));
        inbox.cancel();
        assert_eq!(inbox.take(|_, token| token.to_vec()), None);
    }

    #[test]
    fn dropped_or_cancelled_handover_places_leave_no_token_in_memory() {
        // Token hygiene (crate docs): a driver dropped while a refresh answer's tokens wait in
        // `NewTokens`, or while a job's token waits in an inbox, leaves none of them behind;
        // nor does a cancelled job or a wiped answer.
        let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
        let mut bytes = vec![0u8; size_of::<NewTokens<40>>()];

        let tokens = Box::new(NewTokens::<40>::new());
        let addr = &*tokens as *const NewTokens<40> as usize;
        let mut tokens = tokens;
        tokens.store(AT, Some(RT)).unwrap();
        assert!(
            in_memory(&mut mem, addr, &mut bytes, RT),
            "the dump sees the tokens"
        );
        tokens.wipe();
        assert!(!in_memory(&mut mem, addr, &mut bytes, AT) && !in_memory(&mut mem, addr, &mut bytes, RT));
        tokens.store(AT, Some(RT)).unwrap();
        drop(tokens);
        assert!(
            !in_memory(&mut mem, addr, &mut bytes, RT),
            "refresh token left by dropped NewTokens"
        );

        let mut bytes = vec![0u8; size_of::<Inbox<u8, 40>>()];
        let inbox = Box::new(Inbox::<u8, 40>::new());
        let addr = &*inbox as *const Inbox<u8, 40> as usize;
        assert!(inbox.post(1, AT));
        assert!(
            in_memory(&mut mem, addr, &mut bytes, AT),
            "the dump sees the token"
        );
        inbox.cancel();
        assert!(
            !in_memory(&mut mem, addr, &mut bytes, AT),
            "token left by a cancelled job"
        );
        assert!(inbox.post(1, AT));
        drop(inbox);
        assert!(
            !in_memory(&mut mem, addr, &mut bytes, AT),
            "token left by a dropped inbox"
        );
    }
}
