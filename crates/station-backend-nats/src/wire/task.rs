//! Station → worker: the task, its parts, cancel and git commands.

use serde::{Deserialize, Serialize};
use station_core::policy::PolicyConfig;
use station_core::{Secret, Task};

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
    /// Extension: the client's `coding.policy` (or the task's own), which the worker's
    /// executor enforces instead of the worker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyConfig>,
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

/// A git operation on a session's workspace (extension; Station → worker, request/reply on
/// [`Subjects::git`](super::Subjects::git)). Carries no credentials: the worker uses its own.
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
