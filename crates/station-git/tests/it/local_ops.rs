use std::path::Path;

use station_core::{Error, ErrorKind, FileAction, FileChange};
use station_git::{DEFAULT_IDENTITY_EMAIL, DEFAULT_IDENTITY_NAME, Git, GitCredentials};

use crate::support::{Seed, git};

fn plain_git() -> Git {
    Git::new(GitCredentials::new(None))
}

fn change(path: &str, action: FileAction, lines_added: u64, lines_removed: u64) -> FileChange {
    FileChange {
        path: path.into(),
        action,
        lines_added,
        lines_removed,
        ..Default::default()
    }
}

/// A work tree on `main` with `keep.txt` (3 lines), `edit.txt` (4 lines) and `gone.txt` (2 lines).
async fn workspace(dir: &Path) -> Seed {
    let seed = Seed::new(dir.to_path_buf()).await;
    seed.write("keep.txt", "a\nb\nc\n")
        .write("edit.txt", "one\ntwo\nthree\nfour\n")
        .write("gone.txt", "x\ny\n");
    seed.write(".gitignore", "*.log\n");
    seed.commit("base").await;
    seed
}

#[tokio::test]
async fn status_counts_lines_for_created_modified_and_deleted_files() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    seed.write("edit.txt", "one\nTWO\nthree\nfour\nfive\n"); // 1 line changed, 1 added
    std::fs::remove_file(seed.dir.join("gone.txt")).unwrap();
    seed.write("new/deep/file.rs", "fn main() {}\n// end\n");
    seed.write("staged.txt", "s1\ns2\ns3\n");
    seed.write("debug.log", "ignored\n");
    git(&seed.dir, &["add", "staged.txt"]).await;

    let status = plain_git().status(&seed.dir).await.unwrap();

    assert_eq!(
        status,
        vec![
            change("edit.txt", FileAction::Modified, 2, 1),
            change("gone.txt", FileAction::Deleted, 0, 2),
            change("new/deep/file.rs", FileAction::Created, 2, 0),
            change("staged.txt", FileAction::Created, 3, 0),
        ]
    );
}

#[tokio::test]
async fn status_of_a_clean_or_brand_new_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(&tmp.path().join("clean")).await;
    assert_eq!(plain_git().status(&seed.dir).await.unwrap(), Vec::new());

    let fresh = Seed::new(tmp.path().join("fresh")).await;
    fresh.write("first.txt", "1\n2\n");
    assert_eq!(
        plain_git().status(&fresh.dir).await.unwrap(),
        vec![change("first.txt", FileAction::Created, 2, 0)]
    );
}

#[tokio::test]
async fn commit_stages_everything_and_reports_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    seed.write("edit.txt", "one\nTWO\nthree\nfour\nfive\n");
    std::fs::remove_file(seed.dir.join("gone.txt")).unwrap();
    seed.write("new.txt", "n1\nn2\n");
    seed.write("debug.log", "ignored\n");
    let git_ = plain_git().with_identity("Agent", "agent@example.com");

    let commit = git_
        .commit(&seed.dir, "  Do the work  \n\n", true)
        .await
        .unwrap();

    assert_eq!(
        (commit.files_changed, commit.insertions, commit.deletions),
        (3, 4, 3)
    );
    assert_eq!(commit.hash, seed.head().await);
    let shortstat = git(
        &seed.dir,
        &["show", "--shortstat", "--format=%an <%ae>|%s", "HEAD"],
    )
    .await;
    assert!(
        shortstat.starts_with("Agent <agent@example.com>|Do the work\n"),
        "{shortstat}"
    );
    assert!(
        shortstat.contains("3 files changed, 4 insertions(+), 3 deletions(-)"),
        "git agrees: {shortstat}"
    );
    assert_eq!(
        plain_git().status(&seed.dir).await.unwrap(),
        Vec::new(),
        "only the ignored file is left"
    );
    let tracked = git(&seed.dir, &["ls-files"]).await;
    assert!(
        !tracked.contains("debug.log") && !tracked.contains("gone.txt"),
        "{tracked}"
    );
}

#[tokio::test]
async fn commit_without_add_all_takes_only_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    seed.write("staged.txt", "s\n").write("unstaged.txt", "u\n");
    git(&seed.dir, &["add", "staged.txt"]).await;

    let commit = plain_git()
        .commit(&seed.dir, "only staged", false)
        .await
        .unwrap();

    assert_eq!(commit.files_changed, 1);
    let status = plain_git().status(&seed.dir).await.unwrap();
    assert_eq!(
        status,
        vec![change("unstaged.txt", FileAction::Created, 1, 0)]
    );
}

#[tokio::test]
async fn nothing_to_commit_and_empty_messages_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    let err = plain_git()
        .commit(&seed.dir, "no changes", true)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("nothing to commit"), "{err}");

    seed.write("x.txt", "x\n");
    let err = plain_git()
        .commit(&seed.dir, " \n ", true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("commit message is empty"), "{err}");
}

#[tokio::test]
async fn identity_comes_from_config_then_the_repository_then_a_default() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    git(&seed.dir, &["config", "user.name", "Repo Person"]).await;
    git(&seed.dir, &["config", "user.email", "repo@example.com"]).await;

    seed.write("1.txt", "1\n");
    plain_git()
        .commit(&seed.dir, "from repo config", true)
        .await
        .unwrap();
    assert_eq!(
        git(&seed.dir, &["log", "-1", "--format=%an <%ae>"])
            .await
            .trim(),
        "Repo Person <repo@example.com>"
    );

    seed.write("2.txt", "2\n");
    plain_git()
        .with_identity("Configured", "configured@example.com")
        .commit(&seed.dir, "from station config", true)
        .await
        .unwrap();
    assert_eq!(
        git(&seed.dir, &["log", "-1", "--format=%an <%ae>"])
            .await
            .trim(),
        "Configured <configured@example.com>"
    );

    // Only the name configured: the email still comes from the repository.
    let mut coding = station_core::config::CodingConfig::default();
    coding.git.user_name = Some("Half Configured".into());
    seed.write("3.txt", "3\n");
    Git::from_config(&coding, None)
        .commit(&seed.dir, "mixed", true)
        .await
        .unwrap();
    assert_eq!(
        git(&seed.dir, &["log", "-1", "--format=%an <%ae>"])
            .await
            .trim(),
        "Half Configured <repo@example.com>"
    );

    assert_eq!(
        (DEFAULT_IDENTITY_NAME, DEFAULT_IDENTITY_EMAIL),
        ("Station Bot", "station@localhost")
    );
}

#[tokio::test]
async fn branch_create_and_switch_report_the_previous_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    let g = plain_git();

    let created = g.branch(&seed.dir, "feature/x", true).await.unwrap();
    assert_eq!(
        (
            created.branch.as_str(),
            created.created,
            created.previous_branch.as_deref()
        ),
        ("feature/x", true, Some("main"))
    );
    assert_eq!(
        git(&seed.dir, &["branch", "--show-current"]).await.trim(),
        "feature/x"
    );

    seed.write("only-on-x.txt", "x\n");
    g.commit(&seed.dir, "on x", true).await.unwrap();

    let back = g.branch(&seed.dir, "main", false).await.unwrap();
    assert_eq!(
        (back.created, back.previous_branch.as_deref()),
        (false, Some("feature/x"))
    );
    assert!(
        !seed.dir.join("only-on-x.txt").exists(),
        "the work tree follows the branch"
    );

    // `create` on an existing branch switches to it.
    let again = g.branch(&seed.dir, "feature/x", true).await.unwrap();
    assert_eq!(
        (again.created, again.previous_branch.as_deref()),
        (false, Some("main"))
    );
    assert!(seed.dir.join("only-on-x.txt").exists());

    let same = g.branch(&seed.dir, "feature/x", false).await.unwrap();
    assert_eq!(
        (same.created, same.previous_branch.as_deref()),
        (false, Some("feature/x"))
    );
}

#[tokio::test]
async fn branch_errors_are_typed_and_local_changes_are_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    let g = plain_git();

    let err = g.branch(&seed.dir, "missing", false).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "branch", id } if id == "missing"),
        "{err:?}"
    );
    let err = g.branch(&seed.dir, "bad..name", true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err:?}");

    // Uncommitted work is carried to a new branch...
    seed.write("edit.txt", "changed\n");
    g.branch(&seed.dir, "wip", true).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(seed.dir.join("edit.txt")).unwrap(),
        "changed\n"
    );
    g.commit(&seed.dir, "wip", true).await.unwrap();
    // ...and never overwritten by a switch.
    seed.write("edit.txt", "changed again\n");
    let err = g.branch(&seed.dir, "main", false).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("local changes would be overwritten"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(seed.dir.join("edit.txt")).unwrap(),
        "changed again\n"
    );
    assert_eq!(
        git(&seed.dir, &["branch", "--show-current"]).await.trim(),
        "wip"
    );
}

#[tokio::test]
async fn a_branch_before_the_first_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = Seed::new(tmp.path().join("fresh")).await;
    let g = plain_git().with_identity("A", "a@example.com");

    let created = g.branch(&fresh.dir, "trunk", true).await.unwrap();
    assert_eq!(
        (created.created, created.previous_branch.as_deref()),
        (true, Some("main"))
    );
    fresh.write("f.txt", "f\n");
    let commit = g.commit(&fresh.dir, "first", true).await.unwrap();
    assert_eq!(
        (
            commit.branch.as_deref(),
            commit.files_changed,
            commit.insertions
        ),
        (Some("trunk"), 1, 1)
    );
}

#[tokio::test]
async fn only_the_workspace_itself_is_used_as_a_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = workspace(tmp.path()).await;
    let inner = seed.dir.join("sub");
    std::fs::create_dir(&inner).unwrap();

    let err = plain_git().status(&inner).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "git repository",
                ..
            }
        ),
        "{err:?}"
    );
    let err = plain_git()
        .commit(&tmp.path().join("missing"), "m", true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "directory",
                ..
            }
        ),
        "{err:?}"
    );
}
