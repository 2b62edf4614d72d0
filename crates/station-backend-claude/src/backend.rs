//! [`ClaudeBackend`]: one `claude -p` process per task.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use station_core::agent_process::{AgentEnd, AgentProcess, StdoutParser, canonical, open_session};
use station_core::policy::{Policy, PolicyConfig};

use crate::ClaudeConfig;
use station_core::process::{CommandSpec, describe_status};
use station_core::{
    BackendSession, Capabilities, CodingBackend, Error, EventKind, ExecContext, Health, InputError,
    OpenRequest, Outcome, Result, Session, Task,
};

use crate::control::{self, ControlledParser};
use crate::parser::StreamParser;
use crate::transcripts;

/// The backend's configured name.
pub const NAME: &str = "claudecode";

/// How to install the CLI, for "not found" errors.
const INSTALL_HINT: &str = "npm install -g @anthropic-ai/claude-code";

/// Deadline of `claude --version`.
const HEALTH_DEADLINE: Duration = Duration::from_secs(20);

/// Time between SIGTERM and SIGKILL when a task is stopped.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// How long `claude` may take to exit after its `result` line before it is stopped.
const EXIT_GRACE_AFTER_RESULT: Duration = Duration::from_secs(5);

/// Used when `max_turns` is configured as 0.
const DEFAULT_MAX_TURNS: u32 = 10;

/// Drives the Claude Code CLI; see the [crate docs](crate).
#[derive(Clone)]
pub struct ClaudeBackend {
    config: ClaudeConfig,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    workspace_base: PathBuf,
    kill_grace: Duration,
    policy: PolicyConfig,
}

impl std::fmt::Debug for ClaudeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values of the extra environment may be credentials: show names only.
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ClaudeBackend")
            .field("config", &self.config)
            .field("env", &env_names)
            .field("env_remove", &self.env_remove)
            .field("workspace_base", &self.workspace_base)
            .field("kill_grace", &self.kill_grace)
            .field("policy", &self.policy)
            .finish()
    }
}

impl StdoutParser for StreamParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        StreamParser::push_line(self, line)
    }
    fn finished(&self) -> bool {
        self.result().is_some()
    }
}

impl ClaudeBackend {
    /// A backend for `config`. Workspaces of sessions opened without one go under
    /// `$TMPDIR/station-coding` unless [`with_workspace_base`](Self::with_workspace_base) says
    /// otherwise.
    pub fn new(config: ClaudeConfig) -> Self {
        ClaudeBackend {
            config,
            env: Vec::new(),
            env_remove: Vec::new(),
            workspace_base: std::env::temp_dir().join("station-coding"),
            kill_grace: DEFAULT_KILL_GRACE,
            policy: PolicyConfig::default(),
        }
    }

    /// What the agent may do (`coding.policy`; without one, nothing outside the workspace).
    /// A task's own policy ([`Task::policy`]) takes its place for that task.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Extra environment for the `claude` child (added to the inherited one; later pairs win).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env.extend(env);
        self
    }

    /// Inherited variables the `claude` child must not see.
    pub fn with_env_remove(mut self, keys: Vec<String>) -> Self {
        self.env_remove.extend(keys);
        self
    }

    /// Where workspaces are created for sessions opened without one.
    pub fn with_workspace_base(mut self, base: PathBuf) -> Self {
        self.workspace_base = base;
        self
    }

    /// Time a stopped `claude` gets between SIGTERM and SIGKILL (default 3 s).
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ClaudeConfig {
        &self.config
    }

    fn max_turns(&self) -> u32 {
        if self.config.max_turns == 0 {
            DEFAULT_MAX_TURNS
        } else {
            self.config.max_turns
        }
    }

    /// A variable as the child will see it.
    fn child_env(&self, key: &str) -> Option<String> {
        if let Some((_, v)) = self.env.iter().rev().find(|(k, _)| k == key) {
            return Some(v.clone());
        }
        if self.env_remove.iter().any(|k| k == key) {
            return None;
        }
        std::env::var(key).ok()
    }

    fn claude_config_dir(&self) -> Option<PathBuf> {
        transcripts::config_dir(&|k| self.child_env(k))
    }

    /// `claude` in `cwd` with this backend's environment.
    fn command(&self, cwd: &Path) -> CommandSpec {
        let mut spec = CommandSpec::new(&self.config.binary, cwd).install_hint(INSTALL_HINT);
        for key in &self.env_remove {
            spec = spec.env_remove(key);
        }
        for (key, value) in &self.env {
            spec = spec.env(key, value);
        }
        // An inherited PWD would name Station's directory, not the workspace.
        spec.env("PWD", cwd)
    }

    /// The command for one task. Stdin stays open: the prompt goes in as a stream-json user
    /// message (so no prompt text is ever parsed as a flag, or visible in `ps`), and permission
    /// requests are answered there ([`control`]); every valued flag uses the `--flag=value` form
    /// for the same reason.
    fn task_command(&self, cwd: &Path, resume: Option<&str>) -> CommandSpec {
        let mut spec = self
            .command(cwd)
            .args([
                "-p",
                "--input-format=stream-json",
                "--output-format=stream-json",
                "--verbose",
                "--include-partial-messages",
            ])
            .args([
                "--permission-mode=default",
                "--permission-prompt-tool=stdio",
            ])
            .arg(format!("--max-turns={}", self.max_turns()));
        if let Some(model) = self.config.model.as_deref().filter(|m| !m.is_empty()) {
            spec = spec.arg(format!("--model={model}"));
        }
        if let Some(id) = resume {
            spec = spec.arg(format!("--resume={id}"));
        }
        if !self.config.allowed_tools.is_empty() {
            spec = spec.arg(format!(
                "--allowed-tools={}",
                self.config.allowed_tools.join(",")
            ));
        }
        if !self.config.disallowed_tools.is_empty() {
            spec = spec.arg(format!(
                "--disallowed-tools={}",
                self.config.disallowed_tools.join(",")
            ));
        }
        spec.stdin_piped()
    }

    /// Which credential the CLI will find, without reading any value. `None` when none of the
    /// places we can check has one.
    fn auth_source(&self) -> Option<String> {
        let set = |k: &str| self.child_env(k).is_some_and(|v| !v.trim().is_empty());
        for key in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
        ] {
            if set(key) {
                return Some(format!("{key} is set"));
            }
        }
        for (key, provider) in [
            ("CLAUDE_CODE_USE_BEDROCK", "Amazon Bedrock"),
            ("CLAUDE_CODE_USE_VERTEX", "Google Vertex AI"),
        ] {
            if self
                .child_env(key)
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
            {
                return Some(format!("{provider} is configured ({key})"));
            }
        }
        let credentials = self.claude_config_dir()?.join(".credentials.json");
        credentials.is_file().then(|| {
            format!(
                "`claude login` credentials exist at {}",
                credentials.display()
            )
        })
    }

    /// The directory session `id` was created in, checked against the one asked for.
    fn resume_workspace(&self, id: &str, requested: Option<&Path>) -> Result<PathBuf> {
        if !transcripts::is_session_id(id) {
            return Err(Error::NotFound {
                what: "Claude session (ids are UUIDs)",
                id: id.to_string(),
            });
        }
        let requested = requested.map(canonical);
        let Some(config_dir) = self.claude_config_dir() else {
            return requested.ok_or_else(|| {
                Error::config("cannot tell where Claude keeps its sessions (neither CLAUDE_CONFIG_DIR nor HOME is set); give the workspace the session was created in")
            });
        };
        let Some(path) = transcripts::find(&config_dir, id, requested.as_deref()) else {
            return Err(Error::NotFound {
                what: "Claude session",
                id: id.to_string(),
            });
        };
        let info = transcripts::read_info(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let created_in = match (info.cwd, &requested) {
            (Some(cwd), _) => canonical(&cwd),
            // No `cwd` line: the transcript's dir name still tells whether it is this workspace.
            (None, Some(ws))
                if path
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| n.to_string_lossy() == transcripts::project_dir_name(ws)) =>
            {
                ws.clone()
            }
            (None, _) => {
                return Err(Error::config(format!(
                    "cannot tell which directory Claude session {id} belongs to ({} names none); give the workspace it was created in",
                    path.display()
                )));
            }
        };
        if let Some(ws) = requested
            && ws != created_in
        {
            return Err(InputError::new(format!(
                "Claude session {id} was created in {}, and Claude continues a session only from the directory it was created in; the requested workspace is {}",
                created_in.display(),
                ws.display()
            ))
            .field("workspace")
            .hint(format!("open it without a workspace, or with {}", created_in.display()))
            .into());
        }
        if !created_in.is_dir() {
            return Err(Error::config(format!(
                "Claude session {id} was created in {}, which no longer exists",
                created_in.display()
            )));
        }
        Ok(created_in)
    }

    /// The session's workspace, which must exist.
    fn session_workspace(session: &Session) -> Result<PathBuf> {
        let ws = session.workspace.clone().ok_or_else(|| {
            Error::config(format!(
                "session {} has no workspace; open it again with one",
                session.id
            ))
        })?;
        if !ws.is_dir() {
            return Err(Error::config(format!(
                "workspace {} of session {} does not exist",
                ws.display(),
                session.id
            )));
        }
        Ok(ws)
    }
}

#[async_trait::async_trait]
impl CodingBackend for ClaudeBackend {
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
            local_workspace: true,
            ..Capabilities::NONE
        }
    }

    async fn health(&self) -> Result<Health> {
        let spec = self.command(&std::env::temp_dir()).arg("--version");
        let program = spec.resolve_program()?;
        let version = match spec.output(HEALTH_DEADLINE, None).await {
            Ok(out) => out.split_whitespace().next().map(str::to_string),
            Err(e @ Error::ProcessFailed { .. }) => {
                return Ok(Health {
                    ok: false,
                    version: None,
                    detail: format!("`{} --version` failed: {e}", program.display()),
                });
            }
            Err(e) => return Err(e),
        };
        let shown = version.clone().unwrap_or_else(|| "unknown version".into());
        Ok(match self.auth_source() {
            Some(auth) => Health {
                ok: true,
                version,
                detail: format!(
                    "claude {shown} at {}; authentication: {auth}",
                    program.display()
                ),
            },
            // The macOS login lives in the keychain, which we cannot look at.
            None if cfg!(target_os = "macos") => Health {
                ok: true,
                version,
                detail: format!(
                    "claude {shown} at {}; no ANTHROPIC_API_KEY set, so it relies on its `claude login` (kept in the keychain)",
                    program.display()
                ),
            },
            None => Health {
                ok: false,
                version,
                detail: format!(
                    "claude {shown} at {} has no credentials: ANTHROPIC_API_KEY is not set and no `claude login` credentials were found{}; run `claude login` or export ANTHROPIC_API_KEY",
                    program.display(),
                    self.claude_config_dir()
                        .map(|d| format!(" under {}", d.display()))
                        .unwrap_or_default()
                ),
            },
        })
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        let backend = self.clone();
        open_session(NAME, req, &self.workspace_base, move |id, requested| {
            backend.resume_workspace(id, requested)
        })
        .await
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        let started = Instant::now();
        let workspace = Self::session_workspace(session)?;
        let resume = session.backend_session_id.as_deref();
        if let Some(id) = resume.filter(|id| !transcripts::is_session_id(id)) {
            return Err(Error::NotFound {
                what: "Claude session (ids are UUIDs)",
                id: id.to_string(),
            });
        }
        let spec = self.task_command(&workspace, resume);
        let policy = Policy::new(task.policy_or(&self.policy).clone(), &workspace);
        let (stdin_tx, stdin_rx) = tokio::sync::oneshot::channel();
        let (requests_tx, requests_rx) = tokio::sync::mpsc::unbounded_channel();
        let process = AgentProcess::new("claude", spec)
            .linger(EXIT_GRACE_AFTER_RESULT)
            .kill_grace(self.kill_grace);
        let running = process.run_with_stdin(
            ControlledParser::new(StreamParser::new(), requests_tx),
            &ctx,
            |stdin| {
                let _ = stdin_tx.send(stdin);
            },
        );
        let serving = control::serve(
            stdin_rx,
            control::opening_lines(&task.prompt()),
            requests_rx,
            policy,
            &ctx,
        );
        // `serving` never ends by itself; it is dropped (closing stdin) once the process ended.
        let run = tokio::select! {
            run = running => run?,
            never = serving => match never {},
        };
        let mut parser = run.parser.inner;
        for event in parser.finish() {
            ctx.events.emit(event);
        }
        let report = parser.report();
        let mut outcome = report.outcome();
        match run.end {
            AgentEnd::Exited(status) => match &report.result {
                Some(result) if result.is_conversation_not_found() => {
                    return Err(Error::NotFound {
                        what: "Claude conversation for this workspace",
                        id: resume
                            .or(report.session_id.as_deref())
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                Some(_) => {}
                None => {
                    let mut message = if status.success() {
                        "claude exited without reporting a result".to_string()
                    } else {
                        format!(
                            "claude failed ({}) before reporting a result",
                            describe_status(status)
                        )
                    };
                    if !run.stderr_tail.is_empty() {
                        message = format!("{message}: {}", run.stderr_tail);
                    }
                    outcome.error = Some(message);
                }
            },
            AgentEnd::Stopped(reason) if report.result.is_none() => {
                outcome.success = false;
                outcome.stop_reason = reason;
                // The runner puts the why in front ("task timed out after Ns", "task cancelled").
                let stopped = "claude and its process group were stopped";
                // Claude Code was retrying a failing model API: that is why it did not finish.
                outcome.error = Some(match &report.api_error {
                    Some(api) => format!("{}; {stopped}", api.describe()),
                    None => stopped.to_string(),
                });
            }
            // The result came before the stop: the work is done, report it.
            AgentEnd::Stopped(_) | AgentEnd::Lingered => {}
        }
        if outcome.backend_session_id.is_none() {
            outcome.backend_session_id = resume.map(str::to_string);
        }
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    async fn close(&self, _session: &Session) -> Result<()> {
        // Nothing runs between tasks; the transcript stays so the session can be continued.
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<BackendSession>> {
        let Some(config_dir) = self.claude_config_dir() else {
            return Ok(Vec::new());
        };
        tokio::task::spawn_blocking(move || {
            transcripts::list(&config_dir).map_err(|e| {
                Error::io(
                    format!("listing Claude sessions in {}", config_dir.display()),
                    e,
                )
            })
        })
        .await
        .map_err(|e| Error::backend(NAME, format!("listing sessions failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_one_json_line() {
        let line = control::user_message_line("--help\nme \"now\"");
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["message"]["content"][0]["text"], "--help\nme \"now\"");
        assert_eq!(value["type"], "user");
    }

    #[test]
    fn argv_carries_config_and_never_the_prompt() {
        let config = ClaudeConfig {
            binary: "claude".into(),
            timeout_sec: 0,
            max_turns: 0,
            model: Some("claude-sonnet-4-5".into()),
            allowed_tools: vec!["Read".into(), "Write".into()],
            disallowed_tools: vec!["Bash".into()],
        };
        let backend = ClaudeBackend::new(config);
        let id = "cf60bb80-4f29-4d4a-91eb-6ad6ca51eb65";
        let spec = backend.task_command(Path::new("/w"), Some(id));
        let args: Vec<String> = spec
            .get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-p",
                "--input-format=stream-json",
                "--output-format=stream-json",
                "--verbose",
                "--include-partial-messages",
                "--permission-mode=default",
                "--permission-prompt-tool=stdio",
                "--max-turns=10",
                "--model=claude-sonnet-4-5",
                &format!("--resume={id}"),
                "--allowed-tools=Read,Write",
                "--disallowed-tools=Bash",
            ]
        );
    }

    #[test]
    fn child_env_applies_overrides_and_removals() {
        let backend = ClaudeBackend::new(ClaudeConfig::default())
            .with_env(vec![
                ("STN_TEST_A".into(), "1".into()),
                ("STN_TEST_A".into(), "2".into()),
            ])
            .with_env_remove(vec!["PATH".into()]);
        assert_eq!(backend.child_env("STN_TEST_A").as_deref(), Some("2"));
        assert_eq!(backend.child_env("PATH"), None);
        let shown = format!(
            "{:?}",
            backend.with_env(vec![(
                "ANTHROPIC_API_KEY".into(),
                "value-that-must-not-show".into()
            )])
        );
        assert!(!shown.contains("value-that-must-not-show"), "{shown}");
    }
}
