//! [`CliBackend`]: one `opencode run --format json` process per task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::CliConfig;
use crate::first_run::{self, EndsFirstStart, FirstStart};
use crate::permission;
use regex::Regex;
use station_core::agent_process::{AgentEnd, AgentProcess, StdoutParser};
use station_core::model::default_title;
use station_core::policy::{AuditedParser, Policy, PolicyConfig};
use station_core::process::{CommandSpec, describe_status};
use station_core::{
    BackendSession, Capabilities, CodingBackend, Error, EventKind, ExecContext, Health,
    OpenRequest, Outcome, Result, Session, SessionId, StopReason, Task,
};

use crate::sessions::{ListedSession, find_by_title, parse_session_list};
use crate::stream::{RunReport, StreamParser};

/// The configured name of this backend.
pub const NAME: &str = "opencode-cli";

/// How to install the `opencode` binary.
pub const INSTALL_HINT: &str = "npm i -g opencode-ai";

/// After SIGTERM, how long the process group gets before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the agent's turn ended (a final `step_finish`), how long `opencode run` may take to exit
/// before it is stopped (some versions stay alive after their last event).
const DEFAULT_EXIT_GRACE: Duration = Duration::from_secs(10);
/// Deadline of `opencode --version`.
const HEALTH_DEADLINE: Duration = Duration::from_secs(15);
/// Deadline of `opencode session list`.
const LIST_DEADLINE: Duration = Duration::from_secs(60);
/// How much of stderr an error message quotes.
const ERROR_TAIL_CHARS: usize = 2000;

/// Runs each task as a fresh `opencode run --format json` process in the session's workspace.
///
/// * The prompt (context, instruction, focus files) goes to the child's **stdin**, which is then
///   closed: OpenCode 1.18 reads a piped stdin verbatim, while a prompt in argv reaches the model
///   wrapped in quotes when it contains a space, is capped at 128 KiB per argument, and shows in
///   `ps`.
/// * `--auto` approves permission requests that the OpenCode config does not explicitly deny, so
///   a run never stops at (or silently rejects on) a prompt; `deny` rules still apply.
/// * The child runs through core's [`AgentProcess`] lifecycle: its own process group, which
///   cancel (including the runner's deadline, the only one) and drop kill as a whole.
pub struct CliBackend {
    config: CliConfig,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    workspace_base: PathBuf,
    exit_grace: Duration,
    sessions: Mutex<HashMap<SessionId, Arc<SessionSlot>>>,
    policy: PolicyConfig,
}

impl std::fmt::Debug for CliBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values of the extra environment may be credentials: show names only.
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("CliBackend")
            .field("config", &self.config)
            .field("env", &env_names)
            .field("env_remove", &self.env_remove)
            .field("workspace_base", &self.workspace_base)
            .field("exit_grace", &self.exit_grace)
            .finish_non_exhaustive()
    }
}

/// Per Station session: tasks run one at a time, and the OpenCode id learned by a first task is
/// used by a second one that was started from a copy of the session taken before the first ended.
#[derive(Debug, Default)]
struct SessionSlot {
    running: tokio::sync::Mutex<()>,
    learned_id: Mutex<Option<String>>,
}

impl CliBackend {
    /// A backend with `config`; managed workspaces go under `$TMPDIR/station-coding`.
    pub fn new(config: CliConfig) -> Self {
        CliBackend {
            config,
            env: Vec::new(),
            env_remove: Vec::new(),
            workspace_base: std::env::temp_dir().join("station-coding"),
            exit_grace: DEFAULT_EXIT_GRACE,
            sessions: Mutex::new(HashMap::new()),
            policy: PolicyConfig::default(),
        }
    }

    /// Extra environment for every `opencode` child (added to the inherited environment).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env.extend(env);
        self
    }

    /// What the agent may do (`coding.policy`; without one, no writes outside the workspace):
    /// rendered into each run's OpenCode permission config, and mirrored into the outcome's
    /// audit trail.
    pub fn with_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Inherited environment variables to remove from every `opencode` child.
    pub fn with_env_remove(mut self, keys: Vec<String>) -> Self {
        self.env_remove.extend(keys);
        self
    }

    /// Where workspaces of sessions opened without one are created.
    pub fn with_workspace_base(mut self, base: PathBuf) -> Self {
        self.workspace_base = base;
        self
    }

    /// How long `opencode run` may stay alive after its agent finished the turn before it is
    /// stopped (default 10 s).
    pub fn with_exit_grace(mut self, grace: Duration) -> Self {
        self.exit_grace = grace;
        self
    }

    /// The config this backend runs with.
    pub fn config(&self) -> &CliConfig {
        &self.config
    }

    fn binary(&self) -> &str {
        if self.config.binary.trim().is_empty() {
            "opencode"
        } else {
            &self.config.binary
        }
    }

    /// A command for the `opencode` binary in `cwd` with this backend's environment.
    fn command(&self, cwd: &Path) -> CommandSpec {
        let mut spec = CommandSpec::new(self.binary(), cwd).install_hint(INSTALL_HINT);
        for (k, v) in &self.env {
            spec = spec.env(k, v);
        }
        for k in &self.env_remove {
            spec = spec.env_remove(k);
        }
        let permission = permission::render(&self.policy, cwd).to_string();
        // OpenCode takes its working directory from $PWD, not from the process cwd: an
        // inherited PWD would make it resolve paths (and write files) in the caller's directory.
        spec.env(permission::PERMISSION_ENV, permission)
            .env("PWD", cwd)
    }

    /// The argv after the binary for one task (the prompt goes to stdin).
    fn run_args(&self, session: &Session, task: &Task, backend_id: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--format", "json", "--auto"]
            .map(String::from)
            .to_vec();
        if let Some(model) = self
            .config
            .model
            .as_deref()
            .filter(|m| !m.trim().is_empty())
        {
            args.push(format!("--model={model}"));
        }
        match backend_id {
            Some(id) => args.push(format!("--session={id}")),
            None => {
                let title = session
                    .title
                    .clone()
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or_else(|| default_title(&task.instruction));
                if !title.is_empty() {
                    args.push(format!("--title={title}"));
                }
            }
        }
        args
    }

    fn slot(&self, id: &SessionId) -> Arc<SessionSlot> {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.clone()).or_default().clone()
    }

    fn base_dir(&self) -> Result<PathBuf> {
        prepare_dir(&self.workspace_base)
    }

    /// `opencode session list --format json` run in `cwd` (the list is scoped to its project).
    async fn list_in(&self, cwd: &Path) -> Result<Vec<ListedSession>> {
        let out = self
            .command(cwd)
            .args(["session", "list", "--format", "json"])
            .output(LIST_DEADLINE, None)
            .await?;
        parse_session_list(&out)
    }
}

impl StdoutParser for StreamParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        StreamParser::push_line(self, line)
    }
    fn finished(&self) -> bool {
        self.turn_finished()
    }
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating workspace {}", dir.display()), e))?;
    dir.canonicalize()
        .map_err(|e| Error::io(format!("resolving workspace {}", dir.display()), e))
}

static ANSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]").expect("ANSI pattern compiles"));

/// Stderr for an error message: without colour codes, at most [`ERROR_TAIL_CHARS`] from the end.
fn clean_stderr(tail: &str) -> String {
    let plain = ANSI.replace_all(tail, "");
    let plain = plain.trim();
    let skip = plain.chars().count().saturating_sub(ERROR_TAIL_CHARS);
    let mut out: String = plain.chars().skip(skip).collect();
    if skip > 0 {
        out.insert(0, '…');
    }
    out
}

/// Why a run that exited by itself failed, if it did.
fn exit_failure(status: ExitStatus, report: &RunReport, stderr: &str) -> Option<String> {
    let detail = if !report.errors.is_empty() {
        Some(report.errors.join("; "))
    } else if !stderr.is_empty() {
        Some(stderr.to_string())
    } else {
        None
    };
    if !status.success() {
        let head = format!("opencode run failed ({})", describe_status(status));
        return Some(match detail {
            Some(d) => format!("{head}: {d}"),
            None => head,
        });
    }
    if !report.errors.is_empty() {
        return Some(format!(
            "opencode reported an error: {}",
            report.errors.join("; ")
        ));
    }
    if !report.steps.iter().any(|s| s.finish_reason.is_some()) {
        let mut msg = String::from("opencode exited without finishing a model call");
        if report.malformed_lines > 0 {
            msg.push_str(&format!(
                " ({} output lines were not JSON events)",
                report.malformed_lines
            ));
        }
        if let Some(d) = detail {
            msg.push_str(": ");
            msg.push_str(&d);
        }
        return Some(msg);
    }
    None
}

#[async_trait::async_trait]
impl CodingBackend for CliBackend {
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
            usage: true,
            cost: true,
            local_workspace: true,
            ..Capabilities::NONE
        }
    }

    async fn health(&self) -> Result<Health> {
        let spec = self.command(&std::env::temp_dir()).arg("--version");
        let path = match spec.resolve_program() {
            Ok(p) => p,
            Err(e) => {
                return Ok(Health {
                    ok: false,
                    version: None,
                    detail: e.to_string(),
                });
            }
        };
        Ok(match spec.output(HEALTH_DEADLINE, None).await {
            Ok(out) => {
                let version = out
                    .lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                    .unwrap_or("")
                    .to_string();
                Health {
                    ok: true,
                    detail: format!("opencode {version} at {}", path.display()),
                    version: Some(version).filter(|v| !v.is_empty()),
                }
            }
            Err(e) => Health {
                ok: false,
                version: None,
                detail: format!(
                    "`{} --version` failed: {}",
                    path.display(),
                    clean_stderr(&e.to_string())
                ),
            },
        })
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        let mut session = Session::new(NAME);
        session.title = req.title.clone().filter(|t| !t.trim().is_empty());
        session.repo = req.repo.clone();
        let explicit = req.workspace.as_deref().map(prepare_dir).transpose()?;
        let mut found_dir = None;
        if let Some(resume) = req
            .resume
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            if resume.starts_with("ses_") {
                session.backend_session_id = Some(resume.to_string());
                if explicit.is_none() {
                    // Best effort: continue among the session's files rather than in an empty dir.
                    match self.list_in(&self.base_dir()?).await {
                        Ok(list) => {
                            if let Some(found) = list.iter().find(|s| s.id == resume) {
                                found_dir = found.directory.clone();
                                session.title = session.title.or_else(|| found.title.clone());
                            }
                        }
                        Err(e) => {
                            tracing::debug!("could not look up the directory of {resume}: {e}")
                        }
                    }
                }
            } else {
                let cwd = match &explicit {
                    Some(ws) => ws.clone(),
                    None => self.base_dir()?,
                };
                let list = self.list_in(&cwd).await?;
                let found = find_by_title(resume, &list, explicit.as_deref())?;
                session.backend_session_id = Some(found.id.clone());
                session.title = found.title.clone().or(session.title);
                found_dir = found.directory.clone();
            }
        }
        let workspace = match (explicit, found_dir.filter(|d| d.is_dir())) {
            (Some(ws), _) | (None, Some(ws)) => ws,
            (None, None) => prepare_dir(&self.workspace_base.join(session.id.as_str()))?,
        };
        session.workspace = Some(workspace);
        Ok(session)
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        let started = std::time::Instant::now();
        if task.instruction.trim().is_empty() {
            return Err(Error::config("the task has no instruction"));
        }
        let slot = self.slot(&session.id);
        let _running = tokio::select! {
            guard = slot.running.lock() => guard,
            _ = ctx.cancel.cancelled() => {
                let reason = ctx.cancel.reason().unwrap_or(StopReason::Cancelled);
                return Ok(Outcome::failed(reason, "task stopped while waiting for the previous task of this session"));
            }
        };
        let workspace = prepare_dir(
            &session
                .workspace
                .clone()
                .unwrap_or_else(|| self.workspace_base.join(session.id.as_str())),
        )?;
        let backend_id = session.backend_session_id.clone().or_else(|| {
            slot.learned_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        });
        let first_start = match first_run::data_dir(&self.env, &self.env_remove) {
            Some(dir) => FirstStart::begin(&dir, &ctx.cancel).await?,
            None => None,
        };
        // A policy that travels with the task (from a NATS client) wins over the configured one.
        let policy = task.policy_or(&self.policy);
        let spec = self
            .command(&workspace)
            .env(
                permission::PERMISSION_ENV,
                permission::render(policy, &workspace).to_string(),
            )
            .args(self.run_args(session, task, backend_id.as_deref()))
            .stdin_bytes(task.prompt());
        let run = AgentProcess::new("opencode", spec)
            .linger(self.exit_grace)
            .kill_grace(KILL_GRACE)
            .run(
                EndsFirstStart::new(
                    AuditedParser::new(
                        StreamParser::new(),
                        Policy::new(policy.clone(), &workspace),
                    ),
                    first_start,
                ),
                &ctx,
            )
            .await?;
        let (end, stderr) = (run.end, clean_stderr(&run.stderr_tail));
        let report = run.parser.inner.inner.into_report();

        if let (AgentEnd::Exited(status), Some(id)) = (end, &backend_id)
            && !status.success()
            && report.session_id.is_none()
            && stderr.to_ascii_lowercase().contains("session not found")
        {
            return Err(Error::session_not_found(id.clone()));
        }
        if let Some(id) = &report.session_id {
            *slot.learned_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        }

        let (stop_reason, error) = match end {
            // The runner puts the why in front ("task timed out after Ns", "task cancelled").
            AgentEnd::Stopped(reason) => (
                reason,
                Some("opencode run and its process group were stopped".to_string()),
            ),
            AgentEnd::Lingered => {
                ctx.events.emit(EventKind::Notice {
                    message: format!(
                        "opencode finished its turn but did not exit within {}s; stopped it",
                        self.exit_grace.as_secs()
                    ),
                });
                match report.errors.is_empty() {
                    true => (StopReason::Completed, None),
                    false => (
                        StopReason::Error,
                        Some(format!(
                            "opencode reported an error: {}",
                            report.errors.join("; ")
                        )),
                    ),
                }
            }
            AgentEnd::Exited(status) => match exit_failure(status, &report, &stderr) {
                Some(msg) => (StopReason::Error, Some(msg)),
                None => (StopReason::Completed, None),
            },
        };
        let mut outcome = Outcome::new(error.is_none(), stop_reason);
        outcome.error = error.map(|e| station_core::redact::redact(&e));
        outcome.summary = report.summary;
        outcome.usage = report.usage;
        outcome.cost_usd = report.cost_usd;
        outcome.tool_calls = report.tool_calls;
        outcome.backend_session_id = report.session_id.or(backend_id);
        outcome.model = self.config.model.clone();
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    async fn close(&self, session: &Session) -> Result<()> {
        // Nothing runs between tasks; the OpenCode session stays so it can be continued.
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(&session.id)
            .is_some_and(|slot| slot.running.try_lock().is_ok())
        {
            map.remove(&session.id);
        }
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<BackendSession>> {
        let list = self.list_in(&self.base_dir()?).await?;
        Ok(list.iter().map(ListedSession::to_backend_session).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_for_new_and_continued_sessions() {
        let backend = CliBackend::new(CliConfig {
            model: Some("fake/fake-model".into()),
            ..CliConfig::default()
        });
        let mut session = Session::new(NAME);
        let task = Task::new("-rf looks like a flag\nsecond line");
        assert_eq!(
            backend.run_args(&session, &task, None),
            [
                "run",
                "--format",
                "json",
                "--auto",
                "--model=fake/fake-model",
                "--title=-rf looks like a flag"
            ]
        );
        session.title = Some("my title".into());
        assert_eq!(
            backend.run_args(&session, &task, None).last().unwrap(),
            "--title=my title"
        );
        assert_eq!(
            backend
                .run_args(&session, &task, Some("ses_x"))
                .last()
                .unwrap(),
            "--session=ses_x"
        );
        let plain = CliBackend::new(CliConfig::default());
        assert!(
            !plain
                .run_args(&session, &task, None)
                .iter()
                .any(|a| a.starts_with("--model"))
        );
    }

    #[test]
    fn stderr_is_cleaned_and_cut() {
        assert_eq!(
            clean_stderr("\x1b[91m\x1b[1mError: \x1b[0mSession not found\n"),
            "Error: Session not found"
        );
        let long = "x".repeat(ERROR_TAIL_CHARS * 2);
        assert_eq!(clean_stderr(&long).chars().count(), ERROR_TAIL_CHARS + 1);
    }
}
