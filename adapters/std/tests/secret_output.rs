//! No token leaves through what the adapter prints: every `log` record (all targets, trace
//! level: the adapter, the core, reqwest, rustls) and every `tracing` event and span field
//! (hyper-util logs through `tracing`) while checks and refreshes succeed and fail (transport,
//! framing, TLS, redirect), and the `Debug` / `Display` of the gate, its config, errors,
//! snapshots and events. A token would show as text or, through a derived `Debug` of a byte
//! buffer, as its list of byte values: both forms are looked for. One logger and one
//! subscriber per process, so this file holds one test.

mod common;
mod raw;

use std::fmt;
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use accessgate::{Access, SessionEvent};
use accessgate_std::{AccessGate, GateClientConfig, Tokens};
use common::{bounded, fast_session};
use raw::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn keep(line: String) {
    LINES.lock().unwrap().push(line);
}

/// Every `log` record, as `LEVEL target: message`.
struct Logs;

impl log::Log for Logs {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        keep(format!("{} {}: {}", r.level(), r.target(), r.args()));
    }
    fn flush(&self) {}
}

static LOGS: Logs = Logs;

/// Every `tracing` event and span, with all its fields.
struct Traces;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Traces {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut f = Fields(format!(
            "{} {}:",
            event.metadata().level(),
            event.metadata().target()
        ));
        event.record(&mut f);
        keep(f.0);
    }
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut f = Fields(format!("span {}:", attrs.metadata().name()));
        attrs.record(&mut f);
        keep(f.0);
    }
    fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut f = Fields("span record:".to_string());
        values.record(&mut f);
        keep(f.0);
    }
}

/// The secrets of this test: the tokens signed in with, the tokens refreshed to, a token from
/// a token answer that was cut short, and the refresh form's field.
const SECRETS: &[&str] = &[
    ACCESS,
    REFRESH,
    "at_NEW_c3",
    "rt_NEW_d4",
    "at_CUT_e5",
    "refresh_token=",
];

/// Where `secret` shows in `text`, as text or as a `Debug` byte list (`[97, 116, ...]`).
fn leak(text: &str, secret: &str) -> Option<String> {
    let bytes = secret.bytes().map(|b| b.to_string()).collect::<Vec<_>>();
    // Pretty `{:#?}` puts one byte per line.
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if text.contains(secret) || squeezed.contains(&bytes.join(",")) {
        Some(format!("{secret} in {text}"))
    } else {
        None
    }
}

fn leaks(text: &str) -> Vec<String> {
    SECRETS.iter().filter_map(|s| leak(text, s)).collect()
}

async fn wait_for_event(
    rx: &mut tokio::sync::broadcast::Receiver<accessgate_std::TimedEvent>,
    mut pred: impl FnMut(&SessionEvent) -> bool,
) {
    tokio::time::timeout(StdDuration::from_secs(3), async {
        while !pred(&rx.recv().await.expect("events").event) {}
    })
    .await
    .expect("the event within 3 s");
}

#[tokio::test]
async fn no_token_reaches_logs_traces_debug_or_errors() {
    log::set_logger(&LOGS).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Trace);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Traces))
        .expect("the only subscriber of this binary");
    let mut printed = Vec::new();
    bounded(async {
        // Checks: a body cut short (a transport error, logged with its chain), then a grant
        // with the refreshed token, then broken framing. Refreshes: the new tokens.
        let server = Raw::start(|s: &Seen| {
            if s.is_post() {
                return vec![w(response(
                    "HTTP/1.1 200 OK",
                    &[],
                    br#"{"access_token":"at_NEW_c3","refresh_token":"rt_NEW_d4","expires_in":3600}"#,
                ))];
            }
            if s.text().contains(ACCESS) {
                vec![
                    w(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{\"has_access\":"),
                    Step::Close,
                ]
            } else {
                vec![w(response("HTTP/1.1 200 OK", &[], GRANT))]
            }
        })
        .await;
        let gate = AccessGate::spawn(config(&server.url(), fast_session())).expect("gate spawns");
        let tokens = Tokens::new(ACCESS, REFRESH, StdDuration::from_secs(1));
        printed.push(format!("{tokens:?} {tokens:#?}"));
        let mut events = gate.events();
        let status = gate.sign_in(tokens).await.expect("sign_in");
        printed.push(format!("{gate:?} {gate:#?} {status:?}"));
        wait_for_event(&mut events, |e| matches!(e, SessionEvent::Refreshed { .. })).await;
        // Signed in with the new tokens, a refresh's answer (zeroed) just read.
        printed.push(format!("{gate:?} {gate:#?}"));
        let token = gate.access_token().await.expect("a token");
        assert_eq!(token, "at_NEW_c3", "the secrets looked for are the ones in use");
        let snap = gate.snapshot();
        assert_eq!(snap.status.access, Access::Granted);
        printed.push(format!("{snap:?} {:?}", gate.subscribe()));
        gate.logout().await.expect("logout");
        gate.shutdown().await;

        // A refresh whose answer is cut short after a token; a TLS failure on both endpoints;
        // a redirect from the token endpoint.
        for (base, answer) in [
            (
                None,
                b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{\"access_token\":\"at_CUT_e5\"".to_vec(),
            ),
            (Some("https"), Vec::new()),
            (
                None,
                response(
                    "HTTP/1.1 307 Moved",
                    &["Location: http://127.0.0.1:1/oauth/token"],
                    b"",
                ),
            ),
        ] {
            let server = match base {
                // Not TLS: a plain HTTP answer to the ClientHello.
                Some(_) => {
                    Raw::unread(vec![
                        w(response("HTTP/1.1 400 Bad Request", &[], b"")),
                        Step::Close,
                    ])
                    .await
                }
                None => Raw::start(move |_: &Seen| vec![w(&answer), Step::Close]).await,
            };
            let url = match base {
                Some(scheme) => format!("{scheme}://{}", server.addr),
                None => server.url(),
            };
            let gate = AccessGate::spawn(config(&url, fast_session())).expect("gate spawns");
            let mut events = gate.events();
            let status = gate
                .sign_in(Tokens::new(ACCESS, REFRESH, StdDuration::from_secs(1)))
                .await
                .expect("sign_in");
            tokio::time::timeout(StdDuration::from_secs(3), async {
                loop {
                    let e = events.recv().await.expect("events");
                    printed.push(format!("{e:?} {}", e.to_json()));
                    if matches!(e.event, SessionEvent::RefreshFailed { .. }) {
                        break;
                    }
                }
            })
            .await
            .expect("a failed refresh within 3 s");
            printed.push(format!("{gate:?} {gate:#?} {status:?} {:?}", gate.snapshot()));
            gate.shutdown().await;
        }
    })
    .await;

    // A URL with credentials that is refused for another reason too.
    let err = GateClientConfig::builder("http://kiosk:s3cret@h.test/a b")
        .build()
        .expect_err("refused");
    printed.push(format!("{err} {err:?}"));
    let cfg = config("http://127.0.0.1:9", fast_session());
    printed.push(format!("{cfg:?}"));
    assert!(!printed.iter().any(|p| p.contains("s3cret")), "{printed:#?}");

    // The detector sees both forms, also pretty-printed.
    for bytes in [
        format!("{:?}", ACCESS.as_bytes()),
        format!("{:#?}", ACCESS.as_bytes()),
    ] {
        assert!(leak(&bytes, ACCESS).is_some(), "{bytes}");
    }
    let lines = LINES.lock().unwrap().clone();
    // The capture works, and it covers the failure paths of every layer.
    for wanted in [
        "reqwest",
        "hyper_util",
        "rustls",
        "accessgate: check failed",
        "accessgate: refresh failed",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(wanted)),
            "nothing from {wanted}: {lines:#?}"
        );
    }
    let found: Vec<String> = lines.iter().chain(&printed).flat_map(|l| leaks(l)).collect();
    assert!(found.is_empty(), "{found:#?}");
}
