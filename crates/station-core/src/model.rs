//! The data model: sessions, tasks, outcomes.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Station's own id for a coding session (`stn_<uuid v7>`), stable across backends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl SessionId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        SessionId(format!("stn_{}", uuid::Uuid::now_v7().simple()))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SessionId {
    fn from(s: &str) -> Self {
        SessionId(s.to_string())
    }
}

/// A git repository to work in. The URL never carries credentials: tokens come from config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSpec {
    /// Clone URL, without credentials.
    pub url: String,
    /// Branch to check out (the remote's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// A coding session: one conversation with a coding agent, in one workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Station's id.
    pub id: SessionId,
    /// The backend that owns it (`opencode`, `opencode-cli`, `claudecode`, `opencode-nats`).
    pub backend: String,
    /// The backend's own id (`ses_...` for OpenCode, a UUID for Claude), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_session_id: Option<String>,
    /// Human title; defaults to the first instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Where the work happens (on the backend's machine for remote backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// The repository the workspace was cloned from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoSpec>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a task last ran in it.
    pub last_used_at: DateTime<Utc>,
    /// Backend-specific extras.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Tokens of all tasks so far (for the session budget).
    #[serde(default, skip_serializing_if = "Usage::is_zero")]
    pub usage_total: Usage,
    /// Cost in USD of all tasks so far, where known (for the session budget).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub cost_total_usd: f64,
    /// The git worktree the session works in (`isolation: worktree`); `workspace` is its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<SessionWorktree>,
}

/// A git worktree made for one session, on a branch of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionWorktree {
    /// The repository's main checkout it was made from.
    pub repository: PathBuf,
    /// The worktree's directory (the session's workspace).
    pub path: PathBuf,
    /// Its branch, `stn/<session id>`.
    pub branch: String,
}

impl SessionWorktree {
    /// The branch a session's worktree gets.
    pub fn branch_for(id: &SessionId) -> String {
        format!("stn/{id}")
    }
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

impl Session {
    /// A new session with a fresh id, created now.
    pub fn new(backend: impl Into<String>) -> Self {
        let now = Utc::now();
        Session {
            id: SessionId::generate(),
            backend: backend.into(),
            backend_session_id: None,
            title: None,
            workspace: None,
            repo: None,
            created_at: now,
            last_used_at: now,
            metadata: BTreeMap::new(),
            usage_total: Usage::default(),
            cost_total_usd: 0.0,
            worktree: None,
        }
    }
}

/// What to open: a workspace or a repository, a title, or an existing backend session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// Local (or backend-side) workspace directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// A repository to clone into the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoSpec>,
    /// A title for a new session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Continue this backend session (a backend id, or for backends that can, a title) instead
    /// of creating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

/// One unit of work handed to a coding agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// What to do.
    pub instruction: String,
    /// Background the agent should know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Files to focus on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Deadline for this task; the configured default applies when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// The policy for this task, instead of the backend's configured `coding.policy` (a NATS
    /// worker gets the client's policy this way). Backends enforce
    /// [`Task::policy_or`]`(their own)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::PolicyConfig>,
}

impl Task {
    /// A task with only an instruction.
    pub fn new(instruction: impl Into<String>) -> Self {
        Task {
            instruction: instruction.into(),
            ..Default::default()
        }
    }

    /// The policy to enforce: the task's own, else `configured`.
    pub fn policy_or<'a>(
        &'a self,
        configured: &'a crate::policy::PolicyConfig,
    ) -> &'a crate::policy::PolicyConfig {
        self.policy.as_ref().unwrap_or(configured)
    }

    /// The task timeout, if set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_secs
            .map(|secs| Duration::from_secs(secs).min(crate::config::MAX_DEADLINE))
    }

    /// The full prompt for the coding agent: context, instruction and focus files.
    pub fn prompt(&self) -> String {
        let mut out = String::new();
        if let Some(ctx) = self.context.as_deref().filter(|c| !c.trim().is_empty()) {
            out.push_str("Context:\n");
            out.push_str(ctx.trim());
            out.push_str("\n\nTask:\n");
        }
        out.push_str(self.instruction.trim());
        if !self.files.is_empty() {
            out.push_str("\n\nFocus on these files:\n");
            for f in &self.files {
                out.push_str("- ");
                out.push_str(f);
                out.push('\n');
            }
        }
        out
    }
}

/// Why a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The agent finished its turn.
    Completed,
    /// The agent hit its turn limit.
    MaxTurns,
    /// The task deadline passed.
    Timeout,
    /// The caller cancelled.
    Cancelled,
    /// The agent or its model reported an error.
    Error,
    /// The task passed a cap of `coding.budget` and was stopped.
    BudgetExceeded,
}

/// What happened to a file.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// New file.
    Created,
    /// Changed file.
    #[default]
    Modified,
    /// Removed file.
    Deleted,
    /// Moved from [`FileChange::from`] (possibly also changed).
    Renamed,
}

/// One changed file.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub struct FileChange {
    /// Path relative to the workspace.
    pub path: String,
    /// What happened.
    pub action: FileAction,
    /// Lines added.
    pub lines_added: u64,
    /// Lines removed.
    pub lines_removed: u64,
    /// For a rename: the path before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Binary contents: compared exactly, no line counts.
    #[serde(default, skip_serializing_if = "is_false")]
    pub binary: bool,
    /// Git file mode before (`100644` file, `100755` executable, `120000` symlink), when it
    /// changed or is not a plain file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_mode: Option<String>,
    /// Git file mode after, as [`FileChange::old_mode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_mode: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The patch of one task: what it changed, as a git-format diff that `git apply` takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskPatch {
    /// The patch, cut at a size cap (see `truncated`); binary files as git binary patches.
    pub text: String,
    /// Whether `text` is only the start of the patch.
    #[serde(default)]
    pub truncated: bool,
    /// Size of the whole patch in bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Where the whole patch is stored, when the task was recorded as a checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The task's number in its session (`stn session diff --task N`), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u32>,
}

/// Token counts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Usage {
    /// Prompt tokens (not counting cache reads).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Reasoning tokens, where reported separately.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Whether every count is zero.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
    /// Input + output + reasoning (cache tokens are reported, not totalled).
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.reasoning_tokens
    }
}

impl Add for Usage {
    type Output = Usage;
    fn add(mut self, rhs: Usage) -> Usage {
        self += rhs;
        self
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
        self.reasoning_tokens += rhs.reasoning_tokens;
        self.cache_read_tokens += rhs.cache_read_tokens;
        self.cache_write_tokens += rhs.cache_write_tokens;
    }
}

/// One tool the coding agent called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCall {
    /// The backend's call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tool name as the agent knows it (`write`, `Bash`, ...).
    pub name: String,
    /// Arguments.
    #[serde(default)]
    pub input: serde_json::Value,
    /// Output text (possibly truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Error text when the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The final result of one task. Exactly one per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    /// Whether the agent completed the task without error.
    pub success: bool,
    /// The agent's final answer.
    pub summary: String,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// What went wrong, when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files the task changed.
    #[serde(default)]
    pub files_changed: Vec<FileChange>,
    /// Tokens over all model calls of the task.
    #[serde(default)]
    pub usage: Usage,
    /// Cost in USD, where the backend reports it (or estimated, see `cost_estimated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// `cost_usd` was estimated from the tokens and `coding.pricing`, not reported by the
    /// backend.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cost_estimated: bool,
    /// Tools the agent called, in order.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// Wall time of the task.
    pub duration_ms: u64,
    /// The backend's session id after this task (set when the task created it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_session_id: Option<String>,
    /// The model that did the work, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Every permission decision of the task, in order (the policy's audit trail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<crate::policy::PermissionRecord>,
    /// Rules of the policy the backend's agent could not enforce, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_gaps: Vec<String>,
    /// What the task changed as a patch, for workspaces whose changes are tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<TaskPatch>,
}

impl Outcome {
    /// An outcome that ended for `reason` with the given success flag; everything else empty.
    pub fn new(success: bool, stop_reason: StopReason) -> Self {
        Outcome {
            success,
            summary: String::new(),
            stop_reason,
            error: None,
            files_changed: Vec::new(),
            usage: Usage::default(),
            cost_usd: None,
            cost_estimated: false,
            tool_calls: Vec::new(),
            duration_ms: 0,
            backend_session_id: None,
            model: None,
            permissions: Vec::new(),
            policy_gaps: Vec::new(),
            patch: None,
        }
    }

    /// A failed outcome with an error message.
    pub fn failed(stop_reason: StopReason, error: impl Into<String>) -> Self {
        Outcome {
            error: Some(error.into()),
            ..Outcome::new(false, stop_reason)
        }
    }
}

/// A title for a session from its first instruction: trimmed, first line, at most 80 characters.
pub fn default_title(instruction: &str) -> String {
    // Titles are shown in lists, stored in the index and passed in argv: never a secret.
    let redacted = crate::redact::redact(instruction);
    let line = redacted.trim().lines().next().unwrap_or("").trim();
    const MAX: usize = 80;
    if line.chars().count() <= MAX {
        return line.to_string();
    }
    let mut t: String = line.chars().take(MAX - 1).collect();
    t.push('…');
    t
}
