//! `coding.policy` for `opencode run`: rendered into OpenCode's permission config (passed in
//! `OPENCODE_PERMISSION`), which OpenCode enforces itself. `ask` becomes `deny` here, because
//! `opencode run --auto` would approve every ask and nobody can answer one mid-run.

use std::path::Path;

use serde_json::{Map, Value, json};
use station_core::policy::{PolicyConfig, Rules, Verdict};

/// The environment variable OpenCode reads its permission config from.
pub(crate) const PERMISSION_ENV: &str = "OPENCODE_PERMISSION";

fn word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allow",
        Verdict::Deny | Verdict::Ask => "deny",
    }
}

/// Patterns in the order OpenCode needs: the fallback first, then allows, then denies (the
/// last matching pattern decides), so a deny always wins as in Station's policy.
fn patterns(rules: &Rules, unmatched: Verdict, prefix: Option<&str>) -> Value {
    let mut map = Map::new();
    map.insert("*".into(), json!(word(unmatched)));
    let forms = |p: &str| -> Vec<String> {
        match prefix {
            Some(dir) if !dir.is_empty() => vec![format!("{dir}/{p}")],
            _ => vec![p.to_string()],
        }
    };
    for p in &rules.allow {
        for form in forms(p.as_str()) {
            map.insert(form, json!("allow"));
        }
    }
    for p in &rules.deny {
        for form in forms(p.as_str()) {
            map.shift_remove(&form);
            map.insert(form, json!("deny"));
        }
    }
    Value::Object(map)
}

/// OpenCode's `permission` config for `policy`.
pub(crate) fn render(policy: &PolicyConfig, workspace: &Path) -> Value {
    let prefix = worktree_prefix(workspace);
    json!({
        "edit": patterns(&policy.edit, policy.unmatched, Some(&prefix)),
        "bash": patterns(&policy.bash, policy.unmatched, None),
        "webfetch": word(policy.network),
        "websearch": word(policy.network),
        "external_directory": word(policy.outside_workspace),
    })
}

/// OpenCode matches edit patterns against the path relative to its worktree: the git
/// repository around the workspace, or `/` outside one. So the workspace-relative patterns of
/// the policy get the workspace's own path relative to that worktree in front.
fn worktree_prefix(workspace: &Path) -> String {
    let worktree = workspace
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(Path::new("/"));
    workspace
        .strip_prefix(worktree)
        .map(|rel| rel.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_patterns_are_rendered_relative_to_opencodes_worktree() {
        let policy: PolicyConfig =
            serde_saphyr::from_str("edit: { deny: [\"secrets/**\"] }\nbash: { allow: [\"*\"], deny: [\"rm -rf *\"] }\nunmatched: ask\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("ws");
        std::fs::create_dir_all(&plain).unwrap();
        let rendered = render(&policy, &plain);
        let rel = plain.to_string_lossy().trim_start_matches('/').to_string();
        assert_eq!(
            rendered["edit"],
            json!({"*": "deny", format!("{rel}/secrets/**"): "deny"})
        );
        assert_eq!(rendered["bash"], json!({"*": "allow", "rm -rf *": "deny"}));
        assert_eq!(rendered["external_directory"], "deny");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("sub")).unwrap();
        assert_eq!(render(&policy, &repo)["edit"]["secrets/**"], "deny");
        assert_eq!(
            render(&policy, &repo.join("sub"))["edit"]["sub/secrets/**"],
            "deny"
        );
    }
}
