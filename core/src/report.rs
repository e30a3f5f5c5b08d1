//! Rendering shared by every front end: the `check` command's verdict and exit code, and
//! one-line JSON for events, written into any `core::fmt::Write` (no allocation), so the
//! desktop CLI and the embassy build print byte-identical output.

use core::fmt::Write;

use crate::gate::{Access, Cause, Event, Status};
use crate::session::SessionEvent;
use crate::time::Instant;

/// The end of a one-shot check (the `check` command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Verdict {
    /// The server granted access (directly or after retries).
    Granted,
    /// The server denied access (R2).
    Denied,
    /// No definitive answer within the budget (R5).
    FailedClosed,
    /// The server rejected the token (R8).
    Unauthorized,
}

impl Verdict {
    /// The verdict a status has reached, or `None` while the check is still undecided.
    ///
    /// ```
    /// use accessgate::{Access, Cause, Status, Verdict};
    /// let s = Status { access: Access::Denied, cause: Some(Cause::FailedClosed), ..Status::default() };
    /// assert_eq!(Verdict::of(&s), Some(Verdict::FailedClosed));
    /// assert_eq!(Verdict::FailedClosed.exit_code(), 2);
    /// ```
    pub fn of(status: &Status) -> Option<Verdict> {
        match (status.access, status.cause) {
            (Access::Granted, _) => Some(Verdict::Granted),
            (Access::Denied, Some(Cause::FailedClosed)) => Some(Verdict::FailedClosed),
            (Access::Denied, _) => Some(Verdict::Denied),
            (Access::Unknown, Some(Cause::Unauthorized)) if !status.signed_in => Some(Verdict::Unauthorized),
            _ => None,
        }
    }
    /// Process exit code: 0 granted, 1 denied, 2 failed closed, 3 unauthorized.
    pub const fn exit_code(self) -> u8 {
        match self {
            Verdict::Granted => 0,
            Verdict::Denied => 1,
            Verdict::FailedClosed => 2,
            Verdict::Unauthorized => 3,
        }
    }
    /// A snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Granted => "granted",
            Verdict::Denied => "denied",
            Verdict::FailedClosed => "failed_closed",
            Verdict::Unauthorized => "unauthorized",
        }
    }
}

/// A snake_case name for an access state.
pub const fn access_name(a: Access) -> &'static str {
    match a {
        Access::Unknown => "unknown",
        Access::Granted => "granted",
        Access::Denied => "denied",
    }
}

fn ms_since(t: Instant, origin: Instant) -> u64 {
    (t - origin).as_millis()
}

/// Writes one event as a single-line JSON object (no trailing newline). `now` is when it was
/// observed; times are milliseconds since `origin`.
///
/// ```
/// use accessgate::{write_event_json, Access, Cause, Event, Instant, SessionEvent};
/// let mut s = String::new();
/// let e = SessionEvent::Gate(Event::AccessChanged { from: Access::Unknown, to: Access::Granted, cause: Cause::ServerGranted });
/// write_event_json(&mut s, &e, Instant::from_millis(1500), Instant::ZERO).unwrap();
/// assert_eq!(s, r#"{"t_ms":1500,"event":"access_changed","from":"unknown","to":"granted","cause":"server_granted"}"#);
/// ```
pub fn write_event_json<W: Write>(
    w: &mut W,
    e: &SessionEvent,
    now: Instant,
    origin: Instant,
) -> core::fmt::Result {
    write!(w, "{{\"t_ms\":{},", ms_since(now, origin))?;
    let opt = |w: &mut W, key: &str, t: Option<Instant>| match t {
        Some(t) => write!(w, ",\"{key}\":{}", ms_since(t, origin)),
        None => write!(w, ",\"{key}\":null"),
    };
    match *e {
        SessionEvent::Gate(Event::CheckStarted { generation, attempt }) => write!(
            w,
            "\"event\":\"check_started\",\"generation\":{},\"attempt\":{attempt}",
            generation.0
        )?,
        SessionEvent::Gate(Event::CheckFailed {
            generation,
            attempt,
            class,
            detail,
            next_attempt,
            deadline,
        }) => {
            write!(
                w,
                "\"event\":\"check_failed\",\"generation\":{},\"attempt\":{attempt},\"class\":\"{}\",\"detail\":\"{detail}\"",
                generation.0,
                class.name()
            )?;
            opt(w, "next_attempt_ms", next_attempt)?;
            opt(w, "deadline_ms", deadline)?;
        }
        SessionEvent::Gate(Event::AccessChanged { from, to, cause }) => write!(
            w,
            "\"event\":\"access_changed\",\"from\":\"{}\",\"to\":\"{}\",\"cause\":\"{}\"",
            access_name(from),
            access_name(to),
            cause.name()
        )?,
        SessionEvent::Gate(Event::StaleResult { generation, attempt }) => write!(
            w,
            "\"event\":\"stale_result\",\"generation\":{},\"attempt\":{attempt}",
            generation.0
        )?,
        SessionEvent::Gate(Event::FirstCheckSettled { generation }) => write!(
            w,
            "\"event\":\"first_check_settled\",\"generation\":{}",
            generation.0
        )?,
        SessionEvent::Gate(Event::SessionEnded { cause }) => {
            write!(w, "\"event\":\"session_ended\",\"cause\":\"{}\"", cause.name())?
        }
        SessionEvent::RefreshStarted { id, early } => write!(
            w,
            "\"event\":\"refresh_started\",\"id\":{},\"early\":{early}",
            id.0
        )?,
        SessionEvent::Refreshed {
            generation,
            expires_at,
        } => {
            write!(w, "\"event\":\"refreshed\",\"generation\":{}", generation.0)?;
            opt(w, "expires_at_ms", Some(expires_at))?;
        }
        SessionEvent::RefreshFailed {
            class,
            detail,
            next_attempt,
        } => {
            write!(
                w,
                "\"event\":\"refresh_failed\",\"class\":\"{}\",\"detail\":\"{detail}\"",
                class.name()
            )?;
            opt(w, "next_attempt_ms", Some(next_attempt))?;
        }
        SessionEvent::RefreshRejected => w.write_str("\"event\":\"refresh_rejected\"")?,
        SessionEvent::StaleRefresh { id } => write!(w, "\"event\":\"stale_refresh\",\"id\":{}", id.0)?,
    }
    w.write_char('}')
}

/// Writes the final status line of a `check` run as single-line JSON (no trailing newline).
///
/// ```
/// use accessgate::{write_final_json, Access, Cause, Counters, Status, Instant, Verdict};
/// let st = Status { access: Access::Granted, cause: Some(Cause::ServerGranted), signed_in: true, ..Status::default() };
/// let mut s = String::new();
/// write_final_json(&mut s, Some(Verdict::Granted), &st, &Counters::default(), Instant::from_millis(20), Instant::ZERO).unwrap();
/// assert!(s.starts_with(r#"{"final":true,"verdict":"granted","exit_code":0,"access":"granted","cause":"server_granted""#));
/// ```
pub fn write_final_json<W: Write>(
    w: &mut W,
    verdict: Option<Verdict>,
    status: &Status,
    counters: &crate::Counters,
    now: Instant,
    origin: Instant,
) -> core::fmt::Result {
    w.write_str("{\"final\":true,")?;
    match verdict {
        Some(v) => write!(w, "\"verdict\":\"{}\",\"exit_code\":{},", v.name(), v.exit_code())?,
        None => w.write_str("\"verdict\":null,\"exit_code\":null,")?,
    }
    write!(w, "\"access\":\"{}\",\"cause\":", access_name(status.access))?;
    match status.cause {
        Some(c) => write!(w, "\"{}\"", c.name())?,
        None => w.write_str("null")?,
    }
    write!(
        w,
        ",\"signed_in\":{},\"attempts\":{},\"transient_failures\":{},\"stale_dropped\":{},\"elapsed_ms\":{}}}",
        status.signed_in,
        counters.attempts,
        counters.transient_total(),
        counters.stale_dropped,
        ms_since(now, origin)
    )
}
