//! The worker: takes tasks from the task subject (in a queue group, so many workers share the
//! load) and runs them on any [`CodingBackend`], answering the way the Station OpenCode plugin
//! does, plus acks, heartbeats, cancel, dedupe and stored results.

mod claim;
mod execute;
mod git_channel;
mod result;
mod serve;
mod session;
mod shared;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::NatsConfig;
use station_core::{CodingBackend, Error, Result};
use tokio_util::sync::CancellationToken;

use crate::conn::{self, unavailable};
use crate::wire::{self, GitInfo, GitSpec, Subjects};

pub use serve::BoundWorker;
use shared::{Cancels, Shared};

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
    /// Most tasks run at once (`None`: no limit). At the limit the worker leaves the queue
    /// group until a task ends, so the server hands tasks to workers with free capacity.
    pub max_tasks: Option<usize>,
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
            max_tasks: None,
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
        let replicas = self.config.replicas;
        let sessions = conn::open_bucket(
            &js,
            &self.config.kv.sessions,
            conn::SESSIONS_MAX_AGE,
            replicas,
        )
        .await?
        .store;
        let tasks = conn::open_bucket(
            &js,
            &self.options.tasks_bucket,
            conn::TASKS_MAX_AGE,
            replicas,
        )
        .await?
        .store;
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

        let mut options = self.options;
        options.max_tasks = options.max_tasks.or(self.config.worker.max_tasks);
        if options.max_tasks == Some(0) {
            return Err(Error::config(
                "max_tasks is 0: the worker would take no task; set --max-tasks / coding.nats.worker.max_tasks to at least 1",
            ));
        }
        let queue_group = options.queue_group.clone();
        let shared = Arc::new(Shared {
            client: client.clone(),
            sessions,
            tasks,
            executor: self.executor,
            base: self.workspace_base,
            subjects,
            heartbeat: Duration::from_secs(self.config.heartbeat_sec.max(1)),
            options,
            id: self.id,
            cancels: Mutex::new(Cancels::default()),
            shutting_down: AtomicBool::new(false),
        });
        Ok(BoundWorker {
            client,
            shared,
            task_sub: Some(task_sub),
            cancel_sub,
            ping_sub,
            git_sub,
            queue_group,
        })
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
