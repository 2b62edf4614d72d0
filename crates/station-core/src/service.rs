//! [`SessionService`]: a backend plus the session index. This is what the `stn` commands, the
//! agent runtime and the MCP server use, so they all resolve, record and continue sessions the
//! same way.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::task::TaskTracker;

use crate::backend::CodingBackend;
use crate::budget::TaskBudget;
use crate::claim::SessionLocks;
use crate::error::{Error, Result};
use crate::model::{
    OpenRequest, RepoSpec, Session, SessionId, SessionWorktree, Task, default_title,
};
use crate::policy::BudgetConfig;
use crate::redact;
use crate::run::{RunOptions, TaskRun, start_claimed_task};
use crate::store::SessionIndex;
use crate::workspace::{Checkpoints, Rewound};

/// What to open, as a user or a tool says it.
#[derive(Debug, Clone, Default)]
pub struct OpenSpec {
    /// Workspace directory.
    pub workspace: Option<std::path::PathBuf>,
    /// Repository to clone.
    pub repo: Option<RepoSpec>,
    /// Title for a new session.
    pub title: Option<String>,
    /// A session to continue: station id, backend id, title, or a unique part of a title.
    pub session: Option<String>,
}

/// Restore `session`'s workspace to the state before task `to_task` (default: its last task)
/// without a backend (`stn session rewind`): claims the session under `index`'s data dir like
/// a task, waiting up to `busy_wait`, then [`Checkpoints::rewind`].
pub async fn rewind(
    index: &SessionIndex,
    session: &Session,
    to_task: Option<u32>,
    force: bool,
    busy_wait: std::time::Duration,
) -> Result<Rewound> {
    let locks = SessionLocks::new(index.dir().join("locks"), busy_wait);
    rewind_claimed(
        &locks,
        Checkpoints::new(index.dir()),
        session,
        to_task,
        force,
    )
    .await
}

async fn rewind_claimed(
    locks: &SessionLocks,
    checkpoints: Checkpoints,
    session: &Session,
    to_task: Option<u32>,
    force: bool,
) -> Result<Rewound> {
    let _claim = locks
        .claim(&session.id, &crate::run::CancelSignal::new())
        .await?;
    let id = session.id.clone();
    tokio::task::spawn_blocking(move || checkpoints.rewind(&id, to_task, force))
        .await
        .map_err(|e| Error::backend("workspace", format!("rewind failed: {e}")))?
}

/// How long a task waits for its session when another task runs on it, unless set.
const DEFAULT_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A backend bound to the session index. Tasks on one session run one at a time, across
/// processes that share the data dir (see [`crate::SessionClaim`]).
#[derive(Debug, Clone)]
pub struct SessionService {
    backend: Arc<dyn CodingBackend>,
    index: SessionIndex,
    run: RunOptions,
    locks: SessionLocks,
    running: TaskTracker,
    budget: BudgetConfig,
}

impl SessionService {
    /// Bind `backend` to `index`; tasks without a deadline get `run.default_timeout`.
    pub fn new(backend: Arc<dyn CodingBackend>, index: SessionIndex, run: RunOptions) -> Self {
        let locks = SessionLocks::new(index.dir().join("locks"), DEFAULT_BUSY_WAIT);
        SessionService {
            backend,
            index,
            run,
            locks,
            running: TaskTracker::new(),
            budget: BudgetConfig::default(),
        }
    }

    /// Caps on what each task, and each session in all, may spend (`coding.budget`).
    pub fn with_budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = budget;
        self
    }

    /// Who answers the policy's `ask` decisions of this service's tasks (a person at a
    /// terminal, an MCP client); nobody (deny at once) unless set.
    pub fn with_permissions(
        mut self,
        permissions: Arc<dyn crate::policy::PermissionHandler>,
    ) -> Self {
        self.run.permissions = permissions;
        self
    }

    /// How long a task waits for a busy session before it fails with
    /// [`Error::SessionBusy`] (default 30 s).
    pub fn with_busy_wait(mut self, wait: std::time::Duration) -> Self {
        self.locks = SessionLocks::new(self.index.dir().join("locks"), wait);
        self
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn CodingBackend> {
        &self.backend
    }

    /// The index.
    pub fn index(&self) -> &SessionIndex {
        &self.index
    }

    /// Open a new session, or continue `spec.session`. Continuing looks in the index first
    /// (id, exact title, unique title part); a backend that can find sessions itself gets the
    /// query when the index has no match.
    pub async fn open(&self, spec: OpenSpec) -> Result<Session> {
        let name = self.backend.name().to_string();
        let Some(query) = spec.session.as_deref() else {
            let session = self
                .backend
                .open(OpenRequest {
                    workspace: spec.workspace,
                    repo: spec.repo,
                    title: spec.title.map(|t| redact::redact(&t)),
                    resume: None,
                })
                .await?;
            self.index.upsert(&session)?;
            return Ok(session);
        };
        match self.index.resolve(query) {
            Ok(known) => {
                check_worktree_exists(&known)?;
                if known.backend != name {
                    return Err(crate::InputError::new(format!(
                        "session {} belongs to the `{}` backend, but this run uses `{name}`",
                        known.id, known.backend
                    ))
                    .field("backend")
                    .hint(format!("continue it on the `{}` backend", known.backend))
                    .into());
                }
                let Some(backend_id) = known.backend_session_id.clone() else {
                    // Opened but never used: nothing to attach to on the backend yet.
                    return Ok(known);
                };
                let workspace = known.workspace.clone().or(spec.workspace);
                let attached = self
                    .backend
                    .open(OpenRequest {
                        workspace,
                        repo: known.repo.clone(),
                        title: known.title.clone(),
                        resume: Some(backend_id),
                    })
                    .await?;
                let merged = Session {
                    id: known.id.clone(),
                    created_at: known.created_at,
                    title: known.title.clone().or(attached.title.clone()),
                    metadata: {
                        let mut m = known.metadata.clone();
                        m.extend(attached.metadata.clone());
                        m
                    },
                    worktree: known.worktree.clone(),
                    ..attached
                };
                self.index.upsert(&merged)?;
                Ok(merged)
            }
            Err(Error::NotFound { .. }) if self.backend.capabilities().resume => {
                let session = self
                    .backend
                    .open(OpenRequest {
                        workspace: spec.workspace,
                        repo: spec.repo,
                        title: spec.title.map(|t| redact::redact(&t)),
                        resume: Some(query.to_string()),
                    })
                    .await?;
                self.index.upsert(&session)?;
                Ok(session)
            }
            Err(e) => Err(e),
        }
    }

    /// Open a new session `id` that works in `worktree`, which the caller made for it (named
    /// after `id`, hence chosen before the backend opens it: see
    /// [`SessionWorktree::branch_for`]). `spec.workspace` and `spec.session` are ignored.
    pub async fn open_in_worktree(
        &self,
        spec: OpenSpec,
        id: SessionId,
        worktree: SessionWorktree,
    ) -> Result<Session> {
        let mut session = self
            .backend
            .open(OpenRequest {
                workspace: Some(worktree.path.clone()),
                repo: spec.repo,
                title: spec.title.map(|t| redact::redact(&t)),
                resume: None,
            })
            .await?;
        // Backends name nothing after a new session's id when opening it (NATS keeps the
        // name it chose in its metadata), so the id the worktree is named after can take over.
        session.id = id;
        session.workspace = Some(worktree.path.clone());
        session.worktree = Some(worktree);
        self.index.upsert(&session)?;
        Ok(session)
    }

    /// A stored session by id, backend id or title.
    pub fn get(&self, query: &str) -> Result<Session> {
        self.index.resolve(query)
    }

    /// Start a task. The session's title defaults to this instruction (redacted). The session
    /// is recorded in the index before the task starts, so an interrupted run can be
    /// continued; when the task ends the index records the backend id and last use. The task
    /// first waits for any other task on the session to end (see [`Self::with_busy_wait`]).
    pub fn execute(&self, session: &Session, task: Task) -> TaskRun {
        let mut session = session.clone();
        session.title = Some(match &session.title {
            Some(title) => redact::redact(title),
            None => default_title(&task.instruction),
        });
        if let Err(e) = self.record_start(&session) {
            tracing::warn!(session = %session.id, "could not record the session in the index: {e}");
        }
        let index = self.index.clone();
        let history = crate::history::TaskHistory::new(self.index.dir());
        let mut run = self.run.clone();
        if self.budget.is_set() {
            // The session's totals as the index has them (another run may have added to them).
            let totals = self
                .index
                .list()
                .ok()
                .and_then(|all| all.into_iter().find(|s| s.id == session.id))
                .unwrap_or_else(|| session.clone());
            run.budget = TaskBudget::for_session(&self.budget, &totals);
        }
        let previous_hook = run.on_outcome.take();
        run.on_outcome = Some(Arc::new(
            move |s: &Session, t: &Task, outcome: &crate::model::Outcome| {
                let record = |stored: &mut Session| {
                    stored.last_used_at = Utc::now();
                    stored.usage_total += outcome.usage;
                    stored.cost_total_usd += outcome.cost_usd.unwrap_or(0.0);
                    if let Some(id) = &outcome.backend_session_id {
                        stored.backend_session_id = Some(id.clone());
                    }
                    if stored.title.is_none() {
                        stored.title.clone_from(&s.title);
                    }
                };
                let updated = match index.update(&s.id, record) {
                    Err(Error::NotFound { .. }) => {
                        let mut fresh = s.clone();
                        record(&mut fresh);
                        index.upsert(&fresh).map(|()| fresh)
                    }
                    other => other,
                };
                let updated = updated.unwrap_or_else(|e| {
                    tracing::warn!(session = %s.id, "could not record the session in the index: {e}");
                    s.clone()
                });
                if let Err(e) = history.append(&s.id, t, outcome) {
                    tracing::warn!(session = %s.id, "could not record the task in the session history: {e}");
                }
                if let Some(h) = &previous_hook {
                    h(&updated, t, outcome);
                }
            },
        ));
        start_claimed_task(
            self.backend.clone(),
            session,
            task,
            &run,
            Some(self.locks.clone()),
            Some(&self.running),
            Some(self.checkpoints()),
        )
    }

    /// Where this service records each task's changes (under the index's data dir).
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::new(self.index.dir())
    }

    /// Restore `session`'s workspace to the state before task `to_task` (default: its last
    /// task); see [`Checkpoints::rewind`]. Waits for the session like a task does, so a rewind
    /// never runs under a working agent.
    pub async fn rewind(
        &self,
        session: &Session,
        to_task: Option<u32>,
        force: bool,
    ) -> Result<Rewound> {
        rewind_claimed(&self.locks, self.checkpoints(), session, to_task, force).await
    }

    /// Wait up to `deadline` until every task this service (or a clone) started has stopped;
    /// `false` when some are still stopping. Call it after cancelling (dropping a [`TaskRun`]
    /// cancels it) and before the process exits, so backends can stop their work where it runs
    /// (abort a server's turn, kill a process group) instead of being cut off.
    pub async fn wait_stopped(&self, deadline: std::time::Duration) -> bool {
        self.running.close();
        let stopped = tokio::time::timeout(deadline, self.running.wait())
            .await
            .is_ok();
        self.running.reopen();
        stopped
    }

    /// Store the session as it starts a task, keeping what a concurrent task recorded.
    fn record_start(&self, session: &Session) -> Result<()> {
        match self.index.update(&session.id, |stored| {
            if stored.title.is_none() {
                stored.title.clone_from(&session.title);
            }
            if stored.workspace.is_none() {
                stored.workspace.clone_from(&session.workspace);
            }
            if stored.worktree.is_none() {
                stored.worktree.clone_from(&session.worktree);
            }
        }) {
            Err(Error::NotFound { .. }) => self.index.upsert(session),
            other => other.map(|_| ()),
        }
    }

    /// Close a session on the backend; idempotent. The index keeps it so it can be continued.
    pub async fn close(&self, id: &SessionId) -> Result<()> {
        match self.index.resolve(id.as_str()) {
            Ok(s) => self.backend.close(&s).await,
            Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A session whose worktree was removed cannot continue: its workspace would come back empty.
fn check_worktree_exists(session: &Session) -> Result<()> {
    match &session.worktree {
        Some(wt) if !wt.path.exists() => Err(crate::InputError::new(format!(
            "session {} worked in the worktree {}, which no longer exists (removed when the session was closed?); its commits are on branch `{}` of {}",
            session.id,
            wt.path.display(),
            wt.branch,
            wt.repository.display()
        ))
        .field("session")
        .hint(format!(
            "start a new session, or check the branch out yourself: git -C {} worktree add {} {}",
            wt.repository.display(),
            wt.path.display(),
            wt.branch
        ))
        .into()),
        _ => Ok(()),
    }
}
