//! [`CodingBackend`] for [`NatsBackend`]: open, execute (publish a task), git, sessions.

use std::path::PathBuf;
use std::time::Duration;

use station_core::git::{GitRequest, GitResponse};
use station_core::{
    BackendSession, Capabilities, CodingBackend, Error, ExecContext, Health, OpenRequest, Outcome,
    Result, Session, Task,
};

use super::exchange::Exchange;
use super::sessions::{session_from_state, session_name};
use super::{NatsBackend, meta};
use crate::conn::{BACKEND, unavailable};
use crate::names::workspace_name_for;
use crate::wire::{self, Callback, GitSpec, SessionRef, TaskMessage, WorkspaceRef};

/// How long a git operation on a worker may take (clone/push deadlines are 300/120 s there).
const GIT_DEADLINE: Duration = Duration::from_secs(330);

#[async_trait::async_trait]
impl CodingBackend for NatsBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            resume: true,
            resume_by_title: false,
            cancel: true,
            list_sessions: true,
            remote_workspace: true,
            usage: true,
            cost: true,
            local_workspace: false,
        }
    }

    async fn health(&self) -> Result<Health> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Ok(Health {
                ok: false,
                version: None,
                detail: format!("not connected to NATS at {} (reconnecting)", self.url),
            });
        }
        let version = Some(self.client.server_info().version).filter(|v| !v.is_empty());
        if let Err(e) = self.sessions.status().await {
            return Ok(Health {
                ok: false,
                version,
                detail: format!(
                    "connected to NATS at {}, but JetStream KV is unavailable ({e}); start nats-server with -js",
                    self.url
                ),
            });
        }
        let workers = self
            .workers(Duration::from_millis(500))
            .await
            .unwrap_or_default();
        let who = if workers.is_empty() {
            "no Station worker answered (a Station OpenCode plugin may still listen)".to_string()
        } else {
            let names: Vec<&str> = workers.iter().map(|w| w.worker.as_str()).collect();
            format!("{} worker(s): {}", workers.len(), names.join(", "))
        };
        let mut detail = format!(
            "NATS at {}; tasks on `{}`; {who}",
            self.url, self.subjects.task
        );
        for warning in &self.bucket_warnings {
            detail.push_str("; warning: ");
            detail.push_str(warning);
        }
        Ok(Health {
            ok: true,
            version,
            detail,
        })
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        if let Some(query) = req.resume.as_deref() {
            let state = self
                .find_session(query)
                .await?
                .ok_or_else(|| Error::session_not_found(query))?;
            return Ok(session_from_state(&state, &req));
        }
        let mut session = Session::new(BACKEND);
        let name = session.id.to_string();
        session.title = req.title.clone();
        session.workspace = req.workspace.clone();
        session.repo = req.repo.clone();
        session.metadata.insert(
            meta::WORKSPACE_NAME.into(),
            workspace_name_for(req.workspace.as_deref(), &name),
        );
        session.metadata.insert(meta::SESSION_NAME.into(), name);
        Ok(session)
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        self.wait_connected().await?;
        let name = session_name(session);
        if !wire::is_valid_key(&name) {
            return Err(Error::config(format!(
                "session name `{name}` is not a valid NATS KV key (letters, digits, `-_=/.`)"
            )));
        }
        let workspace = session
            .metadata
            .get(meta::WORKSPACE_NAME)
            .cloned()
            .unwrap_or_else(|| workspace_name_for(session.workspace.as_deref(), &name));
        let task_id = uuid::Uuid::now_v7().to_string();
        let callback = Callback {
            stream_subject: self.subjects.stream_of(&task_id),
            result_subject: self.subjects.result_of(&task_id),
        };
        let timeout = task.timeout().unwrap_or(self.options.task_timeout);
        let message = TaskMessage {
            task_id: task_id.clone(),
            session: SessionRef {
                name: name.clone(),
                continue_session: Some(true),
                title: session.title.clone(),
            },
            workspace: WorkspaceRef {
                name: workspace,
                git: session.repo.as_ref().map(|r| GitSpec {
                    url: r.url.clone(),
                    branch: r.branch.clone(),
                    git_ref: None,
                    token: None,
                    // Clone once; never pull under a running session (upstream pulls every task).
                    pull: Some(false),
                }),
            },
            prompt: task.prompt(),
            agent: None,
            model: None,
            timeout: Some(timeout.as_millis() as u64),
            callback: Some(callback.clone()),
            // The policy travels once, in its own field.
            task: Some(Task {
                policy: None,
                ..task.clone()
            }),
            policy: Some(task.policy_or(&self.policy).clone()),
        };
        let payload = serde_json::to_vec(&message)
            .map_err(|e| Error::Protocol(format!("encoding the task: {e}")))?;
        let max = self.client.server_info().max_payload;
        if max > 0 && payload.len() > max {
            return Err(Error::config(format!(
                "the task is {} bytes, more than the NATS server accepts ({max}); shorten the instruction or context",
                payload.len()
            )));
        }
        let exchange = Exchange::open(self, &task_id, &name, &callback).await?;
        exchange.run(self, payload.into(), ctx, timeout).await
    }

    async fn close(&self, _session: &Session) -> Result<()> {
        // Sessions stay in the bucket so any instance can continue them (they expire unused
        // after 7 days); `NatsBackend::forget` removes one for good.
        Ok(())
    }

    async fn git(&self, session: &Session, request: GitRequest) -> Result<GitResponse> {
        self.wait_connected().await?;
        let name = session_name(session);
        let workspace = session
            .metadata
            .get(meta::WORKSPACE_NAME)
            .cloned()
            .unwrap_or_else(|| workspace_name_for(session.workspace.as_deref(), &name));
        let command = wire::GitCommand {
            session: name,
            workspace,
            request,
        };
        let payload = serde_json::to_vec(&command)
            .map_err(|e| Error::Protocol(format!("cannot encode a git command: {e}")))?;
        let subject = self.subjects.git();
        let reply = tokio::time::timeout(
            GIT_DEADLINE,
            self.client.request(subject.clone(), payload.into()),
        )
        .await
        .map_err(|_| Error::Timeout {
            operation: format!("git on {subject}"),
            after: GIT_DEADLINE,
        })?
        .map_err(|e| {
            unavailable(format!(
                "no worker answered git on {subject} ({e}); is a `stn worker` with git running?"
            ))
        })?;
        serde_json::from_slice::<wire::GitAnswer>(&reply.payload)
            .map_err(|e| Error::Protocol(format!("a worker's git answer is not valid: {e}")))?
            .into_result()
    }

    async fn list_sessions(&self) -> Result<Vec<BackendSession>> {
        let mut out: Vec<BackendSession> = self
            .all_sessions()
            .await?
            .into_iter()
            .map(|s| BackendSession {
                id: s.session_name.clone(),
                title: None,
                workspace: Some(PathBuf::from(&s.workspace_name))
                    .filter(|p| !p.as_os_str().is_empty()),
                updated_at: chrono::DateTime::parse_from_rfc3339(&s.last_used)
                    .ok()
                    .map(|d| d.with_timezone(&chrono::Utc)),
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        Ok(out)
    }
}
