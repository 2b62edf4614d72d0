//! What the coding tools need from git, as a trait so the runtime does not care whether git
//! runs here (libgit2) or where a remote workspace lives.

use std::path::Path;

use serde_json::Value;
use station_core::Result;

/// Git operations on a workspace. Results are JSON objects for the model.
#[async_trait::async_trait]
pub trait GitOps: Send + Sync {
    /// Clone `url` (credentials from config) into `dest`, or reuse `dest` when it already is a
    /// complete clone of `url` with `branch` checked out; anything else there is an error.
    async fn clone_repo(&self, url: &str, branch: Option<&str>, dest: &Path) -> Result<()>;
    /// Commit; returns `{hash, files_changed, insertions, deletions}`.
    async fn commit(&self, workspace: &Path, message: &str, add_all: bool) -> Result<Value>;
    /// Push; returns `{remote, branch}`.
    async fn push(
        &self,
        workspace: &Path,
        remote: Option<&str>,
        branch: Option<&str>,
        set_upstream: bool,
    ) -> Result<Value>;
    /// Create and/or switch branch; returns `{branch, created, previous_branch}`.
    async fn branch(&self, workspace: &Path, branch: &str, create: bool) -> Result<Value>;
}

/// [`GitOps`] with libgit2 on this machine (`station-git`).
#[derive(Debug)]
pub struct LocalGit {
    git: station_git::Git,
}

impl LocalGit {
    /// Wrap a configured [`station_git::Git`].
    pub fn new(git: station_git::Git) -> Self {
        LocalGit { git }
    }
}

fn to_json(v: impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(v)
        .map_err(|e| station_core::Error::backend("git", format!("cannot encode the result: {e}")))
}

#[async_trait::async_trait]
impl GitOps for LocalGit {
    async fn clone_repo(&self, url: &str, branch: Option<&str>, dest: &Path) -> Result<()> {
        let opts = station_git::CloneOptions {
            branch: branch.map(str::to_string),
            ..Default::default()
        };
        self.git.clone_or_reuse(url, dest, opts).await.map(|_| ())
    }
    async fn commit(&self, workspace: &Path, message: &str, add_all: bool) -> Result<Value> {
        to_json(self.git.commit(workspace, message, add_all).await?)
    }
    async fn push(
        &self,
        workspace: &Path,
        remote: Option<&str>,
        branch: Option<&str>,
        set_upstream: bool,
    ) -> Result<Value> {
        let opts = station_git::PushOptions {
            remote: remote.map(str::to_string),
            branch: branch.map(str::to_string),
            set_upstream,
            ..Default::default()
        };
        to_json(self.git.push(workspace, opts).await?)
    }
    async fn branch(&self, workspace: &Path, branch: &str, create: bool) -> Result<Value> {
        to_json(self.git.branch(workspace, branch, create).await?)
    }
}
