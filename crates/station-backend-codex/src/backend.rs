//! [`CodexBackend`]: one `codex exec` process per task.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use station_core::agent_process::{AgentEnd, AgentProcess, StdoutParser, open_session};
use station_core::policy::{Policy, PolicyConfig};
use station_core::process::{CommandSpec, describe_status};
use station_core::workspace::Tracker;
use station_core::{
    Capabilities, CodingBackend, Error, EventKind, ExecContext, Health, OpenRequest, Outcome,
    Result, Session, StopReason, Task,
};

use crate::CodexConfig;
use crate::home;
use crate::parser::ExecParser;
use crate::policy::{self, CodexAudit, Rendered, RulesFile};

/// The backend's configured name.
pub const NAME: &str = "codex";

/// How to install the CLI, for "not found" errors.
const INSTALL_HINT: &str = "npm install -g @openai/codex";

/// Deadline of `codex --version`.
const HEALTH_DEADLINE: Duration = Duration::from_secs(20);

/// Time between SIGTERM and SIGKILL when a task is stopped.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// How long `codex` may take to exit after its turn ended before it is stopped.
const EXIT_GRACE_AFTER_TURN: Duration = Duration::from_secs(5);

/// What Codex prints on stderr when `exec resume` finds no such thread.
const NO_ROLLOUT: &str = "no rollout found for thread id";

/// Drives the Codex CLI; see the [crate docs](crate).
#[derive(Clone)]
pub struct CodexBackend {
    config: CodexConfig,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    workspace_base: PathBuf,
    kill_grace: Duration,
    policy: PolicyConfig,
}

impl std::fmt::Debug for CodexBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values of the extra environment may be credentials: show names only.
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("CodexBackend")
            .field("config", &self.config)
            .field("env", &env_names)
            .field("env_remove", &self.env_remove)
            .field("workspace_base", &self.workspace_base)
            .field("kill_grace", &self.kill_grace)
            .field("policy", &self.policy)
            .finish()
    }
}

impl StdoutParser for ExecParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        ExecParser::push_line(self, line)
    }
    fn finished(&self) -> bool {
        self.turn_ended()
    }
}

impl CodexBackend {
    /// A backend for `config`. Workspaces of sessions opened without one go under
    /// `$TMPDIR/station-coding` unless [`with_workspace_base`](Self::with_workspace_base) says
    /// otherwise.
    pub fn new(config: CodexConfig) -> Self {
        CodexBackend {
            config,
            env: Vec::new(),
            env_remove: Vec::new(),
            workspace_base: std::env::temp_dir().join("station-coding"),
            kill_grace: DEFAULT_KILL_GRACE,
            policy: PolicyConfig::default(),
        }
    }

    /// What the agent may do (`coding.policy`; without one, no writes outside the workspace),
    /// rendered into Codex's sandbox settings and exec policy rules for each task; a task's
    /// own policy wins. What Codex cannot express is listed by `policy_gaps`.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Extra environment for the `codex` child (added to the inherited one; later pairs win).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env.extend(env);
        self
    }

    /// Inherited variables the `codex` child must not see.
    pub fn with_env_remove(mut self, keys: Vec<String>) -> Self {
        self.env_remove.extend(keys);
        self
    }

    /// Where workspaces are created for sessions opened without one.
    pub fn with_workspace_base(mut self, base: PathBuf) -> Self {
        self.workspace_base = base;
        self
    }

    /// Time a stopped `codex` gets between SIGTERM and SIGKILL (default 3 s).
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &CodexConfig {
        &self.config
    }

    /// A variable as the child will see it.
    fn child_env(&self, key: &str) -> Option<String> {
        if key == "CODEX_HOME"
            && let Some(home) = &self.config.codex_home
        {
            return Some(home.to_string_lossy().into_owned());
        }
        if let Some((_, v)) = self.env.iter().rev().find(|(k, _)| k == key) {
            return Some(v.clone());
        }
        if self.env_remove.iter().any(|k| k == key) {
            return None;
        }
        std::env::var(key).ok()
    }

    /// Where Codex keeps its login, config and sessions: `CODEX_HOME`, else `~/.codex`.
    fn codex_home(&self) -> Option<PathBuf> {
        match self.child_env("CODEX_HOME").filter(|h| !h.is_empty()) {
            Some(home) => Some(PathBuf::from(home)),
            None => self
                .child_env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(".codex")),
        }
    }

    fn config_toml_setting(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.codex_home()?.join("config.toml")).ok()?;
        home::top_level_setting(&text, key)
    }

    /// The model the task runs with: `model`, else a `model=` override, else Codex's
    /// `config.toml`. `None` when Codex picks its built-in default.
    fn model_name(&self) -> Option<String> {
        let from_override = self.config.config_overrides.iter().rev().find_map(|o| {
            let (key, value) = o.split_once('=')?;
            (key.trim() == "model").then(|| value.trim().trim_matches(['"', '\'']).to_owned())
        });
        self.config
            .model
            .clone()
            .filter(|m| !m.is_empty())
            .or(from_override)
            .or_else(|| self.config_toml_setting("model"))
    }

    /// `codex` in `cwd` with this backend's environment.
    fn command(&self, cwd: &Path) -> CommandSpec {
        let mut spec = CommandSpec::new(&self.config.binary, cwd).install_hint(INSTALL_HINT);
        for key in &self.env_remove {
            spec = spec.env_remove(key);
        }
        for (key, value) in &self.env {
            spec = spec.env(key, value);
        }
        if let Some(home) = &self.config.codex_home {
            spec = spec.env("CODEX_HOME", home);
        }
        // An inherited PWD would name Station's directory, not the workspace.
        spec.env("PWD", cwd)
    }

    /// The command for one task. The prompt goes in on stdin (`-`), so it is never parsed as a
    /// flag nor visible in `ps`; valued flags use `--flag=value` for the same reason. `exec
    /// resume` refuses `-s`, so the sandbox is a config override there.
    fn task_command(
        &self,
        cwd: &Path,
        resume: Option<&str>,
        prompt: &str,
        policy: &Rendered,
    ) -> CommandSpec {
        let mut spec = self.command(cwd).arg("exec");
        if resume.is_some() {
            spec = spec.arg("resume");
        }
        spec = spec.args(["--json", "--skip-git-repo-check"]);
        let sandbox = policy.sandbox.as_str();
        spec = match resume {
            None => spec.arg(format!("--sandbox={sandbox}")),
            Some(_) => spec.arg(format!("--config=sandbox_mode=\"{sandbox}\"")),
        };
        if let Some(model) = self.config.model.as_deref().filter(|m| !m.is_empty()) {
            spec = spec.arg(format!("--model={model}"));
        }
        // The policy's settings come last, so a configured override cannot loosen them.
        for entry in self.config.config_overrides.iter().chain(&policy.overrides) {
            spec = spec.arg(format!("--config={entry}"));
        }
        if let Some(id) = resume {
            spec = spec.arg(id);
        }
        spec.arg("-").stdin_bytes(prompt.as_bytes().to_vec())
    }

    /// The size of thread `id`'s rollout (0 when there is none).
    async fn rollout_len(&self, id: &str) -> u64 {
        let Some(path) = self.codex_home().and_then(|h| home::find_rollout(&h, id)) else {
            return 0;
        };
        tokio::fs::metadata(path)
            .await
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Thread `id`'s rollout from byte `start` ("" when unreadable).
    async fn rollout_since(&self, id: &str, start: u64) -> String {
        let Some(path) = self.codex_home().and_then(|h| home::find_rollout(&h, id)) else {
            return String::new();
        };
        let bytes = tokio::fs::read(&path).await.unwrap_or_default();
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// The policy's exec rules in a Station-owned file under `$CODEX_HOME/rules`, for one run.
    fn write_rules(&self, text: &str) -> Result<RulesFile> {
        let home = self.codex_home().ok_or_else(|| {
            Error::config("cannot place the policy's exec rules for codex: neither coding.codex.codex_home, CODEX_HOME nor HOME is set")
        })?;
        let file = RulesFile::write(&home, text).map_err(|e| {
            Error::io(
                format!(
                    "writing the policy's exec rules into {} (coding.codex.codex_home)",
                    home.join("rules").display()
                ),
                e,
            )
        })?;
        tracing::debug!(path = %file.path().display(), "codex exec policy rules written");
        Ok(file)
    }

    /// Which credential Codex will use, without reading any value.
    fn auth_source(&self) -> Option<String> {
        for key in ["CODEX_API_KEY", "OPENAI_API_KEY"] {
            if self.child_env(key).is_some_and(|v| !v.trim().is_empty()) {
                return Some(format!("{key} is set"));
            }
        }
        let home = self.codex_home()?;
        let auth = home.join("auth.json");
        if auth.is_file() {
            return Some(format!(
                "`codex login` credentials exist at {}",
                auth.display()
            ));
        }
        self.config_toml_setting("model_provider")
            .filter(|p| p != "openai")
            .map(|p| {
                format!(
                    "{} selects model provider `{p}`, which brings its own key",
                    home.join("config.toml").display()
                )
            })
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

    /// The directory thread `id` was started in, from its rollout; `NotFound` without one.
    fn thread_workspace(&self, id: &str) -> Result<Option<PathBuf>> {
        let not_found = || Error::NotFound {
            what: "Codex thread",
            id: id.to_string(),
        };
        if !home::is_thread_id(id) {
            return Err(Error::NotFound {
                what: "Codex thread (ids are UUIDs)",
                id: id.to_string(),
            });
        }
        let codex_home = self.codex_home().ok_or_else(|| {
            Error::config("cannot tell where Codex keeps its sessions: neither coding.codex.codex_home, CODEX_HOME nor HOME is set")
        })?;
        let rollout = home::find_rollout(&codex_home, id).ok_or_else(not_found)?;
        home::rollout_cwd(&rollout)
            .map_err(|e| Error::io(format!("reading {}", rollout.display()), e))
    }
}

#[async_trait::async_trait]
impl CodingBackend for CodexBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            resume: true,
            cancel: true,
            usage: true,
            ..Capabilities::NONE
        }
    }

    async fn health(&self) -> Result<Health> {
        let spec = self.command(&std::env::temp_dir()).arg("--version");
        let program = spec.resolve_program()?;
        let version = match spec.output(HEALTH_DEADLINE, None).await {
            Ok(out) => out.split_whitespace().last().map(str::to_string),
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
        let backend = self.clone();
        let auth = tokio::task::spawn_blocking(move || backend.auth_source())
            .await
            .unwrap_or(None);
        Ok(match auth {
            Some(auth) => Health {
                ok: true,
                version,
                detail: format!(
                    "codex {shown} at {}; authentication: {auth}",
                    program.display()
                ),
            },
            None => Health {
                ok: false,
                version,
                detail: format!(
                    "codex {shown} at {} has no credentials: neither CODEX_API_KEY nor OPENAI_API_KEY is set and no `codex login` was found{}; run `codex login` or export OPENAI_API_KEY",
                    program.display(),
                    self.codex_home()
                        .map(|d| format!(" in {}", d.display()))
                        .unwrap_or_default()
                ),
            },
        })
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        let backend = self.clone();
        open_session(NAME, req, &self.workspace_base, move |id, requested| {
            let created_in = backend.thread_workspace(id)?;
            requested.map(Path::to_path_buf).or(created_in).ok_or_else(|| {
                Error::config(format!(
                    "Codex thread {id} names no working directory; give the workspace to continue it in"
                ))
            })
        })
        .await
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        let started = Instant::now();
        let workspace = Self::session_workspace(session)?;
        let resume = session.backend_session_id.as_deref();
        if let Some(id) = resume.filter(|id| !home::is_thread_id(id)) {
            return Err(Error::NotFound {
                what: "Codex thread (ids are UUIDs)",
                id: id.to_string(),
            });
        }
        let policy_config = task.policy_or(&self.policy);
        let rendered = policy::render(policy_config, self.config.sandbox);
        let _rules = match &rendered.rules {
            Some(text) => Some(self.write_rules(text)?),
            None => None,
        };
        let spec = self.task_command(&workspace, resume, &task.prompt(), &rendered);
        let tracker = Tracker::start(&workspace).await;
        // A resumed thread's rollout holds earlier runs: only what follows is this run's.
        let rollout_start = match resume {
            Some(id) => self.rollout_len(id).await,
            None => 0,
        };
        let audit = CodexAudit::new(
            ExecParser::new(),
            Policy::new(policy_config.clone(), &workspace),
        );
        let run = AgentProcess::new("codex", spec)
            .linger(EXIT_GRACE_AFTER_TURN)
            .kill_grace(self.kill_grace)
            .run(audit, &ctx)
            .await?;
        let report = run.parser.inner.report().clone();
        if let Some(id) = &report.thread_id {
            for event in run
                .parser
                .refused(&self.rollout_since(id, rollout_start).await)
            {
                ctx.events.emit(event);
            }
        }
        let mut outcome = Outcome::new(
            report.turn_completed && report.turn_failed.is_none(),
            StopReason::Completed,
        );
        outcome.summary = report.summary.clone();
        outcome.usage = report.usage;
        outcome.tool_calls = report.tool_calls.clone();
        outcome.model = self.model_name();
        match run.end {
            AgentEnd::Exited(status) if !run.parser.inner.turn_ended() => {
                if run.stderr_tail.contains(NO_ROLLOUT) {
                    return Err(Error::NotFound {
                        what: "Codex thread",
                        id: resume.unwrap_or_default().to_string(),
                    });
                }
                let why = report
                    .last_error
                    .clone()
                    .unwrap_or_else(|| run.stderr_tail.clone());
                outcome.success = false;
                outcome.stop_reason = StopReason::Error;
                outcome.error = Some(format!(
                    "codex exited ({}) before finishing the turn{}",
                    describe_status(status),
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                ));
            }
            AgentEnd::Stopped(reason) if !report.turn_completed => {
                outcome.success = false;
                outcome.stop_reason = reason;
                // The runner puts the why in front ("task timed out after Ns", "task cancelled").
                let stopped = "codex and its process group were stopped";
                outcome.error = Some(match &report.last_error {
                    Some(error) => format!("{stopped}; its last error: {error}"),
                    None => stopped.to_string(),
                });
            }
            _ => {
                if let Some(message) = &report.turn_failed {
                    outcome.stop_reason = StopReason::Error;
                    outcome.error = Some(format!("the Codex turn failed: {message}"));
                }
            }
        }
        outcome.files_changed = tracker.finish().await;
        outcome.backend_session_id = report.thread_id.clone().or(resume.map(str::to_string));
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    fn policy_gaps(&self) -> Vec<String> {
        policy::gaps(&self.policy)
    }

    fn policy_gaps_for(&self, task: &Task) -> Vec<String> {
        policy::gaps(task.policy_or(&self.policy))
    }

    async fn close(&self, _session: &Session) -> Result<()> {
        // Nothing runs between tasks; the rollout stays so the thread can be continued.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sandbox;

    fn args(spec: &CommandSpec) -> Vec<String> {
        spec.get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn argv_carries_config_and_never_the_prompt() {
        let backend = CodexBackend::new(CodexConfig {
            model: Some("gpt-5.5".into()),
            sandbox: Sandbox::ReadOnly,
            config_overrides: vec!["model_reasoning_effort=\"high\"".into()],
            ..CodexConfig::default()
        });
        let as_configured = Rendered {
            sandbox: backend.config.sandbox,
            overrides: Vec::new(),
            rules: None,
        };
        let new = backend.task_command(Path::new("/w"), None, "-rf secret prompt", &as_configured);
        assert_eq!(
            args(&new),
            [
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--sandbox=read-only",
                "--model=gpt-5.5",
                "--config=model_reasoning_effort=\"high\"",
                "-",
            ]
        );
        let id = "01a22cc2-ab4a-7da0-912d-eac0d0454725";
        let resumed = backend.task_command(Path::new("/w"), Some(id), "go on", &as_configured);
        assert_eq!(
            args(&resumed),
            [
                "exec",
                "resume",
                "--json",
                "--skip-git-repo-check",
                "--config=sandbox_mode=\"read-only\"",
                "--model=gpt-5.5",
                "--config=model_reasoning_effort=\"high\"",
                id,
                "-",
            ]
        );
    }

    #[test]
    fn the_model_comes_from_config_then_overrides_then_config_toml() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("config.toml"), "model = \"gpt-5.5\"\n").unwrap();
        let base = CodexConfig {
            codex_home: Some(home.path().to_path_buf()),
            ..CodexConfig::default()
        };
        let from_toml = CodexBackend::new(base.clone());
        assert_eq!(from_toml.model_name().as_deref(), Some("gpt-5.5"));
        let overridden = CodexBackend::new(CodexConfig {
            config_overrides: vec!["model=\"o3\"".into()],
            ..base.clone()
        });
        assert_eq!(overridden.model_name().as_deref(), Some("o3"));
        let explicit = CodexBackend::new(CodexConfig {
            model: Some("gpt-5".into()),
            config_overrides: vec!["model=\"o3\"".into()],
            ..base
        });
        assert_eq!(explicit.model_name().as_deref(), Some("gpt-5"));
    }

    #[test]
    fn codex_home_is_config_then_env_then_home_and_secrets_stay_hidden() {
        let backend = CodexBackend::new(CodexConfig::default()).with_env(vec![
            ("CODEX_HOME".into(), "/env/codex".into()),
            ("OPENAI_API_KEY".into(), "value-that-must-not-show".into()),
        ]);
        assert_eq!(backend.codex_home(), Some(PathBuf::from("/env/codex")));
        assert!(!format!("{backend:?}").contains("value-that-must-not-show"));
        let configured = CodexBackend::new(CodexConfig {
            codex_home: Some("/cfg/codex".into()),
            ..CodexConfig::default()
        });
        assert_eq!(configured.codex_home(), Some(PathBuf::from("/cfg/codex")));
        let home_only = CodexBackend::new(CodexConfig::default())
            .with_env_remove(vec!["CODEX_HOME".into()])
            .with_env(vec![("HOME".into(), "/h".into())]);
        assert_eq!(home_only.codex_home(), Some(PathBuf::from("/h/.codex")));
    }
}
