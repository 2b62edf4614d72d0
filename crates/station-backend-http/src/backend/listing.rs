//! Finding sessions on a server: across every project, and by title.

use super::*;

/// Projects asked at most, so a server with a huge history cannot stall a listing.
const MAX_PROJECTS: usize = 500;

/// Every session the server knows. OpenCode lists the sessions of one project (the one the
/// `directory` selects, else its own working directory's), so ask it for its projects and list
/// each (a few at a time). The listing without a directory must work; a project that cannot be
/// listed is skipped with a warning.
pub(super) async fn sessions_of_every_project(client: &Client) -> Result<Vec<SessionInfo>> {
    use futures_util::StreamExt;
    let mut all: Vec<SessionInfo> = client.get_json(&["session"], None, &[]).await?;
    let projects = match client
        .get_json::<Vec<ProjectInfo>>(&["project"], None, &[])
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("no project list from the OpenCode server: {e}");
            Vec::new()
        }
    };
    let worktrees: Vec<String> = projects
        .into_iter()
        .map(|p| p.worktree)
        .filter(|w| !w.is_empty())
        .take(MAX_PROJECTS)
        .collect();
    let mut lists = futures_util::stream::iter(worktrees)
        .map(|worktree| async move {
            let list = client
                .get_json::<Vec<SessionInfo>>(&["session"], Some(&worktree), &[])
                .await;
            (worktree, list)
        })
        .buffer_unordered(8);
    let mut seen: std::collections::HashSet<String> = all.iter().map(|s| s.id.clone()).collect();
    while let Some((worktree, list)) = lists.next().await {
        match list {
            Ok(list) => all.extend(list.into_iter().filter(|s| seen.insert(s.id.clone()))),
            Err(e) => tracing::warn!("cannot list the sessions of project {worktree}: {e}"),
        }
    }
    Ok(all)
}

/// A session by title (core's rules, [`station_core::title`]); child sessions are skipped.
pub(super) fn find_by_title(all: Vec<SessionInfo>, query: &str) -> Result<SessionInfo> {
    let roots: Vec<SessionInfo> = all.into_iter().filter(|s| s.parent_id.is_none()).collect();
    station_core::title::find_by_title(
        query,
        &roots,
        |s| s.title.as_deref(),
        |s| format!("{} ({})", s.id, s.title.as_deref().unwrap_or("")),
        None,
    )
    .cloned()
}
