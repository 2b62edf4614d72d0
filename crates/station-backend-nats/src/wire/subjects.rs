//! Subjects of a deployment, timestamps, and which keys and subject tokens are valid.

use chrono::{SecondsFormat, Utc};

/// The subjects of one deployment, derived from `coding.nats.subjects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// Tasks (Station → worker). The plugin hard-codes `station.coding.task`.
    pub task: String,
    /// Base of per-task event subjects.
    pub stream: String,
    /// Base of per-task result subjects.
    pub result: String,
}

impl Subjects {
    /// From the config section.
    pub fn from_config(s: &crate::NatsSubjects) -> Self {
        Subjects {
            task: s.task.clone(),
            stream: s.stream.clone(),
            result: s.result.clone(),
        }
    }
    /// Cancel requests (extension): every worker listens, not only the queue group.
    pub fn cancel(&self) -> String {
        format!("{}.cancel", self.task)
    }
    /// Worker discovery (extension): request/reply, every worker answers.
    pub fn ping(&self) -> String {
        format!("{}.ping", self.task)
    }
    /// Git on a session's workspace (extension): request/reply, one worker of the queue group.
    pub fn git(&self) -> String {
        format!("{}.git", self.task)
    }
    /// Events of one task.
    pub fn stream_of(&self, task_id: &str) -> String {
        format!("{}.{task_id}", self.stream)
    }
    /// The result of one task.
    pub fn result_of(&self, task_id: &str) -> String {
        format!("{}.{task_id}", self.result)
    }
}

/// Heartbeats of a task travel beside its event stream, so old subscribers never see them.
pub fn heartbeat_subject(stream_subject: &str) -> String {
    format!("{stream_subject}.heartbeat")
}

/// Now as the plugin writes timestamps (`toISOString`).
pub fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Whether `key` is a valid NATS KV key (`[-/_=.a-zA-Z0-9]+`, not starting or ending with `.`).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.'))
}

/// Whether `token` can be one subject token (task ids go into subjects).
pub fn is_valid_subject_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}
