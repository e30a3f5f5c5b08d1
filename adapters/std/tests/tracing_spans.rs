//! Feature `tracing`: every check attempt and every token refresh is a span carrying its
//! generation/attempt (or refresh id) and its outcome, recorded here by a small layer against
//! the reference backend.
#![cfg(feature = "tracing")]

mod common;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use accessgate::Access;
use accessgate_backend::{Endpoint, Fault};
use common::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A closed span: its name and its fields as text.
#[derive(Clone, Debug)]
struct Closed {
    name: &'static str,
    fields: HashMap<&'static str, String>,
}

impl Closed {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }
}

/// Keeps the fields of open spans and moves them to `closed` when they close.
#[derive(Clone, Default)]
struct Recorder {
    open: Arc<Mutex<HashMap<Id, Closed>>>,
    closed: Arc<Mutex<Vec<Closed>>>,
}

struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut span = Closed {
            name: attrs.metadata().name(),
            fields: HashMap::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.open.lock().unwrap().insert(id.clone(), span);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().get_mut(id) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().remove(&id) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

impl Recorder {
    /// Waits (bounded) for a closed span matching `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Closed) -> bool) -> Closed {
        let end = tokio::time::Instant::now() + StdDuration::from_secs(10);
        loop {
            if let Some(s) = self.closed.lock().unwrap().iter().find(|s| pred(s)) {
                return s.clone();
            }
            assert!(
                tokio::time::Instant::now() < end,
                "no {what} span; closed spans: {:#?}",
                self.closed.lock().unwrap()
            );
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }
}

// A current-thread runtime, so the driver task and the request tasks run on the thread whose
// default subscriber is the recorder.
#[tokio::test(flavor = "current_thread")]
async fn check_attempts_and_refreshes_are_spans_with_their_outcome() {
    let rec = Recorder::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(rec.clone()));
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        // The token expires 1.5 s from now and the skew is 1 s: a refresh runs in ~0.5 s.
        let status = h
            .gate
            .sign_in(h.tokens(StdDuration::from_millis(1500)))
            .await
            .expect("sign_in");
        assert_eq!(status.access, Access::Granted);
        let g = status.generation.0;

        let first = rec
            .wait_for("first check", |s| {
                s.name == "accessgate.check" && s.get("generation") == Some(&g.to_string())
            })
            .await;
        assert_eq!(first.get("attempt"), Some("0"));
        assert_eq!(first.get("outcome"), Some("granted"));
        assert_eq!(first.get("class"), None, "no class on a grant: {first:?}");

        let refresh = rec.wait_for("refresh", |s| s.name == "accessgate.refresh").await;
        assert_eq!(refresh.get("outcome"), Some("refreshed"), "{refresh:?}");
        assert!(refresh.get("id").is_some(), "{refresh:?}");
        // The refreshed token is checked at once (R9), under the next generation.
        let after = rec
            .wait_for("check after the refresh", |s| {
                s.name == "accessgate.check" && s.get("generation") == Some(&(g + 1).to_string())
            })
            .await;
        assert_eq!(after.get("outcome"), Some("granted"), "{after:?}");

        // A transient failure carries its class and detail.
        h.control.set_fault(
            Endpoint::Check,
            Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        );
        h.recheck().await;
        let failed = rec
            .wait_for("failed check", |s| {
                s.name == "accessgate.check" && s.get("outcome") == Some("transient")
            })
            .await;
        assert_eq!(failed.get("class"), Some("server_error"), "{failed:?}");
        assert_eq!(failed.get("detail"), Some("HTTP 503"), "{failed:?}");
        h.gate.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_refresh_span_carries_its_class_and_detail() {
    let rec = Recorder::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(rec.clone()));
    bounded(async {
        let h = Harness::new(Scheme::Http).await;
        h.control.set_fault(
            Endpoint::Token,
            Some(Fault::Status {
                code: 503,
                retry_after: None,
            }),
        );
        // The refresh runs ~0.5 s in and the token endpoint answers 503 (R13).
        h.gate
            .sign_in(h.tokens(StdDuration::from_millis(1500)))
            .await
            .expect("sign_in");
        let refresh = rec
            .wait_for("failed refresh", |s| s.name == "accessgate.refresh")
            .await;
        assert_eq!(refresh.get("outcome"), Some("transient"), "{refresh:?}");
        assert_eq!(refresh.get("class"), Some("server_error"), "{refresh:?}");
        assert_eq!(refresh.get("detail"), Some("HTTP 503"), "{refresh:?}");
        h.gate.shutdown().await;
    })
    .await;
}
