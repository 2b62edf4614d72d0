//! What every task handler shares: connection, buckets, cancels; pings, acks and refusals.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use async_nats::{Client, Message};
use station_core::{CancelSignal, CodingBackend, StopReason};

use super::WorkerOptions;
use crate::wire::{
    Ack, AckStatus, Callback, CancelMessage, ResultMessage, Subjects, TaskMessage, WorkerInfo,
};

/// What every task handler shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) sessions: kv::Store,
    pub(super) tasks: kv::Store,
    pub(super) executor: Arc<dyn CodingBackend>,
    pub(super) base: PathBuf,
    pub(super) subjects: Subjects,
    pub(super) heartbeat: Duration,
    pub(super) options: WorkerOptions,
    pub(super) id: String,
    pub(super) cancels: Mutex<Cancels>,
    /// Set when the shutdown grace ran out and in-flight tasks were cancelled.
    pub(super) shutting_down: AtomicBool,
}

/// Running tasks' cancel signals, and cancels that arrived before their task.
#[derive(Debug, Default)]
pub(super) struct Cancels {
    pub(super) running: HashMap<String, CancelSignal>,
    /// Task id → when the cancel arrived and why (pruned after [`EARLY_CANCEL_TTL`]).
    pub(super) early: HashMap<String, (Instant, StopReason)>,
}

/// Keep early cancels this long.
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(600);
/// Keep at most this many early cancels.
const EARLY_CANCEL_MAX: usize = 10_000;

impl Shared {
    pub(super) fn lock_cancels(&self) -> std::sync::MutexGuard<'_, Cancels> {
        self.cancels.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn on_cancel(&self, m: &Message) {
        let Ok(msg) = serde_json::from_slice::<CancelMessage>(&m.payload) else {
            return;
        };
        let reason = if msg.reason == "timeout" {
            StopReason::Timeout
        } else {
            StopReason::Cancelled
        };
        // One lock for both maps, so a cancel racing its task's start is never lost.
        let mut cancels = self.lock_cancels();
        if let Some(signal) = cancels.running.get(&msg.task_id) {
            tracing::info!(worker = %self.id, task = %msg.task_id, "cancel requested");
            signal.cancel_with(reason);
            return;
        }
        cancels
            .early
            .retain(|_, (at, _)| at.elapsed() < EARLY_CANCEL_TTL);
        if cancels.early.len() < EARLY_CANCEL_MAX {
            cancels.early.insert(msg.task_id, (Instant::now(), reason));
        }
    }

    pub(super) async fn on_ping(&self, m: Message) {
        let Some(reply) = m.reply else { return };
        let info = WorkerInfo {
            worker: self.id.clone(),
            executor: self.executor.name().to_string(),
            running: self.lock_cancels().running.len(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_tasks: self.options.max_tasks,
        };
        if let Ok(payload) = serde_json::to_vec(&info) {
            let _ = self.client.publish(reply, payload.into()).await;
        }
    }

    pub(super) async fn publish_json<T: serde::Serialize>(&self, subject: &str, value: &T) {
        match serde_json::to_vec(value) {
            Ok(payload) => {
                if let Err(e) = self
                    .client
                    .publish(subject.to_string(), payload.into())
                    .await
                {
                    tracing::warn!(worker = %self.id, %subject, "publish failed: {e}");
                }
            }
            Err(e) => tracing::warn!(worker = %self.id, %subject, "encoding failed: {e}"),
        }
    }

    pub(super) async fn ack(
        &self,
        reply: Option<&async_nats::Subject>,
        task_id: &str,
        status: AckStatus,
        reason: Option<String>,
    ) {
        self.send_ack(reply, task_id, status, reason, false).await;
    }

    pub(super) async fn send_ack(
        &self,
        reply: Option<&async_nats::Subject>,
        task_id: &str,
        status: AckStatus,
        reason: Option<String>,
        busy: bool,
    ) {
        let Some(reply) = reply else { return };
        let ack = Ack {
            task_id: task_id.to_string(),
            status,
            worker: self.id.clone(),
            heartbeat_sec: self.heartbeat.as_secs(),
            reason,
            busy,
        };
        self.publish_json(reply.as_str(), &ack).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
    }

    /// A delivered task this worker will not run: a client that asked for an ack publishes it
    /// again (to another worker); an old client gets a failed result instead of silence.
    pub(super) async fn refuse(&self, m: Message, why: &str, busy: bool) {
        let Ok(task) = serde_json::from_slice::<TaskMessage>(&m.payload) else {
            return;
        };
        if m.reply.is_some() {
            self.send_ack(
                m.reply.as_ref(),
                &task.task_id,
                AckStatus::Rejected,
                Some(why.into()),
                busy,
            )
            .await;
        } else {
            let callback = self.callback_of(&task);
            let mut r = ResultMessage::failure(
                &task.task_id,
                &task.session.name,
                &task.workspace.name,
                &format!("worker `{}` did not run the task: {why}", self.id),
            );
            r.worker = Some(self.id.clone());
            self.publish_json(&callback.result_subject, &r).await;
        }
    }

    pub(super) fn callback_of(&self, task: &TaskMessage) -> Callback {
        task.callback.clone().unwrap_or_else(|| Callback {
            stream_subject: self.subjects.stream_of(&task.task_id),
            result_subject: self.subjects.result_of(&task.task_id),
        })
    }
}

pub(super) struct Unregister<'a>(pub(super) &'a Shared, pub(super) String);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.lock_cancels().running.remove(&self.1);
    }
}
