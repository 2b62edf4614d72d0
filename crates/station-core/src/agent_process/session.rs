//! Opening a session of a subprocess agent: the workspace it runs in, resolved the same way for
//! every such backend.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::{OpenRequest, Session};

/// A new session of `backend` for `req`. Its workspace: for a resumed agent session, what
/// `resume_workspace(agent session id, requested workspace)` finds (it may read the agent's
/// own files, so it runs on the blocking pool); else the requested one, or a fresh directory
/// under `workspace_base`. The workspace is created if needed and recorded with symlinks
/// resolved (agents key their sessions by their real working directory).
pub async fn open_session<F>(
    backend: &'static str,
    req: OpenRequest,
    workspace_base: &Path,
    resume_workspace: F,
) -> Result<Session>
where
    F: FnOnce(&str, Option<&Path>) -> Result<PathBuf> + Send + 'static,
{
    let mut session = Session::new(backend);
    session.title = req.title;
    session.repo = req.repo;
    let workspace = match req.resume {
        Some(id) => {
            let (requested, lookup) = (req.workspace.clone(), id.clone());
            let found = tokio::task::spawn_blocking(move || {
                resume_workspace(&lookup, requested.as_deref())
            })
            .await
            .map_err(|e| {
                Error::backend(backend, format!("looking up the session failed: {e}"))
            })??;
            session.backend_session_id = Some(id);
            found
        }
        None => req
            .workspace
            .unwrap_or_else(|| workspace_base.join(session.id.as_str())),
    };
    session.workspace = Some(make_workspace(&workspace).await?);
    Ok(session)
}

/// Create `workspace` if needed (refusing a file in its place) and return it with symlinks
/// resolved.
pub async fn make_workspace(workspace: &Path) -> Result<PathBuf> {
    if workspace.exists() && !workspace.is_dir() {
        return Err(Error::config(format!(
            "workspace {} exists and is not a directory",
            workspace.display()
        )));
    }
    tokio::fs::create_dir_all(workspace)
        .await
        .map_err(|e| Error::io(format!("creating workspace {}", workspace.display()), e))?;
    Ok(canonical(workspace))
}

/// `path` with symlinks resolved where it exists, else as given.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
