//! The human-readable timeline: one line per event, with the elapsed time, the state the app
//! would render, what happened, the attempt, the next retry and the fail-closed deadline.
//!
//! ```text
//!    1.502s  granted         refresh    token refresh #1 started
//!    3.004s  granted (held)  failed     gen 3 attempt #0: connect | next try 3.212s (+0.208s) | fails closed 9.004s (in 6.000s)
//! ```

use accessgate::{Access, Cause, Event, FailureDetail, Instant, SessionEvent, Status};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BLUE: &str = "\x1b[34m";
const CYAN: &str = "\x1b[36m";

/// Formats seconds since the origin as `12.345s`.
pub fn secs(t: Instant, origin: Instant) -> String {
    let ms = (t - origin).as_millis();
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// Formats a signed-free span as `0.208s`.
pub fn span(from: Instant, to: Instant) -> String {
    let ms = (to - from).as_millis();
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// The state column: what the app renders, plus whether it is being re-verified.
pub fn state_label(s: &Status) -> &'static str {
    match (s.signed_in, s.access) {
        (false, _) => "signed out",
        (true, Access::Unknown) if s.reverifying_until.is_some() => "checking (retry)",
        (true, Access::Unknown) => "checking",
        (true, Access::Granted) if s.reverifying_until.is_some() => "granted (held)",
        (true, Access::Granted) => "granted",
        (true, Access::Denied) if s.probing => "denied (probing)",
        (true, Access::Denied) => "denied",
    }
}

/// Renders events as timeline lines and keeps the state column up to date.
#[derive(Debug)]
pub struct Timeline {
    color: bool,
    origin: Instant,
    state: Status,
    /// The check attempt last started and not yet known to be finished: `(generation, attempt)`.
    pending: Option<(u32, u32)>,
    /// Definitive answers so far (`Counters::grants + denials`) as of the last snapshot.
    answers: u32,
}

impl Timeline {
    /// A timeline whose times count from `origin`.
    pub fn new(color: bool, origin: Instant) -> Self {
        Timeline {
            color,
            origin,
            state: Status::default(),
            pending: None,
            answers: 0,
        }
    }

    /// The header line.
    pub fn header(&self) -> String {
        let h = format!("{:>9}  {:<16}  {:<8}  {}", "time", "state", "event", "details");
        self.paint(DIM, &h)
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    }

    fn state_colored(&self) -> String {
        let label = format!("{:<16}", state_label(&self.state));
        let code = match (self.state.signed_in, self.state.access) {
            (false, _) => YELLOW,
            (true, Access::Granted) if self.state.reverifying_until.is_some() => YELLOW,
            (true, Access::Granted) => GREEN,
            (true, Access::Denied) => RED,
            (true, Access::Unknown) => CYAN,
        };
        self.paint(code, &label)
    }

    fn line(&self, at: Instant, kind: &str, kind_color: &str, details: &str) -> String {
        format!(
            "{:>9}  {}  {}  {}",
            secs(at, self.origin),
            self.state_colored(),
            self.paint(kind_color, &format!("{kind:<8}")),
            details
        )
    }

    /// Applies a status snapshot (taken after `at`; `answers` = its `Counters::grants +
    /// denials`) to the state column. Returns a synthesized line when it shows that the
    /// pending check got a definitive answer that did not change access (the core emits no
    /// event for that: the answer count tells, an `AccessChanged` would have cleared `pending`).
    pub fn status(&mut self, at: Instant, s: &Status, answers: u32) -> Option<String> {
        let mut out = None;
        let answered = answers > self.answers;
        self.answers = answers;
        if let Some((generation, attempt)) = self.pending {
            if s.generation.0 != generation {
                self.pending = None; // superseded by a refresh or a new session: no answer
            } else if answered {
                self.pending = None;
                if s.signed_in && s.access != Access::Unknown {
                    let was_held = self.state.reverifying_until.is_some() && s.reverifying_until.is_none();
                    self.state = *s;
                    let what = if was_held {
                        format!(
                            "gen {generation} attempt #{attempt}: definitive answer, access {} confirmed, retries over",
                            accessgate::access_name(s.access)
                        )
                    } else {
                        format!(
                            "gen {generation} attempt #{attempt}: definitive answer, access {} confirmed",
                            accessgate::access_name(s.access)
                        )
                    };
                    out = Some(self.line(at, "answer", GREEN, &what));
                }
            }
        }
        self.state = *s;
        out
    }

    /// Renders one event (observed at `at`) and updates the state column from it.
    pub fn event(&mut self, e: &SessionEvent, at: Instant) -> String {
        let o = self.origin;
        match *e {
            SessionEvent::Gate(Event::CheckStarted { generation, attempt }) => {
                self.state.signed_in = true;
                self.pending = Some((generation.0, attempt));
                self.line(
                    at,
                    "check",
                    BLUE,
                    &format!("gen {} attempt #{attempt} started", generation.0),
                )
            }
            SessionEvent::Gate(Event::CheckFailed {
                generation,
                attempt,
                class,
                detail,
                next_attempt,
                deadline,
            }) => {
                if self.pending == Some((generation.0, attempt)) {
                    self.pending = None;
                }
                if deadline.is_some() {
                    self.state.reverifying_until = deadline;
                }
                let mut d = format!("gen {} attempt #{attempt}: {}", generation.0, class.name());
                push_detail(&mut d, detail);
                match next_attempt {
                    Some(n) => d.push_str(&format!(" | next try {} (+{})", secs(n, o), span(at, n))),
                    None => d.push_str(" | no retry planned"),
                }
                match deadline {
                    Some(dl) => d.push_str(&format!(" | fails closed {} (in {})", secs(dl, o), span(at, dl))),
                    None if self.state.probing => d.push_str(" | probing"),
                    None => {}
                }
                self.line(at, "failed", YELLOW, &d)
            }
            SessionEvent::Gate(Event::AccessChanged { from, to, cause }) => {
                self.pending = None;
                self.state.access = to;
                self.state.cause = Some(cause);
                if matches!(cause, Cause::Unauthorized | Cause::LoggedOut) {
                    self.state.signed_in = false;
                }
                self.state.probing = cause == Cause::FailedClosed;
                // A definitive answer ends the retries; failing closed ends the deadline.
                self.state.reverifying_until = None;
                let color = match to {
                    Access::Granted => GREEN,
                    Access::Denied => RED,
                    Access::Unknown => CYAN,
                };
                let d = format!(
                    "{}{} -> {}{} ({})",
                    if self.color { BOLD } else { "" },
                    accessgate::access_name(from),
                    accessgate::access_name(to),
                    if self.color { RESET } else { "" },
                    cause.name()
                );
                self.line(at, "ACCESS", color, &d)
            }
            SessionEvent::Gate(Event::StaleResult { generation, attempt }) => self.line(
                at,
                "stale",
                DIM,
                &format!(
                    "gen {} attempt #{attempt}: late result dropped (R10)",
                    generation.0
                ),
            ),
            SessionEvent::Gate(Event::FirstCheckSettled { generation }) => self.line(
                at,
                "settled",
                CYAN,
                &format!("gen {} first check settled (R3)", generation.0),
            ),
            SessionEvent::Gate(Event::SessionEnded { cause }) => {
                self.pending = None;
                self.state.signed_in = false;
                self.state.access = Access::Unknown;
                self.state.reverifying_until = None;
                self.state.probing = false;
                self.line(at, "session", RED, &format!("session ended ({})", cause.name()))
            }
            SessionEvent::RefreshStarted { id, early } => self.line(
                at,
                "refresh",
                CYAN,
                &format!(
                    "token refresh #{} started{}",
                    id.0,
                    if early { " (early: a 403 asked for it)" } else { "" }
                ),
            ),
            SessionEvent::Refreshed {
                generation,
                expires_at,
            } => self.line(
                at,
                "refresh",
                CYAN,
                &format!(
                    "new token, gen {} (expires {}, in {})",
                    generation.0,
                    secs(expires_at, o),
                    span(at, expires_at)
                ),
            ),
            SessionEvent::RefreshFailed {
                class,
                detail,
                next_attempt,
            } => {
                let mut d = format!("token refresh failed: {}", class.name());
                push_detail(&mut d, detail);
                d.push_str(&format!(
                    " | next try {} (+{})",
                    secs(next_attempt, o),
                    span(at, next_attempt)
                ));
                self.line(at, "refresh", YELLOW, &d)
            }
            SessionEvent::RefreshRejected => {
                self.line(at, "refresh", RED, "refresh token rejected by the server")
            }
            SessionEvent::StaleRefresh { id } => self.line(
                at,
                "stale",
                DIM,
                &format!("late result of token refresh #{} dropped (R10)", id.0),
            ),
        }
    }

    /// A heading line for a chapter of the demo.
    pub fn heading(&self, text: &str) -> String {
        self.paint(BOLD, text)
    }

    /// Text in the "good" colour.
    pub fn ok(&self, text: &str) -> String {
        self.paint(GREEN, text)
    }

    /// Text in the "bad" colour.
    pub fn bad(&self, text: &str) -> String {
        self.paint(RED, text)
    }

    /// Dimmed text.
    pub fn dim(&self, text: &str) -> String {
        self.paint(DIM, text)
    }
}

/// A failure's detail after its class, in parentheses (R13); nothing when it has none.
fn push_detail(line: &mut String, detail: FailureDetail) {
    if detail != FailureDetail::None {
        line.push_str(&format!(" ({detail})"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accessgate::{Generation, NetFailure, TransientClass};

    #[test]
    fn failed_line_shows_attempt_retry_and_deadline() {
        let mut t = Timeline::new(false, Instant::ZERO);
        let e = SessionEvent::Gate(Event::CheckFailed {
            generation: Generation(3),
            attempt: 0,
            class: TransientClass::Connect,
            detail: FailureDetail::Net(NetFailure::Refused),
            next_attempt: Some(Instant::from_millis(3212)),
            deadline: Some(Instant::from_millis(9004)),
        });
        let line = t.event(&e, Instant::from_millis(3004));
        assert!(line.contains("3.004s"), "{line}");
        assert!(
            line.contains("attempt #0: connect (connection refused)"),
            "{line}"
        );
        assert!(line.contains("next try 3.212s (+0.208s)"), "{line}");
        assert!(line.contains("fails closed 9.004s (in 6.000s)"), "{line}");
        assert!(!line.contains('\x1b'), "no colours when disabled: {line}");
    }

    #[test]
    fn refresh_failed_line_says_what_exactly_went_wrong() {
        // R13: "certificate expired" on the token endpoint, not just "tls".
        let mut t = Timeline::new(false, Instant::ZERO);
        let e = SessionEvent::RefreshFailed {
            class: TransientClass::Tls,
            detail: FailureDetail::Tls(accessgate::TlsFailure::Expired),
            next_attempt: Instant::from_millis(4500),
        };
        let line = t.event(&e, Instant::from_millis(3500));
        assert!(
            line.contains("token refresh failed: tls (certificate expired) | next try 4.500s (+1.000s)"),
            "{line}"
        );
        // A class with nothing more to say prints no empty parentheses.
        let e = SessionEvent::RefreshFailed {
            class: TransientClass::OtherStatus,
            detail: FailureDetail::None,
            next_attempt: Instant::from_millis(4500),
        };
        let line = t.event(&e, Instant::from_millis(3500));
        assert!(
            line.contains("token refresh failed: other_status | next try"),
            "{line}"
        );
    }

    #[test]
    fn state_column_follows_access() {
        let mut t = Timeline::new(false, Instant::ZERO);
        t.event(
            &SessionEvent::Gate(Event::CheckStarted {
                generation: Generation(1),
                attempt: 0,
            }),
            Instant::ZERO,
        );
        let line = t.event(
            &SessionEvent::Gate(Event::AccessChanged {
                from: Access::Unknown,
                to: Access::Granted,
                cause: Cause::ServerGranted,
            }),
            Instant::from_millis(15),
        );
        assert!(line.contains("granted "), "{line}");
        assert!(line.contains("unknown -> granted (server_granted)"), "{line}");
    }

    #[test]
    fn an_answer_that_keeps_access_gets_a_line_from_the_answer_count() {
        let mut t = Timeline::new(false, Instant::ZERO);
        let granted = Status {
            access: Access::Granted,
            cause: Some(Cause::ServerGranted),
            signed_in: true,
            generation: Generation(1),
            ..Status::default()
        };
        assert_eq!(t.status(Instant::ZERO, &granted, 1), None);
        let started = SessionEvent::Gate(Event::CheckStarted {
            generation: Generation(1),
            attempt: 1,
        });
        t.event(&started, Instant::from_millis(10));
        // A snapshot while the check runs (no new answer): nothing to say.
        assert_eq!(t.status(Instant::from_millis(11), &granted, 1), None);
        // One more definitive answer and access unchanged: the line the core has no event for.
        let line = t.status(Instant::from_millis(20), &granted, 2).expect("a line");
        assert!(
            line.contains("gen 1 attempt #1: definitive answer, access granted confirmed"),
            "{line}"
        );
        // A check superseded by a new generation says nothing.
        t.event(&started, Instant::from_millis(30));
        let next = Status {
            generation: Generation(2),
            ..granted
        };
        assert_eq!(t.status(Instant::from_millis(40), &next, 3), None);
    }
}
