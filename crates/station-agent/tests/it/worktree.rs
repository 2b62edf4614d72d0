//! `isolation: worktree` on `coding_open`, and what `coding_close` does with the worktree.

use std::sync::Arc;

use serde_json::json;
use station_agent::{CodingTools, LocalGit};
use station_core::config::{Isolation, WorktreeOnClose};
use station_testkit::git_server::{Seed, git};

use crate::fixture;

fn tools(f: &crate::Fixture, isolation: Isolation, on_close: WorktreeOnClose) -> CodingTools {
    let git = station_git::Git::new(station_git::GitCredentials::new(None));
    CodingTools::new(f.service.clone(), f.base.clone())
        .with_git(Arc::new(LocalGit::new(git)))
        .with_worktree_policy(isolation, on_close)
}

#[tokio::test]
async fn coding_open_isolates_sessions_in_worktrees_and_close_never_loses_work() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let seed = Seed::new(tmp.path().join("repo")).await;
    seed.write("README.md", "hi\n");
    let head = seed.commit("base").await;
    let by_arg = tools(&f, Isolation::None, WorktreeOnClose::Remove);
    let by_config = tools(&f, Isolation::Worktree, WorktreeOnClose::Remove);

    let a = by_arg
        .call(
            "coding_open",
            &json!({"workspace_path": seed.dir, "isolation": "worktree", "title": "a"}),
            None,
        )
        .await;
    let b = by_config
        .call(
            "coding_open",
            &json!({"workspace_path": seed.dir, "title": "b"}),
            None,
        )
        .await;
    for (opened, name) in [(&a, "a"), (&b, "b")] {
        assert_eq!(opened["success"], true, "{name}: {opened:#}");
        let id = opened["session_id"].as_str().unwrap();
        assert_eq!(
            opened["worktree"]["branch"],
            format!("stn/{id}"),
            "{opened:#}"
        );
        assert_eq!(opened["worktree"]["repository"], json!(seed.dir));
        assert_eq!(opened["workspace"], opened["worktree"]["path"]);
        let ws = std::path::PathBuf::from(opened["workspace"].as_str().unwrap());
        assert!(
            ws.starts_with(&f.base) && ws.join("README.md").is_file(),
            "{opened:#}"
        );
        let done = by_arg
            .call(
                "code",
                &json!({"session_id": id, "instruction": "write hello.py"}),
                None,
            )
            .await;
        assert_eq!(done["success"], true, "{done:#}");
        assert!(ws.join("hello.py").is_file());
    }
    assert_ne!(a["workspace"], b["workspace"]);
    assert!(
        !seed.dir.join("hello.py").exists(),
        "the main checkout is untouched"
    );
    assert_eq!(seed.head().await, head);
    assert_eq!(git(&seed.dir, &["status", "--porcelain"]).await, "");
    // Without isolation the session works in the repository itself.
    let plain = by_arg
        .call("coding_open", &json!({"workspace_path": seed.dir}), None)
        .await;
    assert_eq!(
        (&plain["worktree"], &plain["workspace"]),
        (&json!(null), &json!(seed.dir))
    );

    // hello.py is not committed: closing keeps the worktree and says why.
    let a_id = a["session_id"].as_str().unwrap();
    let a_ws = std::path::PathBuf::from(a["workspace"].as_str().unwrap());
    let closed = by_arg
        .call("coding_close", &json!({"session_id": a_id}), None)
        .await;
    assert_eq!(closed["success"], true, "{closed:#}");
    assert_eq!(closed["worktree"]["removed"], false, "{closed:#}");
    let note = closed["worktree"]["note"].as_str().unwrap();
    assert!(
        note.contains("uncommitted changes")
            && note.contains(a_ws.to_str().unwrap())
            && note.contains(&format!("stn/{a_id}")),
        "{note}"
    );
    assert!(a_ws.join("hello.py").is_file());

    let committed = by_arg
        .call(
            "coding_commit",
            &json!({"session_id": a_id, "message": "hello"}),
            None,
        )
        .await;
    assert_eq!(committed["success"], true, "{committed:#}");
    let closed = by_arg
        .call("coding_close", &json!({"session_id": a_id}), None)
        .await;
    assert_eq!(closed["worktree"]["removed"], true, "{closed:#}");
    assert!(!a_ws.exists());
    assert_eq!(
        git(&seed.dir, &["rev-parse", &format!("stn/{a_id}")])
            .await
            .trim(),
        committed["hash"].as_str().unwrap(),
        "the branch keeps the work"
    );
    let again = by_arg
        .call("coding_open", &json!({"session": a_id}), None)
        .await;
    assert_eq!(again["success"], false, "{again:#}");
    assert!(
        again["error"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{again:#}"
    );

    // Keep (the default) leaves a clean worktree where it is.
    let keep = tools(&f, Isolation::None, WorktreeOnClose::Keep);
    let b_id = b["session_id"].as_str().unwrap();
    let closed = keep
        .call("coding_close", &json!({"session_id": b_id}), None)
        .await;
    assert_eq!(closed["worktree"]["removed"], false, "{closed:#}");
    assert!(std::path::Path::new(b["workspace"].as_str().unwrap()).is_dir());
}

#[tokio::test]
async fn coding_open_with_a_worktree_needs_a_repository_with_a_branch() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let tools = tools(&f, Isolation::Worktree, WorktreeOnClose::Keep);
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let result = tools
        .call("coding_open", &json!({"workspace_path": plain}), None)
        .await;
    assert_eq!(result["success"], false, "{result:#}");
    assert!(
        result["error"]
            .as_str()
            .unwrap()
            .contains("is not a git repository's top directory"),
        "{result:#}"
    );
    let wrong = tools
        .call(
            "coding_open",
            &json!({"workspace_path": plain, "isolation": "branch"}),
            None,
        )
        .await;
    assert_eq!(
        wrong["error"], "`isolation` must be one of none, worktree, not `branch`",
        "{wrong:#}"
    );
    let none = tools
        .call(
            "coding_open",
            &json!({"workspace_path": plain, "isolation": "none"}),
            None,
        )
        .await;
    assert_eq!(
        none["success"], true,
        "isolation none overrides the default: {none:#}"
    );
}
