//! Coding tasks started through MCP. Every `code` call runs as a task here, whether the client
//! waits for it (`wait: true`, the task is bound to the request) or not (`wait: false`, the task
//! is found again with `coding_status`/`coding_wait`/`coding_cancel`). Cancelling a task drops
//! its `CodingTools::call` future, which drops the `TaskRun` and so stops the work on the backend.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use station_agent::CodingTools;
use station_agent::tools::ProgressFn;
use station_core::{Event, EventKind};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::progress::{Described, describe};

/// Finished tasks whose results are kept for `coding_status`/`coding_wait`.
pub(crate) const KEEP_FINISHED: usize = 100;
/// Events kept per task for `coding_status` and for followers that fall behind.
const KEEP_EVENTS: usize = 200;
/// Events `coding_status` shows.
const STATUS_EVENTS: usize = 20;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// One event of a task, described.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    /// Position among this task's notes, from 1.
    pub(crate) index: u64,
    /// The event's sequence number.
    pub(crate) seq: u64,
    /// When it was recorded, since the task started.
    pub(crate) elapsed: Duration,
    pub(crate) described: Described,
}

#[derive(Debug)]
struct TaskState {
    status: TaskStatus,
    notes: VecDeque<Note>,
    next_index: u64,
    steps: u64,
    last_message: Option<String>,
    result: Option<Value>,
}

/// One coding task.
#[derive(Debug)]
pub(crate) struct TaskEntry {
    pub(crate) id: String,
    pub(crate) session_id: String,
    started: Instant,
    state: Mutex<TaskState>,
    changed: watch::Sender<u64>,
    abort: Mutex<Option<AbortHandle>>,
}

impl TaskEntry {
    fn new(id: String, session_id: String) -> Self {
        TaskEntry {
            id,
            session_id,
            started: Instant::now(),
            state: Mutex::new(TaskState {
                status: TaskStatus::Running,
                notes: VecDeque::new(),
                next_index: 1,
                steps: 0,
                last_message: None,
                result: None,
            }),
            changed: watch::channel(0).0,
            abort: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, TaskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Time since the task started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn record(&self, event: &Event) {
        {
            let mut state = self.state();
            if state.status != TaskStatus::Running {
                return;
            }
            if matches!(event.kind, EventKind::ToolStarted { .. }) {
                state.steps += 1;
            }
            let described = describe(event, state.steps);
            if !described.streaming || state.last_message.is_none() {
                state.last_message = Some(described.message.clone());
            }
            let index = state.next_index;
            state.next_index += 1;
            state.notes.push_back(Note {
                index,
                seq: event.seq,
                elapsed: self.started.elapsed(),
                described,
            });
            while state.notes.len() > KEEP_EVENTS {
                state.notes.pop_front();
            }
        }
        self.bump();
    }

    /// Set the final result unless the task already ended (a cancel wins over a late result).
    fn finish(&self, mut result: Value, status: TaskStatus) -> bool {
        {
            let mut state = self.state();
            if state.status != TaskStatus::Running {
                return false;
            }
            if let Some(o) = result.as_object_mut() {
                o.insert("task_id".into(), json!(self.id));
                o.insert("status".into(), json!(status));
            }
            state.status = status;
            state.result = Some(result);
        }
        self.bump();
        true
    }

    /// A receiver that changes with every event and at the end.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Notes after `index` (those still kept).
    pub(crate) fn notes_after(&self, index: u64) -> Vec<Note> {
        self.state()
            .notes
            .iter()
            .filter(|n| n.index > index)
            .cloned()
            .collect()
    }

    /// The index of the latest note (0 before the first).
    pub(crate) fn last_index(&self) -> u64 {
        self.state().next_index - 1
    }

    /// The last thing that happened, for heartbeats.
    pub(crate) fn last_message(&self) -> Option<String> {
        self.state().last_message.clone()
    }

    /// The final result, once the task ended.
    pub(crate) fn result(&self) -> Option<Value> {
        self.state().result.clone()
    }

    /// What `coding_status` reports.
    pub(crate) fn status_json(&self) -> Value {
        let state = self.state();
        let skip = state.notes.len().saturating_sub(STATUS_EVENTS);
        let events: Vec<Value> = state
            .notes
            .iter()
            .skip(skip)
            .map(|n| {
                json!({
                    "seq": n.seq,
                    "at_secs": n.elapsed.as_secs(),
                    "type": n.described.kind,
                    "message": n.described.message,
                })
            })
            .collect();
        let mut out = json!({
            "success": true,
            "task_id": self.id,
            "session_id": self.session_id,
            "status": state.status,
            "elapsed_secs": self.started.elapsed().as_secs(),
            "steps": state.steps,
            "events_seen": state.next_index - 1,
            "last": state.last_message,
            "recent_events": events,
        });
        if let (Some(o), Some(result)) = (out.as_object_mut(), &state.result) {
            o.insert("result".into(), result.clone());
        }
        out
    }

    /// What `coding_wait` reports while the task still runs.
    pub(crate) fn running_json(&self) -> Value {
        json!({
            "success": true,
            "task_id": self.id,
            "session_id": self.session_id,
            "status": TaskStatus::Running,
            "elapsed_secs": self.started.elapsed().as_secs(),
            "last": self.last_message(),
            "next": "the task is still running; call coding_wait again (or coding_status, coding_cancel)",
        })
    }
}

/// The tasks of one server (shared by all its connections).
#[derive(Debug, Default)]
pub(crate) struct TaskRegistry {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    by_id: HashMap<String, Arc<TaskEntry>>,
    finished: VecDeque<String>,
}

impl TaskRegistry {
    fn inner(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start `code` with `args` (already validated) in the background.
    pub(crate) fn start(
        self: &Arc<Self>,
        tools: Arc<CodingTools>,
        args: Value,
        session_id: String,
    ) -> Arc<TaskEntry> {
        let id = format!("task_{}", uuid::Uuid::now_v7().simple());
        let entry = Arc::new(TaskEntry::new(id.clone(), session_id));
        self.inner().by_id.insert(id, entry.clone());
        let progress: ProgressFn = {
            let entry = entry.clone();
            Arc::new(move |event: &Event| entry.record(event))
        };
        let registry: Weak<TaskRegistry> = Arc::downgrade(self);
        let runner = entry.clone();
        let handle = tokio::spawn(async move {
            let result = tools.call("code", &args, Some(progress)).await;
            let status = if result.get("success").and_then(Value::as_bool) == Some(true) {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Failed
            };
            if runner.finish(result, status)
                && let Some(registry) = registry.upgrade()
            {
                registry.mark_finished(&runner.id);
            }
        });
        *entry.abort.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.abort_handle());
        entry
    }

    /// A task by id.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<TaskEntry>> {
        self.inner().by_id.get(id.trim()).cloned()
    }

    /// Stop a running task: its `code` call is dropped, which cancels the work on the backend.
    /// Returns false when it had already ended.
    pub(crate) fn cancel(&self, entry: &TaskEntry, why: &str) -> bool {
        let result = json!({
            "success": false,
            "session_id": entry.session_id,
            "stop_reason": "cancelled",
            "error": format!("task cancelled {why}"),
            "fix": "run the task again with code if it is still needed; the session can be continued",
            "duration_ms": u64::try_from(entry.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        if !entry.finish(result, TaskStatus::Cancelled) {
            return false;
        }
        if let Some(handle) = entry.abort.lock().unwrap_or_else(|e| e.into_inner()).take() {
            handle.abort();
        }
        self.mark_finished(&entry.id);
        true
    }

    /// Cancel every running task (the server is shutting down).
    pub(crate) fn cancel_all(&self, why: &str) {
        let running: Vec<Arc<TaskEntry>> = self.inner().by_id.values().cloned().collect();
        for entry in running {
            self.cancel(&entry, why);
        }
    }

    fn mark_finished(&self, id: &str) {
        let mut inner = self.inner();
        inner.finished.push_back(id.to_string());
        while inner.finished.len() > KEEP_FINISHED {
            if let Some(old) = inner.finished.pop_front() {
                inner.by_id.remove(&old);
            }
        }
    }

    /// How many tasks are known (running or kept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner().by_id.len()
    }
}

/// Cancels the task when dropped while it still runs: a `code` call that waits owns its task.
#[derive(Debug)]
pub(crate) struct CancelOnDrop {
    pub(crate) registry: Arc<TaskRegistry>,
    pub(crate) entry: Arc<TaskEntry>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.registry.cancel(
            &self.entry,
            "because the request that waited for it went away",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_entry(registry: &Arc<TaskRegistry>, n: usize) -> Arc<TaskEntry> {
        let entry = Arc::new(TaskEntry::new(format!("t{n}"), "s".into()));
        registry
            .inner()
            .by_id
            .insert(entry.id.clone(), entry.clone());
        assert!(entry.finish(json!({"success": true}), TaskStatus::Succeeded));
        registry.mark_finished(&entry.id);
        entry
    }

    #[test]
    fn only_the_last_finished_tasks_are_kept() {
        let registry = Arc::new(TaskRegistry::default());
        for n in 0..KEEP_FINISHED + 5 {
            finished_entry(&registry, n);
        }
        assert_eq!(registry.len(), KEEP_FINISHED);
        assert!(registry.get("t0").is_none());
        assert!(registry.get("t4").is_none());
        assert!(registry.get("t5").is_some());
        let last = registry
            .get(&format!("t{}", KEEP_FINISHED + 4))
            .expect("newest kept");
        let result = last.result().unwrap();
        assert_eq!(result["status"], "succeeded");
        assert_eq!(result["task_id"], last.id);
    }

    #[test]
    fn a_cancel_after_the_end_changes_nothing() {
        let registry = Arc::new(TaskRegistry::default());
        let entry = finished_entry(&registry, 1);
        assert!(!registry.cancel(&entry, "by the client"));
        assert_eq!(entry.result().unwrap()["status"], "succeeded");
    }
}
