//! Result storage: store the final result and session state, then publish the result.

use std::time::{Duration, Instant};

use super::shared::Shared;
use crate::wire::{self, ResultMessage, TaskRecord, TaskState};

/// How long a final result is retried into the store (it must survive a server restart).
const STORE_DEADLINE: Duration = Duration::from_secs(60);

impl Shared {
    /// Store the result (so a client that missed the message finds it) and the session state
    /// (so the next task continues it) concurrently, then publish the result.
    pub(super) async fn deliver(
        &self,
        task_id: &str,
        result_subject: &str,
        result: ResultMessage,
        session_put: Option<tokio::task::JoinHandle<()>>,
    ) {
        let max = self.client.server_info().max_payload.max(64 * 1024);
        let result = fit_result(result, max.saturating_sub(4 * 1024));
        let record = TaskRecord {
            state: TaskState::Done,
            worker: self.id.clone(),
            updated_at: wire::now_iso(),
            result: Some(result.clone()),
            claim: None,
        };
        let store = async {
            let deadline = Instant::now() + STORE_DEADLINE;
            if let Ok(bytes) = serde_json::to_vec(&record) {
                let bytes = bytes::Bytes::from(bytes);
                loop {
                    match self.tasks.put(task_id, bytes.clone()).await {
                        Ok(_) => break,
                        Err(e) if Instant::now() < deadline => {
                            tracing::debug!(worker = %self.id, task = %task_id, "storing the result failed, retrying: {e}");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(e) => {
                            tracing::warn!(worker = %self.id, task = %task_id, "could not store the result: {e}");
                            break;
                        }
                    }
                }
            }
        };
        let session_stored = async {
            if let Some(put) = session_put {
                let _ = put.await;
            }
        };
        tokio::join!(store, session_stored);
        self.publish_json(result_subject, &result).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.flush()).await;
        tracing::info!(worker = %self.id, task = %task_id, status = %result.status, "task finished");
    }
}

/// Results larger than a NATS message are trimmed: tool outputs first, then the call list,
/// then the text.
fn fit_result(mut result: ResultMessage, max: usize) -> ResultMessage {
    let size = |r: &ResultMessage| serde_json::to_vec(r).map(|b| b.len()).unwrap_or(usize::MAX);
    if size(&result) <= max {
        return result;
    }
    if let Some(calls) = result.tool_calls.as_mut() {
        for c in calls.iter_mut() {
            c.output = c.output.take().map(|o| truncate(&o, 200));
            c.input = serde_json::Value::Null;
        }
    }
    if size(&result) <= max {
        return result;
    }
    if let Some(patch) = result.patch.as_mut() {
        let cut = truncate(&patch.text, max / 4);
        if cut.len() < patch.text.len() {
            patch.text = cut;
            patch.truncated = true;
        }
    }
    if size(&result) <= max {
        return result;
    }
    result.tool_calls = None;
    if size(&result) <= max {
        return result;
    }
    result.patch = None;
    if size(&result) <= max {
        return result;
    }
    if let Some(text) = result.result.take() {
        result.result = Some(truncate(&text, max / 2));
    }
    result
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated]", &s[..end])
}
