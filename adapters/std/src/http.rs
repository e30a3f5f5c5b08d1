//! The HTTP side: one check (`GET`) or one refresh (`POST`) per call, classified by the
//! core's shared classifiers so every platform applies R1 the same way.
//!
//! Server input is hostile: bodies are streamed and at most `limit + 1` bytes are kept (an
//! oversized body is detected without buffering it, R1/R12), redirects are not followed (a
//! captive portal's 302 is just another transient status), and nothing here panics on what the
//! server sends. Requests have no timeout of their own: the session times every attempt out
//! (R4) and cancels it, and the request is then aborted wherever it runs.
//!
//! Against a hostile server or network (`tests/hostile_net.rs`, `tests/env_proxy.rs`,
//! `tests/secret_output.rs`):
//! - **Redirects** (301/302/303/307/308, to any host, scheme or userinfo) are never followed:
//!   the redirect target gets no connection, so neither the bearer token nor the refresh form
//!   reaches it; the check or refresh is transient with the status as its detail (R4, R13).
//! - **Content codings**: none is asked for (no `Accept-Encoding`) and none is decoded, whatever
//!   reqwest features other crates of the app turn on; a compressed body is read raw, so a
//!   compressed grant is malformed and a gzip bomb is refused at `max_body + 1` bytes.
//! - **Framing**: what the device's `wire.rs` refuses is refused here, on both endpoints (a
//!   transient `io` failure, "bad framing"; no token is taken from it), by hyper or by
//!   [`framing`]: no status line (HTTP/0.9), a garbage
//!   or HTTP/2 status line, `101`, obsolete folding, conflicting or signed `Content-Length`,
//!   `Transfer-Encoding` other than `chunked` or beside `Content-Length`, broken chunk sizes
//!   or chunk-extension lines over hyper's limit. A head over hyper's limits (100 headers, about
//!   400 KB) is "response head too large"; a body shorter than announced is "truncated".
//! - **Time**: whatever the server drips (a body, interim `1xx` responses, nothing at all,
//!   never reading the request), the attempt ends at its timeout (R4).
//! - A `Retry-After` sent twice counts by its last value, as on the device (R6).
//! - A keep-alive connection idle for more than [`POOL_IDLE`] (2 s) is not reused.
//! - A keep-alive connection is reused only clean: an answer queued behind another (sent with
//!   it or while the connection idles) makes hyper drop the connection, never answer the next
//!   request; a connection reused after a logout or refresh carries only the current tokens.
//!
//! Limits: hyper skips any number of interim `1xx` responses (the device at most 4); only
//! the attempt timeout bounds them. A status line without a reason phrase is read as HTTP (as
//! on the device). With [`GateClientConfig::proxy_from_env`] on, a proxy the environment names
//! reads the tokens of an `http` endpoint (over `https` it sees only `CONNECT host:port`).

use std::error::Error as StdError;
use std::sync::Arc;

use accessgate::{
    classify, classify_refresh, CheckOutcome, Duration, FailureDetail, NetFailure, RefreshOutcome,
    TransientClass,
};
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, RETRY_AFTER, TRANSFER_ENCODING,
};
use reqwest::{Client, Response, Url};
use zeroize::Zeroizing;

use crate::config::GateClientConfig;

/// How long an idle keep-alive connection may wait for its next request. Reuse pays where
/// requests follow each other closely (a refresh and its check, a burst of re-checks); the
/// gate's own requests are otherwise minutes apart, by when the server has usually closed the
/// connection anyway. Short, because the pool's clock stops while the machine is suspended:
/// a connection idle when a laptop went to sleep would be reused after it wakes, perhaps on
/// another network where it leads nowhere, and the first check or refresh after waking (the
/// one a user waits for, R3, R11) would wait out its attempt timeout. Now that takes a
/// suspend within 2 s of a request.
pub(crate) const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(2);
use crate::error::GateError;
use crate::failure::transport_failure;

/// A refresh answer to hand to [`accessgate::Session::handle_refresh_result`], owned because
/// the request ends before the session takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefreshReply {
    /// The tokens are zeroed when the reply is dropped.
    Refreshed {
        access_token: Zeroizing<Vec<u8>>,
        refresh_token: Option<Zeroizing<Vec<u8>>>,
        expires_in: Duration,
    },
    Rejected,
    /// What went wrong and, exactly, why (R13).
    Transient(TransientClass, FailureDetail),
}

impl RefreshReply {
    pub(crate) fn as_outcome(&self) -> RefreshOutcome<'_> {
        match self {
            RefreshReply::Refreshed {
                access_token,
                refresh_token,
                expires_in,
            } => RefreshOutcome::Refreshed {
                access_token,
                refresh_token: refresh_token.as_ref().map(|t| t.as_slice()),
                expires_in: *expires_in,
            },
            RefreshReply::Rejected => RefreshOutcome::Rejected,
            RefreshReply::Transient(class, detail) => RefreshOutcome::transient_with(*class, *detail),
        }
    }
}

/// The HTTP client and the two endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: Client,
    check_url: Url,
    token_url: Url,
    client_id: String,
    max_token_body: usize,
    /// The session's body limit for checks (R1).
    max_body: usize,
}

fn parse_url(url: &str) -> Result<Url, GateError> {
    // The URL as the error shows it: credentials are never echoed, whatever else is wrong.
    let bad = |reason: String| GateError::InvalidUrl {
        url: without_userinfo(url),
        reason,
    };
    // The URL rules both platforms share, before WHATWG parsing can rewrite the URL: it would
    // strip a CR/LF or tab, percent-encode a space, drop a #fragment, resolve `..`, read
    // `127.1` as 127.0.0.1, and reqwest would send `user:password@` as a Basic
    // `Authorization` header next to the bearer token. The device refuses all of these.
    accessgate::check_url(url).map_err(|problem| bad(problem.to_string()))?;
    let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(bad(format!("scheme {other:?} is not http or https"))),
    }
}

/// `url` with a `user:password@` replaced by `***@`, for an error message.
fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_string(),
    }
}

impl Transport {
    pub(crate) fn new(cfg: &GateClientConfig) -> Result<Self, GateError> {
        let check_url = parse_url(&cfg.check_url)?;
        let token_url = parse_url(&cfg.token_url)?;
        // Trust anchors, pinning and verification (R14) are in `crate::tls`.
        let mut builder = Client::builder()
            .use_preconfigured_tls(crate::tls::client_config(cfg)?)
            .redirect(reqwest::redirect::Policy::none())
            // Whatever reqwest features another crate of the app turns on (Cargo unifies them),
            // the gate asks for no content coding and decodes none, as the device: a body is
            // read as sent and capped as sent (R1, R12).
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .user_agent(cfg.user_agent.clone())
            // A connection idle longer than this is not reused: see [`POOL_IDLE`].
            .pool_idle_timeout(POOL_IDLE)
            .https_only(false);
        if !cfg.proxy_from_env {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(GateError::Http)?;
        Ok(Transport {
            client,
            check_url,
            token_url,
            client_id: cfg.client_id.clone(),
            max_token_body: cfg.max_token_body,
            max_body: cfg.session.gate.max_body,
        })
    }

    /// `GET check_url` with `auth` ([`bearer`]), classified by [`accessgate::classify`]. No
    /// header (no token, or one no header can carry) is not sent (R4).
    pub(crate) async fn check(self: Arc<Self>, auth: Option<HeaderValue>) -> CheckOutcome {
        let Some(auth) = auth else {
            log::warn!("check not sent: the access token is not a valid header value");
            return CheckOutcome::transient(TransientClass::InvalidBody);
        };
        let max_body = self.max_body;
        let request = async {
            let mut resp = self
                .client
                .get(self.check_url.clone())
                .header(AUTHORIZATION, auth)
                .send()
                .await
                .map_err(|e| failed("check", &e))?;
            framing(&resp)?;
            let status = resp.status().as_u16();
            // R6: sent twice, the last value counts, as on the device.
            let retry_after = resp
                .headers()
                .get_all(RETRY_AFTER)
                .iter()
                .next_back()
                .map(|v| v.as_bytes().to_vec());
            let body = match read_capped(&mut resp, max_body, 4096).await {
                Ok(b) => b,
                // Only a 200's body matters (R1); a broken one is an I/O failure.
                Err(e) if status == 200 => return Err(failed("check body", &e)),
                Err(_) => Vec::new(),
            };
            Ok(classify(status, retry_after.as_deref(), &body, max_body))
        };
        match request.await {
            Ok(outcome) => outcome,
            // R13: the detail travels with the class.
            Err((class, detail)) => CheckOutcome::transient_with(class, detail),
        }
    }

    /// `POST token_url` with the refresh form, classified by [`accessgate::classify_refresh`].
    pub(crate) async fn refresh(self: Arc<Self>, refresh_token: Zeroizing<Vec<u8>>) -> RefreshReply {
        let Ok(refresh_token) = std::str::from_utf8(&refresh_token) else {
            // Unreachable: the session stores header-safe (ASCII) tokens only.
            return RefreshReply::Transient(TransientClass::InvalidBody, FailureDetail::None);
        };
        let limit = self.max_token_body;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", self.client_id.as_str()),
        ];
        let request = async {
            let mut resp = self
                .client
                .post(self.token_url.clone())
                .form(&form)
                .send()
                .await
                .map_err(|e| failed("refresh", &e))?;
            framing(&resp)?;
            let status = resp.status().as_u16();
            // The answer's body holds the new tokens: zeroed when dropped.
            // Room for the whole answer (8 KiB by default, 64 KiB at most), so no copy of the tokens
            // is left behind by a reallocation.
            let body = match read_capped(&mut resp, limit, 64 * 1024).await {
                Ok(b) => Zeroizing::new(b),
                // A 400's body says whether the grant is dead; a 401 needs none.
                Err(e) if matches!(status, 200 | 400) => return Err(failed("refresh body", &e)),
                Err(_) => Zeroizing::default(),
            };
            // A token no header can carry, or too long to store, the session refuses as malformed.
            Ok(match classify_refresh(status, &body, limit) {
                RefreshOutcome::Refreshed {
                    access_token,
                    refresh_token,
                    expires_in,
                } => RefreshReply::Refreshed {
                    access_token: Zeroizing::new(access_token.to_vec()),
                    refresh_token: refresh_token.map(|t| Zeroizing::new(t.to_vec())),
                    expires_in,
                },
                RefreshOutcome::Rejected => RefreshReply::Rejected,
                RefreshOutcome::Transient { class, detail } => RefreshReply::Transient(class, detail),
            })
        };
        // R13: a transport or TLS failure on the token endpoint is named as on the check
        // endpoint (`transport_failure`).
        request
            .await
            .unwrap_or_else(|(class, detail)| RefreshReply::Transient(class, detail))
    }
}

/// What hyper would read but the device refuses (`adapters/embassy/src/wire.rs`), refused here
/// too before a byte of the body is read, so broken framing never yields a body (R1) and both
/// platforms name it alike (R13): a `Transfer-Encoding` other than exactly `chunked` (hyper
/// would read until the connection closes), `Transfer-Encoding` beside `Content-Length` (RFC
/// 9112 6.3: a sign of response splitting, to be handled as an error), and `101 Switching
/// Protocols` (not an answer). The connection is then dropped, not pooled.
fn framing(resp: &Response) -> Result<(), (TransientClass, FailureDetail)> {
    let bad = (TransientClass::Io, FailureDetail::Net(NetFailure::BadFraming));
    if resp.status().as_u16() == 101 {
        log::debug!("accessgate: 101 Switching Protocols refused (not an answer)");
        return Err(bad);
    }
    let headers = resp.headers();
    if headers.contains_key(TRANSFER_ENCODING)
        && (!only_chunked(headers) || headers.contains_key(CONTENT_LENGTH))
    {
        log::debug!("accessgate: Transfer-Encoding other than chunked, or beside Content-Length, refused");
        return Err(bad);
    }
    Ok(())
}

/// Every `Transfer-Encoding` line together names exactly one coding, `chunked`.
fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    matches!((codings.next(), codings.next()), (Some(c), None) if c.eq_ignore_ascii_case(b"chunked"))
}

/// `Authorization: Bearer <token>`, marked sensitive, built once per attempt straight from the
/// session's token (one allocation, moved into the header without a copy). The session stores
/// only header-safe tokens (the core checks them at sign-in and refresh); `HeaderValue` still
/// refuses a control byte, so nothing here can split a header.
pub(crate) fn bearer(token: &[u8]) -> Option<HeaderValue> {
    if token.is_empty() {
        return None;
    }
    let mut v = Vec::with_capacity(7 + token.len());
    v.extend_from_slice(b"Bearer ");
    v.extend_from_slice(token);
    let mut h = HeaderValue::try_from(v).ok()?;
    h.set_sensitive(true);
    Some(h)
}

/// Reads at most `limit + 1` bytes of the body, chunk by chunk, and stops there: one byte
/// past the limit is enough for the classifier to refuse it (R1), and a huge body is never
/// buffered (R12).
/// `reserve` bytes are allocated up front (at most `limit + 1`): a body that outgrows them
/// leaves a copy of what it held in the memory its growth freed.
async fn read_capped(resp: &mut Response, limit: usize, reserve: usize) -> Result<Vec<u8>, reqwest::Error> {
    let cap = limit.saturating_add(1);
    let mut body = Vec::with_capacity(cap.min(reserve));
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

/// The class and detail of a failed request (R13), logged at debug level with the whole
/// error chain (`RUST_LOG=accessgate_std=debug`).
fn failed(what: &str, err: &reqwest::Error) -> (TransientClass, FailureDetail) {
    let (class, detail) = transport_failure(err);
    if log::log_enabled!(log::Level::Debug) {
        let mut chain = err.to_string();
        let mut next = err.source();
        for _ in 0..8 {
            let Some(e) = next else { break };
            chain.push_str(": ");
            chain.push_str(&e.to_string());
            next = e.source();
        }
        log::debug!("accessgate: {what} failed: {} ({detail}): {chain}", class.name());
    }
    (class, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_sensitive_and_never_splits() {
        let h = bearer(b"at_1").expect("a header-safe token");
        assert!(h.is_sensitive());
        assert_eq!(h.as_bytes(), b"Bearer at_1");
        assert!(bearer(b"").is_none());
        assert!(bearer(b"a\r\nX-Evil: 1").is_none());
        assert!(bearer(b"a\nb").is_none());
        assert!(bearer(b"a\0b").is_none());
    }

    #[test]
    fn urls_the_device_refuses_are_refused_here_too_with_the_same_reason() {
        // WHATWG (reqwest's Url) would take each of these and send something else: strip the
        // CR/LF, encode the space, drop the fragment, resolve `..`, read 127.1 as 127.0.0.1,
        // connect to port 0, or send u:p as Basic credentials beside the bearer token.
        for (url, problem) in [
            (
                "http://h.test/check\r\nX-Evil: 1",
                accessgate::UrlProblem::Character,
            ),
            ("http://h.test/a b", accessgate::UrlProblem::Character),
            ("http://b\u{fc}cher.test/", accessgate::UrlProblem::Character),
            ("http://h.test/check#frag", accessgate::UrlProblem::Fragment),
            ("http://u:p@h.test/check", accessgate::UrlProblem::Userinfo),
            ("http:///check", accessgate::UrlProblem::Host),
            ("http://127.1/check", accessgate::UrlProblem::Host),
            ("http://h.test:0/check", accessgate::UrlProblem::Port),
            ("http://h.test/a/../check", accessgate::UrlProblem::Path),
            ("http://h.test/a|b", accessgate::UrlProblem::Path),
        ] {
            match parse_url(url) {
                Err(GateError::InvalidUrl { reason, .. }) => {
                    assert_eq!(reason, problem.to_string(), "{url:?}")
                }
                other => panic!("{url:?}: {other:?}"),
            }
        }
        // Credentials are not echoed in the error, also when something else is wrong first.
        for (url, shown) in [
            ("http://kiosk:s3cret@h.test/check", "***@h.test/check"),
            ("http://kiosk:s3cret@h.test/a b", "***@h.test/a b"),
            ("http://kiosk:s3cret@h.test:0/", "***@h.test:0/"),
            ("ftp://kiosk:s3cret@h.test/", "ftp://***@h.test/"),
        ] {
            let e = parse_url(url).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains(shown) && !text.contains("s3cret"), "{text}");
        }
        // Without credentials the URL is shown as configured.
        let e = parse_url("http://h.test/a b").unwrap_err().to_string();
        assert!(e.contains("\"http://h.test/a b\""), "{e}");
        // What both accept, the desktop sends as the device does.
        let u = parse_url("http://[::1]:8080/check?device=k%2F1").unwrap();
        assert_eq!(
            (u.host_str(), u.port(), u.path(), u.query()),
            (Some("[::1]"), Some(8080), "/check", Some("device=k%2F1"))
        );
        assert_eq!(
            parse_url("http://h.test?x=1").unwrap().as_str(),
            "http://h.test/?x=1"
        );
    }

    #[test]
    fn urls_must_be_http() {
        assert!(parse_url("https://localhost:1/x").is_ok());
        assert!(matches!(parse_url("ftp://x/"), Err(GateError::InvalidUrl { .. })));
        assert!(matches!(
            parse_url("not a url"),
            Err(GateError::InvalidUrl { .. })
        ));
    }
}
