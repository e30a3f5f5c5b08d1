//! Minimal HTTP/1.1: request parsing with `httparse`, responses written by hand.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest accepted request, head and body together.
pub(crate) const MAX_REQUEST: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// A parsed request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// Path without the query string.
    pub(crate) path: String,
    /// Query string without the `?` (empty if none).
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
    pub(crate) keep_alive: bool,
}

impl Request {
    /// First header named `name` (case-insensitive), as UTF-8.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub(crate) fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let t = rest.trim();
        (!t.is_empty()).then_some(t)
    }
}

/// Why reading a request stopped without one.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Clean EOF before any byte of a new request.
    Closed,
    /// I/O error or EOF in the middle of a request: drop the connection silently.
    Io,
    /// Malformed or too large: answer with this status, then close.
    Bad(u16, &'static str),
}

/// Read one request from `io`. `buf` carries bytes already read past the previous request
/// (pipelining); on success it keeps the bytes past this one.
pub(crate) async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Request, ReadError> {
    let mut chunk = [0u8; 4096];
    loop {
        if !buf.is_empty() {
            if let Some(r) = try_parse(buf)? {
                return finish_body(io, buf, r).await;
            }
        }
        if buf.len() >= MAX_REQUEST {
            return Err(ReadError::Bad(431, "request head too large"));
        }
        let n = io.read(&mut chunk).await.map_err(|_| ReadError::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Io
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Head {
    req: Request,
    head_len: usize,
    content_length: usize,
}

fn try_parse(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::Bad(431, "too many headers")),
        Err(_) => return Err(ReadError::Bad(400, "malformed request")),
    };
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let version = parsed.version.unwrap_or(1);
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    let mut req = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    let conn = req.header("connection").map(|c| c.to_ascii_lowercase());
    req.keep_alive = match (version, conn.as_deref()) {
        (_, Some(c)) if c.contains("close") => false,
        (0, Some(c)) => c.contains("keep-alive"),
        (0, None) => false,
        _ => true,
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(501, "chunked request bodies are not supported"));
    }
    let content_length = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ReadError::Bad(400, "bad content-length"))?,
    };
    if head_len.saturating_add(content_length) > MAX_REQUEST {
        return Err(ReadError::Bad(413, "request too large"));
    }
    Ok(Some(Head {
        req,
        head_len,
        content_length,
    }))
}

async fn finish_body<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    head: Head,
) -> Result<Request, ReadError> {
    let Head {
        mut req,
        head_len,
        content_length,
    } = head;
    let total = head_len + content_length;
    let mut chunk = [0u8; 4096];
    while buf.len() < total {
        let n = io.read(&mut chunk).await.map_err(|_| ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Io);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    req.body = buf[head_len..total].to_vec();
    buf.drain(..total);
    Ok(req)
}

/// Decode `application/x-www-form-urlencoded` (also used for query strings).
/// Returns `None` for invalid escapes, invalid UTF-8 or a repeated name.
pub(crate) fn parse_form(s: &[u8]) -> Option<Vec<(String, String)>> {
    let s = std::str::from_utf8(s).ok()?;
    let mut out: Vec<(String, String)> = Vec::new();
    for part in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (pct_decode(k)?, pct_decode(v)?);
        if out.iter().any(|(n, _)| *n == k) {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Reason phrase for the status line.
pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A well-formed response with a `Content-Length` body.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) extra_headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "application/json",
            extra_headers: Vec::new(),
            body: body.into(),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra_headers.push((name, value.into()));
        self
    }

    /// Serialize, with `Connection: keep-alive` or `close`.
    pub(crate) fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = head_bytes(
            self.status,
            self.content_type,
            &self.extra_headers,
            Some(self.body.len()),
            keep_alive,
        );
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response head. `content_length: None` omits the header (callers add their own framing).
pub(crate) fn head_bytes(
    status: u16,
    content_type: &str,
    extra: &[(&'static str, String)],
    content_length: Option<usize>,
    keep_alive: bool,
) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    h.push_str(&format!("Content-Type: {content_type}\r\n"));
    if let Some(n) = content_length {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for (n, v) in extra {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    h.push_str("Cache-Control: no-store\r\n");
    h.push_str(if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    h.push_str("\r\n");
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = parse_form(b"grant_type=refresh_token&refresh_token=rt_1%2B2&x=a+b").unwrap();
        assert_eq!(f[0], ("grant_type".into(), "refresh_token".into()));
        assert_eq!(f[1], ("refresh_token".into(), "rt_1+2".into()));
        assert_eq!(f[2], ("x".into(), "a b".into()));
        assert!(parse_form(b"a=1&a=2").is_none());
        assert!(parse_form(b"a=%zz").is_none());
        assert!(parse_form(b"a=%2").is_none());
        assert!(parse_form(b"").unwrap().is_empty());
    }

    #[tokio::test]
    async fn parses_pipelined_requests() {
        let data = b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b?q=1 HTTP/1.0\r\nAuthorization: Bearer  t1 \r\n\r\n".to_vec();
        let mut io = &data[..];
        let mut buf = Vec::new();
        let r1 = read_request(&mut io, &mut buf).await.unwrap();
        assert_eq!(r1.method, "POST");
        assert_eq!(r1.body, b"abc");
        assert!(r1.keep_alive);
        let r2 = read_request(&mut io, &mut buf).await.unwrap();
        assert_eq!(r2.path, "/b");
        assert_eq!(r2.query, "q=1");
        assert_eq!(r2.bearer(), Some("t1"));
        assert!(!r2.keep_alive);
        assert!(matches!(
            read_request(&mut io, &mut buf).await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn rejects_garbage_and_oversize() {
        let mut io = &b"\x00\x01garbage\r\n\r\n"[..];
        assert!(matches!(
            read_request(&mut io, &mut Vec::new()).await,
            Err(ReadError::Bad(400, _))
        ));
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_REQUEST);
        let mut io = big.as_bytes();
        assert!(matches!(
            read_request(&mut io, &mut Vec::new()).await,
            Err(ReadError::Bad(413, _))
        ));
        let huge = vec![b'a'; MAX_REQUEST + 10];
        let mut io = &huge[..];
        assert!(matches!(
            read_request(&mut io, &mut Vec::new()).await,
            Err(ReadError::Bad(_, _))
        ));
    }
}
