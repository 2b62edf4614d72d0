//! Worker → Station while a task runs: stream events, heartbeats, acks and ping answers.

use serde::{Deserialize, Serialize};

/// One event on a task's stream subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// The task.
    #[serde(rename = "taskID", default)]
    pub task_id: String,
    /// 1, 2, 3, ... per task.
    #[serde(default)]
    pub seq: u64,
    /// ISO-8601.
    #[serde(default)]
    pub timestamp: String,
    /// Plugin event type (`text`, `tool_start`, ...; ours add `text_delta`, `notice`, ...).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Text payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolInfo>,
    /// Git payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    /// Session payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
    /// Extension: the typed Station event (an [`EventKind`](station_core::EventKind) as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
    /// Extension: the worker that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// `tool` of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Tool name.
    #[serde(default)]
    pub name: String,
    /// Call id.
    #[serde(rename = "callID", default)]
    pub call_id: String,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// Output (the error text for failed calls, as the plugin does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// Extension: set when the tool failed (then `output` is the error too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `git` of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    /// Remote URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// HEAD commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// `session` of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Station session name.
    #[serde(default)]
    pub name: String,
    /// OpenCode session id.
    #[serde(rename = "opencodeID", default)]
    pub opencode_id: String,
}

/// Extension: a liveness beat, on `<stream subject>.heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The task.
    #[serde(rename = "taskID")]
    pub task_id: String,
    /// The worker running it.
    pub worker: String,
    /// ISO-8601.
    pub timestamp: String,
    /// Events published so far (lets the client spot lost events).
    #[serde(default)]
    pub seq: u64,
}

/// Extension: the worker's answer on the task message's reply subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The task.
    #[serde(rename = "taskID")]
    pub task_id: String,
    /// What the worker did with it.
    pub status: AckStatus,
    /// The worker's identity.
    pub worker: String,
    /// Seconds between heartbeats the client can expect.
    #[serde(rename = "heartbeatSec", default)]
    pub heartbeat_sec: u64,
    /// Why, for `rejected` and `duplicate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A `rejected` task because the worker is at its `max_tasks`: the client publishes it
    /// again (to a worker with free capacity) until its capacity deadline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
}

/// [`Ack::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// The worker runs it.
    Accepted,
    /// Another delivery of this task id is running or done; this one is ignored.
    Duplicate,
    /// The worker will not run it (shutting down); the client may publish it again.
    Rejected,
}

/// Extension: a worker's answer on `<task subject>.ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its identity.
    pub worker: String,
    /// Its executor's backend name.
    pub executor: String,
    /// Tasks in flight.
    pub running: usize,
    /// Crate version.
    pub version: String,
    /// Most tasks it runs at once (absent: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks: Option<usize>,
}
