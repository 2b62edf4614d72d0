//! What a run amounted to: the `result` line, failed API calls, the report and its outcome.

use serde::Serialize;
use station_core::ToolCall;
use station_core::{Outcome, StopReason, Usage};

/// The `result` line: how the CLI says the run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunResult {
    /// `success`, `error_max_turns`, `error_during_execution`, ...
    pub subtype: String,
    /// Whether the CLI counts the run as failed (also true for API errors with subtype `success`).
    pub is_error: bool,
    /// HTTP status of a failed model API call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_error_status: Option<u64>,
    /// Model calls made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_turns: Option<u64>,
    /// The final answer (`result`), redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Error messages (`errors`), redacted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// `terminal_reason` (`completed`, `max_turns`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_reason: Option<String>,
    /// Tokens over the whole run.
    pub usage: Usage,
    /// `total_cost_usd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The session id the result names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl RunResult {
    /// Whether the run hit `--max-turns`.
    pub fn is_max_turns(&self) -> bool {
        self.subtype == "error_max_turns" || self.terminal_reason.as_deref() == Some("max_turns")
    }

    /// Whether the CLI could not find the conversation to resume.
    pub fn is_conversation_not_found(&self) -> bool {
        self.is_error
            && self
                .errors
                .iter()
                .chain(&self.text)
                .any(|e| e.contains("No conversation found"))
    }

    fn error_message(&self) -> String {
        let detail = if self.errors.is_empty() {
            self.text.clone().unwrap_or_default()
        } else {
            self.errors.join("; ")
        };
        if self.is_max_turns() {
            let detail = if detail.is_empty() {
                "reached the maximum number of turns".to_string()
            } else {
                detail
            };
            return format!(
                "{detail}: the task stopped at the turn limit before finishing (raise coding.claudecode.max_turns or split the task)"
            );
        }
        if let Some(status) = self.api_error_status {
            let detail = if detail.is_empty() {
                "no detail"
            } else {
                &detail
            };
            let hint = if matches!(status, 401 | 403) {
                " (Claude Code's own credentials were rejected: run `claude login` or check ANTHROPIC_API_KEY)"
            } else {
                ""
            };
            return format!("the model API answered HTTP {status}: {detail}{hint}");
        }
        if detail.is_empty() {
            format!(
                "claude reported an error (result subtype `{}`)",
                self.subtype
            )
        } else {
            detail
        }
    }
}

/// A failed model API call Claude Code reported (`system` `api_retry`, or the synthetic
/// `assistant` line with `error` and an `API Error: …` text).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApiError {
    /// HTTP status, when the API answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    /// Claude Code's category (`server_error`, `rate_limit`, `overloaded`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Retries Claude Code announced so far.
    pub retries: u64,
    /// Its retry limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u64>,
    /// The error text Claude Code showed (`API Error: 500 …`), redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ApiError {
    /// `the model API answered HTTP 500: <text> (after 3 retries)`.
    pub fn describe(&self) -> String {
        let answered = match self.status {
            Some(status) => format!("the model API answered HTTP {status}"),
            None => "the model API call failed".to_string(),
        };
        let detail = self
            .message
            .clone()
            .or_else(|| self.kind.clone())
            .unwrap_or_else(|| "no detail".into());
        format!("{answered}: {detail}{}", self.retries_note())
    }

    fn retries_note(&self) -> String {
        match self.retries {
            0 => String::new(),
            1 => " (after 1 retry)".into(),
            n => format!(" (after {n} retries)"),
        }
    }
}

/// What a run amounted to, from everything the parser saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// The Claude session id (a UUID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The model that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The working directory the CLI reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Tools called, in order, with their outputs.
    pub tool_calls: Vec<ToolCall>,
    /// The last assistant text block (the answer when no `result` line came).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_text: Option<String>,
    /// The `result` line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Lines that were not JSON.
    pub malformed_lines: usize,
    /// The last failed model API call, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_error: Option<ApiError>,
}

impl RunReport {
    /// The outcome this report stands for. Without a `result` line the run did not finish: the
    /// outcome is a failure whose message the caller should make more precise (exit status,
    /// stderr).
    pub fn outcome(&self) -> Outcome {
        let mut outcome = match &self.result {
            Some(result) if result.is_max_turns() => {
                Outcome::failed(StopReason::MaxTurns, result.error_message())
            }
            Some(result) if result.is_error || result.subtype != "success" => {
                let mut message = result.error_message();
                if result.api_error_status.is_some()
                    && let Some(api) = &self.api_error
                {
                    message.push_str(&api.retries_note());
                }
                Outcome::failed(StopReason::Error, message)
            }
            Some(_) => Outcome::new(true, StopReason::Completed),
            None => Outcome::failed(StopReason::Error, "claude ended without reporting a result"),
        };
        let final_text = self
            .result
            .as_ref()
            .and_then(|r| r.text.clone())
            .filter(|t| !t.is_empty());
        outcome.summary = final_text
            .or_else(|| self.last_text.clone())
            .unwrap_or_default();
        if let Some(result) = &self.result {
            outcome.usage = result.usage;
            outcome.cost_usd = result.cost_usd;
        }
        outcome.tool_calls = self.tool_calls.clone();
        outcome.backend_session_id = self.session_id.clone();
        outcome.model = self.model.clone();
        outcome
    }
}
