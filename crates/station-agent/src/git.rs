//! What the coding tools need from git, as a trait so the runtime does not care whether git
//! runs here (libgit2) or where a remote workspace lives.

use std::path::Path;

use serde_json::Value;
use station_core::Result;

/// Git operations on a workspace. Results are JSON objects for the model.
#[async_trait::async_trait]
pub trait GitOps: Send + Sync {
    /// Clone `url` (credentials from config) into `dest`.
    async fn clone_repo(&self, url: &str, branch: Option<&str>, dest: &Path) -> Result<()>;
    /// Commit; returns `{hash, files_changed, insertions, deletions}`.
    async fn commit(&self, workspace: &Path, message: &str, add_all: bool) -> Result<Value>;
    /// Push; returns `{remote, branch}`.
    async fn push(&self, workspace: &Path, remote: Option<&str>, branch: Option<&str>, set_upstream: bool) -> Result<Value>;
    /// Create and/or switch branch; returns `{branch, created, previous_branch}`.
    async fn branch(&self, workspace: &Path, branch: &str, create: bool) -> Result<Value>;
}
