//! Session worktrees: made on a branch of their own without touching the main checkout, and
//! removed only when that loses no uncommitted work.

use std::path::{Path, PathBuf};

use station_core::{ErrorKind, SessionWorktree};
use station_git::{Git, GitCredentials};

use crate::support::{Seed, git};

fn plain_git() -> Git {
    Git::new(GitCredentials::new(None))
}

/// A repository on `main` with one commit (`a.txt`, `.gitignore` ignoring `*.log`), plus an
/// uncommitted edit, a staged file and an untracked file in its main checkout.
async fn busy_repo(dir: &Path) -> Seed {
    let seed = Seed::new(dir.to_path_buf()).await;
    seed.write("a.txt", "one\n").write(".gitignore", "*.log\n");
    seed.commit("base").await;
    seed.write("a.txt", "one\nlocal edit\n")
        .write("staged.txt", "staged\n")
        .write("untracked.txt", "mine\n");
    git(&seed.dir, &["add", "staged.txt"]).await;
    seed
}

/// What a worktree must not change in the main checkout: HEAD, index and files.
async fn main_checkout_state(dir: &Path) -> (String, Vec<u8>, Vec<(PathBuf, String)>) {
    let head = std::fs::read_to_string(dir.join(".git/HEAD")).unwrap();
    let index = std::fs::read(dir.join(".git/index")).unwrap();
    let status = git(dir, &["status", "--porcelain"]).await;
    let files = ["a.txt", "staged.txt", "untracked.txt"]
        .iter()
        .map(|f| {
            (
                PathBuf::from(f),
                std::fs::read_to_string(dir.join(f)).unwrap(),
            )
        })
        .collect();
    (format!("{head}{status}"), index, files)
}

#[tokio::test]
async fn a_worktree_gets_a_new_branch_at_head_and_leaves_the_main_checkout_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = busy_repo(&tmp.path().join("repo")).await;
    let head = seed.head().await;
    let before = main_checkout_state(&seed.dir).await;
    let dest = tmp.path().join("base/repo-1");

    let made = plain_git()
        .add_worktree(&seed.dir, &dest, "stn/stn_one", "stn_one")
        .await
        .unwrap();

    assert_eq!(
        made,
        SessionWorktree {
            repository: seed.dir.clone(),
            path: dest.clone(),
            branch: "stn/stn_one".into(),
        }
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("a.txt")).unwrap(),
        "one\n"
    );
    assert!(!dest.join("untracked.txt").exists() && !dest.join("staged.txt").exists());
    assert_eq!(
        git(&dest, &["rev-parse", "--abbrev-ref", "HEAD"])
            .await
            .trim(),
        "stn/stn_one"
    );
    assert_eq!(git(&dest, &["rev-parse", "HEAD"]).await.trim(), head);
    assert_eq!(git(&dest, &["status", "--porcelain"]).await, "");
    assert_eq!(main_checkout_state(&seed.dir).await, before);
}

#[tokio::test]
async fn two_worktrees_of_one_repository_can_be_made_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = busy_repo(&tmp.path().join("repo")).await;
    let git = plain_git();
    let (one, two) = (tmp.path().join("base/one"), tmp.path().join("base/two"));
    let (a, b) = tokio::join!(
        git.add_worktree(&seed.dir, &one, "stn/a", "a"),
        git.add_worktree(&seed.dir, &two, "stn/b", "b"),
    );
    assert_eq!(a.unwrap().branch, "stn/a");
    assert_eq!(b.unwrap().branch, "stn/b");
    let list = crate::support::git(&seed.dir, &["worktree", "list", "--porcelain"]).await;
    assert!(
        list.contains("refs/heads/stn/a") && list.contains("refs/heads/stn/b"),
        "{list}"
    );
}

#[tokio::test]
async fn removing_a_clean_worktree_keeps_its_branch_and_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = busy_repo(&tmp.path().join("repo")).await;
    let dest = tmp.path().join("base/wt");
    let git_ops = plain_git();
    let made = git_ops
        .add_worktree(&seed.dir, &dest, "stn/s1", "s1")
        .await
        .unwrap();
    std::fs::write(dest.join("work.txt"), "done\n").unwrap();
    std::fs::write(dest.join("build.log"), "ignored output\n").unwrap();
    let commit = git_ops.commit(&dest, "session work", true).await.unwrap();

    git_ops.remove_worktree(&made, false).await.unwrap();

    assert!(!dest.exists(), "ignored files do not keep a worktree");
    let list = git(&seed.dir, &["worktree", "list", "--porcelain"]).await;
    assert!(!list.contains("stn/s1"), "{list}");
    assert_eq!(
        git(&seed.dir, &["rev-parse", "stn/s1"]).await.trim(),
        commit.hash
    );
    // Removing again (already gone) is fine.
    git_ops.remove_worktree(&made, false).await.unwrap();
}

#[tokio::test]
async fn a_worktree_with_uncommitted_changes_is_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = busy_repo(&tmp.path().join("repo")).await;
    let git_ops = plain_git();
    for (i, change) in ["modified", "untracked", "staged"].into_iter().enumerate() {
        let dest = tmp.path().join(format!("base/wt{i}"));
        let branch = format!("stn/s{i}");
        let made = git_ops
            .add_worktree(&seed.dir, &dest, &branch, &format!("s{i}"))
            .await
            .unwrap();
        match change {
            "modified" => std::fs::write(dest.join("a.txt"), "changed\n").unwrap(),
            "untracked" => std::fs::write(dest.join("new.txt"), "new\n").unwrap(),
            _ => {
                std::fs::write(dest.join("s.txt"), "s\n").unwrap();
                git(&dest, &["add", "s.txt"]).await;
            }
        }

        let err = git_ops.remove_worktree(&made, false).await.unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Config, "{change}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(dest.to_str().unwrap())
                && text.contains(&branch)
                && text.contains("uncommitted changes"),
            "{change}: {text}"
        );
        assert!(dest.is_dir(), "{change}: the worktree is kept");
        let list = git(&seed.dir, &["worktree", "list", "--porcelain"]).await;
        assert!(list.contains(&branch), "{change}: still registered: {list}");

        git_ops.remove_worktree(&made, true).await.unwrap();
        assert!(!dest.exists(), "{change}: force removes it");
    }
}

#[tokio::test]
async fn worktree_errors_say_what_is_wrong_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let git_ops = plain_git();
    let dest = tmp.path().join("base/x");
    let add = |repo: PathBuf, branch: &'static str| {
        let (git_ops, dest) = (git_ops.clone(), dest.clone());
        async move {
            git_ops
                .add_worktree(&repo, &dest, branch, "x")
                .await
                .unwrap_err()
                .to_string()
        }
    };

    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let e = add(plain.clone(), "stn/x").await;
    assert!(
        e.contains("is not a git repository's top directory") && e.contains("git init"),
        "{e}"
    );

    let seed = busy_repo(&tmp.path().join("repo")).await;
    std::fs::create_dir_all(seed.dir.join("sub")).unwrap();
    let e = add(seed.dir.join("sub"), "stn/x").await;
    assert!(
        e.contains(&format!("inside the repository at {}", seed.dir.display())),
        "{e}"
    );

    git(&seed.dir, &["branch", "stn/taken"]).await;
    let e = add(seed.dir.clone(), "stn/taken").await;
    assert!(
        e.contains("branch `stn/taken` already exists") && e.contains("git branch -D"),
        "{e}"
    );

    std::fs::create_dir_all(&dest).unwrap();
    let e = add(seed.dir.clone(), "stn/x").await;
    assert!(e.contains("already exists"), "{e}");
    std::fs::remove_dir(&dest).unwrap();

    let detached = Seed::new(tmp.path().join("detached")).await;
    detached.write("f", "1\n");
    detached.commit("one").await;
    git(&detached.dir, &["checkout", "--quiet", "--detach"]).await;
    let e = add(detached.dir.clone(), "stn/x").await;
    assert!(e.contains("HEAD of") && e.contains("is detached"), "{e}");

    let unborn = Seed::new(tmp.path().join("unborn")).await;
    let e = add(unborn.dir.clone(), "stn/x").await;
    assert!(e.contains("has no commits yet"), "{e}");

    for repo in [&seed.dir, &detached.dir, &unborn.dir] {
        let branches = git(repo, &["branch", "--list", "stn/x"]).await;
        assert_eq!(
            branches,
            "",
            "no branch is left behind in {}",
            repo.display()
        );
    }
    assert!(!dest.exists());
}
