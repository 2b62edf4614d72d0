//! `isolation: worktree`: a new session works in a git worktree of the repository, on a branch
//! of its own, so several sessions (and agents) can work on one repository at once. Used by
//! `coding_open` and by `stn code --isolation worktree`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use station_core::config::WorktreeOnClose;
use station_core::service::OpenSpec;
use station_core::{InputError, Result, Session, SessionId, SessionService, SessionWorktree};

use crate::git::GitOps;

/// Open a new session in a worktree of the repository whose top directory is `repo`: branch
/// `stn/<session id>` at the repository's HEAD, checked out in `<base>/<repo>-<8 hex>`. The
/// repository's own HEAD, index and files are left alone. If the backend cannot open the
/// session, the worktree is removed again (its branch, still at HEAD, stays).
pub async fn open_in_worktree(
    service: &SessionService,
    git: &dyn GitOps,
    repo: &Path,
    base: &Path,
    spec: OpenSpec,
) -> Result<Session> {
    let backend = service.backend();
    if backend.capabilities().remote_workspace {
        return Err(InputError::new(format!(
            "isolation `worktree` needs the workspace on this machine, and the `{}` backend works in a workspace where its server or worker runs",
            backend.name()
        ))
        .field("isolation")
        .hint("use isolation `none` with this backend, or a local backend (opencode-cli, claudecode)")
        .into());
    }
    let id = SessionId::generate();
    let branch = SessionWorktree::branch_for(&id);
    let dest = worktree_dir(base, repo, &id);
    let worktree = git.add_worktree(repo, &dest, &branch, id.as_str()).await?;
    match service.open_in_worktree(spec, id, worktree.clone()).await {
        Ok(session) => Ok(session),
        Err(e) => {
            if let Err(cleanup) = git.remove_worktree(&worktree, true).await {
                tracing::warn!(path = %worktree.path.display(), "could not remove the worktree of a session that did not open: {cleanup}");
            }
            Err(e)
        }
    }
}

/// `<base>/<repository directory name>-<last 8 hex of the session id>`.
fn worktree_dir(base: &Path, repo: &Path, id: &SessionId) -> PathBuf {
    let stem = repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .unwrap_or_else(|| "repo".into());
    let id = id.as_str();
    base.join(format!("{stem}-{}", &id[id.len() - 8..]))
}

/// After closing `session`: keep or remove its worktree as `on_close` says, never losing
/// uncommitted work (such a worktree is kept). What happened, as JSON for the tool result;
/// `None` when the session has no worktree.
pub async fn close_worktree(
    git: Option<&dyn GitOps>,
    session: &Session,
    on_close: WorktreeOnClose,
) -> Option<Value> {
    let wt = session.worktree.as_ref()?;
    let described = |removed: bool, note: String| {
        json!({
            "path": wt.path,
            "branch": wt.branch,
            "repository": wt.repository,
            "removed": removed,
            "note": note,
        })
    };
    let kept = format!(
        "the worktree {} on branch `{}` is kept",
        wt.path.display(),
        wt.branch
    );
    let (WorktreeOnClose::Remove, Some(git)) = (on_close, git) else {
        return Some(described(false, kept));
    };
    Some(match git.remove_worktree(wt, false).await {
        Ok(()) => described(
            true,
            format!(
                "removed the worktree {}; its commits stay on branch `{}` of {}",
                wt.path.display(),
                wt.branch,
                wt.repository.display()
            ),
        ),
        // Uncommitted changes: the error names the path and branch and says it was kept.
        Err(e @ station_core::Error::Config(_)) => described(false, e.to_string()),
        Err(e) => described(false, format!("{kept}: removing it failed: {e}")),
    })
}
