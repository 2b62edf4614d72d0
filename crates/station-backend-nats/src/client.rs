//! The client: [`NatsBackend`], a [`CodingBackend`] that hands tasks to workers over NATS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::NatsConfig;
use async_nats::jetstream::kv;
use async_nats::{Client, Message, StatusCode, Subscriber};
use futures_util::{FutureExt, StreamExt};
use station_core::git::{GitRequest, GitResponse};
use station_core::{
    BackendSession, Capabilities, CodingBackend, Error, EventKind, ExecContext, Health,
    OpenRequest, Outcome, RepoSpec, Result, Session, StopReason, Task, ToolCall,
};

use crate::conn::{self, BACKEND, unavailable};

/// How long a git operation on a worker may take (clone/push deadlines are 300/120 s there).
const GIT_DEADLINE: Duration = Duration::from_secs(330);
use crate::names::workspace_name_for;
use crate::wire::{
    self, Ack, AckStatus, Callback, CancelMessage, GitSpec, Heartbeat, ResultMessage, SessionRef,
    SessionState, StreamEvent, Subjects, TaskMessage, TaskRecord, TaskState, WorkerInfo,
    WorkspaceRef,
};

/// Metadata keys of a [`Session`] of this backend.
pub mod meta {
    /// The session name (the key in the sessions bucket).
    pub const SESSION_NAME: &str = "nats_session_name";
    /// The workspace name sent to workers (relative to their base).
    pub const WORKSPACE_NAME: &str = "nats_workspace_name";
    /// The executor's (OpenCode's) session id, when known.
    pub const OPENCODE_ID: &str = "opencode_session_id";
}

/// How the client behaves. `Default` suits most uses; set `task_timeout` from
/// `coding.task_timeout_min`.
#[derive(Debug, Clone)]
pub struct NatsBackendOptions {
    /// Deadline of the first connection attempt.
    pub connect_timeout: Duration,
    /// Deadline sent to workers for a task that sets none (the caller's runner enforces its own).
    pub task_timeout: Duration,
    /// How long to wait for a worker's ack before assuming a plugin (which never acks).
    pub ack_timeout: Duration,
    /// Fail a task no Station worker acknowledges within `ack_timeout` (turn on when only
    /// Station workers, no plugins, serve the task subject).
    pub require_ack: bool,
    /// After a cancel, how long to wait for the worker's `cancelled` result.
    pub cancel_grace: Duration,
    /// The bucket with task claims and stored results (shared with the workers).
    pub tasks_bucket: String,
}

impl Default for NatsBackendOptions {
    fn default() -> Self {
        NatsBackendOptions {
            connect_timeout: Duration::from_secs(5),
            task_timeout: Duration::from_secs(10 * 60),
            ack_timeout: Duration::from_secs(3),
            require_ack: false,
            cancel_grace: Duration::from_secs(5),
            tasks_bucket: wire::TASKS_BUCKET.into(),
        }
    }
}

/// OpenCode behind NATS workers (`backend: opencode-nats`).
///
/// Tasks go to the task subject; any Station worker (`stn worker`) or Station OpenCode plugin
/// runs them. Sessions live in the JetStream KV sessions bucket, so any Station instance can
/// continue any session by its name ([`Session::backend_session_id`]).
#[derive(Debug, Clone)]
pub struct NatsBackend {
    client: Client,
    sessions: kv::Store,
    tasks: kv::Store,
    subjects: Subjects,
    heartbeat: Duration,
    url: String,
    options: NatsBackendOptions,
}

impl NatsBackend {
    /// Connect to `config.url` (with `config.creds_file`) and open the sessions and tasks
    /// buckets, creating them when missing. A refused or unreachable server is
    /// [`Error::Unavailable`] saying how to start one.
    pub async fn connect(config: &NatsConfig, options: NatsBackendOptions) -> Result<NatsBackend> {
        let client = conn::connect(config, "station-coding", options.connect_timeout).await?;
        let js = conn::jetstream(&client);
        let sessions = conn::open_bucket(&js, &config.kv.sessions, conn::SESSIONS_MAX_AGE).await?;
        let tasks = conn::open_bucket(&js, &options.tasks_bucket, conn::TASKS_MAX_AGE).await?;
        Ok(NatsBackend {
            client,
            sessions,
            tasks,
            subjects: Subjects::from_config(&config.subjects),
            heartbeat: Duration::from_secs(config.heartbeat_sec.max(1)),
            url: conn::shown_url(&config.url),
            options,
        })
    }

    /// The NATS connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Station workers that answer a ping within `wait` (plugins do not answer).
    pub async fn workers(&self, wait: Duration) -> Result<Vec<WorkerInfo>> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable(format!("subscribing to {inbox}: {e}")))?;
        self.client
            .publish_with_reply(self.subjects.ping(), inbox, bytes::Bytes::new())
            .await
            .map_err(|e| unavailable(format!("publishing a worker ping: {e}")))?;
        let mut found = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if let Ok(info) = serde_json::from_slice::<WorkerInfo>(&m.payload) {
                found.push(info);
            }
        }
        found.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(found)
    }

    /// The stored state of session `name`, if any.
    pub async fn session_state(&self, name: &str) -> Result<Option<SessionState>> {
        if !wire::is_valid_key(name) {
            return Ok(None);
        }
        let bytes =
            self.sessions.get(name).await.map_err(|e| {
                unavailable(format!("reading session `{name}` from JetStream KV: {e}"))
            })?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Remove session `name` from the sessions bucket (so no instance can continue it).
    pub async fn forget(&self, name: &str) -> Result<()> {
        if !wire::is_valid_key(name) {
            return Ok(());
        }
        self.sessions
            .delete(name)
            .await
            .map_err(|e| unavailable(format!("deleting session `{name}` from JetStream KV: {e}")))
    }

    /// Find a session by name, or by the executor's id (`ses_...`) with a bounded scan.
    async fn find_session(&self, query: &str) -> Result<Option<SessionState>> {
        if let Some(state) = self.session_state(query).await? {
            return Ok(Some(state));
        }
        for state in self.all_sessions().await? {
            if !state.opencode_id.is_empty() && state.opencode_id == query {
                return Ok(Some(state));
            }
        }
        Ok(None)
    }

    async fn all_sessions(&self) -> Result<Vec<SessionState>> {
        const MAX_SESSIONS: usize = 10_000;
        let scan = async {
            let mut keys = self
                .sessions
                .keys()
                .await
                .map_err(|e| unavailable(format!("listing sessions in JetStream KV: {e}")))?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                if let Ok(key) = key {
                    names.push(key);
                }
                if names.len() >= MAX_SESSIONS {
                    break;
                }
            }
            let mut out = Vec::new();
            for name in names {
                if let Ok(Some(bytes)) = self.sessions.get(name.as_str()).await
                    && let Ok(mut state) = serde_json::from_slice::<SessionState>(&bytes)
                {
                    if state.session_name.is_empty() {
                        state.session_name = name;
                    }
                    out.push(state);
                }
            }
            Ok(out)
        };
        tokio::time::timeout(Duration::from_secs(20), scan)
            .await
            .map_err(|_| unavailable("listing sessions in JetStream KV timed out after 20s"))?
    }

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

    async fn stored_result(&self, task_id: &str) -> Option<ResultMessage> {
        self.task_result(task_id).await.ok().flatten()
    }

    /// Wait (bounded) until the connection is up, for a task submitted during a reconnect.
    async fn wait_connected(&self) -> Result<()> {
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

/// The session name of a session: the backend id once a task ran, else the name chosen at open.
fn session_name(session: &Session) -> String {
    session
        .backend_session_id
        .clone()
        .or_else(|| session.metadata.get(meta::SESSION_NAME).cloned())
        .unwrap_or_else(|| session.id.to_string())
}

fn session_from_state(state: &SessionState, req: &OpenRequest) -> Session {
    let mut session = Session::new(BACKEND);
    session.backend_session_id = Some(state.session_name.clone());
    session.title = req.title.clone();
    session.workspace = req.workspace.clone().or_else(|| {
        Some(PathBuf::from(&state.workspace_name)).filter(|p| !p.as_os_str().is_empty())
    });
    session.repo = req.repo.clone().or_else(|| {
        state
            .git
            .as_ref()
            .filter(|g| !g.url.is_empty())
            .map(|g| RepoSpec {
                url: g.url.clone(),
                branch: Some(g.branch.clone()).filter(|b| !b.is_empty()),
            })
    });
    let mut metadata = BTreeMap::new();
    metadata.insert(meta::SESSION_NAME.into(), state.session_name.clone());
    let workspace = if state.workspace_name.is_empty() {
        workspace_name_for(req.workspace.as_deref(), &state.session_name)
    } else {
        state.workspace_name.clone()
    };
    metadata.insert(meta::WORKSPACE_NAME.into(), workspace);
    if !state.opencode_id.is_empty() {
        metadata.insert(meta::OPENCODE_ID.into(), state.opencode_id.clone());
    }
    session.metadata = metadata;
    session
}

#[async_trait::async_trait]
impl CodingBackend for NatsBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            resume: true,
            resume_by_title: false,
            cancel: true,
            list_sessions: true,
            remote_workspace: true,
            usage: true,
            cost: true,
        }
    }

    async fn health(&self) -> Result<Health> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Ok(Health {
                ok: false,
                version: None,
                detail: format!("not connected to NATS at {} (reconnecting)", self.url),
            });
        }
        let version = Some(self.client.server_info().version).filter(|v| !v.is_empty());
        if let Err(e) = self.sessions.status().await {
            return Ok(Health {
                ok: false,
                version,
                detail: format!(
                    "connected to NATS at {}, but JetStream KV is unavailable ({e}); start nats-server with -js",
                    self.url
                ),
            });
        }
        let workers = self
            .workers(Duration::from_millis(500))
            .await
            .unwrap_or_default();
        let who = if workers.is_empty() {
            "no Station worker answered (a Station OpenCode plugin may still listen)".to_string()
        } else {
            let names: Vec<&str> = workers.iter().map(|w| w.worker.as_str()).collect();
            format!("{} worker(s): {}", workers.len(), names.join(", "))
        };
        Ok(Health {
            ok: true,
            version,
            detail: format!(
                "NATS at {}; tasks on `{}`; {who}",
                self.url, self.subjects.task
            ),
        })
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        if let Some(query) = req.resume.as_deref() {
            let state = self
                .find_session(query)
                .await?
                .ok_or_else(|| Error::session_not_found(query))?;
            return Ok(session_from_state(&state, &req));
        }
        let mut session = Session::new(BACKEND);
        let name = session.id.to_string();
        session.title = req.title.clone();
        session.workspace = req.workspace.clone();
        session.repo = req.repo.clone();
        session.metadata.insert(
            meta::WORKSPACE_NAME.into(),
            workspace_name_for(req.workspace.as_deref(), &name),
        );
        session.metadata.insert(meta::SESSION_NAME.into(), name);
        Ok(session)
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        self.wait_connected().await?;
        let name = session_name(session);
        if !wire::is_valid_key(&name) {
            return Err(Error::config(format!(
                "session name `{name}` is not a valid NATS KV key (letters, digits, `-_=/.`)"
            )));
        }
        let workspace = session
            .metadata
            .get(meta::WORKSPACE_NAME)
            .cloned()
            .unwrap_or_else(|| workspace_name_for(session.workspace.as_deref(), &name));
        let task_id = uuid::Uuid::now_v7().to_string();
        let callback = Callback {
            stream_subject: self.subjects.stream_of(&task_id),
            result_subject: self.subjects.result_of(&task_id),
        };
        let timeout = task.timeout().unwrap_or(self.options.task_timeout);
        let message = TaskMessage {
            task_id: task_id.clone(),
            session: SessionRef {
                name: name.clone(),
                continue_session: Some(true),
                title: session.title.clone(),
            },
            workspace: WorkspaceRef {
                name: workspace,
                git: session.repo.as_ref().map(|r| GitSpec {
                    url: r.url.clone(),
                    branch: r.branch.clone(),
                    git_ref: None,
                    token: None,
                    // Clone once; never pull under a running session (upstream pulls every task).
                    pull: Some(false),
                }),
            },
            prompt: task.prompt(),
            agent: None,
            model: None,
            timeout: Some(timeout.as_millis() as u64),
            callback: Some(callback.clone()),
            task: Some(task.clone()),
        };
        let payload = serde_json::to_vec(&message)
            .map_err(|e| Error::Protocol(format!("encoding the task: {e}")))?;
        let max = self.client.server_info().max_payload;
        if max > 0 && payload.len() > max {
            return Err(Error::config(format!(
                "the task is {} bytes, more than the NATS server accepts ({max}); shorten the instruction or context",
                payload.len()
            )));
        }
        let exchange = Exchange::open(self, &task_id, &name, &callback).await?;
        exchange.run(self, payload.into(), ctx).await
    }

    async fn close(&self, _session: &Session) -> Result<()> {
        // Sessions stay in the bucket so any instance can continue them (they expire unused
        // after 7 days); `NatsBackend::forget` removes one for good.
        Ok(())
    }

    async fn git(&self, session: &Session, request: GitRequest) -> Result<GitResponse> {
        self.wait_connected().await?;
        let name = session_name(session);
        let workspace = session
            .metadata
            .get(meta::WORKSPACE_NAME)
            .cloned()
            .unwrap_or_else(|| workspace_name_for(session.workspace.as_deref(), &name));
        let command = wire::GitCommand {
            session: name,
            workspace,
            request,
        };
        let payload = serde_json::to_vec(&command)
            .map_err(|e| Error::Protocol(format!("cannot encode a git command: {e}")))?;
        let subject = self.subjects.git();
        let reply = tokio::time::timeout(
            GIT_DEADLINE,
            self.client.request(subject.clone(), payload.into()),
        )
        .await
        .map_err(|_| Error::Timeout {
            operation: format!("git on {subject}"),
            after: GIT_DEADLINE,
        })?
        .map_err(|e| {
            unavailable(format!(
                "no worker answered git on {subject} ({e}); is a `stn worker` with git running?"
            ))
        })?;
        serde_json::from_slice::<wire::GitAnswer>(&reply.payload)
            .map_err(|e| Error::Protocol(format!("a worker's git answer is not valid: {e}")))?
            .into_result()
    }

    async fn list_sessions(&self) -> Result<Vec<BackendSession>> {
        let mut out: Vec<BackendSession> = self
            .all_sessions()
            .await?
            .into_iter()
            .map(|s| BackendSession {
                id: s.session_name.clone(),
                title: None,
                workspace: Some(PathBuf::from(&s.workspace_name))
                    .filter(|p| !p.as_os_str().is_empty()),
                updated_at: chrono::DateTime::parse_from_rfc3339(&s.last_used)
                    .ok()
                    .map(|d| d.with_timezone(&chrono::Utc)),
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        Ok(out)
    }
}

/// One task in flight: its subscriptions and what has been seen so far.
#[derive(Debug)]
struct Exchange {
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

impl Exchange {
    /// Subscribe to the task's stream, heartbeat, result and ack subjects, all before the task
    /// is published so nothing is missed.
    async fn open(
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
        backend
            .client
            .publish_with_reply(subject.clone(), self.ack_inbox.clone(), payload)
            .await
            .map_err(|e| unavailable(format!("publishing the task on {subject}: {e}")))?;
        tokio::time::timeout(Duration::from_secs(5), backend.client.flush())
            .await
            .map_err(|_| unavailable(format!("publishing the task on {subject} timed out")))?
            .map_err(|e| unavailable(format!("publishing the task on {subject}: {e}")))
    }

    async fn run(
        mut self,
        backend: &NatsBackend,
        payload: bytes::Bytes,
        ctx: ExecContext,
    ) -> Result<Outcome> {
        let subject = backend.subjects.task.clone();
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
                        self.ended = true;
                        return Err(unavailable(format!(
                            "no worker is listening on {subject}; start one with `stn worker` (or run OpenCode with the Station plugin) against {}",
                            backend.url
                        )));
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
                        // Our own link is down: silence is not the worker's fault.
                        was_disconnected = true;
                        last_heard = now;
                        continue;
                    }
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
                    if !acknowledged && !plugin_mode && now.duration_since(published_at) >= backend.options.ack_timeout {
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
        result.to_outcome(&self.session_name, calls)
    }
}
