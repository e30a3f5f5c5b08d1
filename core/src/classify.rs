//! Response classification shared by every adapter: `(status, Retry-After, body)` →
//! [`CheckOutcome`] (R1, R2, R4, R8).
//!
//! The body is hostile input. It is checked in two passes, both bounded and allocation-free:
//! 1. a small iterative JSON well-formedness scan with a fixed nesting limit, because
//!    serde-json-core skips unknown fields loosely (it accepts invalid scalars there) and
//!    recursively (a deeply nested body could exhaust a microcontroller's stack);
//! 2. serde-json-core extracts `has_access` as a strict `bool`; serde's derive rejects a
//!    duplicate key, a wrong type, `null`, or a missing field.
//!
//! Anything that is not a well-formed JSON object whose `has_access` is a boolean is
//! transient, never a denial: a captive portal answers 200 with HTML (R4).

use crate::detail::FailureDetail;
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
    /// Well-formed JSON, but not an object with exactly one boolean `has_access`.
    Schema,
}

impl core::fmt::Display for BodyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BodyError::TooLarge => "body larger than the limit",
            BodyError::NotUtf8 => "body is not UTF-8",
            BodyError::Malformed => "body is not well-formed JSON",
            BodyError::TooDeep => "body nests too deeply",
            BodyError::Schema => "body is not an object with a boolean `has_access`",
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

#[derive(serde::Deserialize)]
struct CheckBody {
    has_access: bool,
}

/// Applies R1 to a 200 body: `Ok(has_access)` only for a well-formed JSON object whose
/// `has_access` is a boolean (other fields are ignored, duplicates of `has_access` refused).
///
/// ```
/// use accessgate::{parse_check_body, BodyError};
/// assert_eq!(parse_check_body(br#"{"has_access":false,"plan":"pro"}"#, 1024), Ok(false));
/// assert_eq!(parse_check_body(br#"{"has_access":"true"}"#, 1024), Err(BodyError::Schema));
/// assert_eq!(parse_check_body(br#"{"has_access":true}x"#, 1024), Err(BodyError::Malformed));
/// ```
pub fn parse_check_body(body: &[u8], max_body: usize) -> Result<bool, BodyError> {
    if body.len() > max_body {
        return Err(BodyError::TooLarge);
    }
    if core::str::from_utf8(body).is_err() {
        return Err(BodyError::NotUtf8);
    }
    json_well_formed(body)?;
    match serde_json_core::from_slice::<CheckBody>(body) {
        Ok((b, _)) => Ok(b.has_access),
        Err(_) => Err(BodyError::Schema),
    }
}

/// Iterative JSON syntax check (RFC 8259 grammar) with a nesting limit; no recursion, no
/// allocation, one pass. The container stack is a bit set (1 = object, 0 = array).
pub(crate) fn json_well_formed(b: &[u8]) -> Result<(), BodyError> {
    #[derive(PartialEq, Clone, Copy)]
    enum S {
        Value,
        ValueOrClose,
        KeyOrClose,
        Key,
        Colon,
        After,
    }
    let mut stack: u32 = 0;
    let mut depth: u32 = 0;
    let mut s = S::Value;
    let mut i = 0usize;
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return if depth == 0 && s == S::After {
                Ok(())
            } else {
                Err(BodyError::Malformed)
            };
        };
        match s {
            S::Value | S::ValueOrClose => {
                if s == S::ValueOrClose && c == b']' {
                    stack >>= 1;
                    depth -= 1;
                    s = S::After;
                    i += 1;
                    continue;
                }
                match c {
                    b'{' | b'[' => {
                        if depth >= MAX_JSON_DEPTH {
                            return Err(BodyError::TooDeep);
                        }
                        stack = (stack << 1) | u32::from(c == b'{');
                        depth += 1;
                        s = if c == b'{' { S::KeyOrClose } else { S::ValueOrClose };
                        i += 1;
                    }
                    b'"' => {
                        i = string_end(b, i)?;
                        s = S::After;
                    }
                    b't' => {
                        i = literal_end(b, i, b"true")?;
                        s = S::After;
                    }
                    b'f' => {
                        i = literal_end(b, i, b"false")?;
                        s = S::After;
                    }
                    b'n' => {
                        i = literal_end(b, i, b"null")?;
                        s = S::After;
                    }
                    b'-' | b'0'..=b'9' => {
                        i = number_end(b, i)?;
                        s = S::After;
                    }
                    _ => return Err(BodyError::Malformed),
                }
            }
            S::KeyOrClose | S::Key => {
                if s == S::KeyOrClose && c == b'}' {
                    stack >>= 1;
                    depth -= 1;
                    s = S::After;
                    i += 1;
                    continue;
                }
                if c != b'"' {
                    return Err(BodyError::Malformed);
                }
                i = string_end(b, i)?;
                s = S::Colon;
            }
            S::Colon => {
                if c != b':' {
                    return Err(BodyError::Malformed);
                }
                i += 1;
                s = S::Value;
            }
            S::After => {
                if depth == 0 {
                    return Err(BodyError::Malformed); // trailing garbage
                }
                let in_object = stack & 1 == 1;
                match c {
                    b',' => s = if in_object { S::Key } else { S::Value },
                    b'}' if in_object => {
                        stack >>= 1;
                        depth -= 1;
                    }
                    b']' if !in_object => {
                        stack >>= 1;
                        depth -= 1;
                    }
                    _ => return Err(BodyError::Malformed),
                }
                i += 1;
            }
        }
    }
}

fn string_end(b: &[u8], start: usize) -> Result<usize, BodyError> {
    let mut j = start + 1;
    while let Some(&c) = b.get(j) {
        match c {
            b'"' => return Ok(j + 1),
            b'\\' => match b.get(j + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                Some(b'u') => {
                    let hex = b.get(j + 2..j + 6).ok_or(BodyError::Malformed)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(BodyError::Malformed);
                    }
                    j += 6;
                }
                _ => return Err(BodyError::Malformed),
            },
            0..=0x1f => return Err(BodyError::Malformed),
            _ => j += 1,
        }
    }
    Err(BodyError::Malformed)
}

fn literal_end(b: &[u8], start: usize, lit: &[u8]) -> Result<usize, BodyError> {
    match b.get(start..start + lit.len()) {
        Some(s) if s == lit => Ok(start + lit.len()),
        _ => Err(BodyError::Malformed),
    }
}

fn number_end(b: &[u8], start: usize) -> Result<usize, BodyError> {
    let digits = |mut j: usize| {
        let from = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        (j, j - from)
    };
    let mut j = start;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j).0,
        _ => return Err(BodyError::Malformed),
    }
    if b.get(j) == Some(&b'.') {
        let (k, n) = digits(j + 1);
        if n == 0 {
            return Err(BodyError::Malformed);
        }
        j = k;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let (k, n) = digits(j);
        if n == 0 {
            return Err(BodyError::Malformed);
        }
        j = k;
    }
    Ok(j)
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
    fn well_formedness_agrees_with_serde_json_on_samples() {
        let samples: [&[u8]; 14] = [
            b"{}",
            b"[]",
            b"[1,2]",
            b"[1,]",
            b"{\"a\":1}",
            b"{\"a\" 1}",
            b"1e5",
            b"1e",
            b"-0.5",
            b"--1",
            b"\"\\u00e9\"",
            b"\"\\u00g9\"",
            b"[[]]",
            b"{\"a\":{\"b\":[true,false,null]}}",
        ];
        for s in samples {
            let ours = json_well_formed(s).is_ok();
            let reference = serde_json::from_slice::<serde_json::Value>(s).is_ok();
            assert_eq!(ours, reference, "{:?}", core::str::from_utf8(s));
        }
    }
}
