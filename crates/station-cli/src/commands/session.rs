//! `stn session ...`

use std::process::ExitCode;

use station_core::SessionIndex;

use crate::output;

pub(crate) fn list(as_json: bool) -> anyhow::Result<ExitCode> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let sessions = index.list()?;
    if as_json {
        output::json(&sessions);
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        output::line("no coding sessions yet; start one with `stn code \"...\"`");
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
            s.workspace
                .as_ref()
                .map(|w| w.display().to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    Ok(ExitCode::SUCCESS)
}
