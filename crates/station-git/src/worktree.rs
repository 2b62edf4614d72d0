//! Worktrees for sessions (blocking): a new branch at the repository's HEAD, checked out in a
//! directory of its own, so several sessions work on one repository without touching its main
//! checkout (HEAD, index, files); and their removal, which never discards uncommitted work.

use std::path::{Path, PathBuf};

use git2::{BranchType, ErrorCode, Repository, StatusOptions, WorktreeAddOptions};
use station_core::{Error, Result, SessionWorktree};

use crate::errors::{Failure, input};
use crate::git::Git;
use crate::local::{self, check_branch_name};

impl Git {
    /// Make `dest` (which must not exist) a worktree of the repository whose top directory is
    /// `repo`, on a new branch `branch` started at its HEAD; `name` names the worktree in the
    /// repository (`.git/worktrees/<name>`). The repository's HEAD, index and files are not
    /// touched. Errors say what to do when `repo` is no repository's top directory, its HEAD is
    /// detached or has no commit, or `branch` or `dest` exists already.
    pub async fn add_worktree(
        &self,
        repo: &Path,
        dest: &Path,
        branch: &str,
        name: &str,
    ) -> Result<SessionWorktree> {
        let (repo, dest, branch, name) = (
            repo.to_path_buf(),
            dest.to_path_buf(),
            branch.to_string(),
            name.to_string(),
        );
        tracing::info!(repo = %repo.display(), dest = %dest.display(), branch = %branch, "git worktree add");
        let result = self
            .run_local("git worktree add", move || {
                add(&repo, &dest, &branch, &name)
            })
            .await;
        self.finish("git worktree add", result)
    }

    /// Remove a session's worktree: its directory and the repository's record of it; the branch
    /// (and every commit on it) stays. A worktree with uncommitted changes (modified, staged or
    /// untracked files; ignored files do not count) is kept and the error names its path and
    /// branch, unless `force`. A worktree already gone is not an error.
    pub async fn remove_worktree(&self, worktree: &SessionWorktree, force: bool) -> Result<()> {
        let worktree = worktree.clone();
        tracing::info!(path = %worktree.path.display(), branch = %worktree.branch, force, "git worktree remove");
        let result = self
            .run_local("git worktree remove", move || remove(&worktree, force))
            .await;
        self.finish("git worktree remove", result)
    }
}

/// The setting to name in hints about isolation.
const ISOLATION_HINT: &str = "or use isolation `none` (--isolation none, coding.isolation)";

/// Make `dest` a worktree of the repository at `repo_dir` on a new branch `branch` started at
/// its HEAD. `name` names the worktree inside the repository (`.git/worktrees/<name>`).
pub(crate) fn add(
    repo_dir: &Path,
    dest: &Path,
    branch: &str,
    name: &str,
) -> Result<SessionWorktree> {
    check_branch_name(branch)?;
    let repo = open_for_worktree(repo_dir)?;
    let head = head_commit(&repo, repo_dir)?;
    if repo.find_branch(branch, BranchType::Local).is_ok() {
        return Err(input(
            format!(
                "cannot make a worktree for the session: branch `{branch}` already exists in {}",
                repo_dir.display()
            ),
            format!(
                "delete the branch (git branch -D {branch}) or continue its session with --session"
            ),
        ));
    }
    if dest.exists() {
        return Err(input(
            format!(
                "cannot make a worktree in {}: it already exists",
                dest.display()
            ),
            "remove it, or set coding.workspace_base_path to another directory",
        ));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    // libgit2 creates `<git dir>/worktrees` exclusively: two sessions starting at once would
    // race on it, so it exists before either adds its worktree.
    let worktrees = repo.commondir().join("worktrees");
    std::fs::create_dir_all(&worktrees)
        .map_err(|e| Error::io(format!("creating {}", worktrees.display()), e))?;
    let fail = |e: git2::Error| Failure::local("git worktree add").map(&e);
    let created = repo.branch(branch, &head, false).map_err(fail)?;
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(created.get()));
    if let Err(e) = repo.worktree(name, dest, Some(&opts)) {
        // Leave the repository as it was: no half-made worktree, no orphan branch.
        let _ = std::fs::remove_dir_all(dest);
        let _ = std::fs::remove_dir_all(worktrees.join(name));
        if let Ok(mut b) = repo.find_branch(branch, BranchType::Local) {
            let _ = b.delete();
        }
        return Err(fail(e));
    }
    let repository = repo
        .workdir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_dir.to_path_buf());
    Ok(SessionWorktree {
        repository: trim_trailing_slash(repository),
        path: dest.to_path_buf(),
        branch: branch.to_string(),
    })
}

/// Remove `worktree` (its directory and the repository's record of it); its branch stays. With
/// uncommitted changes (modified, staged or untracked files; ignored ones do not count) this
/// refuses unless `force`.
pub(crate) fn remove(worktree: &SessionWorktree, force: bool) -> Result<()> {
    let path = &worktree.path;
    if !path.exists() {
        return prune_record(worktree);
    }
    let repo = local::open(path)?;
    if !repo.is_worktree() {
        return Err(input(
            format!(
                "{} is not a git worktree, so it is not removed",
                path.display()
            ),
            "remove it yourself if it is no longer needed",
        ));
    }
    if !force {
        let changed = uncommitted(&repo)?;
        if !changed.is_empty() {
            let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
            let more = if changed.len() > shown.len() {
                format!(" and {} more", changed.len() - shown.len())
            } else {
                String::new()
            };
            return Err(input(
                format!(
                    "the worktree {} (branch `{}`) has uncommitted changes ({}{more}), so it was kept",
                    path.display(),
                    worktree.branch,
                    shown.join(", ")
                ),
                "commit the changes (coding_commit) and close again, or remove the worktree with force to discard them",
            ));
        }
    }
    let record = git2::Worktree::open_from_repository(&repo)
        .map_err(|e| Failure::local("git worktree remove").map(&e))?;
    drop(repo);
    let mut opts = git2::WorktreePruneOptions::new();
    opts.valid(true).working_tree(true);
    record
        .prune(Some(&mut opts))
        .map_err(|e| Failure::local("git worktree remove").map(&e))?;
    if path.exists() {
        std::fs::remove_dir_all(path)
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    }
    Ok(())
}

/// The worktree's directory is gone already: drop the repository's record of it, if any.
fn prune_record(worktree: &SessionWorktree) -> Result<()> {
    let Ok(repo) = Repository::open(&worktree.repository) else {
        return Ok(());
    };
    let Ok(names) = repo.worktrees() else {
        return Ok(());
    };
    for name in names.iter().flatten().flatten() {
        if let Ok(wt) = repo.find_worktree(name)
            && wt.path() == worktree.path
        {
            let _ = wt.prune(None);
        }
    }
    Ok(())
}

/// Paths with changes a removal would lose.
fn uncommitted(repo: &Repository) -> Result<Vec<String>> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut opts))
        .map_err(|e| Failure::local("git status").map(&e))?;
    Ok(statuses
        .iter()
        .filter(|s| !s.status().is_empty() && !s.status().is_ignored())
        .filter_map(|s| s.path().ok().map(str::to_string))
        .collect())
}

fn open_for_worktree(dir: &Path) -> Result<Repository> {
    match local::open(dir) {
        Ok(repo) => Ok(repo),
        Err(Error::NotFound {
            what: "directory", ..
        }) => Err(input(
            format!(
                "cannot isolate the session in a worktree: {} does not exist",
                dir.display()
            ),
            format!("run it in a git repository's top directory, {ISOLATION_HINT}"),
        )),
        Err(Error::NotFound { .. }) => {
            let inside = Repository::discover(dir)
                .ok()
                .and_then(|r| r.workdir().map(Path::to_path_buf));
            let hint = match inside {
                Some(top) => format!(
                    "it is inside the repository at {}; run it there, {ISOLATION_HINT}",
                    trim_trailing_slash(top).display()
                ),
                None => format!(
                    "run it in a git repository (git init, then commit once), {ISOLATION_HINT}"
                ),
            };
            Err(input(
                format!(
                    "cannot isolate the session in a worktree: {} is not a git repository's top directory",
                    dir.display()
                ),
                hint,
            ))
        }
        Err(e) => Err(e),
    }
}

/// The commit the new branch starts at: HEAD, which must be on a branch with a commit.
fn head_commit<'r>(repo: &'r Repository, dir: &Path) -> Result<git2::Commit<'r>> {
    if repo.head_detached().unwrap_or(false) {
        let at = repo
            .head()
            .ok()
            .and_then(|h| h.target())
            .map(|o| o.to_string()[..12].to_string())
            .unwrap_or_default();
        return Err(input(
            format!(
                "cannot isolate the session in a worktree: HEAD of {} is detached (at {at}), and the session's branch starts from the current branch",
                dir.display()
            ),
            format!("check out a branch first (git switch BRANCH), {ISOLATION_HINT}"),
        ));
    }
    match repo.head().and_then(|h| h.peel_to_commit()) {
        Ok(commit) => Ok(commit),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Err(input(
            format!(
                "cannot isolate the session in a worktree: {} has no commits yet, so there is nothing to branch from",
                dir.display()
            ),
            format!("commit once first, {ISOLATION_HINT}"),
        )),
        Err(e) => Err(Failure::local("reading HEAD").map(&e)),
    }
}

fn trim_trailing_slash(p: PathBuf) -> PathBuf {
    p.components().collect()
}
