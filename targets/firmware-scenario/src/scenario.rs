//! The scenario: commands the gate through its [`Link`], switches the scripted backend, and
//! asserts every state the gate reaches, chapter by chapter (behaviour.md R3-R8).
//!
//! It watches two things the driver publishes: the status `Watch` (latest [`Snapshot`] only,
//! so intermediate ones may be skipped) and the event channel (every event, in order), which
//! it prints as a timeline. Assertions about what must *not* happen (access changing during a
//! short outage) are made on the events, which are never skipped while this task reads them.

use core::cell::RefCell;
use core::fmt::Write as _;

use accessgate::{Access, Cause, Event, Instant, SessionEvent};
use accessgate_embassy::{time, write_event_text, Command, Snapshot, TimedEvent, STATUS_RECEIVERS};
use embassy_futures::select::{select3, Either3};
use embassy_sync::blocking_mutex::Mutex as BlockingMutex;
use embassy_sync::watch::Receiver;
use embassy_time::Timer;

use crate::app::{GateLink, Mutex, BUDGET, HOUR};
use crate::backend::{Backend, Mode};
use crate::say;

/// Tokens of the demo session; the backend expects `Bearer ACCESS_TOKEN`.
pub const ACCESS_TOKEN: &str = "demo-access-token";
const REFRESH_TOKEN: &str = "demo-refresh-token";

/// How late the gate may fail closed after its deadline (a timer tick plus scheduling).
const FAIL_CLOSED_TOLERANCE: accessgate::Duration = accessgate::Duration::from_millis(100);
/// Pause before an app re-check, above the configured `min_recheck_interval`.
const RECHECK_PAUSE: embassy_time::Duration = embassy_time::Duration::from_millis(150);

/// The scenario failed; the message is in [`FAILURE`] (kept out of the `Result`s, so that
/// every `?` does not move 256 bytes around and the scenario's frame stays small).
pub struct Fail;

/// What the first failure said.
static FAILURE: BlockingMutex<Mutex, RefCell<heapless::String<256>>> =
    BlockingMutex::new(RefCell::new(heapless::String::new()));

impl Fail {
    pub fn new(args: core::fmt::Arguments<'_>) -> Self {
        FAILURE.lock(|m| {
            let mut m = m.borrow_mut();
            if m.is_empty() {
                // A message longer than 256 bytes is cut short; the start says what failed.
                let _ = m.write_fmt(args);
            }
        });
        Fail
    }

    /// Prints the message.
    pub fn print(&self) {
        FAILURE.lock(|m| say!("FAIL: {}", m.borrow().as_str()));
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(Fail::new(format_args!($($fmt)*)));
        }
    };
}

/// What the events of one chapter amounted to.
#[derive(Default, Clone, Copy)]
struct Tally {
    checks_started: u32,
    checks_failed: u32,
    access_changes: u32,
}

struct Watcher<'l> {
    link: &'l GateLink,
    status: Receiver<'l, Mutex, Snapshot, STATUS_RECEIVERS>,
    tally: Tally,
    last: Snapshot,
}

fn ms(d: accessgate::Duration) -> u64 {
    d.as_millis()
}

/// `+1.234s`: an instant on the core's clock (time since boot).
struct At(Instant);

impl core::fmt::Display for At {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ms = self.0.as_micros() / 1000;
        write!(f, "+{}.{:03}s", ms / 1000, ms % 1000)
    }
}

impl<'l> Watcher<'l> {
    fn event(&mut self, e: &TimedEvent) {
        match e.event {
            SessionEvent::Gate(Event::CheckStarted { .. }) => self.tally.checks_started += 1,
            SessionEvent::Gate(Event::CheckFailed { .. }) => self.tally.checks_failed += 1,
            SessionEvent::Gate(Event::AccessChanged { .. }) => self.tally.access_changes += 1,
            _ => {}
        }
        let mut line = heapless::String::<192>::new();
        // A cut line in the timeline is harmless.
        let _ = write_event_text(&mut line, e, Instant::ZERO);
        say!("      {}", line);
    }

    /// Starts a chapter: clears the tally.
    fn chapter(&mut self) {
        self.tally = Tally::default();
    }

    /// Watches until a snapshot satisfies `done` (`Some`) or `limit` passes (`None`, core
    /// clock). Every snapshot seen on the way is given to `each` first, which may fail the
    /// scenario. Events are printed and tallied as they come; when `done` holds, the events
    /// queued before that snapshot are handled too.
    async fn watch(
        &mut self,
        limit: Instant,
        mut each: impl FnMut(&Snapshot) -> Result<(), Fail>,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Result<Option<Snapshot>, Fail> {
        let link = self.link;
        loop {
            let woke = select3(
                link.next_event(),
                self.status.changed(),
                Timer::at(time::to_embassy(limit)),
            )
            .await;
            match woke {
                Either3::First(e) => self.event(&e),
                Either3::Second(s) => {
                    self.last = s;
                    each(&s)?;
                    if done(&s) {
                        // The driver queues events before the snapshot they led to.
                        while let Some(e) = link.try_next_event() {
                            self.event(&e);
                        }
                        return Ok(Some(s));
                    }
                }
                Either3::Third(()) => return Ok(None),
            }
        }
    }

    /// [`Watcher::watch`], failing when `limit` passes first.
    async fn until(
        &mut self,
        what: &str,
        limit: Instant,
        each: impl FnMut(&Snapshot) -> Result<(), Fail>,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot, Fail> {
        match self.watch(limit, each, done).await? {
            Some(s) => Ok(s),
            None => Err(Fail::new(format_args!(
                "timed out at {} waiting for {what}; last status {:?}",
                At(time::now()),
                self.last.status
            ))),
        }
    }

    /// Watches until `limit`, every snapshot checked by `each`.
    async fn hold(
        &mut self,
        limit: Instant,
        each: impl FnMut(&Snapshot) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        self.watch(limit, each, |_| false).await.map(drop)
    }

    /// Sleeps, still printing events.
    async fn pause(&mut self, d: embassy_time::Duration) -> Result<(), Fail> {
        self.hold(time::now() + time::duration_to_core(d), |_| Ok(()))
            .await
    }

    fn send(&self, command: Command<'static, Mutex>) -> Result<(), Fail> {
        let name = command.name();
        match self.link.try_send(command) {
            Ok(()) => Ok(()),
            Err(_) => Err(Fail::new(format_args!("command channel full for {name}"))),
        }
    }
}

fn granted(s: &Snapshot) -> Result<(), Fail> {
    ensure!(
        s.status.access == Access::Granted,
        "access left Granted at {}: {:?}",
        At(s.at),
        s.status
    );
    Ok(())
}

/// Runs the six chapters. `Ok` only if every assertion held.
pub async fn run(link: &'static GateLink, backend: &'static Backend) -> Result<(), Fail> {
    let status = link
        .status_receiver()
        .ok_or_else(|| Fail::new(format_args!("no status receiver left")))?;
    let mut w = Watcher {
        link,
        status,
        tally: Tally::default(),
        last: Snapshot::default(),
    };
    let budget = BUDGET;
    let secs = |n: u64| time::now() + accessgate::Duration::from_secs(n);

    // ---- 1. sign-in -> grant (R3, R1) ----
    say!("chapter 1: sign in, backend answers {}", Mode::Grant.name());
    w.chapter();
    backend.set(Mode::Grant);
    let t0 = time::now();
    // Copied straight into the queue's slot: no token copy left in this task's memory.
    w.link
        .try_sign_in(ACCESS_TOKEN.as_bytes(), REFRESH_TOKEN.as_bytes(), HOUR)
        .map_err(|e| Fail::new(format_args!("sign-in refused: {e}")))?;
    let s = w
        .until(
            "a grant",
            secs(2),
            |_| Ok(()),
            |s| s.status.access != Access::Unknown,
        )
        .await?;
    ensure!(s.status.access == Access::Granted, "chapter 1: {:?}", s.status);
    ensure!(
        s.status.cause == Some(Cause::ServerGranted),
        "chapter 1: cause {:?}",
        s.status.cause
    );
    ensure!(s.status.signed_in, "chapter 1: not signed in");
    ensure!(
        s.counters.attempts == 1,
        "chapter 1: {} attempts",
        s.counters.attempts
    );
    say!(
        "chapter 1 ok: Granted (server_granted) {} ms after sign-in, 1 attempt",
        ms(s.at - t0)
    );

    // ---- 2. an outage shorter than the budget: access held (R4, R6) ----
    w.pause(RECHECK_PAUSE).await?;
    say!("chapter 2: short outage ({}), re-check", Mode::Refuse.name());
    w.chapter();
    let before = w.last.counters;
    backend.set(Mode::Refuse);
    w.send(Command::Recheck)?;
    let s = w
        .until("two failed attempts", secs(2), granted, |s| {
            s.counters.transient_total() >= before.transient_total() + 2
        })
        .await?;
    let Some(deadline) = s.status.reverifying_until else {
        return Err(Fail::new(format_args!(
            "chapter 2: retrying without a deadline: {:?}",
            s.status
        )));
    };
    let first_failure = deadline.saturating_sub(budget);
    // Keep the backend down for 300 ms of the 1 s budget (longer if the failures took longer).
    let back_at = first_failure + accessgate::Duration::from_millis(300);
    w.hold(back_at, granted).await?;
    let outage_end = time::now();
    ensure!(outage_end < deadline, "chapter 2: outage ran past the deadline");
    let failed = w.last.counters.transient_total() - before.transient_total();
    backend.set(Mode::Grant);
    let s = w
        .until("the retries to end", deadline + budget, granted, |s| {
            s.status.reverifying_until.is_none() && s.counters.grants > before.grants
        })
        .await?;
    ensure!(
        s.at < deadline,
        "chapter 2: retries ended at {}, after the deadline {}",
        At(s.at),
        At(deadline)
    );
    ensure!(
        w.tally.access_changes == 0,
        "chapter 2: access changed {} times",
        w.tally.access_changes
    );
    ensure!(
        s.status.next_attempt.is_none(),
        "chapter 2: a retry still planned: {:?}",
        s.status
    );
    ensure!(s.counters.failed_closed == 0, "chapter 2: failed closed");
    ensure!(
        failed >= 2,
        "chapter 2: only {failed} failed attempts during the outage"
    );
    say!(
        "chapter 2 ok: {} ms outage, {} failed attempts, Granted held throughout; backend back -> Granted at {}, retries over, {} ms before the deadline {}",
        ms(outage_end - first_failure),
        failed,
        At(s.at),
        ms(deadline - s.at),
        At(deadline)
    );

    // ---- 3. an outage longer than the budget: fail closed at the deadline (R5) ----
    w.pause(RECHECK_PAUSE).await?;
    say!("chapter 3: long outage ({}), re-check", Mode::Unavailable.name());
    w.chapter();
    let before = w.last.counters;
    backend.set(Mode::Unavailable);
    w.send(Command::Recheck)?;
    let s = w
        .until("the first failure", secs(2), granted, |s| {
            s.status.reverifying_until.is_some()
        })
        .await?;
    let deadline = s.status.reverifying_until.unwrap_or(s.at);
    let s = w
        .until(
            "failing closed",
            deadline + accessgate::Duration::from_millis(500),
            |s| {
                if s.at < deadline {
                    granted(s)?;
                }
                Ok(())
            },
            |s| s.status.access != Access::Granted,
        )
        .await?;
    let seen = time::now();
    ensure!(
        s.status.access == Access::Denied && s.status.cause == Some(Cause::FailedClosed),
        "chapter 3: {:?}",
        s.status
    );
    ensure!(
        s.at >= deadline,
        "chapter 3: failed closed early, at {} before {}",
        At(s.at),
        At(deadline)
    );
    ensure!(
        s.at - deadline <= FAIL_CLOSED_TOLERANCE && seen - deadline <= FAIL_CLOSED_TOLERANCE,
        "chapter 3: failed closed at {} (seen {}), deadline {}",
        At(s.at),
        At(seen),
        At(deadline)
    );
    ensure!(s.status.probing, "chapter 3: not probing after failing closed");
    ensure!(
        w.tally.access_changes == 1,
        "chapter 3: {} access changes",
        w.tally.access_changes
    );
    let failed = s.counters.transient_total() - before.transient_total();
    ensure!(failed >= 2, "chapter 3: only {failed} failed attempts");
    say!(
        "chapter 3 ok: {} failed attempts, Granted until the deadline {}; Denied (failed_closed) at {} ({} us late), seen by the app {} us after the deadline",
        failed,
        At(deadline),
        At(s.at),
        (s.at - deadline).as_micros(),
        (seen - deadline).as_micros()
    );

    // ---- 4. backend back: recovered by probing (R7) ----
    say!(
        "chapter 4: backend back ({}), the gate probes",
        Mode::Grant.name()
    );
    w.chapter();
    let back = time::now();
    backend.set(Mode::Grant);
    let s = w
        .until(
            "recovery",
            secs(3),
            |_| Ok(()),
            |s| s.status.access != Access::Denied,
        )
        .await?;
    ensure!(
        s.status.access == Access::Granted && s.status.cause == Some(Cause::Recovered),
        "chapter 4: {:?}",
        s.status
    );
    ensure!(!s.status.probing, "chapter 4: still probing");
    ensure!(
        s.counters.recoveries == 1,
        "chapter 4: {} recoveries",
        s.counters.recoveries
    );
    say!(
        "chapter 4 ok: Granted (recovered) {} ms after the backend came back, {} probe(s)",
        ms(s.at - back),
        w.tally.checks_started
    );

    // ---- 5. revocation: a definitive denial (R2) ----
    w.pause(RECHECK_PAUSE).await?;
    say!("chapter 5: revocation ({}), re-check", Mode::Deny.name());
    w.chapter();
    backend.set(Mode::Deny);
    w.send(Command::Recheck)?;
    let s = w
        .until(
            "a denial",
            secs(2),
            |_| Ok(()),
            |s| s.status.access != Access::Granted,
        )
        .await?;
    ensure!(
        s.status.access == Access::Denied && s.status.cause == Some(Cause::ServerDenied),
        "chapter 5: {:?}",
        s.status
    );
    ensure!(
        s.status.reverifying_until.is_none(),
        "chapter 5: still retrying: {:?}",
        s.status
    );
    ensure!(
        s.counters.denials == 1,
        "chapter 5: {} denials",
        s.counters.denials
    );
    say!(
        "chapter 5 ok: Denied (server_denied) after {} attempt(s)",
        w.tally.checks_started
    );

    // ---- 6. 401: signed out (R8) ----
    w.pause(RECHECK_PAUSE).await?;
    say!(
        "chapter 6: token rejected ({}), re-check",
        Mode::Unauthorized.name()
    );
    w.chapter();
    backend.set(Mode::Unauthorized);
    w.send(Command::Recheck)?;
    let s = w
        .until("sign-out", secs(2), |_| Ok(()), |s| !s.status.signed_in)
        .await?;
    ensure!(
        s.status.access == Access::Unknown && s.status.cause == Some(Cause::Unauthorized),
        "chapter 6: {:?}",
        s.status
    );
    ensure!(
        s.counters.unauthorized_logouts == 1,
        "chapter 6: {} 401 logouts",
        s.counters.unauthorized_logouts
    );
    ensure!(
        w.tally.checks_started == 1,
        "chapter 6: {} attempts (401 is never retried)",
        w.tally.checks_started
    );
    say!("chapter 6 ok: Unknown (unauthorized), signed_in false, no retry");

    // ---- bookkeeping ----
    // Nothing else may happen after a sign-out: no attempt in 300 ms.
    w.pause(embassy_time::Duration::from_millis(300)).await?;
    let s = w.last;
    let counts = backend.counts();
    ensure!(
        w.tally.checks_started == 1,
        "after sign-out: {} attempts",
        w.tally.checks_started
    );
    ensure!(s.events_dropped == 0, "{} events dropped", s.events_dropped);
    ensure!(
        s.commands_refused == 0,
        "{} commands refused: {:?}",
        s.commands_refused,
        s.last_refusal
    );
    ensure!(
        s.counters.events_lost == 0,
        "{} core events lost",
        s.counters.events_lost
    );
    ensure!(
        counts.bad_requests == 0,
        "{} malformed requests reached the backend",
        counts.bad_requests
    );
    ensure!(
        counts.requests + counts.refused == s.counters.attempts,
        "backend saw {} requests + {} refusals, the gate counted {} attempts",
        counts.requests,
        counts.refused,
        s.counters.attempts
    );
    say!(
        "counters: {} attempts ({} refused, {} answered), {} transient failures, {} grants, {} denials, {} fail-closed, {} recoveries, {} stale dropped",
        s.counters.attempts,
        counts.refused,
        counts.requests,
        s.counters.transient_total(),
        s.counters.grants,
        s.counters.denials,
        s.counters.failed_closed,
        s.counters.recoveries,
        s.counters.stale_dropped
    );
    Ok(())
}
