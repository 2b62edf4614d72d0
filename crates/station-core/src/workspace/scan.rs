//! Writing the workspace as it is now as a git tree in the store, quickly: directories are read
//! in parallel, each file's stat data is compared with the scan cache of the last scan, and
//! only files whose stat data changed (or was too fresh to trust) are read, hashed and written.
//! Trees are written only when one of their entries changed.
//!
//! What is in the tree is what `git add -A` would take: every file, symlink and directory
//! except `.git`, nested repositories and what `.gitignore` files, `.git/info/exclude` and the
//! user's global excludes file ignore. Blobs are the bytes on disk (no filters).
//!
//! Memory: each thread holds one directory's entries; the cache is read one directory at a
//! time and written as it goes; file contents are streamed to the object store.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use git2::{ObjectType, Oid, Repository};
use rayon::prelude::*;

use super::ignores::{DirRules, IgnoreRules};
use super::scan_cache::{Block, CacheReader, CacheWriter, Entry, Stat};
use super::store::git_err;
use crate::error::{Error, Result};

/// A file hashed while its change time was this close to the scan's start may still change
/// without its stat data changing (timestamps are coarse): it is hashed again next time.
const VERIFY_MARGIN_NS: i64 = 3_000_000_000;
/// Files up to this size are read whole before they are written; larger ones are streamed.
const READ_WHOLE: u64 = 1 << 20;

const MODE_TREE: u32 = 0o40000;
const MODE_FILE: u32 = 0o100644;
const MODE_EXEC: u32 = 0o100755;
const MODE_LINK: u32 = 0o120000;

/// Write `workspace` as a tree into the store at `git_dir` and return the tree's id. The
/// caller holds the store's lock.
pub(crate) fn snapshot(git_dir: &Path, workspace: &Path) -> Result<Oid> {
    let pool = pool()?;
    let cache_path = git_dir.join("scan-cache");
    let writer = CacheWriter::create(&cache_path)
        .map_err(|e| Error::io(format!("writing {}", cache_path.display()), e))?;
    let scan = Scan {
        workspace,
        git_dir,
        started_ns: now_ns(),
        old: CacheReader::open(&cache_path),
        new: Mutex::new(writer),
        repos: Mutex::new(Vec::new()),
        ignore_rules: IgnoreRules::of(workspace),
    };
    let root = pool
        .install(|| scan.dir(b"", None))
        .and_then(|tree| match tree {
            Some(tree) => Ok(tree),
            None => scan.write_tree(&[]), // nothing to record: the empty tree
        });
    let Scan { new, .. } = scan;
    let writer = new.into_inner().unwrap_or_else(|p| p.into_inner());
    let tree = match root {
        Ok(tree) => Oid::from_bytes(&tree).map_err(git_err("reading a tree id"))?,
        Err(e) => {
            writer.abandon();
            return Err(e);
        }
    };
    writer
        .finish()
        .map_err(|e| Error::io(format!("writing {}", cache_path.display()), e))?;
    Ok(tree)
}

/// The threads scans run on (a few more than cores: much of a scan waits on the file system).
fn pool() -> Result<&'static rayon::ThreadPool> {
    static POOL: OnceLock<std::result::Result<rayon::ThreadPool, String>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads((cores + 1).clamp(2, 8))
            .thread_name(|i| format!("stn-scan-{i}"))
            // A directory is a recursion level: room for the deepest path the OS allows.
            .stack_size(32 << 20)
            .build()
            .map_err(|e| e.to_string())
    });
    pool.as_ref()
        .map_err(|e| Error::backend("workspace", format!("cannot start the scan threads: {e}")))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A file as found by a scan.
enum Found {
    /// The cache's entry at this index is still right.
    Cached(usize),
    New(Entry),
}

/// A directory entry worth recording: a directory, a file or a symlink.
struct Item {
    name: Vec<u8>,
    is_dir: bool,
    entry: fs::DirEntry,
}

struct Scan<'a> {
    workspace: &'a Path,
    git_dir: &'a Path,
    started_ns: i64,
    old: Option<CacheReader>,
    new: Mutex<CacheWriter>,
    /// Store handles for writing objects (a `Repository` is not shared between threads).
    repos: Mutex<Vec<Repository>>,
    ignore_rules: IgnoreRules,
}

impl Scan<'_> {
    fn abs(&self, rel: &[u8]) -> PathBuf {
        self.workspace.join(OsStr::from_bytes(rel))
    }

    /// The tree of directory `rel`, or `None` when it has nothing to record (empty, all
    /// ignored, a nested repository, or gone).
    fn dir(&self, rel: &[u8], above: Option<&Arc<DirRules>>) -> Result<Option<[u8; 20]>> {
        let abs = self.abs(rel);
        let listing = match fs::read_dir(&abs) {
            Ok(listing) => listing,
            Err(e)
                if !rel.is_empty()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
            {
                return Ok(None); // gone, or replaced by a file, since it was listed
            }
            Err(e) => return Err(Error::io(format!("reading {}", abs.display()), e)),
        };
        let mut items = Vec::new();
        let mut has_gitignore = false;
        for entry in listing {
            let entry = entry.map_err(|e| Error::io(format!("reading {}", abs.display()), e))?;
            let name = entry.file_name().into_vec();
            if name == b".git" {
                if rel.is_empty() {
                    continue;
                }
                // A nested repository: git leaves it out of the parent's tree.
                return Ok(None);
            }
            let Ok(file_type) = entry.file_type() else {
                continue; // gone since it was listed
            };
            if !(file_type.is_dir() || file_type.is_file() || file_type.is_symlink()) {
                continue; // sockets, fifos, devices: not content
            }
            has_gitignore |= file_type.is_file() && name == b".gitignore";
            let is_dir = file_type.is_dir();
            items.push(Item {
                name,
                is_dir,
                entry,
            });
        }
        let ignores = if has_gitignore {
            Some(Arc::new(DirRules::read(rel, &abs, above)))
        } else {
            above.cloned()
        };
        let child = |name: &[u8]| child_path(rel, name);
        if ignores.is_some() || !self.ignore_rules.is_empty() {
            items.retain(|it| {
                !self
                    .ignore_rules
                    .ignored(ignores.as_ref(), &child(&it.name), it.is_dir)
            });
        }
        let (old_tree, old_entries) = match self.old.as_ref().and_then(|c| c.block(rel)) {
            Some(block) => (Some(block.tree), block.entries),
            None => (None, Vec::new()),
        };
        let find = |name: &[u8], dir: bool| {
            old_entries
                .binary_search_by(|e| name_order(&e.name, e.mode == MODE_TREE, name, dir))
                .ok()
        };
        let (dirs, files): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|it| it.is_dir);
        let (dirs, files) = rayon::join(
            || {
                dirs.par_iter()
                    .map(|it| {
                        let tree = self.dir(&child(&it.name), ignores.as_ref())?;
                        Ok(tree.map(|oid| Entry {
                            name: it.name.clone(),
                            mode: MODE_TREE,
                            oid,
                            stat: None,
                        }))
                    })
                    .collect::<Result<Vec<_>>>()
            },
            || {
                files
                    .par_iter()
                    .with_min_len(32)
                    .map(|it| {
                        let old = find(&it.name, false).map(|i| (i, &old_entries[i]));
                        self.file(rel, it, old)
                    })
                    .collect::<Result<Vec<_>>>()
            },
        );
        let (dirs, files) = (dirs?, files?);
        let unchanged = old_tree.filter(|_| {
            let hits = files
                .iter()
                .flatten()
                .all(|f| matches!(f, Found::Cached(_)));
            let same_dirs = dirs
                .iter()
                .flatten()
                .all(|d| find(&d.name, true).is_some_and(|i| old_entries[i].oid == d.oid));
            let count = dirs.iter().flatten().count() + files.iter().flatten().count();
            hits && same_dirs && count == old_entries.len()
        });
        let mut old_entries: Vec<Option<Entry>> = old_entries.into_iter().map(Some).collect();
        let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
        for found in files.into_iter().flatten() {
            entries.extend(match found {
                Found::Cached(i) => old_entries[i].take(),
                Found::New(entry) => Some(entry),
            });
        }
        entries.extend(dirs.into_iter().flatten());
        if entries.is_empty() {
            return Ok(None);
        }
        entries
            .sort_by(|a, b| name_order(&a.name, a.mode == MODE_TREE, &b.name, b.mode == MODE_TREE));
        let tree = match unchanged {
            Some(tree) => tree,
            None => self.write_tree(&entries)?,
        };
        let block = Block { tree, entries };
        self.new
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(rel, &block)
            .map_err(|e| Error::io("writing the scan cache", e))?;
        Ok(Some(tree))
    }

    /// A file's entry: the cached one when its stat data is unchanged and was verified, else
    /// read and written to the store. `None` when it is gone or no longer a file.
    fn file(
        &self,
        dir: &[u8],
        it: &Item,
        cached: Option<(usize, &Entry)>,
    ) -> Result<Option<Found>> {
        let meta = match it.entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("reading {}", it.entry.path().display()),
                    e,
                ));
            }
        };
        let mode = if meta.file_type().is_symlink() {
            MODE_LINK
        } else if meta.is_file() {
            if meta.mode() & 0o100 != 0 {
                MODE_EXEC
            } else {
                MODE_FILE
            }
        } else {
            return Ok(None); // replaced by a directory or a special file since it was listed
        };
        let stat = Stat {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
        };
        if let Some((index, old)) = cached
            && old.mode == mode
            && old.stat == Some((stat, true))
        {
            return Ok(Some(Found::Cached(index)));
        }
        let abs = self.abs(&child_path(dir, &it.name));
        let Some(oid) = self.write_blob(&abs, mode == MODE_LINK)? else {
            return Ok(None);
        };
        let verified = stat.ctime_ns.saturating_add(VERIFY_MARGIN_NS) < self.started_ns;
        Ok(Some(Found::New(Entry {
            name: it.name.clone(),
            mode,
            oid,
            stat: Some((stat, verified)),
        })))
    }

    /// Write a file's bytes (or a symlink's target) as a blob; `None` when it is gone.
    fn write_blob(&self, abs: &Path, link: bool) -> Result<Option<[u8; 20]>> {
        let io = |e| Error::io(format!("reading {}", abs.display()), e);
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        if link {
            let target = match fs::read_link(abs) {
                Ok(t) => t,
                Err(e) if gone(&e) => return Ok(None),
                Err(e) => return Err(io(e)),
            };
            let bytes = target.into_os_string().into_vec();
            return self
                .with_odb(|odb| odb.write(ObjectType::Blob, &bytes))
                .map(Some);
        }
        // Never follow a symlink swapped in, never block on a fifo swapped in.
        let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
        let mut file = match File::options()
            .read(true)
            .custom_flags(flags.bits())
            .open(abs)
        {
            Ok(f) => f,
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Ok(None);
        }
        if meta.len() <= READ_WHOLE {
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut bytes).map_err(io)?;
            return self
                .with_odb(|odb| odb.write(ObjectType::Blob, &bytes))
                .map(Some);
        }
        let len = meta.len();
        let oid = self.with_odb(|odb| {
            let mut writer = odb.writer(len as usize, ObjectType::Blob)?;
            let copied = std::io::copy(&mut (&mut file).take(len), &mut writer)
                .map_err(|e| git2::Error::from_str(&e.to_string()))?;
            if copied != len {
                return Err(git2::Error::from_str(
                    "the file shrank while it was being recorded",
                ));
            }
            writer.finalize()
        })?;
        Ok(Some(oid))
    }

    fn write_tree(&self, entries: &[Entry]) -> Result<[u8; 20]> {
        let bytes = tree_bytes(entries);
        self.with_odb(|odb| odb.write(ObjectType::Tree, &bytes))
    }

    /// Run `f` with an object database handle of this thread's own.
    fn with_odb(
        &self,
        f: impl FnOnce(&git2::Odb<'_>) -> std::result::Result<Oid, git2::Error>,
    ) -> Result<[u8; 20]> {
        let taken = self.repos.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let repo = match taken {
            Some(repo) => repo,
            None => Repository::open_bare(self.git_dir).map_err(git_err("opening the store"))?,
        };
        let written = repo
            .odb()
            .and_then(|odb| f(&odb))
            .map_err(git_err("writing to the change-tracking store"));
        self.repos
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(repo);
        let oid = written?;
        let mut raw = [0u8; 20];
        raw.copy_from_slice(oid.as_bytes());
        Ok(raw)
    }
}

/// A git tree object's content: `<mode> <name>\0<id>` per entry, in tree order.
pub(crate) fn tree_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * 48);
    for e in entries {
        bytes.extend_from_slice(format!("{:o} ", e.mode).as_bytes());
        bytes.extend_from_slice(&e.name);
        bytes.push(0);
        bytes.extend_from_slice(&e.oid);
    }
    bytes
}

fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    path.extend_from_slice(dir);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// Git's order of tree entries: by name, a directory's name compared as if it ended in `/`.
fn name_order(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        let next =
            |name: &[u8], dir: bool| name.get(n).copied().unwrap_or(if dir { b'/' } else { 0 });
        next(a, a_dir).cmp(&next(b, b_dir))
    })
}
