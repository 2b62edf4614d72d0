//! Workspace names: what the client sends (always relative) and where the worker puts them
//! (always inside its base directory).

use std::path::{Component, Path, PathBuf};

/// The relative workspace name the client sends for a local path.
///
/// A relative path is kept as it is. For an absolute path only its last segment is sent: the
/// path means nothing on the worker's machine, and sending it whole is the upstream bug that
/// nests `<base>/workspaces/station-coding/ws_1` inside the worker's base.
pub fn workspace_name_for(path: Option<&Path>, fallback: &str) -> String {
    let Some(path) = path else {
        return fallback.to_string();
    };
    if path.is_relative()
        && let Some(name) = relative_name(path)
    {
        return name;
    }
    path.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && *n != "..")
        .map(str::to_string)
        .unwrap_or_else(|| fallback.to_string())
}

/// `path` as `a/b/c` when it has only normal components.
fn relative_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Where the worker puts workspace `name`: always a directory inside `base`.
///
/// Rejects names with `..`, empty names and names that pass through a symlink. An absolute name
/// (the Go Station sends its local absolute path) is taken relative to `base` when it is inside
/// it (a path the worker itself reported), else by its last segment, so it can never escape.
pub fn resolve_workspace(base: &Path, name: &str) -> Result<PathBuf, String> {
    if name.trim().is_empty() {
        return Err("workspace.name is empty".into());
    }
    if name.contains('\0') {
        return Err("workspace.name contains a NUL byte".into());
    }
    let given = Path::new(name);
    let relative: PathBuf = if given.is_absolute() {
        match given.strip_prefix(base) {
            Ok(inside) if inside.as_os_str().is_empty() => {
                return Err(format!(
                    "workspace.name `{name}` is the workspace base itself"
                ));
            }
            Ok(inside) => inside.to_path_buf(),
            Err(_) => match given.file_name() {
                Some(last) => PathBuf::from(last),
                None => return Err(format!("workspace.name `{name}` has no last segment")),
            },
        }
    } else {
        given.to_path_buf()
    };
    let mut path = base.to_path_buf();
    for c in relative.components() {
        match c {
            Component::Normal(s) => {
                path.push(s);
                if path
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Err(format!(
                        "workspace.name `{name}` passes through a symlink ({}); refusing to follow it",
                        path.display()
                    ));
                }
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "workspace.name `{name}` contains `..`; names must stay inside the workspace base"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("workspace.name `{name}` is not a relative name"));
            }
        }
    }
    if path == base {
        return Err(format!(
            "workspace.name `{name}` names the workspace base itself"
        ));
    }
    Ok(path)
}

/// After creating it: the canonical directory must still be inside the canonical base.
pub fn check_inside(base: &Path, dir: &Path) -> Result<PathBuf, String> {
    let base = base
        .canonicalize()
        .map_err(|e| format!("workspace base {}: {e}", base.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("workspace {}: {e}", dir.display()))?;
    if dir.starts_with(&base) && dir != base {
        Ok(dir)
    } else {
        Err(format!(
            "workspace {} is outside the workspace base {}",
            dir.display(),
            base.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sends_relative_names() {
        assert_eq!(workspace_name_for(None, "stn_1"), "stn_1");
        assert_eq!(workspace_name_for(Some(Path::new("proj/a")), "x"), "proj/a");
        assert_eq!(workspace_name_for(Some(Path::new("./proj")), "x"), "proj");
        assert_eq!(
            workspace_name_for(Some(Path::new("/workspaces/station-coding/ws_123")), "x"),
            "ws_123"
        );
        assert_eq!(workspace_name_for(Some(Path::new("../up")), "x"), "up");
        assert_eq!(workspace_name_for(Some(Path::new("/")), "x"), "x");
    }

    #[test]
    fn worker_keeps_workspaces_inside_the_base() {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        assert_eq!(resolve_workspace(b, "ws_1").unwrap(), b.join("ws_1"));
        assert_eq!(
            resolve_workspace(b, "team/ws_1").unwrap(),
            b.join("team/ws_1")
        );
        // The Go Station's absolute local path, and the worker's own reported path.
        assert_eq!(
            resolve_workspace(b, "/workspaces/station-coding/ws_1").unwrap(),
            b.join("ws_1")
        );
        let own = b.join("ws_2");
        assert_eq!(resolve_workspace(b, own.to_str().unwrap()).unwrap(), own);
        for bad in ["", "..", "../x", "a/../../x", "./", "/"] {
            assert!(
                resolve_workspace(b, bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn symlinks_are_not_followed() {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), base.path().join("link")).unwrap();
        let err = resolve_workspace(base.path(), "link/ws").unwrap_err();
        assert!(err.contains("symlink"), "{err}");
        let err = resolve_workspace(base.path(), "link").unwrap_err();
        assert!(err.contains("symlink"), "{err}");
    }
}
