//! Fuzzes the endpoint URL rules (`check_url`): never a panic, and whatever passes makes a
//! valid HTTP/1.1 request: the request target and the `Host` header hold only visible ASCII
//! without space (no CR/LF to inject a header or a second request, no `#`, no userinfo `@`
//! in the host), the port is 1..=65535, the name for DNS/SNI is the host without brackets or
//! trailing dot, and the parts are slices of the URL itself. Cross-checked with the `url`
//! crate (WHATWG): a URL accepted here has the same scheme and port there.
#![no_main]

use accessgate::check_url;
use libfuzzer_sys::fuzz_target;

fn visible(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = check_url(s) else {
        return;
    };
    assert!(visible(t.path) || t.path.is_empty(), "path {:?}", t.path);
    assert!(t.path.is_empty() || t.path.starts_with('/') || t.path.starts_with('?'));
    assert!(!t.path.contains('#'), "fragment in {:?}", t.path);
    assert!(
        visible(t.host_header) && !t.host_header.is_empty(),
        "host {:?}",
        t.host_header
    );
    assert!(
        !t.host_header.contains(['@', '/', '?', '#']),
        "host {:?}",
        t.host_header
    );
    assert!(t.port != 0);
    assert!(!t.name.is_empty() && !t.name.ends_with('.') && !t.name.contains(['[', ']']));
    assert!(
        t.host_header.contains(t.name),
        "{:?} / {:?}",
        t.host_header,
        t.name
    );
    assert!(s.contains(t.host_header) && s.contains(t.path));
    let lower = s.to_ascii_lowercase();
    assert_eq!(t.https, lower.starts_with("https://"));
    assert!(t.https || lower.starts_with("http://"));
    let default = if t.https { 443 } else { 80 };
    assert_eq!(t.default_port, t.port == default);
    if let Ok(w) = url::Url::parse(s) {
        assert_eq!(w.scheme(), if t.https { "https" } else { "http" });
        assert_eq!(w.port_or_known_default(), Some(t.port), "{s:?}");
        assert!(w.username().is_empty() && w.password().is_none());
        assert!(w.fragment().is_none());
    }
});
