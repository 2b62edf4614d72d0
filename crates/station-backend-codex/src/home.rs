//! What Codex keeps in `CODEX_HOME`, read without running it: session rollouts
//! (`sessions/YYYY/MM/DD/rollout-<time>-<thread id>.jsonl`, first line `session_meta` with the
//! `cwd`) and the top-level `model` / `model_provider` of `config.toml`.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Largest first line of a rollout read (it holds the base instructions, a few tens of KiB).
const MAX_META_LINE_BYTES: u64 = 4 * 1024 * 1024;

/// Whether `id` looks like a Codex thread id (a UUID). Codex treats anything else as a thread
/// *name* and, when none matches, silently starts a new thread.
pub(crate) fn is_thread_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The rollout file of thread `id` under `codex_home`, if any.
pub(crate) fn find_rollout(codex_home: &Path, id: &str) -> Option<PathBuf> {
    let suffix = format!("-{id}.jsonl");
    // sessions/YYYY/MM/DD/rollout-*.jsonl: three directory levels, newest first.
    let mut dirs = vec![codex_home.join("sessions")];
    for _ in 0..3 {
        dirs = dirs.iter().flat_map(|d| sorted_entries(d, true)).collect();
    }
    dirs.iter()
        .flat_map(|d| sorted_entries(d, false))
        .find(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rollout-") && n.ends_with(&suffix))
        })
}

/// Directories (or files) in `dir`, newest name first.
fn sorted_entries(dir: &Path, directories: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() == directories))
        .map(|e| e.path())
        .collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found
}

/// The working directory a rollout's thread was started in.
pub(crate) fn rollout_cwd(rollout: &Path) -> std::io::Result<Option<PathBuf>> {
    let file = std::fs::File::open(rollout)?;
    let mut line = String::new();
    std::io::BufReader::new(file.take(MAX_META_LINE_BYTES)).read_line(&mut line)?;
    let meta: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    Ok(meta
        .pointer("/payload/cwd")
        .and_then(Value::as_str)
        .map(PathBuf::from))
}

/// A top-level string setting of `config.toml` (`key = "value"` before the first table).
/// Enough for `model` and `model_provider`; anything fancier is left to Codex.
pub(crate) fn top_level_setting(config_toml: &str, key: &str) -> Option<String> {
    for line in config_toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            return None;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        let v = v.split(" #").next().unwrap_or_default().trim();
        let unquoted = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))?;
        return Some(unquoted.to_owned()).filter(|v| !v.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollouts_are_found_by_thread_id_with_their_cwd() {
        let home = tempfile::tempdir().unwrap();
        let id = "01a22cc2-ab4a-7da0-912d-eac0d0454725";
        assert!(
            is_thread_id(id) && !is_thread_id("ses_0000") && !is_thread_id(&id.replace('-', "x"))
        );
        let day = home.path().join("sessions/2026/11/30");
        std::fs::create_dir_all(&day).unwrap();
        let file = day.join(format!("rollout-2026-11-30T18-00-00-{id}.jsonl"));
        std::fs::write(
            &file,
            "{\"type\":\"session_meta\",\"payload\":{\"id\":\"x\",\"cwd\":\"/w/ws\"}}\n{\"type\":\"x\"}\n",
        )
        .unwrap();
        assert_eq!(find_rollout(home.path(), id), Some(file.clone()));
        assert_eq!(find_rollout(home.path(), &id.replace('a', "b")), None);
        assert_eq!(rollout_cwd(&file).unwrap(), Some(PathBuf::from("/w/ws")));
        assert_eq!(find_rollout(&home.path().join("none"), id), None);
    }

    #[test]
    fn top_level_settings_stop_at_the_first_table() {
        let toml = "# c\nmodel = \"gpt-5.5\" # pinned\nmodel_provider='fake'\n[model_providers.fake]\nname = \"x\"\n";
        assert_eq!(top_level_setting(toml, "model").as_deref(), Some("gpt-5.5"));
        assert_eq!(
            top_level_setting(toml, "model_provider").as_deref(),
            Some("fake")
        );
        assert_eq!(top_level_setting(toml, "name"), None);
        assert_eq!(top_level_setting("model = 3\n", "model"), None);
    }
}
