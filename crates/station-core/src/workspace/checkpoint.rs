//! Checkpoints: each task's before-state, after-state and patch, recorded under the data dir
//! (`checkpoints/<session id>/<task n>/record.json` and `patch.diff`), and rewind to one.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::remote::{cannot_rewind, concatenated_patches, merged_files};
use super::store::{ShadowStore, git_err};
use crate::error::{Error, InputError, Result};
use crate::model::{FileChange, SessionId};

/// What one task changed, as recorded after it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The task's number in its session, from 1.
    pub task: u32,
    /// The session.
    pub session_id: SessionId,
    /// The workspace directory.
    pub workspace: PathBuf,
    /// The private object store holding both trees.
    pub store: PathBuf,
    /// Tree id of the workspace before the task (the checkpoint rewind restores).
    pub before_tree: String,
    /// Tree id of the workspace after the task.
    pub after_tree: String,
    /// The whole patch of the task.
    pub patch: PathBuf,
    /// Its size in bytes.
    pub patch_bytes: u64,
    /// The files changed.
    #[serde(default)]
    pub files_changed: Vec<FileChange>,
    /// When the task started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The task ran on a workspace on another machine: no trees here, only the patch and file
    /// list it sent back (see `record_remote`); such a task cannot be rewound from here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// The stored patch is only the start of the task's patch (the sender's size cap).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub patch_truncated: bool,
}

/// What a rewind did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewound {
    /// The task whose before-state the workspace now has.
    pub to_task: u32,
    /// The workspace.
    pub workspace: PathBuf,
    /// Files written or removed (relative paths).
    pub files: Vec<String>,
}

/// Where change tracking keeps its object stores and task records: Station's data dir.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    data_dir: PathBuf,
}

impl Checkpoints {
    /// Checkpoints under `data_dir` (the directory of the session index).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Checkpoints {
            data_dir: data_dir.into(),
        }
    }

    /// The object store of `workspace`: one per workspace path.
    pub(crate) fn store_dir(&self, workspace: &Path) -> PathBuf {
        let key = git2::Oid::hash_object(
            git2::ObjectType::Blob,
            workspace.as_os_str().as_encoded_bytes(),
        )
        .map(|id| id.to_string())
        .unwrap_or_else(|_| "workspace".to_string());
        self.data_dir
            .join("workspaces")
            .join(format!("{}.git", &key[..16.min(key.len())]))
    }

    fn session_dir(&self, session: &SessionId) -> PathBuf {
        let safe: String = session
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.data_dir.join("checkpoints").join(safe)
    }

    pub(crate) fn task_dir(&self, session: &SessionId, task: u32) -> PathBuf {
        self.session_dir(session).join(task.to_string())
    }

    /// Take the next task number of `session` (its directory is created, so two processes
    /// never take the same one).
    pub(crate) fn reserve(&self, session: &SessionId) -> Result<u32> {
        let dir = self.session_dir(session);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut next = task_numbers(&dir).into_iter().max().unwrap_or(0) + 1;
        loop {
            match std::fs::create_dir(dir.join(next.to_string())) {
                Ok(()) => return Ok(next),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => next += 1,
                Err(e) => {
                    return Err(Error::io(
                        format!("creating a checkpoint in {}", dir.display()),
                        e,
                    ));
                }
            }
        }
    }

    pub(crate) fn write_record(&self, record: &CheckpointRecord) -> Result<()> {
        let path = self
            .task_dir(&record.session_id, record.task)
            .join("record.json");
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::backend("workspace", format!("encoding a checkpoint: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// The recorded tasks of `session`, oldest first (tasks that did not end are left out).
    pub fn list(&self, session: &SessionId) -> Result<Vec<CheckpointRecord>> {
        let dir = self.session_dir(session);
        let mut numbers = task_numbers(&dir);
        numbers.sort_unstable();
        let mut out = Vec::new();
        for n in numbers {
            let path = dir.join(n.to_string()).join("record.json");
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let record = serde_json::from_slice(&text).map_err(|e| {
                Error::backend(
                    "workspace",
                    format!("checkpoint {} is unreadable: {e}", path.display()),
                )
            })?;
            out.push(record);
        }
        Ok(out)
    }

    /// Write the patch of task `task` of `session` to `out`, or with `None` the session's whole
    /// change (from before its first recorded task to after its last). Returns the records
    /// it covers.
    pub fn write_patch(
        &self,
        session: &SessionId,
        task: Option<u32>,
        out: &mut dyn std::io::Write,
    ) -> Result<Vec<CheckpointRecord>> {
        let records = self.list(session)?;
        let (first, last) = match task {
            Some(_) => {
                let one = pick(session, &records, task)?;
                (one, one)
            }
            None => (
                records.first().ok_or_else(|| no_tasks(session))?,
                pick(session, &records, None)?,
            ),
        };
        let covered: Vec<&CheckpointRecord> = records
            .iter()
            .filter(|r| r.task >= first.task && r.task <= last.task)
            .collect();
        if covered.iter().any(|r| r.remote) {
            concatenated_patches(&covered, out)?;
            return Ok(covered.into_iter().cloned().collect());
        }
        let store = ShadowStore::open(&last.store, &last.workspace)?;
        let oid = |s: &str| git2::Oid::from_str(s).map_err(git_err("reading a checkpoint"));
        store.write_patch(oid(&first.before_tree)?, oid(&last.after_tree)?, out)?;
        Ok(records
            .iter()
            .filter(|r| r.task >= first.task && r.task <= last.task)
            .cloned()
            .collect())
    }

    /// The files changed by task `task` of `session`, or with `None` by the whole session.
    pub fn files_changed(&self, session: &SessionId, task: Option<u32>) -> Result<Vec<FileChange>> {
        let records = self.list(session)?;
        let last = pick(session, &records, task)?;
        let first = match task {
            Some(_) => last,
            None => records.first().ok_or_else(|| no_tasks(session))?,
        };
        let covered: Vec<&CheckpointRecord> = records
            .iter()
            .filter(|r| r.task >= first.task && r.task <= last.task)
            .collect();
        if covered.iter().any(|r| r.remote) {
            return Ok(merged_files(&covered));
        }
        let store = ShadowStore::open(&last.store, &last.workspace)?;
        let oid = |s: &str| git2::Oid::from_str(s).map_err(git_err("reading a checkpoint"));
        store.changes(oid(&first.before_tree)?, oid(&last.after_tree)?)
    }

    /// Task `task` of `session`, or its last task.
    pub fn get(&self, session: &SessionId, task: Option<u32>) -> Result<CheckpointRecord> {
        let records = self.list(session)?;
        pick(session, &records, task).cloned()
    }

    /// Restore the workspace files of `session` to the state before task `to_task` (default:
    /// its last task). Refuses when the workspace changed since the session's last task ended,
    /// unless `force`. Ignored files are never touched. Blocking.
    pub fn rewind(
        &self,
        session: &SessionId,
        to_task: Option<u32>,
        force: bool,
    ) -> Result<Rewound> {
        let records = self.list(session)?;
        let target = pick(session, &records, to_task)?;
        let last = records.last().expect("pick found a record");
        if let Some(remote) = records.iter().find(|r| r.remote && r.task >= target.task) {
            return Err(cannot_rewind(session, remote));
        }
        let store = ShadowStore::open(&last.store, &last.workspace)?;
        let oid = |s: &str| git2::Oid::from_str(s).map_err(git_err("reading a checkpoint"));
        let current = store.snapshot()?;
        if !force && current != oid(&last.after_tree)? {
            let changed = store.changes(oid(&last.after_tree)?, current)?;
            let mut names: Vec<&str> = changed.iter().map(|c| c.path.as_str()).take(10).collect();
            if changed.len() > names.len() {
                names.push("…");
            }
            return Err(InputError::new(format!(
                "the workspace {} changed since task {} of session {} ended ({}); rewinding would discard those changes",
                last.workspace.display(),
                last.task,
                session,
                names.join(", ")
            ))
            .hint("review them (`git status`, or `stn session diff`), then run again with --force to discard them")
            .into());
        }
        let target_store = if target.store == last.store {
            store
        } else {
            drop(store);
            ShadowStore::open(&target.store, &target.workspace)?
        };
        let files = target_store.restore(current, oid(&target.before_tree)?)?;
        // Refresh the stat cache so the next task does not hash the restored files again.
        target_store.snapshot()?;
        Ok(Rewound {
            to_task: target.task,
            workspace: target.workspace.clone(),
            files,
        })
    }
}

fn pick<'a>(
    session: &SessionId,
    records: &'a [CheckpointRecord],
    task: Option<u32>,
) -> Result<&'a CheckpointRecord> {
    let known = || {
        records
            .iter()
            .map(|r| r.task.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match task {
        None => records.last().ok_or_else(|| no_tasks(session)),
        Some(n) => records.iter().find(|r| r.task == n).ok_or_else(|| {
            InputError::new(format!("session {session} has no recorded task {n}"))
                .field("task")
                .hint(if records.is_empty() {
                    "this session has no recorded tasks".to_string()
                } else {
                    format!("recorded tasks: {}", known())
                })
                .into()
        }),
    }
}

fn no_tasks(session: &SessionId) -> Error {
    InputError::new(format!("session {session} has no recorded tasks"))
        .hint("tasks are recorded when they run on a workspace on this machine (opencode-cli, claudecode, a local opencode server) or when a remote one (opencode-nats) sends its patch back")
        .into()
}

fn task_numbers(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
