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
