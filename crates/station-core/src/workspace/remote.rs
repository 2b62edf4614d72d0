//! Checkpoints of tasks that ran on a workspace on another machine (a NATS worker, a remote
//! OpenCode server): the diff was made where the files are and came back in the outcome
//! (size-capped), so the record keeps that patch and its file list instead of two trees.
//! `stn session diff` shows it the same way; rewind refuses (the files are not here).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::checkpoint::{CheckpointRecord, Checkpoints};
use crate::error::{Error, InputError, Result};
use crate::model::{FileAction, FileChange, SessionId, TaskPatch};

impl Checkpoints {
    /// Record a task whose workspace is elsewhere: its returned `patch` (as it came, maybe cut
    /// at the sender's cap) and `files`. Returns the patch with its local task number and path.
    /// Blocking.
    pub fn record_remote(
        &self,
        session: &SessionId,
        workspace: Option<&Path>,
        patch: TaskPatch,
        files: &[FileChange],
        started_at: DateTime<Utc>,
    ) -> Result<TaskPatch> {
        let task = self.reserve(session)?;
        let path = self.task_dir(session, task).join("patch.diff");
        std::fs::write(&path, patch.text.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        self.write_record(&CheckpointRecord {
            task,
            session_id: session.clone(),
            workspace: workspace.map(Path::to_path_buf).unwrap_or_default(),
            store: PathBuf::new(),
            before_tree: String::new(),
            after_tree: String::new(),
            patch: path.clone(),
            patch_bytes: patch.bytes.max(patch.text.len() as u64),
            files_changed: files.to_vec(),
            started_at,
            finished_at: Utc::now(),
            remote: true,
            patch_truncated: patch.truncated,
        })?;
        Ok(TaskPatch {
            path: Some(path),
            task: Some(task),
            ..patch
        })
    }
}

/// The patches of `records` one after the other (each applies on top of the one before), as
/// stored: for a session whose tasks ran on a remote workspace there are no trees to diff.
pub(super) fn concatenated_patches(
    records: &[&CheckpointRecord],
    out: &mut dyn std::io::Write,
) -> Result<()> {
    for record in records {
        let bytes = std::fs::read(&record.patch)
            .map_err(|e| Error::io(format!("reading {}", record.patch.display()), e))?;
        out.write_all(&bytes)
            .map_err(|e| Error::io("writing the session's patch", e))?;
    }
    Ok(())
}

/// The files changed over `records` (in order) from their lists: a file's line counts add up,
/// a file created and then changed stays created, a file deleted last is deleted.
pub(super) fn merged_files(records: &[&CheckpointRecord]) -> Vec<FileChange> {
    let mut merged: Vec<FileChange> = Vec::new();
    for change in records.iter().flat_map(|r| &r.files_changed) {
        match merged.iter_mut().find(|c| c.path == change.path) {
            Some(seen) => {
                seen.lines_added += change.lines_added;
                seen.lines_removed += change.lines_removed;
                seen.binary |= change.binary;
                if change.action == FileAction::Deleted || seen.action != FileAction::Created {
                    seen.action = change.action;
                }
                seen.new_mode.clone_from(&change.new_mode);
            }
            None => merged.push(change.clone()),
        }
    }
    merged.sort();
    merged
}

/// Why a remote workspace cannot be rewound from here, and what to do instead.
pub(super) fn cannot_rewind(session: &SessionId, record: &CheckpointRecord) -> Error {
    InputError::new(format!(
        "task {} of session {session} ran on a workspace on another machine (a NATS worker or a remote OpenCode server); stn cannot rewind files that are not on this machine",
        record.task
    ))
    .hint(format!(
        "undo it where the workspace is: `stn session diff {session} --task {} > task.diff`, then `git apply -R task.diff` in that workspace (or ask the agent to revert it)",
        record.task
    ))
    .into()
}
