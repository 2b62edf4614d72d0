//! What a task changed in a local workspace, exactly: before a task the workspace state
//! (tracked and untracked files, honouring `.gitignore` and `.git/info/exclude`, never `.git`)
//! is written as a git tree into a private object store; after the task it is written again,
//! and libgit2 diffs the two trees (renames, binary files, modes, exact line counts). Works in
//! any directory, git repository or not.
//!
//! Why a private store (a bare repository under the data dir, one per workspace path) rather
//! than the workspace repository's own object database: nothing is ever written into the
//! user's `.git` (no objects, no index, no refs, no config), so a `git gc` there cannot drop a
//! checkpoint and a non-git workspace works the same way. The scan (`scan`) keeps a stat cache
//! in the store: files whose stat data did not change are not read again. No file contents
//! are held in memory while a task runs; changed files are streamed into the store.
//!
//! With a [`Checkpoints`] directory each task is also recorded (see [`checkpoint`]): its
//! before/after trees and its patch, which `stn session diff` shows and
//! [`Checkpoints::rewind`] restores from.

pub mod checkpoint;
mod ignores;
mod remote;
mod scan;
mod scan_cache;
mod store;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use checkpoint::{CheckpointRecord, Checkpoints, Rewound};

use crate::error::{Error, Result};
use crate::model::{FileChange, SessionId, TaskPatch};
use store::ShadowStore;

/// The outcome carries at most this many bytes of a task's patch; the rest is in the file.
pub const PATCH_INLINE_CAP: usize = 256 * 1024;

/// Tracks one task's changes: [`Tracker::start`] records the workspace before the task,
/// [`Tracker::finish`] after it. A workspace that cannot be read is logged and reported as no
/// changes, never as an error of the task.
#[derive(Debug)]
pub struct Tracker {
    begun: Option<Begun>,
}

#[derive(Debug)]
struct Begun {
    git_dir: PathBuf,
    workspace: PathBuf,
    before: git2::Oid,
    started_at: DateTime<Utc>,
    /// Where this task's record goes (`None`: a throwaway store, removed after the task).
    record: Option<(Checkpoints, SessionId, u32)>,
}

/// What [`Tracker::finish_with_patch`] found.
#[derive(Debug, Clone, Default)]
pub struct TaskChanges {
    /// The files changed.
    pub files: Vec<FileChange>,
    /// The patch (cut at [`PATCH_INLINE_CAP`]) and where the whole one is.
    pub patch: TaskPatch,
}

impl Tracker {
    /// Record `dir` before a task in a throwaway store (no checkpoint is kept). Used when no
    /// data dir is known (a bare [`crate::start_task`]).
    pub async fn start(dir: &Path) -> Tracker {
        let git_dir =
            std::env::temp_dir().join(format!("stn-changes-{}", uuid::Uuid::now_v7().simple()));
        Self::begin(git_dir, dir.to_path_buf(), None).await
    }

    /// Record `dir` before a task of `session`, as a checkpoint under `checkpoints`.
    pub async fn start_checkpoint(
        checkpoints: &Checkpoints,
        session: &SessionId,
        dir: &Path,
    ) -> Tracker {
        let reserved = {
            let (checkpoints, session) = (checkpoints.clone(), session.clone());
            tokio::task::spawn_blocking(move || checkpoints.reserve(&session)).await
        };
        let task = match reserved {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(session = %session, "cannot record a checkpoint for this task: {e}");
                return Tracker::none();
            }
            Err(e) => {
                tracing::warn!("checkpoint reservation failed: {e}");
                return Tracker::none();
            }
        };
        let git_dir = checkpoints.store_dir(dir);
        Self::begin(
            git_dir,
            dir.to_path_buf(),
            Some((checkpoints.clone(), session.clone(), task)),
        )
        .await
    }

    /// A tracker that reports no changes (no local workspace).
    pub fn none() -> Tracker {
        Tracker { begun: None }
    }

    async fn begin(
        git_dir: PathBuf,
        workspace: PathBuf,
        record: Option<(Checkpoints, SessionId, u32)>,
    ) -> Tracker {
        let started_at = Utc::now();
        let (dir, ws) = (git_dir.clone(), workspace.clone());
        let before = blocking(move || {
            std::fs::create_dir_all(&ws)
                .map_err(|e| Error::io(format!("creating workspace {}", ws.display()), e))?;
            ShadowStore::open(&dir, &ws)?.snapshot()
        })
        .await;
        match before {
            Ok(before) => Tracker {
                begun: Some(Begun {
                    git_dir,
                    workspace,
                    before,
                    started_at,
                    record,
                }),
            },
            Err(e) => {
                tracing::warn!(workspace = %workspace.display(), "cannot record the workspace; files changed will not be reported: {e}");
                if record.is_none() {
                    let _ = std::fs::remove_dir_all(&git_dir);
                }
                Tracker::none()
            }
        }
    }

    /// The files changed since [`Tracker::start`].
    pub async fn finish(self) -> Vec<FileChange> {
        self.finish_with_patch()
            .await
            .map(|c| c.files)
            .unwrap_or_default()
    }

    /// The files changed since the start and the task's patch; `None` when the workspace
    /// could not be recorded.
    pub async fn finish_with_patch(self) -> Option<TaskChanges> {
        let begun = self.begun?;
        let workspace = begun.workspace.clone();
        let result = blocking(move || finish_blocking(begun)).await;
        match result {
            Ok(changes) => Some(changes),
            Err(e) => {
                tracing::warn!(workspace = %workspace.display(), "cannot compare the workspace with its state before the task: {e}");
                None
            }
        }
    }
}

fn finish_blocking(begun: Begun) -> Result<TaskChanges> {
    let throwaway = begun.record.is_none();
    let result = (|| {
        let store = ShadowStore::open(&begun.git_dir, &begun.workspace)?;
        let after = store.snapshot()?;
        let patch_path = match &begun.record {
            Some((checkpoints, session, task)) => {
                checkpoints.task_dir(session, *task).join("patch.diff")
            }
            None => begun.git_dir.join("patch.diff"),
        };
        let mut writer = CappedTee::create(&patch_path)?;
        let (files, bytes) = store.changes_and_patch(begun.before, after, &mut writer)?;
        let text = writer.finish()?;
        let mut patch = TaskPatch {
            truncated: bytes > text.len() as u64,
            text: String::from_utf8_lossy(&text).into_owned(),
            bytes,
            path: None,
            task: None,
        };
        if let Some((checkpoints, session, task)) = &begun.record {
            patch.path = Some(patch_path.clone());
            patch.task = Some(*task);
            checkpoints.write_record(&CheckpointRecord {
                task: *task,
                session_id: session.clone(),
                workspace: begun.workspace.clone(),
                store: begun.git_dir.clone(),
                before_tree: begun.before.to_string(),
                after_tree: after.to_string(),
                patch: patch_path,
                patch_bytes: bytes,
                files_changed: files.clone(),
                started_at: begun.started_at,
                finished_at: Utc::now(),
                remote: false,
                patch_truncated: false,
            })?;
        }
        Ok(TaskChanges { files, patch })
    })();
    if throwaway {
        let _ = std::fs::remove_dir_all(&begun.git_dir);
    }
    result
}

/// Writes everything to a file and keeps the first [`PATCH_INLINE_CAP`] bytes.
struct CappedTee {
    file: std::io::BufWriter<std::fs::File>,
    head: Vec<u8>,
    path: PathBuf,
}

impl CappedTee {
    fn create(path: &Path) -> Result<CappedTee> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let file = std::fs::File::create(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(CappedTee {
            file: std::io::BufWriter::new(file),
            head: Vec::new(),
            path: path.to_path_buf(),
        })
    }

    fn finish(mut self) -> Result<Vec<u8>> {
        use std::io::Write;
        self.file
            .flush()
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        Ok(self.head)
    }
}

impl std::io::Write for CappedTee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = PATCH_INLINE_CAP.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..buf.len().min(room)]);
        self.file.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend("workspace", format!("change tracking failed: {e}")))?
}

#[cfg(test)]
mod tests;
