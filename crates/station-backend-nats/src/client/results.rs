//! Stored results (fetched after a missed message) and waiting out a reconnect.

use std::time::{Duration, Instant};

use station_core::Result;

use super::NatsBackend;
use crate::conn::unavailable;
use crate::wire::{self, ResultMessage, TaskRecord, TaskState};

impl NatsBackend {
    /// The stored result of task `task_id`, once a Station worker finished it (kept 24 h).
    pub async fn task_result(&self, task_id: &str) -> Result<Option<ResultMessage>> {
        if !wire::is_valid_key(task_id) {
            return Ok(None);
        }
        let bytes =
            self.tasks.get(task_id).await.map_err(|e| {
                unavailable(format!("reading task {task_id} from JetStream KV: {e}"))
            })?;
        let record = bytes.and_then(|b| serde_json::from_slice::<TaskRecord>(&b).ok());
        Ok(record
            .filter(|r| r.state == TaskState::Done)
            .and_then(|r| r.result))
    }

    pub(super) async fn stored_result(&self, task_id: &str) -> Option<ResultMessage> {
        self.task_result(task_id).await.ok().flatten()
    }

    /// Wait (bounded) until the connection is up, for a task submitted during a reconnect.
    pub(super) async fn wait_connected(&self) -> Result<()> {
        let deadline = Instant::now() + self.options.connect_timeout;
        while self.client.connection_state() != async_nats::connection::State::Connected {
            if Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "not connected to NATS at {} (reconnecting for {}s); is nats-server running?",
                    self.url,
                    self.options.connect_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
