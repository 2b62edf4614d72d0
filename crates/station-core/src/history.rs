//! Per-session task history: one append-only JSON line per task that ended, in
//! `<data dir>/history/<session id>.jsonl`. Written by [`crate::SessionService`] when a task
//! ends; read by `stn session show`. Reads are bounded (the newest [`MAX_READ_BYTES`]) and a
//! line that cannot be read is skipped with a warning, so one bad write never hides the rest.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{FileChange, Outcome, SessionId, StopReason, Task, Usage};

/// The longest instruction kept in a record, in bytes (the rest is cut, marked with `…`).
pub const MAX_INSTRUCTION_BYTES: usize = 4 * 1024;
/// The most changed files kept in a record (`files_omitted` counts the rest).
pub const MAX_FILES: usize = 500;
/// The most of a history file read: its newest part.
pub const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;

/// One task that ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// 1-based position of the task in its session.
    pub number: u64,
    /// When the task ended.
    pub ended_at: DateTime<Utc>,
    /// The instruction, redacted and cut to [`MAX_INSTRUCTION_BYTES`].
    pub instruction: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// What went wrong, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tokens.
    #[serde(default)]
    pub usage: Usage,
    /// Cost in USD, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Wall time.
    #[serde(default)]
    pub duration_ms: u64,
    /// Files the task changed (at most [`MAX_FILES`]).
    #[serde(default)]
    pub files_changed: Vec<FileChange>,
    /// Changed files left out of `files_changed`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What [`TaskHistory::read`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistoryRead {
    /// The records, oldest first.
    pub tasks: Vec<TaskRecord>,
    /// Lines that could not be read and were skipped.
    pub skipped_lines: usize,
    /// Whether older records were left out because the file is over [`MAX_READ_BYTES`].
    pub truncated: bool,
}

/// The task histories under a data dir.
#[derive(Debug, Clone)]
pub struct TaskHistory {
    dir: PathBuf,
}

impl TaskHistory {
    /// The histories of the data dir `data_dir` (the [`crate::SessionIndex`] dir).
    pub fn new(data_dir: &Path) -> Self {
        TaskHistory {
            dir: data_dir.join("history"),
        }
    }

    /// The file of `session`'s history; `None` for an id that is not a safe file name.
    pub fn path(&self, session: &SessionId) -> Option<PathBuf> {
        let id = session.as_str();
        let safe = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        safe.then(|| self.dir.join(format!("{id}.jsonl")))
    }

    /// Append the record of a task that ended; returns it with its number.
    pub fn append(
        &self,
        session: &SessionId,
        task: &Task,
        outcome: &Outcome,
    ) -> Result<TaskRecord> {
        let path = self.path(session).ok_or_else(|| {
            Error::config(format!("session id `{session}` cannot name a history file"))
        })?;
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // Numbering and appending under one lock, so concurrent writers never share a number.
        file.lock()
            .map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        let number = count_lines(&mut file)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            + 1;
        let record = record(number, task, outcome);
        let mut line = serde_json::to_vec(&record).expect("a task record serializes");
        line.push(b'\n');
        file.write_all(&line)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(record)
    }

    /// `session`'s records, oldest first (the newest [`MAX_READ_BYTES`] of them).
    pub fn read(&self, session: &SessionId) -> Result<HistoryRead> {
        let Some(path) = self.path(session) else {
            return Ok(HistoryRead::default());
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(HistoryRead::default());
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let io = |e| Error::io(format!("reading {}", path.display()), e);
        let len = file.metadata().map_err(io)?.len();
        let truncated = len > MAX_READ_BYTES;
        if truncated {
            file.seek(SeekFrom::Start(len - MAX_READ_BYTES))
                .map_err(io)?;
        }
        let mut reader = BufReader::new(file.take(MAX_READ_BYTES));
        if truncated {
            // The first line is probably cut; start at the next one.
            let mut partial = Vec::new();
            reader.read_until(b'\n', &mut partial).map_err(io)?;
        }
        let mut out = HistoryRead {
            truncated,
            ..HistoryRead::default()
        };
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(io)?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<TaskRecord>(&line) {
                Ok(r) => out.tasks.push(r),
                Err(e) => {
                    tracing::warn!(file = %path.display(), line = i + 1, "skipping a task record that cannot be read: {e}");
                    out.skipped_lines += 1;
                }
            }
        }
        Ok(out)
    }

    /// Remove `session`'s history; `Ok(false)` when it had none.
    pub fn remove(&self, session: &SessionId) -> Result<bool> {
        let Some(path) = self.path(session) else {
            return Ok(false);
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
}

fn count_lines(file: &mut File) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut count = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(count);
        }
        count += buf.iter().filter(|b| **b == b'\n').count() as u64;
        let n = buf.len();
        reader.consume(n);
    }
}

fn record(number: u64, task: &Task, outcome: &Outcome) -> TaskRecord {
    let mut files = outcome.files_changed.clone();
    let omitted = files.len().saturating_sub(MAX_FILES);
    files.truncate(MAX_FILES);
    TaskRecord {
        number,
        ended_at: Utc::now(),
        instruction: cut(
            &crate::redact::redact(&task.instruction),
            MAX_INSTRUCTION_BYTES,
        ),
        success: outcome.success,
        stop_reason: outcome.stop_reason,
        error: outcome.error.as_deref().map(crate::redact::redact),
        usage: outcome.usage,
        cost_usd: outcome.cost_usd,
        duration_ms: outcome.duration_ms,
        files_changed: files,
        files_omitted: omitted,
    }
}

/// `text` cut to at most `max` bytes on a character boundary, `…` marking a cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FileAction;

    fn outcome(success: bool) -> Outcome {
        let mut o = Outcome::new(success, StopReason::Completed);
        o.usage.input_tokens = 10;
        o.cost_usd = Some(0.5);
        o.files_changed = vec![FileChange {
            path: "a.txt".into(),
            action: FileAction::Created,
            lines_added: 1,
            lines_removed: 0,
            ..Default::default()
        }];
        o
    }

    #[test]
    fn appends_numbered_records_redacted_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let history = TaskHistory::new(dir.path());
        let id = SessionId::generate();
        let token = format!("ghp_{}", "x".repeat(36));
        let long = format!("use {token} then {}", "é".repeat(5000));
        history
            .append(&id, &Task::new("first"), &outcome(true))
            .unwrap();
        history
            .append(&id, &Task::new(long), &outcome(false))
            .unwrap();
        let read = history.read(&id).unwrap();
        assert_eq!(read.skipped_lines, 0);
        let numbers: Vec<_> = read.tasks.iter().map(|t| t.number).collect();
        assert_eq!(numbers, [1, 2]);
        let second = &read.tasks[1];
        assert!(!second.instruction.contains(&token), "redacted");
        assert!(second.instruction.len() <= MAX_INSTRUCTION_BYTES);
        assert!(second.instruction.ends_with('…'));
        assert_eq!(second.files_changed[0].path, "a.txt");
        assert_eq!(second.cost_usd, Some(0.5));
    }

    #[test]
    fn a_corrupt_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let history = TaskHistory::new(dir.path());
        let id = SessionId::generate();
        history
            .append(&id, &Task::new("one"), &outcome(true))
            .unwrap();
        let path = history.path(&id).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{ not json\n").unwrap();
        history
            .append(&id, &Task::new("three"), &outcome(true))
            .unwrap();
        let read = history.read(&id).unwrap();
        assert_eq!(read.skipped_lines, 1);
        let texts: Vec<_> = read.tasks.iter().map(|t| t.instruction.as_str()).collect();
        assert_eq!(texts, ["one", "three"]);
    }

    #[test]
    fn unsafe_ids_name_no_file_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let history = TaskHistory::new(dir.path());
        assert!(history.path(&SessionId::from("../x")).is_none());
        let id = SessionId::generate();
        assert!(!history.remove(&id).unwrap());
        history
            .append(&id, &Task::new("one"), &outcome(true))
            .unwrap();
        assert!(history.remove(&id).unwrap());
        assert!(history.read(&id).unwrap().tasks.is_empty());
    }
}
