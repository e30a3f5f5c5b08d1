//! Token hygiene of the adapter's own copies, observed the way a memory dump would see them:
//! the bytes at a dropped `Tokens`' address are read back through `/proc/self/mem` (a file:
//! no `unsafe`), and must hold no run of the token. Without the wipe, the allocator keeps
//! most of a freed block as it was, token included.
//!
//! What the adapter cannot wipe (reqwest's and hyper's buffers, rustls' records, the header
//! value) is listed in the crate docs ("Token hygiene").
#![cfg(target_os = "linux")]

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration as StdDuration;

use accessgate_std::Tokens;

/// `len` bytes of this process's memory at `addr`.
fn read_mem(addr: usize, len: usize) -> Vec<u8> {
    let mut mem = std::fs::File::open("/proc/self/mem").expect("/proc/self/mem");
    mem.seek(SeekFrom::Start(addr as u64)).expect("seek");
    let mut buf = vec![0; len];
    mem.read_exact(&mut buf).expect("read");
    buf
}

/// Whether `hay` holds any 12-byte run of `token`.
fn holds_a_run_of(hay: &[u8], token: &[u8]) -> bool {
    token
        .windows(12)
        .any(|run| hay.windows(run.len()).any(|w| w == run))
}

/// Tokens given to `sign_in` (or dropped by the app) leave no copy where they were.
#[test]
fn dropped_tokens_leave_no_copy_in_their_memory() {
    let access: String = (0..96).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
    let refresh: String = (0..96).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    let tokens = Tokens::new(access.clone(), refresh.clone(), StdDuration::from_secs(60));
    let at = |s: &String| (s.as_ptr() as usize, s.len());
    let (a, r) = (at(&tokens.access_token), at(&tokens.refresh_token));
    // The test itself still reads the live copies: the check can see a token.
    assert!(holds_a_run_of(&read_mem(a.0, a.1), access.as_bytes()));
    drop(tokens);
    let (after_a, after_r) = (read_mem(a.0, a.1), read_mem(r.0, r.1));
    assert!(!holds_a_run_of(&after_a, access.as_bytes()), "{after_a:?}");
    assert!(!holds_a_run_of(&after_r, refresh.as_bytes()), "{after_r:?}");
}
