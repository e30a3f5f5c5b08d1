//! In-memory TCP: an `embedded-nal-async` stack whose connections are byte pipes in RAM.
//!
//! QEMU's Cortex-M boards have no network device that embassy drives, so the HTTP client
//! (reqwless) talks to a [`MemNet`] instead. Each connection is a [`Link`]: two fixed-size
//! byte rings (client to server, server to client) behind one critical-section mutex, with
//! waker slots so both ends can `await`. No heap: capacities are const generics and a
//! `MemNet` can live in a `static`.
//!
//! Lifecycle of one connection:
//! 1. [`MemNet::connect`] (the `TcpConnect` impl) claims a free link and queues it on the
//!    backlog, then waits for the server's verdict.
//! 2. The server side calls [`MemNet::accept`], gets an [`Incoming`], and either
//!    [`Incoming::accept`]s it (both ends get a [`MemConn`]) or [`Incoming::refuse`]s it
//!    (the client's `connect` fails with `ConnectionRefused`, like a TCP RST).
//! 3. Dropping a [`MemConn`] closes its end: the peer reads EOF once the ring is drained,
//!    and the peer's writes fail with `ConnectionReset`. A link is reused once both ends are
//!    gone and it is no longer queued.
//!
//! Nobody listening means `connect` waits forever, like an unanswered SYN: callers bound it
//! with `embassy_time::with_timeout`.

use core::cell::RefCell;
use core::future::poll_fn;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::channel::Channel;
use embassy_sync::waitqueue::WakerRegistration;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::{AddrType, Dns, TcpConnect};
use heapless::Deque;

/// Why an in-memory socket operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The server refused the connection.
    Refused,
    /// All `K` links are in use.
    NoFreeLink,
    /// The peer closed its end; nothing written now will be read.
    Reset,
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NetError::Refused => "connection refused",
            NetError::NoFreeLink => "no free in-memory link",
            NetError::Reset => "connection reset by peer",
        })
    }
}

impl core::error::Error for NetError {}

impl embedded_io_async::Error for NetError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetError::Refused => ErrorKind::ConnectionRefused,
            NetError::NoFreeLink => ErrorKind::OutOfMemory,
            NetError::Reset => ErrorKind::ConnectionReset,
        }
    }
}

/// One direction of a link: a byte ring with one reader and one writer.
struct Ring<const N: usize> {
    bytes: Deque<u8, N>,
    /// The writer is gone: once `bytes` is drained the reader sees EOF.
    writer_closed: bool,
    /// The reader is gone: writes fail with [`NetError::Reset`].
    reader_closed: bool,
    reader: WakerRegistration,
    writer: WakerRegistration,
}

impl<const N: usize> Ring<N> {
    const fn new() -> Self {
        Self {
            bytes: Deque::new(),
            writer_closed: false,
            reader_closed: false,
            reader: WakerRegistration::new(),
            writer: WakerRegistration::new(),
        }
    }

    fn poll_read(&mut self, buf: &mut [u8], cx: &mut Context<'_>) -> Poll<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.bytes.pop_front() {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            self.writer.wake();
            Poll::Ready(n)
        } else if self.writer_closed {
            Poll::Ready(0)
        } else {
            self.reader.register(cx.waker());
            Poll::Pending
        }
    }

    fn poll_write(&mut self, buf: &[u8], cx: &mut Context<'_>) -> Poll<Result<usize, NetError>> {
        if self.reader_closed {
            return Poll::Ready(Err(NetError::Reset));
        }
        let mut n = 0;
        for &b in buf {
            if self.bytes.push_back(b).is_err() {
                break;
            }
            n += 1;
        }
        if n > 0 {
            self.reader.wake();
            Poll::Ready(Ok(n))
        } else {
            self.writer.register(cx.waker());
            Poll::Pending
        }
    }

    fn close_writer(&mut self) {
        self.writer_closed = true;
        self.reader.wake();
    }

    fn close_reader(&mut self) {
        self.reader_closed = true;
        self.bytes.clear();
        self.writer.wake();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pending,
    Accepted,
    Refused,
}

/// Which end of a link a [`MemConn`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The end returned by `connect`.
    Client,
    /// The end returned by [`Incoming::accept`].
    Server,
}

/// State of one connection slot.
struct Link<const N: usize> {
    client: bool,
    server: bool,
    /// Sitting in the backlog, not yet seen by `accept`.
    queued: bool,
    verdict: Verdict,
    verdict_waker: WakerRegistration,
    remote: SocketAddr,
    /// Client to server.
    up: Ring<N>,
    /// Server to client.
    down: Ring<N>,
}

impl<const N: usize> Link<N> {
    const fn new() -> Self {
        Self {
            client: false,
            server: false,
            queued: false,
            verdict: Verdict::Pending,
            verdict_waker: WakerRegistration::new(),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            up: Ring::new(),
            down: Ring::new(),
        }
    }

    fn is_free(&self) -> bool {
        !self.client && !self.server && !self.queued
    }

    /// (ring this side reads, ring this side writes)
    fn rings(&mut self, side: Side) -> (&mut Ring<N>, &mut Ring<N>) {
        match side {
            Side::Client => (&mut self.down, &mut self.up),
            Side::Server => (&mut self.up, &mut self.down),
        }
    }
}

/// An in-memory network of at most `K` simultaneous connections, each buffering `N` bytes
/// per direction. Implements [`TcpConnect`]; the server side calls [`MemNet::accept`].
pub struct MemNet<const N: usize, const K: usize> {
    links: [Mutex<CriticalSectionRawMutex, RefCell<Link<N>>>; K],
    /// Indices of links waiting for `accept`. A link is queued at most once, so `K` slots
    /// always suffice.
    backlog: Channel<CriticalSectionRawMutex, u8, K>,
}

impl<const N: usize, const K: usize> Default for MemNet<N, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const K: usize> MemNet<N, K> {
    /// An idle network, usable as a `static`.
    pub const fn new() -> Self {
        const { assert!(K > 0 && K <= u8::MAX as usize, "K must be in 1..=255") };
        Self {
            links: [const { Mutex::new(RefCell::new(Link::new())) }; K],
            backlog: Channel::new(),
        }
    }

    fn with<R>(&self, idx: usize, f: impl FnOnce(&mut Link<N>) -> R) -> R {
        self.links[idx].lock(|cell| f(&mut cell.borrow_mut()))
    }

    /// Claims a free link for a new client connection and queues it for `accept`.
    fn claim(&self, remote: SocketAddr) -> Result<usize, NetError> {
        for idx in 0..K {
            let claimed = self.with(idx, |link| {
                if !link.is_free() {
                    return false;
                }
                *link = Link::new();
                link.client = true;
                link.queued = true;
                link.remote = remote;
                true
            });
            if claimed {
                // Cannot fail: at most K links are queued at once.
                let _ = self.backlog.try_send(idx as u8);
                return Ok(idx);
            }
        }
        Err(NetError::NoFreeLink)
    }

    /// Waits for the next connection attempt. Attempts whose client already gave up are
    /// skipped.
    pub async fn accept(&self) -> Incoming<'_, N, K> {
        loop {
            let idx = usize::from(self.backlog.receive().await);
            let client_waiting = self.with(idx, |link| {
                link.queued = false;
                link.client
            });
            if client_waiting {
                return Incoming {
                    net: self,
                    idx,
                    answered: false,
                };
            }
        }
    }
}

impl<const N: usize, const K: usize> TcpConnect for MemNet<N, K> {
    type Error = NetError;
    type Connection<'a>
        = MemConn<'a, N, K>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<MemConn<'a, N, K>, NetError> {
        let idx = self.claim(remote)?;
        // From here on, dropping `conn` (refusal, or the caller's timeout) releases the link.
        let conn = MemConn {
            net: self,
            idx,
            side: Side::Client,
        };
        poll_fn(|cx| {
            self.with(idx, |link| match link.verdict {
                Verdict::Pending => {
                    link.verdict_waker.register(cx.waker());
                    Poll::Pending
                }
                Verdict::Accepted => Poll::Ready(Ok(())),
                Verdict::Refused => Poll::Ready(Err(NetError::Refused)),
            })
        })
        .await?;
        Ok(conn)
    }
}

/// A connection attempt seen by the server. Dropping it without [`Incoming::accept`]
/// refuses the connection.
pub struct Incoming<'a, const N: usize, const K: usize> {
    net: &'a MemNet<N, K>,
    idx: usize,
    answered: bool,
}

impl<'a, const N: usize, const K: usize> Incoming<'a, N, K> {
    /// The address the client connected to.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.with(self.idx, |link| link.remote)
    }

    /// Completes the client's `connect` and returns the server end.
    pub fn accept(mut self) -> MemConn<'a, N, K> {
        self.answer(Verdict::Accepted);
        MemConn {
            net: self.net,
            idx: self.idx,
            side: Side::Server,
        }
    }

    /// Fails the client's `connect` with `ConnectionRefused`.
    pub fn refuse(mut self) {
        self.answer(Verdict::Refused);
    }

    fn answer(&mut self, verdict: Verdict) {
        self.answered = true;
        self.net.with(self.idx, |link| {
            link.verdict = verdict;
            link.server = verdict == Verdict::Accepted;
            link.verdict_waker.wake();
        });
    }
}

impl<const N: usize, const K: usize> Drop for Incoming<'_, N, K> {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(Verdict::Refused);
        }
    }
}

/// One end of an in-memory connection. Dropping it closes that end.
pub struct MemConn<'a, const N: usize, const K: usize> {
    net: &'a MemNet<N, K>,
    idx: usize,
    side: Side,
}

impl<const N: usize, const K: usize> Drop for MemConn<'_, N, K> {
    fn drop(&mut self) {
        let side = self.side;
        self.net.with(self.idx, |link| {
            let (rx, tx) = link.rings(side);
            rx.close_reader();
            tx.close_writer();
            match side {
                Side::Client => link.client = false,
                Side::Server => link.server = false,
            }
        });
    }
}

impl<const N: usize, const K: usize> ErrorType for MemConn<'_, N, K> {
    type Error = NetError;
}

impl<const N: usize, const K: usize> Read for MemConn<'_, N, K> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (net, idx, side) = (self.net, self.idx, self.side);
        Ok(poll_fn(|cx| net.with(idx, |link| link.rings(side).0.poll_read(buf, cx))).await)
    }
}

impl<const N: usize, const K: usize> Write for MemConn<'_, N, K> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (net, idx, side) = (self.net, self.idx, self.side);
        poll_fn(|cx| net.with(idx, |link| link.rings(side).1.poll_write(buf, cx))).await
    }

    async fn flush(&mut self) -> Result<(), NetError> {
        // Bytes are visible to the peer as soon as `write` returns.
        Ok(())
    }
}

/// A resolver that answers every name with one fixed address.
#[derive(Debug, Clone, Copy)]
pub struct FixedDns(pub IpAddr);

/// Why [`FixedDns`] could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// The caller asked for an address family the fixed address is not in.
    WrongFamily,
    /// Reverse look-ups are not supported.
    Unsupported,
}

impl Dns for FixedDns {
    type Error = DnsError;

    async fn get_host_by_name(&self, _host: &str, addr_type: AddrType) -> Result<IpAddr, DnsError> {
        match (addr_type, self.0) {
            (AddrType::Either, _) | (AddrType::IPv4, IpAddr::V4(_)) | (AddrType::IPv6, IpAddr::V6(_)) => {
                Ok(self.0)
            }
            _ => Err(DnsError::WrongFamily),
        }
    }

    async fn get_host_by_address(&self, _addr: IpAddr, _result: &mut [u8]) -> Result<usize, DnsError> {
        Err(DnsError::Unsupported)
    }
}
