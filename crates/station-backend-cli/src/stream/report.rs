//! What a run amounted to: the report and its model calls (steps).

use serde::Serialize;
use station_core::{ToolCall, Usage};

/// One model call (`step_start` … `step_finish`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Step {
    /// Text parts in order, by part id (a part sent twice replaces itself).
    pub texts: Vec<String>,
    /// `step_finish.reason`, once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip)]
    pub(super) text_ids: Vec<Option<String>>,
}

/// What a run amounted to, as far as its output says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// The OpenCode session (`ses_…`), from the first line that named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The final answer: the text parts of the last step that has text.
    pub summary: String,
    /// Tokens summed over all steps.
    pub usage: Usage,
    /// Cost in USD summed over all steps; `None` when no step reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Tool calls in the order they started.
    pub tool_calls: Vec<ToolCall>,
    /// Paths that file-editing tools reported changing, in order, without repeats.
    pub edited_paths: Vec<String>,
    /// Messages of `error` lines, redacted.
    pub errors: Vec<String>,
    /// The model calls.
    pub steps: Vec<Step>,
    /// Whether the last step finished without asking for more tool calls.
    pub turn_finished: bool,
    /// Lines that were not JSON objects with a `type`.
    pub malformed_lines: u64,
}
