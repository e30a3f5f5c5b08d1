//! Caller-provided memory for HTTP(S) exchanges. Nothing is allocated: the driver borrows
//! these for its lifetime, one set per lane (checks; refreshes if a token endpoint is set).
//!
//! | buffer | holds | size |
//! |---|---|---|
//! | `rx` | the response head (status line + headers) and reqwless' read-ahead | 1–2 KiB; the whole head must fit or the attempt fails (`io`) |
//! | `tx` | request scratch: `Bearer <token>` for a check; the form body of a refresh | check: 7 + token length; refresh: 64 + 3 × (refresh token + client id) |
//! | `body` | the response body | check: `max_body + 1` (1 025 by default, so an oversized body is detected, R1); refresh: largest token answer + 1 |
//! | `tls.read` | one TLS record (embedded-tls) | 16 640 (16 KiB plaintext + overhead) unless the server is known to send smaller records |
//! | `tls.write` | one outgoing TLS record | 4 096 is plenty for these requests |
//!
//! A response body is read into `body` and never further: at most `body.len()` bytes
//! (`max_body + 1` for checks) are read, whatever the server sends.

/// The two TLS record buffers embedded-tls needs.
#[derive(Debug)]
pub struct TlsBuffers<'a> {
    /// Incoming records.
    pub read: &'a mut [u8],
    /// Outgoing records.
    pub write: &'a mut [u8],
}

/// One lane's buffers. See the module docs for sizes.
#[derive(Debug)]
pub struct Buffers<'a> {
    /// Response head and read-ahead.
    pub rx: &'a mut [u8],
    /// Request scratch (authorization header or form body).
    pub tx: &'a mut [u8],
    /// Response body.
    pub body: &'a mut [u8],
    /// TLS record buffers; required with [`Transport::Tls`](crate::Transport::Tls).
    pub tls: Option<TlsBuffers<'a>>,
}

/// Owned storage for one lane's buffers, sized by const generics, with a `const`
/// constructor so it can live in a `static` / `StaticCell`. `TLS_READ == 0` means no TLS
/// buffers (plain HTTP only).
pub struct BufferStorage<
    const RX: usize,
    const TX: usize,
    const BODY: usize,
    const TLS_READ: usize,
    const TLS_WRITE: usize,
> {
    rx: [u8; RX],
    tx: [u8; TX],
    body: [u8; BODY],
    tls_read: [u8; TLS_READ],
    tls_write: [u8; TLS_WRITE],
}

/// Storage for the check lane over TLS: 2 KiB head, a 1 KiB token, the default 1 KiB
/// `max_body` + 1, full-size TLS records. About 25 KiB.
pub type CheckStorage = BufferStorage<2048, 1040, 1025, 16_640, 4096>;
/// Storage for the check lane over plain HTTP (no TLS buffers). About 4 KiB.
pub type PlainCheckStorage = BufferStorage<2048, 1040, 1025, 0, 0>;
/// Storage for the refresh lane over TLS: a 1 KiB refresh token escaped, 4 KiB answers.
pub type RefreshStorage = BufferStorage<2048, 3300, 4097, 16_640, 4096>;

impl<const RX: usize, const TX: usize, const BODY: usize, const TLS_READ: usize, const TLS_WRITE: usize>
    BufferStorage<RX, TX, BODY, TLS_READ, TLS_WRITE>
{
    /// Zeroed storage.
    pub const fn new() -> Self {
        BufferStorage {
            rx: [0; RX],
            tx: [0; TX],
            body: [0; BODY],
            tls_read: [0; TLS_READ],
            tls_write: [0; TLS_WRITE],
        }
    }

    /// Borrows the storage as [`Buffers`].
    pub fn buffers(&mut self) -> Buffers<'_> {
        Buffers {
            rx: &mut self.rx,
            tx: &mut self.tx,
            body: &mut self.body,
            tls: (TLS_READ > 0).then_some(TlsBuffers {
                read: &mut self.tls_read,
                write: &mut self.tls_write,
            }),
        }
    }
}

impl<const RX: usize, const TX: usize, const BODY: usize, const TLS_READ: usize, const TLS_WRITE: usize>
    Default for BufferStorage<RX, TX, BODY, TLS_READ, TLS_WRITE>
{
    fn default() -> Self {
        Self::new()
    }
}
