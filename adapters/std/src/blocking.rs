//! [`BlockingAccessGate`]: the same handle for programs without an async runtime.

use std::sync::Arc;
use std::time::Duration;

use accessgate::{Access, Status};
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, watch};

use crate::config::GateClientConfig;
use crate::error::{GateError, TokenError};
use crate::gate::{AccessGate, Snapshot, TimedEvent, Tokens};

/// A synchronous wrapper around [`AccessGate`] that owns a small Tokio runtime (one worker
/// thread, named `accessgate`) for the background task and the I/O; a call that runs a check
/// ([`BlockingAccessGate::sign_in`], [`BlockingAccessGate::recheck`]) runs it on the calling
/// thread, inside `block_on`. Every method blocks the calling thread; none may be called from
/// inside an async context (Tokio panics on nested `block_on`). Clones share the runtime,
/// which stops (without blocking) when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct BlockingAccessGate {
    gate: AccessGate,
    runtime: Arc<OwnedRuntime>,
}

/// Shuts the runtime down without blocking when the last clone goes, so dropping a
/// `BlockingAccessGate` is safe anywhere (a plain `Runtime` panics if dropped in async code).
#[derive(Debug)]
struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    fn get(&self) -> &Runtime {
        // Only `Drop` takes it out.
        self.0.as_ref().expect("runtime present until drop")
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl BlockingAccessGate {
    /// Starts the runtime and spawns the gate on it (see [`AccessGate::spawn`]).
    pub fn spawn(config: GateClientConfig) -> Result<Self, GateError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("accessgate")
            .enable_all()
            .build()
            .map_err(GateError::Runtime)?;
        let gate = {
            let _enter = runtime.enter();
            AccessGate::spawn(config)?
        };
        Ok(BlockingAccessGate {
            gate,
            runtime: Arc::new(OwnedRuntime(Some(runtime))),
        })
    }

    /// The async handle, for code that has an async context after all.
    pub fn handle(&self) -> &AccessGate {
        &self.gate
    }

    /// The runtime the gate runs on.
    pub fn runtime(&self) -> &Runtime {
        self.runtime.get()
    }

    /// [`AccessGate::sign_in`], blocking until the immediate check settled (R3).
    pub fn sign_in(&self, tokens: Tokens) -> Result<Status, GateError> {
        self.runtime.get().block_on(self.gate.sign_in(tokens))
    }

    /// [`AccessGate::restore`], blocking until the first check settled.
    pub fn restore(&self, tokens: Tokens) -> Result<Status, GateError> {
        self.runtime.get().block_on(self.gate.restore(tokens))
    }

    /// [`AccessGate::logout`].
    pub fn logout(&self) -> Result<(), GateError> {
        self.runtime.get().block_on(self.gate.logout())
    }

    /// [`AccessGate::access`] (never blocks).
    pub fn access(&self) -> Access {
        self.gate.access()
    }

    /// [`AccessGate::status`] (never blocks).
    pub fn status(&self) -> Status {
        self.gate.status()
    }

    /// [`AccessGate::snapshot`] (never blocks).
    pub fn snapshot(&self) -> Snapshot {
        self.gate.snapshot()
    }

    /// [`AccessGate::subscribe`]; use [`BlockingAccessGate::wait_for`] to block on it.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.gate.subscribe()
    }

    /// [`AccessGate::events`]; receive with `blocking_recv()`.
    pub fn events(&self) -> broadcast::Receiver<TimedEvent> {
        self.gate.events()
    }

    /// [`AccessGate::wait_first_check`].
    pub fn wait_first_check(&self) -> Result<Status, GateError> {
        self.runtime.get().block_on(self.gate.wait_first_check())
    }

    /// [`AccessGate::access_token`], blocking while a shared refresh runs (R11).
    pub fn access_token(&self) -> Result<String, TokenError> {
        self.runtime.get().block_on(self.gate.access_token())
    }

    /// [`AccessGate::recheck`], blocking until the session has the outcome of its check.
    pub fn recheck(&self) -> Result<(), GateError> {
        self.runtime.get().block_on(self.gate.recheck())
    }

    /// Blocks until a snapshot satisfies `pred` (checked on the current one first) or
    /// `timeout` passes; returns that snapshot, `Ok(None)` on timeout, or `Closed`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Option<Snapshot>, GateError> {
        let mut rx = self.gate.subscribe();
        self.runtime.get().block_on(async {
            match tokio::time::timeout(timeout, rx.wait_for(|s| pred(s))).await {
                Ok(Ok(snap)) => Ok(Some(*snap)),
                Ok(Err(_)) => Err(GateError::Closed),
                Err(_) => Ok(None),
            }
        })
    }

    /// [`AccessGate::shutdown`].
    pub fn shutdown(&self) {
        self.runtime.get().block_on(self.gate.shutdown());
    }
}
