//! What the coding tools need from git, as a trait so the runtime does not care whether git
//! runs here (libgit2) or where a remote workspace lives.

use std::path::Path;

use station_core::Result;
use station_core::git::{GitRequest, GitResponse};

/// Git operations on a workspace.
#[async_trait::async_trait]
pub trait GitOps: Send + Sync {
    /// Clone `url` (credentials from config) into `dest`, or reuse `dest` when it already is a
    /// complete clone of `url` with `branch` checked out; anything else there is an error.
    async fn clone_repo(&self, url: &str, branch: Option<&str>, dest: &Path) -> Result<()>;
    /// Run a commit, push, branch or status request on `workspace`.
    async fn run(&self, workspace: &Path, request: GitRequest) -> Result<GitResponse>;
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

#[async_trait::async_trait]
impl GitOps for LocalGit {
    async fn clone_repo(&self, url: &str, branch: Option<&str>, dest: &Path) -> Result<()> {
        let opts = station_git::CloneOptions {
            branch: branch.map(str::to_string),
            ..Default::default()
        };
        self.git.clone_or_reuse(url, dest, opts).await.map(|_| ())
    }
    async fn run(&self, workspace: &Path, request: GitRequest) -> Result<GitResponse> {
        self.git.execute(workspace, request).await
    }
}
