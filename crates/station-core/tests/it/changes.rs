//! Change tracking with git objects: exact files changed, the patch per task, rewind; each on a
//! git repository and on a plain directory.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use station_core::process::CommandSpec;
use station_core::workspace::{Checkpoints, TaskChanges, Tracker};
use station_core::{FileAction, FileChange, SessionId};

const GIT_DEADLINE: Duration = Duration::from_secs(60);

async fn git(dir: &Path, args: &[&str]) -> String {
    CommandSpec::new("git", dir)
        .args([
            "-c",
            "user.name=Station Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output(GIT_DEADLINE, None)
        .await
        .unwrap_or_else(|e| panic!("git {args:?} in {}: {e}", dir.display()))
}

/// Each file (not `.git`): its mode and bytes (a symlink: its target).
fn state(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(
                    rel,
                    (0o120000, target.into_os_string().into_encoded_bytes()),
                );
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    rel,
                    (
                        meta.permissions().mode() & 0o111,
                        std::fs::read(&path).unwrap(),
                    ),
                );
            }
        }
    }
    out
}

fn is_ignored(path: &str) -> bool {
    path.starts_with("build/") || path.ends_with(".log") || path.starts_with("local-only/")
}

fn tracked_state(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    state(root)
        .into_iter()
        .filter(|(p, _)| !is_ignored(p))
        .collect()
}

fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn binary(fill: u8) -> Vec<u8> {
    let mut b = vec![0u8, 1, 2, 3];
    b.extend(std::iter::repeat_n(fill, 4096));
    b
}

/// What the user's repository looks like to git: index bytes, HEAD, refs, stash, config.
async fn repo_state(ws: &Path) -> (Vec<u8>, String, String, String, Vec<u8>) {
    (
        std::fs::read(ws.join(".git/index")).unwrap(),
        std::fs::read_to_string(ws.join(".git/HEAD")).unwrap(),
        git(ws, &["for-each-ref"]).await,
        git(ws, &["stash", "list"]).await,
        std::fs::read(ws.join(".git/config")).unwrap(),
    )
}

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    ws: PathBuf,
    checkpoints: Checkpoints,
    session: SessionId,
    git: bool,
}

impl Fixture {
    /// A workspace with text, binary, executable-to-be, symlink, ignored and excluded files;
    /// with `git`, a repository with a commit, a staged change and a stash.
    async fn new(git_repo: bool) -> Fixture {
        let (ws_dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ws = ws_dir.path().canonicalize().unwrap();
        write(&ws, "keep.txt", "same\n");
        write(&ws, "edit.py", "a\nb\nc\n");
        write(&ws, "gone.txt", "1\n2\n");
        let long: String = (0..40)
            .map(|i| format!("line {i} of a file that moves\n"))
            .collect();
        write(&ws, "docs/old_name.md", &long);
        write(&ws, "logo.png", binary(7));
        write(&ws, "run.sh", "#!/bin/sh\necho hi\n");
        std::os::unix::fs::symlink("keep.txt", ws.join("link")).unwrap();
        write(&ws, ".gitignore", "build/\n*.log\n");
        write(&ws, "build/out.o", binary(1));
        write(&ws, "debug.log", "old log\n");
        if git_repo {
            git(&ws, &["init", "-q"]).await;
            write(&ws, ".git/info/exclude", "local-only/\n");
            write(&ws, "local-only/secret-notes.txt", "mine\n");
            git(&ws, &["add", "-A"]).await;
            git(&ws, &["commit", "-q", "-m", "start"]).await;
            write(&ws, "stashed.txt", "stash me\n");
            git(&ws, &["add", "stashed.txt"]).await;
            git(&ws, &["stash", "-q"]).await;
            write(&ws, "keep.txt", "same\nstaged\n");
            git(&ws, &["add", "keep.txt"]).await;
            write(&ws, "untracked.txt", "not added\n");
        }
        Fixture {
            ws,
            checkpoints: Checkpoints::new(data.path()),
            _dirs: (ws_dir, data),
            session: SessionId::from("stn_changes_test"),
            git: git_repo,
        }
    }

    async fn start(&self) -> Tracker {
        Tracker::start_checkpoint(&self.checkpoints, &self.session, &self.ws).await
    }

    /// What an agent might do: every kind of change, and some to ignored files.
    fn work(&self) {
        let ws = &self.ws;
        write(ws, "edit.py", "a\nB\nc\nd\n");
        std::fs::remove_file(ws.join("gone.txt")).unwrap();
        let moved = std::fs::read_to_string(ws.join("docs/old_name.md")).unwrap();
        std::fs::remove_file(ws.join("docs/old_name.md")).unwrap();
        write(ws, "docs/new_name.md", moved + "one more line\n");
        write(ws, "logo.png", binary(8));
        std::fs::set_permissions(ws.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::remove_file(ws.join("link")).unwrap();
        std::os::unix::fs::symlink("edit.py", ws.join("link")).unwrap();
        write(ws, "src/hello.py", "print('Hello World')");
        write(ws, "debug.log", "new log\n");
        write(ws, "build/new.o", binary(2));
        if self.git {
            write(ws, "local-only/secret-notes.txt", "changed\n");
        }
    }
}

async fn finish(tracker: Tracker) -> TaskChanges {
    tracker
        .finish_with_patch()
        .await
        .expect("the workspace was recorded")
}

fn change(path: &str, action: FileAction, added: u64, removed: u64) -> FileChange {
    FileChange {
        path: path.into(),
        action,
        lines_added: added,
        lines_removed: removed,
        ..FileChange::default()
    }
}

async fn every_kind_of_change_is_reported_exactly(git_repo: bool) {
    let fx = Fixture::new(git_repo).await;
    let tracker = fx.start().await;
    fx.work();
    let changes = finish(tracker).await;
    let expected = vec![
        FileChange {
            from: Some("docs/old_name.md".into()),
            ..change("docs/new_name.md", FileAction::Renamed, 1, 0)
        },
        change("edit.py", FileAction::Modified, 2, 1),
        change("gone.txt", FileAction::Deleted, 0, 2),
        FileChange {
            new_mode: Some("120000".into()),
            ..change("link", FileAction::Modified, 1, 1)
        },
        FileChange {
            binary: true,
            ..change("logo.png", FileAction::Modified, 0, 0)
        },
        FileChange {
            old_mode: Some("100644".into()),
            new_mode: Some("100755".into()),
            ..change("run.sh", FileAction::Modified, 0, 0)
        },
        change("src/hello.py", FileAction::Created, 1, 0),
    ];
    assert_eq!(changes.files, expected, "git repo: {git_repo}");
    assert_eq!(changes.patch.task, Some(1));
    assert!(!changes.patch.truncated);
}

#[tokio::test]
async fn every_kind_of_change_is_reported_exactly_in_a_git_repo() {
    every_kind_of_change_is_reported_exactly(true).await;
}

#[tokio::test]
async fn every_kind_of_change_is_reported_exactly_in_a_plain_dir() {
    every_kind_of_change_is_reported_exactly(false).await;
}

/// The stored patch, applied with the real `git apply` to a copy of the before-state, gives
/// the after-state byte for byte; rewind gives the before-state back byte for byte and leaves
/// ignored files alone; the user's index, HEAD, refs, stash and config never change.
async fn patch_applies_and_rewind_restores(git_repo: bool) {
    let fx = Fixture::new(git_repo).await;
    let repo_before = if git_repo {
        Some(repo_state(&fx.ws).await)
    } else {
        None
    };
    let before = tracked_state(&fx.ws);
    let copy = tempfile::tempdir().unwrap();
    for (rel, (mode, bytes)) in &before {
        if *mode == 0o120000 {
            let target = std::ffi::OsStr::from_bytes(bytes);
            std::os::unix::fs::symlink(target, copy.path().join(rel)).unwrap();
        } else {
            write(copy.path(), rel, bytes);
            let bits = if *mode != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(copy.path().join(rel), std::fs::Permissions::from_mode(bits))
                .unwrap();
        }
    }

    let tracker = fx.start().await;
    fx.work();
    let changes = finish(tracker).await;
    let after = tracked_state(&fx.ws);
    let patch_path = changes.patch.path.clone().expect("the patch is stored");
    assert_eq!(
        std::fs::read(&patch_path).unwrap().len() as u64,
        changes.patch.bytes
    );
    assert_eq!(changes.patch.text.len() as u64, changes.patch.bytes);
    git(
        copy.path(),
        &["apply", "--binary", patch_path.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        state(copy.path()),
        after,
        "git apply reproduces the after-state"
    );

    let ignored_after: Vec<_> = state(&fx.ws)
        .into_iter()
        .filter(|(p, _)| is_ignored(p))
        .collect();
    let rewound = fx.checkpoints.rewind(&fx.session, None, false).unwrap();
    assert_eq!(rewound.to_task, 1);
    assert_eq!(
        tracked_state(&fx.ws),
        before,
        "rewind restores the before-state"
    );
    let ignored_now: Vec<_> = state(&fx.ws)
        .into_iter()
        .filter(|(p, _)| is_ignored(p))
        .collect();
    assert_eq!(ignored_now, ignored_after, "ignored files are not touched");
    if let Some(repo_before) = repo_before {
        assert_eq!(
            repo_state(&fx.ws).await,
            repo_before,
            "the user's repository is untouched"
        );
    }
}

#[tokio::test]
async fn patch_applies_and_rewind_restores_in_a_git_repo() {
    patch_applies_and_rewind_restores(true).await;
}

#[tokio::test]
async fn patch_applies_and_rewind_restores_in_a_plain_dir() {
    patch_applies_and_rewind_restores(false).await;
}

async fn rewind_refuses_after_later_edits_unless_forced(git_repo: bool) {
    let fx = Fixture::new(git_repo).await;
    let before_first = tracked_state(&fx.ws);
    let tracker = fx.start().await;
    write(&fx.ws, "edit.py", "task one\n");
    finish(tracker).await;
    let tracker = fx.start().await;
    write(&fx.ws, "second.txt", "task two\n");
    let second = finish(tracker).await;
    assert_eq!(
        second.files,
        vec![change("second.txt", FileAction::Created, 1, 0)]
    );

    write(&fx.ws, "edit.py", "the user's own edit\n");
    let refused = fx
        .checkpoints
        .rewind(&fx.session, Some(1), false)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("changed since task 2")
            && refused.contains("edit.py")
            && refused.contains("--force"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_to_string(fx.ws.join("edit.py")).unwrap(),
        "the user's own edit\n"
    );
    let missing = fx
        .checkpoints
        .rewind(&fx.session, Some(9), true)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("no recorded task 9") && missing.contains("1, 2"),
        "{missing}"
    );

    let rewound = fx.checkpoints.rewind(&fx.session, Some(1), true).unwrap();
    assert_eq!(rewound.to_task, 1);
    assert_eq!(tracked_state(&fx.ws), before_first);
}

#[tokio::test]
async fn rewind_refuses_after_later_edits_unless_forced_in_a_git_repo() {
    rewind_refuses_after_later_edits_unless_forced(true).await;
}

#[tokio::test]
async fn rewind_refuses_after_later_edits_unless_forced_in_a_plain_dir() {
    rewind_refuses_after_later_edits_unless_forced(false).await;
}

/// About 20,000 files, one edited: exactly one change (the old snapshot stopped at a budget
/// and compared the rest by metadata, which made phantom changes).
async fn no_phantom_changes_on_a_large_workspace(git_repo: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ws = dir.path();
    for d in 0..200 {
        for f in 0..100 {
            write(
                ws,
                &format!("pkg{d}/mod{f}.rs"),
                format!("// {d}/{f}\nfn f() {{}}\n"),
            );
        }
    }
    write(ws, "node_modules/dep/index.js", "module.exports = 1;\n");
    // Past the old tracker's 1 MiB text limit it compared by size and mtime; a directory named
    // `target` was skipped by name even when no ignore rule says so.
    let big: Vec<u8> = (0..2 * 1024 * 1024).map(|i| b"abcdefgh\n"[i % 9]).collect();
    write(ws, "assets/big.txt", &big);
    write(ws, "tools/target/config.rs", "fn a() {}\n");
    if git_repo {
        git(ws, &["init", "-q"]).await;
        git(ws, &["add", "-A"]).await;
        git(ws, &["commit", "-q", "-m", "big"]).await;
    }
    let checkpoints = Checkpoints::new(data.path());
    let session = SessionId::from("stn_big");
    let tracker = Tracker::start_checkpoint(&checkpoints, &session, ws).await;
    write(ws, "pkg150/mod7.rs", "// edited\n");
    // Rewritten with the same bytes (new mtime): not a change.
    for rel in ["assets/big.txt", "pkg3/mod3.rs"] {
        let bytes = std::fs::read(ws.join(rel)).unwrap();
        write(ws, rel, &bytes);
        let later = std::time::SystemTime::now() + Duration::from_secs(10);
        let file = std::fs::File::options()
            .write(true)
            .open(ws.join(rel))
            .unwrap();
        file.set_modified(later).unwrap();
    }
    write(ws, "tools/target/config.rs", "fn b() {}\n");
    let changes = finish(tracker).await;
    assert_eq!(
        changes.files,
        vec![
            change("pkg150/mod7.rs", FileAction::Modified, 1, 2),
            change("tools/target/config.rs", FileAction::Modified, 1, 1),
        ]
    );
    // A second task that changes nothing reports nothing.
    let tracker = Tracker::start_checkpoint(&checkpoints, &session, ws).await;
    assert_eq!(finish(tracker).await.files, vec![]);
}

#[tokio::test]
async fn no_phantom_changes_on_a_large_workspace_in_a_git_repo() {
    no_phantom_changes_on_a_large_workspace(true).await;
}

#[tokio::test]
async fn no_phantom_changes_on_a_large_workspace_in_a_plain_dir() {
    no_phantom_changes_on_a_large_workspace(false).await;
}
