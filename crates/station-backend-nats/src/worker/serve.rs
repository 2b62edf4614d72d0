//! A bound worker's serve loop and its graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::Client;
use futures_util::{FutureExt, StreamExt};
use station_core::{CancelSignal, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::shared::Shared;
use crate::conn::unavailable;

/// A worker that is connected and subscribed; [`BoundWorker::run`] serves its tasks.
#[derive(Debug)]
pub struct BoundWorker {
    pub(super) client: Client,
    pub(super) shared: Arc<Shared>,
    pub(super) task_sub: async_nats::Subscriber,
    pub(super) cancel_sub: async_nats::Subscriber,
    pub(super) ping_sub: async_nats::Subscriber,
    pub(super) git_sub: async_nats::Subscriber,
}

impl BoundWorker {
    /// Serve tasks until `shutdown` fires, then shut down gracefully (see
    /// [`Worker::run`](super::Worker::run)).
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let BoundWorker {
            client,
            shared,
            mut task_sub,
            mut cancel_sub,
            mut ping_sub,
            mut git_sub,
        } = self;
        let mut handlers: JoinSet<()> = JoinSet::new();
        let mut closed = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                m = task_sub.next() => match m {
                    Some(m) => { handlers.spawn(shared.clone().handle_task(m)); }
                    None => { closed = true; break; }
                },
                m = cancel_sub.next() => match m {
                    Some(m) => shared.on_cancel(&m),
                    None => { closed = true; break; }
                },
                m = ping_sub.next() => match m {
                    Some(m) => shared.on_ping(m).await,
                    None => { closed = true; break; }
                },
                m = git_sub.next() => match m {
                    Some(m) => { handlers.spawn(shared.clone().handle_git(m)); }
                    None => { closed = true; break; }
                },
                Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
            }
        }

        // Take no new tasks; answer the ones already delivered to us so nobody waits for them.
        let _ = task_sub.unsubscribe().await;
        while let Some(Some(m)) = task_sub.next().now_or_never() {
            shared.refuse(m, "the worker is shutting down").await;
        }
        let deadline = tokio::time::Instant::now() + shared.options.shutdown_grace;
        let mut cancels_open = true;
        while !handlers.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = handlers.join_next() => {}
                m = cancel_sub.next(), if cancels_open => match m {
                    Some(m) => shared.on_cancel(&m),
                    None => cancels_open = false,
                },
            }
        }
        if !handlers.is_empty() {
            let signals: Vec<CancelSignal> =
                shared.lock_cancels().running.values().cloned().collect();
            tracing::warn!(worker = %shared.id, tasks = signals.len(), "shutdown grace period over; cancelling in-flight tasks");
            shared.shutting_down.store(true, Ordering::SeqCst);
            for s in signals {
                s.cancel();
            }
            // The executor's own grace, then the result has to be stored and published.
            let deadline =
                tokio::time::Instant::now() + shared.options.cancel_grace + Duration::from_secs(10);
            while !handlers.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = handlers.join_next() => {}
                }
            }
            handlers.abort_all();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        if closed {
            return Err(unavailable("the NATS connection closed"));
        }
        Ok(())
    }
}
