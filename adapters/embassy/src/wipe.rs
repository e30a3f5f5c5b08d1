//! Wiping memory that held a token (see "Token hygiene" in the crate docs).
//!
//! The core's approach, without `unsafe` and without a dependency: zero the bytes, then hand
//! the memory to `core::hint::black_box`, which the optimiser must treat as reading it, so
//! the stores cannot be dropped as dead (a buffer borrowed from the caller outlives the driver
//! anyway; a token copy the driver owns may be freed right after). One `fill` (a `memset`)
//! rather than a store per byte: the lane buffers are up to 25 KiB each with TLS.

use crate::link::Token;

/// Zeroes `buf`.
pub(crate) fn bytes(buf: &mut [u8]) {
    buf.fill(0);
    core::hint::black_box(buf);
}

/// Zeroes every byte of `token`'s capacity (not only its length: a shorter token moved in
/// after a longer one would leave the longer one's tail) and empties it.
///
/// Public so an app can wipe its own copies, e.g. the token a
/// [`TokenSlot`](crate::TokenSlot) answered with, once it sent its request.
pub fn wipe_token<const T: usize>(token: &mut Token<T>) {
    // Cannot fail: `T` is the capacity.
    let _ = token.resize(T, 0);
    bytes(token);
    token.clear();
}

/// Whether `secret` is in `bytes.len()` bytes of this process's memory at `addr`, read as a RAM
/// dump would (`/proc/self/mem` is a file: no `unsafe`). Nothing is allocated while reading, so
/// memory just freed is seen before the allocator reuses it. For the unit tests that check a
/// wipe (the integration tests have `tests/memdump`).
#[cfg(test)]
pub(crate) fn in_memory(mem: &mut std::fs::File, addr: usize, bytes: &mut [u8], secret: &[u8]) -> bool {
    use std::io::{Read as _, Seek, SeekFrom};
    mem.seek(SeekFrom::Start(addr as u64)).unwrap();
    mem.read_exact(bytes).unwrap();
    bytes.windows(secret.len()).any(|w| w == secret)
}
