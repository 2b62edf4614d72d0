//! The messages on the wire: the plugin protocol (field names exactly as the Go Station and the
//! TypeScript plugin spell them) plus our additive extensions. See `PROTOCOL.md`.
//!
//! Receiving is tolerant (missing fields default, unknown fields are ignored) because the other
//! side may be a deployed plugin or a newer worker; sending is exact.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use station_core::{EventKind, FileChange, Outcome, Secret, StopReason, Task, ToolCall, Usage};

/// Queue group every Station worker joins on the task subject.
pub const QUEUE_GROUP: &str = "station-coding-workers";
/// Default bucket for per-task claims and final results (an extension; the plugin never reads it).
pub const TASKS_BUCKET: &str = "station-coding-tasks";

/// The subjects of one deployment, derived from `coding.nats.subjects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// Tasks (Station → worker). The plugin hard-codes `station.coding.task`.
    pub task: String,
    /// Base of per-task event subjects.
    pub stream: String,
    /// Base of per-task result subjects.
    pub result: String,
}

impl Subjects {
    /// From the config section.
    pub fn from_config(s: &crate::NatsSubjects) -> Self {
        Subjects {
            task: s.task.clone(),
            stream: s.stream.clone(),
            result: s.result.clone(),
        }
    }
    /// Cancel requests (extension): every worker listens, not only the queue group.
    pub fn cancel(&self) -> String {
        format!("{}.cancel", self.task)
    }
    /// Worker discovery (extension): request/reply, every worker answers.
    pub fn ping(&self) -> String {
        format!("{}.ping", self.task)
    }
    /// Git on a session's workspace (extension): request/reply, one worker of the queue group.
    pub fn git(&self) -> String {
        format!("{}.git", self.task)
    }
    /// Events of one task.
    pub fn stream_of(&self, task_id: &str) -> String {
        format!("{}.{task_id}", self.stream)
    }
    /// The result of one task.
    pub fn result_of(&self, task_id: &str) -> String {
        format!("{}.{task_id}", self.result)
    }
}

/// Heartbeats of a task travel beside its event stream, so old subscribers never see them.
pub fn heartbeat_subject(stream_subject: &str) -> String {
    format!("{stream_subject}.heartbeat")
}

/// Now as the plugin writes timestamps (`toISOString`).
pub fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Whether `key` is a valid NATS KV key (`[-/_=.a-zA-Z0-9]+`, not starting or ending with `.`).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.'))
}

/// Whether `token` can be one subject token (task ids go into subjects).
pub fn is_valid_subject_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

// ---------------------------------------------------------------------------------------------
// Task (Station → worker)

/// A task, on the task subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// Unique id (uuid); also the last token of the stream and result subjects.
    #[serde(rename = "taskID")]
    pub task_id: String,
    /// Which session to run in.
    pub session: SessionRef,
    /// Which workspace to run in.
    pub workspace: WorkspaceRef,
    /// The full prompt.
    pub prompt: String,
    /// OpenCode agent name (never set by Go; the worker's executor decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Model override (never set by Go; the worker's executor decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Deadline in milliseconds (the plugin ignores it; our worker enforces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Where to send events and the result. The plugin requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
    /// Extension: the structured task, so an executor can build its own prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

/// `session` of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRef {
    /// Station session name; the key in the sessions bucket.
    pub name: String,
    /// `false` forces a new OpenCode session; anything else continues.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_session: Option<bool>,
    /// Extension: a title for a new session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// `workspace` of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceRef {
    /// Directory name relative to the worker's workspace base.
    pub name: String,
    /// A repository to clone or pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,
}

/// `workspace.git` of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitSpec {
    /// Clone URL, without credentials.
    pub url: String,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A commit or tag to check out.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// A token some senders put here. Read so a worker can use it, never written: Station never
    /// puts tokens into messages.
    #[serde(default, skip_serializing)]
    pub token: Option<Secret>,
    /// Whether to pull an existing checkout (`true` when absent, as the plugin does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<bool>,
}

/// `model` of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Provider.
    #[serde(rename = "providerID")]
    pub provider_id: String,
    /// Model.
    #[serde(rename = "modelID")]
    pub model_id: String,
}

/// `callback` of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// Where events go.
    #[serde(rename = "streamSubject")]
    pub stream_subject: String,
    /// Where the result goes.
    #[serde(rename = "resultSubject")]
    pub result_subject: String,
}

// ---------------------------------------------------------------------------------------------
// Events (worker → Station)

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
    /// Extension: the typed Station event (an [`EventKind`] as JSON).
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

/// Extension: on `<task subject>.cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelMessage {
    /// The task.
    #[serde(rename = "taskID")]
    pub task_id: String,
    /// `cancelled` or `timeout`.
    #[serde(default = "cancelled_str")]
    pub reason: String,
}

fn cancelled_str() -> String {
    "cancelled".into()
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
}

// ---------------------------------------------------------------------------------------------
// Result (worker → Station)

/// The one result of a task, on its result subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// The task.
    #[serde(rename = "taskID", default)]
    pub task_id: String,
    /// `completed`, `error`, `timeout` or `cancelled`.
    #[serde(default)]
    pub status: String,
    /// The final text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of error (the plugin sends the JS class name).
    #[serde(rename = "errorType", default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The session after the task.
    #[serde(default)]
    pub session: ResultSession,
    /// The workspace.
    #[serde(default)]
    pub workspace: ResultWorkspace,
    /// Counters.
    #[serde(default)]
    pub metrics: Metrics,
    /// Extension: the worker that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Extension: why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// Extension: changed files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<Vec<FileChange>>,
    /// Extension: tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Extension: USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Extension: tools called, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Extension: the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `session` of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultSession {
    /// Station session name.
    #[serde(default)]
    pub name: String,
    /// OpenCode (executor) session id; `""` on error.
    #[serde(rename = "opencodeID", default)]
    pub opencode_id: String,
    /// Tasks run in the session so far.
    #[serde(rename = "messageCount", default)]
    pub message_count: u64,
}

/// `workspace` of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultWorkspace {
    /// Name relative to the worker's base.
    #[serde(default)]
    pub name: String,
    /// Absolute path on the worker; `""` on error.
    #[serde(default)]
    pub path: String,
    /// Git state, when the workspace is a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<WorkspaceGit>,
}

/// `workspace.git` of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceGit {
    /// Branch.
    #[serde(default)]
    pub branch: String,
    /// HEAD.
    #[serde(default)]
    pub commit: String,
    /// Uncommitted changes.
    #[serde(default)]
    pub dirty: bool,
}

/// `metrics` of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Milliseconds.
    #[serde(default)]
    pub duration: u64,
    /// Input tokens (the plugin never fills it).
    #[serde(
        rename = "promptTokens",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prompt_tokens: Option<u64>,
    /// Output tokens (the plugin never fills it).
    #[serde(
        rename = "completionTokens",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub completion_tokens: Option<u64>,
    /// Tool calls.
    #[serde(rename = "toolCalls", default)]
    pub tool_calls: u64,
    /// Events published.
    #[serde(rename = "streamEvents", default)]
    pub stream_events: u64,
}

/// Plugin result statuses.
pub mod status {
    /// The agent finished.
    pub const COMPLETED: &str = "completed";
    /// It failed.
    pub const ERROR: &str = "error";
    /// The deadline passed.
    pub const TIMEOUT: &str = "timeout";
    /// It was cancelled.
    pub const CANCELLED: &str = "cancelled";
}

impl ResultMessage {
    /// A result for a task that could not run.
    pub fn failure(task_id: &str, session_name: &str, workspace_name: &str, error: &str) -> Self {
        ResultMessage {
            task_id: task_id.to_string(),
            status: status::ERROR.into(),
            result: None,
            error: Some(error.to_string()),
            error_type: Some("Error".into()),
            session: ResultSession {
                name: session_name.to_string(),
                ..ResultSession::default()
            },
            workspace: ResultWorkspace {
                name: workspace_name.to_string(),
                ..ResultWorkspace::default()
            },
            metrics: Metrics::default(),
            worker: None,
            stop_reason: Some(StopReason::Error),
            files_changed: None,
            usage: None,
            cost: None,
            tool_calls: None,
            model: None,
        }
    }

    /// The plugin status for an outcome.
    pub fn status_of(outcome: &Outcome) -> &'static str {
        match outcome.stop_reason {
            StopReason::Completed if outcome.success => status::COMPLETED,
            StopReason::Timeout => status::TIMEOUT,
            StopReason::Cancelled => status::CANCELLED,
            _ => status::ERROR,
        }
    }

    /// The outcome this result describes. `tool_calls_seen` are the calls replayed as `tool_end`
    /// events (a plugin reports its calls only that way).
    pub fn to_outcome(&self, backend_session_id: &str, tool_calls_seen: Vec<ToolCall>) -> Outcome {
        let success = self.status == status::COMPLETED;
        let stop_reason = self.stop_reason.unwrap_or(match self.status.as_str() {
            status::COMPLETED => StopReason::Completed,
            status::TIMEOUT => StopReason::Timeout,
            status::CANCELLED => StopReason::Cancelled,
            _ => StopReason::Error,
        });
        let error = if success {
            None
        } else {
            Some(
                self.error
                    .clone()
                    .filter(|e| !e.trim().is_empty())
                    .unwrap_or_else(|| {
                        format!(
                            "the worker reported status `{}` without an error",
                            self.status
                        )
                    }),
            )
        };
        let usage = self.usage.unwrap_or(Usage {
            input_tokens: self.metrics.prompt_tokens.unwrap_or(0),
            output_tokens: self.metrics.completion_tokens.unwrap_or(0),
            ..Usage::default()
        });
        Outcome {
            success,
            summary: self.result.clone().unwrap_or_default(),
            stop_reason,
            error,
            files_changed: self.files_changed.clone().unwrap_or_default(),
            usage,
            cost_usd: self.cost,
            tool_calls: self.tool_calls.clone().unwrap_or(tool_calls_seen),
            duration_ms: self.metrics.duration,
            backend_session_id: Some(backend_session_id.to_string()),
            model: self.model.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// KV records

/// A session in the sessions bucket (key: session name), as the plugin writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Station session name.
    #[serde(rename = "sessionName", default)]
    pub session_name: String,
    /// OpenCode (executor) session id.
    #[serde(rename = "opencodeID", default)]
    pub opencode_id: String,
    /// Workspace name relative to the worker's base.
    #[serde(rename = "workspaceName", default)]
    pub workspace_name: String,
    /// Absolute path on the worker.
    #[serde(rename = "workspacePath", default)]
    pub workspace_path: String,
    /// ISO-8601.
    #[serde(default)]
    pub created: String,
    /// ISO-8601.
    #[serde(rename = "lastUsed", default)]
    pub last_used: String,
    /// Tasks run.
    #[serde(rename = "messageCount", default)]
    pub message_count: u64,
    /// Repository state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<SessionGit>,
    /// Fields written by others, kept on update.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `git` of a [`SessionState`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGit {
    /// Remote URL.
    #[serde(default)]
    pub url: String,
    /// Branch.
    #[serde(default)]
    pub branch: String,
    /// Last known HEAD.
    #[serde(rename = "lastCommit", default)]
    pub last_commit: String,
}

/// Extension: a task's claim and final result in the tasks bucket (key: task id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `running` or `done`.
    pub state: TaskState,
    /// The worker that claimed it.
    pub worker: String,
    /// ISO-8601.
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    /// The result, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultMessage>,
}

/// [`TaskRecord::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Claimed and running.
    Running,
    /// Finished; the result is stored.
    Done,
}

// ---------------------------------------------------------------------------------------------
// Event mapping

/// How a core event goes on the wire: the plugin type and fields where the plugin has one, our
/// own type name otherwise, and always the typed event.
pub fn stream_event_from_core(
    task_id: &str,
    seq: u64,
    worker: &str,
    kind: &EventKind,
) -> StreamEvent {
    let mut ev = StreamEvent {
        task_id: task_id.to_string(),
        seq,
        timestamp: now_iso(),
        kind: String::new(),
        content: None,
        tool: None,
        git: None,
        session: None,
        event: serde_json::to_value(kind).ok(),
        worker: Some(worker.to_string()),
    };
    match kind {
        EventKind::Text { text } => {
            ev.kind = "text".into();
            ev.content = Some(text.clone());
        }
        EventKind::TextDelta { text } => {
            ev.kind = "text_delta".into();
            ev.content = Some(text.clone());
        }
        EventKind::Reasoning { text } => {
            ev.kind = "thinking".into();
            ev.content = Some(text.clone());
        }
        EventKind::ToolStarted {
            call_id,
            name,
            input,
        } => {
            ev.kind = "tool_start".into();
            ev.tool = Some(ToolInfo {
                name: name.clone(),
                call_id: call_id.clone().unwrap_or_default(),
                args: Some(input.clone()),
                output: None,
                duration: None,
                error: None,
            });
        }
        EventKind::ToolFinished {
            call_id,
            name,
            output,
            error,
        } => {
            ev.kind = "tool_end".into();
            let shown = error.clone().or_else(|| output.clone());
            ev.tool = Some(ToolInfo {
                name: name.clone(),
                call_id: call_id.clone().unwrap_or_default(),
                args: None,
                output: shown.map(serde_json::Value::String),
                duration: None,
                error: error.clone(),
            });
        }
        EventKind::FileEdited { path } => {
            ev.kind = "file_edited".into();
            ev.content = Some(path.clone());
        }
        EventKind::StepFinished { .. } => ev.kind = "step_finished".into(),
        EventKind::Notice { message } => {
            ev.kind = "notice".into();
            ev.content = Some(message.clone());
        }
        EventKind::BackendSession { backend_session_id } => {
            ev.kind = "backend_session".into();
            ev.content = Some(backend_session_id.clone());
        }
        EventKind::Failed { message, .. } => {
            ev.kind = "error".into();
            ev.content = Some(message.clone());
        }
        EventKind::Started { .. } => ev.kind = "started".into(),
        EventKind::Finished { .. } => ev.kind = "finished".into(),
        _ => ev.kind = "event".into(),
    }
    ev
}

/// The core event a stream event stands for, if any. The typed extension wins; plugin events
/// are mapped by type. `Started`/terminal events are never returned: the runner owns them.
pub fn core_event_from_stream(ev: &StreamEvent) -> Option<EventKind> {
    if let Some(kind) = ev
        .event
        .as_ref()
        .and_then(|v| serde_json::from_value::<EventKind>(v.clone()).ok())
    {
        return match kind {
            EventKind::Started { .. } | EventKind::Finished { .. } => None,
            EventKind::Failed { message, .. } => Some(EventKind::Notice {
                message: format!("worker error: {message}"),
            }),
            // The client reports the session name as the backend id; the executor's id is a
            // detail of the worker.
            EventKind::BackendSession { backend_session_id } => Some(EventKind::Notice {
                message: format!("executor session: {backend_session_id}"),
            }),
            other => Some(other),
        };
    }
    let content = ev.content.clone().unwrap_or_default();
    let tool_call_id = |t: &ToolInfo| Some(t.call_id.clone()).filter(|c| !c.is_empty());
    match ev.kind.as_str() {
        "text" => Some(EventKind::Text { text: content }),
        "text_delta" => Some(EventKind::TextDelta { text: content }),
        "thinking" => Some(EventKind::Reasoning { text: content }),
        "tool_start" => ev.tool.as_ref().map(|t| EventKind::ToolStarted {
            call_id: tool_call_id(t),
            name: t.name.clone(),
            input: t.args.clone().unwrap_or(serde_json::Value::Null),
        }),
        "tool_end" => ev.tool.as_ref().map(|t| EventKind::ToolFinished {
            call_id: tool_call_id(t),
            name: t.name.clone(),
            output: t
                .output
                .as_ref()
                .map(value_text)
                .filter(|_| t.error.is_none()),
            error: t.error.clone(),
        }),
        "file_edited" => Some(EventKind::FileEdited { path: content }),
        "error" => Some(EventKind::Notice {
            message: format!("worker error: {content}"),
        }),
        "workspace_created" | "workspace_reused" => Some(EventKind::Notice {
            message: format!("{}: {content}", ev.kind.replace('_', " ")),
        }),
        "session_created" | "session_reused" => {
            let s = ev.session.clone().unwrap_or_default();
            Some(EventKind::Notice {
                message: format!(
                    "{} `{}` (executor session {})",
                    ev.kind.replace('_', " "),
                    s.name,
                    if s.opencode_id.is_empty() {
                        "pending"
                    } else {
                        &s.opencode_id
                    }
                ),
            })
        }
        "git_clone" | "git_pull" | "git_checkout" => {
            let g = ev.git.clone().unwrap_or_default();
            Some(EventKind::Notice {
                message: format!(
                    "{}: {} {} {}",
                    ev.kind.replace('_', " "),
                    g.url.unwrap_or_default(),
                    g.branch.unwrap_or_default(),
                    g.commit.unwrap_or_default()
                )
                .trim_end()
                .to_string(),
            })
        }
        "notice" => Some(EventKind::Notice { message: content }),
        // The prompt is the caller's own text; echoing it adds nothing.
        _ => None,
    }
}

/// A tool call as the plugin reports it in a `tool_end` event.
pub fn tool_call_from_stream(ev: &StreamEvent) -> Option<ToolCall> {
    if ev.kind != "tool_end" {
        return None;
    }
    let t = ev.tool.as_ref()?;
    Some(ToolCall {
        id: Some(t.call_id.clone()).filter(|c| !c.is_empty()),
        name: t.name.clone(),
        input: t.args.clone().unwrap_or(serde_json::Value::Null),
        output: t
            .output
            .as_ref()
            .map(value_text)
            .filter(|_| t.error.is_none()),
        error: t.error.clone(),
        duration_ms: t.duration,
    })
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keys_follow_nats_rules() {
        assert!(is_valid_key("session-1a2b3c4d"));
        assert!(is_valid_key("stn_0190abc"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(".hidden"));
        assert!(!is_valid_key("a b"));
        assert!(!is_valid_key("a*"));
    }

    #[test]
    fn tokens_are_read_but_never_written() {
        let token = format!("ghp_{}", "x".repeat(36));
        let json = format!(r#"{{"url":"https://example.invalid/r.git","token":"{token}"}}"#);
        let spec: GitSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(
            spec.token.as_ref().map(|t| t.expose().to_string()),
            Some(token.clone())
        );
        let out = serde_json::to_string(&spec).unwrap();
        assert!(!out.contains(&token), "{out}");
        assert!(!format!("{spec:?}").contains(&token));
    }

    #[test]
    fn core_events_round_trip_through_the_stream() {
        let kinds = vec![
            EventKind::Text { text: "hi".into() },
            EventKind::TextDelta { text: "h".into() },
            EventKind::ToolStarted {
                call_id: Some("c1".into()),
                name: "write".into(),
                input: serde_json::json!({"path": "a"}),
            },
            EventKind::ToolFinished {
                call_id: Some("c1".into()),
                name: "write".into(),
                output: Some("ok".into()),
                error: None,
            },
            EventKind::StepFinished {
                usage: Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                    ..Usage::default()
                },
                cost_usd: Some(0.5),
            },
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let ev = stream_event_from_core("t", i as u64 + 1, "w", &kind);
            let json = serde_json::to_string(&ev).unwrap();
            let back: StreamEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(core_event_from_stream(&back), Some(kind));
        }
    }

    #[test]
    fn plugin_tool_end_maps_without_the_extension() {
        let ev: StreamEvent = serde_json::from_str(
            r#"{"taskID":"t","seq":3,"timestamp":"2025-01-01T00:00:00.000Z","type":"tool_end","tool":{"name":"write","callID":"c9","output":"Wrote file"}}"#,
        )
        .unwrap();
        assert_eq!(
            core_event_from_stream(&ev),
            Some(EventKind::ToolFinished {
                call_id: Some("c9".into()),
                name: "write".into(),
                output: Some("Wrote file".into()),
                error: None
            })
        );
        let call = tool_call_from_stream(&ev).unwrap();
        assert_eq!(
            (call.name.as_str(), call.output.as_deref()),
            ("write", Some("Wrote file"))
        );
    }

    #[test]
    fn outcome_from_a_plugin_error_result() {
        let r: ResultMessage = serde_json::from_str(
            r#"{"taskID":"t","status":"error","error":"boom","errorType":"Error","session":{"name":"s","opencodeID":"","messageCount":0},"workspace":{"name":"w","path":""},"metrics":{"duration":0,"toolCalls":0,"streamEvents":1}}"#,
        )
        .unwrap();
        let o = r.to_outcome("s", vec![]);
        assert!(!o.success);
        assert_eq!(o.stop_reason, StopReason::Error);
        assert_eq!(o.error.as_deref(), Some("boom"));
        assert_eq!(o.backend_session_id.as_deref(), Some("s"));
    }

    #[test]
    fn session_state_keeps_unknown_fields() {
        let s: SessionState = serde_json::from_str(
            r#"{"sessionName":"s","opencodeID":"ses_1","workspaceName":"w","workspacePath":"/b/w","created":"x","lastUsed":"y","messageCount":2,"future":"kept"}"#,
        )
        .unwrap();
        let out = serde_json::to_value(&s).unwrap();
        assert_eq!(out["future"], "kept");
        assert_eq!(out["messageCount"], 2);
    }
}

/// A git operation on a session's workspace (extension; Station → worker, request/reply on
/// [`Subjects::git`]). Carries no credentials: the worker uses its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitCommand {
    /// Station session name (the key in the sessions bucket).
    pub session: String,
    /// Workspace name relative to the worker's base, used when the session is not in KV.
    pub workspace: String,
    /// The git request (`{"op":"commit",...}`).
    pub request: station_core::git::GitRequest,
}

/// The answer to a [`GitCommand`]: `{"ok": result}` or
/// `{"error": {"kind", "message", "timeout_secs"?}}` (core's git reply envelope).
pub type GitAnswer = station_core::git::GitReply;
