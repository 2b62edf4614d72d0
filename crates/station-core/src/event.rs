//! Typed, sequenced events that a task emits while it runs.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::ErrorKind;
use crate::model::{Outcome, SessionId, Usage};

/// One event. `seq` starts at 1 and grows by one per event of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the task's stream.
    pub seq: u64,
    /// When it was emitted.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The task started. Always the first event.
    Started {
        /// Station session id.
        session_id: SessionId,
        /// Backend name.
        backend: String,
    },
    /// The backend's session id became known.
    BackendSession {
        /// The backend's id.
        backend_session_id: String,
    },
    /// A piece of streamed assistant text.
    TextDelta {
        /// The piece.
        text: String,
    },
    /// A complete assistant text block.
    Text {
        /// The text.
        text: String,
    },
    /// Reasoning text, where the model exposes it.
    Reasoning {
        /// The text.
        text: String,
    },
    /// A tool call started.
    ToolStarted {
        /// The backend's call id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        /// Tool name.
        name: String,
        /// Arguments.
        #[serde(default)]
        input: serde_json::Value,
    },
    /// A tool call finished.
    ToolFinished {
        /// The backend's call id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        /// Tool name.
        name: String,
        /// Output (possibly truncated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// Error, when the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The agent edited a file.
    FileEdited {
        /// The path as the backend reported it.
        path: String,
    },
    /// One model call finished.
    StepFinished {
        /// Its tokens.
        usage: Usage,
        /// Its cost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// Something worth telling the user that is not an error (a malformed line skipped, a retry).
    Notice {
        /// The message.
        message: String,
    },
    /// Terminal: the task ended with an outcome (success or not).
    Finished {
        /// The outcome.
        outcome: Box<Outcome>,
    },
    /// Terminal: the task could not run.
    Failed {
        /// Error kind.
        kind: ErrorKind,
        /// Error message.
        message: String,
    },
}

impl EventKind {
    /// Whether this event ends the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Finished { .. } | EventKind::Failed { .. })
    }
}

/// Where a backend sends its events. Clones share one sequence. Sending never blocks and never
/// fails; events sent after the receiver is gone are dropped.
#[derive(Debug, Clone)]
pub struct EventSink {
    inner: Arc<Mutex<SinkInner>>,
}

#[derive(Debug)]
struct SinkInner {
    next_seq: u64,
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl EventSink {
    /// A sink and the receiver of its events.
    pub fn channel() -> (EventSink, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            EventSink {
                inner: Arc::new(Mutex::new(SinkInner {
                    next_seq: 1,
                    tx: Some(tx),
                })),
            },
            rx,
        )
    }

    /// A sink that discards everything.
    pub fn discard() -> EventSink {
        EventSink {
            inner: Arc::new(Mutex::new(SinkInner {
                next_seq: 1,
                tx: None,
            })),
        }
    }

    /// Emit a progress event; returns its sequence number. Terminal events are the runner's
    /// alone: one sent here is dropped (and logged), returning 0.
    pub fn emit(&self, kind: EventKind) -> u64 {
        if kind.is_terminal() {
            tracing::warn!("a backend tried to send a terminal event; the runner sends those");
            return 0;
        }
        self.emit_terminal(kind)
    }

    pub(crate) fn emit_terminal(&self, kind: EventKind) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(tx) = &inner.tx {
            let _ = tx.send(Event {
                seq,
                at: Utc::now(),
                kind,
            });
        }
        seq
    }

    /// Close the stream: later events are dropped and the receiver ends.
    pub(crate) fn close(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).tx = None;
    }
}
