//! [`HttpBackend`]: sessions and tasks on an OpenCode server.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde_json::{Value, json};
use station_core::config::CodingConfig;
use station_core::git::{GitRequest, GitResponse};
use station_core::policy::{Policy, PolicyConfig};
use station_core::{
    BackendSession, Capabilities, CodingBackend, Error, EventKind, ExecContext, FileChange, Health,
    InputError, OpenRequest, Outcome, Redactor, Result, Secret, Session, SessionId, StopReason,
    Task,
};

use crate::HttpTuning;
use crate::client::{Client, NAME, Retry, Subscription, is_loopback};
use crate::config::{ManagedServer as ManagedMode, OpencodeConfig};
use crate::managed::ManagedServer;
use crate::mapper::{EventMapper, Progress};
use crate::outcome;
use crate::permission::{self, PermissionAsk};
use crate::wire::{
    FileDiff, HealthInfo, MessageWithParts, ProjectInfo, ServerEvent, SessionInfo, SessionStatus,
};

mod execution;
mod listing;
mod server;

use execution::Execution;
use listing::{find_by_title, sessions_of_every_project};
use server::Server;

/// The OpenCode HTTP backend (`opencode`).
///
/// Construct it from config with [`HttpBackend::new`]; the server is contacted (or, in managed
/// mode, started) on first use.
pub struct HttpBackend {
    config: OpencodeConfig,
    url: Url,
    model: Option<(String, String)>,
    max_attempts: u32,
    task_timeout: Duration,
    env: Vec<(String, String)>,
    workspace_base: PathBuf,
    tuning: HttpTuning,
    server: tokio::sync::OnceCell<Server>,
    session_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    remote_workspace: Option<bool>,
    policy: PolicyConfig,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The extra environment may hold provider keys: show only the names.
        let env_keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HttpBackend")
            .field("config", &self.config)
            .field("max_attempts", &self.max_attempts)
            .field("task_timeout", &self.task_timeout)
            .field("env_keys", &env_keys)
            .field("workspace_base", &self.workspace_base)
            .field("server", &self.server.get())
            .finish_non_exhaustive()
    }
}

impl HttpBackend {
    /// The backend for one `coding.opencode` section (see [`OpencodeConfig::from_loaded`]) and
    /// the station-wide `max_attempts`, `task_timeout_min` and `workspace_base_path`.
    pub fn new(opencode: OpencodeConfig, coding: &CodingConfig) -> Result<Self> {
        Ok(
            Self::from_opencode(opencode, coding.max_attempts, coding.task_timeout())?
                .with_workspace_base(coding.workspace_base())
                .with_policy(coding.policy.clone().unwrap_or_default()),
        )
    }

    /// The backend for one `coding.opencode` section. `max_attempts` bounds retries of idempotent
    /// calls; `task_timeout` is the default task deadline (the runner enforces it).
    pub fn from_opencode(
        config: OpencodeConfig,
        max_attempts: u32,
        task_timeout: Duration,
    ) -> Result<Self> {
        let url = Url::parse(config.url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                Error::from(
                    InputError::new(format!(
                        "`{}` is not an http(s) URL",
                        station_core::redact::redact(&config.url)
                    ))
                    .field("coding.opencode.url")
                    .hint("for example http://localhost:4096"),
                )
            })?;
        let model = match config
            .model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            None => None,
            Some(m) => match m.split_once('/') {
                Some((p, id)) if !p.is_empty() && !id.is_empty() => {
                    Some((p.to_string(), id.to_string()))
                }
                _ => {
                    return Err(
                        InputError::new(format!("model `{m}` is not `provider/model`"))
                            .field("coding.opencode.model")
                            .hint("for example anthropic/claude-sonnet-4-5")
                            .into(),
                    );
                }
            },
        };
        if let Some(p) = &config.password {
            Redactor::global().register(p);
        }
        Ok(HttpBackend {
            config,
            url,
            model,
            max_attempts: max_attempts.max(1),
            task_timeout,
            env: Vec::new(),
            workspace_base: std::env::temp_dir().join("station-coding"),
            tuning: HttpTuning::default(),
            server: tokio::sync::OnceCell::new(),
            session_locks: Mutex::new(HashMap::new()),
            remote_workspace: None,
            policy: PolicyConfig::default(),
        })
    }

    /// Extra environment for a managed server (provider keys, `OPENCODE_CONFIG`, isolated HOME).
    pub fn with_env<K: Into<String>, V: Into<String>>(
        mut self,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env
            .extend(env.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Where sessions opened without a workspace get one (`<base>/<station id>`), and where a
    /// managed server runs.
    pub fn with_workspace_base(mut self, base: impl Into<PathBuf>) -> Self {
        self.workspace_base = base.into();
        self
    }

    /// Say whether the server's workspaces are on another machine (default: the URL is not
    /// loopback). Remote workspaces get git through the server's shell endpoint.
    pub fn with_remote_workspace(mut self, remote: bool) -> Self {
        self.remote_workspace = Some(remote);
        self
    }

    /// What the agent may do (`coding.policy`; without one, no writes outside the workspace),
    /// unless a task brings its own ([`Task::policy`]): every permission request of a task is
    /// decided by it and answered through the server's permission API.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Deadlines and bounds.
    pub fn with_tuning(mut self, tuning: HttpTuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// The default task deadline (`task_timeout_min`).
    pub fn task_timeout(&self) -> Duration {
        self.task_timeout
    }

    /// The URL of the server in use (starting a managed one if the config says so).
    pub async fn server_url(&self) -> Result<String> {
        Ok(self.server().await?.client.shown_base().to_string())
    }

    /// The process id of the managed server, when one runs.
    pub fn managed_server_pid(&self) -> Option<u32> {
        self.server
            .get()
            .and_then(|s| s.managed.as_ref())
            .map(ManagedServer::pid)
    }

    /// Stop whatever `session` is doing on the server (`POST /session/{id}/abort`).
    pub async fn abort(&self, session: &Session) -> Result<()> {
        let Some(id) = session.backend_session_id.as_deref() else {
            return Ok(());
        };
        let server = self.server().await?;
        let dir = dir_str(session.workspace.as_deref());
        server
            .client
            .post_unit(
                &["session", id, "abort"],
                dir.as_deref(),
                None,
                Retry::Idempotent,
                self.tuning.request_timeout,
            )
            .await
    }

    /// Delete `session` on the server, with its history. Deleting a deleted session is `Ok`.
    pub async fn delete_session(&self, session: &Session) -> Result<()> {
        let Some(id) = session.backend_session_id.as_deref() else {
            return Ok(());
        };
        let server = self.server().await?;
        let dir = dir_str(session.workspace.as_deref());
        match server.client.delete(&["session", id], dir.as_deref()).await {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The files the server says `session` changed (`GET /session/{id}/diff`), for the whole
    /// session or, with `message_id`, for the turn of that user message. Empty in a workspace that
    /// is not a git repository.
    pub async fn server_diff(
        &self,
        session: &Session,
        message_id: Option<&str>,
    ) -> Result<Vec<FileChange>> {
        let Some(id) = session.backend_session_id.as_deref() else {
            return Ok(Vec::new());
        };
        let server = self.server().await?;
        let dir = dir_str(session.workspace.as_deref());
        let query: Vec<(&str, &str)> = message_id.map(|m| ("messageID", m)).into_iter().collect();
        let diff: Vec<FileDiff> = server
            .client
            .get_json(&["session", id, "diff"], dir.as_deref(), &query)
            .await?;
        Ok(outcome::files_from_diff(
            &diff,
            session.workspace.as_deref(),
        ))
    }

    fn is_local(&self) -> bool {
        if let Some(remote) = self.remote_workspace {
            return !remote;
        }
        self.config.managed == ManagedMode::Always || is_loopback(&self.url)
    }

    fn auth(&self) -> Option<(String, Secret)> {
        self.config
            .password
            .clone()
            .filter(|p| !p.is_empty())
            .map(|p| (self.username(), p))
    }

    fn username(&self) -> String {
        self.config
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "opencode".to_string())
    }

    /// The workspace for a new session: the requested one or a fresh directory under the base;
    /// created and made absolute when the server is local.
    fn prepare_workspace(
        &self,
        requested: Option<PathBuf>,
        id: &SessionId,
    ) -> Result<Option<PathBuf>> {
        if !self.is_local() {
            return match requested {
                Some(p) if !p.is_absolute() => Err(InputError::new(format!(
                    "workspace `{}` must be an absolute path on the OpenCode server's machine",
                    p.display()
                ))
                .field("workspace")
                .into()),
                other => Ok(other),
            };
        }
        let dir = requested.unwrap_or_else(|| self.workspace_base.join(id.as_str()));
        let dir = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("reading the current directory", e))?
                .join(dir)
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating workspace {}", dir.display()), e))?;
        Ok(Some(dir.canonicalize().unwrap_or(dir)))
    }

    async fn create_session(
        &self,
        client: &Client,
        dir: Option<&str>,
        title: Option<&str>,
    ) -> Result<SessionInfo> {
        let body = match title.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => json!({ "title": t }),
            None => json!({}),
        };
        let info: SessionInfo = client
            .post_json(&["session"], dir, &body, Retry::Once)
            .await?;
        if info.id.is_empty() {
            return Err(Error::Protocol(
                "POST /session: the OpenCode server answered without a session id".into(),
            ));
        }
        Ok(info)
    }

    async fn attach(&self, client: &Client, req: OpenRequest, query: &str) -> Result<Session> {
        let query = query.trim();
        let dir = dir_str(req.workspace.as_deref());
        let info = if query.starts_with("ses_") {
            client
                .get_json::<SessionInfo>(&["session", query], dir.as_deref(), &[])
                .await?
        } else {
            let all = match dir.as_deref() {
                Some(d) => client.get_json(&["session"], Some(d), &[]).await?,
                None => sessions_of_every_project(client).await?,
            };
            find_by_title(all, query)?
        };
        let mut session = Session::new(NAME);
        if let Some(t) = info.time {
            if let Some(created) = t.created.and_then(millis_to_time) {
                session.created_at = created;
            }
            if let Some(updated) = t.updated.and_then(millis_to_time) {
                session.last_used_at = updated;
            }
        }
        session.backend_session_id = Some(info.id);
        session.title = info.title.or(req.title);
        session.workspace = info
            .directory
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or(req.workspace);
        session.repo = req.repo;
        Ok(session)
    }

    fn session_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.session_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_string()).or_default().clone()
    }

    fn prompt_body(&self, task: &Task) -> Value {
        let mut body = json!({ "parts": [{ "type": "text", "text": task.prompt() }] });
        if let Some((provider, model)) = &self.model {
            body["model"] = json!({ "providerID": provider, "modelID": model });
        }
        body
    }
}

#[async_trait::async_trait]
impl CodingBackend for HttpBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            resume: true,
            resume_by_title: true,
            cancel: true,
            list_sessions: true,
            remote_workspace: !self.is_local(),
            usage: true,
            cost: true,
            local_workspace: self.is_local(),
        }
    }

    async fn health(&self) -> Result<Health> {
        let server = self.server().await?;
        let client = &server.client;
        let managed = if server.managed.is_some() {
            " (private server started by Station)"
        } else {
            ""
        };
        match client
            .get_json_within::<HealthInfo>(
                &["global", "health"],
                None,
                &[],
                self.tuning.health_timeout,
            )
            .await
        {
            Ok(h) => {
                if h.healthy {
                    // So that `policy_gaps` can tell what a user's own server lets through.
                    server.read_permission_config(None).await;
                }
                Ok(Health {
                    ok: h.healthy,
                    detail: match (&h.version, h.healthy) {
                        (Some(v), true) => {
                            format!("OpenCode {v} at {}{managed}", client.shown_base())
                        }
                        (None, true) => format!("OpenCode at {}{managed}", client.shown_base()),
                        (_, false) => format!(
                            "the OpenCode server at {} reports that it is unhealthy",
                            client.shown_base()
                        ),
                    },
                    version: h.version,
                })
            }
            Err(
                e @ (Error::Auth { .. }
                | Error::Backend { .. }
                | Error::Protocol(_)
                | Error::NotFound { .. }),
            ) => Ok(Health {
                ok: false,
                version: None,
                detail: e.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        let server = self.server().await?;
        if let Some(query) = req.resume.clone().filter(|q| !q.trim().is_empty()) {
            return self.attach(&server.client, req, &query).await;
        }
        let mut session = Session::new(NAME);
        let workspace = self.prepare_workspace(req.workspace, &session.id)?;
        let dir = dir_str(workspace.as_deref());
        let info = self
            .create_session(&server.client, dir.as_deref(), req.title.as_deref())
            .await?;
        session.backend_session_id = Some(info.id);
        session.title = req.title;
        session.workspace =
            workspace.or_else(|| info.directory.filter(|d| !d.is_empty()).map(PathBuf::from));
        session.repo = req.repo;
        Ok(session)
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        let started = Instant::now();
        let server = self.server().await?;
        let client = &server.client;
        let local = !self.capabilities().remote_workspace;
        if let Some(ws) = session
            .workspace
            .as_deref()
            .filter(|d| local && !d.exists())
        {
            // A session outlives its directory (cleaned temp space): recreate it.
            std::fs::create_dir_all(ws)
                .map_err(|e| Error::io(format!("creating workspace {}", ws.display()), e))?;
        }
        let dir = dir_str(session.workspace.as_deref());
        let session_id = match &session.backend_session_id {
            Some(id) => id.clone(),
            None => {
                let info = self
                    .create_session(client, dir.as_deref(), session.title.as_deref())
                    .await?;
                ctx.events.emit(EventKind::BackendSession {
                    backend_session_id: info.id.clone(),
                });
                info.id
            }
        };
        // One task at a time per session: OpenCode refuses or interleaves concurrent prompts.
        let lock = self.session_lock(&session_id);
        let _turn = tokio::select! {
            guard = lock.lock_owned() => guard,
            _ = ctx.cancel.cancelled() => return Err(Error::Cancelled),
        };
        let local_dir = session.workspace.clone().filter(|d| local && d.is_dir());
        // The runner announced the gaps it knew; a server first reached now may add some.
        let announced = server.gaps(&self.policy);
        server.read_permission_config(dir.as_deref()).await;
        let policy = task.policy_or(&self.policy);
        let gaps = server.gaps(policy);
        for gap in gaps.iter().filter(|g| !announced.contains(g)) {
            ctx.events.emit(EventKind::Notice {
                message: format!("policy not enforced: {gap}"),
            });
        }
        let workspace = session
            .workspace
            .clone()
            .unwrap_or_else(|| PathBuf::from("/"));
        let mut run = Execution {
            client,
            tuning: &self.tuning,
            session_id: session_id.clone(),
            dir,
            local_dir,
            ctx: &ctx,
            mapper: EventMapper::new(session_id.clone()),
            known: Vec::new(),
            idle_polls_without_work: 0,
            unanswered_polls: 0,
            policy: Policy::new(policy.clone(), workspace),
            answered: HashSet::new(),
            children: HashSet::new(),
        };
        let mut outcome = run.run(self.prompt_body(task)).await?;
        outcome.policy_gaps = gaps;
        outcome.backend_session_id = Some(session_id);
        outcome.duration_ms = started.elapsed().as_millis() as u64;
        Ok(outcome)
    }

    fn policy_gaps(&self) -> Vec<String> {
        self.server
            .get()
            .map(|s| s.gaps(&self.policy))
            .unwrap_or_default()
    }

    async fn git(&self, session: &Session, request: GitRequest) -> Result<GitResponse> {
        let id = session.backend_session_id.as_deref().ok_or_else(|| {
            Error::config(
                "the session has not run a task yet, so it has no OpenCode session to run git in",
            )
        })?;
        let script = crate::git::script(&request, (None, None))?;
        let server = self.server().await?;
        let dir = dir_str(session.workspace.as_deref());
        let lock = self.session_lock(id);
        let _busy = lock.lock().await;
        let answer: serde_json::Value = server
            .client
            .post_json(
                &["session", id, "shell"],
                dir.as_deref(),
                &json!({"agent": "build", "command": script}),
                Retry::Once,
            )
            .await?;
        let output = crate::git::output_of(&answer).ok_or_else(|| {
            Error::Protocol("the server's shell answer has no command output".into())
        })?;
        crate::git::parse(&request, &output)
    }

    async fn close(&self, session: &Session) -> Result<()> {
        // The conversation stays on the server so the session can be continued; closing stops
        // whatever it may still be doing.
        match self.abort(session).await {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_sessions(&self) -> Result<Vec<BackendSession>> {
        let server = self.server().await?;
        let mut all = sessions_of_every_project(&server.client).await?;
        all.retain(|s| s.parent_id.is_none() && !s.id.is_empty());
        all.sort_by_key(|s| {
            std::cmp::Reverse(s.time.and_then(|t| t.updated.or(t.created)).unwrap_or(0))
        });
        Ok(all
            .into_iter()
            .map(|s| BackendSession {
                updated_at: s
                    .time
                    .and_then(|t| t.updated.or(t.created))
                    .and_then(millis_to_time),
                id: s.id,
                title: s.title,
                workspace: s.directory.filter(|d| !d.is_empty()).map(PathBuf::from),
            })
            .collect())
    }
}

fn dir_str(dir: Option<&Path>) -> Option<String> {
    dir.map(|d| d.to_string_lossy().into_owned())
}

fn millis_to_time(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
}

#[cfg(test)]
mod tests;
