//! Worker → Station at the end: the one result of a task and its conversion to an outcome.

use serde::{Deserialize, Serialize};
use station_core::model::TaskPatch;
use station_core::policy::PermissionRecord;
use station_core::{FileChange, Outcome, StopReason, ToolCall, Usage};

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
    /// Extension: the task's patch, made on the worker where the files are (size-capped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<TaskPatch>,
    /// Extension: the policy's decisions on the worker (the audit trail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<PermissionRecord>>,
    /// Extension: rules of the policy the worker's executor could not enforce, each with why.
    #[serde(
        rename = "policyGaps",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub policy_gaps: Option<Vec<String>>,
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
            patch: None,
            permissions: None,
            policy_gaps: None,
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
            cost_estimated: false,
            tool_calls: self.tool_calls.clone().unwrap_or(tool_calls_seen),
            duration_ms: self.metrics.duration,
            backend_session_id: Some(backend_session_id.to_string()),
            model: self.model.clone(),
            permissions: self.permissions.clone().unwrap_or_default(),
            policy_gaps: self.policy_gaps.clone().unwrap_or_default(),
            patch: self.patch.clone(),
        }
    }
}
