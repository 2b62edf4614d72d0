//! `opencode session list --format json`: parsing and finding a session by title.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use station_core::{BackendSession, Error, Result};

/// One entry of `opencode session list --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedSession {
    /// `ses_…`.
    pub id: String,
    /// Its title.
    #[serde(default)]
    pub title: Option<String>,
    /// Last update, in ms since the epoch.
    #[serde(default)]
    pub updated: Option<i64>,
    /// Creation, in ms since the epoch.
    #[serde(default)]
    pub created: Option<i64>,
    /// The project (`global` outside git). The CLI spells it `projectId`; the HTTP API `projectID`.
    #[serde(default, rename = "projectId", alias = "projectID")]
    pub project_id: Option<String>,
    /// The directory the session was created in.
    #[serde(default)]
    pub directory: Option<PathBuf>,
}

impl ListedSession {
    /// As a core [`BackendSession`].
    pub fn to_backend_session(&self) -> BackendSession {
        BackendSession {
            id: self.id.clone(),
            title: self.title.clone(),
            workspace: self.directory.clone(),
            updated_at: self
                .updated
                .and_then(DateTime::<Utc>::from_timestamp_millis),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.id,
            self.title.as_deref().unwrap_or("untitled")
        )
    }
}

/// Parse the command's output. No output at all means no sessions.
pub fn parse_session_list(output: &str) -> Result<Vec<ListedSession>> {
    let text = output.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| {
        let start: String = text.chars().take(120).collect();
        Error::Protocol(format!("`opencode session list --format json` printed something that is not a session list ({e}): {}", station_core::redact::redact(&start)))
    })
}

/// Find the session `query` names by title: a case-insensitive exact match first, then a unique
/// case-insensitive part. Several matches are narrowed to those made in `workspace`; if that
/// still leaves several, the query is ambiguous.
pub fn find_by_title<'a>(
    query: &str,
    sessions: &'a [ListedSession],
    workspace: Option<&Path>,
) -> Result<&'a ListedSession> {
    let here = |s: &ListedSession| {
        workspace.is_some_and(|ws| s.directory.as_deref().is_some_and(|d| same_dir(d, ws)))
    };
    station_core::title::find_by_title(
        query,
        sessions,
        |s| s.title.as_deref(),
        ListedSession::describe,
        Some(&here),
    )
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, title: &str, dir: &str) -> ListedSession {
        ListedSession {
            id: id.into(),
            title: Some(title.into()),
            updated: None,
            created: None,
            project_id: None,
            directory: Some(dir.into()),
        }
    }

    #[test]
    fn parses_the_captured_list() {
        let text = include_str!("../tests/fixtures/opencode-session-list.json");
        let list = parse_session_list(text).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[1].title.as_deref(), Some("e2e json"));
        assert_eq!(list[1].project_id.as_deref(), Some("global"));
        let b = list[0].to_backend_session();
        assert_eq!(
            b.updated_at.map(|t| t.timestamp_millis()),
            Some(1795479349723)
        );
        assert_eq!(parse_session_list("  \n").unwrap(), vec![]);
        let err = parse_session_list("Error: boom").unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
    }

    #[test]
    fn title_matching() {
        let list = vec![
            listed("ses_a", "Create hello.py", "/w/a"),
            listed("ses_b", "create hello.py and tests", "/w/b"),
            listed("ses_c", "Fix the parser", "/w/a"),
            listed("ses_d", "fix the parser", "/w/d"),
        ];
        assert_eq!(
            find_by_title("CREATE HELLO.PY", &list, None).unwrap().id,
            "ses_a",
            "exact beats partial"
        );
        assert_eq!(find_by_title("and tests", &list, None).unwrap().id, "ses_b");
        assert_eq!(
            find_by_title("the parser", &list, Some(Path::new("/w/d")))
                .unwrap()
                .id,
            "ses_d",
            "narrowed by workspace"
        );
        match find_by_title("hello", &list, None) {
            Err(Error::AmbiguousSession { candidates, .. }) => {
                assert_eq!(
                    candidates,
                    [
                        "ses_a (Create hello.py)",
                        "ses_b (create hello.py and tests)"
                    ]
                );
            }
            other => panic!("expected ambiguity, got {other:?}"),
        }
        assert!(matches!(
            find_by_title("nothing like it", &list, None),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            find_by_title("  ", &list, None),
            Err(Error::NotFound { .. })
        ));
    }
}
