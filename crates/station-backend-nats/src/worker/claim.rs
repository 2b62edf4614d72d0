//! Taking a task: parse, validate, claim its id in the tasks bucket (dedupe), then run it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Message;
use async_nats::jetstream::kv;
use station_core::CancelSignal;

use super::shared::{Shared, Unregister};
use super::stream::{AbortOnDrop, TaskStream, heartbeat_loop};
use crate::wire::{self, AckStatus, Callback, ResultMessage, TaskMessage, TaskRecord, TaskState};

/// How long a worker retries a KV call that failed (a JetStream leader election after a node
/// restart takes a few seconds).
pub(super) const KV_RETRY_WINDOW: Duration = Duration::from_secs(20);
const KV_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Whose claim a task id carries.
enum Claim {
    Ours,
    Taken,
}

impl Shared {
    pub(super) async fn handle_task(self: Arc<Self>, m: Message) {
        let task: TaskMessage = match serde_json::from_slice(&m.payload) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(worker = %self.id, "dropping a malformed task: {e}");
                self.answer_malformed(&m, &e.to_string()).await;
                return;
            }
        };
        let callback = self.callback_of(&task);
        if !wire::is_valid_key(&task.task_id) || !wire::is_valid_subject_token(&task.task_id) {
            let mut r = ResultMessage::failure(
                &task.task_id,
                &task.session.name,
                &task.workspace.name,
                &format!(
                    "invalid taskID `{}`: use letters, digits, `-` and `_`",
                    task.task_id
                ),
            );
            r.worker = Some(self.id.clone());
            self.publish_json(&callback.result_subject, &r).await;
            return;
        }
        // Beat from the start: a claim retried through a leader election can take seconds, and
        // the client must not take that silence for a lost message or a dead worker.
        let stream = TaskStream::new(self.clone(), &task.task_id, &callback.stream_subject);
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.clone(),
            task.task_id.clone(),
            wire::heartbeat_subject(&callback.stream_subject),
            stream.seq_counter(),
        ));
        let _stop_heartbeat = AbortOnDrop(heartbeat);
        // Claim the task id; a second delivery finds the claim and does not run it again.
        // The session state is read while the claim is made: two KV round trips in one.
        let (claimed, stored_session) = tokio::join!(
            self.claim(&task.task_id),
            self.read_session_retrying(&task.session.name)
        );
        match claimed {
            Ok(Claim::Ours) => {}
            Ok(Claim::Taken) => {
                self.on_duplicate(&m, &task, &callback).await;
                return;
            }
            Err(e) => {
                let mut r = ResultMessage::failure(
                    &task.task_id,
                    &task.session.name,
                    &task.workspace.name,
                    &format!(
                        "worker `{}` cannot record the task in JetStream KV (tried for {}s): {e}",
                        self.id,
                        KV_RETRY_WINDOW.as_secs()
                    ),
                );
                r.worker = Some(self.id.clone());
                self.publish_json(&callback.result_subject, &r).await;
                return;
            }
        }
        self.ack(m.reply.as_ref(), &task.task_id, AckStatus::Accepted, None)
            .await;
        let signal = CancelSignal::new();
        {
            let mut cancels = self.lock_cancels();
            if let Some((_, reason)) = cancels.early.remove(&task.task_id) {
                signal.cancel_with(reason);
            }
            cancels.running.insert(task.task_id.clone(), signal.clone());
        }
        let _unregister = Unregister(&self, task.task_id.clone());

        let started = Instant::now();
        let mut session_put = None;
        let span = worker_span(&m, &task, &self.id);
        let mut result = tracing::Instrument::instrument(
            self.run_task(&task, stored_session, &stream, signal, &mut session_put),
            span,
        )
        .await;
        result.metrics.stream_events = stream.published();
        if result.metrics.duration == 0 {
            result.metrics.duration = started.elapsed().as_millis() as u64;
        }
        result.worker = Some(self.id.clone());
        self.deliver(&task.task_id, &callback.result_subject, result, session_put)
            .await;
    }

    /// Create the task's claim. A transient failure (a JetStream leader election while a
    /// node restarts) is retried within [`KV_RETRY_WINDOW`]; an attempt that failed but was
    /// stored anyway is recognised by its nonce, so the task is neither lost nor run twice.
    async fn claim(&self, task_id: &str) -> std::result::Result<Claim, String> {
        let record = TaskRecord {
            state: TaskState::Running,
            worker: self.id.clone(),
            updated_at: wire::now_iso(),
            result: None,
            claim: Some(uuid::Uuid::now_v7().simple().to_string()),
        };
        let bytes = bytes::Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        let deadline = Instant::now() + KV_RETRY_WINDOW;
        let mut retried = false;
        loop {
            let failure = match self.tasks.create(task_id, bytes.clone()).await {
                Ok(_) => return Ok(Claim::Ours),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists && !retried => {
                    return Ok(Claim::Taken);
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    // Ours from an earlier attempt, or another delivery's.
                    match self.tasks.get(task_id).await {
                        Ok(Some(stored)) => {
                            let theirs = serde_json::from_slice::<TaskRecord>(&stored).ok();
                            return Ok(if theirs.and_then(|r| r.claim) == record.claim {
                                Claim::Ours
                            } else {
                                Claim::Taken
                            });
                        }
                        Ok(None) => "the claim vanished".to_string(),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(failure);
            }
            tracing::debug!(worker = %self.id, task = %task_id, "claiming the task failed, retrying: {failure}");
            retried = true;
            tokio::time::sleep(KV_RETRY_PAUSE).await;
        }
    }

    /// [`Shared::read_session`], retried within [`KV_RETRY_WINDOW`] when the read fails.
    async fn read_session_retrying(&self, name: &str) -> super::session::StoredSession {
        let deadline = Instant::now() + KV_RETRY_WINDOW;
        loop {
            match self.read_session(name).await {
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(worker = %self.id, session = %name, "{e}; retrying");
                    tokio::time::sleep(KV_RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    pub(super) async fn answer_malformed(&self, m: &Message, why: &str) {
        // Reply with a failed result where the message says where; the plugin drops silently.
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) else {
            return;
        };
        let Some(task_id) = v.get("taskID").and_then(|t| t.as_str()) else {
            return;
        };
        let subject = v
            .pointer("/callback/resultSubject")
            .and_then(|s| s.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| self.subjects.result_of(task_id));
        let mut r =
            ResultMessage::failure(task_id, "", "", &format!("malformed task message: {why}"));
        r.worker = Some(self.id.clone());
        self.publish_json(&subject, &r).await;
    }

    pub(super) async fn on_duplicate(&self, m: &Message, task: &TaskMessage, callback: &Callback) {
        let record = self
            .tasks
            .get(&task.task_id)
            .await
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<TaskRecord>(&b).ok());
        let reason = match &record {
            Some(r) if r.state == TaskState::Done => format!("already done by `{}`", r.worker),
            Some(r) => format!("already running on `{}`", r.worker),
            None => "already claimed".to_string(),
        };
        tracing::info!(worker = %self.id, task = %task.task_id, "duplicate delivery: {reason}");
        self.ack(
            m.reply.as_ref(),
            &task.task_id,
            AckStatus::Duplicate,
            Some(reason),
        )
        .await;
        // A redelivered finished task gets its stored result again (first result wins).
        if let Some(result) = record.and_then(|r| r.result) {
            self.publish_json(&callback.result_subject, &result).await;
        }
    }
}

/// The worker's span of one task: a child of the client's span when the message carries a
/// W3C `traceparent` header (see PROTOCOL.md), so client and worker share one trace.
fn worker_span(m: &Message, task: &TaskMessage, worker: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: station_core::telemetry::TARGET,
        "nats.worker.task",
        station.task_id = %station_core::redact::redact(&task.task_id),
        station.worker = %station_core::redact::redact(worker),
    );
    if let Some(headers) = &m.headers {
        let carrier: std::collections::BTreeMap<String, String> = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| {
                let value = headers.get(name)?.as_str();
                Some((name.to_string(), value.to_string()))
            })
            .collect();
        station_core::telemetry::set_remote_parent(&span, &carrier);
    }
    span
}
