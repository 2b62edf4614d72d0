//! Git on a session's workspace through a real worker: typed requests and results, error kinds
//! kept across the wire, and the JSON that PROTOCOL.md documents.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use station_backend_nats::wire::{GitInfo, GitSpec};
use station_backend_nats::{PrepareWorkspace, WorkerOptions};
use station_core::git::{CommitResult, GitRequest, GitResponse};
use station_core::{CodingBackend, Error, ErrorKind, FileAction, FileChange, OpenRequest, Result};
use station_testkit::peers::NatsServer;

use crate::support::*;

/// Answers git requests without git: status lists one file, a commit named `auth` or `slow`
/// fails the way a real push would, any other commit succeeds.
#[derive(Debug)]
struct ScriptedGit;

fn one_change() -> FileChange {
    FileChange {
        path: "notes.md".into(),
        action: FileAction::Created,
        lines_added: 2,
        lines_removed: 0,
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl PrepareWorkspace for ScriptedGit {
    async fn prepare(&self, _dir: &Path, _git: &GitSpec, _existed: bool) -> Result<GitInfo> {
        Ok(GitInfo::default())
    }

    async fn run(&self, dir: &Path, request: GitRequest) -> Result<GitResponse> {
        assert!(dir.ends_with("ws-git"), "{}", dir.display());
        match request {
            GitRequest::Status => Ok(GitResponse::Status {
                files: vec![one_change()],
            }),
            GitRequest::Commit { message, .. } if message == "auth" => Err(Error::Auth {
                message: "the remote rejected the worker's token".into(),
            }),
            GitRequest::Commit { message, .. } if message == "slow" => Err(Error::Timeout {
                operation: "git push of `main` to origin".into(),
                after: Duration::from_secs(120),
            }),
            GitRequest::Commit { .. } => Ok(GitResponse::Commit(CommitResult {
                hash: "3b18e512dba79e4c8300dd08aeb37f8e728b8dad".into(),
                branch: Some("main".into()),
                files_changed: 1,
                insertions: 2,
                deletions: 0,
            })),
            other => Err(Error::config(format!("unexpected {other:?}"))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_requests_and_results_cross_the_wire_typed_with_their_error_kinds() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("ws-git")).unwrap();
    let options = WorkerOptions {
        git: Some(Arc::new(ScriptedGit)),
        ..WorkerOptions::default()
    };
    let (_worker, client) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(Arc::default())),
        base.path().to_path_buf(),
        "w-git",
        options,
    )
    .await;
    let session = client
        .open(OpenRequest {
            workspace: Some("/elsewhere/ws-git".into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();

    assert_eq!(
        client.git(&session, GitRequest::Status).await.unwrap(),
        GitResponse::Status {
            files: vec![one_change()]
        }
    );
    let commit = |message: &str| GitRequest::Commit {
        message: message.into(),
        add_all: true,
    };
    let GitResponse::Commit(done) = client.git(&session, commit("Add notes")).await.unwrap() else {
        panic!("not a commit result");
    };
    assert_eq!(done.files_changed, 1);
    // The worker's error arrives with its kind and its own words, not re-wrapped.
    let auth = client.git(&session, commit("auth")).await.unwrap_err();
    assert_eq!(
        (auth.kind(), auth.to_string()),
        (
            ErrorKind::Auth,
            "authentication failed: the remote rejected the worker's token".to_string()
        )
    );
    let slow = client.git(&session, commit("slow")).await.unwrap_err();
    assert!(
        matches!(&slow, Error::Timeout { after, .. } if *after == Duration::from_secs(120)),
        "{slow:?}"
    );
    assert_eq!(
        slow.to_string(),
        "git push of `main` to origin timed out after 120s"
    );

    // The JSON on the wire is the documented one (PROTOCOL.md, "git on a session's workspace").
    let nats = async_nats::connect(&config.url).await.unwrap();
    let ask = |request: Value| {
        let nats = nats.clone();
        async move {
            let command =
                json!({"session": "stn_unknown", "workspace": "ws-git", "request": request});
            let reply = tokio::time::timeout(
                Duration::from_secs(30),
                nats.request(
                    "station.coding.task.git",
                    serde_json::to_vec(&command).unwrap().into(),
                ),
            )
            .await
            .expect("a worker answers in time")
            .unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    assert_eq!(
        ask(json!({"op": "status"})).await,
        json!({"ok": {"op": "status", "files": [{"path": "notes.md", "action": "created", "lines_added": 2, "lines_removed": 0}]}})
    );
    assert_eq!(
        ask(json!({"op": "commit", "message": "Add USAGE.md", "add_all": true})).await,
        json!({"ok": {"op": "commit", "hash": "3b18e512dba79e4c8300dd08aeb37f8e728b8dad", "branch": "main", "files_changed": 1, "insertions": 2, "deletions": 0}})
    );
    assert_eq!(
        ask(json!({"op": "commit", "message": "auth"})).await,
        json!({"error": {"kind": "auth", "message": "authentication failed: the remote rejected the worker's token"}})
    );
    let unknown_op = ask(json!({"op": "rebase"})).await;
    assert_eq!(unknown_op["error"]["kind"], "protocol", "{unknown_op}");
}
