//! Watching a check to its end, and a readable timeline. The JSON forms are the core's
//! [`accessgate::write_event_json`] / [`accessgate::write_final_json`], shared with the
//! desktop CLI so both print the same bytes.

use core::fmt::Write;

use accessgate::{access_name, Event, FailureDetail, Generation, Instant, SessionEvent, Verdict};
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::RawMutex;

use crate::link::{Link, Snapshot, TimedEvent};

/// Why [`until_verdict`] could not watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct NoStatusReceiver;

impl core::fmt::Display for NoStatusReceiver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("all status receivers of the link are taken")
    }
}

impl core::error::Error for NoStatusReceiver {}

/// Waits until the session reaches a verdict — granted, denied, failed closed (at the R5
/// deadline at the latest) or unauthorized — handing every event to `on_event` as it
/// arrives, and the events queued before the verdict too. Meant for a one-shot check on a
/// fresh driver: send [`Command::SignIn`](crate::Command::SignIn), then await this.
///
/// Takes one of the link's status receivers for as long as it runs.
pub async fn until_verdict<M: RawMutex, const T: usize>(
    link: &Link<'_, M, T>,
    mut on_event: impl FnMut(&TimedEvent),
) -> Result<(Verdict, Snapshot), NoStatusReceiver> {
    let mut status = link.status_receiver().ok_or(NoStatusReceiver)?;
    loop {
        match select(link.next_event(), status.changed()).await {
            Either::First(event) => on_event(&event),
            Either::Second(snapshot) => {
                if let Some(verdict) = Verdict::of(&snapshot.status) {
                    // The driver queues events before it publishes the snapshot they led to.
                    while let Some(event) = link.try_next_event() {
                        on_event(&event);
                    }
                    return Ok((verdict, snapshot));
                }
            }
        }
    }
}

/// [`until_verdict`] for a driver with a refresh lane: waits until the session has a verdict
/// *and* `refreshes` token refreshes have ended (R11) — refreshed and the new generation's
/// first check settled (R3), failed, or rejected — handing every event to `on_event` in
/// order. A session that ends (a rejected refresh token, a 401) ends the wait at once, with
/// its verdict. `refreshes == 0` is [`until_verdict`].
///
/// Takes one of the link's status receivers for as long as it runs. Bound it with
/// `embassy_time::with_timeout`: a refresh that is never due never ends.
pub async fn until_refreshes<M: RawMutex, const T: usize>(
    link: &Link<'_, M, T>,
    refreshes: u16,
    mut on_event: impl FnMut(&TimedEvent),
) -> Result<(Verdict, Snapshot), NoStatusReceiver> {
    let mut status = link.status_receiver().ok_or(NoStatusReceiver)?;
    let mut tally = RefreshTally::default();
    let mut see = |e: &TimedEvent, tally: &mut RefreshTally| {
        on_event(e);
        tally.see(&e.event);
    };
    loop {
        if let Either::First(e) = select(link.next_event(), status.changed()).await {
            see(&e, &mut tally);
        }
        // The driver queues an input's events, then publishes its snapshot, without yielding
        // in between: after draining the queue, the latest snapshot is at least as new as
        // every event seen.
        while let Some(e) = link.try_next_event() {
            see(&e, &mut tally);
        }
        let snapshot = link.snapshot().unwrap_or_default();
        if let Some(verdict) = Verdict::of(&snapshot.status) {
            let session_over = !snapshot.status.signed_in;
            if session_over || (tally.ended >= refreshes && tally.awaiting.is_none()) {
                return Ok((verdict, snapshot));
            }
        }
    }
}

/// How many refreshes have ended, as [`until_refreshes`] counts them.
#[derive(Default)]
struct RefreshTally {
    ended: u16,
    /// A refresh that succeeded ends when its new generation's first check settles (R3).
    awaiting: Option<Generation>,
}

impl RefreshTally {
    fn see(&mut self, event: &SessionEvent) {
        match *event {
            SessionEvent::Refreshed { generation, .. } => self.awaiting = Some(generation),
            SessionEvent::RefreshFailed { .. } | SessionEvent::RefreshRejected => {
                self.ended = self.ended.saturating_add(1);
            }
            SessionEvent::Gate(Event::FirstCheckSettled { generation })
                if self.awaiting == Some(generation) =>
            {
                self.awaiting = None;
                self.ended = self.ended.saturating_add(1);
            }
            _ => {}
        }
    }
}

struct Since(Instant, Instant);

/// A failure's detail in parentheses after its class (R13), nothing when there is none.
struct Detail(FailureDetail);

impl core::fmt::Display for Detail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            FailureDetail::None => Ok(()),
            d => write!(f, " ({d})"),
        }
    }
}

impl core::fmt::Display for Since {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ms = (self.0 - self.1).as_millis();
        write!(f, "+{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// Writes one event as a readable line (no newline), times relative to `origin`.
///
/// ```
/// use accessgate::{Event, Generation, Instant, SessionEvent};
/// use accessgate_embassy::{write_event_text, TimedEvent};
/// let e = TimedEvent::new(
///     Instant::from_millis(1_250),
///     SessionEvent::Gate(Event::CheckStarted { generation: Generation(1), attempt: 2 }),
/// );
/// let mut s = String::new();
/// write_event_text(&mut s, &e, Instant::ZERO).unwrap();
/// assert_eq!(s, "+1.250s  check #2 started (generation 1)");
/// ```
///
/// A transient failure says what exactly went wrong (R13):
///
/// ```
/// use accessgate::{FailureDetail, Instant, SessionEvent, TransientClass};
/// use accessgate_embassy::{write_event_text, TimedEvent};
/// let e = TimedEvent::new(
///     Instant::from_millis(500),
///     SessionEvent::RefreshFailed {
///         class: TransientClass::ServerError,
///         detail: FailureDetail::Status(503),
///         next_attempt: Instant::from_millis(1_500),
///     },
/// );
/// let mut s = String::new();
/// write_event_text(&mut s, &e, Instant::ZERO).unwrap();
/// assert_eq!(s, "+0.500s  token refresh failed: server_error (HTTP 503); retry at +1.500s");
/// ```
pub fn write_event_text<W: Write>(w: &mut W, e: &TimedEvent, origin: Instant) -> core::fmt::Result {
    write!(w, "{}  ", Since(e.at, origin))?;
    let at = |t: Option<Instant>| t.map(|t| Since(t, origin));
    match e.event {
        SessionEvent::Gate(Event::CheckStarted { generation, attempt }) => {
            write!(w, "check #{attempt} started (generation {})", generation.0)
        }
        SessionEvent::Gate(Event::CheckFailed {
            attempt,
            class,
            detail,
            next_attempt,
            deadline,
            ..
        }) => {
            write!(w, "check #{attempt} failed: {}{}", class.name(), Detail(detail))?;
            match at(next_attempt) {
                Some(t) => write!(w, "; next attempt at {t}")?,
                None => w.write_str("; no retry planned")?,
            }
            match at(deadline) {
                Some(t) => write!(w, "; fails closed at {t}"),
                None => Ok(()),
            }
        }
        SessionEvent::Gate(Event::AccessChanged { from, to, cause }) => write!(
            w,
            "access {} -> {} ({})",
            access_name(from),
            access_name(to),
            cause.name()
        ),
        SessionEvent::Gate(Event::StaleResult { generation, attempt }) => write!(
            w,
            "stale result dropped (generation {}, check #{attempt})",
            generation.0
        ),
        SessionEvent::Gate(Event::SessionEnded { cause }) => write!(w, "session ended ({})", cause.name()),
        SessionEvent::Gate(Event::FirstCheckSettled { generation }) => {
            write!(w, "first check of generation {} settled", generation.0)
        }
        SessionEvent::RefreshStarted { id, early } => {
            write!(
                w,
                "token refresh {} started{}",
                id.0,
                if early { " early (403)" } else { "" }
            )
        }
        SessionEvent::Refreshed { generation, .. } => {
            write!(w, "token refreshed (generation {})", generation.0)
        }
        SessionEvent::RefreshFailed {
            class,
            detail,
            next_attempt,
        } => write!(
            w,
            "token refresh failed: {}{}; retry at {}",
            class.name(),
            Detail(detail),
            Since(next_attempt, origin)
        ),
        SessionEvent::RefreshRejected => w.write_str("refresh token rejected"),
        SessionEvent::StaleRefresh { id } => write!(w, "stale refresh {} dropped", id.0),
    }
}

/// Writes the closing line of a check (no newline).
///
/// ```
/// use accessgate::{Access, Cause, Instant, Status, Verdict};
/// use accessgate_embassy::{write_verdict_text, Snapshot};
/// let mut snap = Snapshot::default();
/// snap.at = Instant::from_millis(20);
/// snap.status = Status { access: Access::Granted, cause: Some(Cause::ServerGranted), signed_in: true, ..Status::default() };
/// let mut s = String::new();
/// write_verdict_text(&mut s, Verdict::Granted, &snap, Instant::ZERO).unwrap();
/// assert_eq!(s, "+0.020s  verdict: granted (exit 0); 0 attempts, 0 transient failures");
/// ```
pub fn write_verdict_text<W: Write>(
    w: &mut W,
    verdict: Verdict,
    snapshot: &Snapshot,
    origin: Instant,
) -> core::fmt::Result {
    write!(
        w,
        "{}  verdict: {} (exit {}); {} attempts, {} transient failures",
        Since(snapshot.at, origin),
        verdict.name(),
        verdict.exit_code(),
        snapshot.counters.attempts,
        snapshot.counters.transient_total()
    )?;
    if snapshot.events_dropped > 0 {
        write!(w, "; {} events dropped", snapshot.events_dropped)?;
    }
    Ok(())
}
