//! The coding tools' arguments as types: the schemas offered to models are generated from these
//! (doc comments are the descriptions models read), and calls are read into them.

use schemars::JsonSchema;
use serde::Deserialize;

fn yes() -> bool {
    true
}

// coding_open
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenArgs {
    /// Directory to work in (created if missing). Omit to use the agent's default or a new managed directory.
    pub(crate) workspace_path: Option<String>,
    /// HTTPS URL of a git repository to clone into the workspace. Never put credentials in it; they come from the station config.
    pub(crate) repo_url: Option<String>,
    /// Branch to check out after cloning.
    pub(crate) branch: Option<String>,
    /// A title for a new session (default: the first instruction).
    pub(crate) title: Option<String>,
    /// Continue an earlier session: its id or part of its title.
    pub(crate) session: Option<String>,
    /// `worktree`: work in a new git worktree of the workspace's repository, on a new branch `stn/<session id>`, so other sessions can work on the same repository at once. `none`: work in the workspace itself. Default: the station config (coding.isolation). Only for new sessions.
    pub(crate) isolation: Option<IsolationArg>,
}

/// `coding_open`'s `isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub(crate) enum IsolationArg {
    None,
    Worktree,
}

impl From<IsolationArg> for station_core::config::Isolation {
    fn from(a: IsolationArg) -> Self {
        match a {
            IsolationArg::None => station_core::config::Isolation::None,
            IsolationArg::Worktree => station_core::config::Isolation::Worktree,
        }
    }
}

// code. `session_id` is advertised as required; without it the session opened last is used
// (models sometimes leave it out when there is only one).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeArgs {
    /// From coding_open.
    pub(crate) session_id: Option<String>,
    /// What to do, in full sentences.
    pub(crate) instruction: String,
    /// Background the coding agent should know.
    pub(crate) context: Option<String>,
    /// Files to focus on.
    #[serde(default)]
    pub(crate) files: Vec<String>,
    /// Deadline for this task (default: the configured one).
    #[schemars(range(min = 1))]
    pub(crate) timeout_secs: Option<u64>,
}

// coding_close
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloseArgs {
    pub(crate) session_id: Option<String>,
}

// coding_commit
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommitArgs {
    pub(crate) session_id: Option<String>,
    /// Commit message.
    pub(crate) message: String,
    /// Stage all changes, including new files (default true).
    #[serde(default = "yes")]
    pub(crate) add_all: bool,
}

// coding_push
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushArgs {
    pub(crate) session_id: Option<String>,
    /// Remote name (default origin).
    pub(crate) remote: Option<String>,
    /// Branch (default: the current one).
    pub(crate) branch: Option<String>,
    /// Set the upstream branch (default true).
    #[serde(default = "yes")]
    pub(crate) set_upstream: bool,
}

// coding_rewind
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewindArgs {
    pub(crate) session_id: Option<String>,
    /// Restore the workspace files to their state before this task of the session (1 is its first; default: its last task).
    #[schemars(range(min = 1))]
    pub(crate) to_task: Option<u32>,
    /// Rewind even if the workspace changed since the session's last task ended; those changes are lost (default false).
    #[serde(default)]
    pub(crate) force: bool,
}

// coding_branch
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BranchArgs {
    pub(crate) session_id: Option<String>,
    pub(crate) branch: String,
    /// Create it if it does not exist (default true).
    #[serde(default = "yes")]
    pub(crate) create: bool,
}
