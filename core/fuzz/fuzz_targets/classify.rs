//! Fuzzes the response classifiers with hostile bodies (R1, R12): they must never panic, and
//! a grant must agree with a reference JSON parser's reading of the body.
#![no_main]

use accessgate::{classify, classify_refresh, parse_check_body, parse_retry_after, CheckOutcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 600;
    let split = (data[2] as usize).min(data.len() - 3);
    let (ra, body) = data[3..].split_at(split.min(12));
    let _ = parse_retry_after(ra);
    let outcome = classify(status, Some(ra), body, 1024);
    if outcome == CheckOutcome::Granted {
        // Only a 200 whose body really says `"has_access": true` may grant.
        assert_eq!(status, 200);
        assert_eq!(parse_check_body(body, 1024), Ok(true));
        let text = core::str::from_utf8(body).expect("a granting body is UTF-8");
        assert!(text.trim_start().starts_with('{'));
        assert!(text.contains("has_access"));
    }
    let _ = classify_refresh(status, body, 4096);
});
