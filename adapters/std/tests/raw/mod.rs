//! A scripted raw HTTP server on loopback for the hostile-server tests: it reads each request
//! (head and `Content-Length` body), records it with the number of the connection it came on,
//! and answers with whatever bytes, pauses and closes the test scripts, valid HTTP or not.
#![allow(dead_code)] // each test binary uses a part of it

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use accessgate_std::GateClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One step of an answer.
#[derive(Clone, Debug)]
pub enum Step {
    Write(Vec<u8>),
    Sleep(StdDuration),
    /// Close the connection (without it the server reads the next request: keep-alive).
    Close,
    /// Keep the connection open without writing, until the client goes away (at most 30 s).
    Hold,
}

/// `Step::Write` of a byte string.
pub fn w(bytes: impl AsRef<[u8]>) -> Step {
    Step::Write(bytes.as_ref().to_vec())
}

/// A request as the server read it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Which accepted connection (0, 1, ...) it came on.
    pub conn: usize,
    /// Head and body, as sent.
    pub bytes: Vec<u8>,
}

impl Seen {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    pub fn is_post(&self) -> bool {
        self.bytes.starts_with(b"POST ")
    }
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

type Answer = dyn Fn(&Seen) -> Vec<Step> + Send + Sync;

/// The server; stops (and drops its connections) when dropped.
pub struct Raw {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepts: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest request head plus body the server reads.
const MAX_REQUEST: usize = 64 * 1024;

impl Raw {
    /// Answers every request with `answer(request)`.
    pub async fn start(answer: impl Fn(&Seen) -> Vec<Step> + Send + Sync + 'static) -> Raw {
        Self::serve(true, Arc::new(answer)).await
    }

    /// On each connection, runs `steps` at once without reading a byte (`Hold`: sleeps).
    pub async fn unread(steps: Vec<Step>) -> Raw {
        Self::serve(false, Arc::new(move |_: &Seen| steps.clone())).await
    }

    async fn serve(read: bool, answer: Arc<Answer>) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepts = Arc::new(AtomicUsize::new(0));
        let (s, a) = (seen.clone(), accepts.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let conn = a.fetch_add(1, Ordering::SeqCst);
                let (seen, answer) = (s.clone(), answer.clone());
                conns.spawn(async move {
                    if read {
                        connection(stream, conn, seen, answer).await
                    } else {
                        unread(stream, answer).await
                    }
                });
            }
        });
        Raw {
            addr,
            seen,
            accepts,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request read so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

async fn connection(mut stream: TcpStream, conn: usize, seen: Arc<Mutex<Vec<Seen>>>, answer: Arc<Answer>) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let request = Seen { conn, bytes: request };
        seen.lock().unwrap().push(request.clone());
        if !play(&mut stream, answer(&request), true).await {
            return;
        }
    }
}

async fn unread(mut stream: TcpStream, answer: Arc<Answer>) {
    let nothing = Seen {
        conn: 0,
        bytes: Vec::new(),
    };
    play(&mut stream, answer(&nothing), false).await;
}

/// Plays `steps` on `stream`; `false` once the connection is done with (closed, held, broken).
/// `Hold` waits 30 s at most: with `read`, reading until the client closes; without, reading
/// nothing (a server that never reads the request).
async fn play(stream: &mut TcpStream, steps: Vec<Step>, read: bool) -> bool {
    for step in steps {
        match step {
            Step::Write(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return false;
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Close => return false,
            Step::Hold => {
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(StdDuration::from_secs(30), async {
                    if read {
                        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    } else {
                        std::future::pending::<()>().await
                    }
                })
                .await;
                return false;
            }
        }
    }
    true
}

/// One request off `stream` (`buf` keeps what was read past it); `None` at EOF.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            if buf.len() >= total {
                return Some(buf.drain(..total).collect());
            }
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A complete response: status line, `Content-Length`, extra header lines, body.
pub fn response(status_line: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{status_line}\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// The grant a lenient client would take, were it to read it out of broken framing.
pub const GRANT: &[u8] = br#"{"has_access":true}"#;

/// A gate config whose both endpoints are `base` (default paths), with the short timings of
/// `common::fast_session`, no proxy from the environment and no system roots.
pub fn config(base: &str, session: accessgate::SessionConfig) -> GateClientConfig {
    let mut c = GateClientConfig::new(base);
    c.session = session;
    c.system_roots = false;
    c.proxy_from_env = false;
    c.seed = Some(0x5eed);
    c
}

/// Distinctive secrets, to look for wherever they must not be.
pub const ACCESS: &str = "at_SECRET_a11ce_4f9a";
pub const REFRESH: &str = "rt_SECRET_b0b_77c1";
