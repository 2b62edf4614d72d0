//! [`Git::clone_or_reuse`]: clone into a temporary sibling and move it into place only when
//! complete, so an interrupted clone is never mistaken for a finished one; reuse an existing
//! directory only when it is a complete clone of the same URL with the expected branch.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use git2::{Repository, RepositoryOpenFlags};
use station_core::{Error, Result};
use url::Url;

use crate::credentials::{RemoteUrl, strip_credentials};
use crate::errors::input;
use crate::git::{CloneOptions, CloneResult, Git};
use crate::local;

/// Marks the temporary sibling a clone is made in: `.<name>.partial-clone-<pid>-<nanos>`.
const PARTIAL_MARK: &str = ".partial-clone-";

impl Git {
    /// Make `dir` a clone of `url` with `opts.branch` checked out.
    ///
    /// A missing or empty `dir` gets a fresh clone, made in a temporary sibling directory and
    /// renamed into place only once the checkout is done (an interrupted clone leaves only that
    /// sibling, which the next call removes). An existing `dir` is reused only when it is a
    /// complete clone whose `origin` is `url` (ignoring credentials, a trailing `.git` or `/`)
    /// and, when a branch is asked for, has that branch checked out; anything else is an error
    /// that says what is there. The URL is checked against the allowed hosts first.
    pub async fn clone_or_reuse(
        &self,
        url: &str,
        dir: &Path,
        opts: CloneOptions,
    ) -> Result<CloneResult> {
        let remote = RemoteUrl::parse(url)?;
        self.credentials().check_remote(&remote)?;
        if let Some(branch) = &opts.branch {
            local::check_branch_name(branch)?;
        }
        let parent = parent_of(dir);
        let name = dir
            .file_name()
            .ok_or_else(|| {
                input(
                    format!("{} is not a directory name to clone into", dir.display()),
                    "name a workspace directory",
                )
            })?
            .to_string_lossy()
            .into_owned();
        remove_stale_partials(&parent, &name);
        if is_non_empty_dir(dir) {
            let (dir, want, branch) = (dir.to_path_buf(), remote.clone(), opts.branch.clone());
            return tokio::task::spawn_blocking(move || {
                existing_clone(&dir, &want, branch.as_deref())
            })
            .await
            .map_err(|e| Error::backend("git", format!("git worker failed: {e}")))
            .and_then(|r| r)
            .map_err(|e| crate::errors::sanitize(e, self.redactor()));
        }
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        let partial = parent.join(partial_name(&name));
        let cloned = self.clone_repo(url, &partial, opts).await;
        let mut cloned = match cloned {
            Ok(cloned) => cloned,
            Err(e) => {
                // The clone removes its destination on failure; this covers a deadline or cancel
                // that returned before the worker finished.
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        };
        if let Err(e) = move_into_place(&partial, dir) {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        cloned.path = dir.to_path_buf();
        Ok(cloned)
    }
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn partial_name(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(".{name}{PARTIAL_MARK}{}-{nanos}", std::process::id())
}

/// Remove partial clones of `name` left by processes that are gone (an interrupted clone).
fn remove_stale_partials(parent: &Path, name: &str) {
    let prefix = format!(".{name}{PARTIAL_MARK}");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(process_is_running) {
            continue;
        }
        tracing::debug!(path = %entry.path().display(), "removing an interrupted clone");
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Whether `pid` is a running process (ours counts: a clone in progress in this process).
fn process_is_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    proc_root.join("self").exists() && proc_root.join(pid.to_string()).exists()
}

fn is_non_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Rename the finished clone to `dir` (an empty `dir` is replaced).
fn move_into_place(partial: &Path, dir: &Path) -> Result<()> {
    if dir.is_dir() {
        std::fs::remove_dir(dir)
            .map_err(|e| Error::io(format!("replacing {}", dir.display()), e))?;
    }
    std::fs::rename(partial, dir).map_err(|e| {
        Error::io(
            format!("moving the finished clone into {}", dir.display()),
            e,
        )
    })
}

/// `url` for comparing remotes: no credentials, no trailing `/` or `.git`, scheme and host in
/// lower case, default ports dropped.
pub(crate) fn comparable_url(url: &str) -> String {
    let clean = strip_credentials(url.trim());
    let parsed = Url::parse(&clean).map(|u| u.to_string()).unwrap_or(clean);
    let trimmed = parsed.trim_end_matches('/');
    trimmed
        .strip_suffix(".git")
        .unwrap_or(trimmed)
        .trim_end_matches('/')
        .to_string()
}

/// `dir` as a reusable clone of `want`, or an error that says what is there and what to do.
fn existing_clone(dir: &Path, want: &RemoteUrl, branch: Option<&str>) -> Result<CloneResult> {
    let refuse = |what: String| {
        input(
            format!(
                "{} already exists and {what}, so it is not used as a clone of {}",
                dir.display(),
                want.as_str()
            ),
            format!(
                "remove {} or choose another workspace directory (`--workspace`)",
                dir.display()
            ),
        )
    };
    let repo = Repository::open_ext(
        dir,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&OsStr>(),
    )
    .map_err(|_| {
        refuse(
            "is not a complete git repository (an interrupted clone leaves an empty `.git`)".into(),
        )
    })?;
    if repo.is_bare() {
        return Err(refuse("is a bare repository".into()));
    }
    let origin = repo
        .find_remote("origin")
        .ok()
        .and_then(|r| r.url().ok().map(strip_credentials))
        .ok_or_else(|| refuse("has no `origin` remote".into()))?;
    if comparable_url(&origin) != comparable_url(want.as_str()) {
        return Err(refuse(format!("is a clone of {origin}")));
    }
    let head = match repo.head() {
        Ok(head) => head.target().map(|oid| oid.to_string()),
        Err(_) if repo.is_empty().unwrap_or(false) => None,
        Err(_) => {
            return Err(refuse(
                "has no checked-out commit (an interrupted clone?)".into(),
            ));
        }
    };
    let current = local::current_branch(&repo);
    if let Some(branch) = branch
        && current.as_deref() != Some(branch)
    {
        let there = match &current {
            Some(b) => format!("has branch `{b}` checked out, not `{branch}`"),
            None => format!("has a detached HEAD, not branch `{branch}`"),
        };
        return Err(refuse(there));
    }
    Ok(CloneResult {
        path: dir.to_path_buf(),
        url: want.as_str().to_string(),
        branch: current,
        head,
        shallow: repo.is_shallow(),
        reused: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_without_credentials_or_suffixes() {
        let want = comparable_url("https://github.com/o/r");
        for same in [
            "https://github.com/o/r.git",
            "https://github.com/o/r/",
            "https://GitHub.com:443/o/r.git/",
            "https://x-access-token:secret@github.com/o/r.git",
        ] {
            assert_eq!(comparable_url(same), want, "{same}");
        }
        assert_ne!(comparable_url("https://github.com/o/other"), want);
        assert_ne!(comparable_url("https://gitlab.com/o/r"), want);
    }

    #[test]
    fn partial_names_carry_the_pid() {
        let name = partial_name("repo");
        assert!(
            name.starts_with(&format!(".repo{PARTIAL_MARK}{}-", std::process::id())),
            "{name}"
        );
    }
}
