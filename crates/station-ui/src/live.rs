//! Tasks started from the page: their events, kept for late subscribers and broadcast live,
//! and their cancel handles.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use station_core::{CancelSignal, Event, SessionId, TaskRun};
use tokio::sync::broadcast;

/// Events a live subscriber may fall behind by before it misses some.
const LIVE_BUFFER: usize = 4096;
/// Events kept per run for subscribers that come late (older ones are dropped).
const MAX_KEPT_EVENTS: usize = 20_000;

#[derive(Debug)]
struct LiveRun {
    events: VecDeque<Event>,
    sender: broadcast::Sender<Event>,
    cancel: CancelSignal,
    ended: bool,
}

/// The runs this process started, by session (the newest run of each).
#[derive(Debug, Clone, Default)]
pub(crate) struct Live {
    runs: Arc<Mutex<HashMap<SessionId, LiveRun>>>,
}

/// What a subscriber gets: the events so far, and the rest as they come (`None` when the run
/// had already ended).
pub(crate) struct Subscription {
    pub(crate) past: Vec<Event>,
    pub(crate) next: Option<broadcast::Receiver<Event>>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, LiveRun>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a task started here runs on `session` now.
    pub(crate) fn is_running(&self, session: &SessionId) -> bool {
        self.lock().get(session).is_some_and(|r| !r.ended)
    }

    /// The sessions with a task running here.
    pub(crate) fn running(&self) -> Vec<SessionId> {
        let runs = self.lock();
        runs.iter()
            .filter(|(_, r)| !r.ended)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Follow `run` on `session` until it ends; `on_end` runs after its last event.
    pub(crate) fn track(
        &self,
        session: SessionId,
        mut run: TaskRun,
        on_end: impl FnOnce() + Send + 'static,
    ) {
        let (sender, _) = broadcast::channel(LIVE_BUFFER);
        self.lock().insert(
            session.clone(),
            LiveRun {
                events: VecDeque::new(),
                sender,
                cancel: run.cancel_signal(),
                ended: false,
            },
        );
        let live = self.clone();
        tokio::spawn(async move {
            while let Some(event) = run.next_event().await {
                live.record(&session, event);
            }
            if let Err(e) = run.outcome().await {
                // Redacted here too: a library embedding the UI may log without stn's
                // redacting writer.
                let error = station_core::redact::redact(&e.to_string());
                tracing::warn!(session = %session, "a task started from the page could not run: {error}");
            }
            if let Some(r) = live.lock().get_mut(&session) {
                r.ended = true;
            }
            on_end();
        });
    }

    fn record(&self, session: &SessionId, event: Event) {
        let mut runs = self.lock();
        let Some(run) = runs.get_mut(session) else {
            return;
        };
        if run.events.len() >= MAX_KEPT_EVENTS {
            run.events.pop_front();
        }
        run.events.push_back(event.clone());
        // No receivers is fine: nobody watches right now.
        let _ = run.sender.send(event);
    }

    /// The events of `session`'s newest run so far and a receiver for the rest; `None` when no
    /// task was started on it here.
    pub(crate) fn subscribe(&self, session: &SessionId) -> Option<Subscription> {
        let runs = self.lock();
        let run = runs.get(session)?;
        // Under the lock: no event can fall between `past` and the receiver.
        Some(Subscription {
            past: run.events.iter().cloned().collect(),
            next: (!run.ended).then(|| run.sender.subscribe()),
        })
    }

    /// Cancel the task running on `session`; `false` when none runs here.
    pub(crate) fn cancel(&self, session: &SessionId) -> bool {
        let runs = self.lock();
        match runs.get(session) {
            Some(run) if !run.ended => {
                run.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Cancel every running task (the server stops).
    pub(crate) fn cancel_all(&self) {
        for run in self.lock().values().filter(|r| !r.ended) {
            run.cancel.cancel();
        }
    }
}
