//! `Git::clone_or_reuse`: an interrupted clone is never reused; a complete clone of the same URL
//! and branch is; anything else is refused; no temporary directory is left behind.

use std::path::Path;

use station_core::ErrorKind;
use station_git::{CloneOptions, GITHUB_USERNAME, Git};

use crate::support::{GitServer, fake_token, loopback_creds, seeded_repo};

/// Names in `dir` that look like a temporary clone.
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial-clone"))
        .collect()
}

#[tokio::test]
async fn an_interrupted_clone_is_not_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = Git::new(loopback_creds(Some(&token)));
    // What an interrupted `git clone` into the workspace leaves.
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(ws.join(".git")).unwrap();

    let err = git
        .clone_or_reuse(&server.url("repo"), &ws, CloneOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&ws.display().to_string())
            && text.contains("not a complete git repository")
            && text.contains("remove"),
        "says what is there and what to do: {text}"
    );
    assert!(!ws.join("README.md").exists());
}

#[tokio::test]
async fn a_complete_clone_of_the_same_url_and_branch_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (_, main_head) = seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = Git::new(loopback_creds(Some(&token)));
    let ws = tmp.path().join("ws");

    let first = git
        .clone_or_reuse(
            &server.url("repo"),
            &ws,
            CloneOptions::default().branch("main"),
        )
        .await
        .unwrap();
    assert!(!first.reused);
    assert_eq!(first.path, ws);
    assert_eq!(first.head.as_deref(), Some(main_head.as_str()));
    assert!(ws.join("README.md").is_file());
    assert!(
        partials(tmp.path()).is_empty(),
        "{:?}",
        partials(tmp.path())
    );

    let requests = server.requests();
    let same_url = server.url("repo").trim_end_matches(".git").to_string() + "/";
    let again = git
        .clone_or_reuse(&same_url, &ws, CloneOptions::default().branch("main"))
        .await
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.branch.as_deref(), Some("main"));
    assert_eq!(again.head.as_deref(), Some(main_head.as_str()));
    assert_eq!(server.requests(), requests, "reusing needs no network");
    // Without a branch, any checked-out branch of that URL will do.
    assert!(
        git.clone_or_reuse(&server.url("repo"), &ws, CloneOptions::default())
            .await
            .unwrap()
            .reused
    );
}

#[tokio::test]
async fn a_clone_of_another_url_or_branch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    seeded_repo(tmp.path(), "other").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = Git::new(loopback_creds(Some(&token)));
    let ws = tmp.path().join("ws");
    git.clone_or_reuse(&server.url("repo"), &ws, CloneOptions::default())
        .await
        .unwrap();

    let err = git
        .clone_or_reuse(&server.url("other"), &ws, CloneOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("is a clone of {}", server.url("repo"))),
        "{err}"
    );

    let err = git
        .clone_or_reuse(
            &server.url("repo"),
            &ws,
            CloneOptions::default().branch("feature"),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has branch `main` checked out, not `feature`"),
        "{err}"
    );

    // A directory with other files is not cloned over either.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let err = git
        .clone_or_reuse(&server.url("repo"), &busy, CloneOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a complete git repository"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(busy.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[tokio::test]
async fn no_temporary_clone_is_left_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = Git::new(loopback_creds(Some(&token)));
    let parent = tmp.path().join("workspaces");
    std::fs::create_dir(&parent).unwrap();
    let ws = parent.join("ws");

    // A failed clone (no such repository) leaves nothing.
    let err = git
        .clone_or_reuse(&server.url("missing"), &ws, CloneOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!ws.exists());
    assert!(partials(&parent).is_empty(), "{:?}", partials(&parent));

    // The leftover of a clone interrupted in a process that is gone is removed; the clone works.
    let stale = parent.join(".ws.partial-clone-999999999-1");
    std::fs::create_dir_all(stale.join(".git")).unwrap();
    let cloned = git
        .clone_or_reuse(&server.url("repo"), &ws, CloneOptions::default())
        .await
        .unwrap();
    assert!(!cloned.reused);
    assert!(ws.join("README.md").is_file());
    assert!(partials(&parent).is_empty(), "{:?}", partials(&parent));

    // An empty directory (e.g. made by the user beforehand) receives the clone.
    let empty = parent.join("empty");
    std::fs::create_dir(&empty).unwrap();
    git.clone_or_reuse(&server.url("repo"), &empty, CloneOptions::default())
        .await
        .unwrap();
    assert!(empty.join("README.md").is_file());
    assert!(partials(&parent).is_empty(), "{:?}", partials(&parent));
}
