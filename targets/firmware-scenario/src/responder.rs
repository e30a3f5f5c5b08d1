//! The server end of [`MemNet`]: a tiny HTTP/1.1 responder driven by a [`Script`].
//!
//! It serves one connection at a time: asks the script whether to accept, reads the request
//! head (up to [`REQUEST_HEAD_MAX`] bytes), parses the request line and the `Authorization`
//! header by hand, and writes the script's reply with `Connection: close`. Request bodies
//! are ignored (the gate only sends GETs).
//!
//! A scenario plugs in by implementing [`Script`] (see `backend.rs`).

use core::fmt::Write as _;
use core::net::SocketAddr;

use embedded_io_async::{Read, Write};

use crate::net::{MemConn, MemNet};

/// Largest request head (request line and headers) the responder reads.
pub const REQUEST_HEAD_MAX: usize = 512;

/// The parts of a request a script looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// Origin-form target, e.g. `/api/code/invites/check-access/`.
    pub path: &'a str,
    /// Value of the `Authorization` header, trimmed.
    pub authorization: Option<&'a str>,
}

/// What the responder sends back for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A complete response with `Content-Length`, then close.
    Respond { status: u16, body: &'a str },
    /// Send nothing; keep the connection open until the client gives up.
    #[allow(dead_code)] // the current scenario never hangs; kept for timeout scripts
    Hang,
}

/// Decides how the server side answers. Called from the responder task only.
pub trait Script {
    /// A connection arrives: `true` accepts it, `false` refuses it (the client's
    /// `connect` fails). Called before anything is read.
    fn admit(&mut self, local: SocketAddr) -> bool;

    /// The request head of an accepted connection has been read.
    fn reply(&mut self, request: &RequestHead<'_>) -> Reply<'_>;
}

/// Serves connections on `net` forever, one at a time.
pub async fn serve<const N: usize, const K: usize, S: Script>(net: &MemNet<N, K>, script: &mut S) -> ! {
    loop {
        let incoming = net.accept().await;
        if !script.admit(incoming.local_addr()) {
            incoming.refuse();
            continue;
        }
        serve_connection(incoming.accept(), script).await;
        // The connection is dropped (closed) here.
    }
}

async fn serve_connection<const N: usize, const K: usize, S: Script>(
    mut conn: MemConn<'_, N, K>,
    script: &mut S,
) {
    let mut buf = [0u8; REQUEST_HEAD_MAX];
    let mut len = 0;
    let head_len = loop {
        if let Some(end) = find(&buf[..len], b"\r\n\r\n") {
            break end + 4;
        }
        if len == buf.len() {
            let _ = write_response(&mut conn, 431, "").await;
            return;
        }
        match conn.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return, // client gave up before sending a full head
            Ok(n) => len += n,
        }
    };
    let Some(head) = parse_head(&buf[..head_len]) else {
        let _ = write_response(&mut conn, 400, "").await;
        return;
    };
    match script.reply(&head) {
        Reply::Respond { status, body } => {
            let _ = write_response(&mut conn, status, body).await;
        }
        Reply::Hang => {
            // Keep the connection until the client closes it (its timeout fired).
            let mut sink = [0u8; 64];
            while let Ok(1..) = conn.read(&mut sink).await {}
        }
    }
}

/// Parses `METHOD SP PATH SP HTTP/1.x CRLF (NAME: VALUE CRLF)* CRLF`.
fn parse_head(head: &[u8]) -> Option<RequestHead<'_>> {
    let text = core::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?;
    let path = request_line.next()?;
    if !request_line.next()?.starts_with("HTTP/1.") || method.is_empty() || !path.starts_with('/') {
        return None;
    }
    let authorization = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim());
    Some(RequestHead {
        method,
        path,
        authorization,
    })
}

async fn write_response<W: Write>(conn: &mut W, status: u16, body: &str) -> Result<(), W::Error> {
    let mut head = heapless::String::<128>::new();
    // 128 bytes hold the longest head below; a failed write! would only truncate it.
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        reason(status),
        body.len(),
        if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        },
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
