//! [`GeminiBackend`]: one headless `gemini` process per task.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use station_core::agent_process::{AgentEnd, AgentProcess, StdoutParser, canonical, open_session};
use station_core::policy::{AuditedParser, Policy, PolicyConfig};
use station_core::process::{CommandSpec, describe_status};
use station_core::workspace::Tracker;
use station_core::{
    Capabilities, CodingBackend, Error, EventKind, ExecContext, Health, InputError, OpenRequest,
    Outcome, Result, Session, StopReason, Task,
};

use crate::GeminiConfig;
use crate::parser::{RunReport, StreamParser};
use crate::policy;
use crate::sessions;

/// The backend's configured name.
pub const NAME: &str = "gemini";

/// How to install the CLI, for "not found" errors.
const INSTALL_HINT: &str = "npm install -g @google/gemini-cli";

/// Deadline of `gemini --version`.
const HEALTH_DEADLINE: Duration = Duration::from_secs(30);

/// Time between SIGTERM and SIGKILL when a task is stopped.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// How long `gemini` may take to exit after its `result` line before it is stopped.
const EXIT_GRACE_AFTER_RESULT: Duration = Duration::from_secs(5);

/// The CLI's documented exit codes (`FatalError` subclasses).
const EXIT_AUTH: i32 = 41;
const EXIT_INPUT: i32 = 42;
const EXIT_CONFIG: i32 = 52;
const EXIT_TURN_LIMIT: i32 = 53;

/// What the CLI says on stderr when `--resume` names no session of this directory.
const RESUME_NOT_FOUND: &str = "Error resuming session";

/// Drives the Gemini CLI; see the [crate docs](crate).
#[derive(Clone)]
pub struct GeminiBackend {
    config: GeminiConfig,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    workspace_base: PathBuf,
    kill_grace: Duration,
    policy: PolicyConfig,
}

impl std::fmt::Debug for GeminiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values of the extra environment may be credentials: show names only.
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("GeminiBackend")
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
        self.report().result.is_some()
    }
}

impl GeminiBackend {
    /// A backend for `config`. Workspaces of sessions opened without one go under
    /// `$TMPDIR/station-coding` unless [`with_workspace_base`](Self::with_workspace_base) says
    /// otherwise.
    pub fn new(config: GeminiConfig) -> Self {
        GeminiBackend {
            config,
            env: Vec::new(),
            env_remove: Vec::new(),
            workspace_base: std::env::temp_dir().join("station-coding"),
            kill_grace: DEFAULT_KILL_GRACE,
            policy: PolicyConfig::default(),
        }
    }

    /// What the agent may do (`coding.policy`; without one, no writes outside the workspace),
    /// rendered into a policy file of the CLI's policy engine for each task; a task's own
    /// policy wins. What the CLI cannot express is listed by `policy_gaps`.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Extra environment for the `gemini` child (added to the inherited one; later pairs win).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env.extend(env);
        self
    }

    /// Inherited variables the `gemini` child must not see.
    pub fn with_env_remove(mut self, keys: Vec<String>) -> Self {
        self.env_remove.extend(keys);
        self
    }

    /// Where workspaces are created for sessions opened without one.
    pub fn with_workspace_base(mut self, base: PathBuf) -> Self {
        self.workspace_base = base;
        self
    }

    /// Time a stopped `gemini` gets between SIGTERM and SIGKILL (default 3 s).
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &GeminiConfig {
        &self.config
    }

    /// A variable as the child will see it.
    fn child_env(&self, key: &str) -> Option<String> {
        if key == "GEMINI_CLI_HOME"
            && let Some(home) = &self.config.home
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

    /// The CLI's `.gemini` directory: under `GEMINI_CLI_HOME` (`coding.gemini.home`), else HOME.
    fn gemini_dir(&self) -> Option<PathBuf> {
        self.child_env("GEMINI_CLI_HOME")
            .filter(|h| !h.is_empty())
            .or_else(|| self.child_env("HOME").filter(|h| !h.is_empty()))
            .map(|home| PathBuf::from(home).join(".gemini"))
    }

    /// `gemini` in `cwd` with this backend's environment.
    fn command(&self, cwd: &Path) -> CommandSpec {
        let mut spec = CommandSpec::new(&self.config.binary, cwd).install_hint(INSTALL_HINT);
        for key in &self.env_remove {
            spec = spec.env_remove(key);
        }
        for (key, value) in &self.env {
            spec = spec.env(key, value);
        }
        if let Some(home) = &self.config.home {
            spec = spec.env("GEMINI_CLI_HOME", home);
        }
        // An inherited PWD would name Station's directory, not the workspace.
        spec.env("PWD", cwd)
    }

    /// The command for one task. The instruction goes in on stdin, which makes the CLI
    /// headless and keeps it out of argv (no length limit, not parsed as a flag, not in `ps`).
    /// `--skip-trust`: Station chose the workspace; an untrusted folder would quietly turn
    /// the approval mode back to `default`.
    /// `--policy` files replace the user's own policy directory, so that one is passed too.
    fn task_command(
        &self,
        cwd: &Path,
        resume: Option<&str>,
        instruction: &str,
        policy_file: Option<&Path>,
    ) -> CommandSpec {
        let mut spec = self.command(cwd).args([
            "--output-format=stream-json",
            &format!("--approval-mode={}", self.config.approval_mode.as_str()),
            "--skip-trust",
        ]);
        if let Some(file) = policy_file {
            spec = spec.arg(format!("--policy={}", file.display()));
            if let Some(own) = self.gemini_dir().map(|d| d.join("policies"))
                && own.is_dir()
            {
                spec = spec.arg(format!("--policy={}", own.display()));
            }
        }
        if let Some(model) = self.config.model.as_deref().filter(|m| !m.is_empty()) {
            spec = spec.arg(format!("--model={model}"));
        }
        if let Some(id) = resume {
            spec = spec.arg(format!("--resume={id}"));
        }
        spec.stdin_bytes(instruction.as_bytes().to_vec())
    }

    /// Which credential the CLI will find, without reading any value.
    fn auth_source(&self) -> Option<String> {
        let set = |k: &str| self.child_env(k).is_some_and(|v| !v.trim().is_empty());
        for key in ["GEMINI_API_KEY", "GOOGLE_API_KEY"] {
            if set(key) {
                return Some(format!("{key} is set"));
            }
        }
        for key in ["GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA"] {
            if self
                .child_env(key)
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
            {
                return Some(format!("{key} is set"));
            }
        }
        let dir = self.gemini_dir()?;
        let login = dir.join("oauth_creds.json");
        login
            .is_file()
            .then(|| format!("a Google login exists at {}", login.display()))
    }

    /// The directory session `id` was created in, checked against the one asked for.
    fn resume_workspace(&self, id: &str, requested: Option<&Path>) -> Result<PathBuf> {
        if !sessions::is_session_id(id) {
            return Err(Error::NotFound {
                what: "Gemini session (ids are UUIDs)",
                id: id.to_string(),
            });
        }
        let requested = requested.map(canonical);
        let Some(dir) = self.gemini_dir() else {
            return requested.ok_or_else(|| {
                Error::config("cannot tell where the Gemini CLI keeps its sessions (neither coding.gemini.home nor HOME is set); give the workspace the session was created in")
            });
        };
        let Some(found) = sessions::find(&dir, id) else {
            return Err(Error::NotFound {
                what: "Gemini session",
                id: id.to_string(),
            });
        };
        let Some(created_in) = found
            .project_root
            .as_deref()
            .map(canonical)
            .or(requested.clone())
        else {
            return Err(Error::config(format!(
                "cannot tell which directory Gemini session {id} belongs to ({} has no .project_root next to it); give the workspace it was created in",
                found.file.display()
            )));
        };
        if let Some(ws) = requested
            && ws != created_in
        {
            return Err(InputError::new(format!(
                "Gemini session {id} was created in {}, and the Gemini CLI continues a session only from the directory it was created in; the requested workspace is {}",
                created_in.display(),
                ws.display()
            ))
            .field("workspace")
            .hint(format!("open it without a workspace, or with {}", created_in.display()))
            .into());
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

/// The name of the policy file in its per-run directory.
const POLICY_FILE: &str = "station-policy.toml";

/// `policy` rendered into a Station-owned temporary directory that lives for one run (the
/// CLI reads it at start; nothing goes into the user's `~/.gemini`).
fn write_policy(policy: &PolicyConfig, workspace: &Path) -> Result<tempfile::TempDir> {
    let failed = |e: std::io::Error| {
        Error::io(
            format!(
                "writing the Gemini policy file for coding.policy under {}",
                std::env::temp_dir().display()
            ),
            e,
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("station-gemini-policy-")
        .tempdir()
        .map_err(failed)?;
    std::fs::write(
        dir.path().join(POLICY_FILE),
        policy::render(policy, workspace),
    )
    .map_err(failed)?;
    Ok(dir)
}

/// The outcome of a run that ended without a `result` line, from the CLI's exit code.
fn exited_without_result(code: Option<i32>, status: &str, stderr: &str) -> (StopReason, String) {
    let with_stderr = |message: String| {
        if stderr.is_empty() {
            message
        } else {
            format!("{message}: {stderr}")
        }
    };
    match code {
        Some(EXIT_TURN_LIMIT) => (
            StopReason::MaxTurns,
            with_stderr("gemini stopped at its session turn limit (model.maxSessionTurns in its settings.json) before finishing".into()),
        ),
        Some(EXIT_AUTH) => (
            StopReason::Error,
            with_stderr("gemini could not authenticate (exit 41); set GEMINI_API_KEY, or select an auth type (security.auth.selectedType) in its settings.json, or log in with `gemini`".into()),
        ),
        Some(EXIT_INPUT) => (
            StopReason::Error,
            with_stderr("gemini rejected its input (exit 42)".into()),
        ),
        Some(EXIT_CONFIG) => (
            StopReason::Error,
            with_stderr("gemini rejected its configuration (exit 52); check its settings.json".into()),
        ),
        Some(0) => (
            StopReason::Error,
            with_stderr("gemini exited without reporting a result".into()),
        ),
        _ => (
            StopReason::Error,
            with_stderr(format!("gemini failed ({status}) before reporting a result")),
        ),
    }
}

/// The outcome the report stands for (files, duration and session filled in by the caller).
fn outcome_of(report: &RunReport) -> Outcome {
    let mut outcome = match &report.result {
        Some(result) if result.is_success() => Outcome::new(true, StopReason::Completed),
        Some(result) if result.is_turn_limit() => Outcome::failed(
            StopReason::MaxTurns,
            format!(
                "{}: gemini stopped at its session turn limit before finishing (raise model.maxSessionTurns in its settings.json or split the task)",
                result.error.as_deref().unwrap_or("reached the turn limit")
            ),
        ),
        Some(result) => {
            let detail = result
                .error
                .clone()
                .or_else(|| report.errors.last().cloned())
                .unwrap_or_else(|| format!("the run ended with status `{}`", result.status));
            Outcome::failed(
                StopReason::Error,
                format!("gemini reported an error: {detail}"),
            )
        }
        None => Outcome::new(false, StopReason::Error),
    };
    if let Some(result) = &report.result {
        outcome.usage = result.usage;
        outcome.model.clone_from(&result.model);
    }
    outcome.summary.clone_from(&report.summary);
    outcome.tool_calls.clone_from(&report.tool_calls);
    outcome.backend_session_id.clone_from(&report.session_id);
    outcome
}

#[async_trait::async_trait]
impl CodingBackend for GeminiBackend {
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
                    "gemini {shown} at {}; authentication: {auth}",
                    program.display()
                ),
            },
            None => Health {
                ok: false,
                version,
                detail: format!(
                    "gemini {shown} at {} has no credentials: GEMINI_API_KEY is not set and no Google login was found{}; export GEMINI_API_KEY or run `gemini` once to log in",
                    program.display(),
                    self.gemini_dir()
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
        if let Some(id) = resume.filter(|id| !sessions::is_session_id(id)) {
            return Err(Error::NotFound {
                what: "Gemini session (ids are UUIDs)",
                id: id.to_string(),
            });
        }
        let policy_config = task.policy_or(&self.policy);
        let policy_dir = write_policy(policy_config, &workspace)?;
        let policy_file = policy_dir.path().join(POLICY_FILE);
        let spec = self.task_command(&workspace, resume, &task.prompt(), Some(&policy_file));
        let tracker = Tracker::start(&workspace).await;
        let audit = AuditedParser::new(
            StreamParser::new(),
            Policy::new(policy_config.clone(), &workspace),
        );
        let run = AgentProcess::new("gemini", spec)
            .linger(EXIT_GRACE_AFTER_RESULT)
            .kill_grace(self.kill_grace)
            .run(audit, &ctx)
            .await?;
        drop(policy_dir);
        let report = run.parser.inner.into_report();
        let mut outcome = outcome_of(&report);
        match run.end {
            AgentEnd::Exited(status) if report.result.is_none() => {
                if let Some(id) = resume
                    && status.code() == Some(EXIT_INPUT)
                    && run.stderr_tail.contains(RESUME_NOT_FOUND)
                {
                    return Err(Error::NotFound {
                        what: "Gemini session for this workspace",
                        id: id.to_string(),
                    });
                }
                let (reason, message) = exited_without_result(
                    status.code(),
                    &describe_status(status),
                    &run.stderr_tail,
                );
                outcome.success = false;
                outcome.stop_reason = reason;
                outcome.error = Some(message);
            }
            AgentEnd::Stopped(reason) if report.result.is_none() => {
                // The CLI prints no result when stopped; what it did so far is still reported.
                outcome.success = false;
                outcome.stop_reason = reason;
                outcome.error = Some("gemini and its process group were stopped".to_string());
            }
            // The result came before the end: the work is done, report it.
            AgentEnd::Exited(_) | AgentEnd::Stopped(_) | AgentEnd::Lingered => {}
        }
        outcome.files_changed = tracker.finish().await;
        if outcome.backend_session_id.is_none() {
            outcome.backend_session_id = resume.map(str::to_string);
        }
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
        // Nothing runs between tasks; the chat file stays so the session can be continued.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApprovalMode;

    #[test]
    fn argv_carries_config_and_never_the_instruction() {
        let config = GeminiConfig {
            model: Some("gemini-3.8-flash".into()),
            approval_mode: ApprovalMode::AutoEdit,
            home: Some(PathBuf::from("/srv/gh")),
            ..GeminiConfig::default()
        };
        let backend = GeminiBackend::new(config);
        let id = "71d41a6a-2711-4a9f-bf13-cb3a04b4bda1";
        let spec = backend.task_command(Path::new("/w"), Some(id), "-rf secret prompt", None);
        let args: Vec<String> = spec
            .get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--output-format=stream-json",
                "--approval-mode=auto_edit",
                "--skip-trust",
                "--model=gemini-3.8-flash",
                &format!("--resume={id}"),
            ]
        );
        assert_eq!(backend.gemini_dir(), Some(PathBuf::from("/srv/gh/.gemini")));
    }

    #[test]
    fn the_policy_file_comes_with_the_users_own_policies() {
        let home = tempfile::tempdir().unwrap();
        let backend = GeminiBackend::new(GeminiConfig {
            home: Some(home.path().to_path_buf()),
            ..GeminiConfig::default()
        });
        let policy_args = |backend: &GeminiBackend| -> Vec<String> {
            let spec = backend.task_command(Path::new("/w"), None, "x", Some(Path::new("/p.toml")));
            spec.get_args()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .filter(|a| a.starts_with("--policy="))
                .collect()
        };
        assert_eq!(policy_args(&backend), ["--policy=/p.toml"]);
        let own = home.path().join(".gemini/policies");
        std::fs::create_dir_all(&own).unwrap();
        assert_eq!(
            policy_args(&backend),
            [
                "--policy=/p.toml".to_string(),
                format!("--policy={}", own.display())
            ]
        );
    }

    fn outcome_of_fixture(text: &str) -> Outcome {
        let mut parser = StreamParser::new();
        for line in text.lines() {
            parser.push_line(line);
        }
        outcome_of(parser.report())
    }

    #[test]
    fn results_map_onto_outcomes() {
        let done = outcome_of_fixture(include_str!("../tests/fixtures/gemini-p-1-create.jsonl"));
        assert!(done.success && done.stop_reason == StopReason::Completed);
        assert_eq!(done.model.as_deref(), Some("gemini-3.8-flash"));
        assert_eq!(done.usage.output_tokens, 30);
        let limited =
            outcome_of_fixture(include_str!("../tests/fixtures/captured-turn-limit.jsonl"));
        assert_eq!(
            (limited.success, limited.stop_reason),
            (false, StopReason::MaxTurns)
        );
        assert!(
            limited
                .error
                .as_deref()
                .unwrap()
                .contains("maxSessionTurns"),
            "{limited:?}"
        );
        let failed = outcome_of_fixture(include_str!("../tests/fixtures/captured-api-error.jsonl"));
        assert_eq!(
            (failed.success, failed.stop_reason),
            (false, StopReason::Error)
        );
        assert!(
            failed.error.as_deref().unwrap().contains("HTTP 400"),
            "{failed:?}"
        );
    }

    #[test]
    fn exit_codes_map_onto_stop_reasons() {
        let (reason, message) = exited_without_result(Some(53), "exit status: 53", "");
        assert_eq!(reason, StopReason::MaxTurns);
        assert!(message.contains("maxSessionTurns"), "{message}");
        let (reason, message) =
            exited_without_result(Some(41), "exit status: 41", "Invalid auth method selected.");
        assert_eq!(reason, StopReason::Error);
        assert!(
            message.contains("GEMINI_API_KEY")
                && message.ends_with("Invalid auth method selected."),
            "{message}"
        );
        let (_, message) = exited_without_result(Some(42), "exit status: 42", "bad");
        assert!(message.contains("rejected its input"), "{message}");
        let (_, message) = exited_without_result(None, "signal: 9 (SIGKILL)", "");
        assert!(message.contains("SIGKILL"), "{message}");
    }
}
