//! Optional `tracing` spans (feature `tracing`): one span per check attempt
//! (`accessgate.check`: `generation`, `attempt`, then `outcome`, `class`, `detail`) and one
//! per token refresh (`accessgate.refresh`: `id`, then `outcome`, `class`, `detail`), each
//! covering the HTTP request from start to answer. They sit beside the `log` lines, which stay
//! as they are.
//! A request the session cancels (timed out, superseded, logged out) closes its span without an
//! outcome; the session's `CheckFailed` / `RefreshFailed` event says why.
//!
//! Without the feature both wrappers return the request future unchanged: no span, no field,
//! no extra state, nothing to pay.

use std::future::Future;

use accessgate::{CheckOutcome, Generation, RefreshId};

use crate::http::RefreshReply;

/// The check request `fut` of attempt `attempt` of `generation`, inside its span.
#[cfg(feature = "tracing")]
pub(crate) fn check<F>(generation: Generation, attempt: u32, fut: F) -> impl Future<Output = CheckOutcome>
where
    F: Future<Output = CheckOutcome>,
{
    use tracing::field::Empty;
    use tracing::Instrument;
    let span = tracing::info_span!(
        "accessgate.check",
        generation = generation.0,
        attempt,
        outcome = Empty,
        class = Empty,
        detail = Empty
    );
    let record = span.clone();
    async move {
        let outcome = fut.await;
        match outcome {
            CheckOutcome::Granted => record.record("outcome", "granted"),
            CheckOutcome::Denied => record.record("outcome", "denied"),
            CheckOutcome::Unauthorized => record.record("outcome", "unauthorized"),
            CheckOutcome::Transient { class, detail, .. } => record
                .record("outcome", "transient")
                .record("class", class.name())
                .record("detail", tracing::field::display(detail)),
        };
        outcome
    }
    .instrument(span)
}

/// Without the `tracing` feature: the request itself.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn check<F>(_generation: Generation, _attempt: u32, fut: F) -> F
where
    F: Future<Output = CheckOutcome>,
{
    fut
}

/// The refresh request `fut` with id `id`, inside its span.
#[cfg(feature = "tracing")]
pub(crate) fn refresh<F>(id: RefreshId, fut: F) -> impl Future<Output = RefreshReply>
where
    F: Future<Output = RefreshReply>,
{
    use tracing::field::Empty;
    use tracing::Instrument;
    let span = tracing::info_span!(
        "accessgate.refresh",
        id = id.0,
        outcome = Empty,
        class = Empty,
        detail = Empty
    );
    let record = span.clone();
    async move {
        let reply = fut.await;
        match &reply {
            RefreshReply::Refreshed { .. } => record.record("outcome", "refreshed"),
            RefreshReply::Rejected => record.record("outcome", "rejected"),
            RefreshReply::Transient(class, detail) => record
                .record("outcome", "transient")
                .record("class", class.name())
                .record("detail", tracing::field::display(detail)),
        };
        reply
    }
    .instrument(span)
}

/// Without the `tracing` feature: the request itself.
#[cfg(not(feature = "tracing"))]
#[inline(always)]
pub(crate) fn refresh<F>(_id: RefreshId, fut: F) -> F
where
    F: Future<Output = RefreshReply>,
{
    fut
}
