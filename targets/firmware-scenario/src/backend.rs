//! The scripted backend: a [`Script`] whose behaviour the scenario switches at run time.
//!
//! The scenario cannot know in advance how many connections the gate will make (retries are
//! jittered), so instead of a table of steps it sets a [`Mode`] that holds until the next
//! switch. Every request's path and `Authorization` header are checked against the contract
//! (backend-contract.md): a mismatch is answered `400` (transient for the gate) and counted,
//! and the scenario fails on any.

use core::cell::Cell;
use core::net::SocketAddr;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;

use crate::responder::{Reply, RequestHead, Script};

/// How the backend answers from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `200 {"has_access": true}`.
    Grant,
    /// `200 {"has_access": false}`.
    Deny,
    /// Refuse every connection (TCP RST).
    Refuse,
    /// `503 Service Unavailable`, no `Retry-After`.
    Unavailable,
    /// `401 Unauthorized`.
    Unauthorized,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Grant => "200 {\"has_access\": true}",
            Mode::Deny => "200 {\"has_access\": false}",
            Mode::Refuse => "connection refused",
            Mode::Unavailable => "503",
            Mode::Unauthorized => "401",
        }
    }
}

/// What the backend has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Connections refused.
    pub refused: u32,
    /// Requests answered (any status).
    pub requests: u32,
    /// Requests with a wrong method, path or `Authorization` header.
    pub bad_requests: u32,
}

#[derive(Clone, Copy)]
struct State {
    mode: Mode,
    counts: Counts,
}

/// Shared between the scenario (which switches modes) and the responder task.
pub struct Backend {
    state: Mutex<CriticalSectionRawMutex, Cell<State>>,
    path: &'static str,
    authorization: &'static str,
}

impl Backend {
    /// A backend granting access, expecting `GET path` with `Authorization: authorization`.
    pub const fn new(path: &'static str, authorization: &'static str) -> Self {
        Self {
            state: Mutex::new(Cell::new(State {
                mode: Mode::Grant,
                counts: Counts {
                    refused: 0,
                    requests: 0,
                    bad_requests: 0,
                },
            })),
            path,
            authorization,
        }
    }

    /// Answers every later connection this way.
    pub fn set(&self, mode: Mode) {
        self.update(|s| s.mode = mode);
    }

    pub fn counts(&self) -> Counts {
        self.state.lock(|c| c.get().counts)
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.state.lock(|c| {
            let mut s = c.get();
            let r = f(&mut s);
            c.set(s);
            r
        })
    }
}

/// The responder's view of a [`Backend`].
pub struct BackendScript(pub &'static Backend);

impl Script for BackendScript {
    fn admit(&mut self, _local: SocketAddr) -> bool {
        self.0.update(|s| {
            let refuse = s.mode == Mode::Refuse;
            if refuse {
                s.counts.refused += 1;
            }
            !refuse
        })
    }

    fn reply(&mut self, request: &RequestHead<'_>) -> Reply<'_> {
        let backend = self.0;
        let well_formed = request.method == "GET"
            && request.path == backend.path
            && request.authorization == Some(backend.authorization);
        let mode = backend.update(|s| {
            s.counts.requests += 1;
            if !well_formed {
                s.counts.bad_requests += 1;
            }
            s.mode
        });
        if !well_formed {
            return Reply::Respond {
                status: 400,
                body: "unexpected request",
            };
        }
        let (status, body) = match mode {
            Mode::Grant => (200, r#"{"has_access": true}"#),
            Mode::Deny => (200, r#"{"has_access": false}"#),
            Mode::Unavailable => (503, ""),
            Mode::Unauthorized => (401, ""),
            // Switched to refusing between accept and request: answer like a dead upstream.
            Mode::Refuse => (502, ""),
        };
        Reply::Respond { status, body }
    }
}
