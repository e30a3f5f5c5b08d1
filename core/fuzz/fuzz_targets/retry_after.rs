//! Fuzzes `Retry-After` parsing (R6) against a plain reference: delay-seconds only, surrounding
//! ASCII whitespace allowed, at most 10 digits; and `classify` takes it from 429 and 503 only.
#![no_main]

use accessgate::{classify, parse_retry_after, CheckOutcome, Duration};
use libfuzzer_sys::fuzz_target;

fn reference(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v)
        .ok()?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(s.parse().ok()?))
}

fuzz_target!(|data: &[u8]| {
    let Some((&s, value)) = data.split_first() else {
        return;
    };
    let got = parse_retry_after(value);
    assert_eq!(got, reference(value), "{:?}", String::from_utf8_lossy(value));
    let status = [429, 503, 500, 200, 401, 403][usize::from(s) % 6];
    let outcome = classify(status, Some(value), b"", 1024);
    match outcome {
        CheckOutcome::Transient { retry_after, .. } => {
            let want = if status == 429 || status == 503 { got } else { None };
            assert_eq!(retry_after, want);
        }
        other => assert!(
            status == 401 && other == CheckOutcome::Unauthorized,
            "{status} {other:?}"
        ),
    }
});
