//! [`PrepareWorkspace`] with station-git: clones task repositories and runs git requests with the
//! worker's own credentials (tokens never travel in messages).

use std::path::Path;

use station_core::Result;
use station_core::git::{GitRequest, GitResponse};

use crate::wire::{GitInfo, GitSpec};
use crate::worker::PrepareWorkspace;

/// Git for a worker, through libgit2 on the worker's machine.
#[derive(Debug)]
pub struct StationGit(pub station_git::Git);

#[async_trait::async_trait]
impl PrepareWorkspace for StationGit {
    async fn prepare(&self, dir: &Path, git: &GitSpec, _existed: bool) -> Result<GitInfo> {
        // Refused before anything else, also for a workspace that already exists.
        self.0.check_remote_url(&git.url)?;
        if dir.join(".git").exists() {
            return Ok(GitInfo {
                url: Some(git.url.clone()),
                branch: git.branch.clone(),
                commit: None,
            });
        }
        let opts = station_git::CloneOptions {
            branch: git.branch.clone(),
            ..Default::default()
        };
        let cloned = self.0.clone_repo(&git.url, dir, opts).await?;
        Ok(GitInfo {
            url: Some(cloned.url),
            branch: cloned.branch,
            commit: cloned.head,
        })
    }

    async fn run(&self, dir: &Path, request: GitRequest) -> Result<GitResponse> {
        self.0.execute(dir, request).await
    }
}
