//! [`AcpBackend`]: sessions and tasks over one long-lived ACP agent process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use station_core::agent_process::make_workspace;
use station_core::policy::{Policy, PolicyConfig, Verdict};
use station_core::redact;
use station_core::workspace::Tracker;
use station_core::{
    BackendSession, Capabilities, CodingBackend, Error, EventKind, ExecContext, Health,
    OpenRequest, Outcome, Result, Session, StopReason, Task,
};
use tokio::sync::mpsc;

use crate::client::{self, SessionState, Sessions};
use crate::config::AcpConfig;
use crate::permission::TurnJudge;
use crate::rpc::{Connection, RpcError};
use crate::turn::{Turn, map_stop_reason, prompt_usage};

/// The backend's name (`backend: acp`).
pub const NAME: &str = "acp";

/// The ACP protocol version Station speaks.
const PROTOCOL_VERSION: u64 = 1;

/// One running agent process.
#[derive(Debug)]
struct Agent {
    conn: Arc<Connection>,
    init: Value,
    sessions: Sessions,
    /// Turns in flight on this process.
    busy: AtomicUsize,
}

impl Agent {
    fn caps(&self) -> &Value {
        &self.init["agentCapabilities"]
    }

    fn session_cap(&self, name: &str) -> bool {
        self.caps()["sessionCapabilities"][name].is_object()
    }

    fn state(&self, id: &str) -> Option<SessionState> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn update_state(&self, id: &str, f: impl FnOnce(&mut SessionState)) {
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            f(s);
        }
    }
}

/// Drives any ACP agent over its stdio. See the crate docs.
#[derive(Debug)]
pub struct AcpBackend {
    config: AcpConfig,
    workspace_base: PathBuf,
    env_remove: Vec<String>,
    policy: PolicyConfig,
    agent: tokio::sync::Mutex<Option<Arc<Agent>>>,
}

impl AcpBackend {
    /// A backend for the agent `config` names.
    pub fn new(config: AcpConfig) -> Self {
        AcpBackend {
            config,
            workspace_base: std::env::temp_dir().join("station-workspaces"),
            env_remove: Vec::new(),
            policy: PolicyConfig::default(),
            agent: tokio::sync::Mutex::new(None),
        }
    }

    /// Where sessions without a workspace get one.
    pub fn with_workspace_base(mut self, base: PathBuf) -> Self {
        self.workspace_base = base;
        self
    }

    /// Variables the agent must not inherit (on top of Station's secrets).
    pub fn with_env_remove(mut self, names: Vec<String>) -> Self {
        self.env_remove = names;
        self
    }

    /// What the agent may do (`coding.policy`; without one, no writes outside the workspace),
    /// enforced on its permission requests and file writes. A task's own policy wins.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// The pid (and process group) of the running agent, if one runs.
    pub async fn agent_pid(&self) -> Option<u32> {
        let slot = self.agent.lock().await;
        slot.as_ref()
            .filter(|a| a.conn.closed_reason().is_none())
            .map(|a| a.conn.pid())
    }

    fn label(&self) -> String {
        self.config.agent_label()
    }

    fn unavailable(&self, message: impl Into<String>) -> Error {
        Error::Unavailable {
            backend: format!("ACP agent `{}`", self.label()),
            message: message.into(),
        }
    }

    /// Start the agent in `cwd` and initialize it.
    async fn start_agent(&self, cwd: &Path) -> Result<Arc<Agent>> {
        let mut spec = self.config.command_spec(cwd)?;
        for name in &self.env_remove {
            spec = spec.env_remove(name);
        }
        // The preset's and the configured environment win over a removal.
        for (key, value) in self.config.fixed_env() {
            spec = spec.env(key, value);
        }
        for (key, value) in &self.config.env {
            spec = spec.env(key, value.expose());
        }
        let child = spec.spawn()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let max =
            usize::try_from(self.config.max_message_mb.max(1) * 1024 * 1024).unwrap_or(usize::MAX);
        let conn = Connection::start(self.label(), child, max, tx);
        let sessions = Sessions::default();
        tokio::spawn(client::serve(Arc::downgrade(&conn), sessions.clone(), rx));
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "clientCapabilities": {"fs": {"readTextFile": true, "writeTextFile": true}, "terminal": true},
            "clientInfo": {"name": "station", "version": env!("CARGO_PKG_VERSION")},
        });
        let timeout = self.config.startup_timeout();
        let init = match tokio::time::timeout(timeout, conn.request("initialize", params)).await {
            Ok(Ok(init)) => init,
            Ok(Err(e)) => {
                conn.kill(Duration::from_secs(2)).await;
                return Err(self.unavailable(format!("`initialize` failed: {e}")));
            }
            Err(_) => {
                conn.kill(Duration::from_secs(2)).await;
                let garbage = conn
                    .garbage()
                    .map(|g| format!("; it printed output that is not ACP JSON-RPC: {g:?} (is the command an ACP agent?)"))
                    .unwrap_or_default();
                return Err(self.unavailable(format!(
                    "it did not answer `initialize` within {}s (coding.acp.startup_timeout_sec){garbage}",
                    timeout.as_secs()
                )));
            }
        };
        let version = init["protocolVersion"].as_u64().unwrap_or(0);
        if version != PROTOCOL_VERSION {
            conn.kill(Duration::from_secs(2)).await;
            return Err(self.unavailable(format!(
                "it speaks ACP protocol version {version}; Station speaks {PROTOCOL_VERSION}"
            )));
        }
        Ok(Arc::new(Agent {
            conn,
            init,
            sessions,
            busy: AtomicUsize::new(0),
        }))
    }

    /// The running agent, started (again) when there is none or it died.
    async fn agent(&self, cwd: &Path) -> Result<Arc<Agent>> {
        let mut slot = self.agent.lock().await;
        if let Some(agent) = slot.as_ref().filter(|a| a.conn.closed_reason().is_none()) {
            return Ok(agent.clone());
        }
        let agent = self.start_agent(cwd).await?;
        *slot = Some(agent.clone());
        Ok(agent)
    }

    /// Stop `agent` (if it is still the current one) so the next task starts a fresh process.
    async fn retire(&self, agent: &Arc<Agent>) {
        {
            let mut slot = self.agent.lock().await;
            if slot.as_ref().is_some_and(|a| Arc::ptr_eq(a, agent)) {
                *slot = None;
            }
        }
        // Gracefully: the agent saves its sessions on end of input, and the next process
        // resumes them.
        agent
            .conn
            .shutdown(SHUTDOWN_WAIT, Duration::from_secs(2))
            .await;
    }

    fn remember(&self, agent: &Agent, id: &str, workspace: &Path) {
        agent
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_insert_with(|| SessionState {
                workspace: workspace.to_path_buf(),
                cancelling: false,
                stale_after_cancel: false,
                last_cost: None,
                judge: None,
                idle_policy: Arc::new(Policy::new(self.policy.clone(), workspace)),
            });
    }

    async fn new_session(&self, agent: &Agent, workspace: &Path) -> Result<String> {
        let result = agent
            .conn
            .request("session/new", json!({"cwd": workspace, "mcpServers": []}))
            .await
            .map_err(|e| Error::backend(NAME, format!("`session/new` failed: {e}")))?;
        let id = result["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Protocol("`session/new` answered without a sessionId".into()))?
            .to_string();
        self.remember(agent, &id, workspace);
        self.select_model(agent, &id, &result).await?;
        Ok(id)
    }

    async fn select_model(&self, agent: &Agent, id: &str, setup: &Value) -> Result<()> {
        let Some(model) = self.config.model.as_deref() else {
            return Ok(());
        };
        let has_option = setup["configOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|c| c["id"] == "model"));
        let (method, params) = if has_option {
            (
                "session/set_config_option",
                json!({"sessionId": id, "configId": "model", "value": model}),
            )
        } else {
            (
                "session/set_model",
                json!({"sessionId": id, "modelId": model}),
            )
        };
        agent
            .conn
            .request(method, params)
            .await
            .map_err(|e| -> Error {
                station_core::InputError::new(format!("the agent refused model `{model}`: {e}"))
                    .field("coding.acp.model")
                    .hint("use a model the agent lists, or remove coding.acp.model")
                    .into()
            })?;
        Ok(())
    }

    /// Make session `id` live in `agent`: `session/resume` or `session/load`, whichever the
    /// agent advertises.
    async fn attach(&self, agent: &Agent, id: &str, workspace: &Path) -> Result<()> {
        if agent.state(id).is_some() {
            return Ok(());
        }
        let method = if agent.session_cap("resume") {
            "session/resume"
        } else if agent.caps()["loadSession"].as_bool() == Some(true) {
            "session/load"
        } else {
            return Err(Error::NotSupported {
                backend: NAME.into(),
                operation: "continuing a session".into(),
                hint: Some(format!(
                    "the agent `{}` advertises neither session/resume nor session/load; start a new session",
                    self.label()
                )),
            });
        };
        // History a load replays is not this task's: no subscriber, so it is dropped.
        let params = json!({"sessionId": id, "cwd": workspace, "mcpServers": []});
        match agent.conn.request(method, params).await {
            Ok(result) => {
                self.remember(agent, id, workspace);
                self.select_model(agent, id, &result).await
            }
            Err(e @ RpcError::Remote { .. }) => {
                tracing::warn!(
                    session = id,
                    "the agent could not continue the session: {}",
                    redact::redact(&e.to_string())
                );
                Err(Error::NotFound {
                    what: "ACP session",
                    id: id.to_string(),
                })
            }
            Err(e) => Err(Error::backend(NAME, format!("`{method}` failed: {e}"))),
        }
    }

    /// Where a resumed session's workspace is: the one given, else the agent's own list.
    async fn resume_workspace(&self, id: &str, given: Option<PathBuf>) -> Result<PathBuf> {
        if let Some(ws) = given {
            return Ok(ws);
        }
        let listed = self.list_sessions().await.unwrap_or_default();
        listed
            .into_iter()
            .find(|s| s.id == id)
            .and_then(|s| s.workspace)
            .ok_or_else(|| Error::NotFound {
                what: "ACP session",
                id: id.to_string(),
            })
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.config.cancel_grace_sec.max(1))
    }
}

/// How long an agent may take to exit after its stdin closed (it saves its sessions).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Counts a turn in flight; a turn dropped before it ended (the runner gave up) cancels it and,
/// when nothing else runs on the agent, kills the agent's process group.
struct TurnGuard {
    agent: Arc<Agent>,
    session: String,
    ended: bool,
}

impl TurnGuard {
    fn new(agent: Arc<Agent>, session: &str) -> Self {
        agent.busy.fetch_add(1, Ordering::SeqCst);
        TurnGuard {
            agent,
            session: session.to_string(),
            ended: false,
        }
    }

    /// End the turn; true when no other turn runs on the agent.
    fn end(&mut self) -> bool {
        self.ended = true;
        self.agent.update_state(&self.session, |s| s.judge = None);
        self.agent.conn.unsubscribe(&self.session);
        self.agent.busy.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let idle = self.end();
        self.agent
            .conn
            .notify("session/cancel", json!({"sessionId": self.session}));
        if idle {
            self.agent.conn.kill_now();
        }
    }
}

#[async_trait::async_trait]
impl CodingBackend for AcpBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            resume: true,
            cancel: true,
            list_sessions: true,
            usage: true,
            cost: true,
            ..Capabilities::NONE
        }
    }

    fn policy_gaps(&self) -> Vec<String> {
        // opencode (told to ask about everything) and claude-agent-acp are known to ask before
        // every edit and command; other agents decide themselves what they ask about.
        let preset = self
            .config
            .command
            .is_empty()
            .then(|| self.config.agent.trim());
        match preset {
            Some("opencode") => Vec::new(),
            // Claude Code reads files without asking, so a read outside is not ours to refuse.
            Some("claude") if self.policy.outside_workspace != Verdict::Allow => vec![
                "outside_workspace for reads: claude-agent-acp reads files without asking permission (writes and commands are checked)".to_string(),
            ],
            Some("claude") => Vec::new(),
            _ => vec![format!(
                "coding.policy holds only for the tool calls the ACP agent `{}` asks permission for or writes through Station (fs/write_text_file); what it does without asking is not checked",
                self.label()
            )],
        }
    }

    async fn shutdown(&self) {
        let agent = self.agent.lock().await.take();
        if let Some(agent) = agent {
            agent
                .conn
                .shutdown(SHUTDOWN_WAIT, Duration::from_secs(2))
                .await;
        }
    }

    async fn health(&self) -> Result<Health> {
        let dir = std::env::temp_dir();
        match self.start_agent(&dir).await {
            Ok(agent) => {
                let info = &agent.init["agentInfo"];
                let name = info["title"]
                    .as_str()
                    .or(info["name"].as_str())
                    .unwrap_or("an ACP agent");
                let detail = format!(
                    "`{}` started and answered `initialize` ({name}, ACP protocol {PROTOCOL_VERSION})",
                    self.label()
                );
                let version = info["version"].as_str().map(str::to_string);
                agent.conn.kill(Duration::from_secs(2)).await;
                Ok(Health {
                    ok: true,
                    version,
                    detail,
                })
            }
            Err(e) => Ok(Health {
                ok: false,
                version: None,
                detail: e.to_string(),
            }),
        }
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        let mut session = Session::new(NAME);
        session.title = req.title;
        session.repo = req.repo;
        let workspace = match &req.resume {
            Some(id) => self.resume_workspace(id, req.workspace.clone()).await?,
            None => req
                .workspace
                .clone()
                .unwrap_or_else(|| self.workspace_base.join(session.id.as_str())),
        };
        let workspace = make_workspace(&workspace).await?;
        let agent = self.agent(&workspace).await?;
        let id = match req.resume {
            Some(id) => {
                self.attach(&agent, &id, &workspace).await?;
                id
            }
            None => self.new_session(&agent, &workspace).await?,
        };
        session.backend_session_id = Some(id);
        session.workspace = Some(workspace);
        Ok(session)
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        let started = Instant::now();
        let workspace = session
            .workspace
            .clone()
            .ok_or_else(|| Error::config(format!("session {} has no workspace", session.id)))?;
        let id = session.backend_session_id.clone().ok_or_else(|| {
            Error::Protocol(format!(
                "session {} has no ACP session id; open it again",
                session.id
            ))
        })?;
        let mut agent = self.agent(&workspace).await?;
        // After a cancel claude-agent-acp answers the next prompt out of step: restart first.
        if agent.state(&id).is_some_and(|s| s.stale_after_cancel)
            && agent.busy.load(Ordering::SeqCst) == 0
        {
            self.retire(&agent).await;
            agent = self.agent(&workspace).await?;
        }
        self.attach(&agent, &id, &workspace).await?;
        let stale = agent.state(&id).is_some_and(|s| s.stale_after_cancel);
        let cost_before = agent.state(&id).and_then(|s| s.last_cost);
        let judge = Arc::new(TurnJudge::new(
            task.policy_or(&self.policy),
            &workspace,
            ctx.clone(),
        ));
        agent.update_state(&id, |s| {
            s.cancelling = false;
            s.judge = Some(judge);
        });
        let mut updates = agent.conn.subscribe(&id);
        let mut guard = TurnGuard::new(agent.clone(), &id);
        let tracker = Tracker::start(&workspace).await;
        let mut turn = Turn::default();
        let conn = agent.conn.clone();
        let params = json!({"sessionId": id, "prompt": [{"type": "text", "text": task.prompt()}]});
        let request = conn.request("session/prompt", params);
        tokio::pin!(request);
        let mut cancel_deadline: Option<tokio::time::Instant> = None;
        let mut updates_open = true;
        let answer = loop {
            tokio::select! {
                biased;
                update = updates.recv(), if updates_open => match update {
                    Some(u) => turn.apply(u, &ctx.events),
                    None => updates_open = false,
                },
                answer = &mut request => break Some(answer),
                _ = ctx.cancel.cancelled(), if cancel_deadline.is_none() => {
                    agent.update_state(&id, |s| s.cancelling = true);
                    conn.notify("session/cancel", json!({"sessionId": id}));
                    cancel_deadline = Some(tokio::time::Instant::now() + self.grace());
                }
                _ = tokio::time::sleep_until(cancel_deadline.unwrap_or_else(tokio::time::Instant::now)), if cancel_deadline.is_some() => break None,
            }
        };
        while let Ok(u) = updates.try_recv() {
            turn.apply(u, &ctx.events);
        }
        let idle = guard.end();
        let cancelled = cancel_deadline.is_some();
        let mut outcome = match answer {
            Some(Ok(result)) => {
                let reason = result["stopReason"].as_str().unwrap_or("end_turn");
                let (success, stop, error) = map_stop_reason(reason);
                let mut o = Outcome::new(success, stop);
                o.error = error;
                o.usage = prompt_usage(&result);
                if stale && success && turn.updates == 0 && o.usage.total() == 0 {
                    o = Outcome::failed(
                        StopReason::Error,
                        "the agent answered out of step after the previous cancel (a known claude-agent-acp defect); it is restarted now, run the task again",
                    );
                    agent.update_state(&id, |s| s.stale_after_cancel = true);
                } else {
                    agent.update_state(&id, |s| s.stale_after_cancel = false);
                }
                o
            }
            Some(Err(_)) | None if cancelled => {
                Outcome::failed(StopReason::Cancelled, "the task was cancelled")
            }
            Some(Err(RpcError::Remote {
                code,
                message,
                data,
            })) => {
                let detail = RpcError::Remote {
                    code,
                    message,
                    data,
                }
                .to_string();
                Outcome::failed(
                    StopReason::Error,
                    redact::redact(&format!("the agent failed the task: {detail}")),
                )
            }
            Some(Err(RpcError::Closed(reason))) => {
                self.retire(&agent).await;
                return Err(Error::backend(
                    NAME,
                    format!(
                        "the agent stopped during the task: {reason}. It is started again for the next task"
                    ),
                ));
            }
            None => Outcome::failed(StopReason::Cancelled, "the task was cancelled"),
        };
        if outcome.stop_reason == StopReason::Cancelled
            && ctx.cancel.reason() == Some(StopReason::Timeout)
        {
            outcome.stop_reason = StopReason::Timeout;
            outcome.error = Some("the task's deadline passed".into());
        }
        let out_of_step = outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("out of step"));
        if matches!(
            outcome.stop_reason,
            StopReason::Cancelled | StopReason::Timeout
        ) || out_of_step
        {
            if idle {
                // A fresh process next time: no leftovers, and no out-of-step answers.
                self.retire(&agent).await;
            } else {
                agent.update_state(&id, |s| s.stale_after_cancel = true);
            }
        }
        if let Some(total) = turn.cost {
            outcome.cost_usd = Some((total - cost_before.unwrap_or(0.0)).max(0.0));
            agent.update_state(&id, |s| s.last_cost = Some(total));
        }
        if outcome.usage.total() > 0 || outcome.cost_usd.is_some() {
            ctx.events.emit(EventKind::StepFinished {
                usage: outcome.usage,
                cost_usd: outcome.cost_usd,
            });
        }
        outcome.summary = turn.text.trim().to_string();
        let mut calls = std::mem::take(&mut turn.tool_calls);
        calls.extend(turn.unfinished_tools());
        outcome.tool_calls = calls;
        outcome.files_changed = tracker.finish().await;
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        outcome.backend_session_id = Some(id);
        outcome.model.clone_from(&self.config.model);
        Ok(outcome)
    }

    async fn close(&self, session: &Session) -> Result<()> {
        let Some(id) = &session.backend_session_id else {
            return Ok(());
        };
        if let Some(agent) = self.agent.lock().await.as_ref() {
            agent
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            agent.conn.unsubscribe(id);
        }
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<BackendSession>> {
        let base = self.workspace_base.clone();
        tokio::fs::create_dir_all(&base)
            .await
            .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
        let agent = self.agent(&base).await?;
        if !agent.session_cap("list") {
            return Err(Error::not_supported(
                NAME,
                "listing sessions (the agent has no session/list)",
            ));
        }
        let result = agent
            .conn
            .request("session/list", json!({}))
            .await
            .map_err(|e| Error::backend(NAME, format!("`session/list` failed: {e}")))?;
        let mut sessions: Vec<BackendSession> = result["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some(BackendSession {
                    id: s["sessionId"].as_str()?.to_string(),
                    title: s["title"].as_str().map(str::to_string),
                    workspace: s["cwd"].as_str().map(PathBuf::from),
                    updated_at: s["updatedAt"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&chrono::Utc)),
                })
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        Ok(sessions)
    }
}
