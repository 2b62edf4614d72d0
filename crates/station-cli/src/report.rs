//! The `--json` shape of `stn code`: versioned, with a JSON Schema generated from these types
//! and checked in at `schemas/outcome.schema.json`.

use std::path::PathBuf;

use serde::Serialize;
use station_core::model::SessionWorktree;
use station_core::{Outcome, Session};

/// Bumped when a field changes meaning or goes away (new fields do not bump it).
pub(crate) const OUTCOME_SCHEMA_VERSION: u32 = 1;

/// What `stn code --json` prints: the session and the task's outcome.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(title = "stn code --json")]
pub(crate) struct OutcomeReport {
    /// The version of this shape; it changes when a field changes meaning or goes away.
    pub(crate) schema_version: u32,
    /// The session the task ran in.
    pub(crate) session: SessionReport,
    /// The task's outcome.
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
}

/// The session part of [`OutcomeReport`].
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SessionReport {
    /// Station's session id (`stn_...`).
    pub(crate) id: String,
    /// The session's title.
    pub(crate) title: Option<String>,
    /// The backend's name.
    pub(crate) backend: String,
    /// The backend's own session id, once known.
    pub(crate) backend_session_id: Option<String>,
    /// The workspace directory.
    pub(crate) workspace: Option<PathBuf>,
    /// The git worktree the session works in (`--isolation worktree`), with its branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) worktree: Option<SessionWorktree>,
}

impl OutcomeReport {
    pub(crate) fn new(session: &Session, outcome: &Outcome) -> Self {
        OutcomeReport {
            schema_version: OUTCOME_SCHEMA_VERSION,
            session: SessionReport {
                id: session.id.to_string(),
                title: session.title.clone(),
                backend: session.backend.clone(),
                backend_session_id: outcome
                    .backend_session_id
                    .clone()
                    .or_else(|| session.backend_session_id.clone()),
                workspace: session.workspace.clone(),
                worktree: session.worktree.clone(),
            },
            outcome: outcome.clone(),
        }
    }
}

/// The JSON Schema of [`OutcomeReport`], as checked in.
pub(crate) fn outcome_schema() -> String {
    let schema = schemars::schema_for!(OutcomeReport);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_outcome_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../schemas/outcome.schema.json");
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == outcome_schema(),
            "{} is not what the Rust types generate; regenerate it with `cargo xtask schema`",
            path.display()
        );
    }

    #[test]
    fn the_report_carries_its_schema_version() {
        let session = Session::new("opencode-cli");
        let outcome = Outcome::new(true, station_core::StopReason::Completed);
        let v = serde_json::to_value(OutcomeReport::new(&session, &outcome)).unwrap();
        assert_eq!(v["schema_version"], OUTCOME_SCHEMA_VERSION);
        assert_eq!(v["session"]["id"], session.id.to_string());
        assert_eq!(v["stop_reason"], "completed");
    }
}
