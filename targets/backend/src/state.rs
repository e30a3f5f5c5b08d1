//! Shared server state and the synchronous [`Control`] handle that steers it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::server::ListenerSlot;

/// One of the two endpoints of the backend contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /api/code/invites/check-access/`.
    Check,
    /// `POST /oauth/token`.
    Token,
}

impl Endpoint {
    /// Both endpoints, in a fixed order.
    pub const ALL: [Endpoint; 2] = [Endpoint::Check, Endpoint::Token];

    /// Lower-case name used by the control surface and in JSON (`"check"`, `"token"`).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Check => "check",
            Endpoint::Token => "token",
        }
    }

    fn index(self) -> usize {
        match self {
            Endpoint::Check => 0,
            Endpoint::Token => 1,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "check" => Ok(Endpoint::Check),
            "token" => Ok(Endpoint::Token),
            other => Err(format!("unknown endpoint {other:?} (expected check or token)")),
        }
    }
}

/// A fault injected into the answers of one endpoint (or, for [`Fault::Refused`], the whole
/// server).
///
/// The exact bytes each variant produces are listed in the crate documentation
/// (section "Faults"). Hostile answers are always followed by closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Outage: both listeners (HTTP and HTTPS) stop listening, so connects are refused, and
    /// open connections are closed without an answer. Global: applies to both endpoints and
    /// to the control surface. Clearing it re-binds the same ports.
    Refused,
    /// Answer every request with this status code, an optional `Retry-After: <secs>` header
    /// and a small JSON body `{"detail":"injected status <code>"}`.
    Status {
        /// The status code to answer with (e.g. 503, 429, 403, 500).
        code: u16,
        /// Value of the `Retry-After` header in seconds, if any.
        retry_after: Option<u32>,
    },
    /// Read the request but never answer; the connection stays open until the client gives
    /// up (or the fault is superseded by `Refused`, or the server shuts down).
    Hang,
    /// `200` with `Content-Type: text/html` and a captive-portal sign-in page.
    HtmlPortal,
    /// `200 {"has_access":"true"}` (a string, not a boolean).
    WrongType,
    /// `200 {"has_access":null}`.
    NullValue,
    /// `200 {"other":1}`.
    MissingField,
    /// `200 {"has_access":false,"has_access":true}`.
    DuplicateKey,
    /// `200 {"has_access":true}xyz`.
    TrailingGarbage,
    /// `200` with `Content-Length: 100` but only a 16-byte partial body, then close.
    Truncated,
    /// `200` with a 65 536-byte body: a valid JSON object with `"has_access":true` and a huge
    /// `"padding"` string.
    Oversized,
    /// `200` with `Transfer-Encoding: chunked`: one valid chunk holding
    /// `{"has_access":true}`, then the invalid chunk-size line `zz`, no terminating chunk,
    /// then close.
    BrokenChunked,
}

impl Fault {
    /// Control-surface name of the fault (`refused`, `status`, `hang`, `html_portal`,
    /// `wrong_type`, `null_value`, `missing_field`, `duplicate_key`, `trailing_garbage`,
    /// `truncated`, `oversized`, `broken_chunked`).
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Refused => "refused",
            Fault::Status { .. } => "status",
            Fault::Hang => "hang",
            Fault::HtmlPortal => "html_portal",
            Fault::WrongType => "wrong_type",
            Fault::NullValue => "null_value",
            Fault::MissingField => "missing_field",
            Fault::DuplicateKey => "duplicate_key",
            Fault::TrailingGarbage => "trailing_garbage",
            Fault::Truncated => "truncated",
            Fault::Oversized => "oversized",
            Fault::BrokenChunked => "broken_chunked",
        }
    }

    /// Parse a control-surface name; `code` and `retry_after` are only used by `status`
    /// (where `code` is required).
    pub fn from_name(name: &str, code: Option<u16>, retry_after: Option<u32>) -> Result<Fault, String> {
        Ok(match name {
            "refused" => Fault::Refused,
            "status" => Fault::Status {
                code: code.ok_or("fault=status needs code=<status>")?,
                retry_after,
            },
            "hang" => Fault::Hang,
            "html_portal" => Fault::HtmlPortal,
            "wrong_type" => Fault::WrongType,
            "null_value" => Fault::NullValue,
            "missing_field" => Fault::MissingField,
            "duplicate_key" => Fault::DuplicateKey,
            "trailing_garbage" => Fault::TrailingGarbage,
            "truncated" => Fault::Truncated,
            "oversized" => Fault::Oversized,
            "broken_chunked" => Fault::BrokenChunked,
            other => return Err(format!("unknown fault {other:?}")),
        })
    }
}

/// Capacity limit of one endpoint (see the crate documentation, section "Capacity").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Requests admitted per whole second of server uptime.
    pub per_second: u32,
    /// When `true`, rejected requests carry `Retry-After` pointing at a reserved future slot;
    /// when `false` they get a bare `503`.
    pub retry_after: bool,
}

/// An access/refresh token pair issued through [`Control::issue_token`] or the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// Bearer token for the check endpoint (`at_` + 32 hex digits).
    pub access_token: String,
    /// Refresh token for the token endpoint (`rt_` + 32 hex digits).
    pub refresh_token: String,
    /// Lifetime of the access token in whole seconds (the `expires_in` of the token endpoint).
    pub expires_in_secs: u64,
}

/// Request counters, a snapshot taken by [`Control::counts`].
///
/// Every request to one of the two endpoints is counted once, when it arrives, under the
/// status the server decided to answer with (hostile 200 bodies count as 200). A request that
/// is never answered ([`Fault::Hang`]) counts under status `0`. Requests arriving while
/// [`Fault::Refused`] is active are not counted (they get no answer at all). Control-surface
/// requests are not counted; requests to other paths count in [`Counts::other`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests per endpoint and answered status code.
    pub by_status: BTreeMap<(Endpoint, u16), u64>,
    /// Requests to paths that are neither endpoint nor control surface (answered 404/405).
    pub other: u64,
}

impl Counts {
    /// Requests to `endpoint` answered with `status` (0 = never answered).
    pub fn get(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.by_status.get(&(endpoint, status)).copied().unwrap_or(0)
    }

    /// All requests to `endpoint`, whatever the status.
    pub fn endpoint_total(&self, endpoint: Endpoint) -> u64 {
        self.by_status
            .iter()
            .filter(|((e, _), _)| *e == endpoint)
            .map(|(_, n)| *n)
            .sum()
    }

    /// All requests to both endpoints.
    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }

    /// The counters as JSON:
    /// `{"check":{"total":N,"by_status":{"200":N,...}},"token":{...},"other":N,"total":N}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        for ep in Endpoint::ALL {
            let mut by = serde_json::Map::new();
            for ((e, code), n) in &self.by_status {
                if *e == ep {
                    by.insert(code.to_string(), (*n).into());
                }
            }
            root.insert(
                ep.name().to_string(),
                serde_json::json!({ "total": self.endpoint_total(ep), "by_status": by }),
            );
        }
        root.insert("other".into(), self.other.into());
        root.insert("total".into(), self.total().into());
        serde_json::Value::Object(root)
    }
}

/// An expiry that stands for "never": a century, far from `Instant` overflow.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[derive(Debug)]
struct AccessEntry {
    user: String,
    expires_at: Instant,
}

#[derive(Debug)]
struct RefreshEntry {
    user: String,
    ttl: Duration,
}

#[derive(Debug, Default)]
struct EndpointState {
    fault: Option<Fault>,
    /// Bumped whenever `fault` changes; lets timed control-surface faults clear only their own.
    fault_gen: u64,
    latency: Duration,
    capacity: Option<Capacity>,
    ledger: Ledger,
}

/// Admissions and `Retry-After` slots of one endpoint under a [`Capacity`], in O(1) per
/// request (issue 14: walking every reserved second made each batch of checks slower).
///
/// Slots are handed out in order, from the second after the current one, `per_second` per
/// second. So every second between the current one and `slot_second` is full, and only
/// the last one handed out can have room: two counters describe all reservations.
#[derive(Debug, Default)]
struct Ledger {
    /// The second of uptime `admitted` counts for.
    second: u64,
    /// Requests admitted in `second`.
    admitted: u32,
    /// The latest second with `Retry-After` slots handed out (none yet: 0).
    slot_second: u64,
    /// Slots handed out for `slot_second`.
    slots_taken: u32,
    /// Work done so far, for the regression test that admission stays O(1).
    steps: u64,
}

impl Ledger {
    /// Admits or rejects one request arriving in second `now` of uptime.
    fn admit(&mut self, cap: Capacity, now: u64) -> Admission {
        self.steps += 1;
        if now != self.second {
            self.second = now;
            self.admitted = 0;
        }
        if self.admitted < cap.per_second {
            self.admitted += 1;
            return Admission::Admit;
        }
        if !cap.retry_after || cap.per_second == 0 {
            return Admission::Reject(None);
        }
        if self.slot_second <= now {
            // Every earlier reservation is for a second that has begun: start afresh.
            self.slot_second = now.saturating_add(1);
            self.slots_taken = 0;
        }
        if self.slots_taken >= cap.per_second {
            self.slot_second = self.slot_second.saturating_add(1);
            self.slots_taken = 0;
        }
        self.slots_taken += 1;
        Admission::Reject(Some(u32::try_from(self.slot_second - now).unwrap_or(u32::MAX)))
    }
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, bool>,
    access: HashMap<String, AccessEntry>,
    refresh: HashMap<String, RefreshEntry>,
    endpoints: [EndpointState; 2],
    refused: bool,
    refused_gen: u64,
    counts: Counts,
    issued: u64,
}

impl State {
    fn ep(&mut self, e: Endpoint) -> &mut EndpointState {
        &mut self.endpoints[e.index()]
    }

    fn mint(&mut self, user: &str, ttl: Duration, now: Instant) -> TokenPair {
        self.users.entry(user.to_string()).or_insert(true);
        let access_token = random_token("at_");
        let refresh_token = random_token("rt_");
        // Saturating: a lifetime of u64::MAX seconds (control surface) means "never expires",
        // not an overflow that kills the connection task (issue 14 item 8).
        let expires_at = now.checked_add(ttl).unwrap_or_else(|| now + NEVER);
        self.access.insert(
            access_token.clone(),
            AccessEntry {
                user: user.to_string(),
                expires_at,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            RefreshEntry {
                user: user.to_string(),
                ttl,
            },
        );
        self.issued += 1;
        if self.issued & 1023 == 0 {
            self.access.retain(|_, a| a.expires_at > now);
        }
        TokenPair {
            access_token,
            refresh_token,
            expires_in_secs: ttl.as_secs(),
        }
    }
}

fn random_token(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::rng().random();
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Outcome of the capacity check for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Admit,
    /// Answer 503; `Some(secs)` means with `Retry-After: secs`.
    Reject(Option<u32>),
}

/// Outcome of a check request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckOutcome {
    Access(bool),
    Unauthorized,
}

/// Outcome of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenOutcome {
    Issued(TokenPair),
    /// 400 with `{"error": <code>}`.
    BadRequest(&'static str),
    /// 401 `{"error":"invalid_client"}`.
    InvalidClient,
}

/// State shared by the listeners, the connection tasks and every [`Control`].
pub(crate) struct Shared {
    pub(crate) client_id: String,
    pub(crate) epoch: Instant,
    state: Mutex<State>,
    pub(crate) refused_tx: watch::Sender<bool>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) listeners: Vec<Arc<ListenerSlot>>,
    pub(crate) handle: tokio::runtime::Handle,
}

impl Shared {
    pub(crate) fn new(
        client_id: String,
        listeners: Vec<Arc<ListenerSlot>>,
        handle: tokio::runtime::Handle,
    ) -> Shared {
        Shared {
            client_id,
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
            refused_tx: watch::channel(false).0,
            shutdown_tx: watch::channel(false).0,
            listeners,
            handle,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters for a test server, so recover from poisoning instead of propagating it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_refused(&self) -> bool {
        *self.refused_tx.borrow()
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        *self.shutdown_tx.borrow()
    }

    fn second_now(&self) -> u64 {
        Instant::now().saturating_duration_since(self.epoch).as_secs()
    }

    /// Capacity check at request arrival (see crate docs, "Capacity").
    pub(crate) fn admit(&self, ep: Endpoint) -> Admission {
        let now = self.second_now();
        let mut st = self.lock();
        let eps = st.ep(ep);
        match eps.capacity {
            None => Admission::Admit,
            Some(cap) => eps.ledger.admit(cap, now),
        }
    }

    pub(crate) fn fault(&self, ep: Endpoint) -> Option<Fault> {
        self.lock().ep(ep).fault.clone()
    }

    pub(crate) fn latency(&self, ep: Endpoint) -> Duration {
        self.lock().ep(ep).latency
    }

    pub(crate) fn count(&self, ep: Option<Endpoint>, status: u16) {
        let mut st = self.lock();
        match ep {
            Some(ep) => *st.counts.by_status.entry((ep, status)).or_insert(0) += 1,
            None => st.counts.other += 1,
        }
    }

    pub(crate) fn check(&self, bearer: Option<&str>) -> CheckOutcome {
        let Some(token) = bearer else {
            return CheckOutcome::Unauthorized;
        };
        let now = Instant::now();
        let st = self.lock();
        match st.access.get(token) {
            Some(a) if a.expires_at > now => {
                CheckOutcome::Access(st.users.get(&a.user).copied().unwrap_or(true))
            }
            _ => CheckOutcome::Unauthorized,
        }
    }

    pub(crate) fn refresh(&self, form: &[(String, String)]) -> TokenOutcome {
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(grant), Some(rt)) = (get("grant_type"), get("refresh_token")) else {
            return TokenOutcome::BadRequest("invalid_request");
        };
        if grant != "refresh_token" {
            return TokenOutcome::BadRequest("unsupported_grant_type");
        }
        match get("client_id") {
            None => return TokenOutcome::BadRequest("invalid_request"),
            Some(id) if id != self.client_id => return TokenOutcome::InvalidClient,
            Some(_) => {}
        }
        let now = Instant::now();
        let mut st = self.lock();
        let Some(entry) = st.refresh.remove(rt) else {
            return TokenOutcome::BadRequest("invalid_grant");
        };
        TokenOutcome::Issued(st.mint(&entry.user, entry.ttl, now))
    }

    fn set_refused(&self, on: bool) {
        let changed = {
            let mut st = self.lock();
            let changed = st.refused != on;
            st.refused = on;
            st.refused_gen += 1;
            changed
        };
        if !changed {
            return;
        }
        self.refused_tx.send_replace(on);
        for slot in &self.listeners {
            if on {
                slot.close();
            } else if !self.is_shutdown() {
                slot.reopen(&self.handle);
            }
        }
        if on {
            log::info!("fault: refused (listeners closed)");
        } else {
            log::info!("fault cleared: refused (listeners re-opened)");
        }
    }

    /// Set a fault; returns a generation token that [`Shared::clear_fault_if`] accepts.
    pub(crate) fn set_fault(&self, ep: Endpoint, fault: Option<Fault>) -> u64 {
        match fault {
            Some(Fault::Refused) => {
                self.set_refused(true);
                self.lock().refused_gen
            }
            other => {
                let gen = {
                    let mut st = self.lock();
                    let eps = st.ep(ep);
                    log::info!("fault on {ep}: {other:?}");
                    eps.fault = other.clone();
                    eps.fault_gen += 1;
                    eps.fault_gen
                };
                if other.is_none() {
                    self.set_refused(false);
                }
                gen
            }
        }
    }

    /// Clear the fault set with generation `gen` unless something changed it since.
    pub(crate) fn clear_fault_if(&self, ep: Endpoint, refused: bool, gen: u64) {
        if refused {
            let current = self.lock().refused_gen;
            if current == gen {
                self.set_refused(false);
            }
        } else {
            let mut st = self.lock();
            let eps = st.ep(ep);
            if eps.fault_gen == gen {
                log::info!("timed fault on {ep} expired");
                eps.fault = None;
                eps.fault_gen += 1;
            }
        }
    }
}

/// A cheap, cloneable handle that steers a running [`Backend`](crate::Backend).
///
/// All methods are synchronous (they take a short mutex, never block on I/O) and can be
/// called from async code, plain threads or the control surface alike. Changes apply to
/// requests that arrive afterwards.
#[derive(Clone)]
pub struct Control {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    /// Issue a fresh token pair for `user` (creating the user, with access granted, if new).
    /// The access token is valid for `expires_in` from now; tokens minted later by refreshing
    /// this pair get the same lifetime.
    pub fn issue_token(&self, user: &str, expires_in: Duration) -> TokenPair {
        let now = Instant::now();
        let pair = self.shared.lock().mint(user, expires_in, now);
        log::debug!("issued token pair for {user} (ttl {expires_in:?})");
        pair
    }

    /// Grant (`true`) or deny (`false`) access for `user`; applies to all of the user's
    /// tokens, existing and future. Users are granted by default.
    pub fn set_access(&self, user: &str, has_access: bool) {
        log::info!("access for {user}: {has_access}");
        self.shared.lock().users.insert(user.to_string(), has_access);
    }

    /// The access flag of `user`, if the user is known.
    pub fn access(&self, user: &str) -> Option<bool> {
        self.shared.lock().users.get(user).copied()
    }

    /// Make `access_token` unusable: the check endpoint answers 401 for it from now on.
    /// Unknown tokens are ignored.
    pub fn expire_token(&self, access_token: &str) {
        self.shared.lock().access.remove(access_token);
    }

    /// Revoke `refresh_token`: the token endpoint answers `400 {"error":"invalid_grant"}` for
    /// it from now on. Unknown tokens are ignored.
    pub fn revoke_refresh(&self, refresh_token: &str) {
        self.shared.lock().refresh.remove(refresh_token);
    }

    /// Inject (`Some`) or clear (`None`) a fault on `endpoint`.
    ///
    /// [`Fault::Refused`] is global whichever endpoint is named: the listeners are closed
    /// before this returns (connects are refused at once) and clearing it re-binds the same
    /// ports before returning. `set_fault(e, None)` clears the fault of `e` **and** a
    /// `Refused` outage.
    pub fn set_fault(&self, endpoint: Endpoint, fault: Option<Fault>) {
        self.shared.set_fault(endpoint, fault);
    }

    /// The fault currently set on `endpoint` (`Some(Fault::Refused)` while the outage is on).
    pub fn fault(&self, endpoint: Endpoint) -> Option<Fault> {
        if self.shared.is_refused() {
            return Some(Fault::Refused);
        }
        self.shared.fault(endpoint)
    }

    /// Clear all faults, latencies and capacity limits (tokens, users and counts are kept).
    pub fn clear_all(&self) {
        for ep in Endpoint::ALL {
            self.set_fault(ep, None);
            self.set_latency(ep, Duration::ZERO);
            self.set_capacity(ep, None);
        }
    }

    /// Delay every answer of `endpoint` by `d` (applied after the request was read, before
    /// the answer or hostile body is written). `Duration::ZERO` removes the delay.
    pub fn set_latency(&self, endpoint: Endpoint, d: Duration) {
        self.shared.lock().ep(endpoint).latency = d;
    }

    /// Limit `endpoint` to `cap.per_second` requests per second of uptime (`None` = no
    /// limit). Setting it forgets all earlier admissions and reservations.
    pub fn set_capacity(&self, endpoint: Endpoint, cap: Option<Capacity>) {
        let mut st = self.shared.lock();
        let eps = st.ep(endpoint);
        eps.capacity = cap;
        eps.ledger = Ledger::default();
    }

    /// Time since the server started: the clock of the capacity model (second `n` is
    /// `[n s, n+1 s)` of uptime).
    pub fn uptime(&self) -> Duration {
        Instant::now().saturating_duration_since(self.shared.epoch)
    }

    /// A snapshot of the request counters.
    pub fn counts(&self) -> Counts {
        self.shared.lock().counts.clone()
    }

    /// Reset all request counters to zero.
    pub fn reset_counts(&self) {
        self.shared.lock().counts = Counts::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_SLOTS: Capacity = Capacity {
        per_second: 2,
        retry_after: true,
    };

    #[test]
    fn slots_are_handed_out_in_order_and_time_moves_the_window() {
        let mut l = Ledger::default();
        let got: Vec<Admission> = (0..7).map(|_| l.admit(WITH_SLOTS, 10)).collect();
        use Admission::*;
        assert_eq!(
            got,
            [
                Admit,
                Admit,
                Reject(Some(1)),
                Reject(Some(1)),
                Reject(Some(2)),
                Reject(Some(2)),
                Reject(Some(3))
            ]
        );
        // Second 11: a fresh admission budget; slots continue after the last one handed out.
        assert_eq!(l.admit(WITH_SLOTS, 11), Admit);
        assert_eq!(l.admit(WITH_SLOTS, 11), Admit);
        assert_eq!(l.admit(WITH_SLOTS, 11), Reject(Some(2))); // second 13 has one slot left
        assert_eq!(l.admit(WITH_SLOTS, 11), Reject(Some(3)));
        // Long after every reserved second: slots start right after the current one.
        assert_eq!(l.admit(WITH_SLOTS, 100), Admit);
        assert_eq!(l.admit(WITH_SLOTS, 100), Admit);
        assert_eq!(l.admit(WITH_SLOTS, 100), Reject(Some(1)));
        let bare = Capacity {
            per_second: 1,
            retry_after: false,
        };
        let mut l = Ledger::default();
        assert_eq!(l.admit(bare, 0), Admit);
        assert_eq!(l.admit(bare, 0), Reject(None));
    }

    /// Issue 14 item 8: with 1/s and Retry-After, admission walked every reserved second, so
    /// each batch of checks took longer than the last. Admission is O(1): N requests in
    /// one second cost a bounded number of steps each, however many slots are out.
    #[test]
    fn retry_after_admission_does_constant_work_per_request() {
        const N: u64 = 100_000;
        let cap = Capacity {
            per_second: 1,
            retry_after: true,
        };
        let mut l = Ledger::default();
        assert_eq!(l.admit(cap, 0), Admission::Admit);
        for k in 1..N {
            let want = u32::try_from(k).expect("small");
            assert_eq!(l.admit(cap, 0), Admission::Reject(Some(want)));
        }
        assert!(l.steps <= 3 * N, "{} steps for {N} admissions", l.steps);
    }
}
