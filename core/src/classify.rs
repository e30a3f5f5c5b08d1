//! Response classification shared by every adapter: `(status, Retry-After, body)` →
//! [`CheckOutcome`] (R1, R2, R4, R8).
//!
//! The body is hostile input. It is read in one strict pass (`json::scan`): bounded,
//! iterative (a fixed nesting limit, no recursion that a deep body could use to exhaust a
//! microcontroller's stack) and allocation-free. The pass validates the whole body as JSON and
//! compares the top-level keys as JSON defines them, after unescaping, so `"has\u005faccess"`
//! is `has_access` and a body spelling it twice has a duplicate key (R1).
//!
//! Anything that is not a well-formed JSON object with exactly one `has_access`, a boolean, is
//! transient, never a denial: a captive portal answers 200 with HTML (R4).

use crate::detail::FailureDetail;
use crate::json::{self, JsonStr, JsonValue, Top};
use crate::time::Duration;

/// Deepest nesting of arrays and objects accepted in a check body.
pub const MAX_JSON_DEPTH: u32 = 16;

/// Why a failed attempt failed. Every class is transient (R4): it never changes access before
/// the fail-closed deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum TransientClass {
    /// The TCP connection could not be made (refused, unreachable).
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed (including certificate verification).
    Tls,
    /// The attempt did not finish within the per-attempt timeout.
    Timeout,
    /// The connection broke mid-response: reset, truncated body, broken chunked framing.
    Io,
    /// `403`: the token may be stale; the session layer refreshes early (R9).
    Forbidden,
    /// `429`: throttled.
    Throttled,
    /// `5xx`.
    ServerError,
    /// Any other status that is neither 200 nor 401 (404, 408, 3xx, ...).
    OtherStatus,
    /// `200` whose body fails R1: HTML, wrong type, duplicate key, oversized, ...
    InvalidBody,
    /// The access token had expired and a refresh is still pending, so the check was not
    /// sent (the session layer answers it; R11).
    TokenExpired,
}

impl TransientClass {
    /// Number of classes, for per-class counter arrays.
    pub const COUNT: usize = 11;
    /// Every class, in counter order.
    pub const ALL: [TransientClass; Self::COUNT] = [
        TransientClass::Connect,
        TransientClass::Dns,
        TransientClass::Tls,
        TransientClass::Timeout,
        TransientClass::Io,
        TransientClass::Forbidden,
        TransientClass::Throttled,
        TransientClass::ServerError,
        TransientClass::OtherStatus,
        TransientClass::InvalidBody,
        TransientClass::TokenExpired,
    ];
    /// Index of this class in [`TransientClass::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
    /// A short lowercase name, for logs and JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            TransientClass::Connect => "connect",
            TransientClass::Dns => "dns",
            TransientClass::Tls => "tls",
            TransientClass::Timeout => "timeout",
            TransientClass::Io => "io",
            TransientClass::Forbidden => "forbidden",
            TransientClass::Throttled => "throttled",
            TransientClass::ServerError => "server_error",
            TransientClass::OtherStatus => "other_status",
            TransientClass::InvalidBody => "invalid_body",
            TransientClass::TokenExpired => "token_expired",
        }
    }
}

/// The result of one check attempt, as the gate consumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CheckOutcome {
    /// `200 {"has_access": true}` (R1).
    Granted,
    /// `200 {"has_access": false}` (R2).
    Denied,
    /// `401`: the session is over (R8).
    Unauthorized,
    /// Anything else (R4).
    Transient {
        /// What went wrong.
        class: TransientClass,
        /// `Retry-After` (delay-seconds) of a 429 or 503, if the server sent one (R6).
        retry_after: Option<Duration>,
        /// What exactly went wrong (R13).
        detail: FailureDetail,
    },
}

impl CheckOutcome {
    /// A transient outcome without `Retry-After`, with the detail its class implies
    /// ([`FailureDetail::of_class`]).
    pub const fn transient(class: TransientClass) -> Self {
        Self::transient_with(class, FailureDetail::of_class(class))
    }
    /// A transient outcome without `Retry-After`, with its detail (R13); what adapters report
    /// for transport and TLS errors.
    ///
    /// ```
    /// use accessgate::{CheckOutcome, FailureDetail, NetFailure, TransientClass};
    /// let o = CheckOutcome::transient_with(TransientClass::Connect, FailureDetail::Net(NetFailure::Refused));
    /// assert!(!o.is_definitive());
    /// ```
    pub const fn transient_with(class: TransientClass, detail: FailureDetail) -> Self {
        CheckOutcome::Transient {
            class,
            retry_after: None,
            detail,
        }
    }
    /// The class of a transient outcome, `None` for the others.
    pub const fn class(&self) -> Option<TransientClass> {
        match self {
            CheckOutcome::Transient { class, .. } => Some(*class),
            _ => None,
        }
    }
    /// Whether this outcome is definitive (R1): only a grant or a denial is.
    pub const fn is_definitive(&self) -> bool {
        matches!(self, CheckOutcome::Granted | CheckOutcome::Denied)
    }
}

/// Why a check body is not definitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum BodyError {
    /// Longer than the configured maximum.
    TooLarge,
    /// Not UTF-8.
    NotUtf8,
    /// Not well-formed JSON (including trailing garbage and truncation).
    Malformed,
    /// Nested deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// Well-formed JSON, but not an object with exactly one boolean `has_access` (missing,
    /// duplicated under any spelling, or not a boolean).
    Schema,
    /// A token endpoint's 200 body that is well-formed JSON but not a usable token response
    /// (RFC 6749 §5.1): not an object; `access_token` or `expires_in` missing, of the wrong
    /// type or duplicated under any spelling; a token written with an escape, empty, longer
    /// than the session can store or not usable in a header; a `token_type` other than
    /// `Bearer`.
    TokenSchema,
}

impl core::fmt::Display for BodyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BodyError::TooLarge => "body larger than the limit",
            BodyError::NotUtf8 => "body is not UTF-8",
            BodyError::Malformed => "body is not well-formed JSON",
            BodyError::TooDeep => "body nests too deeply",
            BodyError::Schema => "body is not an object with a boolean `has_access`",
            BodyError::TokenSchema => "body is not a usable token response",
        })
    }
}

impl core::error::Error for BodyError {}

/// Classifies a check response. `retry_after` is the raw `Retry-After` header value, if any;
/// `max_body` is the largest body that may be definitive (R1; default 1 KiB). Adapters should
/// read at most `max_body + 1` bytes so an oversized body is detected without buffering it.
///
/// ```
/// use accessgate::{classify, CheckOutcome, TransientClass};
/// assert_eq!(classify(200, None, br#"{"has_access": true}"#, 1024), CheckOutcome::Granted);
/// assert_eq!(classify(200, None, b"<html>Log in to Wi-Fi</html>", 1024).class(),
///            Some(TransientClass::InvalidBody));
/// assert_eq!(classify(401, None, b"", 1024), CheckOutcome::Unauthorized);
/// ```
// Out of line: inlined into a driver's loop it costs more flash than the call (issue 11).
#[inline(never)]
pub fn classify(status: u16, retry_after: Option<&[u8]>, body: &[u8], max_body: usize) -> CheckOutcome {
    let class = match status {
        200 => {
            return match parse_check_body(body, max_body) {
                Ok(true) => CheckOutcome::Granted,
                Ok(false) => CheckOutcome::Denied,
                Err(e) => CheckOutcome::transient_with(TransientClass::InvalidBody, FailureDetail::Body(e)),
            }
        }
        401 => return CheckOutcome::Unauthorized, // R8
        403 => TransientClass::Forbidden,         // R4, R9
        429 => TransientClass::Throttled,
        500..=599 => TransientClass::ServerError,
        _ => TransientClass::OtherStatus,
    };
    // R6: Retry-After is honoured on 429 and 503 only.
    let retry_after = match status {
        429 | 503 => retry_after.and_then(parse_retry_after),
        _ => None,
    };
    CheckOutcome::Transient {
        class,
        retry_after,
        detail: FailureDetail::Status(status),
    }
}

/// Parses a `Retry-After` value in delay-seconds. HTTP-dates are not supported (the core has
/// no wall clock, R5) and give `None`, as do malformed values.
///
/// ```
/// use accessgate::{parse_retry_after, Duration};
/// assert_eq!(parse_retry_after(b" 7 "), Some(Duration::from_secs(7)));
/// assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
/// ```
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 10 {
        return None;
    }
    let mut secs: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        secs = secs * 10 + u64::from(c - b'0');
    }
    Some(Duration::from_secs(secs))
}

/// Applies R1 to a 200 body: `Ok(has_access)` only for a well-formed JSON object with exactly
/// one `has_access` key (compared after unescaping), whose value is a boolean. Other fields are
/// ignored, but must be valid JSON too.
///
/// ```
/// use accessgate::{parse_check_body, BodyError};
/// assert_eq!(parse_check_body(br#"{"has_access":false,"plan":"pro"}"#, 1024), Ok(false));
/// assert_eq!(parse_check_body(br#"{"has_access":"true"}"#, 1024), Err(BodyError::Schema));
/// assert_eq!(parse_check_body(br#"{"has_access":true}x"#, 1024), Err(BodyError::Malformed));
/// // The same key twice, once escaped: not definitive (R1).
/// assert_eq!(parse_check_body(br#"{"has_access":true,"has\u005faccess":false}"#, 1024), Err(BodyError::Schema));
/// ```
pub fn parse_check_body(body: &[u8], max_body: usize) -> Result<bool, BodyError> {
    if body.len() > max_body {
        return Err(BodyError::TooLarge);
    }
    let mut seen = 0u32;
    let mut value = None;
    let top = json::scan(body, |key, v| {
        if key.eq_ascii(b"has_access") {
            seen += 1;
            value = match v {
                JsonValue::Bool(b) => Some(b),
                _ => None, // R1: `"true"`, `1`, `null`, ... are not definitive
            };
        }
    })?;
    match (top, seen, value) {
        (Top::Object, 1, Some(b)) => Ok(b),
        _ => Err(BodyError::Schema), // not an object, missing, duplicated or not a boolean
    }
}

// ---- the token endpoint (R11), read as strictly as the check endpoint ----

/// What a refresh request produced, as the session consumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome<'a> {
    /// `200` with new tokens.
    Refreshed {
        /// The new access token.
        access_token: &'a [u8],
        /// The new refresh token, if the server rotated it.
        refresh_token: Option<&'a [u8]>,
        /// Lifetime of the new access token.
        expires_in: Duration,
    },
    /// `400 invalid_grant` or `401`: the refresh token is dead; the session ends (R11).
    Rejected,
    /// Anything else; retried with backoff (R11).
    Transient {
        /// What went wrong.
        class: TransientClass,
        /// What exactly went wrong (R13).
        detail: FailureDetail,
    },
}

impl RefreshOutcome<'_> {
    /// A transient outcome with the detail its class implies ([`FailureDetail::of_class`]).
    pub const fn transient(class: TransientClass) -> Self {
        Self::transient_with(class, FailureDetail::of_class(class))
    }
    /// A transient outcome with its detail (R13); what adapters report for transport and TLS
    /// errors on the token endpoint, as for checks ([`CheckOutcome::transient_with`]).
    ///
    /// ```
    /// use accessgate::{FailureDetail, RefreshOutcome, TlsFailure, TransientClass};
    /// let o = RefreshOutcome::transient_with(TransientClass::Tls, FailureDetail::Tls(TlsFailure::Expired));
    /// assert_eq!(o.class(), Some(TransientClass::Tls));
    /// ```
    pub const fn transient_with(class: TransientClass, detail: FailureDetail) -> Self {
        RefreshOutcome::Transient { class, detail }
    }
    /// The class of a transient outcome, `None` for the others.
    pub const fn class(&self) -> Option<TransientClass> {
        match self {
            RefreshOutcome::Transient { class, .. } => Some(*class),
            _ => None,
        }
    }
}

/// Classifies a token endpoint response, as strictly as R1: a malformed 200 is transient.
/// Transient outcomes carry their detail as [`classify`](fn@classify)'s do (R13): the status,
/// or why a 200 body is not a token response.
///
/// ```
/// use accessgate::{classify_refresh, BodyError, Duration, FailureDetail, RefreshOutcome, TransientClass};
/// let body = br#"{"access_token":"at_1","refresh_token":"rt_2","expires_in":3600,"token_type":"Bearer"}"#;
/// assert_eq!(
///     classify_refresh(200, body, 4096),
///     RefreshOutcome::Refreshed {
///         access_token: b"at_1",
///         refresh_token: Some(b"rt_2"),
///         expires_in: Duration::from_secs(3600),
///     }
/// );
/// assert_eq!(classify_refresh(400, br#"{"error":"invalid_grant"}"#, 4096), RefreshOutcome::Rejected);
/// assert_eq!(
///     classify_refresh(503, b"", 4096),
///     RefreshOutcome::transient_with(TransientClass::ServerError, FailureDetail::Status(503))
/// );
/// assert_eq!(
///     classify_refresh(200, b"<html>", 4096),
///     RefreshOutcome::transient_with(TransientClass::InvalidBody, FailureDetail::Body(BodyError::Malformed))
/// );
/// ```
pub fn classify_refresh(status: u16, body: &[u8], max_body: usize) -> RefreshOutcome<'_> {
    let class = match status {
        200 => {
            return match token_body(body, max_body) {
                Ok(t) => t,
                Err(e) => RefreshOutcome::transient_with(TransientClass::InvalidBody, FailureDetail::Body(e)),
            }
        }
        401 => return RefreshOutcome::Rejected,
        400 if error_is_invalid_grant(body, max_body) => return RefreshOutcome::Rejected,
        403 => TransientClass::Forbidden,
        429 => TransientClass::Throttled,
        500..=599 => TransientClass::ServerError,
        _ => TransientClass::OtherStatus,
    };
    RefreshOutcome::transient_with(class, FailureDetail::Status(status)) // R13
}

/// Reads a token endpoint's 200 body (RFC 6749 §5.1) in one strict pass, as strictly as R1
/// reads a check body: a well-formed JSON object; keys compared after unescaping; each of
/// `access_token`, `refresh_token`, `expires_in`, `token_type` at most once (a duplicate under
/// any spelling makes the answer malformed); other fields ignored. `access_token` (non-empty)
/// and `expires_in` (a non-negative integer of seconds) are required; `refresh_token` (non-empty)
/// and `token_type` (`Bearer`, any case) may be absent or `null`. Token values are handed out
/// as slices of the body, so a token written with a JSON escape is refused rather than
/// unescaped into a buffer (OAuth tokens are plain ASCII, RFC 6750 `b64token`).
/// Why it is not one is the detail of the failure (R13): too large, not UTF-8, malformed or too
/// deep as for a check body, else [`BodyError::TokenSchema`].
fn token_body(body: &[u8], max_body: usize) -> Result<RefreshOutcome<'_>, BodyError> {
    if body.len() > max_body {
        return Err(BodyError::TooLarge);
    }
    fn put<'a>(f: &mut Field<'a>, v: JsonValue<'a>) {
        *f = match f {
            Field::Absent => Field::Once(v),
            _ => Field::Twice,
        };
    }
    const KEYS: [&[u8]; 4] = [b"access_token", b"refresh_token", b"expires_in", b"token_type"];
    let mut fields = [Field::Absent; 4];
    let top = json::scan(body, |key: JsonStr<'_>, v| {
        if let Some(f) = KEYS
            .iter()
            .position(|k| key.eq_ascii(k))
            .and_then(|i| fields.get_mut(i))
        {
            put(f, v);
        }
    })?;
    match fields {
        [access, refresh, expires, kind] if top == Top::Object => {
            token_fields(access, refresh, expires, kind).ok_or(BodyError::TokenSchema)
        }
        _ => Err(BodyError::TokenSchema),
    }
}

/// The four fields of a token response (see [`token_body`]), each absent, once or twice.
#[derive(Clone, Copy)]
enum Field<'a> {
    Absent,
    Once(JsonValue<'a>),
    Twice,
}

/// The token response the fields make, `None` if they make none.
fn token_fields<'a>(
    access: Field<'a>,
    refresh: Field<'a>,
    expires: Field<'a>,
    kind: Field<'a>,
) -> Option<RefreshOutcome<'a>> {
    fn token(v: JsonValue<'_>) -> Option<&[u8]> {
        match v {
            JsonValue::Str(s) => s.unescaped().filter(|t| !t.is_empty()),
            _ => None,
        }
    }
    let Field::Once(a) = access else { return None };
    let access_token = token(a)?;
    let refresh_token = match refresh {
        Field::Absent | Field::Once(JsonValue::Null) => None,
        Field::Once(r) => Some(token(r)?),
        Field::Twice => return None,
    };
    let Field::Once(JsonValue::Number(n)) = expires else {
        return None;
    };
    let mut secs: u64 = 0;
    for &d in n {
        // Digits only: a sign, a fraction or an exponent is not a lifetime in seconds.
        if !d.is_ascii_digit() {
            return None;
        }
        secs = secs.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    match kind {
        Field::Absent | Field::Once(JsonValue::Null) => {}
        Field::Once(JsonValue::Str(t)) if t.eq_ascii_ignore_case(b"bearer") => {}
        _ => return None,
    }
    Some(RefreshOutcome::Refreshed {
        access_token,
        refresh_token,
        expires_in: Duration::from_secs(secs),
    })
}

/// Whether a 400 body is `{"error": "invalid_grant", ...}` (RFC 6749 §5.2), read as strictly
/// as a 200 body: exactly one `error` key, a string equal to `invalid_grant` after unescaping.
fn error_is_invalid_grant(body: &[u8], max_body: usize) -> bool {
    if body.len() > max_body {
        return false;
    }
    let (mut seen, mut grant) = (0u32, false);
    let top = json::scan(body, |key, v| {
        if key.eq_ascii(b"error") {
            seen += 1;
            grant = matches!(v, JsonValue::Str(s) if s.eq_ascii(b"invalid_grant"));
        }
    });
    top == Ok(Top::Object) && seen == 1 && grant
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    /// The outcome without its detail (the detail is pinned by its own tests).
    fn body(b: &[u8]) -> CheckOutcome {
        match classify(200, None, b, MAX) {
            CheckOutcome::Transient { class, .. } => CheckOutcome::transient(class),
            o => o,
        }
    }
    const INVALID: CheckOutcome = CheckOutcome::transient(TransientClass::InvalidBody);

    #[test]
    fn failures_carry_their_detail() {
        assert_eq!(
            classify(200, None, b"<html>", MAX),
            CheckOutcome::transient_with(
                TransientClass::InvalidBody,
                FailureDetail::Body(BodyError::Malformed)
            )
        );
        assert_eq!(
            classify(404, None, b"", MAX),
            CheckOutcome::transient_with(TransientClass::OtherStatus, FailureDetail::Status(404))
        );
        assert_eq!(
            classify(503, Some(b"3"), b"", MAX),
            CheckOutcome::Transient {
                class: TransientClass::ServerError,
                retry_after: Some(Duration::from_secs(3)),
                detail: FailureDetail::Status(503),
            }
        );
    }

    #[test]
    fn only_a_boolean_has_access_is_definitive() {
        assert_eq!(body(br#"{"has_access": true}"#), CheckOutcome::Granted);
        assert_eq!(body(br#"{"has_access": false}"#), CheckOutcome::Denied);
        assert_eq!(body(b" \n{ \"has_access\" : true } \r\n"), CheckOutcome::Granted);
    }

    #[test]
    fn other_fields_are_ignored_even_nested() {
        assert_eq!(
            body(br#"{"plan":"pro","n":-1.5e3,"x":[1,{"a":null}],"has_access":true,"z":{}}"#),
            CheckOutcome::Granted
        );
    }

    #[test]
    fn wrong_types_are_transient_never_denial() {
        for b in [
            &br#"{"has_access":"true"}"#[..],
            br#"{"has_access":1}"#,
            br#"{"has_access":0}"#,
            br#"{"has_access":null}"#,
            br#"{"has_access":[true]}"#,
            br#"{"has_access":{}}"#,
            br#"{"has_access":"false"}"#,
        ] {
            assert_eq!(body(b), INVALID, "{}", core::str::from_utf8(b).unwrap());
        }
    }

    #[test]
    fn missing_field_and_non_objects_are_transient() {
        for b in [
            &br#"{}"#[..],
            br#"{"other":true}"#,
            br#"[true]"#,
            br#"true"#,
            br#""has_access""#,
            b"null",
            b"",
            b"   ",
        ] {
            assert_eq!(body(b), INVALID, "{:?}", b);
        }
    }

    #[test]
    fn duplicate_key_is_transient() {
        assert_eq!(body(br#"{"has_access":false,"has_access":true}"#), INVALID);
        assert_eq!(body(br#"{"has_access":true,"has_access":true}"#), INVALID);
    }

    #[test]
    fn escaped_duplicate_of_has_access_is_not_definitive() {
        // Issue 14 item 1: both spellings are the same key after unescaping (R1), in either order.
        for b in [
            &br#"{"has_access": true, "has\u005faccess": false}"#[..],
            br#"{"has\u005faccess": false, "has_access": true}"#,
            br#"{"has_access": true, "has\u005Faccess": true}"#,
            br#"{"\u0068\u0061\u0073\u005f\u0061\u0063\u0063\u0065\u0073\u0073": true, "has_access": true}"#,
            br#"{"has\u005faccess": true, "x": 1, "has\u005faccess": true}"#,
        ] {
            assert_eq!(body(b), INVALID, "{}", core::str::from_utf8(b).unwrap());
            assert_eq!(parse_check_body(b, MAX), Err(BodyError::Schema));
        }
    }

    #[test]
    fn escaped_has_access_alone_is_definitive() {
        assert_eq!(body(br#"{"has\u005faccess": true}"#), CheckOutcome::Granted);
        assert_eq!(body(br#"{"has\u005Faccess": false}"#), CheckOutcome::Denied);
        assert_eq!(
            body(br#"{"\u0068as_access": true, "plan": "pro"}"#),
            CheckOutcome::Granted
        );
        // Other escapes that do not spell `has_access` are other keys, ignored.
        assert_eq!(
            body(br#"{"has\u005faccess\u0000": false, "has_access": true}"#),
            CheckOutcome::Granted
        );
        assert_eq!(
            body(br#"{"has\\access": false, "has_access": true}"#),
            CheckOutcome::Granted
        );
        assert_eq!(
            body(br#"{"HAS_ACCESS": false, "has_access": true}"#),
            CheckOutcome::Granted
        );
    }

    #[test]
    fn has_access_in_nested_objects_is_ignored_however_spelled() {
        assert_eq!(
            body(br#"{"x": {"has_access": false, "has\u005faccess": false}, "has_access": true}"#),
            CheckOutcome::Granted
        );
        assert_eq!(body(br#"{"x": {"has\u005faccess": true}}"#), INVALID);
        assert_eq!(body(br#"[{"has_access": true}]"#), INVALID);
        assert_eq!(
            body(br#"{"a": [{"has_access": true}], "has_access": false}"#),
            CheckOutcome::Denied
        );
    }

    #[test]
    fn invalid_escapes_and_surrogates_anywhere_are_transient() {
        for b in [
            &br#"{"has\u005": true}"#[..],
            br#"{"has\x5faccess": true}"#,
            br#"{"has_access": true, "x": "\ud800"}"#,
            br#"{"has_access": true, "x": "\udc00\ud800"}"#,
            br#"{"has_access\ud800": true}"#,
            br#"{"has_access": true, "x": {"\q": 1}}"#,
            br#"{"has_access": true, "x": "\u00zz"}"#,
        ] {
            assert_eq!(
                parse_check_body(b, MAX),
                Err(BodyError::Malformed),
                "{}",
                core::str::from_utf8(b).unwrap()
            );
        }
        // A surrogate pair is fine.
        assert_eq!(
            body(br#"{"x": "\ud83d\ude00", "has_access": true}"#),
            CheckOutcome::Granted
        );
    }

    #[test]
    fn control_characters_and_leading_zeros_are_transient() {
        assert_eq!(
            parse_check_body(b"{\"has_access\":true,\"x\":\"a\tb\"}", MAX),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            parse_check_body(b"{\"has_\naccess\":true}", MAX),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            parse_check_body(b"{\"has_access\":true,\"x\":\"\x00\"}", MAX),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            parse_check_body(br#"{"has_access":true,"n":007}"#, MAX),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            parse_check_body(br#"{"has_access":true,"n":-01.5}"#, MAX),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            parse_check_body(br#"{"has_access":true,"n":1.}"#, MAX),
            Err(BodyError::Malformed)
        );
        assert_eq!(
            parse_check_body(br#"{"has_access":true,"n":0.5e-3}"#, MAX),
            Ok(true)
        );
    }

    #[test]
    fn body_errors_say_why() {
        assert_eq!(parse_check_body(b"<html>", MAX), Err(BodyError::Malformed));
        assert_eq!(
            parse_check_body(b"{\"x\":\"\xc3\x28\"}", MAX),
            Err(BodyError::NotUtf8)
        );
        assert_eq!(
            parse_check_body(br#"{"has_access":true}"#, 10),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            parse_check_body(br#"{"x":[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]}"#, MAX),
            Err(BodyError::TooDeep)
        );
        assert_eq!(
            parse_check_body(br#"{"has_access":null}"#, MAX),
            Err(BodyError::Schema)
        );
        assert_eq!(
            parse_check_body(br#"{"has_access":true,"has_access":true}"#, MAX),
            Err(BodyError::Schema)
        );
        assert_eq!(parse_check_body(br#"[true]"#, MAX), Err(BodyError::Schema));
    }

    #[test]
    fn trailing_garbage_and_truncation_are_transient() {
        assert_eq!(body(br#"{"has_access":true}xyz"#), INVALID);
        assert_eq!(body(br#"{"has_access":true}{}"#), INVALID);
        assert_eq!(body(br#"{"has_access":tru"#), INVALID);
        assert_eq!(body(br#"{"has_access":true"#), INVALID);
        assert_eq!(body(br#"{"has_access":true,}"#), INVALID);
    }

    #[test]
    fn invalid_json_in_ignored_fields_is_transient() {
        assert_eq!(body(br#"{"x":nonsense,"has_access":true}"#), INVALID);
        assert_eq!(body(br#"{"x":01,"has_access":true}"#), INVALID);
        assert_eq!(body(br#"{"x":"a\qb","has_access":true}"#), INVALID);
        assert_eq!(body(b"{\"x\":\"a\x01b\",\"has_access\":true}"), INVALID);
    }

    #[test]
    fn html_captive_portal_is_transient() {
        assert_eq!(
            body(b"<!DOCTYPE html><html><body>Sign in to Hotel WiFi</body></html>"),
            INVALID
        );
    }

    #[test]
    fn oversized_body_is_transient_even_if_valid() {
        let mut big = [b' '; 2048];
        big[..20].copy_from_slice(br#"{"has_access": true}"#);
        assert_eq!(body(&big), INVALID);
        assert_eq!(classify(200, None, &big[..MAX], MAX), CheckOutcome::Granted);
        assert_eq!(parse_check_body(&big, MAX), Err(BodyError::TooLarge));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut deep = [b'['; 1000];
        deep[999] = b']';
        assert_eq!(parse_check_body(&deep, MAX), Err(BodyError::TooDeep));
        let ok = br#"{"a":[[[[[[[[[[[[[[1]]]]]]]]]]]]]],"has_access":true}"#;
        assert_eq!(parse_check_body(ok, MAX), Ok(true));
    }

    #[test]
    fn non_utf8_is_transient() {
        assert_eq!(
            parse_check_body(b"{\"has_access\":true,\"x\":\"\xff\"}", MAX),
            Err(BodyError::NotUtf8)
        );
    }

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(classify(401, None, b"", MAX), CheckOutcome::Unauthorized);
        // A 401 with a granting body is still a 401.
        assert_eq!(
            classify(401, None, br#"{"has_access":true}"#, MAX),
            CheckOutcome::Unauthorized
        );
        for (s, c) in [
            (403, TransientClass::Forbidden),
            (404, TransientClass::OtherStatus),
            (408, TransientClass::OtherStatus),
            (302, TransientClass::OtherStatus),
            (204, TransientClass::OtherStatus),
            (429, TransientClass::Throttled),
            (500, TransientClass::ServerError),
            (503, TransientClass::ServerError),
        ] {
            // A granting body never rescues a non-200 status (R1).
            assert_eq!(
                classify(s, None, br#"{"has_access":true}"#, MAX),
                CheckOutcome::transient_with(c, FailureDetail::Status(s)),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_is_taken_from_429_and_503_only() {
        let ra = Some(&b"12"[..]);
        let with = |class, status| CheckOutcome::Transient {
            class,
            retry_after: Some(Duration::from_secs(12)),
            detail: FailureDetail::Status(status),
        };
        assert_eq!(classify(429, ra, b"", MAX), with(TransientClass::Throttled, 429));
        assert_eq!(
            classify(503, ra, b"", MAX),
            with(TransientClass::ServerError, 503)
        );
        let server_error =
            |status| CheckOutcome::transient_with(TransientClass::ServerError, FailureDetail::Status(status));
        assert_eq!(classify(500, ra, b"", MAX), server_error(500));
        assert_eq!(classify(503, Some(b"soon"), b"", MAX), server_error(503));
    }

    #[test]
    fn retry_after_parsing_is_strict() {
        assert_eq!(parse_retry_after(b"0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(b"120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(b"-1"), None);
        assert_eq!(parse_retry_after(b"1.5"), None);
        assert_eq!(parse_retry_after(b""), None);
        assert_eq!(parse_retry_after(b"99999999999"), None);
    }

    #[test]
    fn retry_after_takes_up_to_ten_digits() {
        // R6: delay-seconds of ten digits is still a delay (the gate caps it); eleven is refused.
        assert_eq!(
            parse_retry_after(b"9999999999"),
            Some(Duration::from_secs(9_999_999_999))
        );
        assert_eq!(parse_retry_after(b" 0000000042\t"), Some(Duration::from_secs(42)));
        assert_eq!(parse_retry_after(b"00000000042"), None);
    }

    #[test]
    fn only_transient_refresh_outcomes_have_a_class() {
        // R11/R13: a refresh that produced tokens or was rejected has no failure class.
        assert_eq!(RefreshOutcome::Rejected.class(), None);
        let body = br#"{"access_token":"a","expires_in":60}"#;
        assert_eq!(classify_refresh(200, body, MAX).class(), None);
        for c in TransientClass::ALL {
            assert_eq!(RefreshOutcome::transient(c).class(), Some(c));
        }
        assert_eq!(
            classify_refresh(503, b"", MAX).class(),
            Some(TransientClass::ServerError)
        );
    }

    #[test]
    fn a_token_body_of_exactly_the_limit_is_read_one_byte_more_is_too_large() {
        // R11 reads token answers as R1 reads check bodies: `max_body` bytes are allowed.
        let body = br#"{"access_token":"at_1","expires_in":60}"#;
        let refreshed = RefreshOutcome::Refreshed {
            access_token: b"at_1",
            refresh_token: None,
            expires_in: Duration::from_secs(60),
        };
        assert_eq!(classify_refresh(200, body, body.len()), refreshed);
        assert_eq!(
            classify_refresh(200, body, body.len() - 1),
            RefreshOutcome::transient_with(
                TransientClass::InvalidBody,
                FailureDetail::Body(BodyError::TooLarge)
            )
        );
    }

    #[test]
    fn an_invalid_grant_body_counts_only_within_the_limit() {
        // R11: a 400 ends the session only on a body read as strictly as a 200's; one over
        // `max_body` is an ordinary 400 (transient), one of exactly `max_body` is read.
        let body = br#"{"error":"invalid_grant"}"#;
        assert_eq!(classify_refresh(400, body, body.len()), RefreshOutcome::Rejected);
        assert_eq!(
            classify_refresh(400, body, body.len() - 1),
            RefreshOutcome::transient_with(TransientClass::OtherStatus, FailureDetail::Status(400))
        );
    }

    #[test]
    fn only_transient_outcomes_have_a_class() {
        // R4/R13: the class names what went wrong; a definitive answer or a 401 has none.
        assert_eq!(CheckOutcome::Granted.class(), None);
        assert_eq!(CheckOutcome::Denied.class(), None);
        assert_eq!(CheckOutcome::Unauthorized.class(), None);
        for c in TransientClass::ALL {
            assert_eq!(CheckOutcome::transient(c).class(), Some(c));
        }
        assert_eq!(
            classify(429, Some(b"5"), b"", MAX).class(),
            Some(TransientClass::Throttled)
        );
    }
}
