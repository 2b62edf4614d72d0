//! The client: [`NatsBackend`], a [`CodingBackend`](station_core::CodingBackend) that hands tasks to workers over NATS.

mod backend;
mod exchange;
mod results;
mod sessions;

use std::time::Duration;

use crate::NatsConfig;
use async_nats::Client;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use station_core::Result;
use station_core::policy::PolicyConfig;

use crate::conn::{self, unavailable};
use crate::wire::{self, Subjects, WorkerInfo};

/// Metadata keys of a [`Session`](station_core::Session) of this backend.
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
    /// How long a task may wait for a worker with free capacity (every worker answers pings
    /// but is at its `max_tasks`) before it fails with "no capacity"; `None`: the task's
    /// own deadline.
    pub capacity_wait: Option<Duration>,
    /// How long a running task waits for this client to reconnect to any server of
    /// `coding.nats.url` before it fails (the connection itself keeps retrying).
    pub reconnect_wait: Duration,
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
            capacity_wait: None,
            reconnect_wait: Duration::from_secs(60),
        }
    }
}

/// OpenCode behind NATS workers (`backend: opencode-nats`).
///
/// Tasks go to the task subject; any Station worker (`stn worker`) or Station OpenCode plugin
/// runs them. Sessions live in the JetStream KV sessions bucket, so any Station instance can
/// continue any session by its name
/// ([`Session::backend_session_id`](station_core::Session::backend_session_id)).
#[derive(Debug, Clone)]
pub struct NatsBackend {
    client: Client,
    sessions: kv::Store,
    tasks: kv::Store,
    subjects: Subjects,
    heartbeat: Duration,
    url: String,
    options: NatsBackendOptions,
    /// Buckets that exist with another replica count than `coding.nats.replicas`.
    bucket_warnings: Vec<String>,
    /// `coding.policy`, sent with every task for the worker's executor to enforce.
    policy: PolicyConfig,
}

impl NatsBackend {
    /// Connect to `config.url` (with `config.creds_file`) and open the sessions and tasks
    /// buckets, creating them when missing. A refused or unreachable server is
    /// [`Error::Unavailable`](station_core::Error::Unavailable) saying how to start one.
    pub async fn connect(config: &NatsConfig, options: NatsBackendOptions) -> Result<NatsBackend> {
        let client = conn::connect(config, "station-coding", options.connect_timeout).await?;
        let js = conn::jetstream(&client);
        let sessions = conn::open_bucket(
            &js,
            &config.kv.sessions,
            conn::SESSIONS_MAX_AGE,
            config.replicas,
        )
        .await?;
        let tasks = conn::open_bucket(
            &js,
            &options.tasks_bucket,
            conn::TASKS_MAX_AGE,
            config.replicas,
        )
        .await?;
        let bucket_warnings = [&sessions.warning, &tasks.warning]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        Ok(NatsBackend {
            client,
            sessions: sessions.store,
            tasks: tasks.store,
            bucket_warnings,
            subjects: Subjects::from_config(&config.subjects),
            heartbeat: Duration::from_secs(config.heartbeat_sec.max(1)),
            url: conn::shown_url(&config.url),
            options,
            policy: PolicyConfig::default(),
        })
    }

    /// What the agent may do (`coding.policy`; without one, no writes outside the workspace),
    /// unless a task brings its own ([`Task::policy`](station_core::Task::policy)). It travels
    /// with each task and the worker's executor enforces it; the decisions come back in the
    /// outcome.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// The NATS connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Warnings about the KV buckets found at connect (a replica count other than
    /// `coding.nats.replicas`); also in [`health`](station_core::CodingBackend::health).
    pub fn bucket_warnings(&self) -> &[String] {
        &self.bucket_warnings
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
}
