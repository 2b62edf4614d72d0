//! Where the Gemini CLI keeps sessions: `<home>/.gemini/tmp/<project>/chats/session-<time>-<id8>.jsonl`
//! (first line `{"sessionId", ...}`), and the project's directory in
//! `<home>/.gemini/tmp/<project>/.project_root`.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

/// Whether `id` has the shape of a Gemini session id (a UUID).
pub(crate) fn is_session_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its chat file.
    pub(crate) file: PathBuf,
    /// The directory it was created in, when the CLI recorded it.
    pub(crate) project_root: Option<PathBuf>,
}

/// Session `id` under `gemini_dir` (the `.gemini` directory), if it exists.
pub(crate) fn find(gemini_dir: &Path, id: &str) -> Option<Found> {
    let short = id.get(..8)?;
    let projects = std::fs::read_dir(gemini_dir.join("tmp")).ok()?;
    for project in projects.flatten() {
        let chats = project.path().join("chats");
        let Ok(files) = std::fs::read_dir(&chats) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("session-") && name.ends_with(&format!("-{short}.jsonl"))) {
                continue;
            }
            if session_id_of(&file.path()).as_deref() == Some(id) {
                let root = std::fs::read_to_string(project.path().join(".project_root"))
                    .ok()
                    .map(|r| PathBuf::from(r.trim()))
                    .filter(|r| r.is_absolute());
                return Some(Found {
                    file: file.path(),
                    project_root: root,
                });
            }
        }
    }
    None
}

/// The `sessionId` of a chat file's first line.
fn session_id_of(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    let value: serde_json::Value = serde_json::from_str(&first).ok()?;
    value.get("sessionId")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_id_with_their_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let id = "71d41a6a-2711-4a9f-bf13-cb3a04b4bda1";
        let project = dir.join("tmp/ws");
        std::fs::create_dir_all(project.join("chats")).unwrap();
        std::fs::write(project.join(".project_root"), "/work/ws").unwrap();
        let file = project.join("chats/session-2026-11-30T18-28-71d41a6a.jsonl");
        std::fs::write(
            &file,
            format!("{{\"sessionId\":\"{id}\",\"kind\":\"main\"}}\n{{}}\n"),
        )
        .unwrap();
        assert_eq!(
            find(&dir, id),
            Some(Found {
                file,
                project_root: Some(PathBuf::from("/work/ws"))
            })
        );
        // Same first 8 characters, another session.
        assert_eq!(find(&dir, "71d41a6a-0000-4a9f-bf13-cb3a04b4bda1"), None);
        assert!(is_session_id(id));
        assert!(!is_session_id("ses_00000000000000000000000000"));
        assert!(!is_session_id("71d41a6a-2711-4a9f-bf13-cb3a04b4bdaz"));
    }
}
