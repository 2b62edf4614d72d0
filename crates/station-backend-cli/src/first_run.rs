//! OpenCode creates and migrates its database on its first start. Several `opencode run`
//! started at once on a data directory without one race on it, and all but one may fail
//! ("Failed query: CREATE TABLE …") — which is what a fresh CI runner with parallel tasks does.
//!
//! So before a run, unless this data directory is known to be ready, one run at a time (across
//! processes: a lock file in the data directory itself, so every Station sharing that OpenCode
//! home takes part, whatever its own data dir) lets OpenCode create the database with a quick
//! `opencode session list`, then marks the directory ready. The mark is written only once the
//! database exists after that command (or was already there), so a run never starts while
//! another is still migrating.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use station_core::process::CommandSpec;
use station_core::{CancelSignal, FileLock, Result};

/// OpenCode's database file in its data directory.
const DATABASE: &str = "opencode.db";
/// Station's mark that the database was created (or found) under the lock.
const READY_MARK: &str = ".station-ready";
/// The lock runs take while one of them creates the database.
const LOCK_FILE: &str = ".station-first-run.lock";
/// How long a run waits for another's first start before going ahead anyway.
const LOCK_WAIT: Duration = Duration::from_secs(120);
/// Deadline of the command that creates the database.
const CREATE_DEADLINE: Duration = Duration::from_secs(90);

/// OpenCode's data directory for a child with `env` set and `removed` unset on top of ours:
/// `$XDG_DATA_HOME/opencode`, else `$HOME/.local/share/opencode`.
pub(crate) fn data_dir(env: &[(String, String)], removed: &[String]) -> Option<PathBuf> {
    let lookup = |name: &str| -> Option<OsString> {
        if let Some((_, value)) = env.iter().rev().find(|(k, _)| k == name) {
            return Some(value.into());
        }
        if removed.iter().any(|k| k == name) {
            return None;
        }
        std::env::var_os(name)
    };
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(data) = lookup("XDG_DATA_HOME").and_then(absolute) {
        return Some(data.join("opencode"));
    }
    lookup("HOME")
        .and_then(absolute)
        .map(|home| home.join(".local/share/opencode"))
}

/// Make sure OpenCode's database in `dir` exists before a run starts; `list` is the
/// `opencode` command (environment and cwd set) to which `session list` is added.
/// Best effort: any failure here is left for the run itself to report.
pub(crate) async fn ensure_database(
    dir: &Path,
    list: CommandSpec,
    cancel: &CancelSignal,
) -> Result<()> {
    if dir.join(READY_MARK).exists() && dir.join(DATABASE).exists() {
        return Ok(());
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(
            "cannot create OpenCode's data directory {}: {e}",
            dir.display()
        );
        return Ok(());
    }
    let lock_path = dir.join(LOCK_FILE);
    let Some(_lock) = FileLock::acquire(&lock_path, LOCK_WAIT, cancel).await? else {
        tracing::warn!(
            "OpenCode's first start in {} (pid {:?}) took over {LOCK_WAIT:?}; running anyway",
            dir.display(),
            FileLock::holder_pid(&lock_path)
        );
        return Ok(());
    };
    if !dir.join(DATABASE).exists() {
        tracing::debug!("creating OpenCode's database in {}", dir.display());
        let created = list
            .args(["session", "list", "--format", "json"])
            .output(CREATE_DEADLINE, None)
            .await;
        if let Err(e) = created {
            tracing::warn!("`opencode session list` to create OpenCode's database failed: {e}");
        }
    }
    if dir.join(DATABASE).exists()
        && let Err(e) = std::fs::write(dir.join(READY_MARK), b"")
    {
        tracing::warn!("cannot mark {} ready: {e}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_data_dir_follows_xdg_then_home_as_the_child_sees_them() {
        let env = pairs(&[("HOME", "/h"), ("XDG_DATA_HOME", "/x")]);
        assert_eq!(data_dir(&env, &[]), Some(PathBuf::from("/x/opencode")));
        let env = pairs(&[("HOME", "/h"), ("XDG_DATA_HOME", "relative")]);
        assert_eq!(
            data_dir(&env, &[]),
            Some(PathBuf::from("/h/.local/share/opencode"))
        );
        let env = pairs(&[("HOME", "/h")]);
        let removed = ["XDG_DATA_HOME".to_string()];
        assert_eq!(
            data_dir(&env, &removed),
            Some(PathBuf::from("/h/.local/share/opencode"))
        );
        let removed = ["XDG_DATA_HOME".to_string(), "HOME".to_string()];
        assert_eq!(data_dir(&[], &removed), None);
    }
}
