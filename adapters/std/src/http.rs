//! The HTTP side: one check (`GET`) or one refresh (`POST`) per call, classified by the
//! core's shared classifiers so every platform applies R1 the same way.
//!
//! Server input is hostile: bodies are streamed and at most `limit + 1` bytes are kept (an
//! oversized body is detected without buffering it, R1/R12), every attempt ends by its
//! deadline (R4), redirects are not followed (a captive portal's 302 is just another
//! transient status), and nothing here panics on what the server sends.

use std::error::Error as StdError;
use std::io;

use accessgate::{classify, classify_refresh, CheckOutcome, Duration, RefreshOutcome, TransientClass};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Client, Response, Url};
use tokio::time::{timeout_at, Instant};

use crate::config::GateClientConfig;
use crate::error::GateError;

/// A refresh answer the driver can hand to [`accessgate::Session::handle_refresh_result`],
/// owned because the HTTP task ends before the driver consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefreshReply {
    Refreshed {
        access_token: Vec<u8>,
        refresh_token: Option<Vec<u8>>,
        expires_in: Duration,
    },
    Rejected,
    Transient(TransientClass),
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
                refresh_token: refresh_token.as_deref(),
                expires_in: *expires_in,
            },
            RefreshReply::Rejected => RefreshOutcome::Rejected,
            RefreshReply::Transient(c) => RefreshOutcome::Transient(*c),
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
}

fn parse_url(url: &str) -> Result<Url, GateError> {
    let bad = |reason: String| GateError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(bad(format!("scheme {other:?} is not http or https"))),
    }
}

/// Whether `token` can be sent as `Authorization: Bearer <token>`.
pub(crate) fn usable_token(token: &[u8]) -> bool {
    !token.is_empty() && token.iter().all(|&b| b.is_ascii_graphic())
}

impl Transport {
    pub(crate) fn new(cfg: &GateClientConfig) -> Result<Self, GateError> {
        let check_url = parse_url(&cfg.check_url)?;
        let token_url = parse_url(&cfg.token_url)?;
        // Trust anchors, pinning and verification (R14) are in `crate::tls`.
        let mut builder = Client::builder()
            .use_preconfigured_tls(crate::tls::client_config(cfg)?)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(cfg.user_agent.clone())
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
        })
    }

    /// `GET check_url` with the bearer token, classified by [`accessgate::classify`]. Ends by
    /// `deadline` with [`TransientClass::Timeout`] (R4).
    pub(crate) async fn check(&self, token: &[u8], deadline: Instant, max_body: usize) -> CheckOutcome {
        let Some(auth) = bearer(token) else {
            log::warn!("check not sent: the access token is not a valid header value");
            return CheckOutcome::transient(TransientClass::InvalidBody);
        };
        let request = async {
            let mut resp = self
                .client
                .get(self.check_url.clone())
                .header(AUTHORIZATION, auth)
                .send()
                .await
                .map_err(|e| transport_class(&e))?;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get(RETRY_AFTER).map(|v| v.as_bytes().to_vec());
            let body = match read_capped(&mut resp, max_body).await {
                Ok(b) => b,
                // Only a 200's body matters (R1); a broken one is an I/O failure.
                Err(e) if status == 200 => return Err(transport_class(&e)),
                Err(_) => Vec::new(),
            };
            Ok(classify(status, retry_after.as_deref(), &body, max_body))
        };
        match timeout_at(deadline, request).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(class)) => CheckOutcome::transient(class),
            Err(_) => CheckOutcome::transient(TransientClass::Timeout),
        }
    }

    /// `POST token_url` with the refresh form, classified by [`accessgate::classify_refresh`].
    pub(crate) async fn refresh(&self, refresh_token: &[u8], deadline: Instant) -> RefreshReply {
        let Ok(refresh_token) = std::str::from_utf8(refresh_token) else {
            return RefreshReply::Transient(TransientClass::InvalidBody);
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
                .map_err(|e| transport_class(&e))?;
            let status = resp.status().as_u16();
            let body = match read_capped(&mut resp, limit).await {
                Ok(b) => b,
                // A 400's body says whether the grant is dead; a 401 needs none.
                Err(e) if matches!(status, 200 | 400) => return Err(transport_class(&e)),
                Err(_) => Vec::new(),
            };
            Ok(match classify_refresh(status, &body, limit) {
                RefreshOutcome::Refreshed {
                    access_token,
                    refresh_token,
                    expires_in,
                } if usable_token(access_token) && refresh_token.is_none_or(usable_token) => {
                    RefreshReply::Refreshed {
                        access_token: access_token.to_vec(),
                        refresh_token: refresh_token.map(<[u8]>::to_vec),
                        expires_in,
                    }
                }
                // A token we could not send is a malformed answer.
                RefreshOutcome::Refreshed { .. } => RefreshReply::Transient(TransientClass::InvalidBody),
                RefreshOutcome::Rejected => RefreshReply::Rejected,
                RefreshOutcome::Transient(c) => RefreshReply::Transient(c),
            })
        };
        match timeout_at(deadline, request).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(class)) => RefreshReply::Transient(class),
            Err(_) => RefreshReply::Transient(TransientClass::Timeout),
        }
    }
}

fn bearer(token: &[u8]) -> Option<HeaderValue> {
    if !usable_token(token) {
        return None;
    }
    let mut v = Vec::with_capacity(7 + token.len());
    v.extend_from_slice(b"Bearer ");
    v.extend_from_slice(token);
    let mut h = HeaderValue::from_bytes(&v).ok()?;
    h.set_sensitive(true);
    Some(h)
}

/// Reads at most `limit + 1` bytes of the body, chunk by chunk, and stops there: one byte
/// past the limit is enough for the classifier to refuse it (R1), and a huge body is never
/// buffered (R12).
async fn read_capped(resp: &mut Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let cap = limit.saturating_add(1);
    let mut body = Vec::with_capacity(cap.min(4096));
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

/// Maps a transport error to its transient class by walking the error chain: a rustls error
/// anywhere is TLS; a resolver failure is DNS; a refused or unreachable connect is Connect;
/// a timeout is Timeout; anything else (resets, truncated or badly framed bodies) is I/O.
pub(crate) fn transport_class(err: &reqwest::Error) -> TransientClass {
    if err.is_timeout() {
        return TransientClass::Timeout;
    }
    let mut io_kind = None;
    let mut dns = false;
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    // Bounded: error chains are short, but a hostile cycle must not spin (R12).
    for _ in 0..32 {
        let Some(e) = next else { break };
        if e.is::<rustls::Error>() {
            return TransientClass::Tls;
        }
        // hyper-util's connector reports resolver failures as "dns error".
        if e.to_string().starts_with("dns error") {
            dns = true;
        }
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => {
                if io.kind() != io::ErrorKind::Other {
                    io_kind.get_or_insert(io.kind());
                }
                // io::Error::source() skips the error it wraps (tokio-rustls wraps the
                // rustls::Error in two io::Errors): step into it instead.
                io.get_ref().map(|inner| inner as &(dyn StdError + 'static))
            }
            None => e.source(),
        };
    }
    if dns {
        return TransientClass::Dns;
    }
    match io_kind {
        Some(io::ErrorKind::TimedOut) => TransientClass::Timeout,
        Some(
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable,
        ) => TransientClass::Connect,
        // A connect-phase failure we cannot name more precisely.
        None if err.is_connect() => TransientClass::Connect,
        _ => TransientClass::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_header_safe() {
        assert!(usable_token(b"at_abc123"));
        assert!(!usable_token(b""));
        assert!(!usable_token(b"a b"));
        assert!(!usable_token(b"a\r\nX-Evil: 1"));
        assert!(bearer(b"at_1").is_some_and(|h| h.is_sensitive()));
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
