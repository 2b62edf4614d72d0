//! KV records: session state (sessions bucket) and task claims/results (tasks bucket).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ResultMessage;

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
    /// A nonce of the claim, so a worker whose claim attempt failed ambiguously (stored, but
    /// the reply lost in a leader election) recognises its own claim when it retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
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
