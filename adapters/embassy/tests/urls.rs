//! The endpoint URLs on the device: what [`Driver::new`] refuses (each [`UrlProblem`] on both
//! lanes, before anything runs) and, for what it accepts, the exact request line, `Host`
//! header, DNS name and address the driver uses, over a recording in-memory network.
//!
//! Before these rules (nourl's split, written raw), a CR/LF in the path went onto the wire as
//! an extra header or a second request, `http://[::1]:8080/` wrote `Host: ::1:8080`,
//! `http://h?x=1` asked DNS for `h?x=1`, `http://u@h/` for `u@h`, a `#fragment` was sent in
//! the request line and port 0 was connected to.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use accessgate::{Access, SessionConfig};
use accessgate_embassy::{
    Command, ConfigError, Driver, DriverBuffers, DriverConfig, Endpoint, Link, PlainCheckStorage,
    RefreshEndpoint, RefreshStorage, Seeds, Transport, UrlProblem,
};
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::{AddrType, Dns, TcpConnect};

mod park;
use park::block_on;

/// Records what the driver asks of the network; answers every request with a grant.
#[derive(Default)]
struct Recorder {
    dns: RefCell<Vec<String>>,
    connects: RefCell<Vec<SocketAddr>>,
    requests: RefCell<Vec<String>>,
}

impl Dns for Recorder {
    type Error = ErrorKind;
    async fn get_host_by_name(&self, host: &str, _t: AddrType) -> Result<IpAddr, ErrorKind> {
        self.dns.borrow_mut().push(host.to_string());
        Ok(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
    async fn get_host_by_address(&self, _addr: IpAddr, _result: &mut [u8]) -> Result<usize, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}

struct Conn<'a> {
    net: &'a Recorder,
    request: Vec<u8>,
    reply: &'static [u8],
}

impl TcpConnect for Recorder {
    type Error = ErrorKind;
    type Connection<'a> = Conn<'a>;
    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<Conn<'a>, ErrorKind> {
        self.connects.borrow_mut().push(remote);
        Ok(Conn {
            net: self,
            request: Vec::new(),
            reply: b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"has_access\":true}",
        })
    }
}

impl ErrorType for Conn<'_> {
    type Error = ErrorKind;
}

impl Write for Conn<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Read for Conn<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if !self.request.is_empty() {
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.request)).into_owned();
            self.net.requests.borrow_mut().push(text);
        }
        let n = buf.len().min(self.reply.len());
        buf[..n].copy_from_slice(&self.reply[..n]);
        self.reply = &self.reply[n..];
        Ok(n)
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// `Driver::new` with `check` as the check URL and `token` (if any) as the token URL.
fn build(check: &str, token: Option<&str>) -> Result<(), ConfigError> {
    let net: &'static Recorder = Box::leak(Box::default());
    let link: &'static Link<'static, NoopRawMutex> = Box::leak(Box::new(Link::new()));
    let mut config = DriverConfig::new(leak(check), Transport::PlainHttp);
    let mut buffers = DriverBuffers::new(Box::leak(Box::new(PlainCheckStorage::new())).buffers());
    if let Some(t) = token {
        config = config.with_refresh(RefreshEndpoint::new(leak(t), "kiosk"));
        buffers = buffers.with_refresh(Box::leak(Box::new(RefreshStorage::new())).buffers());
    }
    // `validate` (no buffers) and `Driver::new` agree.
    let validated = config.validate();
    let built = Driver::<_, _, _>::new(link, net, net, config, buffers, Seeds::new(1)).map(drop);
    assert_eq!(validated, built, "{check:?} / {token:?}");
    built
}

const GOOD: &str = "http://backend.test/check";

/// Hostile or malformed URLs and the problem each is refused for.
const REFUSED: &[(&str, UrlProblem)] = &[
    // Header injection and a smuggled second request.
    ("http://backend.test/check\r\nX-Evil: 1", UrlProblem::Character),
    (
        "http://backend.test/check HTTP/1.1\r\nHost: evil\r\n\r\nGET /admin",
        UrlProblem::Character,
    ),
    ("http://backend.test\r\nX-Evil: 1/check", UrlProblem::Character),
    ("http://backend.test/a\nb", UrlProblem::Character),
    ("http://backend.test/a b", UrlProblem::Character),
    ("http://backend.test/a\tb", UrlProblem::Character),
    ("http://backend.test/a\u{1}b", UrlProblem::Character),
    ("http://backend.test/a\0", UrlProblem::Character),
    ("http://backend.test/caf\u{e9}", UrlProblem::Character),
    ("http://b\u{fc}cher.test/check", UrlProblem::Character),
    ("http://backend.test/check#frag", UrlProblem::Fragment),
    ("http://backend.test#frag", UrlProblem::Fragment),
    ("http://u:p@backend.test/check", UrlProblem::Userinfo),
    ("http://u@backend.test/check", UrlProblem::Userinfo),
    ("http://u@127.0.0.1:8080/check", UrlProblem::Userinfo),
    ("http://:8080/check", UrlProblem::Host),
    ("http:///check", UrlProblem::Host),
    ("http://[fe80::1%1]/check", UrlProblem::Host),
    ("http://[::1/check", UrlProblem::Host),
    ("http://127.1/check", UrlProblem::Host),
    ("http://a..b/check", UrlProblem::Host),
    ("http://backend.test:0/check", UrlProblem::Port),
    ("http://backend.test:/check", UrlProblem::Port),
    ("http://backend.test:65536/check", UrlProblem::Port),
    ("http://[::1]:0/check", UrlProblem::Port),
    ("http://backend.test/a%zz", UrlProblem::Path),
    ("http://backend.test/a|b", UrlProblem::Path),
    ("http://backend.test/a\\b", UrlProblem::Path),
    ("http://backend.test/<x>", UrlProblem::Path),
    ("http://backend.test/api/../check", UrlProblem::Path),
];

#[test]
fn every_malformed_or_ambiguous_url_is_refused_on_both_lanes_naming_the_problem() {
    assert_eq!(build(GOOD, Some("http://backend.test/oauth/token")), Ok(()));
    for &(url, problem) in REFUSED {
        assert_eq!(
            build(url, None),
            Err(ConfigError::Url(Endpoint::Check, problem)),
            "check {url:?}"
        );
        assert_eq!(
            build(GOOD, Some(url)),
            Err(ConfigError::Url(Endpoint::Token, problem)),
            "token {url:?}"
        );
    }
    // Not http(s) at all: the older, coarser variant.
    assert_eq!(
        build("backend.test/check", None),
        Err(ConfigError::InvalidUrl(Endpoint::Check))
    );
    assert_eq!(
        build("ftp://backend.test/", None),
        Err(ConfigError::InvalidUrl(Endpoint::Check))
    );
}

#[test]
fn refusals_say_which_url_and_what_is_wrong() {
    let msg = |url| build(url, None).unwrap_err().to_string();
    let m = msg("http://backend.test/check\r\nX-Evil: 1");
    assert!(
        m.starts_with("check URL") && m.contains("control character"),
        "{m}"
    );
    let m = msg("http://u:p@backend.test/check");
    assert!(m.contains("user:password@"), "{m}");
    let m = msg("http://backend.test/check#frag");
    assert!(m.contains("#fragment"), "{m}");
    let m = msg("http://backend.test:0/check");
    assert!(m.contains("1 to 65535"), "{m}");
    let m = msg("http://[fe80::1%1]/check");
    assert!(m.contains("[::1]") && m.contains("zone"), "{m}");
    let m = msg("http://backend.test/a%zz");
    assert!(m.contains("percent-encoded"), "{m}");
    let m = build(GOOD, Some("http://backend.test/token#x"))
        .unwrap_err()
        .to_string();
    assert!(m.starts_with("token URL") && m.contains("#fragment"), "{m}");
}

/// What one check with `url` asked of the network: DNS names, connect addresses, requests.
fn one_check(url: &str) -> (Vec<String>, Vec<SocketAddr>, Vec<String>) {
    let net: &'static Recorder = Box::leak(Box::default());
    let link: &'static Link<'static, NoopRawMutex> = Box::leak(Box::new(Link::new()));
    let config = DriverConfig::new(leak(url), Transport::PlainHttp).with_session(SessionConfig::DEFAULT);
    let buffers = DriverBuffers::new(Box::leak(Box::new(PlainCheckStorage::new())).buffers());
    let driver = Driver::<_, _, _>::new(link, net, net, config, buffers, Seeds::new(1)).expect(url);
    let script = async {
        let mut rx = link.status_receiver().expect("a receiver");
        link.try_send(Command::sign_in(b"at_1", b"rt_1", accessgate::Duration::from_secs(3600)).unwrap())
            .unwrap();
        while rx.changed().await.status.access != Access::Granted {}
    };
    let script = embassy_time::with_timeout(embassy_time::Duration::from_secs(10), script);
    match block_on(select(driver.run(), script)) {
        Either::Second(r) => r.expect("granted within 10 s"),
    }
    (net.dns.take(), net.connects.take(), net.requests.take())
}

/// The request line and `Host` header of a request.
fn head(request: &str) -> (&str, &str) {
    let mut lines = request.split("\r\n");
    let line = lines.next().unwrap();
    let host = lines
        .find_map(|l| l.strip_prefix("Host: "))
        .expect("a Host header");
    (line, host)
}

#[test]
fn accepted_urls_make_valid_request_lines_and_host_headers() {
    let v6 = |port| SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    let v4 = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    // (url, DNS names asked, address connected, request line, Host)
    let cases: &[(&str, &[&str], SocketAddr, &str, &str)] = &[
        // RFC 9110 7.2: an IPv6 host keeps its brackets (nourl's split wrote `::1:8080`).
        (
            "http://[::1]:8080/check",
            &[],
            v6(8080),
            "GET /check HTTP/1.1",
            "[::1]:8080",
        ),
        ("http://[::1]/check", &[], v6(80), "GET /check HTTP/1.1", "[::1]"),
        // A query, with and without a path, and percent-escapes, exactly as written.
        (
            "http://backend.test:8080/check?device=k%2F1&x=a+b",
            &["backend.test"],
            v4(8080),
            "GET /check?device=k%2F1&x=a+b HTTP/1.1",
            "backend.test:8080",
        ),
        (
            "http://backend.test?x=1",
            &["backend.test"],
            v4(80),
            "GET /?x=1 HTTP/1.1",
            "backend.test",
        ),
        (
            "http://backend.test",
            &["backend.test"],
            v4(80),
            "GET / HTTP/1.1",
            "backend.test",
        ),
        (
            "http://backend.test/a%20b%2e",
            &["backend.test"],
            v4(80),
            "GET /a%20b%2e HTTP/1.1",
            "backend.test",
        ),
        // Case-insensitive scheme; the host as written (DNS and Host are case-insensitive).
        (
            "HTTP://Backend.TEST/Check",
            &["Backend.TEST"],
            v4(80),
            "GET /Check HTTP/1.1",
            "Backend.TEST",
        ),
        // A trailing dot stays in Host, not in the DNS query.
        (
            "http://backend.test./check",
            &["backend.test"],
            v4(80),
            "GET /check HTTP/1.1",
            "backend.test.",
        ),
        // An IPv4 address is not looked up; the default port stays out of Host.
        (
            "http://127.0.0.1:80/check",
            &[],
            v4(80),
            "GET /check HTTP/1.1",
            "127.0.0.1",
        ),
        // '@' and ':' in the path are path characters.
        (
            "http://backend.test/u/@me:x",
            &["backend.test"],
            v4(80),
            "GET /u/@me:x HTTP/1.1",
            "backend.test",
        ),
    ];
    for &(url, dns, addr, line, host) in cases {
        let (asked, connects, requests) = one_check(url);
        assert_eq!(asked, dns, "{url}: DNS");
        assert_eq!(connects, [addr], "{url}: connect");
        assert_eq!(requests.len(), 1, "{url}");
        assert_eq!(head(&requests[0]), (line, host), "{url}: {}", requests[0]);
        // Exactly the driver's headers: nothing from the URL leaked into a header of its own.
        let lines: Vec<_> = requests[0].split("\r\n").collect();
        assert_eq!(
            lines[1..],
            [
                &format!("Host: {host}")[..],
                "Authorization: Bearer at_1",
                "Connection: close",
                "",
                ""
            ],
            "{url}"
        );
    }
}
