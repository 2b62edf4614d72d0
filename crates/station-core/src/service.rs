//! [`SessionService`]: a backend plus the session index. This is what the `stn` commands, the
//! agent runtime and the MCP server use, so they all resolve, record and continue sessions the
//! same way.

use std::sync::Arc;

use chrono::Utc;

use crate::backend::CodingBackend;
use crate::error::{Error, Result};
use crate::model::{OpenRequest, RepoSpec, Session, SessionId, Task, default_title};
use crate::run::{RunOptions, TaskRun, start_task};
use crate::store::SessionIndex;

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

/// A backend bound to the session index.
#[derive(Debug, Clone)]
pub struct SessionService {
    backend: Arc<dyn CodingBackend>,
    index: SessionIndex,
    run: RunOptions,
}

impl SessionService {
    /// Bind `backend` to `index`; tasks without a deadline get `run.default_timeout`.
    pub fn new(backend: Arc<dyn CodingBackend>, index: SessionIndex, run: RunOptions) -> Self {
        SessionService {
            backend,
            index,
            run,
        }
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
                    title: spec.title,
                    resume: None,
                })
                .await?;
            self.index.upsert(&session)?;
            return Ok(session);
        };
        match self.index.resolve(query) {
            Ok(known) => {
                if known.backend != name {
                    return Err(Error::config(format!(
                        "session {} belongs to the `{}` backend, but this run uses `{name}`; run it with --backend {}",
                        known.id, known.backend, known.backend
                    )));
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
                        title: spec.title,
                        resume: Some(query.to_string()),
                    })
                    .await?;
                self.index.upsert(&session)?;
                Ok(session)
            }
            Err(e) => Err(e),
        }
    }

    /// A stored session by id, backend id or title.
    pub fn get(&self, query: &str) -> Result<Session> {
        self.index.resolve(query)
    }

    /// Start a task. The session's title defaults to this instruction; when the task ends the
    /// index records the backend id, title and last use.
    pub fn execute(&self, session: &Session, task: Task) -> TaskRun {
        let mut session = session.clone();
        if session.title.is_none() {
            session.title = Some(default_title(&task.instruction));
        }
        let index = self.index.clone();
        let mut run = self.run.clone();
        let previous_hook = run.on_outcome.take();
        run.on_outcome = Some(Arc::new(
            move |s: &Session, t: &Task, outcome: &crate::model::Outcome| {
                let mut updated = s.clone();
                updated.last_used_at = Utc::now();
                if let Some(id) = &outcome.backend_session_id {
                    updated.backend_session_id = Some(id.clone());
                }
                if let Err(e) = index.upsert(&updated) {
                    tracing::warn!(session = %s.id, "could not record the session in the index: {e}");
                }
                if let Some(h) = &previous_hook {
                    h(&updated, t, outcome);
                }
            },
        ));
        start_task(self.backend.clone(), session, task, &run)
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
