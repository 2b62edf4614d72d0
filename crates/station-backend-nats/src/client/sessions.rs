//! Sessions in the KV bucket: look up, list, forget, and map to and from core sessions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use station_core::{OpenRequest, RepoSpec, Result, Session};

use super::{NatsBackend, meta};
use crate::conn::{BACKEND, unavailable};
use crate::names::workspace_name_for;
use crate::wire::{self, SessionState};

impl NatsBackend {
    /// The stored state of session `name`, if any.
    pub async fn session_state(&self, name: &str) -> Result<Option<SessionState>> {
        if !wire::is_valid_key(name) {
            return Ok(None);
        }
        let bytes =
            self.sessions.get(name).await.map_err(|e| {
                unavailable(format!("reading session `{name}` from JetStream KV: {e}"))
            })?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Remove session `name` from the sessions bucket (so no instance can continue it).
    pub async fn forget(&self, name: &str) -> Result<()> {
        if !wire::is_valid_key(name) {
            return Ok(());
        }
        self.sessions
            .delete(name)
            .await
            .map_err(|e| unavailable(format!("deleting session `{name}` from JetStream KV: {e}")))
    }

    /// Find a session by name, or by the executor's id (`ses_...`) with a bounded scan.
    pub(super) async fn find_session(&self, query: &str) -> Result<Option<SessionState>> {
        if let Some(state) = self.session_state(query).await? {
            return Ok(Some(state));
        }
        for state in self.all_sessions().await? {
            if !state.opencode_id.is_empty() && state.opencode_id == query {
                return Ok(Some(state));
            }
        }
        Ok(None)
    }

    pub(super) async fn all_sessions(&self) -> Result<Vec<SessionState>> {
        const MAX_SESSIONS: usize = 10_000;
        let scan = async {
            let mut keys = self
                .sessions
                .keys()
                .await
                .map_err(|e| unavailable(format!("listing sessions in JetStream KV: {e}")))?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                if let Ok(key) = key {
                    names.push(key);
                }
                if names.len() >= MAX_SESSIONS {
                    break;
                }
            }
            let mut out = Vec::new();
            for name in names {
                if let Ok(Some(bytes)) = self.sessions.get(name.as_str()).await
                    && let Ok(mut state) = serde_json::from_slice::<SessionState>(&bytes)
                {
                    if state.session_name.is_empty() {
                        state.session_name = name;
                    }
                    out.push(state);
                }
            }
            Ok(out)
        };
        tokio::time::timeout(Duration::from_secs(20), scan)
            .await
            .map_err(|_| unavailable("listing sessions in JetStream KV timed out after 20s"))?
    }
}

/// The session name of a session: the backend id once a task ran, else the name chosen at open.
pub(super) fn session_name(session: &Session) -> String {
    session
        .backend_session_id
        .clone()
        .or_else(|| session.metadata.get(meta::SESSION_NAME).cloned())
        .unwrap_or_else(|| session.id.to_string())
}

pub(super) fn session_from_state(state: &SessionState, req: &OpenRequest) -> Session {
    let mut session = Session::new(BACKEND);
    session.backend_session_id = Some(state.session_name.clone());
    session.title = req.title.clone();
    session.workspace = req.workspace.clone().or_else(|| {
        Some(PathBuf::from(&state.workspace_name)).filter(|p| !p.as_os_str().is_empty())
    });
    session.repo = req.repo.clone().or_else(|| {
        state
            .git
            .as_ref()
            .filter(|g| !g.url.is_empty())
            .map(|g| RepoSpec {
                url: g.url.clone(),
                branch: Some(g.branch.clone()).filter(|b| !b.is_empty()),
            })
    });
    let mut metadata = BTreeMap::new();
    metadata.insert(meta::SESSION_NAME.into(), state.session_name.clone());
    let workspace = if state.workspace_name.is_empty() {
        workspace_name_for(req.workspace.as_deref(), &state.session_name)
    } else {
        state.workspace_name.clone()
    };
    metadata.insert(meta::WORKSPACE_NAME.into(), workspace);
    if !state.opencode_id.is_empty() {
        metadata.insert(meta::OPENCODE_ID.into(), state.opencode_id.clone());
    }
    session.metadata = metadata;
    session
}
