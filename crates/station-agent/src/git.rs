//! What the coding tools need from git, as a trait so the runtime does not care whether git
//! runs here (libgit2) or where a remote workspace lives.

use std::path::Path;

use station_core::git::{GitRequest, GitResponse};
use station_core::{Error, Result, SessionWorktree};

/// Git operations on a workspace.
#[async_trait::async_trait]
pub trait GitOps: Send + Sync {
    /// Clone `url` (credentials from config) into `dest`, or reuse `dest` when it already is a
    /// complete clone of `url` with `branch` checked out; anything else there is an error.
    async fn clone_repo(&self, url: &str, branch: Option<&str>, dest: &Path) -> Result<()>;
    /// Run a commit, push, branch or status request on `workspace`.
    async fn run(&self, workspace: &Path, request: GitRequest) -> Result<GitResponse>;
    /// Make `dest` a worktree of the repository at `repo` on a new branch `branch` at its HEAD
    /// (see [`station_git::Git::add_worktree`]).
    async fn add_worktree(
        &self,
        repo: &Path,
        dest: &Path,
        branch: &str,
        name: &str,
    ) -> Result<SessionWorktree> {
        let _ = (repo, dest, branch, name);
        Err(worktrees_unsupported())
    }
    /// Remove a session's worktree, keeping its branch; refuses with uncommitted changes unless
    /// `force` (see [`station_git::Git::remove_worktree`]).
    async fn remove_worktree(&self, worktree: &SessionWorktree, force: bool) -> Result<()> {
        let _ = (worktree, force);
        Err(worktrees_unsupported())
    }
}

fn worktrees_unsupported() -> Error {
    Error::NotSupported {
        backend: "git".into(),
        operation: "worktrees".into(),
        hint: Some("use isolation `none`".into()),
    }
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
    async fn add_worktree(
        &self,
        repo: &Path,
        dest: &Path,
        branch: &str,
        name: &str,
    ) -> Result<SessionWorktree> {
        self.git.add_worktree(repo, dest, branch, name).await
    }
    async fn remove_worktree(&self, worktree: &SessionWorktree, force: bool) -> Result<()> {
        self.git.remove_worktree(worktree, force).await
    }
}
