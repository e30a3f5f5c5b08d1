//! Differential target for the token endpoint classifier (R11): `classify_refresh` against
//! `serde_json`, read as strictly as a check body (R1).
//!
//! The reference reading of a 200 body: UTF-8, one JSON value, a top-level object whose keys
//! are compared after unescaping; `access_token`, `refresh_token`, `expires_in`, `token_type`
//! at most once each; `access_token` a non-empty string, `expires_in` an integer of seconds
//! that fits a u64 (no sign, fraction or exponent), `refresh_token` absent, null or a
//! non-empty string, `token_type` absent, null or "Bearer" in any case. A token written with a
//! JSON escape is refused (the core hands tokens out as slices of the body).
//! - Every `Refreshed` must read that way, with the same tokens and lifetime.
//! - Every body that reads that way, within the size limit and `MAX_JSON_DEPTH`, is `Refreshed`.
//! - `Rejected` only for 401, or 400 with exactly one `error` key equal to "invalid_grant"
//!   (and every such 400 within the limits is `Rejected`).
//! - A transient outcome's detail (R13) is the status for a non-200, a body error for a 200.
#![no_main]

use accessgate::{
    classify_refresh, BodyError, Duration, FailureDetail, RefreshOutcome, TransientClass, MAX_JSON_DEPTH,
};
use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

const MAX: usize = 2048;

#[derive(Default)]
struct Fields {
    /// Each known key's value, as written and parsed.
    access: Option<(String, Value)>,
    refresh: Option<(String, Value)>,
    expires: Option<(String, Value)>,
    kind: Option<(String, Value)>,
    error: Option<(String, Value)>,
    depth: usize,
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl<'de> de::Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut f = Fields {
                    depth: 1,
                    ..Fields::default()
                };
                while let Some(key) = map.next_key::<String>()? {
                    let raw: &RawValue = map.next_value()?;
                    let v: Value = serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
                    f.depth = f.depth.max(1 + depth(&v));
                    let slot = match key.as_str() {
                        "access_token" => &mut f.access,
                        "refresh_token" => &mut f.refresh,
                        "expires_in" => &mut f.expires,
                        "token_type" => &mut f.kind,
                        "error" => &mut f.error,
                        _ => continue,
                    };
                    if slot.replace((raw.get().to_owned(), v)).is_some() {
                        return Err(de::Error::custom("duplicate key"));
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_map(V)
    }
}

/// A token as the core hands it out: a non-empty string written without escapes.
fn token(raw: &str, v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) if !s.is_empty() && !raw.contains('\\') => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// The reference reading of a 200 body.
fn refreshed(f: &Fields) -> Option<(Vec<u8>, Option<Vec<u8>>, Duration)> {
    let (raw, v) = f.access.as_ref()?;
    let access = token(raw, v)?;
    let refresh = match &f.refresh {
        None | Some((_, Value::Null)) => None,
        Some((raw, v)) => Some(token(raw, v)?),
    };
    let (raw, v) = f.expires.as_ref()?;
    if !v.is_number() || !raw.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = raw.parse().ok()?;
    match &f.kind {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::String(t))) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return None,
    }
    Some((access, refresh, Duration::from_secs(secs)))
}

fn fields(body: &[u8]) -> Option<Fields> {
    serde_json::from_str::<Fields>(std::str::from_utf8(body).ok()?).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&s, body)) = data.split_first() else {
        return;
    };
    let status = match s % 8 {
        0..=3 => 200,
        4 | 5 => 400,
        6 => 401,
        _ => 300 + u16::from(s),
    };
    let ours = classify_refresh(status, body, MAX);
    let f = fields(body);
    let in_limits = |f: &Fields| body.len() <= MAX && f.depth <= MAX_JSON_DEPTH as usize;
    match ours {
        RefreshOutcome::Refreshed {
            access_token,
            refresh_token,
            expires_in,
        } => {
            assert_eq!(status, 200);
            let want = f.as_ref().and_then(refreshed);
            let got = (
                access_token.to_vec(),
                refresh_token.map(<[u8]>::to_vec),
                expires_in,
            );
            assert_eq!(want, Some(got), "{:?}", String::from_utf8_lossy(body));
        }
        RefreshOutcome::Rejected => {
            assert!(status == 401 || status == 400, "{status}");
            if status == 400 {
                let e = f.as_ref().and_then(|f| f.error.as_ref());
                assert!(
                    matches!(e, Some((_, Value::String(s))) if s == "invalid_grant"),
                    "{:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        // R13: the detail names the status, or why a 200 body is not a token response: a
        // well-formed object within the limits is one with the wrong fields.
        RefreshOutcome::Transient { class, detail } => match detail {
            FailureDetail::Status(code) => assert!(code == status && status != 200, "{status} {code}"),
            FailureDetail::Body(e) => {
                assert_eq!((status, class), (200, TransientClass::InvalidBody));
                assert_eq!(e == BodyError::TooLarge, body.len() > MAX, "{e:?}");
                if f.as_ref().is_some_and(in_limits) {
                    assert_eq!(e, BodyError::TokenSchema, "{:?}", String::from_utf8_lossy(body));
                }
            }
            other => panic!("{status}: {other:?}"),
        },
    }
    if let Some(f) = f.as_ref().filter(|f| in_limits(f)) {
        if status == 200 {
            if let Some((a, r, e)) = refreshed(f) {
                let want = RefreshOutcome::Refreshed {
                    access_token: &a,
                    refresh_token: r.as_deref(),
                    expires_in: e,
                };
                assert_eq!(ours, want, "{:?}", String::from_utf8_lossy(body));
            }
        }
        if status == 400 && matches!(&f.error, Some((_, Value::String(s))) if s == "invalid_grant") {
            assert_eq!(
                ours,
                RefreshOutcome::Rejected,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
});
