//! Git operations as data: what [`CodingBackend::git`](crate::CodingBackend::git) takes and
//! returns, and what a remote channel (the NATS worker) carries. Pure serde data; running them
//! is `station-git`'s job (libgit2) or a backend's (a remote shell).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::model::FileChange;

fn yes() -> bool {
    true
}

/// One git operation on a workspace. JSON: `{"op":"commit","message":"...","add_all":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum GitRequest {
    /// Commit the workspace's changes.
    Commit {
        /// Commit message.
        message: String,
        /// Stage every change first (default `true`).
        #[serde(default = "yes")]
        add_all: bool,
    },
    /// Push a branch.
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
    /// Check out a branch.
    Branch {
        /// Branch to check out.
        branch: String,
        /// Create it when missing (default `true`).
        #[serde(default = "yes")]
        create: bool,
    },
    /// The changed files.
    Status,
}

impl GitRequest {
    /// The operation's name, as in the JSON `op`.
    pub fn op(&self) -> &'static str {
        match self {
            GitRequest::Commit { .. } => "commit",
            GitRequest::Push { .. } => "push",
            GitRequest::Branch { .. } => "branch",
            GitRequest::Status => "status",
        }
    }
}

/// What a branch operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchResult {
    /// The branch now checked out.
    pub branch: String,
    /// Whether it was created.
    pub created: bool,
    /// The branch checked out before (`None` when HEAD was detached).
    pub previous_branch: Option<String>,
}

/// What a commit recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResult {
    /// The new commit's id.
    pub hash: String,
    /// The branch it was committed on (`None` when HEAD is detached).
    pub branch: Option<String>,
    /// Files changed relative to the parent commit.
    pub files_changed: usize,
    /// Lines added.
    pub insertions: usize,
    /// Lines removed.
    pub deletions: usize,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// The remote pushed to.
    pub remote: String,
    /// The branch pushed (same name on both sides).
    pub branch: String,
    /// The commit the remote branch now points at.
    pub commit: String,
    /// Whether the upstream of the local branch was set.
    pub upstream_set: bool,
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
    /// Wrap the outcome of a git operation.
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

/// The `what` of the [`Error::NotFound`] values git operations produce.
fn not_found_what(what: &str) -> &'static str {
    [
        "repository",
        "branch",
        "remote",
        "git repository",
        "directory",
        "workspace",
    ]
    .into_iter()
    .find(|known| *known == what)
    .unwrap_or("git object")
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
        let push: GitRequest =
            serde_json::from_str(r#"{"op":"push","remote":null,"branch":null}"#).unwrap();
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
            let json = serde_json::to_value(&req).unwrap();
            assert_eq!(json["op"], req.op());
            assert_eq!(serde_json::from_value::<GitRequest>(json).unwrap(), req);
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
            Error::NotFound {
                what: "workspace",
                id: "ws-1 on worker `w`".into(),
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
