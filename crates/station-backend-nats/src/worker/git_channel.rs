//! The git channel: git requests on a session's workspace, answered with the worker's hook.

use std::sync::Arc;

use async_nats::Message;
use station_core::{Error, Result};

use super::shared::Shared;
use crate::names::{check_inside, resolve_workspace};
use crate::wire::{self, SessionState};

impl Shared {
    /// Answer a git request for a session's workspace (extension).
    pub(super) async fn handle_git(self: Arc<Self>, m: Message) {
        let Some(reply) = m.reply.clone() else { return };
        let mut answer = crate::wire::GitAnswer::from_result(self.run_git(&m).await);
        if let crate::wire::GitAnswer::Error { message, .. } = &mut answer {
            *message = station_core::redact::redact(message);
        }
        self.publish_json(&reply, &answer).await;
    }

    pub(super) async fn run_git(&self, m: &Message) -> Result<station_core::git::GitResponse> {
        let command: crate::wire::GitCommand = serde_json::from_slice(&m.payload)
            .map_err(|e| Error::Protocol(format!("a git command is not valid: {e}")))?;
        let hook = self.options.git.as_ref().ok_or_else(|| {
            Error::not_supported(
                crate::conn::BACKEND,
                format!(
                    "git requests on worker `{}` (no git support configured)",
                    self.id
                ),
            )
        })?;
        let stored = if wire::is_valid_key(&command.session) {
            self.sessions
                .get(command.session.as_str())
                .await
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<SessionState>(&b).ok())
        } else {
            None
        };
        let name = stored
            .map(|s| s.workspace_name)
            .filter(|n| !n.is_empty())
            .unwrap_or(command.workspace);
        let dir = resolve_workspace(&self.base, &name).map_err(Error::config)?;
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: "workspace",
                id: format!("{name} on worker `{}`", self.id),
            });
        }
        let dir = check_inside(&self.base, &dir).map_err(Error::config)?;
        hook.run(&dir, command.request).await
    }
}
