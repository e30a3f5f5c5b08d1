//! `accessgate demo`: the reference backend and a real gate in one process, a story of twelve
//! chapters with faults injected on cue, a live timeline, and an assertion at the end of every
//! chapter, so the demo is also an end-to-end test (exit 0 only if every chapter ended in the
//! expected state).

use std::time::Duration;

use accessgate::{
    Access, Backoff, Cause, Event, FailureDetail, Instant, NetFailure, Probing, Retries, SessionEvent,
    Status, TransientClass,
};
use accessgate_backend::{Backend, BackendConfig, Control, Endpoint, Fault};
use accessgate_std::{AccessGate, GateClientConfig, GateError, TokenError, Tokens};
use clap::Args;

use crate::check::gate_error;
use crate::observe::{Observer, Output};
use crate::timeline::{secs, span};
use crate::util::{to_core, CliError, ColorChoice};

/// Options of `accessgate demo`.
#[derive(Debug, Args)]
#[command(
    about = "Play the fault-injection story against an in-process backend (an end-to-end test)",
    long_about = "Starts the reference backend in-process (HTTP + HTTPS with a freshly generated test \
CA) and a gate against it over HTTPS, with time compressed (attempt timeout 1 s, fail-closed budget \
6 s, 7 retries stratified over 3.5 s plus one in the 0.5 s ending 1 s before the deadline, recovery \
probes: 2 in the first second after failing closed, then every 3 s at a random phase; 8 s tokens \
refreshed 2 s before expiry, spread over 1 s), prints that schedule, then plays twelve chapters while \
printing the gate's live timeline:\n\n  \
1. sign-in and grant            2. token refresh (the grant is kept)\n  \
3. outage shorter than budget   4. recovery\n  \
5. outage longer than budget (fails closed at the deadline)\n  \
6. backend back (recovered by probing)\n  \
7. server-side revocation (denied at once)\n  \
8. captive-portal 200 (held, not denied)\n  \
9. a 401 (signed out)\n  \
10. logout while a token refresh is in flight (waiting callers rejected, the late answer ignored)\n  \
11. a 403 asks for one early token refresh; the new token passes\n  \
12. a retry loop superseded by a token refresh (its retry in flight is cancelled, its next one never runs)\n\n\
Every chapter ends with an assertion on the gate's state; if one fails the demo says what was \
expected and exits 1. Takes about 30 s. Ends with the gate's counters and the requests \
the backend saw per status.",
    after_help = "Timeline columns: time since the gate started | state the app renders (\"held\": a \
transient failure is being retried, access unchanged until the deadline; \"probing\": failed closed, \
looking for recovery) | event | details (generation, attempt, failure class, next try, fail-closed \
deadline)."
)]
pub struct DemoArgs {
    /// Colour the timeline.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Jitter seed (default: drawn from the OS, so every run jitters differently).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Talk to the backend over plain HTTP instead of HTTPS.
    #[arg(long)]
    pub http: bool,
}

const USER: &str = "alice";
const TOKEN_LIFETIME: Duration = Duration::from_secs(8);
const REFRESH_SKEW: Duration = Duration::from_secs(2);
const BUDGET: Duration = Duration::from_secs(6);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// R6, compressed: 7 retries stratified over the 3.5 s after the first failure (0.5 s slices),
/// the 8th in the 0.5 s that end one attempt timeout before the deadline.
const RETRY_SPREAD: Duration = Duration::from_millis(3500);
const FINAL_WINDOW: Duration = Duration::from_millis(500);
/// R7, compressed: 2 probes over the first 1 s after failing closed, then one every 3 s at a
/// per-device phase.
const PROBE_PERIOD: Duration = Duration::from_secs(3);
const PROBE_RAMP: Duration = Duration::from_secs(1);
const PROBE_RAMP_PROBES: u32 = 2;
/// R11: refresh points spread over the 1 s before `expiry - skew`.
const REFRESH_SPREAD: Duration = Duration::from_secs(1);
/// Room for the slow token endpoint of chapters 10 and 12 (up to 1.55 s there).
const REFRESH_TIMEOUT: Duration = Duration::from_millis(2500);
/// R11: a failed refresh is retried 0.5 s doubling to this; refreshes never start closer
/// together than that backoff allows (the refresh floor, at most this cap).
const REFRESH_RETRY_CAP: Duration = Duration::from_secs(2);
/// The chapters that time a refresh against their faults first wait out the refresh floor
/// (the cap plus a little), so the refresh starts when they say so.
const REFRESH_FLOOR_MAX: Duration = REFRESH_RETRY_CAP.saturating_add(Duration::from_millis(50));
/// What a restored session's token has left in chapters 10 and 12: inside the refresh skew,
/// so the refresh starts at once (R11), yet still valid while it runs.
const STORED_TOKEN_LEFT: Duration = Duration::from_millis(1900);

/// The schedule the demo runs, in words (printed at the start).
fn schedule_text() -> String {
    let ms = |d: Duration| d.as_millis();
    format!(
        "attempt timeout {} ms, fail-closed budget {} ms; retries (R6): 7 stratified over the {} ms after the \
first failure (one per {} ms slice), the 8th in the {} ms that end {} ms before the deadline; probes (R7): {} \
over the first {} ms after failing closed, then every {} ms at a random phase; {} s tokens refreshed {} ms \
before expiry, spread over {} ms (R11)",
        ms(ATTEMPT_TIMEOUT),
        ms(BUDGET),
        ms(RETRY_SPREAD),
        ms(RETRY_SPREAD) / 7,
        ms(FINAL_WINDOW),
        ms(ATTEMPT_TIMEOUT),
        PROBE_RAMP_PROBES,
        ms(PROBE_RAMP),
        ms(PROBE_PERIOD),
        TOKEN_LIFETIME.as_secs(),
        ms(REFRESH_SKEW),
        ms(REFRESH_SPREAD),
    )
}

/// The time-compressed configuration of the demo gate.
fn demo_config(base_url: &str, ca_pem: Option<&str>, seed: Option<u64>) -> GateClientConfig {
    let mut cfg = GateClientConfig::new(base_url);
    if let Some(pem) = ca_pem {
        cfg.extra_ca_pem = Some(pem.to_string());
        cfg.system_roots = false;
    }
    cfg.proxy_from_env = false;
    cfg.seed = seed;
    let s = &mut cfg.session;
    s.gate.attempt_timeout = to_core(ATTEMPT_TIMEOUT);
    s.gate.budget = to_core(BUDGET);
    s.gate.retry = Retries {
        spread: to_core(RETRY_SPREAD),
        final_window: to_core(FINAL_WINDOW),
        count: 0,
    };
    s.gate.probe = Probing {
        period: to_core(PROBE_PERIOD),
        ramp: to_core(PROBE_RAMP),
        ramp_probes: PROBE_RAMP_PROBES,
    };
    s.gate.min_recheck_interval = to_core(Duration::from_millis(200));
    s.refresh_skew = to_core(REFRESH_SKEW);
    s.refresh_spread = to_core(REFRESH_SPREAD);
    s.refresh_retry = Backoff {
        base: to_core(Duration::from_millis(500)),
        factor: 2,
        cap: to_core(REFRESH_RETRY_CAP),
    };
    s.refresh_timeout = to_core(REFRESH_TIMEOUT);
    cfg
}

/// How many chapters the story has.
const CHAPTERS: u32 = 12;

/// A chapter failed: what was expected, what was found.
struct Failed(String);

type Chapter = Result<(), Failed>;

struct Demo {
    obs: Observer,
    gate: AccessGate,
    control: Control,
    chapter_mark: usize,
    history_mark: usize,
    passed: Vec<String>,
}

fn describe(s: &Status) -> String {
    let mut d = format!(
        "access {}{}",
        accessgate::access_name(s.access),
        s.cause.map(|c| format!(" ({})", c.name())).unwrap_or_default()
    );
    d.push_str(if s.signed_in {
        ", signed in"
    } else {
        ", signed out"
    });
    if let Some(dl) = s.reverifying_until {
        d.push_str(&format!(", retrying until {}", secs(dl, Instant::ZERO)));
    }
    if s.probing {
        d.push_str(", probing");
    }
    d
}

impl Demo {
    fn say(&self, line: &str) {
        self.obs.say(line);
    }

    fn now(&self) -> Instant {
        self.gate.now()
    }

    fn heading(&mut self, n: u32, title: &str, what: &str) {
        self.obs.pump();
        self.chapter_mark = self.obs.log.len();
        self.history_mark = self.obs.history.len().saturating_sub(1);
        let t = &self.obs.timeline;
        self.say("");
        self.say(&t.heading(&format!(
            "── {n}. {title} ── at {}",
            secs(self.now(), Instant::ZERO)
        )));
        self.say(&t.dim(&format!("   {what}")));
    }

    fn note(&self, text: &str) {
        self.say(&self.obs.timeline.dim(&format!("   » {text}")));
    }

    /// Ends a chapter: `ok` or a failure naming what was expected and the state found.
    fn expect(&mut self, ok: bool, expected: &str) -> Chapter {
        self.obs.pump();
        let got = describe(&self.obs.status());
        if ok {
            let line = format!("   ✔ as expected: {expected}");
            self.say(&self.obs.timeline.ok(&line));
            self.passed.push(expected.to_string());
            Ok(())
        } else {
            Err(Failed(format!("expected: {expected}\n     found:    {got}")))
        }
    }

    /// Events since the chapter began.
    fn events(&self) -> impl Iterator<Item = (Instant, SessionEvent)> + '_ {
        self.obs
            .events_since(self.chapter_mark)
            .iter()
            .map(|e| (e.at, e.event))
    }

    /// Statuses seen since the chapter began (including the one it began with).
    fn statuses(&self) -> impl Iterator<Item = (Instant, Status)> + '_ {
        self.obs.history[self.history_mark..]
            .iter()
            .map(|s| (s.now, s.status))
    }

    fn check_failures(&self, class: Option<TransientClass>) -> usize {
        self.events()
            .filter(|(_, e)| match e {
                SessionEvent::Gate(Event::CheckFailed { class: c, .. }) => class.is_none_or(|k| k == *c),
                _ => false,
            })
            .count()
    }

    /// Whether a failed check of this chapter said `detail` (R13: the reason, not just the
    /// class, reaches the app).
    fn failure_said(&self, detail: FailureDetail) -> bool {
        self.events().any(
            |(_, e)| matches!(e, SessionEvent::Gate(Event::CheckFailed { detail: d, .. }) if d == detail),
        )
    }

    /// Asks the gate to re-check now, as an app does on resume or on a "retry" button.
    async fn recheck(&mut self) -> Result<(), CliError> {
        for _ in 0..20 {
            match self.gate.recheck().await {
                Ok(()) => {
                    self.note("the app asks for a re-check (e.g. on resume)");
                    return Ok(());
                }
                Err(GateError::RateLimited { retry_in, .. }) => {
                    self.obs.follow_for(retry_in + Duration::from_millis(1)).await;
                }
                Err(e) => return Err(gate_error(e)),
            }
        }
        Err(CliError::Runtime("re-check stayed rate-limited".into()))
    }

    /// Granted, nothing being re-verified, and the current generation's first check over (the
    /// core's `FirstCheckSettled`, R3): the gate is quiet.
    fn settled_granted(o: &Observer) -> bool {
        let s = o.status();
        let settled = o.log.iter().rev().find_map(|e| match e.event {
            SessionEvent::Gate(Event::FirstCheckSettled { generation }) => Some(generation),
            _ => None,
        });
        s.access == Access::Granted && s.reverifying_until.is_none() && settled == Some(s.generation)
    }

    /// Whether the newest check start has been followed by its failure: while re-verifying,
    /// a failure is the only way an attempt ends that keeps re-verifying (a grant or denial
    /// ends it, R2/R5), so then no attempt runs.
    fn last_attempt_failed(o: &Observer) -> bool {
        let mut ends = o.log.iter().rev().filter_map(|e| match e.event {
            SessionEvent::Gate(Event::CheckStarted { .. }) => Some(false),
            SessionEvent::Gate(Event::CheckFailed { .. }) => Some(true),
            _ => None,
        });
        ends.next() == Some(true)
    }

    /// Waits until a grant is confirmed and no longer being re-verified. The retry plan has
    /// at most 8 attempts (R6); if it is used up before the service returns (slow attempts
    /// skip slices), the gate would wait for the deadline, so the app re-checks instead.
    async fn await_confirmation(&mut self, timeout: Duration) -> Result<bool, CliError> {
        let exhausted = |o: &Observer| {
            let s = o.status();
            s.reverifying_until.is_some() && s.next_attempt.is_none() && Self::last_attempt_failed(o)
        };
        let done = self
            .obs
            .wait_until(timeout, |o| Self::settled_granted(o) || exhausted(o))
            .await;
        if done && !Self::settled_granted(&self.obs) {
            self.note("every retry of the plan is used up; the app re-checks now");
            self.recheck().await?;
            return Ok(self.obs.wait_until(timeout, Self::settled_granted).await);
        }
        Ok(done)
    }

    // ---- the chapters ----

    async fn ch1_sign_in(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            1,
            "Sign in",
            "alice signs in with a fresh 8 s token; sign-in awaits the first check (R3).",
        );
        let status = self.sign_in_fresh().await?;
        self.note(&format!("sign_in() returned: {}", describe(&status)));
        Ok(self.expect(
            status.access == Access::Granted && status.cause == Some(Cause::ServerGranted),
            "granted (server_granted) as soon as sign-in returns",
        ))
    }

    async fn ch2_refresh(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            2,
            "Token refresh",
            "The token is refreshed 2 s before it expires; the new token is checked at once and the grant is kept.",
        );
        let refreshed_gen = |o: &Observer, mark: usize| {
            o.events_since(mark).iter().find_map(|e| match e.event {
                SessionEvent::Refreshed { generation, .. } => Some(generation),
                _ => None,
            })
        };
        let mark = self.chapter_mark;
        let ok = self
            .obs
            .wait_until(TOKEN_LIFETIME + Duration::from_secs(3), |o| {
                refreshed_gen(o, mark).is_some_and(|g| o.status().generation == g && Self::settled_granted(o))
            })
            .await;
        let never_lost = self.statuses().all(|(_, s)| s.access == Access::Granted);
        Ok(self.expect(
            ok && never_lost && self.obs.status().cause == Some(Cause::ServerGranted),
            "a new token and generation, its check answered, still granted (server_granted), never lost",
        ))
    }

    async fn ch3_short_outage(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            3,
            "Outage shorter than the budget",
            "The backend refuses connections for 2.5 s. Access is held while retries run, one in each 0.5 s slice (R6).",
        );
        self.control.set_fault(Endpoint::Check, Some(Fault::Refused));
        self.note("backend down (connections refused)");
        self.recheck().await?;
        self.obs.follow_for(Duration::from_millis(2500)).await;
        let held = self.statuses().all(|(_, s)| s.access == Access::Granted);
        let retries = self.check_failures(None);
        let deadline = self.obs.status().reverifying_until;
        if let Some(dl) = deadline {
            self.note(&format!(
                "{retries} failed attempts so far; access held; fails closed at {} unless an answer comes",
                secs(dl, Instant::ZERO)
            ));
        }
        let refused = self.failure_said(FailureDetail::Net(NetFailure::Refused));
        Ok(self.expect(
            held && retries >= 2 && deadline.is_some() && refused,
            "still granted after 2.5 s of outage, with ≥ 2 stratified retries (\"connection refused\", R13) and a fixed deadline ahead",
        ))
    }

    async fn ch4_recovery(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            4,
            "Recovery",
            "The backend comes back before the deadline: the next retry answers and the retries stop.",
        );
        let back = self.now();
        self.control.set_fault(Endpoint::Check, None);
        self.note("backend up again");
        let ok = self.await_confirmation(Duration::from_secs(5)).await?;
        self.note(&format!(
            "confirmed {} after the backend came back",
            span(back, self.now())
        ));
        let held = self.statuses().all(|(_, s)| s.access == Access::Granted);
        Ok(self.expect(
            ok && held,
            "granted without interruption, no longer retrying, deadline cleared",
        ))
    }

    async fn ch5_long_outage(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            5,
            "Outage longer than the budget",
            "The access-check service fails for good: every check gets 503 (the token service still works, so a \
refresh may land meanwhile; it does not move the deadline). Access is held until the deadline fixed by the first \
failure, then fails closed (R5), to the tick.",
        );
        self.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        );
        self.note("check endpoint answers 503");
        self.recheck().await?;
        let failed_closed = |o: &Observer, mark: usize| {
            o.events_since(mark).iter().find_map(|e| match e.event {
                SessionEvent::Gate(Event::AccessChanged {
                    to: Access::Denied,
                    cause: Cause::FailedClosed,
                    ..
                }) => Some(e.at),
                _ => None,
            })
        };
        let mark = self.chapter_mark;
        self.obs
            .wait_until(BUDGET + Duration::from_secs(4), |o| {
                failed_closed(o, mark).is_some() && o.status().cause == Some(Cause::FailedClosed)
            })
            .await;
        let at = failed_closed(&self.obs, mark);
        let deadline = self.statuses().find_map(|(_, s)| s.reverifying_until);
        let held_until_deadline = match (at, deadline) {
            (Some(at), Some(_)) => self
                .statuses()
                .filter(|(t, _)| *t < at)
                .all(|(_, s)| s.access == Access::Granted),
            _ => false,
        };
        let on_time = match (at, deadline) {
            (Some(at), Some(dl)) => {
                let late = at.saturating_duration_since(dl);
                self.note(&format!(
                    "deadline {}, failed closed at {} ({} ms after it)",
                    secs(dl, Instant::ZERO),
                    secs(at, Instant::ZERO),
                    late.as_millis()
                ));
                at >= dl && late.as_millis() < 300
            }
            _ => false,
        };
        let said_503 = self.failure_said(FailureDetail::Status(503));
        Ok(self.expect(
            on_time && held_until_deadline && said_503 && self.obs.status().access == Access::Denied,
            "granted until the deadline (failures say \"HTTP 503\", R13), then denied (failed_closed) within 300 ms of it",
        ))
    }

    async fn ch6_back(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            6,
            "Backend back",
            "After failing closed the gate keeps probing (R7): 2 probes in the first second, then one every 3 s at a random phase. The service stays down 2.5 s more, then comes back; the next probe is granted (cause recovered).",
        );
        self.obs.follow_for(Duration::from_millis(2500)).await;
        let probing = self.obs.status().probing && self.obs.status().access == Access::Denied;
        let back = self.now();
        self.control.set_fault(Endpoint::Check, None);
        self.note("check endpoint healthy again");
        let ok = self
            .obs
            .wait_until(Duration::from_secs(8), |o| {
                o.status().access == Access::Granted && o.status().cause == Some(Cause::Recovered)
            })
            .await;
        self.note(&format!(
            "recovered {} after the backend came back",
            span(back, self.now())
        ));
        Ok(self.expect(
            probing && ok,
            "denied and probing while down; granted again (recovered) once it is back",
        ))
    }

    async fn ch7_revoked(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            7,
            "Server-side revocation",
            "The backend now answers 200 {\"has_access\": false} for alice: a definitive denial, at once, no retries (R2).",
        );
        self.obs
            .wait_until(Duration::from_secs(3), Self::settled_granted)
            .await;
        self.control.set_access(USER, false);
        self.note("alice's access revoked on the server");
        // The re-check returns after its check; the denial ends it (R2).
        self.recheck().await?;
        let ok = self
            .obs
            .wait_until(Duration::from_secs(3), |o| o.status().access == Access::Denied)
            .await;
        let s = self.obs.status();
        Ok(self.expect(
            ok && s.cause == Some(Cause::ServerDenied)
                && s.reverifying_until.is_none()
                && s.next_attempt.is_none()
                && self.check_failures(None) == 0,
            "denied (server_denied) on the first answer, nothing retried",
        ))
    }

    async fn ch8_portal(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            8,
            "Captive portal",
            "alice is granted again; then a hotel Wi-Fi answers every request with 200 and an HTML sign-in page. Not a denial: transient, access held (R1, R4).",
        );
        self.control.set_access(USER, true);
        self.note("alice's access granted again on the server");
        self.recheck().await?;
        let regranted = self
            .obs
            .wait_until(Duration::from_secs(3), Self::settled_granted)
            .await;
        if !regranted {
            return Ok(self.expect(false, "granted again (server_granted) after the re-grant"));
        }
        self.note("granted again; now the captive portal appears");
        self.control.set_fault(Endpoint::Check, Some(Fault::HtmlPortal));
        self.recheck().await?;
        self.obs.follow_for(Duration::from_millis(2000)).await;
        let portal_failures = self.check_failures(Some(TransientClass::InvalidBody));
        let held = self
            .statuses()
            .skip_while(|(_, s)| s.access != Access::Granted)
            .all(|(_, s)| s.access == Access::Granted);
        self.control.set_fault(Endpoint::Check, None);
        self.note("back on a real network");
        let settled = self.await_confirmation(Duration::from_secs(4)).await?;
        Ok(self.expect(
            held && portal_failures >= 1 && settled,
            "the HTML 200s count as invalid_body failures; granted throughout, confirmed once off the portal",
        ))
    }

    async fn ch9_unauthorized(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            9,
            "401",
            "The server invalidates alice's access token: the next check gets 401, which ends the session (R8).",
        );
        for _ in 0..3 {
            let token = self
                .gate
                .access_token()
                .await
                .map_err(|e| CliError::Runtime(e.to_string()))?;
            self.control.expire_token(&token);
            self.note("the current access token is invalidated on the server");
            self.recheck().await?;
            if self
                .obs
                .wait_until(Duration::from_secs(3), |o| !o.status().signed_in)
                .await
            {
                break;
            }
            // A refresh slipped in between and rotated the token: invalidate the new one.
        }
        let s = self.obs.status();
        Ok(self.expect(
            !s.signed_in && s.access == Access::Unknown && s.cause == Some(Cause::Unauthorized),
            "signed out: access unknown (unauthorized); the app shows sign-in",
        ))
    }

    /// Waits until R11's refresh floor cannot hold a refresh back: the chapters that time a
    /// refresh against their faults need it to start when they say so.
    async fn await_refresh_floor(&mut self) {
        self.obs.pump();
        let last = self.obs.log.iter().rev().find_map(|e| match e.event {
            SessionEvent::RefreshStarted { .. } => Some(e.at),
            _ => None,
        });
        if let Some(at) = last {
            let wait = (at + to_core(REFRESH_FLOOR_MAX)).saturating_duration_since(self.now());
            if wait > accessgate::Duration::ZERO {
                self.obs.follow_for(Duration::from_micros(wait.as_micros())).await;
            }
        }
    }

    /// Signs alice in with a fresh [`TOKEN_LIFETIME`] token; returns what `sign_in` answered
    /// once the immediate check settled (R3).
    async fn sign_in_fresh(&mut self) -> Result<Status, CliError> {
        let t = self.control.issue_token(USER, TOKEN_LIFETIME);
        let status = self
            .gate
            .sign_in(Tokens::new(t.access_token, t.refresh_token, TOKEN_LIFETIME))
            .await
            .map_err(gate_error)?;
        self.obs.pump();
        Ok(status)
    }

    /// Restores a stored session of alice's whose token has [`STORED_TOKEN_LEFT`] to live
    /// (inside the refresh skew): its refresh starts at once (R11). Returns what `restore`
    /// answered once the immediate check settled (R3).
    async fn restore_expiring(&mut self) -> Result<Status, CliError> {
        let t = self.control.issue_token(USER, TOKEN_LIFETIME);
        let status = self
            .gate
            .restore(Tokens::new(t.access_token, t.refresh_token, STORED_TOKEN_LEFT))
            .await
            .map_err(gate_error)?;
        self.obs.pump();
        Ok(status)
    }

    async fn ch10_logout_mid_refresh(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            10,
            "Logout during a token refresh",
            "alice's stored session is restored with 1.9 s left on its token, so a refresh starts at once; the token \
endpoint takes 0.8 s. Three callers ask for a token meanwhile and wait for that refresh (R11). alice logs out before \
it answers: the waiters are told \"not authenticated\", the refresh is cancelled, and nothing of it signs anybody back \
in (R10, R11).",
        );
        self.await_refresh_floor().await;
        self.control
            .set_latency(Endpoint::Token, Duration::from_millis(800));
        self.note("token endpoint slowed to 0.8 s");
        // The backend counts a request when it routes it, before the delay.
        let served_before = self.control.counts().get(Endpoint::Token, 200);
        let status = self.restore_expiring().await?;
        self.note(&format!("restore() returned: {}", describe(&status)));
        let mark = self.chapter_mark;
        let refreshing = self
            .obs
            .wait_until(Duration::from_secs(1), |o| {
                o.snapshot().refresh_in_flight
                    && o.events_since(mark)
                        .iter()
                        .any(|e| matches!(e.event, SessionEvent::RefreshStarted { .. }))
            })
            .await;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = self.gate.clone();
                tokio::spawn(async move { gate.access_token().await })
            })
            .collect();
        self.obs.follow_for(Duration::from_millis(150)).await;
        let waiting = waiters.iter().filter(|w| !w.is_finished()).count();
        let still_refreshing = self.obs.snapshot().refresh_in_flight;
        self.note(&format!(
            "{waiting} callers waiting for the refresh in flight; alice logs out now"
        ));
        let logout_mark = self.obs.log.len();
        self.gate.logout().await.map_err(gate_error)?;
        let mut rejected = 0;
        for w in waiters {
            match tokio::time::timeout(Duration::from_secs(1), w).await {
                Ok(Ok(Err(TokenError::NotAuthenticated))) => rejected += 1,
                Ok(Ok(Ok(_))) => self.note("a waiter got a token of the ended session"),
                other => self.note(&format!("a waiter ended otherwise: {other:?}")),
            }
        }
        self.note(&format!("{rejected} of 3 waiters got \"not authenticated\""));
        // The session told the driver the refresh no longer matters (a cancel action), so the
        // driver stopped it; had its answer raced the logout, it would be dropped as stale. Either
        // way it must change nothing.
        self.obs.follow_for(Duration::from_millis(1000)).await;
        let stale = self
            .obs
            .events_since(logout_mark)
            .iter()
            .any(|e| matches!(e.event, SessionEvent::StaleRefresh { .. }));
        let served = self.control.counts().get(Endpoint::Token, 200) > served_before;
        let cancelled = !self.obs.snapshot().refresh_in_flight;
        if stale {
            self.note("the refresh answered after the logout: dropped as stale");
        } else {
            self.note(
                "the refresh in flight was cancelled by the logout: its answer never reached the session",
            );
        }
        let resurrected = self.obs.events_since(logout_mark).iter().any(|e| {
            matches!(
                e.event,
                SessionEvent::Refreshed { .. } | SessionEvent::Gate(Event::CheckStarted { .. })
            )
        });
        let late_caller = self.gate.access_token().await;
        self.control.set_latency(Endpoint::Token, Duration::ZERO);
        let s = self.obs.status();
        Ok(self.expect(
            refreshing
                && waiting == 3
                && still_refreshing
                && rejected == 3
                && cancelled
                && served
                && !resurrected
                && late_caller == Err(TokenError::NotAuthenticated)
                && !s.signed_in
                && s.access == Access::Unknown
                && s.cause == Some(Cause::LoggedOut),
            "the 3 waiting callers rejected (not authenticated); the refresh in flight cancelled (or its late answer \
dropped as stale): still signed out, access unknown (logged_out), no check sent",
        ))
    }

    async fn ch11_forbidden_refresh(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            11,
            "403: refresh early",
            "alice signs in again. Then the check endpoint answers 403, as some backends do for an expired token: \
transient, access held, and the gate refreshes the token early, once (R9). The new token's check passes.",
        );
        self.await_refresh_floor().await;
        let status = self.sign_in_fresh().await?;
        if status.access != Access::Granted {
            return Ok(self.expect(false, "granted after signing in again"));
        }
        let g1 = status.generation;
        let expires_before = self.obs.snapshot().expires_at;
        // The refresh answer takes 0.6 s, so the 403 is lifted before the new token is used.
        self.control
            .set_latency(Endpoint::Token, Duration::from_millis(600));
        self.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 403,
                retry_after: None,
            }),
        );
        self.note(&format!(
            "signed in (generation {}); the check endpoint now answers 403",
            g1.0
        ));
        self.recheck().await?;
        let mark = self.chapter_mark;
        let early_started = self
            .obs
            .wait_until(Duration::from_secs(4), |o| {
                o.events_since(mark)
                    .iter()
                    .any(|e| matches!(e.event, SessionEvent::RefreshStarted { early: true, .. }))
            })
            .await;
        // The backend accepts the token it is about to hand out.
        self.control.set_fault(Endpoint::Check, None);
        self.note("early refresh under way; the check endpoint accepts tokens again");
        let refreshed_gen = |o: &Observer| {
            o.events_since(mark).iter().find_map(|e| match e.event {
                SessionEvent::Refreshed { generation, .. } => Some(generation),
                _ => None,
            })
        };
        let passed = self
            .obs
            .wait_until(Duration::from_secs(4), |o| {
                refreshed_gen(o).is_some_and(|g| o.status().generation == g && Self::settled_granted(o))
            })
            .await;
        self.control.set_latency(Endpoint::Token, Duration::ZERO);
        let g2 = refreshed_gen(&self.obs);
        let early = self
            .events()
            .filter(|(_, e)| matches!(e, SessionEvent::RefreshStarted { early: true, .. }))
            .count();
        let refreshes = self
            .events()
            .filter(|(_, e)| matches!(e, SessionEvent::RefreshStarted { .. }))
            .count();
        let new_token_checked = g2.is_some_and(|g| {
            self.events().any(|(_, e)| {
                matches!(e, SessionEvent::Gate(Event::CheckStarted { generation, attempt: 0 }) if generation == g)
            })
        });
        let forbidden = self.failure_said(FailureDetail::Status(403))
            && self.check_failures(Some(TransientClass::Forbidden)) >= 1;
        // From the grant at sign-in on, access never left granted (R4: a 403 is transient).
        let held = self
            .statuses()
            .skip_while(|(_, s)| s.access != Access::Granted)
            .all(|(_, s)| s.access == Access::Granted);
        let later_expiry = match (expires_before, self.obs.snapshot().expires_at) {
            (Some(a), Some(b)) => b > a,
            _ => false,
        };
        if let Some(g) = g2 {
            self.note(&format!(
                "one early refresh: generation {} -> {}, the new token valid until {}",
                g1.0,
                g.0,
                self.obs
                    .snapshot()
                    .expires_at
                    .map(|t| secs(t, Instant::ZERO))
                    .unwrap_or_default()
            ));
        }
        Ok(self.expect(
            early_started
                && passed
                && forbidden
                && early == 1
                && refreshes == 1
                && g2.is_some_and(|g| g.0 > g1.0)
                && new_token_checked
                && later_expiry
                && held
                && self.obs.status().cause == Some(Cause::ServerGranted),
            "the 403 (\"HTTP 403\", forbidden) held access and started exactly one early refresh; the new \
generation's check granted (server_granted), access never lost",
        ))
    }

    async fn ch12_superseded(&mut self) -> Result<Chapter, CliError> {
        self.heading(
            12,
            "A retry loop superseded",
            "alice's stored session (1.9 s left) is restored while checks answer 503 after 0.85 s; its refresh takes \
1.55 s. The first check fails and a retry is planned; that retry still waits for its answer when the refresh lands \
and starts a new generation. The old loop is over: the retry in flight is cancelled (a late answer would be dropped \
as stale), its next retry never runs, and nothing of it touches the new generation (R10).",
        );
        // Timing only decides whether the old retry is still in flight when the refresh lands
        // (it is, with 0.15 s to spare either side); if not, the chapter is played again.
        for _ in 0..3 {
            self.await_refresh_floor().await;
            let mark = self.obs.log.len();
            self.control.set_fault(
                Endpoint::Check,
                Some(Fault::Status {
                    code: 503,
                    retry_after: None,
                }),
            );
            self.control
                .set_latency(Endpoint::Check, Duration::from_millis(850));
            self.control
                .set_latency(Endpoint::Token, Duration::from_millis(1550));
            self.note("checks: 503 after 0.85 s; token endpoint: 1.55 s");
            let status = self.restore_expiring().await?;
            let g1 = status.generation;
            self.note(&format!(
                "restore() returned after the first check failed: {} (generation {})",
                describe(&status),
                g1.0
            ));
            let refreshed = |o: &Observer| {
                o.events_since(mark)
                    .iter()
                    .enumerate()
                    .find_map(|(i, e)| match e.event {
                        SessionEvent::Refreshed { generation, .. } => Some((mark + i, generation)),
                        _ => None,
                    })
            };
            self.obs
                .wait_until(Duration::from_secs(3), |o| refreshed(o).is_some())
                .await;
            // The service is healthy again for whatever is asked from now on.
            self.control.clear_all();
            let Some((at, g2)) = refreshed(&self.obs) else {
                return Ok(self.expect(false, "the refresh landed within 3 s"));
            };
            self.note(&format!("refresh landed: generation {} -> {}", g1.0, g2.0));
            let stale_of_g1 = |o: &Observer| {
                o.events_since(at).iter().any(|e| {
                    matches!(e.event, SessionEvent::Gate(Event::StaleResult { generation, .. }) if generation == g1)
                })
            };
            self.obs
                .wait_until(Duration::from_secs(4), |o| {
                    o.status().generation == g2 && Self::settled_granted(o)
                })
                .await;
            // Past the old check's 0.85 s: had it not been cancelled, its answer is in by now.
            self.obs.follow_for(Duration::from_millis(900)).await;
            // The old generation's last event before the refresh: a retry started and not over.
            let old_in_flight = self.obs.log[mark..at]
                .iter()
                .rev()
                .find_map(|e| match e.event {
                    SessionEvent::Gate(Event::CheckStarted { generation, attempt }) if generation == g1 => {
                        Some(Some(attempt))
                    }
                    SessionEvent::Gate(Event::CheckFailed { generation, .. }) if generation == g1 => {
                        Some(None)
                    }
                    _ => None,
                })
                .flatten()
                .filter(|&attempt| attempt > 0);
            let retry_planned = self.obs.log[mark..at].iter().any(|e| {
                matches!(e.event, SessionEvent::Gate(Event::CheckFailed { generation, next_attempt: Some(_), .. }) if generation == g1)
            });
            // After the refresh, nothing of the old generation starts or counts as a failure.
            let old_retry_ran = self.obs.events_since(at).iter().any(|e| {
                matches!(e.event, SessionEvent::Gate(Event::CheckStarted { generation, .. }) if generation == g1)
            });
            let old_answer_applied = self.obs.events_since(at).iter().any(|e| {
                matches!(e.event, SessionEvent::Gate(Event::CheckFailed { generation, .. }) if generation == g1)
            });
            if old_retry_ran || !retry_planned {
                return Ok(self.expect(
                    false,
                    "a retry planned before the refresh, and no attempt of the old generation after it",
                ));
            }
            let Some(attempt) = old_in_flight else {
                self.note("the old retry was not in flight when the refresh landed; once more");
                continue;
            };
            if stale_of_g1(&self.obs) {
                self.note("the old loop's late 503 arrived after the refresh: dropped as stale");
            } else {
                self.note(&format!(
                    "the old loop's retry #{attempt} was cancelled when the refresh landed: its 503 never reached the session"
                ));
            }
            let s = self.obs.status();
            // Once the new generation was granted, nothing (the stale 503 included) took it away.
            let kept = self
                .obs
                .history
                .iter()
                .skip_while(|h| !(h.status.generation == g2 && h.status.access == Access::Granted))
                .all(|h| h.status.access == Access::Granted && h.status.reverifying_until.is_none());
            return Ok(self.expect(
                !old_answer_applied
                    && s.generation == g2
                    && s.access == Access::Granted
                    && s.cause == Some(Cause::ServerGranted)
                    && s.reverifying_until.is_none()
                    && kept,
                "the old loop's retry in flight was cancelled (or its late answer dropped as stale), its next retry \
never ran, and the new generation is granted (server_granted) with no deadline left",
            ));
        }
        Ok(self.expect(false, "an old retry in flight when the refresh landed (3 tries)"))
    }

    fn summary(&self, started: std::time::Instant) {
        let snap = self.obs.snapshot();
        let c = snap.counters;
        let t = &self.obs.timeline;
        self.say("");
        self.say(&t.heading("── Summary ──"));
        self.say(&format!(
            "   gate: attempts {}, grants {}, denials {}, failed closed {}, recoveries {}, refreshes {} ({} failed), stale results dropped {}, signed out by 401 {}",
            c.attempts,
            c.grants,
            c.denials,
            c.failed_closed,
            c.recoveries,
            c.refreshes,
            c.refresh_failures,
            c.stale_dropped,
            c.unauthorized_logouts
        ));
        let classes: Vec<String> = TransientClass::ALL
            .iter()
            .filter(|k| c.transient_of(**k) > 0)
            .map(|k| format!("{} {}", k.name(), c.transient_of(*k)))
            .collect();
        self.say(&format!(
            "   transient failures: {} ({})",
            c.transient_total(),
            if classes.is_empty() {
                "none".to_string()
            } else {
                classes.join(", ")
            }
        ));
        let counts = self.control.counts();
        for ep in Endpoint::ALL {
            let by: Vec<String> = counts
                .by_status
                .iter()
                .filter(|((e, _), _)| *e == ep)
                .map(|((_, code), n)| format!("{code}: {n}"))
                .collect();
            self.say(&format!(
                "   backend saw {:>2} {} requests ({})",
                counts.endpoint_total(ep),
                ep.name(),
                if by.is_empty() {
                    "none".to_string()
                } else {
                    by.join(", ")
                }
            ));
        }
        self.say("   (refused connections never reach the backend, so they are not counted)");
        self.say(&t.ok(&format!(
            "   all {} chapters ended in the expected state, in {:.1} s",
            self.passed.len(),
            started.elapsed().as_secs_f64()
        )));
    }
}

/// Runs the demo; exit 0 if every chapter ended as expected, 1 otherwise.
pub async fn run(args: DemoArgs) -> Result<u8, CliError> {
    let started = std::time::Instant::now();
    let backend = Backend::start(BackendConfig {
        https_port: Some(0),
        ..BackendConfig::default()
    })
    .await
    .map_err(|e| CliError::Runtime(format!("cannot start the backend: {e}")))?;
    let control = backend.control();
    let (base, ca) = if args.http {
        (backend.http_url(), None)
    } else {
        let url = backend
            .https_url()
            .ok_or_else(|| CliError::Runtime("backend has no HTTPS listener".into()))?;
        (url, backend.ca_pem())
    };
    let cfg = demo_config(&base, ca, args.seed);
    let gate = AccessGate::spawn(cfg).map_err(gate_error)?;
    let obs = Observer::new(&gate, Output::Timeline, args.color.enabled());
    let mut demo = Demo {
        obs,
        gate: gate.clone(),
        control,
        chapter_mark: 0,
        history_mark: 0,
        passed: Vec::new(),
    };
    let t = &demo.obs.timeline;
    demo.say(&t.heading("accessgate demo: a real gate against the reference backend, time compressed"));
    demo.say(&format!(
        "   backend  {base}{}  (and {})",
        if ca.is_some() {
            " trusting the freshly generated test CA"
        } else {
            ""
        },
        if args.http {
            backend.https_url().unwrap_or_default()
        } else {
            backend.http_url()
        }
    ));
    demo.say(&format!("   schedule {}", schedule_text()));
    demo.say("");
    demo.say(&demo.obs.timeline.header());

    let mut code = 0;
    for n in 1..=CHAPTERS {
        let result = match n {
            1 => demo.ch1_sign_in().await,
            2 => demo.ch2_refresh().await,
            3 => demo.ch3_short_outage().await,
            4 => demo.ch4_recovery().await,
            5 => demo.ch5_long_outage().await,
            6 => demo.ch6_back().await,
            7 => demo.ch7_revoked().await,
            8 => demo.ch8_portal().await,
            9 => demo.ch9_unauthorized().await,
            10 => demo.ch10_logout_mid_refresh().await,
            11 => demo.ch11_forbidden_refresh().await,
            _ => demo.ch12_superseded().await,
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(Failed(why))) => {
                demo.say(&demo.obs.timeline.bad(&format!("   ✘ {why}")));
                code = 1;
                break;
            }
            Err(e) => {
                demo.say(&demo.obs.timeline.bad(&format!("   ✘ demo error: {e}")));
                code = 1;
                break;
            }
        }
    }
    // A short tail so late events show, then the summary.
    demo.obs.follow_for(Duration::from_millis(200)).await;
    if code == 0 {
        demo.summary(started);
    } else {
        demo.say(&demo.obs.timeline.bad(&format!(
            "demo FAILED after {} of {CHAPTERS} chapters ({:.1} s)",
            demo.passed.len(),
            started.elapsed().as_secs_f64()
        )));
    }
    gate.shutdown().await;
    backend.shutdown().await;
    Ok(code)
}
