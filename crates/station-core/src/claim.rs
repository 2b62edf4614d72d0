//! One task at a time per session, across processes.
//!
//! Two runs on one session at once would drive the same agent conversation concurrently and
//! each be credited with the other's file changes. A task first claims its session: an
//! exclusive lock on `<data dir>/locks/<session id>.lock`, held until the task ends (the OS
//! drops it when the process dies, so a crashed run never leaves a session locked). A second
//! task waits a bounded time for the claim, then fails with [`Error::SessionBusy`].

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::SessionId;
use crate::run::CancelSignal;

/// How often a waiting task retries the lock.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// An exclusive claim on a session; dropping it releases the session.
#[derive(Debug)]
pub struct SessionClaim {
    _lock: FileLock,
}

/// Where session locks live, and how long a task waits for a busy session.
#[derive(Debug, Clone)]
pub(crate) struct SessionLocks {
    dir: PathBuf,
    wait: Duration,
}

impl SessionLocks {
    pub(crate) fn new(dir: impl Into<PathBuf>, wait: Duration) -> Self {
        SessionLocks {
            dir: dir.into(),
            wait,
        }
    }

    /// Claim `id`, waiting up to the configured time; `cancel` stops the wait.
    pub(crate) async fn claim(
        &self,
        id: &SessionId,
        cancel: &CancelSignal,
    ) -> Result<SessionClaim> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let path = self.dir.join(format!("{}.lock", file_stem(id.as_str())));
        match FileLock::acquire(&path, self.wait, cancel).await? {
            Some(lock) => Ok(SessionClaim { _lock: lock }),
            None => Err(Error::SessionBusy {
                session: id.to_string(),
                holder: FileLock::holder_pid(&path),
                waited: self.wait,
            }),
        }
    }
}

/// An exclusive lock on a file, across processes: released when dropped, and by the OS when
/// the process dies, so a crash never leaves it held.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Wait up to `wait` for the lock on `path` (the file is created if missing; its parent
    /// must exist). `Ok(None)` when another holder still has it after `wait`; `cancel` stops
    /// the wait with [`Error::Cancelled`]. The holder's pid is written into the file.
    pub async fn acquire(
        path: &Path,
        wait: Duration,
        cancel: &CancelSignal,
    ) -> Result<Option<FileLock>> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    record_holder(&mut file);
                    return Ok(Some(FileLock { _file: file }));
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
            if started.elapsed() >= wait {
                return Ok(None);
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_EVERY) => {}
                _ = cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
    }

    /// The pid recorded by whoever holds (or last held) the lock on `path`.
    pub fn holder_pid(path: &Path) -> Option<u32> {
        let mut text = String::new();
        File::open(path)
            .ok()?
            .take(32)
            .read_to_string(&mut text)
            .ok()?;
        text.trim().parse().ok()
    }
}

/// Ids are `stn_<hex>`; anything else is made safe for a file name.
fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect()
}

/// Write our pid into the lock file, so a waiting run can say who holds the session.
fn record_holder(file: &mut File) {
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_waits_then_reports_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let locks = SessionLocks::new(dir.path(), Duration::from_millis(300));
        let id = SessionId::from("stn_abc");
        let never = CancelSignal::new();
        let first = locks.claim(&id, &never).await.unwrap();
        let err = locks.claim(&id, &never).await.unwrap_err();
        assert!(
            matches!(&err, Error::SessionBusy { holder: Some(pid), .. } if *pid == std::process::id()),
            "{err:?}"
        );
        assert!(err.to_string().contains("stn_abc"), "{err}");
        drop(first);
        locks.claim(&id, &never).await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_claim_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let locks = SessionLocks::new(dir.path(), Duration::from_secs(600));
        let id = SessionId::from("stn_x/../y");
        let cancel = CancelSignal::new();
        let _first = locks.claim(&id, &cancel).await.unwrap();
        let second = locks.claim(&id, &cancel);
        cancel.cancel();
        assert!(matches!(second.await, Err(Error::Cancelled)));
        assert!(dir.path().join("stn_x____y.lock").exists());
    }
}
