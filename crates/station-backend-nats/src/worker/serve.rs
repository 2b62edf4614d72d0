//! A bound worker's serve loop (with its capacity limit) and its graceful shutdown.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{Client, Subscriber};
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
    /// `None` while the worker is at its `max_tasks` (out of the queue group).
    pub(super) task_sub: Option<Subscriber>,
    pub(super) cancel_sub: Subscriber,
    pub(super) ping_sub: Subscriber,
    pub(super) git_sub: Subscriber,
    pub(super) queue_group: String,
}

/// The next message of an optional subscription (pending forever when there is none).
async fn next_of(sub: &mut Option<Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

impl BoundWorker {
    /// Serve tasks until `shutdown` fires, then shut down gracefully (see
    /// [`Worker::run`](super::Worker::run)).
    ///
    /// With `max_tasks`, a worker that reaches it unsubscribes from the task subject (the
    /// queue group then hands tasks to the other members) and answers tasks already on their
    /// way to it with a `busy` rejection, which the client publishes again; it subscribes
    /// again as soon as a task ends.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let BoundWorker {
            client,
            shared,
            mut task_sub,
            mut cancel_sub,
            mut ping_sub,
            mut git_sub,
            queue_group,
        } = self;
        let max_tasks = shared.options.max_tasks.unwrap_or(usize::MAX);
        let mut handlers: JoinSet<()> = JoinSet::new();
        // Handlers that run tasks (not git requests): they count against `max_tasks`.
        let mut task_handlers: HashSet<tokio::task::Id> = HashSet::new();
        // The subscription left at capacity: messages already delivered to it are refused.
        let mut draining: Option<Subscriber> = None;
        let mut closed = false;
        loop {
            if task_sub.is_none() && task_handlers.len() < max_tasks {
                match client
                    .queue_subscribe(shared.subjects.task.clone(), queue_group.clone())
                    .await
                {
                    Ok(sub) => {
                        tracing::debug!(worker = %shared.id, "free capacity: back in the queue group");
                        task_sub = Some(sub);
                    }
                    Err(e) => {
                        tracing::warn!(worker = %shared.id, "cannot subscribe to {} again: {e}", shared.subjects.task);
                        closed = true;
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                m = next_of(&mut task_sub) => match m {
                    Some(m) => {
                        let handle = handlers.spawn(shared.clone().handle_task(m));
                        task_handlers.insert(handle.id());
                        if task_handlers.len() >= max_tasks
                            && let Some(mut full) = task_sub.take()
                        {
                            tracing::debug!(worker = %shared.id, running = task_handlers.len(), "at max_tasks: leaving the queue group");
                            let _ = full.unsubscribe().await;
                            draining = Some(full);
                        }
                    }
                    None => { closed = true; break; }
                },
                m = next_of(&mut draining) => match m {
                    Some(m) => {
                        let why = format!("at capacity ({max_tasks} task(s) running)");
                        shared.refuse(m, &why, true).await;
                    }
                    None => draining = None,
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
                Some(done) = handlers.join_next_with_id(), if !handlers.is_empty() => {
                    let id = match &done {
                        Ok((id, ())) => *id,
                        Err(e) => e.id(),
                    };
                    task_handlers.remove(&id);
                }
            }
        }

        // Take no new tasks; answer the ones already delivered to us so nobody waits for them.
        for mut sub in [task_sub, draining].into_iter().flatten() {
            let _ = sub.unsubscribe().await;
            while let Some(Some(m)) = sub.next().now_or_never() {
                shared.refuse(m, "the worker is shutting down", false).await;
            }
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
