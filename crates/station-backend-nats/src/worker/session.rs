//! A task's workspace (created, or prepared from git) and its executor session.

use std::path::{Path, PathBuf};

use async_nats::jetstream::kv;
use station_core::{Error, OpenRequest, Session};

use super::shared::Shared;
use super::stream::TaskStream;
use crate::names::{check_inside, resolve_workspace};
use crate::wire::{self, GitInfo, SessionInfo, SessionState, StreamEvent, TaskMessage};

impl Shared {
    pub(super) async fn prepare_workspace(
        &self,
        task: &TaskMessage,
        stream: &TaskStream,
    ) -> std::result::Result<(PathBuf, Option<GitInfo>), String> {
        let dir = resolve_workspace(&self.base, &task.workspace.name)?;
        let existed = dir.is_dir();
        let mut git_info = None;
        match (&task.workspace.git, &self.options.git) {
            (Some(spec), Some(hook)) => {
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
                let info = hook.prepare(&dir, spec, existed).await.map_err(|e| {
                    station_core::redact::redact(&format!("preparing the workspace from git: {e}"))
                })?;
                git_info = Some(info);
            }
            (Some(spec), None) => {
                return Err(format!(
                    "the task asks for git repository {} but worker `{}` has no git support configured",
                    station_core::redact::redact(&spec.url),
                    self.id
                ));
            }
            (None, _) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating workspace {}: {e}", dir.display()))?;
            }
        }
        let dir = check_inside(&self.base, &dir)?;
        stream
            .publish(StreamEvent {
                kind: if existed {
                    "workspace_reused"
                } else {
                    "workspace_created"
                }
                .into(),
                content: Some(dir.display().to_string()),
                ..stream.blank()
            })
            .await;
        if let Some(info) = &git_info {
            stream
                .publish(StreamEvent {
                    kind: if existed { "git_pull" } else { "git_clone" }.into(),
                    git: Some(info.clone()),
                    ..stream.blank()
                })
                .await;
        }
        Ok((dir, git_info))
    }

    /// The stored state of session `name` (read before the session name is validated: an
    /// invalid key reads as absent and the task fails on the name later).
    pub(super) async fn read_session(&self, name: &str) -> StoredSession {
        if !wire::is_valid_key(name) {
            return Ok(None);
        }
        match self.sessions.get(name).await {
            Ok(b) => Ok(b.and_then(|b| serde_json::from_slice::<SessionState>(&b).ok())),
            Err(e) => Err(format!("reading session `{name}` from JetStream KV: {e}")),
        }
    }

    /// Open or continue the executor's session. The state is stored in the background (the
    /// returned handle) so the run does not wait for that KV round trip.
    pub(super) async fn resolve_session(
        &self,
        task: &TaskMessage,
        stored: StoredSession,
        dir: &Path,
        stream: &TaskStream,
    ) -> std::result::Result<(Session, SessionState, tokio::task::JoinHandle<()>), String> {
        let name = &task.session.name;
        let stored = stored?;
        let want_continue = task.session.continue_session != Some(false);
        let mut reused = None;
        if let Some(state) = stored
            .as_ref()
            .filter(|s| want_continue && !s.opencode_id.is_empty())
        {
            let req = OpenRequest {
                workspace: Some(dir.to_path_buf()),
                title: task.session.title.clone(),
                resume: Some(state.opencode_id.clone()),
                repo: None,
            };
            match self.executor.open(req).await {
                Ok(s) => reused = Some(s),
                Err(Error::NotFound { .. }) => {
                    stream
                        .publish(StreamEvent {
                            kind: "notice".into(),
                            content: Some(format!(
                                "executor session {} is gone; starting a new one",
                                state.opencode_id
                            )),
                            ..stream.blank()
                        })
                        .await;
                }
                Err(e) => {
                    return Err(format!(
                        "continuing executor session {}: {e}",
                        state.opencode_id
                    ));
                }
            }
        }
        let now = wire::now_iso();
        let (session, kind) = match reused {
            Some(s) => (s, "session_reused"),
            None => {
                let req = OpenRequest {
                    workspace: Some(dir.to_path_buf()),
                    title: task.session.title.clone(),
                    resume: None,
                    repo: None,
                };
                let s = self
                    .executor
                    .open(req)
                    .await
                    .map_err(|e| format!("opening a {} session: {e}", self.executor.name()))?;
                (s, "session_created")
            }
        };
        let opencode_id = session.backend_session_id.clone().unwrap_or_default();
        let mut state = match (kind, stored) {
            ("session_reused", Some(s)) => s,
            (_, previous) => SessionState {
                session_name: name.clone(),
                created: now.clone(),
                message_count: previous.map(|p| p.message_count).unwrap_or(0),
                ..SessionState::default()
            },
        };
        state.session_name = name.clone();
        state.opencode_id = opencode_id.clone();
        state.workspace_name = dir
            .strip_prefix(
                self.base
                    .canonicalize()
                    .unwrap_or_else(|_| self.base.clone()),
            )
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| task.workspace.name.clone());
        state.workspace_path = dir.display().to_string();
        state.last_used = now;
        if let Some(git) = &task.workspace.git {
            state.git = Some(wire::SessionGit {
                url: station_core::redact::redact(&git.url),
                branch: git.branch.clone().unwrap_or_default(),
                last_commit: state
                    .git
                    .as_ref()
                    .map(|g| g.last_commit.clone())
                    .unwrap_or_default(),
            });
        }
        let first_put = tokio::spawn(put_session(
            self.sessions.clone(),
            self.id.clone(),
            state.clone(),
        ));
        stream
            .publish(StreamEvent {
                kind: kind.into(),
                session: Some(SessionInfo {
                    name: name.clone(),
                    opencode_id,
                }),
                ..stream.blank()
            })
            .await;
        Ok((session, state, first_put))
    }
}

/// A session's stored state, read from the sessions bucket (`Err`: the read failed).
pub(super) type StoredSession = std::result::Result<Option<SessionState>, String>;

pub(super) async fn put_session(sessions: kv::Store, worker: String, state: SessionState) {
    let Ok(bytes) = serde_json::to_vec(&state) else {
        return;
    };
    // Retried like the claim: a leader election must not cost the session its state.
    let bytes = bytes::Bytes::from(bytes);
    let deadline = std::time::Instant::now() + super::claim::KV_RETRY_WINDOW;
    loop {
        match sessions
            .put(state.session_name.as_str(), bytes.clone())
            .await
        {
            Ok(_) => return,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(%worker, session = %state.session_name, "storing the session failed, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(%worker, session = %state.session_name, "could not store the session: {e}");
                return;
            }
        }
    }
}
