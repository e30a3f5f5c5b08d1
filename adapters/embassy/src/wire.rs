//! HTTP/1.1 on one connection: writes one request, reads one response, with framing the
//! project owns (R1: broken framing never yields a body the classifier could take as
//! definitive).
//!
//! The head is parsed by `httparse` (what reqwless uses too); the body framing is done here,
//! strictly, because reqwless 0.14's chunked reader takes an empty chunk-size line as the end
//! of the body (a grant from broken framing) and does not bound chunk sizes.
//!
//! Accepted, like the desktop client (hyper): `1xx` interim responses before the answer
//! (skipped, at most [`MAX_INTERIM`]); `Content-Length`; `Transfer-Encoding: chunked` with
//! chunk extensions (ignored) and trailers (skipped, bounded by the head buffer's size);
//! a body delimited by the end of the connection when neither is given. Refused (a
//! transient `io` failure, never a body): a missing or malformed status line or header
//! (httparse), obsolete header folding (as hyper does), a non-digit or conflicting
//! `Content-Length`, a transfer coding other than `chunked`, `Transfer-Encoding` beside
//! `Content-Length` (RFC 9112 6.3: "ought to be handled as an error"), an empty or non-hex chunk
//! size, a chunk size over 2^32, chunk data not followed by CRLF, a body shorter than
//! announced, `101 Switching Protocols`, a head longer than `rx`.
//!
//! Bounded: at most `rx.len()` bytes of head per response, at most `body.len()` bytes of
//! body (`max_body + 1` for checks, so an oversized body is seen as such), one pass.

use embedded_io_async::{Error as _, Read, Write};

use crate::failure::NetFailure;

/// Interim (`1xx`) responses skipped before the answer.
pub(crate) const MAX_INTERIM: usize = 4;
/// Headers per response head.
const MAX_HEADERS: usize = 32;
/// `Retry-After` values longer than this are not delay-seconds anyway (the core accepts at
/// most 10 digits).
pub(crate) const RETRY_AFTER_MAX: usize = 16;

/// One request's head and body.
pub(crate) struct RequestHead<'r> {
    pub method: &'r str,
    /// Path and query (checked by [`accessgate::check_url`]); a `/` is written in front of one that
    /// does not start with it (`""`, `?q=1`).
    pub path: &'r str,
    /// `Host` header value, an IPv6 address in brackets (`:port` is added when not the
    /// scheme's default).
    pub host: &'r str,
    pub port: Option<u16>,
    pub headers: &'r [(&'r str, &'r [u8])],
    pub body: Option<&'r [u8]>,
}

/// What came back, apart from the body (which is in the caller's body buffer).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    pub retry_after: Option<heapless::Vec<u8, RETRY_AFTER_MAX>>,
    pub body_len: usize,
}

/// Writes `request`, flushes, and reads the response: the head into `rx`, at most
/// `body.len()` body bytes into `body` (for statuses 200 and 400 only; the others' bodies
/// are not read). Any framing error is `BadFraming`/`Truncated`/`HeadTooLarge`. (The driver
/// calls the two halves itself, to wipe the request between them.)
#[cfg(test)]
pub(crate) async fn exchange<C: Read + Write>(
    conn: &mut C,
    request: &RequestHead<'_>,
    rx: &mut [u8],
    body: &mut [u8],
) -> Result<Reply, NetFailure> {
    write_request(conn, request).await?;
    read_response(conn, rx, body).await
}

pub(crate) async fn write_request<C: Write>(conn: &mut C, r: &RequestHead<'_>) -> Result<(), NetFailure> {
    let mut port_buf = [0u8; 6];
    let port = r.port.map(|p| fmt_port(p, &mut port_buf));
    let mut len_buf = [0u8; 20];
    let content_length = r.body.map(|b| fmt_usize(b.len(), &mut len_buf));
    // RFC 9112 3.2.1: origin-form is `absolute-path [ "?" query ]`.
    let slash: &[u8] = if r.path.starts_with('/') { b"" } else { b"/" };
    let parts: [&[u8]; 8] = [
        r.method.as_bytes(),
        b" ",
        slash,
        r.path.as_bytes(),
        b" HTTP/1.1\r\nHost: ",
        r.host.as_bytes(),
        port.unwrap_or(b""),
        b"\r\n",
    ];
    for p in parts {
        write_all(conn, p).await?;
    }
    for (name, value) in r.headers {
        for p in [name.as_bytes(), b": ", value, b"\r\n"] {
            write_all(conn, p).await?;
        }
    }
    if let Some(len) = content_length {
        for p in [&b"Content-Length: "[..], len, b"\r\n"] {
            write_all(conn, p).await?;
        }
    }
    write_all(conn, b"\r\n").await?;
    if let Some(b) = r.body {
        write_all(conn, b).await?;
    }
    conn.flush().await.map_err(|e| net_failure(e.kind()))
}

async fn write_all<C: Write>(conn: &mut C, mut bytes: &[u8]) -> Result<(), NetFailure> {
    while !bytes.is_empty() {
        match conn.write(bytes).await {
            Ok(0) => return Err(NetFailure::Closed),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) => return Err(net_failure(e.kind())),
        }
    }
    Ok(())
}

fn fmt_port(port: u16, buf: &mut [u8; 6]) -> &[u8] {
    buf[0] = b':';
    let n = fmt_digits(u64::from(port), &mut buf[1..]);
    &buf[..1 + n]
}

fn fmt_usize(v: usize, buf: &mut [u8; 20]) -> &[u8] {
    let n = fmt_digits(v as u64, buf);
    &buf[..n]
}

/// Writes `v` in decimal at the start of `out` (which must be long enough); returns the
/// number of digits.
fn fmt_digits(mut v: u64, out: &mut [u8]) -> usize {
    let mut tmp = [0u8; 20];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for (i, d) in tmp[..n].iter().rev().enumerate() {
        if let Some(slot) = out.get_mut(i) {
            *slot = *d;
        }
    }
    n
}

/// The transport error kinds, as R13 details.
pub(crate) fn net_failure(kind: embedded_io::ErrorKind) -> NetFailure {
    use embedded_io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => NetFailure::Refused,
        K::ConnectionReset => NetFailure::Reset,
        K::ConnectionAborted | K::NotConnected | K::BrokenPipe => NetFailure::Closed,
        K::TimedOut => NetFailure::Timeout,
        K::AddrNotAvailable => NetFailure::Unreachable,
        _ => NetFailure::Other,
    }
}

/// Bytes received but not consumed yet, in `buf[start..end]`, refilled from `conn`.
struct Input<'b, C> {
    conn: &'b mut C,
    buf: &'b mut [u8],
    start: usize,
    end: usize,
}

impl<C: Read> Input<'_, C> {
    /// Reads more into the free end of the buffer (compacting first). `Ok(0)` at EOF.
    async fn fill(&mut self) -> Result<usize, NetFailure> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let free = self.buf.get_mut(self.end..).unwrap_or_default();
        if free.is_empty() {
            return Err(NetFailure::HeadTooLarge);
        }
        let n = self.conn.read(free).await.map_err(|e| net_failure(e.kind()))?;
        self.end += n;
        Ok(n)
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The next byte; `Closed` at EOF.
    async fn byte(&mut self) -> Result<u8, NetFailure> {
        if self.start == self.end && self.fill().await? == 0 {
            return Err(NetFailure::Truncated);
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(b)
    }

    /// Copies up to `out.len()` bytes; 0 only at EOF.
    async fn read_into(&mut self, out: &mut [u8]) -> Result<usize, NetFailure> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.start == self.end {
            // Straight from the connection: the buffer holds nothing.
            self.start = 0;
            self.end = 0;
            return self.conn.read(out).await.map_err(|e| net_failure(e.kind()));
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }

    /// Expects exactly CRLF.
    async fn crlf(&mut self) -> Result<(), NetFailure> {
        if self.byte().await? == b'\r' && self.byte().await? == b'\n' {
            Ok(())
        } else {
            Err(NetFailure::BadFraming)
        }
    }
}

/// How the body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// The parts of a head the exchange keeps.
struct Head {
    status: u16,
    framing: Framing,
    retry_after: Option<heapless::Vec<u8, RETRY_AFTER_MAX>>,
}

pub(crate) async fn read_response<C: Read>(
    conn: &mut C,
    rx: &mut [u8],
    body: &mut [u8],
) -> Result<Reply, NetFailure> {
    let mut input = Input {
        conn,
        buf: rx,
        start: 0,
        end: 0,
    };
    let mut interim = 0;
    let head = loop {
        let (head, len) = read_head(&mut input).await?;
        input.start += len;
        match head.status {
            // 101 would switch protocols: not an answer to a check.
            101 => return Err(NetFailure::BadFraming),
            100..=199 => {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(NetFailure::BadFraming);
                }
            }
            _ => break head,
        }
    };
    let mut body_len = 0;
    // Only a 200 (R1) and a 400 (`invalid_grant`, R11) have bodies that matter; 204 and 304
    // have none by definition.
    if head.status == 200 || head.status == 400 {
        body_len = read_body(&mut input, head.framing, body).await?;
    }
    Ok(Reply {
        status: head.status,
        retry_after: head.retry_after,
        body_len,
    })
}

/// Fuzzing entry point (feature `fuzzing`, not a public API): reads one response from
/// `stream`, delivered at most `step` bytes per read, into `rx` (head buffer) and `body`.
/// Returns the status, the `Retry-After` value and the body length.
#[cfg(feature = "fuzzing")]
pub fn fuzz_read_response(
    stream: &[u8],
    step: usize,
    rx: &mut [u8],
    body: &mut [u8],
) -> Result<(u16, Option<heapless::Vec<u8, RETRY_AFTER_MAX>>, usize), NetFailure> {
    struct Mem<'s> {
        rest: &'s [u8],
        step: usize,
    }
    impl embedded_io::ErrorType for Mem<'_> {
        type Error = core::convert::Infallible;
    }
    impl Read for Mem<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = self.rest.len().min(buf.len()).min(self.step.max(1));
            buf[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }
    let mut conn = Mem { rest: stream, step };
    embassy_futures::block_on(read_response(&mut conn, rx, body))
        .map(|r| (r.status, r.retry_after, r.body_len))
}

/// Reads until a complete head is in the buffer; returns it and its length in bytes.
async fn read_head<C: Read>(input: &mut Input<'_, C>) -> Result<(Head, usize), NetFailure> {
    loop {
        if let Some(parsed) = parse_head(input.pending())? {
            return Ok(parsed);
        }
        if input.fill().await? == 0 {
            return Err(NetFailure::Closed);
        }
    }
}

/// Parses a complete head at the start of `bytes`; `Ok(None)` if more bytes are needed.
fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, NetFailure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    // Obsolete line folding stays refused (httparse's default), like hyper.
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(NetFailure::BadFraming),
    };
    let status = response.code.ok_or(NetFailure::BadFraming)?;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    let mut retry_after = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = parse_decimal(h.value).ok_or(NetFailure::BadFraming)?;
            // Repeated with different values: which one is the body? Refused (RFC 9112 6.3).
            if content_length.is_some_and(|c| c != v) {
                return Err(NetFailure::BadFraming);
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding must be `chunked`, and it is the only one the device decodes.
            for coding in h.value.split(|&b| b == b',') {
                let coding = trim(coding);
                if coding.is_empty() {
                    continue;
                }
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(NetFailure::BadFraming);
                }
                chunked = true;
            }
            coded = true;
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            // Too long to be delay-seconds: treated as absent, like the core would.
            retry_after = heapless::Vec::from_slice(h.value).ok();
        }
    }
    let framing = match (coded, chunked, content_length) {
        (true, false, _) => return Err(NetFailure::BadFraming),
        // Both: "might indicate an attempt to perform request smuggling or response
        // splitting and ought to be handled as an error" (RFC 9112 6.3); the desktop refuses
        // it too (R1: no definitive body from ambiguous framing).
        (true, true, Some(_)) => return Err(NetFailure::BadFraming),
        (true, true, None) => Framing::Chunked,
        (false, _, Some(n)) => Framing::Length(n),
        (false, _, None) => Framing::UntilClose,
    };
    Ok(Some((
        Head {
            status,
            framing,
            retry_after,
        },
        len,
    )))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A Content-Length value: 1 to 19 digits, nothing else.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Reads the body into `out` (at most `out.len()` bytes); returns the bytes read.
async fn read_body<C: Read>(
    input: &mut Input<'_, C>,
    framing: Framing,
    out: &mut [u8],
) -> Result<usize, NetFailure> {
    match framing {
        Framing::Length(n) => {
            let want = usize::try_from(n).map_or(out.len(), |n| n.min(out.len()));
            let mut got = 0;
            while got < want {
                match input.read_into(&mut out[got..want]).await? {
                    // Shorter than announced: truncated, never definitive (R1).
                    0 => return Err(NetFailure::Truncated),
                    k => got += k,
                }
            }
            Ok(got)
        }
        Framing::UntilClose => {
            let mut got = 0;
            while got < out.len() {
                match input.read_into(&mut out[got..]).await? {
                    0 => break,
                    k => got += k,
                }
            }
            Ok(got)
        }
        Framing::Chunked => read_chunked(input, out).await,
    }
}

/// Largest chunk size accepted (2^32 - 1): far above any answer, and it fits every
/// platform's arithmetic.
const MAX_CHUNK_HEX_DIGITS: usize = 8;

async fn read_chunked<C: Read>(input: &mut Input<'_, C>, out: &mut [u8]) -> Result<usize, NetFailure> {
    let mut got = 0;
    loop {
        let size = chunk_size(input).await?;
        if size == 0 {
            break;
        }
        let mut left = size;
        while left > 0 {
            if got == out.len() {
                // Already one byte over any limit the caller cares about (`max_body + 1`):
                // the classifier refuses it as oversized; the rest is not read (R12).
                return Ok(got);
            }
            let room = out.len() - got;
            let take = usize::try_from(left).map_or(room, |l| l.min(room));
            match input.read_into(&mut out[got..got + take]).await? {
                0 => return Err(NetFailure::Truncated),
                k => {
                    got += k;
                    left -= k as u64;
                }
            }
        }
        input.crlf().await?;
    }
    // Trailer section: header lines until an empty line, at most the head buffer's size in
    // bytes (R12), every byte counted: a CR counts with the LF that must follow it (a bare LF
    // is refused below), so short lines cannot stretch the bound.
    let mut line_len = 0usize;
    let mut total = 0usize;
    loop {
        let b = input.byte().await?;
        total += if b == b'\r' { 2 } else { 1 };
        if total > input.buf.len() {
            return Err(NetFailure::HeadTooLarge);
        }
        match b {
            b'\r' => {
                if input.byte().await? != b'\n' {
                    return Err(NetFailure::BadFraming);
                }
                if line_len == 0 {
                    return Ok(got);
                }
                line_len = 0;
            }
            b'\n' => return Err(NetFailure::BadFraming),
            _ => line_len += 1,
        }
    }
}

/// Reads a chunk-size line: hex digits (at least one, at most 8), optional whitespace and
/// chunk extensions (`;name=value`, ignored), CRLF.
async fn chunk_size<C: Read>(input: &mut Input<'_, C>) -> Result<u64, NetFailure> {
    let mut size = 0u64;
    let mut digits = 0usize;
    let mut b = input.byte().await?;
    while let Some(d) = (b as char).to_digit(16) {
        digits += 1;
        if digits > MAX_CHUNK_HEX_DIGITS {
            return Err(NetFailure::BadFraming);
        }
        size = size * 16 + u64::from(d);
        b = input.byte().await?;
    }
    // An empty chunk-size line is not the last chunk (reqwless 0.14 took it as one).
    if digits == 0 {
        return Err(NetFailure::BadFraming);
    }
    // Bad whitespace before an extension, as hyper tolerates it.
    while b == b' ' || b == b'\t' {
        b = input.byte().await?;
    }
    if b == b';' {
        // Extensions: anything printable up to CR, bounded by the buffer's size.
        let mut n = 0usize;
        loop {
            b = input.byte().await?;
            n += 1;
            if b == b'\r' || n > input.buf.len() {
                break;
            }
            if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                return Err(NetFailure::BadFraming);
            }
        }
    }
    if b != b'\r' || input.byte().await? != b'\n' {
        return Err(NetFailure::BadFraming);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::convert::Infallible;

    /// A connection that answers with `script`, `step` bytes per read, and records what is
    /// written.
    struct Scripted<'s> {
        script: &'s [u8],
        step: usize,
        written: std::vec::Vec<u8>,
    }

    impl embedded_io_async::ErrorType for Scripted<'_> {
        type Error = Infallible;
    }

    impl Read for Scripted<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            let n = buf.len().min(self.step).min(self.script.len());
            buf[..n].copy_from_slice(&self.script[..n]);
            self.script = &self.script[n..];
            Ok(n)
        }
    }

    impl Write for Scripted<'_> {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        async fn flush(&mut self) -> Result<(), Infallible> {
            Ok(())
        }
    }

    fn run(response: &[u8], step: usize) -> Result<(u16, std::vec::Vec<u8>), NetFailure> {
        let mut conn = Scripted {
            script: response,
            step,
            written: std::vec::Vec::new(),
        };
        let mut rx = [0u8; 512];
        let mut body = [0u8; 65];
        let reply = embassy_futures::block_on(read_response(&mut conn, &mut rx, &mut body))?;
        Ok((reply.status, body[..reply.body_len].to_vec()))
    }

    /// Every response is tried with 1-byte, 7-byte and whole reads.
    #[track_caller]
    fn answers(response: &[u8]) -> Result<(u16, std::vec::Vec<u8>), NetFailure> {
        let whole = run(response, usize::MAX);
        for step in [1, 7] {
            assert_eq!(run(response, step), whole, "read size {step}");
        }
        whole
    }

    const GRANT: &[u8] = br#"{"has_access":true}"#;

    #[test]
    fn content_length_body_is_read() {
        let r = answers(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}");
        assert_eq!(r, Ok((200, GRANT.to_vec())));
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers_is_read() {
        let r = answers(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\n{\"has\r\nE\r\n_access\":true}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        );
        assert_eq!(r, Ok((200, GRANT.to_vec())));
    }

    #[test]
    fn interim_continue_before_the_answer_is_skipped() {
        let r = answers(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}",
        );
        assert_eq!(r, Ok((200, GRANT.to_vec())));
    }

    #[test]
    fn interim_heads_do_not_add_up_against_the_head_buffer() {
        // R1/R12: `rx` bounds each head, not the whole response. Three interim heads of about
        // 250 bytes each, then the answer: over 700 bytes of heads through a 512-byte buffer,
        // which works only if the consumed heads are dropped from the buffer before it is
        // refilled.
        let mut response = std::vec::Vec::new();
        for _ in 0..3 {
            response.extend_from_slice(b"HTTP/1.1 103 Early Hints\r\nLink: <");
            response.extend_from_slice(&[b'a'; 200]);
            response.extend_from_slice(b">; rel=preload\r\n\r\n");
        }
        response.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}");
        assert!(response.len() > 700);
        assert_eq!(answers(&response), Ok((200, GRANT.to_vec())));
    }

    #[test]
    fn up_to_max_interim_responses_are_skipped() {
        // Exactly MAX_INTERIM (4) interim heads: still an answer (the fifth is refused, see
        // broken_heads_are_refused).
        let mut response = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM);
        response.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}");
        assert_eq!(answers(&response), Ok((200, GRANT.to_vec())));
    }

    #[test]
    fn only_200_and_400_bodies_are_read() {
        // R11: a 400's body is read (the core tells `invalid_grant` from it); R1: other
        // statuses' bodies are never read, whatever they hold.
        let r =
            answers(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 25\r\n\r\n{\"error\":\"invalid_grant\"}");
        assert_eq!(r, Ok((400, br#"{"error":"invalid_grant"}"#.to_vec())));
        for status in [b"403", b"404", b"503"] {
            let mut response = b"HTTP/1.1 ".to_vec();
            response.extend_from_slice(status);
            response.extend_from_slice(b" X\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}");
            let code = core::str::from_utf8(status).unwrap().parse().unwrap();
            assert_eq!(answers(&response), Ok((code, std::vec::Vec::new())));
        }
    }

    #[test]
    fn body_until_close_is_read() {
        let r = answers(b"HTTP/1.1 200 OK\r\n\r\n{\"has_access\":true}");
        assert_eq!(r, Ok((200, GRANT.to_vec())));
    }

    #[test]
    fn empty_chunk_size_line_is_broken_framing_not_an_end() {
        // reqwless 0.14 returned the first chunk as the whole body here: a grant.
        let r = answers(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n\r\n",
        );
        assert_eq!(r, Err(NetFailure::BadFraming));
    }

    #[test]
    fn broken_chunk_framing_never_yields_a_body() {
        let cases: &[&[u8]] = &[
            // Non-hex size.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{\"has_access\":true}\r\n0\r\n\r\n",
            // Negative-looking size.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-13\r\n{\"has_access\":true}\r\n0\r\n\r\n",
            // Huge size (9 hex digits).
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100000013\r\n{\"has_access\":true}\r\n0\r\n\r\n",
            // Data not followed by CRLF.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}XX0\r\n\r\n",
            // Size line ended by a bare LF.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\n{\"has_access\":true}\r\n0\r\n\r\n",
            // Chunk shorter than announced, then EOF.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n{\"has_access\":true}",
            // No last chunk.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n",
            // A trailer line ended by a bare LF.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\nX: 1\nY: 2\r\n\r\n",
            // Unterminated trailer section.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n",
            // A coding the device does not decode.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{\"has_access\":true}",
            // ... also when chunked comes last: the chunks would hold gzip, not the answer.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n\r\n",
            // chunked twice (RFC 9112 7.1: a sender must not apply chunked more than once).
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n\r\n",
            // chunked not last.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n\r\n",
            // Transfer-Encoding beside Content-Length, in either order (as on the desktop).
            b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n\r\n",
        ];
        for case in cases {
            let r = answers(case);
            assert!(r.is_err(), "{:?} gave {r:?}", core::str::from_utf8(case));
        }
    }

    #[test]
    fn broken_heads_are_refused() {
        let cases: &[&[u8]] = &[
            // Header folding (obs-fold).
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}",
            // Conflicting lengths.
            b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\nContent-Length: 20\r\n\r\n{\"has_access\":true}",
            // Non-numeric length.
            b"HTTP/1.1 200 OK\r\nContent-Length: +19\r\n\r\n{\"has_access\":true}",
            // Not HTTP.
            b"SSH-2.0-OpenSSH\r\n\r\n",
            // Switching protocols.
            b"HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"has_access\":true}",
            // Too many interim responses.
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"has_access\":true}",
            // Head never ends.
            b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n",
        ];
        for case in cases {
            let r = answers(case);
            assert!(r.is_err(), "{:?} gave {r:?}", core::str::from_utf8(case));
        }
    }

    #[test]
    fn content_length_values_are_decimal_digits_and_must_agree() {
        // RFC 9110 8.6: a repeated Content-Length with the same value is that length; a
        // different one makes the body's end unknown: refused as framing (R1), not read
        // with either value.
        let same = answers(
            b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}",
        );
        assert_eq!(same, Ok((200, GRANT.to_vec())));
        let shorter = answers(
            b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\nContent-Length: 5\r\n\r\n{\"has_access\":true}",
        );
        assert_eq!(shorter, Err(NetFailure::BadFraming));
        // 19 digits (leading zeros) is the longest value read; 20 and an empty value are
        // refused, never taken as 0 or overflowed.
        let longest =
            answers(b"HTTP/1.1 200 OK\r\nContent-Length: 0000000000000000019\r\n\r\n{\"has_access\":true}");
        assert_eq!(longest, Ok((200, GRANT.to_vec())));
        for value in [&b"00000000000000000019"[..], b"", b" "] {
            let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: ".to_vec();
            response.extend_from_slice(value);
            response.extend_from_slice(b"\r\n\r\n{\"has_access\":true}");
            assert_eq!(answers(&response), Err(NetFailure::BadFraming), "{value:?}");
        }
    }

    #[test]
    fn chunked_body_is_the_same_whatever_the_read_sizes() {
        // R1: how the server's bytes are cut into reads never changes the body. Every read
        // size up to the whole response, so that some read starts inside a chunk-size
        // line's CRLF with chunk data behind it.
        let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\n{\"has\r\nE\r\n_access\":true}\r\n0\r\n\r\n";
        for step in 1..=response.len() {
            assert_eq!(run(response, step), Ok((200, GRANT.to_vec())), "read size {step}");
        }
    }

    /// A chunked grant followed by `trailers` (the bytes after the last chunk's size line).
    fn chunked_grant_with_trailers(trailers: &[u8]) -> std::vec::Vec<u8> {
        let mut response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13\r\n{\"has_access\":true}\r\n0\r\n"
                .to_vec();
        response.extend_from_slice(trailers);
        response
    }

    #[test]
    fn trailer_section_is_bounded_by_the_head_buffer_counting_every_byte() {
        // R12: the trailer section (its final empty line included) may be as long as `rx`
        // (512 bytes here), not one byte more, however it is cut into lines.
        let line = |len: usize| {
            let mut l = b"X-T: ".to_vec();
            l.resize(len - 2, b'a');
            l.extend_from_slice(b"\r\n");
            l
        };
        let mut fits = line(510);
        fits.extend_from_slice(b"\r\n");
        assert_eq!(
            answers(&chunked_grant_with_trailers(&fits)),
            Ok((200, GRANT.to_vec()))
        );
        let mut over = line(511);
        over.extend_from_slice(b"\r\n");
        assert_eq!(
            answers(&chunked_grant_with_trailers(&over)),
            Err(NetFailure::HeadTooLarge)
        );
        // Two lines of 300 bytes: 602 bytes, each line under the bound.
        let mut two = line(300).repeat(2);
        two.extend_from_slice(b"\r\n");
        assert_eq!(
            answers(&chunked_grant_with_trailers(&two)),
            Err(NetFailure::HeadTooLarge)
        );
        // 200 one-byte lines: 602 bytes, though only 402 of them are not LF.
        let mut short = b"a\r\n".repeat(200);
        short.extend_from_slice(b"\r\n");
        assert_eq!(
            answers(&chunked_grant_with_trailers(&short)),
            Err(NetFailure::HeadTooLarge)
        );
    }

    #[test]
    fn chunk_size_lines_take_eight_hex_digits_and_whitespace_before_extensions() {
        // Up to 8 hex digits (leading zeros count), then optional whitespace, as hyper reads it.
        for line in [&b"00000013\r\n"[..], b"13 \t;name=value\r\n", b"13\t\r\n"] {
            let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            response.extend_from_slice(line);
            response.extend_from_slice(b"{\"has_access\":true}\r\n0\r\n\r\n");
            assert_eq!(
                answers(&response),
                Ok((200, GRANT.to_vec())),
                "{:?}",
                core::str::from_utf8(line)
            );
        }
    }

    /// A chunked grant whose first chunk-size line carries the extension `ext` (from its `;`
    /// up to, not including, the CR).
    fn chunked_grant_with_extension(ext: &[u8]) -> std::vec::Vec<u8> {
        let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n13".to_vec();
        response.extend_from_slice(ext);
        response.extend_from_slice(b"\r\n{\"has_access\":true}\r\n0\r\n\r\n");
        response
    }

    #[test]
    fn chunk_extensions_are_printable_and_bounded_by_the_head_buffer() {
        // Ignored, whatever they say: spaces and tabs included (BWS, quoted values).
        for ext in [&b";name=value"[..], b"; name = \"a b\"", b";\tn=\"a\tb\""] {
            let r = answers(&chunked_grant_with_extension(ext));
            assert_eq!(r, Ok((200, GRANT.to_vec())), "{:?}", core::str::from_utf8(ext));
        }
        // R12: after the `;`, at most `rx.len()` (512) bytes.
        let mut longest = b";".to_vec();
        longest.resize(1 + 512, b'x');
        assert_eq!(
            answers(&chunked_grant_with_extension(&longest)),
            Ok((200, GRANT.to_vec()))
        );
        longest.push(b'x');
        assert_eq!(
            answers(&chunked_grant_with_extension(&longest)),
            Err(NetFailure::BadFraming)
        );
        // R1: control bytes (a bare LF, other C0 controls, DEL) are broken framing.
        for ext in [&b";a\nb"[..], b";a\x01b", b";a\x00", b";a\x7fb"] {
            let r = answers(&chunked_grant_with_extension(ext));
            assert_eq!(r, Err(NetFailure::BadFraming), "{ext:?}");
        }
    }

    /// A connection whose reads fail with `kind`.
    struct Failing(embedded_io::ErrorKind);

    impl embedded_io_async::ErrorType for Failing {
        type Error = embedded_io::ErrorKind;
    }

    impl Read for Failing {
        async fn read(&mut self, _buf: &mut [u8]) -> Result<usize, embedded_io::ErrorKind> {
            Err(self.0)
        }
    }

    #[test]
    fn transport_errors_keep_their_detail() {
        // R13: an operator tells "connection reset" from "timed out" from "unreachable".
        use embedded_io::ErrorKind as K;
        let cases = [
            (K::ConnectionRefused, NetFailure::Refused),
            (K::ConnectionReset, NetFailure::Reset),
            (K::ConnectionAborted, NetFailure::Closed),
            (K::NotConnected, NetFailure::Closed),
            (K::BrokenPipe, NetFailure::Closed),
            (K::TimedOut, NetFailure::Timeout),
            (K::AddrNotAvailable, NetFailure::Unreachable),
            (K::Other, NetFailure::Other),
            (K::OutOfMemory, NetFailure::Other),
        ];
        for (kind, failure) in cases {
            let (mut rx, mut body) = ([0u8; 64], [0u8; 8]);
            let r = embassy_futures::block_on(read_response(&mut Failing(kind), &mut rx, &mut body));
            assert_eq!(r, Err(failure), "{kind:?}");
        }
    }

    #[test]
    fn short_content_length_body_is_truncated() {
        let r = answers(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{\"has_access\":true}");
        assert_eq!(r, Err(NetFailure::Truncated));
    }

    #[test]
    fn oversized_bodies_stop_at_the_window() {
        let mut big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n".to_vec();
        big.extend_from_slice(&[b' '; 256]);
        big.extend_from_slice(b"\r\n0\r\n\r\n");
        let (status, body) = answers(&big).unwrap();
        assert_eq!((status, body.len()), (200, 65), "one byte over the 64-byte limit");
    }

    #[test]
    fn head_larger_than_rx_is_refused() {
        let mut big = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        big.extend_from_slice(&[b'a'; 600]);
        big.extend_from_slice(b"\r\n\r\n{}");
        assert_eq!(answers(&big), Err(NetFailure::HeadTooLarge));
    }

    #[test]
    fn request_head_is_well_formed() {
        let mut conn = Scripted {
            script: b"HTTP/1.1 204 No Content\r\n\r\n",
            step: usize::MAX,
            written: std::vec::Vec::new(),
        };
        let req = RequestHead {
            method: "POST",
            path: "/oauth/token",
            host: "api.example.com",
            port: Some(8443),
            headers: &[("Connection", b"close")],
            body: Some(b"a=b"),
        };
        let (mut rx, mut body) = ([0u8; 256], [0u8; 16]);
        let reply = embassy_futures::block_on(exchange(&mut conn, &req, &mut rx, &mut body)).unwrap();
        assert_eq!(reply.status, 204);
        assert_eq!(
            conn.written,
            b"POST /oauth/token HTTP/1.1\r\nHost: api.example.com:8443\r\nConnection: close\r\nContent-Length: 3\r\n\r\na=b"
        );
    }

    /// What `write_request` writes for `path`, `host` and `port`.
    fn request_line_and_host(path: &str, host: &str, port: Option<u16>) -> std::string::String {
        let mut conn = Scripted {
            script: b"",
            step: usize::MAX,
            written: std::vec::Vec::new(),
        };
        let req = RequestHead {
            method: "GET",
            path,
            host,
            port,
            headers: &[],
            body: None,
        };
        embassy_futures::block_on(write_request(&mut conn, &req)).unwrap();
        std::string::String::from_utf8(conn.written).unwrap()
    }

    #[test]
    fn the_request_target_is_origin_form_and_ipv6_hosts_keep_their_brackets() {
        // RFC 9112 3.2.1: a URL without a path asks for "/", a bare query for "/?query".
        assert_eq!(
            request_line_and_host("", "h", None),
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        assert_eq!(
            request_line_and_host("?x=1", "h", None),
            "GET /?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        // RFC 9110 7.2 / RFC 3986 3.2.2: `Host: [::1]:8080`, not `::1:8080`.
        assert_eq!(
            request_line_and_host("/check?a=%20", "[::1]", Some(8080)),
            "GET /check?a=%20 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
        );
    }
}
