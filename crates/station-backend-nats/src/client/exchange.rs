//! One task in flight: publish it, follow its events, acks and heartbeats until the result.

use std::time::{Duration, Instant};

use async_nats::{Client, Message, StatusCode, Subscriber};
use futures_util::{FutureExt, StreamExt};
use station_core::{Error, EventKind, ExecContext, Outcome, Result, StopReason, ToolCall};

use super::NatsBackend;
use crate::conn::unavailable;
use crate::wire::{
    self, Ack, AckStatus, Callback, CancelMessage, Heartbeat, ResultMessage, StreamEvent,
};

/// The policy gap of a task a Station OpenCode plugin ran.
const PLUGIN_GAP: &str = "every rule: the task ran on a Station OpenCode plugin, which does not know the policy (its OpenCode's own permission config applied); serve the task subject with `stn worker` instead";

/// One task in flight: its subscriptions and what has been seen so far.
#[derive(Debug)]
pub(super) struct Exchange {
    task_id: String,
    session_name: String,
    events: Subscriber,
    beats: Subscriber,
    results: Subscriber,
    acks: Subscriber,
    ack_inbox: String,
    last_seq: u64,
    tool_calls: Vec<ToolCall>,
    worker: Option<String>,
    /// For the cancel sent when the exchange is dropped before the task ended.
    client: Client,
    cancel_subject: String,
    ended: bool,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Dropped mid-task (the caller's runner gave up on us): tell the worker to stop.
        if self.ended {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let msg = CancelMessage {
            task_id: self.task_id.clone(),
            reason: "cancelled".into(),
        };
        let Ok(payload) = serde_json::to_vec(&msg) else {
            return;
        };
        let (client, subject) = (self.client.clone(), self.cancel_subject.clone());
        runtime.spawn(async move {
            let _ = client.publish(subject, payload.into()).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
        });
    }
}

/// Rejected deliveries (a worker shutting down) are published again this many times.
const MAX_PUBLISH_ATTEMPTS: u32 = 3;
/// Missed heartbeats after which a worker counts as dead.
const MISSED_BEATS: u32 = 3;
/// How often the loop looks at the clock, the connection and the liveness window.
const TICK: Duration = Duration::from_millis(200);
/// How often the stored result is checked while waiting.
const STORE_POLL: Duration = Duration::from_secs(5);
/// How long to collect worker pings after "no responders" (busy workers still answer).
const PING_WAIT: Duration = Duration::from_millis(300);
/// How long "no responders" with no worker answering a ping is retried before failing.
const NO_WORKER_GRACE: Duration = Duration::from_secs(2);
const NO_WORKER_RETRY: Duration = Duration::from_millis(400);
/// How long a silent worker has to answer a ping before it counts as dead.
const LIVENESS_PING_WAIT: Duration = Duration::from_secs(1);

/// Waiting for a worker with free capacity.
#[derive(Debug)]
struct CapacityWait {
    started: Instant,
    limit: Duration,
    retries: u32,
    announced: bool,
    /// When to publish the task again.
    retry_at: Option<Instant>,
}

impl CapacityWait {
    fn new(limit: Duration) -> Self {
        CapacityWait {
            started: Instant::now(),
            limit,
            retries: 0,
            announced: false,
            retry_at: None,
        }
    }
}

impl Exchange {
    /// Subscribe to the task's stream, heartbeat, result and ack subjects, all before the task
    /// is published so nothing is missed.
    pub(super) async fn open(
        backend: &NatsBackend,
        task_id: &str,
        session_name: &str,
        callback: &Callback,
    ) -> Result<Exchange> {
        let client = &backend.client;
        let sub = |subject: String| async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| unavailable(format!("subscribing to {subject}: {e}")))
        };
        let events = sub(callback.stream_subject.clone()).await?;
        let beats = sub(wire::heartbeat_subject(&callback.stream_subject)).await?;
        let results = sub(callback.result_subject.clone()).await?;
        let ack_inbox = client.new_inbox();
        let acks = sub(ack_inbox.clone()).await?;
        Ok(Exchange {
            task_id: task_id.to_string(),
            session_name: session_name.to_string(),
            events,
            beats,
            results,
            acks,
            ack_inbox,
            last_seq: 0,
            tool_calls: Vec::new(),
            worker: None,
            client: client.clone(),
            cancel_subject: backend.subjects.cancel(),
            ended: false,
        })
    }

    async fn publish(&self, backend: &NatsBackend, payload: bytes::Bytes) -> Result<()> {
        let subject = &backend.subjects.task;
        // The task span's W3C trace context, so the worker's spans join this trace. Only
        // set when stn exports traces; a plugin worker ignores headers.
        let trace = station_core::telemetry::current_context();
        let published = if trace.is_empty() {
            backend
                .client
                .publish_with_reply(subject.clone(), self.ack_inbox.clone(), payload)
                .await
        } else {
            let mut headers = async_nats::HeaderMap::new();
            for (name, value) in &trace {
                headers.insert(name.as_str(), value.as_str());
            }
            backend
                .client
                .publish_with_reply_and_headers(
                    subject.clone(),
                    self.ack_inbox.clone(),
                    headers,
                    payload,
                )
                .await
        };
        published.map_err(|e| unavailable(format!("publishing the task on {subject}: {e}")))?;
        tokio::time::timeout(Duration::from_secs(5), backend.client.flush())
            .await
            .map_err(|_| unavailable(format!("publishing the task on {subject} timed out")))?
            .map_err(|e| unavailable(format!("publishing the task on {subject}: {e}")))
    }

    /// Publish the task and follow it to its result. `deadline` is the task's own: a task no
    /// worker has room for within it (or within `capacity_wait`) fails with "no capacity".
    pub(super) async fn run(
        mut self,
        backend: &NatsBackend,
        payload: bytes::Bytes,
        ctx: ExecContext,
        deadline: Duration,
    ) -> Result<Outcome> {
        let subject = backend.subjects.task.clone();
        let mut capacity = CapacityWait::new(backend.options.capacity_wait.unwrap_or(deadline));
        let mut disconnected_since: Option<Instant> = None;
        let mut no_worker_since: Option<Instant> = None;
        self.publish(backend, payload.clone()).await?;
        let mut attempts = 1;
        let mut published_at = Instant::now();
        let mut acknowledged = false;
        let mut plugin_mode = false;
        // Liveness is enforced once a worker has shown it sends heartbeats.
        let mut liveness: Option<Duration> = None;
        let mut last_heard = Instant::now();
        let mut was_disconnected = false;
        let mut last_store_poll = Instant::now();
        let mut cancel_sent: Option<(Instant, StopReason)> = None;
        let mut tick = tokio::time::interval(TICK);
        loop {
            // Biased, in causal order: a worker's ack precedes its events, and its events precede
            // its result; polling at random could see a result or event before the ack.
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled(), if cancel_sent.is_none() => {
                    let reason = ctx.cancel.reason().unwrap_or(StopReason::Cancelled);
                    self.send_cancel(backend, reason).await;
                    cancel_sent = Some((Instant::now(), reason));
                }
                m = self.acks.next() => {
                    let Some(m) = m else { return Err(self.closed(backend)) };
                    if m.status == Some(StatusCode::NO_RESPONDERS) {
                        // Workers at their max_tasks leave the task subject but answer pings.
                        let workers = backend.workers(PING_WAIT).await.unwrap_or_default();
                        if workers.is_empty() {
                            // A node that just (re)started has not yet learnt the cluster's
                            // subscriptions: ask again briefly before calling it "no worker".
                            let since = *no_worker_since.get_or_insert_with(Instant::now);
                            if since.elapsed() < NO_WORKER_GRACE {
                                tokio::time::sleep(NO_WORKER_RETRY).await;
                                self.publish(backend, payload.clone()).await?;
                                published_at = Instant::now();
                                continue;
                            }
                            self.ended = true;
                            return Err(unavailable(format!(
                                "no worker is listening on {subject}; start one with `stn worker` (or run OpenCode with the Station plugin) against {}",
                                backend.url
                            )));
                        }
                        let busy = workers.iter().map(|w| format!("`{}` {}/{}", w.worker, w.running, w.max_tasks.map_or("∞".into(), |n| n.to_string()))).collect::<Vec<_>>().join(", ");
                        self.wait_for_capacity(&mut capacity, &ctx, &busy)?;
                        continue;
                    }
                    let Ok(ack) = serde_json::from_slice::<Ack>(&m.payload) else { continue };
                    match ack.status {
                        AckStatus::Accepted | AckStatus::Duplicate => {
                            acknowledged = true;
                            last_heard = Instant::now();
                            let beat = Duration::from_secs(ack.heartbeat_sec.max(1));
                            liveness = Some(beat.max(backend.heartbeat) * MISSED_BEATS);
                            if ack.status == AckStatus::Duplicate {
                                ctx.events.emit(EventKind::Notice {
                                    message: format!(
                                        "worker `{}` ignored a duplicate delivery: {}",
                                        ack.worker,
                                        ack.reason.unwrap_or_default()
                                    ),
                                });
                            } else {
                                ctx.events.emit(EventKind::Notice {
                                    message: format!("worker `{}` accepted the task", ack.worker),
                                });
                                self.worker = Some(ack.worker);
                            }
                        }
                        AckStatus::Rejected if !acknowledged && ack.busy => {
                            let busy = format!("`{}`: {}", ack.worker, ack.reason.unwrap_or_default());
                            self.wait_for_capacity(&mut capacity, &ctx, &busy)?;
                        }
                        AckStatus::Rejected if !acknowledged => {
                            if attempts >= MAX_PUBLISH_ATTEMPTS {
                                return Err(unavailable(format!(
                                    "workers on {subject} rejected the task {attempts} times (last: `{}`: {})",
                                    ack.worker,
                                    ack.reason.unwrap_or_default()
                                )));
                            }
                            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempts))).await;
                            self.publish(backend, payload.clone()).await?;
                            attempts += 1;
                            published_at = Instant::now();
                        }
                        AckStatus::Rejected => {}
                    }
                }
                m = self.beats.next() => {
                    let Some(m) = m else { return Err(self.closed(backend)) };
                    if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&m.payload) {
                        last_heard = Instant::now();
                        // A worker has the task (it beats while it claims it): no republish.
                        acknowledged = true;
                        liveness.get_or_insert(backend.heartbeat * MISSED_BEATS);
                        self.worker.get_or_insert(beat.worker);
                    }
                }
                m = self.events.next() => {
                    let Some(m) = m else { return Err(self.closed(backend)) };
                    last_heard = Instant::now();
                    if !acknowledged && !plugin_mode {
                        // A plugin answers with events, never with an ack.
                        plugin_mode = true;
                    }
                    self.on_event(&m, &ctx);
                }
                m = self.results.next() => {
                    let Some(m) = m else { return Err(self.closed(backend)) };
                    match serde_json::from_slice::<ResultMessage>(&m.payload) {
                        Ok(r) if r.task_id.is_empty() || r.task_id == self.task_id => {
                            return Ok(self.finish(r, &ctx));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            ctx.events.emit(EventKind::Notice {
                                message: format!("ignored a malformed result on {}: {e}", m.subject),
                            });
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if capacity.retry_at.is_some_and(|at| now >= at) && !acknowledged {
                        capacity.retry_at = None;
                        self.publish(backend, payload.clone()).await?;
                        published_at = Instant::now();
                    }
                    if let Some((at, reason)) = cancel_sent
                        && now.duration_since(at) >= backend.options.cancel_grace
                    {
                            if let Some(r) = backend.stored_result(&self.task_id).await {
                                return Ok(self.finish(r, &ctx));
                            }
                            self.ended = true;
                            let why = if reason == StopReason::Timeout { "timed out" } else { "was cancelled" };
                            return Ok(Outcome {
                                backend_session_id: Some(self.session_name.clone()),
                                ..Outcome::failed(reason, format!(
                                    "the task {why}; the worker did not confirm within {}s",
                                    backend.options.cancel_grace.as_secs()
                                ))
                            });
                    }
                    if backend.client.connection_state() != async_nats::connection::State::Connected {
                        // Our own link is down: silence is not the worker's fault. The wait
                        // for a reconnect (to any server of the list) is bounded.
                        was_disconnected = true;
                        last_heard = now;
                        let since = *disconnected_since.get_or_insert(now);
                        if now.duration_since(since) >= backend.options.reconnect_wait {
                            self.send_cancel(backend, StopReason::Cancelled).await;
                            self.ended = true;
                            return Err(unavailable(format!(
                                "lost the connection to every NATS server of coding.nats.url ({}) for {}s while task {} was running; check that the servers are up (its result stays in the tasks bucket for 24 h)",
                                backend.url,
                                backend.options.reconnect_wait.as_secs(),
                                self.task_id
                            )));
                        }
                        continue;
                    }
                    disconnected_since = None;
                    if was_disconnected {
                        was_disconnected = false;
                        last_heard = now;
                        ctx.events.emit(EventKind::Notice {
                            message: format!("reconnected to NATS at {}", backend.url),
                        });
                        if let Some(r) = backend.stored_result(&self.task_id).await {
                            return Ok(self.finish(r, &ctx));
                        }
                    }
                    if !acknowledged && !plugin_mode && capacity.retry_at.is_none() && now.duration_since(published_at) >= backend.options.ack_timeout {
                        // Station workers are there but none acked: the message was lost on
                        // the way (core NATS is at most once; a node died under it). Publish
                        // again: a worker's claim keeps the task from running twice.
                        if attempts < MAX_PUBLISH_ATTEMPTS
                            && !backend.workers(PING_WAIT).await.unwrap_or_default().is_empty()
                        {
                            ctx.events.emit(EventKind::Notice {
                                message: format!(
                                    "no worker acknowledged the task within {}s; publishing it again",
                                    backend.options.ack_timeout.as_secs()
                                ),
                            });
                            self.publish(backend, payload.clone()).await?;
                            attempts += 1;
                            published_at = Instant::now();
                            continue;
                        }
                        if backend.options.require_ack {
                            return Err(unavailable(format!(
                                "no worker acknowledged the task on {subject} within {}s; is `stn worker` running against {}?",
                                backend.options.ack_timeout.as_secs(),
                                backend.url
                            )));
                        }
                        plugin_mode = true;
                        ctx.events.emit(EventKind::Notice {
                            message: format!(
                                "no Station worker acknowledged the task within {}s; waiting for a plugin's result (no liveness checks)",
                                backend.options.ack_timeout.as_secs()
                            ),
                        });
                    }
                    if now.duration_since(last_store_poll) >= STORE_POLL {
                        last_store_poll = now;
                        if let Some(r) = backend.stored_result(&self.task_id).await {
                            return Ok(self.finish(r, &ctx));
                        }
                    }
                    if let Some(window) = liveness
                        && now.duration_since(last_heard) >= window
                    {
                            if let Some(r) = backend.stored_result(&self.task_id).await {
                                return Ok(self.finish(r, &ctx));
                            }
                            // Beats are core NATS (at most once) and are lost while the worker
                            // reconnects after a node restart: a worker that still answers a
                            // ping with a task running is alive. The task deadline bounds this.
                            if self.worker_still_running(backend).await {
                                last_heard = now;
                                continue;
                            }
                            // It may be alive behind a partition: ask it to stop anyway.
                            self.send_cancel(backend, StopReason::Cancelled).await;
                            self.ended = true;
                            let who = self.worker.clone().unwrap_or_else(|| "?".into());
                            return Err(unavailable(format!(
                                "worker `{who}` sent no heartbeat for {}s (expected one every {}s); it died or lost its NATS connection, and the task did not finish",
                                window.as_secs(),
                                backend.heartbeat.as_secs()
                            )));
                    }
                }
            }
        }
    }

    /// Whether the worker that took the task answers a ping and still runs a task.
    async fn worker_still_running(&self, backend: &NatsBackend) -> bool {
        let Some(who) = &self.worker else {
            return false;
        };
        backend
            .workers(LIVENESS_PING_WAIT)
            .await
            .unwrap_or_default()
            .iter()
            .any(|w| &w.worker == who && w.running > 0)
    }

    /// Every worker is at its `max_tasks`: publish again after a back-off, or fail with "no
    /// capacity" once the capacity deadline has passed.
    fn wait_for_capacity(
        &mut self,
        capacity: &mut CapacityWait,
        ctx: &ExecContext,
        busy: &str,
    ) -> Result<()> {
        let waited = capacity.started.elapsed();
        if waited >= capacity.limit {
            self.ended = true;
            return Err(unavailable(format!(
                "no capacity: no worker could take task {} within {}s; every worker is at its max_tasks ({busy}); start more workers, raise --max-tasks / coding.nats.worker.max_tasks, or submit later",
                self.task_id,
                capacity.limit.as_secs()
            )));
        }
        if !capacity.announced {
            capacity.announced = true;
            ctx.events.emit(EventKind::Notice {
                message: format!(
                    "every worker is busy ({busy}); waiting up to {}s for free capacity",
                    capacity.limit.as_secs()
                ),
            });
        }
        capacity.retries += 1;
        let backoff = Duration::from_millis(50 * u64::from(capacity.retries.min(20)));
        let left = capacity.limit.saturating_sub(waited);
        capacity.retry_at = Some(Instant::now() + backoff.min(left));
        Ok(())
    }

    fn closed(&self, backend: &NatsBackend) -> Error {
        unavailable(format!(
            "the NATS connection to {} closed while task {} was running",
            backend.url, self.task_id
        ))
    }

    async fn send_cancel(&self, backend: &NatsBackend, reason: StopReason) {
        let msg = CancelMessage {
            task_id: self.task_id.clone(),
            reason: if reason == StopReason::Timeout {
                "timeout"
            } else {
                "cancelled"
            }
            .into(),
        };
        let Ok(payload) = serde_json::to_vec(&msg) else {
            return;
        };
        if let Err(e) = backend
            .client
            .publish(backend.subjects.cancel(), payload.into())
            .await
        {
            tracing::warn!(task = %self.task_id, "could not publish the cancel: {e}");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), backend.client.flush()).await;
    }

    fn on_event(&mut self, m: &Message, ctx: &ExecContext) {
        let ev: StreamEvent = match serde_json::from_slice(&m.payload) {
            Ok(ev) => ev,
            Err(e) => {
                ctx.events.emit(EventKind::Notice {
                    message: format!("ignored a malformed event on {}: {e}", m.subject),
                });
                return;
            }
        };
        if !ev.task_id.is_empty() && ev.task_id != self.task_id {
            return;
        }
        if ev.seq > 0 {
            if ev.seq <= self.last_seq {
                // A second plugin instance replays the same task: keep the first stream.
                return;
            }
            if ev.seq > self.last_seq + 1 && self.last_seq > 0 {
                ctx.events.emit(EventKind::Notice {
                    message: format!(
                        "{} event(s) from the worker were lost (NATS reconnect?)",
                        ev.seq - self.last_seq - 1
                    ),
                });
            }
            self.last_seq = ev.seq;
        }
        if let Some(call) = wire::tool_call_from_stream(&ev) {
            self.tool_calls.push(call);
        }
        if let Some(kind) = wire::core_event_from_stream(&ev) {
            ctx.events.emit(kind);
        }
    }

    /// Take the result: first every event that arrived before it, then the outcome.
    fn finish(mut self, result: ResultMessage, ctx: &ExecContext) -> Outcome {
        self.ended = true;
        while let Some(Some(m)) = self.events.next().now_or_never() {
            self.on_event(&m, ctx);
        }
        let calls = std::mem::take(&mut self.tool_calls);
        let mut outcome = result.to_outcome(&self.session_name, calls);
        // Only Station workers enforce the policy sent with the task.
        if self.worker.is_none() && result.worker.is_none() {
            outcome.policy_gaps.push(PLUGIN_GAP.to_string());
        }
        outcome
    }
}
