//! One lifecycle for every coding agent that runs as a subprocess (one process per task).
//!
//! [`AgentProcess::run`] spawns the agent through [`CommandSpec`] (own process group, stdin fed
//! then closed, secrets withheld), hands every stdout line to a [`StdoutParser`] and sends its
//! events to [`ExecContext::events`], keeps the stderr tail, and ends in one [`AgentEnd`]:
//!
//! * the agent exits by itself ([`AgentEnd::Exited`]); whatever it left in its group is killed;
//! * [`ExecContext::cancel`] fires (the caller, or the runner's deadline — the only deadline):
//!   SIGTERM to the group, SIGKILL after the grace ([`AgentEnd::Stopped`]);
//! * the parser saw the agent's final result but the process stays alive for longer than the
//!   linger after its last line: stopped the same way ([`AgentEnd::Lingered`]).
//!
//! A backend is then its argv and environment, its parser, and how it maps the end to an
//! [`Outcome`](crate::Outcome).

mod session;

use std::process::ExitStatus;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::backend::ExecContext;
use crate::error::Result;
use crate::event::EventKind;
use crate::model::StopReason;
use crate::process::CommandSpec;

pub use session::{canonical, make_workspace, open_session};

/// After the process exited, how long to wait for the rest of its stdout (a grandchild outside
/// the group may hold it open).
const STDOUT_DRAIN: Duration = Duration::from_secs(3);
/// After a stop, how long what the child wrote before it died is still read.
const STOPPED_DRAIN: Duration = Duration::from_secs(1);
/// Lines buffered between the stdout reader and the parser.
const LINE_BUFFER: usize = 64;

/// Turns an agent's stdout, line by line, into events.
pub trait StdoutParser: Send {
    /// The events of one stdout line (any length, without its newline).
    fn push_line(&mut self, line: &str) -> Vec<EventKind>;
    /// Whether the agent has reported its final result: from then on its process should exit
    /// by itself, and it is stopped when it lingers.
    fn finished(&self) -> bool;
}

/// How an agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEnd {
    /// The process exited by itself and its stdout was read to the end.
    Exited(ExitStatus),
    /// [`ExecContext::cancel`] fired (cancel, or the runner's deadline); the group was killed.
    Stopped(StopReason),
    /// The agent reported its result but did not exit within the linger; the group was killed.
    Lingered,
}

/// What a finished [`AgentProcess::run`] saw.
#[derive(Debug)]
pub struct AgentRun<P> {
    /// How the process ended.
    pub end: AgentEnd,
    /// The parser after the last line: what the agent reported.
    pub parser: P,
    /// The end of stderr, redacted.
    pub stderr_tail: String,
    /// The pid (also the process group id) the agent ran as.
    pub pid: u32,
}

/// An agent command and how to stop it.
#[derive(Debug, Clone)]
pub struct AgentProcess {
    label: String,
    spec: CommandSpec,
    linger: Duration,
    kill_grace: Duration,
}

impl AgentProcess {
    /// Run `spec`; `label` names the agent in notices (`opencode`, `claude`). Defaults: the
    /// process may linger 10 s after its result, and gets 2 s between SIGTERM and SIGKILL.
    pub fn new(label: impl Into<String>, spec: CommandSpec) -> Self {
        AgentProcess {
            label: label.into(),
            spec,
            linger: Duration::from_secs(10),
            kill_grace: Duration::from_secs(2),
        }
    }

    /// How long the process may stay alive after its last line once the parser says the agent
    /// finished.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Time between SIGTERM and SIGKILL when the process is stopped.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The command.
    pub fn spec(&self) -> &CommandSpec {
        &self.spec
    }

    /// Spawn the agent and follow it to its end (see the [module docs](self)). No process of
    /// its group is left running when this returns or when the future is dropped. `Err` only
    /// when it could not be started or waited for.
    pub async fn run<P: StdoutParser>(&self, parser: P, ctx: &ExecContext) -> Result<AgentRun<P>> {
        self.run_with_stdin(parser, ctx, |_| {}).await
    }

    /// [`run`](Self::run) for an agent that talks back and forth on stdin (a control
    /// protocol): with [`CommandSpec::stdin_piped`], `take_stdin` gets the open pipe right
    /// after the spawn; whoever holds it closes it (dropping it) when the agent should exit.
    pub async fn run_with_stdin<P: StdoutParser>(
        &self,
        mut parser: P,
        ctx: &ExecContext,
        take_stdin: impl FnOnce(tokio::process::ChildStdin),
    ) -> Result<AgentRun<P>> {
        let mut child = self.spec.spawn()?;
        if let Some(stdin) = child.take_stdin() {
            take_stdin(stdin);
        }
        let pid = child.pid();
        tracing::debug!(pid, agent = %self.label, cwd = %self.spec.cwd().display(), "agent started");
        let mut lines = child.take_stdout_lines().expect("stdout is piped");
        let (tx, mut rx) = mpsc::channel::<std::io::Result<String>>(LINE_BUFFER);
        // A reader task of its own: reading a line is not cancel-safe, receiving from a channel is.
        let _reader = AbortOnDrop(tokio::spawn(async move {
            while let Some(item) = lines.next_line().await.transpose() {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        }));
        let push = |parser: &mut P, line: &str| {
            for event in parser.push_line(line) {
                ctx.events.emit(event);
            }
        };
        let mut stdout_open = true;
        let mut exited: Option<(ExitStatus, Instant)> = None;
        let mut last_line_at = Instant::now();
        let end = loop {
            if let (false, Some((status, _))) = (stdout_open, exited) {
                break AgentEnd::Exited(status);
            }
            let linger =
                (parser.finished() && exited.is_none()).then(|| last_line_at + self.linger);
            let drain = exited.map(|(_, at)| at + STDOUT_DRAIN);
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => {
                    break AgentEnd::Stopped(ctx.cancel.reason().unwrap_or(StopReason::Cancelled));
                }
                msg = rx.recv(), if stdout_open => match msg {
                    Some(Ok(line)) => {
                        last_line_at = Instant::now();
                        push(&mut parser, &line);
                    }
                    Some(Err(e)) => {
                        ctx.events.emit(EventKind::Notice {
                            message: format!("reading {} output failed: {e}", self.label),
                        });
                        stdout_open = false;
                    }
                    None => stdout_open = false,
                },
                // Waiting also kills what the agent left in its group, so a grandchild holding
                // stdout open cannot keep the read going.
                status = child.wait(), if exited.is_none() => exited = Some((status?, Instant::now())),
                _ = sleep_until_some(linger) => break AgentEnd::Lingered,
                _ = sleep_until_some(drain) => {
                    ctx.events.emit(EventKind::Notice {
                        message: format!("{} exited but its output stayed open; stopped reading", self.label),
                    });
                    break AgentEnd::Exited(exited.expect("drain is set after exit").0);
                }
            }
        };
        if !matches!(end, AgentEnd::Exited(_)) {
            tracing::debug!(pid, agent = %self.label, ?end, "stopping the agent's process group");
            child.terminate(self.kill_grace).await;
            // What the agent wrote before it died is still worth parsing.
            let until = Instant::now() + STOPPED_DRAIN;
            while let Ok(Some(Ok(line))) = tokio::time::timeout_at(until, rx.recv()).await {
                push(&mut parser, &line);
            }
        }
        let stderr_tail = child.final_stderr_tail().await;
        Ok(AgentRun {
            end,
            parser,
            stderr_tail,
            pid,
        })
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
