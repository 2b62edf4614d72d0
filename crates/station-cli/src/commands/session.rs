//! `stn session ...`: list, show, delete, prune. Deleting forgets a session (index entry, task
//! history, checkpoints); its workspace is never touched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use station_core::config::LoadedConfig;
use station_core::history::{HistoryRead, TaskHistory};
use station_core::{Session, SessionIndex};

use crate::cli::{DeleteSessionArgs, ListSessionsArgs, PruneSessionsArgs, ShowSessionArgs};
use crate::{backends, output};

/// `stn session list --from-backend [--backend NAME]`: the sessions the backend itself keeps.
pub(crate) async fn list_backend(
    loaded: &LoadedConfig,
    flag: &str,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let name = backends::selected(Some(flag), loaded)?;
    let backend = backends::build(&name, loaded).await?;
    let sessions = backend.list_sessions().await?;
    if as_json {
        output::json(&sessions);
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        output::line(&format!("the `{name}` backend lists no sessions"));
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&format!(
        "{:<40}  {:<40}  {:<19}  WORKSPACE",
        "BACKEND ID", "TITLE", "UPDATED"
    ));
    for s in sessions {
        let title: String = s.title.as_deref().unwrap_or("").chars().take(40).collect();
        output::line(&format!(
            "{:<40}  {:<40}  {:<19}  {}",
            s.id,
            title,
            s.updated_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into()),
            s.workspace
                .as_ref()
                .map(|w| w.display().to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn list(args: &ListSessionsArgs) -> anyhow::Result<ExitCode> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let workspace = args.workspace.as_deref().map(comparable);
    let sessions: Vec<Session> = index
        .list()?
        .into_iter()
        .filter(|s| args.backend.as_deref().is_none_or(|b| s.backend == b))
        .filter(|s| {
            workspace
                .as_ref()
                .is_none_or(|w| s.workspace.as_deref().map(comparable).as_ref() == Some(w))
        })
        .collect();
    if args.json {
        output::json(&sessions);
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        if args.backend.is_some() || args.workspace.is_some() {
            output::line("no coding sessions match the filters");
        } else {
            output::line("no coding sessions yet; start one with `stn code \"...\"`");
        }
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&format!(
        "{:<36}  {:<13}  {:<32}  {:<30}  {:<19}  {:<41}  WORKSPACE",
        "ID", "BACKEND", "BACKEND ID", "TITLE", "LAST USED", "BRANCH"
    ));
    for s in sessions {
        let title: String = s.title.as_deref().unwrap_or("").chars().take(30).collect();
        output::line(&format!(
            "{:<36}  {:<13}  {:<32}  {:<30}  {:<19}  {:<41}  {}",
            s.id,
            s.backend,
            s.backend_session_id.as_deref().unwrap_or("-"),
            title,
            s.last_used_at.format("%Y-%m-%d %H:%M:%S"),
            // The session's own branch, when it works in a worktree.
            s.worktree.as_ref().map_or("-", |w| w.branch.as_str()),
            workspace_text(&s)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// A path as given, made absolute and resolved where it exists, so `.` matches a stored path.
fn comparable(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    absolute.canonicalize().unwrap_or(absolute)
}

fn workspace_text(s: &Session) -> String {
    s.workspace
        .as_ref()
        .map(|w| w.display().to_string())
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn show(args: &ShowSessionArgs) -> anyhow::Result<ExitCode> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let session = index.resolve(&args.session)?;
    let history = TaskHistory::new(index.dir()).read(&session.id)?;
    warn_about_history(&history);
    let total_cost: Option<f64> = history
        .tasks
        .iter()
        .filter_map(|t| t.cost_usd)
        .reduce(|a, b| a + b);
    let usage = history
        .tasks
        .iter()
        .fold(station_core::Usage::default(), |sum, t| sum + t.usage);
    if args.json {
        output::json(&json!({
            "session": session,
            "tasks": history.tasks,
            "totals": {"tasks": history.tasks.len(), "usage": usage, "cost_usd": total_cost},
            "skipped_lines": history.skipped_lines,
            "truncated": history.truncated,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&format!(
        "session {} [{}{}]",
        session.id,
        session.backend,
        session
            .backend_session_id
            .as_deref()
            .map(|b| format!(" {b}"))
            .unwrap_or_default()
    ));
    output::line(&format!(
        "  title:     {}",
        session.title.as_deref().unwrap_or("-")
    ));
    output::line(&format!("  workspace: {}", workspace_text(&session)));
    output::line(&format!(
        "  created:   {} · last used {}",
        session.created_at.format("%Y-%m-%d %H:%M:%S"),
        session.last_used_at.format("%Y-%m-%d %H:%M:%S")
    ));
    if history.tasks.is_empty() {
        output::line("  no tasks recorded");
        return Ok(ExitCode::SUCCESS);
    }
    for t in &history.tasks {
        let first_line: String = t
            .instruction
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(70)
            .collect();
        output::line(&format!(
            "#{} {} {} ({:?}) · {} in / {} out tokens{} · {:.1}s · {first_line}",
            t.number,
            t.ended_at.format("%Y-%m-%d %H:%M:%S"),
            if t.success { "ok" } else { "failed" },
            t.stop_reason,
            t.usage.input_tokens,
            t.usage.output_tokens,
            t.cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default(),
            t.duration_ms as f64 / 1000.0,
        ));
        if let Some(e) = &t.error {
            output::line(&format!("    error: {e}"));
        }
        for f in &t.files_changed {
            output::line(
                &format!(
                    "    {:?} {} (+{} -{})",
                    f.action, f.path, f.lines_added, f.lines_removed
                )
                .to_lowercase(),
            );
        }
        if t.files_omitted > 0 {
            output::line(&format!("    … and {} more files", t.files_omitted));
        }
    }
    output::line(&format!(
        "total: {} tasks · {} in / {} out tokens{}",
        history.tasks.len(),
        usage.input_tokens,
        usage.output_tokens,
        total_cost
            .map(|c| format!(" · ${c:.4}"))
            .unwrap_or_default()
    ));
    Ok(ExitCode::SUCCESS)
}

fn warn_about_history(history: &HistoryRead) {
    if history.skipped_lines > 0 {
        output::warn_line(&format!(
            "{} task records could not be read and are not shown",
            history.skipped_lines
        ));
    }
    if history.truncated {
        output::warn_line("the task history is long; only its newest part is shown");
    }
}

pub(crate) fn delete(args: &DeleteSessionArgs) -> anyhow::Result<ExitCode> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let session = index.resolve(&args.session)?;
    forget(&index, &session)?;
    output::line(&format!("deleted session {}", session.id));
    if let Some(w) = &session.workspace {
        output::progress(&format!("its workspace {} was left as it is", w.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Remove a session's index entry, task history and checkpoints (never its workspace).
fn forget(index: &SessionIndex, session: &Session) -> anyhow::Result<()> {
    index.remove(&session.id)?;
    TaskHistory::new(index.dir()).remove(&session.id)?;
    // Per-task checkpoints (`stn session diff`/`rewind`) live in their own directory.
    if let Some(dir) = checkpoints_dir(index.dir(), session) {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("removing the checkpoints {}: {e}", dir.display()),
        }
    }
    Ok(())
}

/// `<data dir>/checkpoints/<session id>`, for an id that is a plain file name.
fn checkpoints_dir(data_dir: &Path, session: &Session) -> Option<PathBuf> {
    let id = session.id.as_str();
    let plain = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    plain.then(|| data_dir.join("checkpoints").join(id))
}

pub(crate) fn prune(args: &PruneSessionsArgs) -> anyhow::Result<ExitCode> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let age = chrono::Duration::from_std(args.older_than).map_err(|_| {
        station_core::Error::config("--older-than is too long; give at most a few hundred years")
    })?;
    let cutoff = chrono::Utc::now()
        .checked_sub_signed(age)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let old: Vec<Session> = index
        .list()?
        .into_iter()
        .filter(|s| s.last_used_at < cutoff)
        .collect();
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for s in &old {
        if !args.dry_run {
            forget(&index, s)?;
        }
        output::line(&format!(
            "{verb} {} (last used {}) {}",
            s.id,
            s.last_used_at.format("%Y-%m-%d %H:%M:%S"),
            s.title.as_deref().unwrap_or("")
        ));
    }
    output::progress(&format!(
        "{verb} {} sessions not used since {}; workspaces were left as they are",
        old.len(),
        cutoff.format("%Y-%m-%d %H:%M:%S")
    ));
    Ok(ExitCode::SUCCESS)
}
