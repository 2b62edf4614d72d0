//! The persistent session index: one JSON file under the station data dir, shared safely by
//! concurrent `stn` processes (an exclusive file lock around every read-modify-write, and an
//! atomic rename for every write).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, InputError, Result};
use crate::model::{Session, SessionId};

const FILE_NAME: &str = "sessions.json";
const LOCK_NAME: &str = "sessions.lock";
const FORMAT_VERSION: u32 = 1;
/// The largest index read (about 100,000 sessions).
const MAX_INDEX_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    sessions: Vec<Session>,
}

/// The session index.
#[derive(Debug, Clone)]
pub struct SessionIndex {
    dir: PathBuf,
}

impl SessionIndex {
    /// The index in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| {
            Error::io(
                format!("creating the session index directory {}", dir.display()),
                e,
            )
        })?;
        Ok(SessionIndex { dir })
    }

    /// The default data directory: `$STN_DATA_DIR`, else `$XDG_DATA_HOME/station`, else
    /// `~/.local/share/station`.
    pub fn default_dir() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("STN_DATA_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        use etcetera::BaseStrategy;
        let strategy = etcetera::choose_base_strategy().map_err(|e| {
            Error::config(format!(
                "cannot find the home directory for the station data dir: {e}; set STN_DATA_DIR"
            ))
        })?;
        Ok(strategy.data_dir().join("station"))
    }

    /// The directory the index lives in (the station data dir).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file the index lives in.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn locked<T>(&self, write: bool, f: impl FnOnce(&mut Vec<Session>) -> Result<T>) -> Result<T> {
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        if write {
            lock.lock()
        } else {
            lock.lock_shared()
        }
        .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        let path = self.path();
        let mut file = read_index(&path)?;
        let out = f(&mut file.sessions)?;
        if write {
            file.version = FORMAT_VERSION;
            write_atomically(
                &path,
                &serde_json::to_vec_pretty(&file).expect("sessions serialize"),
            )?;
        }
        drop(lock);
        Ok(out)
    }

    /// Insert or replace a session (matched by station id).
    pub fn upsert(&self, session: &Session) -> Result<()> {
        self.locked(true, |sessions| {
            match sessions.iter_mut().find(|s| s.id == session.id) {
                Some(slot) => *slot = session.clone(),
                None => sessions.push(session.clone()),
            }
            Ok(())
        })
    }

    /// Change a stored session in place; `NotFound` when it is not there.
    pub fn update(&self, id: &SessionId, change: impl FnOnce(&mut Session)) -> Result<Session> {
        self.locked(true, |sessions| {
            let s = sessions
                .iter_mut()
                .find(|s| &s.id == id)
                .ok_or_else(|| Error::session_not_found(id.as_str()))?;
            change(s);
            Ok(s.clone())
        })
    }

    /// Remove a session; `Ok(false)` when it was not there.
    pub fn remove(&self, id: &SessionId) -> Result<bool> {
        self.locked(true, |sessions| {
            let before = sessions.len();
            sessions.retain(|s| &s.id != id);
            Ok(sessions.len() != before)
        })
    }

    /// Every session, most recently used first.
    pub fn list(&self) -> Result<Vec<Session>> {
        let mut all = self.locked(false, |sessions| Ok(sessions.clone()))?;
        all.sort_by_key(|s| std::cmp::Reverse(s.last_used_at));
        Ok(all)
    }

    /// Find a session by what a user typed: an exact id (station id or backend id), else a
    /// case-insensitive exact title, else a unique case-insensitive part of a title.
    /// Several matches at one level are an [`Error::AmbiguousSession`] listing them.
    pub fn resolve(&self, query: &str) -> Result<Session> {
        let query = query.trim();
        if query.is_empty() {
            return Err(InputError::new("the session name is empty")
                .field("session")
                .hint("give a session id or part of its title")
                .into());
        }
        let all = self.list()?;
        if let Some(s) = all
            .iter()
            .find(|s| s.id.as_str() == query || s.backend_session_id.as_deref() == Some(query))
        {
            return Ok(s.clone());
        }
        crate::title::find_by_title(
            query,
            &all,
            |s| s.title.as_deref(),
            |s| {
                format!(
                    "{} [{}] \"{}\"",
                    s.id,
                    s.backend,
                    s.title.as_deref().unwrap_or("")
                )
            },
            None,
        )
        .cloned()
    }
}

fn read_index(path: &Path) -> Result<IndexFile> {
    let bytes = match crate::fsutil::read_bytes(path, MAX_INDEX_BYTES, "session index") {
        Ok(b) => b,
        Err(Error::NotFound { .. }) => {
            return Ok(IndexFile {
                version: FORMAT_VERSION,
                sessions: Vec::new(),
            });
        }
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        InputError::new(format!("the session index is not valid: {e}"))
            .in_file(path)
            .at(e.line(), e.column())
            .hint("it was left as it is; move it aside to start a new index")
            .into()
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    let mut f =
        File::create(&tmp).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(format!("replacing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(backend: &str, title: &str, backend_id: &str) -> Session {
        let mut s = Session::new(backend);
        s.title = Some(title.to_string());
        s.backend_session_id = Some(backend_id.to_string());
        s
    }

    #[test]
    fn resolves_by_id_title_and_fragment() {
        let dir = tempfile::tempdir().unwrap();
        let index = SessionIndex::open(dir.path()).unwrap();
        let a = session(
            "opencode",
            "Create a new feature branch for user-auth",
            "ses_aaa",
        );
        let b = session("opencode", "Fix login validation bug", "ses_bbb");
        let c = session("claudecode", "Fix login", "uuid-c");
        for s in [&a, &b, &c] {
            index.upsert(s).unwrap();
        }
        // Survives a "restart": a fresh handle on the same directory.
        let index = SessionIndex::open(dir.path()).unwrap();
        assert_eq!(index.resolve(a.id.as_str()).unwrap().id, a.id);
        assert_eq!(index.resolve("ses_bbb").unwrap().id, b.id);
        assert_eq!(index.resolve("USER-AUTH").unwrap().id, a.id);
        assert_eq!(
            index.resolve("fix login").unwrap().id,
            c.id,
            "exact title wins over fragments"
        );
        match index.resolve("login") {
            Err(Error::AmbiguousSession { candidates, .. }) => {
                assert_eq!(candidates.len(), 2);
                assert!(
                    candidates
                        .iter()
                        .any(|c| c.contains("Fix login validation bug"))
                );
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        assert!(matches!(
            index.resolve("nothing like it"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn update_remove_and_list_order() {
        let dir = tempfile::tempdir().unwrap();
        let index = SessionIndex::open(dir.path()).unwrap();
        let a = session("opencode", "first", "ses_1");
        let b = session("opencode", "second", "ses_2");
        index.upsert(&a).unwrap();
        index.upsert(&b).unwrap();
        index
            .update(&a.id, |s| {
                s.last_used_at = b.last_used_at + chrono::Duration::seconds(5)
            })
            .unwrap();
        let listed: Vec<_> = index.list().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(listed, vec![a.id.clone(), b.id.clone()]);
        assert!(index.remove(&a.id).unwrap());
        assert!(!index.remove(&a.id).unwrap());
        assert_eq!(index.list().unwrap().len(), 1);
        assert!(matches!(
            index.update(&a.id, |_| {}),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn a_corrupt_index_is_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let index = SessionIndex::open(dir.path()).unwrap();
        fs::write(index.path(), "{ not json").unwrap();
        let err = index
            .upsert(&session("opencode", "x", "ses_x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sessions.json"), "{err}");
        assert!(err.contains("move it aside"), "{err}");
        assert_eq!(fs::read_to_string(index.path()).unwrap(), "{ not json");
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let index = SessionIndex::open(dir.path()).unwrap();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        index
                            .upsert(&session(
                                "opencode",
                                &format!("t{i}-{j}"),
                                &format!("ses_{i}_{j}"),
                            ))
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            SessionIndex::open(dir.path())
                .unwrap()
                .list()
                .unwrap()
                .len(),
            80
        );
    }
}
