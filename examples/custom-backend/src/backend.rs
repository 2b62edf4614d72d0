//! [`CommandBackend`]: one process of a configured command per task.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use station_core::agent_process::{AgentEnd, AgentProcess};
use station_core::process::{CommandSpec, describe_status};
use station_core::workspace::Tracker;
use station_core::{
    Capabilities, CodingBackend, Error, ExecContext, Health, OpenRequest, Outcome, Result, Session,
    StopReason, Task,
};

use crate::parser::PlainTextParser;

/// The name this backend is selected by.
pub const NAME: &str = "command";

/// How much of stderr (or, without stderr, of stdout) a failure quotes.
const ERROR_TAIL_CHARS: usize = 2000;

/// What to run and how to read it.
#[derive(Clone, Default)]
pub struct CommandConfig {
    /// The program and its arguments; the prompt is written to its stdin.
    pub argv: Vec<String>,
    /// Extra environment for the agent (added to the inherited one).
    pub env: Vec<(String, String)>,
    /// Inherited variables to remove.
    pub env_remove: Vec<String>,
    /// A stdout line announcing a tool call, with a capture group `tool` for its name
    /// (plain-text agents print tool use in their own words).
    pub tool_line: Option<Regex>,
}

impl std::fmt::Debug for CommandConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values of the environment may be credentials: names only.
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("CommandConfig")
            .field("argv", &self.argv)
            .field("env", &env_names)
            .field("env_remove", &self.env_remove)
            .field("tool_line", &self.tool_line)
            .finish()
    }
}

/// Runs each task as a fresh process of [`CommandConfig::argv`] in the session's workspace,
/// through core's [`AgentProcess`] lifecycle (own process group, killed on cancel or drop).
#[derive(Debug)]
pub struct CommandBackend {
    config: CommandConfig,
    workspace_base: PathBuf,
}

impl CommandBackend {
    /// A backend for `config`; fails when the argv is empty. Workspaces of sessions opened
    /// without one go under `$TMPDIR/station-coding`.
    pub fn new(config: CommandConfig) -> Result<Self> {
        if config.argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(Error::config(
                "the `command` backend needs a program to run: set its argv (program and arguments)",
            ));
        }
        Ok(CommandBackend {
            config,
            workspace_base: std::env::temp_dir().join("station-coding"),
        })
    }

    /// Where workspaces of sessions opened without one are created.
    pub fn with_workspace_base(mut self, base: PathBuf) -> Self {
        self.workspace_base = base;
        self
    }

    fn program(&self) -> &str {
        &self.config.argv[0]
    }

    fn command(&self, cwd: &Path) -> CommandSpec {
        let mut spec = CommandSpec::new(self.program(), cwd).args(&self.config.argv[1..]);
        for k in &self.config.env_remove {
            spec = spec.env_remove(k);
        }
        for (k, v) in &self.config.env {
            spec = spec.env(k, v);
        }
        // Some agents take their directory from $PWD rather than the process cwd.
        spec.env("PWD", cwd)
    }
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating workspace {}", dir.display()), e))?;
    dir.canonicalize()
        .map_err(|e| Error::io(format!("resolving workspace {}", dir.display()), e))
}

/// The last `ERROR_TAIL_CHARS` characters of `text`, trimmed.
fn tail(text: &str) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(ERROR_TAIL_CHARS);
    let cut: String = text.chars().skip(skip).collect();
    if skip > 0 { format!("…{cut}") } else { cut }
}

#[async_trait::async_trait]
impl CodingBackend for CommandBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            cancel: true,
            ..Capabilities::NONE
        }
    }

    async fn health(&self) -> Result<Health> {
        let spec = self.command(&std::env::temp_dir());
        Ok(match spec.resolve_program() {
            Ok(path) => Health {
                ok: true,
                version: None,
                detail: format!("runs {}", path.display()),
            },
            Err(e) => Health {
                ok: false,
                version: None,
                detail: e.to_string(),
            },
        })
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        if req.resume.as_deref().is_some_and(|r| !r.trim().is_empty()) {
            return Err(Error::NotSupported {
                backend: NAME.into(),
                operation: "continuing a session".into(),
                hint: Some(
                    "every task of the `command` backend is a fresh process; open a new session"
                        .into(),
                ),
            });
        }
        let mut session = Session::new(NAME);
        session.title = req.title.filter(|t| !t.trim().is_empty());
        session.repo = req.repo;
        // The agent keeps no session of its own: the Station session is the backend's.
        session.backend_session_id = Some(session.id.to_string());
        let dir = match req.workspace {
            Some(ws) => ws,
            None => self.workspace_base.join(session.id.as_str()),
        };
        session.workspace = Some(prepare_dir(&dir)?);
        Ok(session)
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        let started = std::time::Instant::now();
        if task.instruction.trim().is_empty() {
            return Err(Error::config("the task has no instruction"));
        }
        let workspace = prepare_dir(
            &session
                .workspace
                .clone()
                .unwrap_or_else(|| self.workspace_base.join(session.id.as_str())),
        )?;
        let tracker = Tracker::start(&workspace).await;
        let spec = self.command(&workspace).stdin_bytes(task.prompt());
        let parser = PlainTextParser::new(self.config.tool_line.clone());
        let run = AgentProcess::new(self.program(), spec)
            .kill_grace(Duration::from_secs(2))
            .run(parser, &ctx)
            .await?;
        let summary = run.parser.summary();
        let (stop_reason, error) = match run.end {
            // The runner puts the why in front ("task timed out", "task cancelled").
            AgentEnd::Stopped(reason) => (
                reason,
                Some(format!(
                    "`{}` and its process group were stopped",
                    self.program()
                )),
            ),
            AgentEnd::Exited(status) if !status.success() => {
                let detail = match run.stderr_tail.trim() {
                    "" => tail(&summary),
                    stderr => tail(stderr),
                };
                (
                    StopReason::Error,
                    Some(format!(
                        "`{}` failed ({}): {detail}",
                        self.program(),
                        describe_status(status)
                    )),
                )
            }
            // Lingered cannot happen (plain text never says it is finished).
            _ => (StopReason::Completed, None),
        };
        let mut outcome = Outcome::new(error.is_none(), stop_reason);
        outcome.error = error.map(|e| station_core::redact::redact(&e));
        outcome.summary = summary;
        outcome.tool_calls = run.parser.tool_calls();
        outcome.files_changed = tracker.finish().await;
        outcome.backend_session_id = session.backend_session_id.clone();
        outcome.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(outcome)
    }

    async fn close(&self, _session: &Session) -> Result<()> {
        // Nothing runs between tasks.
        Ok(())
    }
}
