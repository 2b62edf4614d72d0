//! A task's event stream (one ordered sequence) and its heartbeats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use station_core::EventKind;

use super::shared::Shared;
use crate::wire::{self, Heartbeat, StreamEvent};

/// The event stream of one task: one sequence, published in order.
#[derive(Debug)]
pub(super) struct TaskStream {
    shared: Arc<Shared>,
    task_id: String,
    subject: String,
    seq: Arc<AtomicU64>,
}

impl TaskStream {
    pub(super) fn new(shared: Arc<Shared>, task_id: &str, subject: &str) -> Self {
        TaskStream {
            shared,
            task_id: task_id.to_string(),
            subject: subject.to_string(),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn seq_counter(&self) -> Arc<AtomicU64> {
        self.seq.clone()
    }

    pub(super) fn published(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    pub(super) fn blank(&self) -> StreamEvent {
        StreamEvent {
            task_id: self.task_id.clone(),
            seq: 0,
            timestamp: String::new(),
            kind: String::new(),
            content: None,
            tool: None,
            git: None,
            session: None,
            event: None,
            worker: Some(self.shared.id.clone()),
        }
    }

    pub(super) async fn publish(&self, mut ev: StreamEvent) {
        ev.seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        ev.timestamp = wire::now_iso();
        self.shared.publish_json(&self.subject, &ev).await;
    }

    pub(super) async fn publish_core(&self, kind: &EventKind) {
        let ev = wire::stream_event_from_core(&self.task_id, 0, &self.shared.id, kind);
        self.publish(ev).await;
    }
}

pub(super) async fn heartbeat_loop(
    shared: Arc<Shared>,
    task_id: String,
    subject: String,
    seq: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(shared.heartbeat);
    loop {
        tick.tick().await;
        let beat = Heartbeat {
            task_id: task_id.clone(),
            worker: shared.id.clone(),
            timestamp: wire::now_iso(),
            seq: seq.load(Ordering::SeqCst),
        };
        shared.publish_json(&subject, &beat).await;
    }
}

pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
