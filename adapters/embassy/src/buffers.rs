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
//! The TLS buffers are read only with a TLS transport. The types are the same with and
//! without the `tls` feature; only the [`CheckStorage`] / [`RefreshStorage`] aliases leave the
//! TLS buffers out without it (such a build can only speak plain HTTP).
//!
//! A response body is read into `body` and never further: at most `body.len()` bytes
//! (`max_body + 1` for checks) are read, whatever the server sends.
//!
//! The driver zeroes all of a lane's buffers at the end of every exchange, whatever its
//! outcome, and `tx` as soon as the request is written; and all of them when it is dropped.
//! Between exchanges they hold no token ("Token hygiene" in the crate docs).

/// The two TLS record buffers embedded-tls needs (read with a TLS transport only).
#[derive(Debug)]
pub struct TlsBuffers<'a> {
    /// Incoming records.
    pub read: &'a mut [u8],
    /// Outgoing records.
    pub write: &'a mut [u8],
}

/// One lane's buffers. See the module docs for sizes. Usually borrowed from a
/// [`BufferStorage`]; [`Buffers::new`] takes memory the caller already has.
#[derive(Debug)]
#[non_exhaustive]
pub struct Buffers<'a> {
    /// Response head and read-ahead.
    pub rx: &'a mut [u8],
    /// Request scratch (authorization header or form body).
    pub tx: &'a mut [u8],
    /// Response body.
    pub body: &'a mut [u8],
    /// TLS record buffers; required with [`Transport::Tls`](crate::Transport::Tls), unused
    /// over plain HTTP.
    pub tls: Option<TlsBuffers<'a>>,
}

impl<'a> Buffers<'a> {
    /// A lane's plain-HTTP buffers: response head, request scratch, response body.
    pub fn new(rx: &'a mut [u8], tx: &'a mut [u8], body: &'a mut [u8]) -> Self {
        Buffers {
            rx,
            tx,
            body,
            tls: None,
        }
    }

    /// Adds the TLS record buffers a TLS transport needs.
    #[must_use]
    pub fn with_tls(mut self, read: &'a mut [u8], write: &'a mut [u8]) -> Self {
        self.tls = Some(TlsBuffers { read, write });
        self
    }

    /// Zeroes every buffer: after each exchange, whatever its outcome, and when the driver is
    /// dropped (the request holds a token; a token answer's bytes may be in `rx` (read-ahead),
    /// `body` and, decrypted, in `tls.read`; an unflushed request in `tls.write`).
    pub(crate) fn wipe(&mut self) {
        crate::wipe::bytes(self.rx);
        crate::wipe::bytes(self.tx);
        crate::wipe::bytes(self.body);
        if let Some(tls) = &mut self.tls {
            crate::wipe::bytes(tls.read);
            crate::wipe::bytes(tls.write);
        }
    }
}

/// The memory a [`Driver`](crate::Driver) runs in: the check lane's buffers and, with a token
/// endpoint, the refresh lane's.
///
/// ```
/// use accessgate_embassy::{DriverBuffers, PlainCheckStorage, RefreshStorage};
/// let mut check = PlainCheckStorage::new();
/// let mut refresh = RefreshStorage::new();
/// let buffers = DriverBuffers::new(check.buffers()).with_refresh(refresh.buffers());
/// # drop(buffers);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct DriverBuffers<'a> {
    /// The check lane's.
    pub check: Buffers<'a>,
    /// The refresh lane's: required with a token endpoint
    /// ([`DriverConfig::with_refresh`](crate::DriverConfig::with_refresh)), refused without.
    pub refresh: Option<Buffers<'a>>,
}

impl<'a> DriverBuffers<'a> {
    /// Buffers for the check lane only (no token endpoint).
    pub fn new(check: Buffers<'a>) -> Self {
        DriverBuffers { check, refresh: None }
    }

    /// Adds the refresh lane's buffers.
    #[must_use]
    pub fn with_refresh(mut self, refresh: Buffers<'a>) -> Self {
        self.refresh = Some(refresh);
        self
    }
}

impl<'a> From<Buffers<'a>> for DriverBuffers<'a> {
    fn from(check: Buffers<'a>) -> Self {
        DriverBuffers::new(check)
    }
}

/// Owned storage for one lane's buffers, sized by const generics, with a `const`
/// constructor so it can live in a `static` / `StaticCell`. `TLS_READ == 0` means no TLS
/// buffers (plain HTTP only); both TLS sizes default to 0, so `BufferStorage<RX, TX, BODY>`
/// names plain-HTTP storage. The same five parameters exist with and without the `tls`
/// feature.
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

/// Storage for the check lane: 2 KiB head, a 1 KiB token, the default 1 KiB `max_body` + 1,
/// and, with the `tls` feature, full-size TLS records (about 25 KiB). Without `tls` it is
/// [`PlainCheckStorage`] (about 4 KiB), as such a build can only speak plain HTTP.
#[cfg(feature = "tls")]
pub type CheckStorage = BufferStorage<2048, 1040, 1025, 16_640, 4096>;
/// Storage for the check lane: 2 KiB head, a 1 KiB token, the default 1 KiB `max_body` + 1,
/// and, with the `tls` feature, full-size TLS records (about 25 KiB). Without `tls` it is
/// [`PlainCheckStorage`] (about 4 KiB), as such a build can only speak plain HTTP.
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

    /// Borrows the storage as [`Buffers`] (with TLS buffers when `TLS_READ > 0`).
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
