//! The tracker's reports (ported from the snapshot tracker it replaces, same expectations).

use std::fs;

use super::*;
use crate::model::FileAction;

fn change(path: &str, action: FileAction, added: u64, removed: u64) -> FileChange {
    FileChange {
        path: path.into(),
        action,
        lines_added: added,
        lines_removed: removed,
        ..FileChange::default()
    }
}

#[tokio::test]
async fn created_modified_deleted_with_line_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("keep.txt"), "same\n").unwrap();
    fs::write(root.join("edit.py"), "a\nb\nc\n").unwrap();
    fs::write(root.join("gone.txt"), "1\n2\n").unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(root.join(".git/HEAD"), "ref").unwrap();
    let tracker = Tracker::start(root).await;
    fs::write(root.join("edit.py"), "a\nB\nc\nd\n").unwrap();
    fs::remove_file(root.join("gone.txt")).unwrap();
    fs::create_dir_all(root.join("src")).unwrap();
    fs::write(root.join("src/hello.py"), "print('Hello World')").unwrap();
    fs::write(root.join(".git/HEAD"), "changed").unwrap();
    assert_eq!(
        tracker.finish().await,
        vec![
            change("edit.py", FileAction::Modified, 2, 1),
            change("gone.txt", FileAction::Deleted, 0, 2),
            change("src/hello.py", FileAction::Created, 1, 0),
        ]
    );
}

#[tokio::test]
async fn binary_files_are_compared_by_digest_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let image = |fill: u8| {
        let mut b = vec![0u8, 1, 2, 3];
        b.extend(std::iter::repeat_n(fill, 4096));
        b
    };
    fs::write(root.join("logo.png"), image(7)).unwrap();
    fs::write(root.join("same.bin"), image(9)).unwrap();
    let tracker = Tracker::start(root).await;
    // Same length, different bytes: found even if the mtime did not move.
    let mtime = fs::metadata(root.join("logo.png"))
        .unwrap()
        .modified()
        .unwrap();
    fs::write(root.join("logo.png"), image(8)).unwrap();
    fs::File::options()
        .write(true)
        .open(root.join("logo.png"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        tracker.finish().await,
        vec![FileChange {
            binary: true,
            ..change("logo.png", FileAction::Modified, 0, 0)
        }]
    );
}

#[tokio::test]
async fn missing_directory_is_empty_and_then_everything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("later");
    let tracker = Tracker::start(&ws).await;
    fs::create_dir_all(&ws).unwrap();
    fs::write(ws.join("x"), "1\n2\n3\n").unwrap();
    assert_eq!(
        tracker.finish().await,
        vec![change("x", FileAction::Created, 3, 0)]
    );
}

#[tokio::test]
async fn counting_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tracker = Tracker::start(root).await;
    for (name, text) in [("empty", ""), ("a", "a"), ("a_nl", "a\n"), ("ab", "a\nb")] {
        fs::write(root.join(name), text).unwrap();
    }
    let counts: Vec<(String, u64)> = tracker
        .finish()
        .await
        .into_iter()
        .map(|c| (c.path, c.lines_added))
        .collect();
    assert_eq!(
        counts,
        [("a", 1), ("a_nl", 1), ("ab", 2), ("empty", 0)].map(|(p, n)| (p.to_string(), n))
    );
}

#[tokio::test]
async fn throwaway_store_is_removed_after_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = Tracker::start(dir.path()).await;
    let store = tracker.begun.as_ref().unwrap().git_dir.clone();
    assert!(store.is_dir());
    let changes = tracker.finish_with_patch().await.unwrap();
    assert!(!store.exists(), "{}", store.display());
    assert_eq!((changes.patch.path, changes.patch.task), (None, None));
}

#[tokio::test]
async fn a_nested_repository_does_not_stop_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("vendor/lib/.git/objects")).unwrap();
    fs::write(root.join("vendor/lib/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
    fs::write(root.join("vendor/lib/a.txt"), "a\n").unwrap();
    fs::write(root.join("top.txt"), "1\n").unwrap();
    let tracker = Tracker::start(root).await;
    fs::write(root.join("top.txt"), "2\n").unwrap();
    fs::write(root.join("vendor/lib/.git/HEAD"), "ref: refs/heads/other\n").unwrap();
    let changes = tracker.finish().await;
    assert_eq!(
        changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(),
        ["top.txt"],
        "{changes:#?}"
    );
}

async fn git(dir: &std::path::Path, args: &[&str]) -> String {
    crate::process::CommandSpec::new("git", dir)
        .args(["-c", "core.autocrlf=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output(std::time::Duration::from_secs(60), None)
        .await
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"))
}

fn write(root: &std::path::Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The recorded tree is exactly the one `git add -A && git write-tree` writes: the same
/// ignore rules (nested `.gitignore`, negation, anchoring, `info/exclude`), entry order,
/// modes, symlinks, empty and ignored directories left out.
#[tokio::test]
async fn the_tree_is_the_one_git_add_all_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    fs::create_dir_all(&ws).unwrap();
    git(&ws, &["init", "-q"]).await;
    for (rel, text) in [
        (
            ".gitignore",
            "*.log\n!keep.log\n/build/\nsub/ignored-dir/\n",
        ),
        ("a-b", "1\n"),
        ("a.b", "2\n"),
        ("a/b", "3\n"),
        ("a0", "4\n"),
        ("B.txt", "upper\n"),
        ("keep.log", "kept\n"),
        ("other.log", "ignored\n"),
        ("build/out.o", "ignored\n"),
        ("sub/.gitignore", "*.tmp\n!important.tmp\n/anchored.txt\n"),
        ("sub/x.tmp", "ignored\n"),
        ("sub/important.tmp", "kept\n"),
        ("sub/anchored.txt", "ignored\n"),
        ("sub/deeper/anchored.txt", "kept\n"),
        ("sub/build/out.o", "kept: /build/ is anchored at the root\n"),
        ("sub/ignored-dir/x", "ignored\n"),
        ("only-ignored/x.log", "ignored\n"),
        ("excluded.txt", "ignored by info/exclude\n"),
        ("space name.txt", "s\n"),
        ("é.txt", "unicode\n"),
        ("run.sh", "#!/bin/sh\n"),
    ] {
        write(&ws, rel, text);
    }
    write(&ws, ".git/info/exclude", "excluded.txt\n");
    fs::create_dir_all(ws.join("empty/inner")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(ws.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a.b", ws.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("sub", ws.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("nowhere", ws.join("dangling")).unwrap();
    git(&ws, &["add", "-A"]).await;
    let expected = git(&ws, &["write-tree"]).await;
    let store = ShadowStore::open(&dir.path().join("store.git"), &ws).unwrap();
    let recorded = store.snapshot().unwrap();
    assert_eq!(recorded.to_string(), expected.trim());
    // Nothing changed: the same tree, this time from the scan cache.
    assert_eq!(store.snapshot().unwrap(), recorded);

    // A linked worktree (`stn code --isolation worktree`): `.git` is a file, and
    // `info/exclude` is the main repository's.
    git(
        &ws,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-qm",
            "all",
        ],
    )
    .await;
    let linked = dir.path().join("linked");
    git(&ws, &["worktree", "add", "-q", linked.to_str().unwrap()]).await;
    write(
        &linked,
        "excluded.txt",
        "ignored by the main repository's info/exclude\n",
    );
    write(&linked, "new.txt", "new\n");
    git(&linked, &["add", "-A"]).await;
    let expected = git(&linked, &["write-tree"]).await;
    let store = ShadowStore::open(&dir.path().join("linked.git"), &linked).unwrap();
    assert_eq!(store.snapshot().unwrap().to_string(), expected.trim());
}

/// Entries of the root directory in the scan cache.
fn cached_root(store: &std::path::Path) -> scan_cache::Block {
    scan_cache::CacheReader::open(&store.join("scan-cache"))
        .unwrap()
        .block(b"")
        .unwrap()
}

/// Rewrite the root block of the scan cache, giving `a.txt` the id `oid`.
fn tamper(store: &std::path::Path, oid: git2::Oid, verified: bool) {
    let mut block = cached_root(store);
    let entry = block
        .entries
        .iter_mut()
        .find(|e| e.name == b"a.txt")
        .unwrap();
    entry.oid.copy_from_slice(oid.as_bytes());
    let (stat, _) = entry.stat.unwrap();
    entry.stat = Some((stat, verified));
    // Keep the block whole: its tree is the one of its entries.
    let tree = git2::Oid::hash_object(git2::ObjectType::Tree, &scan::tree_bytes(&block.entries));
    block.tree.copy_from_slice(tree.unwrap().as_bytes());
    let mut writer = scan_cache::CacheWriter::create(&store.join("scan-cache")).unwrap();
    writer.add(b"", &block).unwrap();
    writer.finish().unwrap();
}

/// A file hashed right after it was written may change again without its stat data
/// changing (coarse timestamps); it is read again by the next scan. A file whose stat data
/// was old enough when hashed is trusted: unchanged stat data, not read again.
#[tokio::test]
async fn fresh_files_are_read_again_and_verified_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, store_dir) = (dir.path().join("ws"), dir.path().join("store.git"));
    write(&ws, "a.txt", "real\n");
    let store = ShadowStore::open(&store_dir, &ws).unwrap();
    let first = store.snapshot().unwrap();
    let entry = |b: &scan_cache::Block| b.entries.iter().find(|e| e.name == b"a.txt").cloned();
    let recorded = entry(&cached_root(&store_dir)).unwrap();
    assert_eq!(recorded.stat.map(|(_, verified)| verified), Some(false));
    let wrong = git2::Oid::hash_object(git2::ObjectType::Blob, b"not what is on disk\n").unwrap();
    // Unverified: the wrong id in the cache is not believed.
    tamper(&store_dir, wrong, false);
    assert_eq!(store.snapshot().unwrap(), first);
    // Verified with the same stat data: believed, so the file was not read.
    tamper(&store_dir, wrong, true);
    assert_ne!(store.snapshot().unwrap(), first);
    // Any change to the stat data: read again.
    write(&ws, "a.txt", "real\n");
    assert_eq!(store.snapshot().unwrap(), first);
}

#[tokio::test]
async fn special_files_are_left_out_and_do_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    write(&ws, "a.txt", "a\n");
    nix::unistd::mkfifo(&ws.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let store = ShadowStore::open(&dir.path().join("store.git"), &ws).unwrap();
    let tree = store.snapshot().unwrap();
    let names: Vec<String> = store
        .repo()
        .find_tree(tree)
        .unwrap()
        .iter()
        .map(|e| e.name().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a.txt"]);
}

/// As deep as a path may go: each directory is a level of the scan's recursion.
#[tokio::test]
async fn a_very_deep_workspace_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let depth = (4000 - ws.as_os_str().len()) / 2;
    let deep: std::path::PathBuf = std::iter::repeat_n("d", depth).collect();
    write(&ws, &deep.join("f").to_string_lossy(), "bottom\n");
    let tracker = Tracker::start(&ws).await;
    write(&ws, &deep.join("f").to_string_lossy(), "changed\n");
    let changes = tracker.finish().await;
    assert_eq!(changes.len(), 1, "{depth} levels: {changes:?}");
    assert_eq!(changes[0].action, FileAction::Modified);
}
