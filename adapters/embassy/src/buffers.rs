//! Caller-provided memory for HTTP(S) exchanges. Nothing is allocated: the driver borrows
//! these for its lifetime, one set per lane (checks; refreshes if a token endpoint is set).
//!
//! | buffer | holds | size |
//! |---|---|---|
//! | `rx` | the response head (status line + headers), read-ahead, then chunked trailers | 1–2 KiB; the whole head must fit or the attempt fails (`io`) |
//! | `tx` | request scratch: `Bearer <token>` for a check; the form body of a refresh | check: 7 + token length; refresh: 64 + 3 × (refresh token + client id) |
//! | `body` | the response body | check: `max_body + 1` (1 025 by default, so an oversized body is detected, R1); refresh: largest token answer + 1 |
//! | `tls.read` (feature `tls`) | one TLS record (embedded-tls): the server's Certificate message must fit, chain included | 16 640 (16 KiB plaintext + overhead) unless the server is known to send smaller records |
//! | `tls.write` (feature `tls`) | one outgoing TLS record | 4 096 is plenty for these requests |
//!
//! Without the `tls` feature there are no TLS buffers: [`Buffers`] has no `tls` field and
//! [`BufferStorage`] takes only the three plain sizes.
//!
//! A response body is read into `body` and never further: at most `body.len()` bytes
//! (`max_body + 1` for checks) are read, whatever the server sends.

/// The two TLS record buffers embedded-tls needs. Only with the `tls` feature.
#[cfg(feature = "tls")]
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
    /// TLS record buffers; required with [`Transport::Tls`](crate::Transport::Tls). Only with
    /// the `tls` feature.
    #[cfg(feature = "tls")]
    pub tls: Option<TlsBuffers<'a>>,
}

/// Owned storage for one lane's buffers, sized by const generics, with a `const`
/// constructor so it can live in a `static` / `StaticCell`. `TLS_READ == 0` means no TLS
/// buffers (plain HTTP only); both TLS sizes default to 0, so `BufferStorage<RX, TX, BODY>`
/// names plain-HTTP storage with and without the `tls` feature.
#[cfg(feature = "tls")]
pub struct BufferStorage<
    const RX: usize,
    const TX: usize,
    const BODY: usize,
    const TLS_READ: usize = 0,
    const TLS_WRITE: usize = 0,
> {
    rx: [u8; RX],
    tx: [u8; TX],
    body: [u8; BODY],
    tls_read: [u8; TLS_READ],
    tls_write: [u8; TLS_WRITE],
}

/// Owned storage for one lane's buffers, sized by const generics, with a `const`
/// constructor so it can live in a `static` / `StaticCell`. Without the `tls` feature it
/// holds no TLS buffers (with it, two more sizes, `TLS_READ` and `TLS_WRITE`, follow, both
/// defaulting to 0).
#[cfg(not(feature = "tls"))]
pub struct BufferStorage<const RX: usize, const TX: usize, const BODY: usize> {
    rx: [u8; RX],
    tx: [u8; TX],
    body: [u8; BODY],
}

/// Storage for the check lane: 2 KiB head, a 1 KiB token, the default 1 KiB `max_body` + 1,
/// and, with the `tls` feature, full-size TLS records (about 25 KiB). Without `tls` it is
/// [`PlainCheckStorage`] (about 4 KiB).
#[cfg(feature = "tls")]
pub type CheckStorage = BufferStorage<2048, 1040, 1025, 16_640, 4096>;
/// Storage for the check lane: 2 KiB head, a 1 KiB token, the default 1 KiB `max_body` + 1,
/// and, with the `tls` feature, full-size TLS records (about 25 KiB). Without `tls` it is
/// [`PlainCheckStorage`] (about 4 KiB).
#[cfg(not(feature = "tls"))]
pub type CheckStorage = PlainCheckStorage;
/// Storage for the check lane over plain HTTP (no TLS buffers). About 4 KiB.
pub type PlainCheckStorage = BufferStorage<2048, 1040, 1025>;
/// Storage for the refresh lane: a 1 KiB refresh token escaped, 4 KiB answers, and, with the
/// `tls` feature, full-size TLS records (about 30 KiB; without `tls` about 9 KiB).
#[cfg(feature = "tls")]
pub type RefreshStorage = BufferStorage<2048, 3300, 4097, 16_640, 4096>;
/// Storage for the refresh lane: a 1 KiB refresh token escaped, 4 KiB answers, and, with the
/// `tls` feature, full-size TLS records (about 30 KiB; without `tls` about 9 KiB).
#[cfg(not(feature = "tls"))]
pub type RefreshStorage = BufferStorage<2048, 3300, 4097>;

#[cfg(feature = "tls")]
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

#[cfg(feature = "tls")]
impl<const RX: usize, const TX: usize, const BODY: usize, const TLS_READ: usize, const TLS_WRITE: usize>
    Default for BufferStorage<RX, TX, BODY, TLS_READ, TLS_WRITE>
{
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(feature = "tls"))]
impl<const RX: usize, const TX: usize, const BODY: usize> BufferStorage<RX, TX, BODY> {
    /// Zeroed storage.
    pub const fn new() -> Self {
        BufferStorage {
            rx: [0; RX],
            tx: [0; TX],
            body: [0; BODY],
        }
    }

    /// Borrows the storage as [`Buffers`].
    pub fn buffers(&mut self) -> Buffers<'_> {
        Buffers {
            rx: &mut self.rx,
            tx: &mut self.tx,
            body: &mut self.body,
        }
    }
}

#[cfg(not(feature = "tls"))]
impl<const RX: usize, const TX: usize, const BODY: usize> Default for BufferStorage<RX, TX, BODY> {
    fn default() -> Self {
        Self::new()
    }
}
