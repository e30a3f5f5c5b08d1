//! The device's HTTP/1.1 response framing (`wire.rs`) on hostile bytes: status line, headers,
//! interim responses, Content-Length, chunked bodies, trailers (issue 14).
//!
//! Oracles: nothing panics; the body never exceeds its buffer; and the answer does not depend
//! on how the network fragments the stream: delivered one byte per read, in the fuzzer's
//! chosen step, or all at once, the same bytes give the same status, `Retry-After`, body and
//! error. A parser whose verdict changes with read boundaries could be talked into a grant by
//! splitting packets (R1).
//!
//! Input: `step u8 | stream...`.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The check lane's sizes: a 1 KiB head buffer, `max_body + 1` body bytes.
const RX: usize = 1024;
const BODY: usize = 1025;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else { return };
    let run = |step: usize| {
        let mut rx = [0u8; RX];
        let mut body = [0u8; BODY];
        let r = accessgate_embassy::fuzz_read_response(stream, step, &mut rx, &mut body);
        if let Ok((_, _, len)) = &r {
            assert!(*len <= BODY, "body length {len} over its buffer");
        }
        r.map(|(status, ra, len)| (status, ra, body[..len].to_vec()))
    };
    let whole = run(usize::MAX);
    let bytewise = run(1);
    let chosen = run(usize::from(step).max(1));
    assert_eq!(whole, bytewise, "fragmentation changed the answer (1-byte reads)");
    assert_eq!(whole, chosen, "fragmentation changed the answer ({step}-byte reads)");
});
