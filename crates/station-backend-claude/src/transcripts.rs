//! Claude Code's own session store: `<config dir>/projects/<project dir>/<session id>.jsonl`.
//!
//! The config dir is `$CLAUDE_CONFIG_DIR`, else `~/.claude`. The project dir is the session's
//! working directory with every character other than an ASCII letter or digit replaced by `-`
//! (`/tmp/a.b` → `-tmp-a-b`). Each transcript line of a conversation turn carries `cwd`, which is
//! what [`TranscriptInfo::cwd`] reads, so a session's directory is known without decoding the
//! lossy dir name. Claude resumes a session only from that directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;
use station_core::BackendSession;
use station_core::model::default_title;

/// Lines of a transcript read to find its directory and title.
const MAX_INFO_LINES: usize = 200;

/// Transcripts listed at most.
const MAX_LISTED: usize = 1000;

/// The Claude config dir for an environment (`CLAUDE_CONFIG_DIR`, else `$HOME/.claude`).
pub(crate) fn config_dir(lookup: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = lookup("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    lookup("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".claude"))
}

/// The project dir name Claude uses for a working directory.
pub(crate) fn project_dir_name(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Whether `id` has the shape of a Claude session id (a UUID).
pub(crate) fn is_session_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The transcript of session `id`: first where `cwd` would put it, else in any project dir.
pub(crate) fn find(config_dir: &Path, id: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    let projects = config_dir.join("projects");
    let file = format!("{id}.jsonl");
    if let Some(cwd) = cwd {
        let expected = projects.join(project_dir_name(cwd)).join(&file);
        if expected.is_file() {
            return Some(expected);
        }
    }
    std::fs::read_dir(&projects)
        .ok()?
        .flatten()
        .map(|e| e.path().join(&file))
        .find(|p| p.is_file())
}

/// What a transcript says about its session.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TranscriptInfo {
    /// The session's working directory.
    pub(crate) cwd: Option<PathBuf>,
    /// The first prompt, as a title.
    pub(crate) title: Option<String>,
}

/// Read the start of a transcript for its directory and first prompt.
pub(crate) fn read_info(path: &Path) -> std::io::Result<TranscriptInfo> {
    let file = std::fs::File::open(path)?;
    let mut info = TranscriptInfo::default();
    for line in BufReader::new(file).lines().take(MAX_INFO_LINES) {
        let Ok(value) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if info.cwd.is_none()
            && let Some(cwd) = value.get("cwd").and_then(Value::as_str)
        {
            info.cwd = Some(PathBuf::from(cwd));
        }
        if info.title.is_none() && value.get("type").and_then(Value::as_str) == Some("user") {
            info.title = prompt_text(&value)
                .map(|t| default_title(&t))
                .filter(|t| !t.is_empty());
        }
        if info.cwd.is_some() && info.title.is_some() {
            break;
        }
    }
    Ok(info)
}

/// The text of a user prompt line (not a tool result, not a command or meta message).
fn prompt_text(value: &Value) -> Option<String> {
    if value.get("isMeta").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let text = match value.get("message")?.get("content")? {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if texts.is_empty() {
                return None;
            }
            texts.join("\n")
        }
        _ => return None,
    };
    let text = text.trim();
    (!text.is_empty() && !text.starts_with('<')).then(|| text.to_string())
}

/// Every session in the store, newest first.
pub(crate) fn list(config_dir: &Path) -> std::io::Result<Vec<BackendSession>> {
    let projects = config_dir.join("projects");
    let dirs = match std::fs::read_dir(&projects) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf, String)> = Vec::new();
    for dir in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| is_session_id(s))
            else {
                continue;
            };
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let modified = file
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((modified, path.clone(), id.to_string()));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    Ok(found
        .into_iter()
        .take(MAX_LISTED)
        .map(|(modified, path, id)| {
            let info = read_info(&path).unwrap_or_default();
            BackendSession {
                id,
                title: info.title,
                workspace: info.cwd,
                updated_at: Some(DateTime::<Utc>::from(modified)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_dir_names_match_the_cli() {
        // Observed with claude 2.1.197.
        assert_eq!(
            project_dir_name(Path::new("/tmp/cc-probe/ws")),
            "-tmp-cc-probe-ws"
        );
        assert_eq!(
            project_dir_name(Path::new("/tmp/cc-probe/we.ird_di r+x")),
            "-tmp-cc-probe-we-ird-di-r-x"
        );
    }

    #[test]
    fn session_ids_are_uuids() {
        assert!(is_session_id("cf60bb80-4f29-4d4a-91eb-6ad6ca51eb65"));
        assert!(!is_session_id("ses_abc123"));
        assert!(!is_session_id("--help"));
        assert!(!is_session_id("cf60bb80x4f29-4d4a-91eb-6ad6ca51eb65"));
    }

    #[test]
    fn config_dir_prefers_claude_config_dir() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            config_dir(&env(&[("HOME", "/h"), ("CLAUDE_CONFIG_DIR", "/c")])),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            config_dir(&env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.claude"))
        );
        assert_eq!(config_dir(&env(&[])), None);
    }

    #[test]
    fn info_and_listing_read_the_store() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("projects").join("-w");
        std::fs::create_dir_all(&project).unwrap();
        let id = "cf60bb80-4f29-4d4a-91eb-6ad6ca51eb65";
        let lines = [
            r#"{"type":"queue-operation","sessionId":"x"}"#,
            r#"not json"#,
            r#"{"type":"user","isMeta":true,"message":{"role":"user","content":"<meta>"},"cwd":"/w"}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"create hello.py"}]},"cwd":"/w"}"#,
        ];
        std::fs::write(project.join(format!("{id}.jsonl")), lines.join("\n")).unwrap();
        std::fs::write(project.join("notes.txt"), "x").unwrap();
        let found = find(root.path(), id, None).unwrap();
        assert_eq!(
            read_info(&found).unwrap(),
            TranscriptInfo {
                cwd: Some(PathBuf::from("/w")),
                title: Some("create hello.py".into())
            }
        );
        assert_eq!(find(root.path(), id, Some(Path::new("/w"))), Some(found));
        assert_eq!(
            find(root.path(), "00000000-0000-0000-0000-000000000000", None),
            None
        );
        let listed = list(root.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, id);
        assert_eq!(listed[0].workspace.as_deref(), Some(Path::new("/w")));
    }
}
