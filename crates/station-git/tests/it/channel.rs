use std::path::Path;

use station_core::{ErrorKind, FileAction};
use station_git::{CloneOptions, GITHUB_USERNAME, Git, GitReply, GitRequest, GitResponse};

use crate::support::{GitServer, bare_head, fake_token, loopback_creds, seeded_repo};

/// What a remote worker does with one message: JSON in, run, JSON out.
pub(crate) async fn serve_one(git: &Git, workspace: &Path, message: &str) -> String {
    let reply = match serde_json::from_str::<GitRequest>(message) {
        Ok(request) => GitReply::from_result(git.execute(workspace, request).await),
        Err(e) => GitReply::from_result(Err(station_core::Error::Protocol(e.to_string()))),
    };
    serde_json::to_string(&reply).unwrap()
}

fn response(json: &str) -> GitResponse {
    serde_json::from_str::<GitReply>(json)
        .unwrap()
        .into_result()
        .unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[tokio::test]
async fn git_operations_travel_as_json_and_run_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, _) = seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = Git::new(loopback_creds(Some(&token))).with_identity("Worker", "worker@example.com");
    let ws = tmp.path().join("ws");
    git.clone_repo(&server.url("repo"), &ws, CloneOptions::default())
        .await
        .unwrap();

    let GitResponse::Branch(branch) =
        response(&serve_one(&git, &ws, r#"{"op":"branch","branch":"agent/task-7"}"#).await)
    else {
        panic!("not a branch response")
    };
    assert_eq!(
        (branch.created, branch.previous_branch.as_deref()),
        (true, Some("main"))
    );

    std::fs::write(ws.join("notes.md"), "line 1\nline 2\n").unwrap();
    let GitResponse::Status { files } = response(&serve_one(&git, &ws, r#"{"op":"status"}"#).await)
    else {
        panic!("not status")
    };
    assert_eq!(files.len(), 1);
    assert_eq!(
        (
            files[0].path.as_str(),
            files[0].action,
            files[0].lines_added
        ),
        ("notes.md", FileAction::Created, 2)
    );

    let commit_json = serve_one(
        &git,
        &ws,
        r#"{"op":"commit","message":"Add notes \"quoted\" $(not run)"}"#,
    )
    .await;
    let GitResponse::Commit(commit) = response(&commit_json) else {
        panic!("not commit")
    };
    assert_eq!((commit.files_changed, commit.insertions), (1, 2));
    let message = git2::Repository::open(&ws)
        .unwrap()
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    assert_eq!(
        message, "Add notes \"quoted\" $(not run)\n",
        "the message is data, never shell"
    );

    let push_json = serve_one(&git, &ws, r#"{"op":"push","set_upstream":true}"#).await;
    let GitResponse::Push(push) = response(&push_json) else {
        panic!("not push")
    };
    assert_eq!(
        (push.branch.as_str(), push.upstream_set),
        ("agent/task-7", true)
    );
    assert_eq!(bare_head(&bare, "agent/task-7").await, commit.hash);

    // Failures arrive as typed errors.
    let failed = serve_one(
        &git,
        &ws,
        r#"{"op":"branch","branch":"nope","create":false}"#,
    )
    .await;
    let reply: GitReply = serde_json::from_str(&failed).unwrap();
    assert!(
        matches!(&reply, GitReply::Error { kind: ErrorKind::NotFound, message, .. } if message.contains("nope")),
        "{failed}"
    );
    let bad = serve_one(&git, &ws, r#"{"op":"rebase"}"#).await;
    assert!(
        matches!(
            serde_json::from_str::<GitReply>(&bad).unwrap(),
            GitReply::Error {
                kind: ErrorKind::Protocol,
                ..
            }
        ),
        "{bad}"
    );
}
