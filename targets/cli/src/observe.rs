//! Watching a running gate: its events (broadcast) and its snapshots (watch), merged in order
//! and rendered as a human timeline or as JSON lines, while the caller waits for a condition.

use crate::util::out;
use std::collections::VecDeque;
use std::time::Duration;

use accessgate::{Instant, Status};
use accessgate_std::{AccessGate, Snapshot, TimedEvent};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use crate::timeline::Timeline;

/// A bound that stands for "never": about 30 years, far from `Instant` overflow.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Where rendered lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The human timeline on stdout.
    Timeline,
    /// One JSON object per event on stdout (`accessgate::write_event_json`).
    Json,
    /// Nothing (the caller prints a summary itself).
    Quiet,
}

/// Follows one gate: every event and every snapshot, in the order the driver produced them.
pub struct Observer {
    events: broadcast::Receiver<TimedEvent>,
    snaps: watch::Receiver<Snapshot>,
    /// Events received but not rendered yet (they belong after a snapshot not yet applied).
    queued: VecDeque<TimedEvent>,
    /// The timeline renderer (state column, colours).
    pub timeline: Timeline,
    output: Output,
    /// Every event seen, in order.
    pub log: Vec<TimedEvent>,
    /// The last snapshot applied.
    last: Snapshot,
    /// Every distinct snapshot applied, in order.
    pub history: Vec<Snapshot>,
    /// Events missed because this observer fell behind (should stay 0).
    pub lagged: u64,
}

impl Observer {
    /// Starts following `gate`; call it before the first input so nothing is missed.
    pub fn new(gate: &AccessGate, output: Output, color: bool) -> Self {
        let events = gate.events();
        let mut snaps = gate.subscribe();
        let last = *snaps.borrow_and_update();
        Observer {
            events,
            snaps,
            queued: VecDeque::new(),
            timeline: Timeline::new(color, Instant::ZERO),
            output,
            log: Vec::new(),
            history: vec![last],
            last,
            lagged: 0,
        }
    }

    /// The last snapshot applied.
    pub fn snapshot(&self) -> Snapshot {
        self.last
    }

    /// The status of the last snapshot applied.
    pub fn status(&self) -> Status {
        self.last.status
    }

    /// Prints a line of the caller's (a heading, a verdict) in order with the timeline.
    pub fn say(&self, line: &str) {
        if self.output == Output::Timeline {
            out!("{line}");
        }
    }

    fn render_event(&mut self, ev: TimedEvent) {
        match self.output {
            Output::Timeline => {
                let line = self.timeline.event(&ev.event, ev.at);
                out!("{line}");
            }
            Output::Json => out!("{}", ev.to_json()),
            Output::Quiet => {
                self.timeline.event(&ev.event, ev.at);
            }
        }
        self.log.push(ev);
    }

    fn apply_snapshot(&mut self, s: Snapshot) {
        let answers = s.counters.grants.saturating_add(s.counters.denials);
        if let Some(line) = self.timeline.status(s.now, &s.status, answers) {
            if self.output == Output::Timeline {
                out!("{line}");
            }
        }
        if !s.same_state(&self.last) {
            self.history.push(s);
        }
        self.last = s;
    }

    fn pull_events(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(ev) => self.queued.push_back(ev),
                Err(TryRecvError::Lagged(n)) => {
                    self.lagged += n;
                    self.say(&format!("          ... {n} events missed (observer too slow)"));
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
    }

    /// Renders everything available now: events, then the newest snapshot, in the order
    /// the driver produced them (it sends a drain's events before publishing its snapshot).
    pub fn pump(&mut self) {
        self.pull_events();
        // `changed()` in `wait_until` marks values as seen, so compare values instead.
        let s = *self.snaps.borrow_and_update();
        if s != self.last {
            // Events of that snapshot's drain were sent before it was published.
            self.pull_events();
            while self.queued.front().is_some_and(|e| e.at <= s.now) {
                if let Some(ev) = self.queued.pop_front() {
                    self.render_event(ev);
                }
            }
            self.apply_snapshot(s);
        }
        // Newer events whose snapshot has not been seen yet: render them now, the snapshot
        // (when it comes) finds them already applied.
        let snapshot_pending = *self.snaps.borrow() != self.last;
        if !snapshot_pending {
            while let Some(ev) = self.queued.pop_front() {
                self.render_event(ev);
            }
        }
    }

    /// Follows the gate until `cond` holds (returns `true`) or `timeout` passes (returns
    /// whether `cond` holds then).
    pub async fn wait_until(&mut self, timeout: Duration, mut cond: impl FnMut(&Observer) -> bool) -> bool {
        let now = tokio::time::Instant::now();
        // Saturating: a caller's bound never panics on overflow (issue 14).
        let end = now.checked_add(timeout).unwrap_or_else(|| now + FAR_FUTURE);
        loop {
            self.pump();
            if cond(self) {
                return true;
            }
            tokio::select! {
                biased;
                r = self.events.recv() => match r {
                    Ok(ev) => self.queued.push_back(ev),
                    Err(RecvError::Lagged(n)) => self.lagged += n,
                    Err(RecvError::Closed) => {
                        self.pump();
                        return cond(self);
                    }
                },
                r = self.snaps.changed() => {
                    if r.is_err() {
                        self.pump();
                        return cond(self);
                    }
                }
                () = tokio::time::sleep_until(end) => {
                    self.pump();
                    return cond(self);
                }
            }
        }
    }

    /// Follows the gate for `d`, rendering as it goes.
    pub async fn follow_for(&mut self, d: Duration) {
        self.wait_until(d, |_| false).await;
    }

    /// The events seen since index `from` of [`Observer::log`].
    pub fn events_since(&self, from: usize) -> &[TimedEvent] {
        &self.log[from.min(self.log.len())..]
    }
}
