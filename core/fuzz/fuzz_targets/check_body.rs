//! Differential target for R1: `parse_check_body` / `classify` against `serde_json`.
//!
//! The reference reading of a body: UTF-8, one JSON value (serde_json, numbers kept as written
//! so no range limit applies, strings decoded so a lone surrogate is an error), a top-level
//! object whose keys are compared after unescaping, with exactly one `has_access` key (a second
//! one under any spelling is an error) whose value is a boolean.
//! - Every body `classify` calls definitive must read that way, with the same boolean.
//! - Every body that reads that way, within the size limit and `MAX_JSON_DEPTH`, must be
//!   definitive with that boolean.
//!
//! A crash-only target ran 12.5 million inputs without noticing that `has\u005faccess` was a
//! second key (issue 14): this one compares answers.
#![no_main]

use accessgate::{classify, parse_check_body, CheckOutcome, MAX_JSON_DEPTH};
use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

const MAX: usize = 1024;

/// The reference reading: `Ok((has_access, depth))` for an object with exactly one boolean
/// `has_access`.
#[derive(Clone, Copy)]
struct Reference {
    has_access: Option<bool>,
    depth: usize,
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl<'de> de::Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Reference;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reference, A::Error> {
                let mut r = Reference {
                    has_access: None,
                    depth: 1,
                };
                let mut seen = false;
                // Keys arrive unescaped: `has\u005faccess` is `has_access`.
                while let Some(key) = map.next_key::<String>()? {
                    let v: Value = map.next_value()?;
                    r.depth = r.depth.max(1 + depth(&v));
                    if key == "has_access" {
                        if seen {
                            return Err(de::Error::custom("duplicate has_access"));
                        }
                        seen = true;
                        r.has_access = v.as_bool();
                    }
                }
                if !seen {
                    return Err(de::Error::custom("missing has_access"));
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

fn reference(body: &[u8]) -> Option<Reference> {
    let text = std::str::from_utf8(body).ok()?;
    serde_json::from_str::<Reference>(text).ok()
}

fuzz_target!(|body: &[u8]| {
    let ours = parse_check_body(body, MAX);
    let r = reference(body);
    // classify agrees with parse_check_body, and only a 200 can be definitive.
    let want = match ours {
        Ok(true) => CheckOutcome::Granted,
        Ok(false) => CheckOutcome::Denied,
        Err(_) => CheckOutcome::transient(accessgate::TransientClass::InvalidBody),
    };
    assert_eq!(classify(200, None, body, MAX), want);
    assert!(!classify(503, None, body, MAX).is_definitive());
    if let Ok(b) = ours {
        // Forward: definitive only for what the reference reads as exactly one boolean.
        let Some(r) = r else {
            panic!(
                "definitive ({b}) but serde_json does not read an object with one has_access: {:?}",
                String::from_utf8_lossy(body)
            )
        };
        assert_eq!(
            r.has_access,
            Some(b),
            "different answer: {:?}",
            String::from_utf8_lossy(body)
        );
    }
    if let Some(Reference {
        has_access: Some(b),
        depth,
    }) = r
    {
        // Reverse: within the limits, what the reference reads as a boolean is definitive.
        if body.len() <= MAX && depth <= MAX_JSON_DEPTH as usize {
            assert_eq!(
                ours,
                Ok(b),
                "serde_json reads has_access = {b}: {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
});
