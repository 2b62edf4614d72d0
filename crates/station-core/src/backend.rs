//! The [`CodingBackend`] trait: the one thing a backend implements.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::EventSink;
use crate::git::{GitRequest, GitResponse};
use crate::model::{OpenRequest, Outcome, Session, Task};
use crate::policy::{NobodyToAsk, PermissionHandler};
use crate::run::CancelSignal;

/// What a backend can do. Callers and the conformance suite branch on these, never on names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Events arrive while the task runs (not only at the end).
    pub streaming: bool,
    /// An existing backend session can be continued by its backend id.
    pub resume: bool,
    /// The backend itself can find a session by (part of) its title.
    pub resume_by_title: bool,
    /// An in-flight task can be stopped (all built-in backends can).
    pub cancel: bool,
    /// The backend can list its sessions.
    pub list_sessions: bool,
    /// The workspace lives on another machine; files are not visible locally.
    pub remote_workspace: bool,
    /// Token usage is reported.
    pub usage: bool,
    /// Cost in USD is reported.
    pub cost: bool,
    /// The session's workspace is a directory on this machine that the agent edits: the
    /// runner records each task's exact changes there (files changed, patch, checkpoint).
    #[serde(default)]
    pub local_workspace: bool,
}

impl Capabilities {
    /// All off; set fields with struct update syntax from this.
    pub const NONE: Capabilities = Capabilities {
        streaming: false,
        resume: false,
        resume_by_title: false,
        cancel: false,
        list_sessions: false,
        remote_workspace: false,
        usage: false,
        cost: false,
        local_workspace: false,
    };
}

/// Result of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Whether the backend is usable.
    pub ok: bool,
    /// Version of the agent or server, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A line for humans: where it is, what is wrong, how to fix it.
    pub detail: String,
}

/// A session as the backend itself lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendSession {
    /// The backend's id.
    pub id: String,
    /// Its title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// What a backend gets besides the task: where to send events, when to stop, and whom to ask
/// about a request the policy leaves to a person.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// Where to send progress events. Backends never send terminal events; the runner does.
    pub events: EventSink,
    /// Fires on cancel or timeout; [`CancelSignal::reason`] says which.
    pub cancel: CancelSignal,
    /// Answers `ask` decisions (see [`Policy::judge`](crate::policy::Policy::judge)).
    pub permissions: Arc<dyn PermissionHandler>,
}

impl ExecContext {
    /// A context with nobody to ask (every `ask` is a deny).
    pub fn new(events: EventSink, cancel: CancelSignal) -> Self {
        ExecContext {
            events,
            cancel,
            permissions: Arc::new(NobodyToAsk),
        }
    }
}

/// A coding agent behind some transport.
///
/// # Contract
///
/// * **Sessions.** [`open`](Self::open) returns a [`Session`]; backends keep no session state of
///   their own that a restart would lose: everything needed to continue is in the returned
///   [`Session`] (which the caller stores in the [`SessionIndex`](crate::SessionIndex)).
///   A backend whose sessions only exist after a first task (Claude) leaves
///   `backend_session_id` empty and reports it in [`Outcome::backend_session_id`].
/// * **Execute.** [`execute`](Self::execute) runs one task to its end and returns its
///   [`Outcome`]; a task that ran but failed (the agent erred, the deadline passed, the caller
///   cancelled, the turn limit was hit) is an `Ok` outcome with `success: false` and a
///   [`StopReason`](crate::StopReason). `Err` means the task could not run (unknown session,
///   unreachable backend, protocol error). While it runs the backend sends non-terminal events
///   to [`ExecContext::events`] in the order they happened. Call it through
///   [`start_task`](crate::start_task), which emits `Started` first and exactly one terminal
///   event (`Finished` or `Failed`) last, and enforces the deadline.
/// * **Cancel.** When [`ExecContext::cancel`] fires the backend stops the work where it runs
///   (aborts the server-side session, kills the whole process group) and returns promptly;
///   the runner gives it a grace period and then drops the future, and dropping must also stop
///   the work (children are killed on drop).
/// * **Close** is idempotent: closing a closed or unknown session is `Ok`.
/// * **Shutdown** stops the backend's processes gracefully when the caller is done; dropping
///   the backend kills them at once.
/// * **Secrets** never appear in events, outcomes or errors.
#[async_trait::async_trait]
pub trait CodingBackend: Send + Sync + std::fmt::Debug + 'static {
    /// The configured name (`opencode`, `opencode-cli`, `claudecode`, `opencode-nats`).
    fn name(&self) -> &str;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Whether the backend is reachable or installed. `Ok` with `ok: false` when it answered but
    /// is not usable; `Err` when it could not be asked.
    async fn health(&self) -> Result<Health>;

    /// Open a session: create one, or attach to `req.resume`.
    async fn open(&self, req: OpenRequest) -> Result<Session>;

    /// Run one task in `session` to its end.
    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome>;

    /// Release the session. Idempotent.
    async fn close(&self, session: &Session) -> Result<()>;

    /// Stop what the backend started for its sessions (agent processes, managed servers)
    /// gracefully, so they can save their state; called once when the caller is done with the
    /// backend, and bounded by the backend's own grace periods. Dropping still kills everything.
    async fn shutdown(&self) {}

    /// Rules of the backend's configured policy (`coding.policy`) its agent cannot enforce,
    /// each with why ("edit.deny patterns: codex's sandbox knows only the workspace"). The runner
    /// puts them in every outcome and `stn doctor` lists them: a policy is never silently
    /// weaker.
    fn policy_gaps(&self) -> Vec<String> {
        Vec::new()
    }

    /// The gaps of the policy `task` runs under (its own [`Task::policy`], else the configured
    /// one); what the runner reports. Override it when the backend honours `Task::policy`.
    fn policy_gaps_for(&self, task: &Task) -> Vec<String> {
        let _ = task;
        self.policy_gaps()
    }

    /// The backend's own sessions, newest first.
    async fn list_sessions(&self) -> Result<Vec<BackendSession>> {
        Err(Error::not_supported(self.name(), "listing sessions"))
    }

    /// Run a git operation where the session's workspace is, through a deterministic command
    /// channel (never a model prompt). For backends whose workspace is not on this machine
    /// ([`Capabilities::remote_workspace`]); callers run git themselves on local workspaces.
    /// Credentials are the remote side's own; none travel with the request.
    async fn git(&self, session: &Session, request: GitRequest) -> Result<GitResponse> {
        let _ = (session, request);
        Err(Error::not_supported(
            self.name(),
            "git on the backend's workspace",
        ))
    }
}
