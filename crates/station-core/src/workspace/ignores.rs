//! Which files a workspace scan leaves out, as git decides it: `.gitignore` files (the closest
//! one with a say wins, negation and anchoring as in git), then the workspace repository's
//! `info/exclude` (the main repository's for a linked worktree), then the user's global excludes file (`core.excludesFile`, else
//! `~/.config/git/ignore`). Matching is the `ignore` crate's (ripgrep's gitignore matcher).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The `.gitignore` rules of one directory, and those of the directories above it.
pub(crate) struct DirRules {
    /// The directory, relative to the workspace (empty for the root).
    dir: Vec<u8>,
    rules: Gitignore,
    parent: Option<Arc<DirRules>>,
}

impl DirRules {
    /// Read `<abs>/.gitignore` of directory `rel`, below the rules `above`.
    pub(crate) fn read(rel: &[u8], abs: &Path, above: Option<&Arc<DirRules>>) -> DirRules {
        let mut builder = GitignoreBuilder::new(abs);
        if let Some(e) = builder.add(abs.join(".gitignore")) {
            tracing::debug!("ignore rules in {}/.gitignore: {e}", abs.display());
        }
        DirRules {
            dir: rel.to_vec(),
            rules: builder.build().unwrap_or_else(|_| Gitignore::empty()),
            parent: above.cloned(),
        }
    }
}

/// The workspace repository's common git dir: `.git`, or for a linked worktree (`.git` is a
/// file saying `gitdir: …`) the main repository's, where git reads `info/exclude` from.
fn git_common_dir(workspace: &Path) -> PathBuf {
    let dot_git = workspace.join(".git");
    let Ok(text) = std::fs::read_to_string(&dot_git) else {
        return dot_git;
    };
    let Some(git_dir) = text.trim_end().strip_prefix("gitdir: ") else {
        return dot_git;
    };
    let git_dir = workspace.join(git_dir);
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(common) => git_dir.join(common.trim_end()),
        Err(_) => git_dir,
    }
}

/// The rules below every `.gitignore`: `info/exclude`, then the global excludes file.
pub(crate) struct IgnoreRules {
    base: Vec<Gitignore>,
}

impl IgnoreRules {
    pub(crate) fn of(workspace: &Path) -> IgnoreRules {
        let mut files = vec![git_common_dir(workspace).join("info/exclude")];
        files.extend(ignore::gitignore::gitconfig_excludes_path());
        let base = files
            .into_iter()
            .filter(|f| f.is_file())
            .filter_map(|f| {
                let mut builder = GitignoreBuilder::new(workspace);
                if let Some(e) = builder.add(&f) {
                    tracing::debug!("ignore rules in {}: {e}", f.display());
                }
                builder.build().ok()
            })
            .collect();
        IgnoreRules { base }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Whether `path` (relative to the workspace) is ignored, given the `.gitignore` rules
    /// of its directory and those above.
    pub(crate) fn ignored(
        &self,
        mut dir_rules: Option<&Arc<DirRules>>,
        path: &[u8],
        is_dir: bool,
    ) -> bool {
        let decide = |m: Match<_>| match m {
            Match::Ignore(_) => Some(true),
            Match::Whitelist(_) => Some(false),
            Match::None => None,
        };
        while let Some(r) = dir_rules {
            let below = if r.dir.is_empty() {
                path
            } else {
                &path[r.dir.len() + 1..]
            };
            if let Some(yes) = decide(r.rules.matched(Path::new(OsStr::from_bytes(below)), is_dir))
            {
                return yes;
            }
            dir_rules = r.parent.as_ref();
        }
        let path = Path::new(OsStr::from_bytes(path));
        self.base
            .iter()
            .find_map(|rules| decide(rules.matched(path, is_dir)))
            .unwrap_or(false)
    }
}
