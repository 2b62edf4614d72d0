//! [`Git::execute`]: run a [`GitRequest`] (core's git operations as data, which a NATS worker or
//! another remote channel carries) deterministically where the workspace is.

use std::path::Path;

use station_core::git::{GitRequest, GitResponse};
use station_core::{Error, Result};

use crate::git::{Git, PushOptions};

impl Git {
    /// Run `req` on the repository at `workspace`.
    pub async fn execute(&self, workspace: &Path, req: GitRequest) -> Result<GitResponse> {
        match req {
            GitRequest::Commit { message, add_all } => self
                .commit(workspace, &message, add_all)
                .await
                .map(GitResponse::Commit),
            GitRequest::Push {
                remote,
                branch,
                set_upstream,
            } => self
                .push(
                    workspace,
                    PushOptions {
                        remote,
                        branch,
                        set_upstream,
                        ..PushOptions::default()
                    },
                )
                .await
                .map(GitResponse::Push),
            GitRequest::Branch { branch, create } => self
                .branch(workspace, &branch, create)
                .await
                .map(GitResponse::Branch),
            GitRequest::Status => self
                .status(workspace)
                .await
                .map(|files| GitResponse::Status { files }),
            other => Err(Error::not_supported(
                "git",
                format!("the git operation `{}`", other.op()),
            )),
        }
    }
}
