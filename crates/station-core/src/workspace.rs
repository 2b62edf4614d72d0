//! File-change detection for a local workspace: capture a snapshot before a task and diff it
//! with one taken after. Works in any directory, git repository or not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::{FileAction, FileChange};

/// Files larger than this are compared by size and mtime only (line counts are not computed).
const MAX_TEXT_BYTES: u64 = 1024 * 1024;
/// A snapshot keeps at most this many bytes of contents (it is held for the whole task, once
/// per concurrent task); later files are compared by metadata only.
const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// A file with a NUL byte in its first bytes is binary: compared by size and mtime, its contents
/// not kept (line counts mean nothing there).
const BINARY_SNIFF_BYTES: usize = 8 * 1024;
/// A snapshot looks at no more than this many files.
const MAX_FILES: usize = 50_000;
/// Directories never descended into.
const SKIPPED_DIRS: &[&str] = &[".git", "node_modules", "target", ".venv", "__pycache__"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    /// Text (or bytes) kept for line diffs.
    Bytes(Vec<u8>),
    /// Binary: its length and a hash of its bytes (contents are not kept).
    Digest { len: u64, hash: u64 },
    /// Too large to keep: size and modification time.
    Meta {
        len: u64,
        modified: Option<std::time::SystemTime>,
    },
}

/// The files of a directory at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    root: PathBuf,
    files: BTreeMap<String, Content>,
    truncated: bool,
}

impl Snapshot {
    /// Read `root` (blocking; call from `spawn_blocking` in async code). A missing directory
    /// is an empty snapshot.
    pub fn capture(root: &Path) -> Result<Snapshot> {
        let mut snap = Snapshot {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            truncated: false,
        };
        if !root.is_dir() {
            return Ok(snap);
        }
        let mut budget = MAX_TOTAL_BYTES;
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() {
                    if !SKIPPED_DIRS.contains(&entry.file_name().to_string_lossy().as_ref()) {
                        stack.push(path);
                    }
                    continue;
                }
                if !ft.is_file() {
                    continue;
                }
                if snap.files.len() >= MAX_FILES {
                    snap.truncated = true;
                    return Ok(snap);
                }
                let Ok(rel) = path.strip_prefix(root) else {
                    continue;
                };
                let rel = rel.to_string_lossy().replace('\\', "/");
                let Ok(meta) = entry.metadata() else { continue };
                let content = if meta.len() <= MAX_TEXT_BYTES && meta.len() <= budget {
                    match std::fs::read(&path) {
                        Ok(bytes) if is_binary(&bytes) => Content::Digest {
                            len: bytes.len() as u64,
                            hash: digest(&bytes),
                        },
                        Ok(bytes) => {
                            budget -= bytes.len() as u64;
                            Content::Bytes(bytes)
                        }
                        Err(_) => continue,
                    }
                } else {
                    Content::Meta {
                        len: meta.len(),
                        modified: meta.modified().ok(),
                    }
                };
                snap.files.insert(rel, content);
            }
        }
        Ok(snap)
    }

    /// Capture on a blocking thread.
    pub async fn capture_async(root: PathBuf) -> Result<Snapshot> {
        tokio::task::spawn_blocking(move || Snapshot::capture(&root))
            .await
            .map_err(|e| Error::backend("workspace", format!("snapshot task failed: {e}")))?
    }

    /// The directory this snapshot is of.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of files seen.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no files were seen.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// What changed from `self` (before) to `after`, sorted by path.
    pub fn diff(&self, after: &Snapshot) -> Vec<FileChange> {
        let mut out = Vec::new();
        for (path, new) in &after.files {
            match self.files.get(path) {
                None => {
                    let added = match new {
                        Content::Bytes(b) => count_lines(b),
                        Content::Digest { .. } | Content::Meta { .. } => 0,
                    };
                    out.push(FileChange {
                        path: path.clone(),
                        action: FileAction::Created,
                        lines_added: added,
                        lines_removed: 0,
                    });
                }
                Some(old) if old != new => {
                    let (added, removed) = match (old, new) {
                        (Content::Bytes(a), Content::Bytes(b)) => line_delta(a, b),
                        _ => (0, 0),
                    };
                    out.push(FileChange {
                        path: path.clone(),
                        action: FileAction::Modified,
                        lines_added: added,
                        lines_removed: removed,
                    });
                }
                Some(_) => {}
            }
        }
        for (path, old) in &self.files {
            if !after.files.contains_key(path) {
                let removed = match old {
                    Content::Bytes(b) => count_lines(b),
                    Content::Digest { .. } | Content::Meta { .. } => 0,
                };
                out.push(FileChange {
                    path: path.clone(),
                    action: FileAction::Deleted,
                    lines_added: 0,
                    lines_removed: removed,
                });
            }
        }
        out.sort();
        out
    }
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0)
}

/// Change detection only (not a security boundary).
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Lines in `bytes` (a last line without a newline counts).
pub fn count_lines(bytes: &[u8]) -> u64 {
    if bytes.is_empty() {
        return 0;
    }
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    if bytes.last() == Some(&b'\n') {
        newlines
    } else {
        newlines + 1
    }
}

/// Lines added and removed between two versions of a file.
pub fn line_delta(old: &[u8], new: &[u8]) -> (u64, u64) {
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let diff = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(2))
        .diff_lines(old.as_ref(), new.as_ref());
    let (mut added, mut removed) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    (added, removed)
}

/// The files a task changed in a local workspace: the one before/after tracking every backend
/// uses. [`Tracker::start`] records the workspace before the task; [`Tracker::finish`] compares
/// it with the workspace after. A workspace that cannot be read is logged and reported as no
/// changes, never as an error of the task.
#[derive(Debug)]
pub struct Tracker {
    before: Option<Snapshot>,
}

impl Tracker {
    /// Record `dir` before a task (off the async threads).
    pub async fn start(dir: &Path) -> Tracker {
        Tracker {
            before: capture_or_warn(dir).await,
        }
    }

    /// A tracker that reports no changes (no local workspace).
    pub fn none() -> Tracker {
        Tracker { before: None }
    }

    /// The files changed since [`Tracker::start`].
    pub async fn finish(self) -> Vec<FileChange> {
        let Some(before) = self.before else {
            return Vec::new();
        };
        match capture_or_warn(before.root()).await {
            Some(after) => before.diff(&after),
            None => Vec::new(),
        }
    }
}

async fn capture_or_warn(dir: &Path) -> Option<Snapshot> {
    match Snapshot::capture_async(dir.to_path_buf()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(workspace = %dir.display(), "cannot read the workspace; files changed will not be reported: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn created_modified_deleted_with_line_counts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("keep.txt"), "same\n").unwrap();
        fs::write(root.join("edit.py"), "a\nb\nc\n").unwrap();
        fs::write(root.join("gone.txt"), "1\n2\n").unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join(".git/HEAD"), "ref").unwrap();
        let before = Snapshot::capture(root).unwrap();
        fs::write(root.join("edit.py"), "a\nB\nc\nd\n").unwrap();
        fs::remove_file(root.join("gone.txt")).unwrap();
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("src/hello.py"), "print('Hello World')").unwrap();
        fs::write(root.join(".git/HEAD"), "changed").unwrap();
        let after = Snapshot::capture(root).unwrap();
        assert_eq!(
            before.diff(&after),
            vec![
                FileChange {
                    path: "edit.py".into(),
                    action: FileAction::Modified,
                    lines_added: 2,
                    lines_removed: 1
                },
                FileChange {
                    path: "gone.txt".into(),
                    action: FileAction::Deleted,
                    lines_added: 0,
                    lines_removed: 2
                },
                FileChange {
                    path: "src/hello.py".into(),
                    action: FileAction::Created,
                    lines_added: 1,
                    lines_removed: 0
                },
            ]
        );
    }

    #[test]
    fn binary_files_are_compared_by_digest_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let image = |fill: u8| {
            let mut b = vec![0u8, 1, 2, 3];
            b.extend(std::iter::repeat_n(fill, 4096));
            b
        };
        fs::write(root.join("logo.png"), image(7)).unwrap();
        fs::write(root.join("same.bin"), image(9)).unwrap();
        let before = Snapshot::capture(root).unwrap();
        assert!(
            before
                .files
                .values()
                .all(|c| matches!(c, Content::Digest { .. })),
            "binary contents are not held"
        );
        // Same length, different bytes: found even if the mtime did not move.
        fs::write(root.join("logo.png"), image(8)).unwrap();
        let after = Snapshot::capture(root).unwrap();
        assert_eq!(
            before.diff(&after),
            vec![FileChange {
                path: "logo.png".into(),
                action: FileAction::Modified,
                lines_added: 0,
                lines_removed: 0
            }]
        );
    }

    #[test]
    fn missing_directory_is_empty_and_then_everything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("later");
        let before = Snapshot::capture(&ws).unwrap();
        assert!(before.is_empty());
        fs::create_dir_all(&ws).unwrap();
        fs::write(ws.join("x"), "1\n2\n3\n").unwrap();
        let changes = before.diff(&Snapshot::capture(&ws).unwrap());
        assert_eq!(
            changes,
            vec![FileChange {
                path: "x".into(),
                action: FileAction::Created,
                lines_added: 3,
                lines_removed: 0
            }]
        );
    }

    #[test]
    fn counting_lines() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a"), 1);
        assert_eq!(count_lines(b"a\n"), 1);
        assert_eq!(count_lines(b"a\nb"), 2);
    }
}
