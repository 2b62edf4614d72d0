//! OpenCode creates and migrates its database on its first start. Several `opencode run`
//! started at once on a data directory without one race on it, and all but one may fail
//! ("Failed query: CREATE TABLE …") — which is what a fresh CI runner with parallel tasks does.
//!
//! So until a data directory is known to be ready, one run at a time starts on it: it holds a
//! lock (a file in the data directory itself, so every Station sharing that OpenCode home takes
//! part, whatever its own data dir) until it prints its first event — by then OpenCode has
//! opened and migrated its database — and then marks the directory ready. Runs waiting for the
//! lock then start at once; later runs skip it. A run that fails before printing anything
//! releases the lock unmarked, and the next run tries.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use station_core::agent_process::StdoutParser;
use station_core::{CancelSignal, EventKind, FileLock, Result};

/// Station's mark that a run started on this data directory.
const READY_MARK: &str = ".station-ready";
/// The lock first runs take.
const LOCK_FILE: &str = ".station-first-run.lock";
/// How long a run waits for another's first start before going ahead anyway.
const LOCK_WAIT: Duration = Duration::from_secs(120);

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

/// The first start on a data directory, while it holds the lock.
#[derive(Debug)]
pub(crate) struct FirstStart {
    _lock: FileLock,
    dir: PathBuf,
}

impl FirstStart {
    /// Wait for this run's turn to start on `dir` when it is not known to be ready; `None`
    /// when it is (or the wait ran out: then the run goes ahead, as before this check).
    pub(crate) async fn begin(dir: &Path, cancel: &CancelSignal) -> Result<Option<FirstStart>> {
        if dir.join(READY_MARK).exists() {
            return Ok(None);
        }
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(
                "cannot create OpenCode's data directory {}: {e}",
                dir.display()
            );
            return Ok(None);
        }
        let lock_path = dir.join(LOCK_FILE);
        let Some(lock) = FileLock::acquire(&lock_path, LOCK_WAIT, cancel).await? else {
            tracing::warn!(
                "OpenCode's first start in {} (pid {:?}) took over {LOCK_WAIT:?}; running anyway",
                dir.display(),
                FileLock::holder_pid(&lock_path)
            );
            return Ok(None);
        };
        if dir.join(READY_MARK).exists() {
            return Ok(None);
        }
        Ok(Some(FirstStart {
            _lock: lock,
            dir: dir.to_path_buf(),
        }))
    }

    /// The run printed its first event: mark the directory ready and let the others start.
    fn ready(self) {
        if let Err(e) = std::fs::write(self.dir.join(READY_MARK), b"") {
            tracing::warn!("cannot mark {} ready: {e}", self.dir.display());
        }
    }
}

/// A parser that ends a [`FirstStart`] at the run's first stdout line.
#[derive(Debug)]
pub(crate) struct EndsFirstStart<P> {
    pub(crate) inner: P,
    first: Option<FirstStart>,
}

impl<P> EndsFirstStart<P> {
    pub(crate) fn new(inner: P, first: Option<FirstStart>) -> Self {
        EndsFirstStart { inner, first }
    }
}

impl<P: StdoutParser> StdoutParser for EndsFirstStart<P> {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        if let Some(first) = self.first.take() {
            first.ready();
        }
        self.inner.push_line(line)
    }
    fn finished(&self) -> bool {
        self.inner.finished()
    }
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
