//! The private object store that change tracking writes workspace states into: a bare git
//! repository under Station's data dir (one per workspace path), whose work tree is set to the
//! workspace only in memory. It has its own stat cache (`scan-cache`, see `scan`) and its own
//! config; the workspace's own `.git` (index, HEAD, refs, stash, config, objects) is never
//! opened for writing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{
    Delta, DiffFindOptions, DiffFormat, DiffOptions, Oid, Patch, Repository, RepositoryInitOptions,
};

use crate::error::{Error, Result};
use crate::model::{FileAction, FileChange};

/// Attributes that make blobs exactly the bytes on disk (no end-of-line or filter conversion),
/// whatever the workspace's `.gitattributes` say; checked before them (`info/attributes`).
const RAW_ATTRIBUTES: &str = "* -text -filter -ident\n";

/// One workspace's object store, locked for the lifetime of this value.
pub(crate) struct ShadowStore {
    repo: Repository,
    workspace: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for ShadowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowStore")
            .field("git_dir", &self.repo.path())
            .field("workspace", &self.workspace)
            .finish()
    }
}

pub(crate) fn git_err(what: &str) -> impl Fn(git2::Error) -> Error + '_ {
    move |e| Error::backend("workspace", format!("{what}: {}", e.message()))
}

impl ShadowStore {
    /// Open (creating it if needed) the store at `git_dir` for `workspace`, and take its lock
    /// (blocking) so two tasks on one workspace do not write its scan cache at once.
    pub(crate) fn open(git_dir: &Path, workspace: &Path) -> Result<ShadowStore> {
        std::fs::create_dir_all(git_dir)
            .map_err(|e| Error::io(format!("creating {}", git_dir.display()), e))?;
        let lock_path = git_dir.join("stn.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        let repo = match Repository::open_bare(git_dir) {
            Ok(repo) => repo,
            Err(_) => {
                let mut init = RepositoryInitOptions::new();
                init.bare(true).external_template(false);
                let repo = Repository::init_opts(git_dir, &init)
                    .map_err(git_err("creating the change-tracking store"))?;
                let mut config = repo.config().map_err(git_err("reading store config"))?;
                for (key, value) in [("core.autocrlf", false), ("core.filemode", true)] {
                    config
                        .set_bool(key, value)
                        .map_err(git_err("writing store config"))?;
                }
                config
                    .set_bool("core.symlinks", true)
                    .map_err(git_err("writing store config"))?;
                // No gc: checkpoints are unreferenced trees and must survive.
                config
                    .set_i32("gc.auto", 0)
                    .map_err(git_err("writing store config"))?;
                let info = git_dir.join("info");
                std::fs::create_dir_all(&info)
                    .map_err(|e| Error::io(format!("creating {}", info.display()), e))?;
                std::fs::write(info.join("attributes"), RAW_ATTRIBUTES)
                    .map_err(|e| Error::io("writing the store's attributes", e))?;
                std::fs::write(
                    git_dir.join("workspace"),
                    workspace.as_os_str().as_encoded_bytes(),
                )
                .map_err(|e| Error::io("recording the store's workspace", e))?;
                repo
            }
        };
        // Stores made before the scan cache kept a libgit2 index as theirs: no longer read.
        let _ = std::fs::remove_file(git_dir.join("index"));
        repo.set_workdir(workspace, false)
            .map_err(git_err("pointing the store at the workspace"))?;
        Ok(ShadowStore {
            repo,
            workspace: workspace.to_path_buf(),
            _lock: lock,
        })
    }

    #[cfg(test)]
    pub(crate) fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Write the workspace as it is now (files and symlinks, ignored ones left out) as a
    /// tree; files whose stat data did not change since the last snapshot are not read.
    pub(crate) fn snapshot(&self) -> Result<Oid> {
        super::scan::snapshot(self.repo.path(), &self.workspace)
    }

    /// The files that differ from `before` to `after`, with renames and binary files found.
    pub(crate) fn changes(&self, before: Oid, after: Oid) -> Result<Vec<FileChange>> {
        files_of(&self.diff(before, after)?)
    }

    /// Write the patch from `before` to `after` to `out` (git format: renames, modes, binary
    /// files as git binary patches), one file at a time. Returns the bytes written.
    pub(crate) fn write_patch(&self, before: Oid, after: Oid, out: &mut dyn Write) -> Result<u64> {
        print_patch(&self.diff(before, after)?, out)
    }

    /// [`changes`](Self::changes) and [`write_patch`](Self::write_patch) from one diff.
    pub(crate) fn changes_and_patch(
        &self,
        before: Oid,
        after: Oid,
        out: &mut dyn Write,
    ) -> Result<(Vec<FileChange>, u64)> {
        let diff = self.diff(before, after)?;
        Ok((files_of(&diff)?, print_patch(&diff, out)?))
    }

    fn diff(&self, before: Oid, after: Oid) -> Result<git2::Diff<'_>> {
        let mut diff = self.tree_diff(before, after)?;
        let mut find = DiffFindOptions::new();
        find.renames(true).copies(false);
        diff.find_similar(Some(&mut find))
            .map_err(git_err("finding renames"))?;
        Ok(diff)
    }

    /// The diff of two recorded trees. libgit2 would read every tree of both to compare
    /// them; the paths that differ are found first by skipping equal subtrees, and the diff is
    /// limited to them.
    fn tree_diff(&self, before: Oid, after: Oid) -> Result<git2::Diff<'_>> {
        let tree = |id| {
            self.repo
                .find_tree(id)
                .map_err(git_err("reading a recorded workspace tree"))
        };
        let (old, new) = (tree(before)?, tree(after)?);
        let paths = self.differing_paths(before, after)?;
        let mut opts = DiffOptions::new();
        opts.include_typechange(true).show_binary(true);
        for path in &paths {
            opts.pathspec(std::ffi::OsStr::from_bytes(path))
                .disable_pathspec_match(true);
        }
        // No paths would mean no pathspec, that is every path: compare two empty trees.
        let (old, new) = match paths.is_empty() {
            true => (None, None),
            false => (Some(&old), Some(&new)),
        };
        self.repo
            .diff_tree_to_tree(old, new, Some(&mut opts))
            .map_err(git_err("comparing workspace trees"))
    }

    /// The file paths that differ between two trees; equal subtrees are not read. A loop
    /// over a stack of subtree pairs, not recursion: a workspace may be as deep as paths go.
    fn differing_paths(&self, before: Oid, after: Oid) -> Result<Vec<Vec<u8>>> {
        type Side = Option<(Oid, i32)>;
        let tree_mode = i32::from(git2::FileMode::Tree);
        let entries = |id: Side| -> Result<BTreeMap<Vec<u8>, (Oid, i32)>> {
            let Some((id, _)) = id.filter(|&(_, mode)| mode == tree_mode) else {
                return Ok(BTreeMap::new());
            };
            let tree = self
                .repo
                .find_tree(id)
                .map_err(git_err("reading a recorded workspace tree"))?;
            Ok(tree
                .iter()
                .map(|e| (e.name_bytes().to_vec(), (e.id(), e.filemode())))
                .collect())
        };
        let mut out = Vec::new();
        let mut pending: Vec<(Vec<u8>, Side, Side)> = vec![(
            Vec::new(),
            Some((before, tree_mode)),
            Some((after, tree_mode)),
        )];
        while let Some((prefix, old, new)) = pending.pop() {
            let (old, new) = (entries(old)?, entries(new)?);
            let names: BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).collect();
            for name in names {
                let (a, b) = (old.get(name).copied(), new.get(name).copied());
                if a == b {
                    continue;
                }
                let mut path = prefix.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name);
                let is_tree = |side: Side| side.is_some_and(|(_, mode)| mode == tree_mode);
                let is_blob = |side: Side| side.is_some() && !is_tree(side);
                if is_blob(a) || is_blob(b) {
                    out.push(path.clone());
                }
                if is_tree(a) || is_tree(b) {
                    pending.push((path, a, b));
                }
            }
        }
        Ok(out)
    }

    /// Make the workspace's files those of `target`, starting from `current` (the tree just
    /// written of the workspace as it is): files only in `current` are removed, the others
    /// written with their recorded mode. Ignored files are in neither tree and stay as they
    /// are. Returns the paths written or removed.
    pub(crate) fn restore(&self, current: Oid, target: Oid) -> Result<Vec<String>> {
        let diff = self.tree_diff(current, target)?;
        let mut touched = Vec::new();
        for delta in diff.deltas() {
            let (old, new) = (delta.old_file(), delta.new_file());
            if delta.status() != Delta::Added
                && let Some(rel) = old.path()
            {
                remove_path(&self.workspace, rel)?;
            }
            if delta.status() != Delta::Deleted
                && let Some(rel) = new.path()
            {
                self.write_blob(rel, new.id(), new.mode())?;
            }
            if let Some(rel) = new.path().or(old.path()) {
                touched.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(touched)
    }

    fn write_blob(&self, rel: &Path, id: Oid, mode: git2::FileMode) -> Result<()> {
        let path = self.workspace.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        let blob = self
            .repo
            .find_blob(id)
            .map_err(git_err("reading a recorded file"))?;
        let io = |e| Error::io(format!("restoring {}", path.display()), e);
        if path.symlink_metadata().is_ok() {
            remove_path(&self.workspace, rel)?;
        }
        if mode == git2::FileMode::Link {
            use std::os::unix::ffi::OsStrExt;
            let target = std::ffi::OsStr::from_bytes(blob.content());
            std::os::unix::fs::symlink(target, &path).map_err(io)?;
            return Ok(());
        }
        std::fs::write(&path, blob.content()).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        let bits = if mode == git2::FileMode::BlobExecutable {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).map_err(io)
    }
}

/// The files `diff` changes, sorted.
fn files_of(diff: &git2::Diff<'_>) -> Result<Vec<FileChange>> {
    let mut out = Vec::with_capacity(diff.deltas().len());
    for idx in 0..diff.deltas().len() {
        let patch = Patch::from_diff(diff, idx).map_err(git_err("diffing a file"))?;
        let Some(patch) = patch else { continue };
        let delta = patch.delta();
        let (old, new) = (delta.old_file(), delta.new_file());
        let path_of = |f: &git2::DiffFile<'_>| {
            f.path()
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default()
        };
        let (action, from) = match delta.status() {
            Delta::Added | Delta::Copied | Delta::Untracked => (FileAction::Created, None),
            Delta::Deleted => (FileAction::Deleted, None),
            Delta::Renamed => (FileAction::Renamed, Some(path_of(&old))),
            _ => (FileAction::Modified, None),
        };
        let path = match action {
            FileAction::Deleted => path_of(&old),
            _ => path_of(&new),
        };
        let binary = delta.flags().is_binary();
        let (_, added, removed) = if binary {
            (0, 0, 0)
        } else {
            patch.line_stats().map_err(git_err("counting lines"))?
        };
        let (old_mode, new_mode) = modes(action, old.mode(), new.mode());
        out.push(FileChange {
            path,
            action,
            lines_added: added as u64,
            lines_removed: removed as u64,
            from,
            binary,
            old_mode,
            new_mode,
        });
    }
    out.sort();
    Ok(out)
}

/// Print `diff` as a git patch to `out`; the bytes written.
fn print_patch(diff: &git2::Diff<'_>, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    let mut failure = None;
    let printed = diff.print(DiffFormat::Patch, |_, _, line| {
        let origin = line.origin();
        let result = match origin {
            '+' | '-' | ' ' => out
                .write_all(&[origin as u8])
                .and_then(|()| out.write_all(line.content())),
            _ => out.write_all(line.content()),
        };
        match result {
            Ok(()) => {
                written +=
                    line.content().len() as u64 + u64::from(matches!(origin, '+' | '-' | ' '));
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    });
    if let Some(e) = failure {
        return Err(Error::io("writing the task's patch", e));
    }
    printed.map_err(git_err("writing the task's patch"))?;
    Ok(written)
}

/// Remove a file (or symlink) of the workspace, then its parent directories that became empty.
fn remove_path(workspace: &Path, rel: &Path) -> Result<()> {
    let path = workspace.join(rel);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| *d != workspace && d.starts_with(workspace)) {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// Modes worth reporting: both when they differ, else the one mode of a file that is not a
/// plain file (executable, symlink).
fn modes(
    action: FileAction,
    old: git2::FileMode,
    new: git2::FileMode,
) -> (Option<String>, Option<String>) {
    let text = |m: git2::FileMode| format!("{:06o}", u32::from(m));
    let plain = |m: git2::FileMode| m == git2::FileMode::Blob;
    match action {
        FileAction::Created => (None, (!plain(new)).then(|| text(new))),
        FileAction::Deleted => ((!plain(old)).then(|| text(old)), None),
        _ if old != new => (Some(text(old)), Some(text(new))),
        _ if !plain(new) => (None, Some(text(new))),
        _ => (None, None),
    }
}
