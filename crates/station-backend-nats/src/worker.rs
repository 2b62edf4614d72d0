//! The worker: takes tasks from the task subject (in a queue group, so many workers share the
//! load) and runs them on any [`CodingBackend`], answering the way the Station OpenCode plugin
//! does, plus acks, heartbeats, cancel, dedupe and stored results.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::NatsConfig;
use async_nats::jetstream::kv;
use async_nats::{Client, Message};
use futures_util::{FutureExt, StreamExt};
use station_core::{
    CancelSignal, CodingBackend, Error, EventKind, OpenRequest, Outcome, Result, RunOptions,
    Session, StopReason, Task, start_task,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::conn::{self, unavailable};
use crate::names::{check_inside, resolve_workspace};
use crate::wire::{
    self, Ack, AckStatus, Callback, CancelMessage, GitInfo, GitSpec, Heartbeat, Metrics,
    ResultMessage, ResultSession, ResultWorkspace, SessionInfo, SessionState, StreamEvent,
    Subjects, TaskMessage, TaskRecord, TaskState, WorkerInfo,
};

/// Prepares a workspace from `workspace.git` (clone when new, optionally pull when it exists).
/// The worker itself does no git; `stn worker` plugs in station-git here.
#[async_trait::async_trait]
pub trait PrepareWorkspace: Send + Sync + std::fmt::Debug {
    /// Make `dir` a checkout of `git`. `existed` says whether `dir` was there before the task.
    /// Returns the state to report (`url`, `branch`, `commit`).
    async fn prepare(&self, dir: &Path, git: &GitSpec, existed: bool) -> Result<GitInfo>;

    /// Run a git request (see `CodingBackend::git`) in the workspace `dir`, with the worker's
    /// own credentials.
    async fn run(
        &self,
        dir: &Path,
        request: station_core::git::GitRequest,
    ) -> Result<station_core::git::GitResponse> {
        let _ = (dir, request);
        Err(Error::not_supported(
            crate::conn::BACKEND,
            "git requests on this worker",
        ))
    }
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Its identity in acks, heartbeats and results; `<host>-<pid>-<random>` when absent.
    pub worker_id: Option<String>,
    /// The queue group on the task subject.
    pub queue_group: String,
    /// Deadline of the first connection attempt.
    pub connect_timeout: Duration,
    /// Deadline of a task whose message sets none (plugin-era Go Stations always set one).
    pub task_timeout: Duration,
    /// On shutdown, how long in-flight tasks may run on before they are cancelled.
    pub shutdown_grace: Duration,
    /// How long the executor may take to stop after a cancel before it is dropped.
    pub cancel_grace: Duration,
    /// The bucket with task claims and stored results (shared with clients).
    pub tasks_bucket: String,
    /// Git preparation; a task with `workspace.git` fails clearly without it.
    pub git: Option<Arc<dyn PrepareWorkspace>>,
    /// Keep retrying the first connection (every 2 s, until shutdown) instead of failing, for a
    /// worker that may start before its NATS server.
    pub wait_for_server: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            worker_id: None,
            queue_group: wire::QUEUE_GROUP.into(),
            connect_timeout: Duration::from_secs(5),
            task_timeout: Duration::from_secs(10 * 60),
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(10),
            tasks_bucket: wire::TASKS_BUCKET.into(),
            git: None,
            wait_for_server: false,
        }
    }
}

/// A worker. Build it with [`Worker::new`], then [`Worker::run`] it until shutdown.
#[derive(Debug)]
pub struct Worker {
    config: NatsConfig,
    executor: Arc<dyn CodingBackend>,
    workspace_base: PathBuf,
    options: WorkerOptions,
    id: String,
}

impl Worker {
    /// A worker that runs tasks on `executor` in workspaces under `workspace_base`.
    pub fn new(
        config: NatsConfig,
        executor: Arc<dyn CodingBackend>,
        workspace_base: PathBuf,
        options: WorkerOptions,
    ) -> Worker {
        let id = options.worker_id.clone().unwrap_or_else(default_worker_id);
        Worker {
            config,
            executor,
            workspace_base,
            options,
            id,
        }
    }

    /// Its identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Connect, serve tasks until `shutdown` fires, then shut down gracefully: take no new
    /// tasks, let in-flight ones finish within `shutdown_grace`, cancel the rest and publish a
    /// failed result for each. Returns `Err` when it cannot start (NATS, JetStream, base dir) or
    /// the connection closes for good. Same as [`Worker::bind`] then [`BoundWorker::run`].
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let bound = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            bound = self.bind() => bound?,
        };
        bound.run(shutdown).await
    }

    /// Connect and subscribe. Once this returns, tasks published on the task subject reach this
    /// worker (nobody sees "no worker is listening"); call [`BoundWorker::run`] to serve them.
    /// With `wait_for_server` it retries the connection until it succeeds.
    pub async fn bind(self) -> Result<BoundWorker> {
        std::fs::create_dir_all(&self.workspace_base).map_err(|e| {
            Error::io(
                format!(
                    "creating the workspace base {}",
                    self.workspace_base.display()
                ),
                e,
            )
        })?;
        let connection_name = format!("station-worker-{}", self.id);
        let client = loop {
            match conn::connect(&self.config, &connection_name, self.options.connect_timeout).await
            {
                Ok(client) => break client,
                Err(e @ Error::Unavailable { .. }) if self.options.wait_for_server => {
                    tracing::warn!(worker = %self.id, "{e}; retrying in 2s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let js = conn::jetstream(&client);
        let sessions =
            conn::open_bucket(&js, &self.config.kv.sessions, conn::SESSIONS_MAX_AGE).await?;
        let tasks = conn::open_bucket(&js, &self.options.tasks_bucket, conn::TASKS_MAX_AGE).await?;
        let subjects = Subjects::from_config(&self.config.subjects);
        let subscribe_err = |s: &str, e: async_nats::SubscribeError| {
            unavailable(format!("subscribing to {s}: {e}"))
        };
        let task_sub = client
            .queue_subscribe(subjects.task.clone(), self.options.queue_group.clone())
            .await
            .map_err(|e| subscribe_err(&subjects.task, e))?;
        let cancel_sub = client
            .subscribe(subjects.cancel())
            .await
            .map_err(|e| subscribe_err(&subjects.cancel(), e))?;
        let ping_sub = client
            .subscribe(subjects.ping())
            .await
            .map_err(|e| subscribe_err(&subjects.ping(), e))?;
        let git_sub = client
            .queue_subscribe(subjects.git(), self.options.queue_group.clone())
            .await
            .map_err(|e| subscribe_err(&subjects.git(), e))?;
        client
            .flush()
            .await
            .map_err(|e| unavailable(format!("registering subscriptions: {e}")))?;
        tracing::info!(worker = %self.id, subject = %subjects.task, group = %self.options.queue_group, "worker ready");

        let shared = Arc::new(Shared {
            client: client.clone(),
            sessions,
            tasks,
            executor: self.executor,
            base: self.workspace_base,
            subjects,
            heartbeat: Duration::from_secs(self.config.heartbeat_sec.max(1)),
            options: self.options,
            id: self.id,
            cancels: Mutex::new(Cancels::default()),
            shutting_down: AtomicBool::new(false),
        });
        Ok(BoundWorker {
            client,
            shared,
            task_sub,
            cancel_sub,
            ping_sub,
            git_sub,
        })
    }
}

/// A worker that is connected and subscribed; [`BoundWorker::run`] serves its tasks.
#[derive(Debug)]
pub struct BoundWorker {
    client: Client,
    shared: Arc<Shared>,
    task_sub: async_nats::Subscriber,
    cancel_sub: async_nats::Subscriber,
    ping_sub: async_nats::Subscriber,
    git_sub: async_nats::Subscriber,
}

impl BoundWorker {
    /// Serve tasks until `shutdown` fires, then shut down gracefully (see [`Worker::run`]).
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

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &nonce[nonce.len() - 6..]
    )
}

/// What every task handler shares.
#[derive(Debug)]
struct Shared {
    client: Client,
    sessions: kv::Store,
    tasks: kv::Store,
    executor: Arc<dyn CodingBackend>,
    base: PathBuf,
    subjects: Subjects,
    heartbeat: Duration,
    options: WorkerOptions,
    id: String,
    cancels: Mutex<Cancels>,
    /// Set when the shutdown grace ran out and in-flight tasks were cancelled.
    shutting_down: AtomicBool,
}

/// Running tasks' cancel signals, and cancels that arrived before their task.
#[derive(Debug, Default)]
struct Cancels {
    running: HashMap<String, CancelSignal>,
    /// Task id → when the cancel arrived and why (pruned after [`EARLY_CANCEL_TTL`]).
    early: HashMap<String, (Instant, StopReason)>,
}

/// Keep early cancels this long.
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(600);
/// Keep at most this many early cancels.
const EARLY_CANCEL_MAX: usize = 10_000;
/// How long a final result is retried into the store (it must survive a server restart).
const STORE_DEADLINE: Duration = Duration::from_secs(60);

impl Shared {
    fn lock_cancels(&self) -> std::sync::MutexGuard<'_, Cancels> {
        self.cancels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_cancel(&self, m: &Message) {
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

    /// Answer a git request for a session's workspace (extension).
    async fn handle_git(self: Arc<Self>, m: Message) {
        let Some(reply) = m.reply.clone() else { return };
        let mut answer = crate::wire::GitAnswer::from_result(self.run_git(&m).await);
        if let crate::wire::GitAnswer::Error { message, .. } = &mut answer {
            *message = station_core::redact::redact(message);
        }
        self.publish_json(&reply, &answer).await;
    }

    async fn run_git(&self, m: &Message) -> Result<station_core::git::GitResponse> {
        let command: crate::wire::GitCommand = serde_json::from_slice(&m.payload)
            .map_err(|e| Error::Protocol(format!("a git command is not valid: {e}")))?;
        let hook = self.options.git.as_ref().ok_or_else(|| {
            Error::not_supported(
                crate::conn::BACKEND,
                format!(
                    "git requests on worker `{}` (no git support configured)",
                    self.id
                ),
            )
        })?;
        let stored = if wire::is_valid_key(&command.session) {
            self.sessions
                .get(command.session.as_str())
                .await
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<SessionState>(&b).ok())
        } else {
            None
        };
        let name = stored
            .map(|s| s.workspace_name)
            .filter(|n| !n.is_empty())
            .unwrap_or(command.workspace);
        let dir = resolve_workspace(&self.base, &name).map_err(Error::config)?;
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: "workspace",
                id: format!("{name} on worker `{}`", self.id),
            });
        }
        let dir = check_inside(&self.base, &dir).map_err(Error::config)?;
        hook.run(&dir, command.request).await
    }

    async fn on_ping(&self, m: Message) {
        let Some(reply) = m.reply else { return };
        let info = WorkerInfo {
            worker: self.id.clone(),
            executor: self.executor.name().to_string(),
            running: self.lock_cancels().running.len(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        if let Ok(payload) = serde_json::to_vec(&info) {
            let _ = self.client.publish(reply, payload.into()).await;
        }
    }

    async fn publish_json<T: serde::Serialize>(&self, subject: &str, value: &T) {
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

    async fn ack(
        &self,
        reply: Option<&async_nats::Subject>,
        task_id: &str,
        status: AckStatus,
        reason: Option<String>,
    ) {
        let Some(reply) = reply else { return };
        let ack = Ack {
            task_id: task_id.to_string(),
            status,
            worker: self.id.clone(),
            heartbeat_sec: self.heartbeat.as_secs(),
            reason,
        };
        self.publish_json(reply.as_str(), &ack).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
    }

    /// A delivered task this worker will not run: a client that asked for an ack publishes it
    /// again (to another worker); an old client gets a failed result instead of silence.
    async fn refuse(&self, m: Message, why: &str) {
        let Ok(task) = serde_json::from_slice::<TaskMessage>(&m.payload) else {
            return;
        };
        if m.reply.is_some() {
            self.ack(
                m.reply.as_ref(),
                &task.task_id,
                AckStatus::Rejected,
                Some(why.into()),
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

    fn callback_of(&self, task: &TaskMessage) -> Callback {
        task.callback.clone().unwrap_or_else(|| Callback {
            stream_subject: self.subjects.stream_of(&task.task_id),
            result_subject: self.subjects.result_of(&task.task_id),
        })
    }

    async fn handle_task(self: Arc<Self>, m: Message) {
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
        // Claim the task id; a second delivery finds the claim and does not run it again.
        let claim = TaskRecord {
            state: TaskState::Running,
            worker: self.id.clone(),
            updated_at: wire::now_iso(),
            result: None,
        };
        let claim_bytes = serde_json::to_vec(&claim).unwrap_or_default();
        // The session state is read while the claim is made: two KV round trips in one.
        let (claimed, stored_session) = tokio::join!(
            self.tasks.create(&task.task_id, claim_bytes.into()),
            self.read_session(&task.session.name)
        );
        match claimed {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                self.on_duplicate(&m, &task, &callback).await;
                return;
            }
            Err(e) => {
                let mut r = ResultMessage::failure(
                    &task.task_id,
                    &task.session.name,
                    &task.workspace.name,
                    &format!(
                        "worker `{}` cannot record the task in JetStream KV: {e}",
                        self.id
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

        let stream = TaskStream::new(self.clone(), &task.task_id, &callback.stream_subject);
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.clone(),
            task.task_id.clone(),
            wire::heartbeat_subject(&callback.stream_subject),
            stream.seq_counter(),
        ));
        let _stop_heartbeat = AbortOnDrop(heartbeat);
        let started = Instant::now();
        let mut session_put = None;
        let mut result = self
            .run_task(&task, stored_session, &stream, signal, &mut session_put)
            .await;
        result.metrics.stream_events = stream.published();
        if result.metrics.duration == 0 {
            result.metrics.duration = started.elapsed().as_millis() as u64;
        }
        result.worker = Some(self.id.clone());
        self.deliver(&task.task_id, &callback.result_subject, result, session_put)
            .await;
    }

    async fn answer_malformed(&self, m: &Message, why: &str) {
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

    async fn on_duplicate(&self, m: &Message, task: &TaskMessage, callback: &Callback) {
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

    /// Everything from the workspace to the executor's outcome, as a plugin-shaped result.
    async fn run_task(
        &self,
        task: &TaskMessage,
        stored_session: StoredSession,
        stream: &TaskStream,
        signal: CancelSignal,
        session_put: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> ResultMessage {
        let fail = |msg: String| {
            let mut r = ResultMessage::failure(
                &task.task_id,
                &task.session.name,
                &task.workspace.name,
                &msg,
            );
            r.worker = Some(self.id.clone());
            r
        };
        if !wire::is_valid_key(&task.session.name) {
            return fail(format!(
                "invalid session name `{}`: it must be a NATS KV key (letters, digits, `-_=/.`)",
                task.session.name
            ));
        }
        // Workspace.
        let (dir, git) = match self.prepare_workspace(task, stream).await {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        // Session.
        let (session, mut state, first_put) = match self
            .resolve_session(task, stored_session, &dir, stream)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                let mut r = fail(e);
                r.workspace.path = dir.display().to_string();
                return r;
            }
        };
        stream
            .publish(StreamEvent {
                kind: "prompt_sent".into(),
                content: Some(station_core::redact::redact(&task.prompt)),
                ..stream.blank()
            })
            .await;
        // Run.
        let mut core_task = task
            .task
            .clone()
            .unwrap_or_else(|| Task::new(task.prompt.clone()));
        core_task.timeout_secs = None;
        let deadline = task
            .timeout
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(self.options.task_timeout);
        let run_options = RunOptions {
            default_timeout: deadline,
            grace: self.options.cancel_grace,
            on_outcome: None,
        };
        let mut run = start_task(
            self.executor.clone(),
            session.clone(),
            core_task,
            &run_options,
        );
        let run_signal = run.cancel_signal();
        let mut forwarded = false;
        loop {
            tokio::select! {
                ev = run.next_event() => match ev {
                    Some(ev) => {
                        if matches!(ev.kind, EventKind::Started { .. } | EventKind::Finished { .. }) {
                            continue;
                        }
                        stream.publish_core(&ev.kind).await;
                    }
                    None => break,
                },
                _ = signal.cancelled(), if !forwarded => {
                    forwarded = true;
                    run_signal.cancel_with(signal.reason().unwrap_or(StopReason::Cancelled));
                }
            }
        }
        let outcome = run.outcome().await;
        let shutting_down = self.shutting_down.load(Ordering::SeqCst);
        let mut result = match outcome {
            Ok(outcome) => {
                self.result_from_outcome(task, &dir, &session, &state, outcome, shutting_down)
            }
            Err(e) => {
                let mut r = fail(e.to_string());
                r.error_type = serde_json::to_value(e.kind())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
                r
            }
        };
        result.workspace.path = dir.display().to_string();
        if let Some(g) = git {
            result.workspace.git = Some(wire::WorkspaceGit {
                branch: g.branch.unwrap_or_default(),
                commit: g.commit.unwrap_or_default(),
                dirty: false,
            });
        }
        // Remember the executor's session so the next task (on any worker) continues it.
        if !result.session.opencode_id.is_empty() {
            state.opencode_id = result.session.opencode_id.clone();
        }
        state.message_count += 1;
        state.last_used = wire::now_iso();
        result.session.message_count = state.message_count;
        result.session.opencode_id = state.opencode_id.clone();
        let (sessions, worker) = (self.sessions.clone(), self.id.clone());
        *session_put = Some(tokio::spawn(async move {
            // In order: the state stored before the run must not overwrite this one.
            let _ = first_put.await;
            put_session(sessions, worker, state).await;
        }));
        result
    }

    fn result_from_outcome(
        &self,
        task: &TaskMessage,
        dir: &Path,
        session: &Session,
        state: &SessionState,
        mut outcome: Outcome,
        shutting_down: bool,
    ) -> ResultMessage {
        if shutting_down && !outcome.success {
            outcome.stop_reason = StopReason::Error;
            outcome.error = Some(format!(
                "worker `{}` shut down before the task finished (cancelled after the {}s grace period)",
                self.id,
                self.options.shutdown_grace.as_secs()
            ));
        }
        let opencode_id = outcome
            .backend_session_id
            .clone()
            .or_else(|| session.backend_session_id.clone())
            .unwrap_or_else(|| state.opencode_id.clone());
        ResultMessage {
            task_id: task.task_id.clone(),
            status: ResultMessage::status_of(&outcome).into(),
            result: Some(outcome.summary.clone()),
            error: outcome.error.clone().filter(|_| !outcome.success),
            error_type: (!outcome.success).then(|| "Error".to_string()),
            session: ResultSession {
                name: task.session.name.clone(),
                opencode_id,
                message_count: state.message_count,
            },
            workspace: ResultWorkspace {
                name: task.workspace.name.clone(),
                path: dir.display().to_string(),
                git: None,
            },
            metrics: Metrics {
                duration: outcome.duration_ms,
                prompt_tokens: Some(outcome.usage.input_tokens),
                completion_tokens: Some(outcome.usage.output_tokens),
                tool_calls: outcome.tool_calls.len() as u64,
                stream_events: 0,
            },
            worker: Some(self.id.clone()),
            stop_reason: Some(outcome.stop_reason),
            files_changed: Some(outcome.files_changed),
            usage: Some(outcome.usage),
            cost: outcome.cost_usd,
            tool_calls: Some(outcome.tool_calls),
            model: outcome.model,
        }
    }

    async fn prepare_workspace(
        &self,
        task: &TaskMessage,
        stream: &TaskStream,
    ) -> std::result::Result<(PathBuf, Option<GitInfo>), String> {
        let dir = resolve_workspace(&self.base, &task.workspace.name)?;
        let existed = dir.is_dir();
        let mut git_info = None;
        match (&task.workspace.git, &self.options.git) {
            (Some(spec), Some(hook)) => {
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
                let info = hook.prepare(&dir, spec, existed).await.map_err(|e| {
                    station_core::redact::redact(&format!("preparing the workspace from git: {e}"))
                })?;
                git_info = Some(info);
            }
            (Some(spec), None) => {
                return Err(format!(
                    "the task asks for git repository {} but worker `{}` has no git support configured",
                    station_core::redact::redact(&spec.url),
                    self.id
                ));
            }
            (None, _) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating workspace {}: {e}", dir.display()))?;
            }
        }
        let dir = check_inside(&self.base, &dir)?;
        stream
            .publish(StreamEvent {
                kind: if existed {
                    "workspace_reused"
                } else {
                    "workspace_created"
                }
                .into(),
                content: Some(dir.display().to_string()),
                ..stream.blank()
            })
            .await;
        if let Some(info) = &git_info {
            stream
                .publish(StreamEvent {
                    kind: if existed { "git_pull" } else { "git_clone" }.into(),
                    git: Some(info.clone()),
                    ..stream.blank()
                })
                .await;
        }
        Ok((dir, git_info))
    }

    /// The stored state of session `name` (read before the session name is validated: an
    /// invalid key reads as absent and the task fails on the name later).
    async fn read_session(&self, name: &str) -> StoredSession {
        if !wire::is_valid_key(name) {
            return Ok(None);
        }
        match self.sessions.get(name).await {
            Ok(b) => Ok(b.and_then(|b| serde_json::from_slice::<SessionState>(&b).ok())),
            Err(e) => Err(format!("reading session `{name}` from JetStream KV: {e}")),
        }
    }

    /// Open or continue the executor's session. The state is stored in the background (the
    /// returned handle) so the run does not wait for that KV round trip.
    async fn resolve_session(
        &self,
        task: &TaskMessage,
        stored: StoredSession,
        dir: &Path,
        stream: &TaskStream,
    ) -> std::result::Result<(Session, SessionState, tokio::task::JoinHandle<()>), String> {
        let name = &task.session.name;
        let stored = stored?;
        let want_continue = task.session.continue_session != Some(false);
        let mut reused = None;
        if let Some(state) = stored
            .as_ref()
            .filter(|s| want_continue && !s.opencode_id.is_empty())
        {
            let req = OpenRequest {
                workspace: Some(dir.to_path_buf()),
                title: task.session.title.clone(),
                resume: Some(state.opencode_id.clone()),
                repo: None,
            };
            match self.executor.open(req).await {
                Ok(s) => reused = Some(s),
                Err(Error::NotFound { .. }) => {
                    stream
                        .publish(StreamEvent {
                            kind: "notice".into(),
                            content: Some(format!(
                                "executor session {} is gone; starting a new one",
                                state.opencode_id
                            )),
                            ..stream.blank()
                        })
                        .await;
                }
                Err(e) => {
                    return Err(format!(
                        "continuing executor session {}: {e}",
                        state.opencode_id
                    ));
                }
            }
        }
        let now = wire::now_iso();
        let (session, kind) = match reused {
            Some(s) => (s, "session_reused"),
            None => {
                let req = OpenRequest {
                    workspace: Some(dir.to_path_buf()),
                    title: task.session.title.clone(),
                    resume: None,
                    repo: None,
                };
                let s = self
                    .executor
                    .open(req)
                    .await
                    .map_err(|e| format!("opening a {} session: {e}", self.executor.name()))?;
                (s, "session_created")
            }
        };
        let opencode_id = session.backend_session_id.clone().unwrap_or_default();
        let mut state = match (kind, stored) {
            ("session_reused", Some(s)) => s,
            (_, previous) => SessionState {
                session_name: name.clone(),
                created: now.clone(),
                message_count: previous.map(|p| p.message_count).unwrap_or(0),
                ..SessionState::default()
            },
        };
        state.session_name = name.clone();
        state.opencode_id = opencode_id.clone();
        state.workspace_name = dir
            .strip_prefix(
                self.base
                    .canonicalize()
                    .unwrap_or_else(|_| self.base.clone()),
            )
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| task.workspace.name.clone());
        state.workspace_path = dir.display().to_string();
        state.last_used = now;
        if let Some(git) = &task.workspace.git {
            state.git = Some(wire::SessionGit {
                url: station_core::redact::redact(&git.url),
                branch: git.branch.clone().unwrap_or_default(),
                last_commit: state
                    .git
                    .as_ref()
                    .map(|g| g.last_commit.clone())
                    .unwrap_or_default(),
            });
        }
        let first_put = tokio::spawn(put_session(
            self.sessions.clone(),
            self.id.clone(),
            state.clone(),
        ));
        stream
            .publish(StreamEvent {
                kind: kind.into(),
                session: Some(SessionInfo {
                    name: name.clone(),
                    opencode_id,
                }),
                ..stream.blank()
            })
            .await;
        Ok((session, state, first_put))
    }

    /// Store the result (so a client that missed the message finds it) and the session state
    /// (so the next task continues it) concurrently, then publish the result.
    async fn deliver(
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

/// A session's stored state, read from the sessions bucket (`Err`: the read failed).
type StoredSession = std::result::Result<Option<SessionState>, String>;

async fn put_session(sessions: kv::Store, worker: String, state: SessionState) {
    let Ok(bytes) = serde_json::to_vec(&state) else {
        return;
    };
    if let Err(e) = sessions
        .put(state.session_name.as_str(), bytes.into())
        .await
    {
        tracing::warn!(%worker, session = %state.session_name, "could not store the session: {e}");
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
    result.tool_calls = None;
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

/// The event stream of one task: one sequence, published in order.
#[derive(Debug)]
struct TaskStream {
    shared: Arc<Shared>,
    task_id: String,
    subject: String,
    seq: Arc<AtomicU64>,
}

impl TaskStream {
    fn new(shared: Arc<Shared>, task_id: &str, subject: &str) -> Self {
        TaskStream {
            shared,
            task_id: task_id.to_string(),
            subject: subject.to_string(),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    fn seq_counter(&self) -> Arc<AtomicU64> {
        self.seq.clone()
    }

    fn published(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    fn blank(&self) -> StreamEvent {
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

    async fn publish(&self, mut ev: StreamEvent) {
        ev.seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        ev.timestamp = wire::now_iso();
        self.shared.publish_json(&self.subject, &ev).await;
    }

    async fn publish_core(&self, kind: &EventKind) {
        let ev = wire::stream_event_from_core(&self.task_id, 0, &self.shared.id, kind);
        self.publish(ev).await;
    }
}

async fn heartbeat_loop(
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

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Unregister<'a>(&'a Shared, String);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.0.lock_cancels().running.remove(&self.1);
    }
}
