//! The endpoint URL rules both adapters share: [`check_url`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why [`check_url`] refused a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum UrlProblem {
    /// No `://`, or a scheme other than `http` / `https`.
    Scheme,
    /// A space, a control character (CR, LF, tab, NUL...) or a non-ASCII byte: written into
    /// the request line or the `Host` header, it would break or inject into the request.
    Character,
    /// `user@` or `user:password@` before the host.
    Userinfo,
    /// A `#fragment`: never sent to a server, so whatever it says would be silently lost.
    Fragment,
    /// No host, or one that is not a DNS name, an IPv4 dotted quad or an IPv6 address in
    /// brackets (also: a number that is not a dotted quad, like `127.1`, and IPv6 zone IDs).
    Host,
    /// An empty port after `:`, or one that is not 1..=65535.
    Port,
    /// A path or query character that must be percent-encoded (`"` `<` `>` `\` `^` `` ` ``
    /// `{` `|` `}` `[` `]`), a `%` not followed by two hex digits, or a `.` / `..` segment.
    Path,
}

impl core::fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            UrlProblem::Scheme => "is not an http:// or https:// URL",
            UrlProblem::Character => {
                "contains a space, a control character (CR, LF, tab...) or a non-ASCII character: \
                 percent-encode it in the path or query; write an international host name in \
                 punycode (xn--...)"
            }
            UrlProblem::Userinfo => {
                "has user information (user:password@) before the host: credentials do not belong \
                 in the URL; the access token is the only credential sent"
            }
            UrlProblem::Fragment => "has a #fragment, which is never sent to the server: remove it",
            UrlProblem::Host => {
                "has no valid host: give a DNS name, an IPv4 address (a.b.c.d) or an IPv6 \
                 address in brackets ([::1], no zone ID)"
            }
            UrlProblem::Port => "has an invalid port: give 1 to 65535 after the colon, or no colon",
            UrlProblem::Path => {
                "has a path or query character that must be percent-encoded (one of \"<>\\^`{|}[]), \
                 a % not followed by two hex digits, or a . or .. segment (write the path it stands for)"
            }
        })
    }
}

/// A checked URL ([`check_url`]), split into what a request needs. Borrowed from the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UrlTarget<'a> {
    /// `https://` (else `http://`).
    pub https: bool,
    /// The host as the `Host` header writes it: as in the URL, an IPv6 address in brackets.
    pub host_header: &'a str,
    /// The name for DNS, the TLS server name and the certificate check: without brackets and
    /// without a trailing dot (RFC 6066 3: SNI carries no trailing dot).
    pub name: &'a str,
    /// The host, when it is an IP address (then no DNS query and no SNI).
    pub ip: Option<IpAddr>,
    /// The port to connect to.
    pub port: u16,
    /// Whether `port` is the scheme's default (then `Host` carries no port).
    pub default_port: bool,
    /// Path and query as written; empty, or starting with `/` or `?` (the request line puts
    /// a `/` in front of what does not start with one).
    pub path: &'a str,
}

/// Splits and checks an endpoint URL by the project's own rules (no allocator), the same on
/// every platform: the device adapter sends what this splits, the desktop adapter refuses
/// what this refuses before its HTTP client sees the URL.
///
/// A URL reaches the wire as the request line (`GET <path> HTTP/1.1`), the `Host` header,
/// the DNS query, the TLS server name (SNI) and the name the certificate is verified against
/// (R14). So every URL is checked once, when the adapter is configured, and whatever passes
/// makes a valid HTTP/1.1 request (RFC 9112 3.2, RFC 9110 7.2, RFC 3986 3):
///
/// ```text
/// http[s]://host[:port][/path][?query]
/// host  = DNS name (letters, digits, '-', '_', '.'; an optional trailing dot)
///       | IPv4 dotted quad | '[' IPv6 ']'
/// port  = 1..=65535
/// path, query = RFC 3986 pchar, '/' and '?'; '%' followed by two hex digits;
///               no '.' or '..' segment
/// ```
///
/// The scheme and host are case-insensitive; percent-escapes are sent as written (never
/// decoded or re-encoded). Refused, each with its own [`UrlProblem`]: a space, control
/// character or non-ASCII byte anywhere (CR/LF would inject headers or a second request),
/// `user:password@` (credentials do not belong in the URL, and the device would log them),
/// a `#fragment` (never sent; an origin-form request target cannot carry one), an empty,
/// malformed or ambiguous host (`127.1`, `0x7f.0.0.1`, zone IDs), an empty or zero port,
/// a path character RFC 3986 says must be escaped, and a `.` or `..` path segment (clients
/// resolve them before sending, or not: the request target would differ by platform).
///
/// ```
/// use accessgate::{check_url, UrlProblem};
/// let t = check_url("http://[::1]:8080/check?device=k%2F1").unwrap();
/// assert_eq!((t.host_header, t.port, t.path), ("[::1]", 8080, "/check?device=k%2F1"));
/// assert_eq!(check_url("http://gate.lan/check\r\nX-Evil: 1"), Err(UrlProblem::Character));
/// assert_eq!(check_url("http://user:pw@gate.lan/check"), Err(UrlProblem::Userinfo));
/// ```
pub fn check_url(url: &str) -> Result<UrlTarget<'_>, UrlProblem> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlProblem::Scheme)?;
    let tls = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(UrlProblem::Scheme);
    };
    // The request framing: nothing but visible ASCII goes on the wire (a CR/LF would end the
    // request line or a header and start the attacker's).
    if !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UrlProblem::Character);
    }
    if rest.contains('#') {
        return Err(UrlProblem::Fragment);
    }
    // RFC 3986 3.2: the authority ends at the first '/', '?' or '#'.
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(UrlProblem::Userinfo);
    }
    let (host_header, port) = split_port(authority)?;
    let (name, ip) = host(host_header)?;
    let default = if tls { 443 } else { 80 };
    let port = match port {
        None => default,
        Some(p) => parse_port(p)?,
    };
    check_path(path)?;
    Ok(UrlTarget {
        https: tls,
        host_header,
        name,
        ip,
        port,
        default_port: port == default,
        path,
    })
}

/// `host[:port]` -> (host as written, the port's digits).
fn split_port(authority: &str) -> Result<(&str, Option<&str>), UrlProblem> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(UrlProblem::Host)?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or(UrlProblem::Host),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// 1..=65535 in decimal (at most 5 digits, so `00080` is 80 as everywhere else).
fn parse_port(digits: &str) -> Result<u16, UrlProblem> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlProblem::Port);
    }
    // Port 0 cannot be connected to: a configuration that could never work.
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlProblem::Port),
        Ok(p) => Ok(p),
    }
}

/// The host's name for DNS/SNI/certificates, and its address if it is one.
fn host(host: &str) -> Result<(&str, Option<IpAddr>), UrlProblem> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(UrlProblem::Host)?;
        // core's parser: no zone ID (`%eth0`), no IPvFuture.
        let v6 = inner.parse::<Ipv6Addr>().map_err(|_| UrlProblem::Host)?;
        return Ok((inner, Some(IpAddr::V6(v6))));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err(UrlProblem::Host);
    }
    let mut last = "";
    for label in name.split('.') {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ldh {
            return Err(UrlProblem::Host);
        }
        last = label;
    }
    // A name ending in a number is an IPv4 address to browsers (WHATWG: `127.1`, `0x7f.1`,
    // `010.0.0.1`), a name to a DNS resolver: only the unambiguous dotted quad is taken.
    let numeric =
        last.bytes().all(|b| b.is_ascii_digit()) || (last.len() > 1 && last[..2].eq_ignore_ascii_case("0x"));
    if numeric {
        let v4 = name.parse::<Ipv4Addr>().map_err(|_| UrlProblem::Host)?;
        return Ok((name, Some(IpAddr::V4(v4))));
    }
    Ok((name, None))
}

/// RFC 3986 path / query characters: unreserved, sub-delims, `:@/?` and `%XX`; no dot
/// segment in the path.
fn check_path(path: &str) -> Result<(), UrlProblem> {
    let path_only = path.split('?').next().unwrap_or_default();
    if path_only.split('/').any(is_dot_segment) {
        return Err(UrlProblem::Path);
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err(UrlProblem::Path);
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            b':' | b'@' | b'/' | b'?' => {}
            _ => return Err(UrlProblem::Path),
        }
        i += 1;
    }
    Ok(())
}

/// `.` or `..`, also written with `%2e` (WHATWG resolves those too).
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%2e")) {
            rest = rest.get(3..).unwrap_or_default();
        } else {
            return false;
        }
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> UrlTarget<'_> {
        check_url(url).unwrap_or_else(|e| panic!("{url:?} refused: {e:?}"))
    }

    fn problem(url: &str) -> Result<UrlTarget<'_>, UrlProblem> {
        check_url(url)
    }

    #[test]
    fn header_injection_and_invisible_bytes_are_refused_wherever_they_are() {
        for url in [
            "http://h/check\r\nX-Evil: 1",
            "http://h/check\r\n\r\nGET /admin HTTP/1.1",
            "http://h\r\nX-Evil: 1/check",
            "http://h/a\nb",
            "http://h/a\rb",
            "http://h/a\tb",
            "http://h/a b",
            "http://h /a",
            "http://h/a\0",
            "http://h/a\x7f",
            "http://h/caf\u{e9}",
            "http://b\u{fc}cher.example/",
            "http://h/?q=\u{2028}",
        ] {
            assert_eq!(problem(url), Err(UrlProblem::Character), "{url:?}");
        }
    }

    #[test]
    fn fragments_userinfo_and_schemes_are_refused_by_name() {
        assert_eq!(problem("http://h/check#top"), Err(UrlProblem::Fragment));
        assert_eq!(problem("http://h#top"), Err(UrlProblem::Fragment));
        assert_eq!(problem("http://h/?a=1#"), Err(UrlProblem::Fragment));
        assert_eq!(problem("http://u:p@h/check"), Err(UrlProblem::Userinfo));
        assert_eq!(problem("http://u@h/check"), Err(UrlProblem::Userinfo));
        assert_eq!(problem("http://@h/"), Err(UrlProblem::Userinfo));
        assert_eq!(problem("http://u@[::1]:80/"), Err(UrlProblem::Userinfo));
        // An '@' after the authority is a path character, not userinfo.
        assert_eq!(ok("http://h/users/@me").path, "/users/@me");
        assert_eq!(ok("http://h?who=a@b").path, "?who=a@b");
        for url in [
            "h/check",
            "ftp://h/",
            "http:/h/",
            "mqtt://h/",
            "://h/",
            " http://h/",
            "http\r\n://h/",
        ] {
            assert_eq!(problem(url), Err(UrlProblem::Scheme), "{url:?}");
        }
    }

    #[test]
    fn hosts_must_be_names_dotted_quads_or_bracketed_ipv6() {
        for url in [
            "http:///check",
            "http://:8080/check",
            "http://?q",
            "http://./",
            "http://a..b/",
            "http://.a/",
            "http://a_b!c/",
            "http://a%41/",
            "http://a\\b/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://010.0.0.1/",
            "http://256.0.0.1/",
            "http://1.2.3.4.5/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[::1]]/",
            "http://[fe80::1%1]/",
            "http://[fe80::1%25eth0]/",
            "http://[v1.x]/",
            "http://[127.0.0.1]/",
            "http://::1/",
            "http://[]/",
        ] {
            assert_eq!(problem(url), Err(UrlProblem::Host), "{url:?}");
        }
        let label = "a".repeat(64);
        assert_eq!(
            problem(&std::format!("http://{label}.example/")),
            Err(UrlProblem::Host)
        );
    }

    #[test]
    fn ports_must_be_1_to_65535() {
        for url in [
            "http://h:/",
            "http://h:0/",
            "http://h:00000/",
            "http://h:65536/",
            "http://h:123456/",
            "http://h:+80/",
            "http://h:8a/",
            "http://h:80:80/",
            "http://[::1]:/",
            "http://[::1]:0/",
        ] {
            assert_eq!(problem(url), Err(UrlProblem::Port), "{url:?}");
        }
        assert_eq!(ok("http://h:1/").port, 1);
        assert_eq!(ok("http://h:65535/").port, 65535);
        // Leading zeros are the same number (as in WHATWG), and the default port stays out
        // of the Host header.
        let t = ok("http://h:0080/");
        assert_eq!((t.port, t.default_port), (80, true));
    }

    #[test]
    fn path_characters_outside_rfc_3986_are_refused_and_escapes_pass_as_written() {
        for url in [
            "http://h/a\"b",
            "http://h/<script>",
            "http://h/a\\b",
            "http://h/a^b",
            "http://h/a`b",
            "http://h/{x}",
            "http://h/a|b",
            "http://h/a[0]",
            "http://h/100%",
            "http://h/%4",
            "http://h/%zz",
            "http://h/?q=%g0",
            "http://h/a/../b",
            "http://h/./b",
            "http://h/a/..",
            "http://h/a/%2e%2E/b",
            "http://h/a/.%2e?x",
        ] {
            assert_eq!(problem(url), Err(UrlProblem::Path), "{url:?}");
        }
        let t = ok("http://h/a%20b/%2F%2e1/~x-y_z.json?q=a%2Bb&r=:@/?!$'()*+,;=");
        assert_eq!(t.path, "/a%20b/%2F%2e1/~x-y_z.json?q=a%2Bb&r=:@/?!$'()*+,;=");
        // Dots inside a segment, and dot segments in the query, are not dot segments.
        assert_eq!(
            ok("http://h/.well-known/a...b/v1.2?p=../x").path,
            "/.well-known/a...b/v1.2?p=../x"
        );
    }

    #[test]
    fn a_label_of_63_bytes_is_a_name_one_of_64_is_not() {
        // RFC 1035 2.3.4: labels are 63 octets or less (the DNS query and SNI carry the name).
        let label = "a".repeat(63);
        let url = std::format!("http://{label}.example/");
        assert_eq!(ok(&url).name, std::format!("{label}.example"));
        let url = std::format!("http://x.{label}a/");
        assert_eq!(problem(&url), Err(UrlProblem::Host));
    }

    #[test]
    fn a_last_label_in_hex_is_an_ambiguous_address_and_refused() {
        // WHATWG reads `0x..` as an IPv4 number, a resolver as a name: neither is guessed.
        for url in [
            "http://0x7f/",
            "http://a.0X1/",
            "http://1.2.3.0x4/",
            "http://a.0x/",
        ] {
            assert_eq!(problem(url), Err(UrlProblem::Host), "{url:?}");
        }
        // `0x` inside a name, or a last label that merely starts with `0`, is a name.
        assert_eq!(ok("http://0x7f.example/").ip, None);
        assert_eq!(ok("http://a.0b1/").ip, None);
    }

    #[test]
    fn characters_after_a_percent_escape_are_still_checked() {
        // The request line carries the path as written: an escape never hides what follows it.
        for url in ["http://h/ab%41<x", "http://h/abc%2F%2F\\", "http://h/?q=%41%42|"] {
            assert_eq!(problem(url), Err(UrlProblem::Path), "{url:?}");
        }
        assert_eq!(ok("http://h/ab%41%42c").path, "/ab%41%42c");
    }

    #[test]
    fn every_url_problem_says_what_to_fix() {
        // R13: an operator reads why a URL was refused; each problem has its own message.
        let all = [
            UrlProblem::Scheme,
            UrlProblem::Character,
            UrlProblem::Userinfo,
            UrlProblem::Fragment,
            UrlProblem::Host,
            UrlProblem::Port,
            UrlProblem::Path,
        ];
        let texts: std::vec::Vec<std::string::String> = all.iter().map(|p| std::format!("{p}")).collect();
        for (i, t) in texts.iter().enumerate() {
            assert!(!t.is_empty(), "{:?}", all[i]);
            assert!(texts.iter().filter(|u| *u == t).count() == 1, "{t}");
        }
        assert!(texts[0].contains("https://"));
        assert!(texts[5].contains("65535"));
    }

    #[test]
    fn accepted_forms_split_as_the_request_needs() {
        let t = ok("http://backend.test/check");
        assert_eq!(
            t,
            UrlTarget {
                https: false,
                host_header: "backend.test",
                name: "backend.test",
                ip: None,
                port: 80,
                default_port: true,
                path: "/check",
            }
        );
        // A query with no path: the authority ends at '?' (nourl took `h?x=1` as the host).
        let t = ok("https://h?x=1");
        assert_eq!((t.name, t.path, t.port, t.https), ("h", "?x=1", 443, true));
        assert_eq!(ok("http://h").path, "");
        assert_eq!(ok("http://h/").path, "/");
        // IPv6: brackets in the Host header, none for the connection and the certificate.
        let t = ok("http://[::1]:8080/check?x=1");
        assert_eq!(t.host_header, "[::1]");
        assert_eq!(t.name, "::1");
        assert_eq!(t.ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!((t.port, t.default_port, t.path), (8080, false, "/check?x=1"));
        let t = ok("https://[2001:DB8::A]/");
        assert_eq!(
            (t.host_header, t.port, t.default_port),
            ("[2001:DB8::A]", 443, true)
        );
        // IPv4.
        let t = ok("http://127.0.0.1:8080");
        assert_eq!(t.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // Case-insensitive scheme and host; the host is sent as written.
        let t = ok("HTTPS://Backend.TEST:443/Check");
        assert_eq!(
            (t.https, t.host_header, t.name, t.default_port),
            (true, "Backend.TEST", "Backend.TEST", true)
        );
        // A trailing dot: the Host header as written, DNS and SNI without it (RFC 6066 3).
        let t = ok("https://localhost./check");
        assert_eq!((t.host_header, t.name), ("localhost.", "localhost"));
        // Names with digits, hyphens, underscores; a numeric label that is not the last.
        assert_eq!(ok("http://_acme-1.x2.example/").ip, None);
        assert_eq!(ok("http://1.example/").ip, None);
        assert_eq!(ok("http://xn--bcher-kva.example/").name, "xn--bcher-kva.example");
        // "://" later in the path is path.
        assert_eq!(ok("http://h/r/http://x/").path, "/r/http://x/");
    }
}
