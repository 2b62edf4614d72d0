//! Local operations (blocking): opening, status, commit, branch, and push preparation.

use std::ffi::OsStr;
use std::path::Path;

use git2::{
    BranchType, DiffOptions, ErrorCode, IndexAddOption, Patch, Repository, RepositoryOpenFlags,
    Signature,
};
use station_core::git::{BranchResult, CommitResult};
use station_core::{Error, FileAction, FileChange, Result};

use crate::credentials::RemoteUrl;
use crate::errors::{BACKEND, Failure, input};
use crate::git::{DEFAULT_IDENTITY_EMAIL, DEFAULT_IDENTITY_NAME};

/// The repository whose work tree is exactly `path` (no search upwards: a workspace inside
/// another repository must not commit into that one).
pub(crate) fn open(path: &Path) -> Result<Repository> {
    if !path.is_dir() {
        return Err(Error::NotFound {
            what: "directory",
            id: path.display().to_string(),
        });
    }
    let repo = Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&OsStr>(),
    )
    .map_err(|e| {
        if e.code() == ErrorCode::NotFound {
            Error::NotFound {
                what: "git repository",
                id: path.display().to_string(),
            }
        } else {
            Failure::local("opening the repository").map(&e)
        }
    })?;
    if repo.is_bare() {
        return Err(input(
            format!("{} is a bare repository", path.display()),
            "use a repository with a work tree",
        ));
    }
    Ok(repo)
}

fn git_err(operation: &'static str) -> impl Fn(git2::Error) -> Error {
    move |e| Failure::local(operation).map(&e)
}

/// The branch HEAD points at (also when it has no commit yet); `None` when detached.
pub(crate) fn current_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target().ok()??;
    target.strip_prefix("refs/heads/").map(str::to_string)
}

pub(crate) fn check_branch_name(name: &str) -> Result<()> {
    if git2::Branch::name_is_valid(name).unwrap_or(false) && !name.starts_with('-') {
        Ok(())
    } else {
        Err(input(
            format!("`{name}` is not a valid branch name"),
            "use letters, digits, `-`, `_`, `.` and `/`",
        ))
    }
}

/// Make sure `dest` can receive a clone. Returns whether we created it.
pub(crate) fn prepare_clone_dest(dest: &Path) -> Result<bool> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(input(
                    format!(
                        "cannot clone into {}: it exists and is not empty",
                        dest.display()
                    ),
                    "clone into a new or empty directory",
                ));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest)
                .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
            Ok(true)
        }
        Err(e) => Err(Error::io(format!("reading {}", dest.display()), e)),
    }
}

/// Put `dest` back the way [`prepare_clone_dest`] found it.
pub(crate) fn undo_clone_dest(dest: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dest);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dest) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// The tree HEAD points at; `None` before the first commit.
fn head_tree(repo: &Repository) -> Result<Option<git2::Tree<'_>>> {
    match repo.head() {
        Ok(head) => Ok(Some(head.peel_to_tree().map_err(git_err("reading HEAD"))?)),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
        Err(e) => Err(git_err("reading HEAD")(e)),
    }
}

pub(crate) fn status(path: &Path) -> Result<Vec<FileChange>> {
    let repo = open(path)?;
    let base = head_tree(&repo)?;
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .include_typechange(true)
        .ignore_submodules(true);
    let diff = repo
        .diff_tree_to_workdir_with_index(base.as_ref(), Some(&mut opts))
        .map_err(git_err("git status"))?;
    let mut changes = Vec::new();
    for (idx, delta) in diff.deltas().enumerate() {
        let action = match delta.status() {
            git2::Delta::Added | git2::Delta::Untracked | git2::Delta::Copied => {
                FileAction::Created
            }
            git2::Delta::Deleted => FileAction::Deleted,
            git2::Delta::Modified | git2::Delta::Renamed | git2::Delta::Typechange => {
                FileAction::Modified
            }
            _ => continue,
        };
        let Some(file) = delta.new_file().path().or_else(|| delta.old_file().path()) else {
            continue;
        };
        let (lines_added, lines_removed) =
            match Patch::from_diff(&diff, idx).map_err(git_err("git status"))? {
                Some(patch) => {
                    let (_, added, removed) = patch.line_stats().map_err(git_err("git status"))?;
                    (added as u64, removed as u64)
                }
                None => (0, 0),
            };
        changes.push(FileChange {
            path: file.to_string_lossy().replace('\\', "/"),
            action,
            lines_added,
            lines_removed,
            ..Default::default()
        });
    }
    changes.sort();
    Ok(changes)
}

/// Who commits, from config; missing parts come from the repository, then the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub(crate) name: Option<String>,
    pub(crate) email: Option<String>,
}

impl Identity {
    fn signature(&self, repo: &Repository) -> Result<Signature<'static>> {
        let config = repo.config().ok();
        let from_repo = |key: &str| {
            config
                .as_ref()
                .and_then(|c| c.get_string(key).ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let pick = |configured: &Option<String>, key: &str, default: &str| {
            configured
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .or_else(|| from_repo(key))
                .unwrap_or_else(|| default.to_string())
        };
        let name = pick(&self.name, "user.name", DEFAULT_IDENTITY_NAME);
        let email = pick(&self.email, "user.email", DEFAULT_IDENTITY_EMAIL);
        Signature::now(&name, &email).map_err(|e| {
            input(
                format!("invalid commit identity: {}", e.message()),
                "check coding.git.user_name and user_email",
            )
        })
    }
}

pub(crate) fn commit(
    path: &Path,
    message: &str,
    add_all: bool,
    identity: &Identity,
) -> Result<CommitResult> {
    let message = git2::message_prettify(message.trim(), None).map_err(git_err("git commit"))?;
    if message.trim().is_empty() {
        return Err(input("the commit message is empty", "describe the change"));
    }
    let repo = open(path)?;
    let err = git_err("git commit");
    let mut index = repo.index().map_err(&err)?;
    if add_all {
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .map_err(&err)?;
        index.update_all(["*"], None).map_err(&err)?;
        index.write().map_err(&err)?;
    }
    if index.has_conflicts() {
        return Err(Error::backend(
            BACKEND,
            "git commit: the index has unresolved conflicts; resolve them first",
        ));
    }
    let tree_id = index.write_tree().map_err(&err)?;
    let tree = repo.find_tree(tree_id).map_err(&err)?;
    let parent = match repo.head() {
        Ok(head) => Some(head.peel_to_commit().map_err(&err)?),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => None,
        Err(e) => return Err(err(e)),
    };
    let unchanged = match &parent {
        Some(p) => p.tree_id() == tree_id,
        None => tree.is_empty(),
    };
    if unchanged {
        let hint = if add_all {
            "change some files first"
        } else {
            "stage changes first, or commit with add_all"
        };
        return Err(input(
            "nothing to commit: the working tree has no changes",
            hint,
        ));
    }
    let signature = identity.signature(&repo)?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let oid = repo
        .commit(
            Some("HEAD"),
            &signature,
            &signature,
            &message,
            &tree,
            &parents,
        )
        .map_err(&err)?;
    let parent_tree = parent
        .as_ref()
        .map(|p| p.tree())
        .transpose()
        .map_err(&err)?;
    let stats = repo
        .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
        .and_then(|d| d.stats())
        .map_err(&err)?;
    Ok(CommitResult {
        hash: oid.to_string(),
        branch: current_branch(&repo),
        files_changed: stats.files_changed(),
        insertions: stats.insertions(),
        deletions: stats.deletions(),
    })
}

pub(crate) fn branch(path: &Path, name: &str, create: bool) -> Result<BranchResult> {
    check_branch_name(name)?;
    let repo = open(path)?;
    let err = git_err("git branch");
    let previous_branch = current_branch(&repo);
    let result = |created: bool| BranchResult {
        branch: name.to_string(),
        created,
        previous_branch: previous_branch.clone(),
    };
    let refname = format!("refs/heads/{name}");
    if previous_branch.as_deref() == Some(name) {
        return Ok(result(false));
    }
    if let Ok(existing) = repo.find_branch(name, BranchType::Local) {
        let commit = existing.get().peel_to_commit().map_err(&err)?;
        switch_to(&repo, &commit, &refname)?;
        return Ok(result(false));
    }
    if create {
        match repo.head().and_then(|h| h.peel_to_commit()) {
            Ok(commit) => {
                repo.branch(name, &commit, false).map_err(&err)?;
                // Same commit as HEAD: no checkout, uncommitted work stays as it is.
                repo.set_head(&refname).map_err(&err)?;
            }
            // No commit yet: the new branch is born with the first commit.
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
                repo.set_head(&refname).map_err(&err)?;
            }
            Err(e) => return Err(err(e)),
        }
        return Ok(result(true));
    }
    let tracking = format!("origin/{name}");
    let Ok(remote_branch) = repo.find_branch(&tracking, BranchType::Remote) else {
        return Err(Error::NotFound {
            what: "branch",
            id: name.to_string(),
        });
    };
    let commit = remote_branch.get().peel_to_commit().map_err(&err)?;
    switch_to(&repo, &commit, &refname).and_then(|()| {
        let mut local = repo.branch(name, &commit, false).map_err(&err)?;
        local.set_upstream(Some(&tracking)).map_err(&err)?;
        repo.set_head(&refname).map_err(&err)
    })?;
    Ok(result(true))
}

/// Check out `commit`'s tree without touching local changes it does not conflict with, then
/// point HEAD at `refname` (which may not exist yet; the caller creates it).
fn switch_to(repo: &Repository, commit: &git2::Commit<'_>, refname: &str) -> Result<()> {
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.safe();
    repo.checkout_tree(commit.as_object(), Some(&mut checkout)).map_err(|e| {
        if e.code() == ErrorCode::Conflict {
            Error::backend(
                BACKEND,
                format!("git branch: local changes would be overwritten by switching ({}); commit or discard them first", e.message()),
            )
        } else {
            Failure::local("git branch").map(&e)
        }
    })?;
    if repo.find_reference(refname).is_ok() {
        repo.set_head(refname).map_err(git_err("git branch"))?;
    }
    Ok(())
}

/// What a push sends where, checked before any network work.
#[derive(Debug)]
pub(crate) struct PushTarget {
    pub(crate) url: RemoteUrl,
    pub(crate) branch: String,
}

pub(crate) fn push_target(
    path: &Path,
    remote_name: &str,
    branch: Option<&str>,
) -> Result<PushTarget> {
    let repo = open(path)?;
    let remote = repo.find_remote(remote_name).map_err(|e| match e.code() {
        ErrorCode::NotFound | ErrorCode::InvalidSpec => Error::NotFound {
            what: "remote",
            id: remote_name.to_string(),
        },
        _ => Failure::local("git push").map(&e),
    })?;
    let Some(raw_url) = remote
        .pushurl()
        .ok()
        .flatten()
        .or_else(|| remote.url().ok())
        .filter(|u| !u.is_empty())
    else {
        return Err(input(
            format!("remote `{remote_name}` has no usable URL"),
            "set it with `git remote set-url`",
        ));
    };
    let url = RemoteUrl::parse(raw_url).map_err(|e| match e {
        Error::Config(mut input) => {
            input.message = format!("remote `{remote_name}`: {}", input.message);
            input.field = Some(format!("remote.{remote_name}.url"));
            Error::Config(input)
        }
        other => other,
    })?;
    let branch = match branch.map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) => b.to_string(),
        None => current_branch(&repo).ok_or_else(|| {
            input(
                "HEAD is detached: there is no current branch to push",
                "name the branch to push",
            )
        })?,
    };
    check_branch_name(&branch)?;
    let local = repo
        .find_branch(&branch, BranchType::Local)
        .map_err(|_| Error::NotFound {
            what: "branch",
            id: branch.clone(),
        })?;
    if local.get().target().is_none() {
        return Err(input(
            format!("branch `{branch}` has no commits yet"),
            "commit before pushing",
        ));
    }
    Ok(PushTarget { url, branch })
}

pub(crate) fn set_upstream(repo: &Repository, branch: &str, remote_name: &str) -> Result<()> {
    let err = git_err("setting the upstream");
    let mut config = repo.config().map_err(&err)?;
    config
        .set_str(&format!("branch.{branch}.remote"), remote_name)
        .map_err(&err)?;
    config
        .set_str(
            &format!("branch.{branch}.merge"),
            &format!("refs/heads/{branch}"),
        )
        .map_err(&err)
}
