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
    _lock: File,
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
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    record_holder(&mut file);
                    return Ok(SessionClaim { _lock: file });
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
            if started.elapsed() >= self.wait {
                return Err(Error::SessionBusy {
                    session: id.to_string(),
                    holder: holder_pid(&path),
                    waited: self.wait,
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_EVERY) => {}
                _ = cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
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

fn holder_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
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
