//! Git operations as data, so a NATS worker or another remote channel can carry them and run
//! them deterministically where the workspace is.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use station_core::{Error, ErrorKind, FileChange, Result};

use crate::git::{BranchResult, CommitResult, Git, PushOptions, PushResult};

fn yes() -> bool {
    true
}

/// One git operation on a workspace. JSON: `{"op":"commit","message":"...","add_all":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum GitRequest {
    /// [`Git::commit`].
    Commit {
        /// Commit message.
        message: String,
        /// Stage every change first (default `true`).
        #[serde(default = "yes")]
        add_all: bool,
    },
    /// [`Git::push`].
    Push {
        /// Remote name (default `origin`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
        /// Branch (default: the current one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        /// Set the upstream after pushing.
        #[serde(default)]
        set_upstream: bool,
    },
    /// [`Git::branch`].
    Branch {
        /// Branch to check out.
        branch: String,
        /// Create it when missing (default `true`).
        #[serde(default = "yes")]
        create: bool,
    },
    /// [`Git::status`].
    Status,
}

/// The result of a [`GitRequest`]. JSON: `{"op":"commit","hash":"...",...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GitResponse {
    /// From [`GitRequest::Commit`].
    Commit(CommitResult),
    /// From [`GitRequest::Push`].
    Push(PushResult),
    /// From [`GitRequest::Branch`].
    Branch(BranchResult),
    /// From [`GitRequest::Status`].
    Status {
        /// Changed files relative to HEAD.
        files: Vec<FileChange>,
    },
}

/// A response or an error, as one message on a channel.
/// JSON: `{"ok":{...response...}}` or `{"error":{"kind":"auth","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitReply {
    /// It worked.
    Ok(GitResponse),
    /// It failed; `message` is the error's (redacted) text.
    Error {
        /// The error's kind.
        kind: ErrorKind,
        /// The error's text.
        message: String,
        /// For [`ErrorKind::Timeout`]: the deadline that passed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
}

impl GitReply {
    /// Wrap an outcome of [`Git::execute`].
    pub fn from_result(result: Result<GitResponse>) -> Self {
        match result {
            Ok(response) => GitReply::Ok(response),
            Err(e) => {
                let timeout_secs = match &e {
                    Error::Timeout { after, .. } => Some(after.as_secs()),
                    _ => None,
                };
                GitReply::Error {
                    kind: e.kind(),
                    message: e.to_string(),
                    timeout_secs,
                }
            }
        }
    }

    /// Back to a `Result`, with the error kind preserved (its text is the original's text).
    pub fn into_result(self) -> Result<GitResponse> {
        let (kind, message, timeout_secs) = match self {
            GitReply::Ok(response) => return Ok(response),
            GitReply::Error {
                kind,
                message,
                timeout_secs,
            } => (kind, message, timeout_secs),
        };
        Err(match kind {
            ErrorKind::Auth => Error::Auth {
                message: message
                    .strip_prefix("authentication failed: ")
                    .unwrap_or(&message)
                    .to_string(),
            },
            ErrorKind::Timeout => {
                let operation = message
                    .rsplit_once(" timed out after ")
                    .map_or(message.as_str(), |(op, _)| op);
                Error::Timeout {
                    operation: operation.to_string(),
                    after: Duration::from_secs(timeout_secs.unwrap_or(0)),
                }
            }
            ErrorKind::Cancelled => Error::Cancelled,
            ErrorKind::NotFound => match message.split_once(" not found: ") {
                Some((what, id)) => Error::NotFound {
                    what: not_found_what(what),
                    id: id.to_string(),
                },
                None => Error::NotFound {
                    what: "git object",
                    id: message,
                },
            },
            ErrorKind::Config => Error::config(message),
            _ => Error::backend("git", message.strip_prefix("git: ").unwrap_or(&message)),
        })
    }
}

/// The `what` of the [`Error::NotFound`] values this crate produces.
fn not_found_what(what: &str) -> &'static str {
    [
        "repository",
        "branch",
        "remote",
        "git repository",
        "directory",
    ]
    .into_iter()
    .find(|known| *known == what)
    .unwrap_or("git object")
}

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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_agent_friendly_defaults() {
        let commit: GitRequest = serde_json::from_str(r#"{"op":"commit","message":"m"}"#).unwrap();
        assert_eq!(
            commit,
            GitRequest::Commit {
                message: "m".into(),
                add_all: true
            }
        );
        let branch: GitRequest = serde_json::from_str(r#"{"op":"branch","branch":"b"}"#).unwrap();
        assert_eq!(
            branch,
            GitRequest::Branch {
                branch: "b".into(),
                create: true
            }
        );
        let push: GitRequest = serde_json::from_str(r#"{"op":"push"}"#).unwrap();
        assert_eq!(
            push,
            GitRequest::Push {
                remote: None,
                branch: None,
                set_upstream: false
            }
        );
        assert!(
            serde_json::from_str::<GitRequest>(r#"{"op":"commit","message":"m","force":true}"#)
                .is_err()
        );
        for req in [commit, branch, push, GitRequest::Status] {
            let back: GitRequest =
                serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
            assert_eq!(back, req);
        }
    }

    #[test]
    fn replies_round_trip_with_their_kind() {
        let errors = [
            Error::Auth {
                message: "github.com rejected the git token".into(),
            },
            Error::Timeout {
                operation: "git push of `main` to origin".into(),
                after: Duration::from_secs(120),
            },
            Error::NotFound {
                what: "branch",
                id: "feature".into(),
            },
            Error::Cancelled,
            Error::config("nothing to commit"),
            Error::backend("git", "git push rejected"),
        ];
        for e in errors {
            let text = e.to_string();
            let kind = e.kind();
            let json = serde_json::to_string(&GitReply::from_result(Err(e))).unwrap();
            let back = serde_json::from_str::<GitReply>(&json)
                .unwrap()
                .into_result()
                .unwrap_err();
            assert_eq!((back.kind(), back.to_string()), (kind, text), "{json}");
        }
        let ok = GitReply::from_result(Ok(GitResponse::Status { files: Vec::new() }));
        let json = serde_json::to_string(&ok).unwrap();
        assert_eq!(json, r#"{"ok":{"op":"status","files":[]}}"#);
        assert_eq!(serde_json::from_str::<GitReply>(&json).unwrap(), ok);
    }
}
