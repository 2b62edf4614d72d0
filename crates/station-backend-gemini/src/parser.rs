//! A tolerant parser for `gemini --output-format stream-json`.
//!
//! Every stdout line is one JSON object with a `type`. Feed lines to
//! [`StreamParser::push_line`]; each yields the core [`EventKind`]s it stands for right away.
//! [`StreamParser::report`] gives what the run amounted to.
//!
//! | line type | events | kept for the outcome |
//! | --- | --- | --- |
//! | `init` | `BackendSession` | the session id |
//! | `message` (assistant, `delta: true`) | `TextDelta` | the text since the last tool call (the final answer) |
//! | `message` (assistant, whole) | `Text` | likewise |
//! | `message` (user) | none | |
//! | `tool_use` | `ToolStarted` | the call |
//! | `tool_result` | `ToolFinished`, `FileEdited` for a successful file tool | output or error |
//! | `error` | `Notice` | the message |
//! | `result` | `StepFinished` (the run's tokens) | status, error, tokens, model |
//! | not JSON | `Notice` (the first few) | a count |
//!
//! All text that leaves the parser (events and report) goes through the global redactor.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use station_core::redact;
use station_core::{EventKind, ToolCall, Usage};

/// Tool output kept per call (in events and in the outcome); the middle of longer output is cut.
pub const MAX_TOOL_OUTPUT_BYTES: usize = 64 * 1024;

/// Malformed lines reported as `Notice` events; later ones are only counted.
const MAX_MALFORMED_NOTICES: u64 = 10;

/// How much of a malformed line a notice quotes.
const MALFORMED_QUOTE_CHARS: usize = 120;

/// Tools whose `file_path` parameter names a file they change.
const FILE_TOOLS: &[&str] = &["write_file", "replace", "edit", "write"];

/// The `result` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunResult {
    /// `success` or `error`.
    pub status: String,
    /// The error the CLI reported with a failed result, redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's `type` (`FatalTurnLimitedError`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Tokens over every model call of the run (the CLI's router included).
    pub usage: Usage,
    /// The model that did most of the work (the most tokens among `stats.models`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tool calls the CLI counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<u64>,
}

impl RunResult {
    /// Whether the CLI counts the run as successful.
    pub fn is_success(&self) -> bool {
        self.status == "success"
    }

    /// Whether the run stopped at the CLI's session turn limit.
    pub fn is_turn_limit(&self) -> bool {
        self.error_type.as_deref() == Some("FatalTurnLimitedError")
    }
}

/// What a run amounted to, as far as its output says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// The Gemini session (a UUID), from `init`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The final answer: the assistant text after the last tool call (or the last text there was).
    pub summary: String,
    /// Tool calls in the order they started.
    pub tool_calls: Vec<ToolCall>,
    /// Messages of `error` lines, redacted.
    pub errors: Vec<String>,
    /// The `result` line, once seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Lines that were not JSON objects with a `type`.
    pub malformed_lines: u64,
}

/// Parses `gemini --output-format stream-json` output line by line.
#[derive(Debug, Default)]
pub struct StreamParser {
    report: RunReport,
    /// Assistant text since the last tool call.
    segment: String,
    /// Index into `report.tool_calls` by `tool_id`.
    calls: HashMap<String, usize>,
}

impl StreamParser {
    /// A parser that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the run amounted to so far.
    pub fn report(&self) -> &RunReport {
        &self.report
    }

    /// Consume the parser, giving its report.
    pub fn into_report(self) -> RunReport {
        self.report
    }

    /// Parse one stdout line; returns the events it stands for, in order.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Vec::new();
        }
        let value: Value = match serde_json::from_str(trimmed) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return self.malformed(trimmed, "not a JSON object"),
            Err(_) => return self.malformed(trimmed, "not JSON"),
        };
        let Some(kind) = str_at(&value, "type") else {
            return self.malformed(trimmed, "no `type`");
        };
        match kind {
            "init" => self.init(&value),
            "message" => self.message(&value),
            "tool_use" => self.tool_use(&value),
            "tool_result" => self.tool_result(&value),
            "error" => self.error(&value),
            "result" => self.result(&value),
            other => {
                tracing::debug!(
                    kind = other,
                    "ignoring an unknown `gemini` stream-json line"
                );
                Vec::new()
            }
        }
    }

    fn init(&mut self, value: &Value) -> Vec<EventKind> {
        let Some(id) = str_at(value, "session_id").filter(|s| !s.is_empty()) else {
            return Vec::new();
        };
        if self.report.session_id.as_deref() == Some(id) {
            return Vec::new();
        }
        self.report.session_id = Some(id.to_string());
        vec![EventKind::BackendSession {
            backend_session_id: id.to_string(),
        }]
    }

    fn message(&mut self, value: &Value) -> Vec<EventKind> {
        if str_at(value, "role") != Some("assistant") {
            return Vec::new();
        }
        let Some(text) = str_at(value, "content").filter(|t| !t.is_empty()) else {
            return Vec::new();
        };
        let text = redact::redact(text);
        self.segment.push_str(&text);
        if !self.segment.trim().is_empty() {
            self.report.summary = self.segment.trim().to_string();
        }
        if value.get("delta").and_then(Value::as_bool) == Some(true) {
            vec![EventKind::TextDelta { text }]
        } else {
            vec![EventKind::Text { text }]
        }
    }

    fn tool_use(&mut self, value: &Value) -> Vec<EventKind> {
        self.segment.clear();
        let name = str_at(value, "tool_name").unwrap_or("unknown").to_string();
        let id = str_at(value, "tool_id").map(str::to_string);
        let mut input = value.get("parameters").cloned().unwrap_or(Value::Null);
        redact_value(&mut input);
        if let Some(id) = &id {
            self.calls.insert(id.clone(), self.report.tool_calls.len());
        }
        self.report.tool_calls.push(ToolCall {
            id: id.clone(),
            name: name.clone(),
            input: input.clone(),
            output: None,
            error: None,
            duration_ms: None,
        });
        vec![EventKind::ToolStarted {
            call_id: id,
            name,
            input,
        }]
    }

    fn tool_result(&mut self, value: &Value) -> Vec<EventKind> {
        let id = str_at(value, "tool_id").map(str::to_string);
        let output = str_at(value, "output").map(|o| cut(&redact::redact(o)));
        let failed = str_at(value, "status") != Some("success");
        let error = failed.then(|| {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .or_else(|| str_at(value, "error"))
                .unwrap_or("the tool failed");
            redact::redact(message)
        });
        let index = id.as_ref().and_then(|id| self.calls.get(id).copied());
        let mut events = Vec::new();
        let name = match index.and_then(|i| self.report.tool_calls.get_mut(i)) {
            Some(call) => {
                call.output.clone_from(&output);
                call.error.clone_from(&error);
                if !failed
                    && FILE_TOOLS.contains(&call.name.as_str())
                    && let Some(path) = call.input.get("file_path").and_then(Value::as_str)
                {
                    events.push(EventKind::FileEdited {
                        path: path.to_string(),
                    });
                }
                call.name.clone()
            }
            None => "unknown".to_string(),
        };
        events.insert(
            0,
            EventKind::ToolFinished {
                call_id: id,
                name,
                output,
                error,
            },
        );
        events
    }

    fn error(&mut self, value: &Value) -> Vec<EventKind> {
        let message = redact::redact(str_at(value, "message").unwrap_or("unknown error"));
        let severity = str_at(value, "severity").unwrap_or("error");
        self.report.errors.push(message.clone());
        vec![EventKind::Notice {
            message: format!("gemini {severity}: {message}"),
        }]
    }

    fn result(&mut self, value: &Value) -> Vec<EventKind> {
        let stats = value.get("stats").unwrap_or(&Value::Null);
        let usage = usage_of(stats);
        let error = value.get("error").map(|e| {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_string);
            redact::redact(&message)
        });
        self.report.result = Some(RunResult {
            status: str_at(value, "status").unwrap_or("unknown").to_string(),
            error,
            error_type: value
                .pointer("/error/type")
                .and_then(Value::as_str)
                .map(str::to_string),
            usage,
            model: main_model(stats),
            tool_calls: stats.get("tool_calls").and_then(Value::as_u64),
        });
        vec![EventKind::StepFinished {
            usage,
            cost_usd: None,
        }]
    }

    fn malformed(&mut self, line: &str, why: &str) -> Vec<EventKind> {
        self.report.malformed_lines += 1;
        let n = self.report.malformed_lines;
        if n > MAX_MALFORMED_NOTICES {
            return Vec::new();
        }
        let mut quote: String = line.chars().take(MALFORMED_QUOTE_CHARS).collect();
        if quote.len() < line.len() {
            quote.push('…');
        }
        let mut message = format!(
            "skipped a malformed line from gemini ({why}): {}",
            redact::redact(&quote)
        );
        if n == MAX_MALFORMED_NOTICES {
            message.push_str(" (further malformed lines are only counted)");
        }
        vec![EventKind::Notice { message }]
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// `stats` as [`Usage`]: `input` is the prompt without cache reads (else `input_tokens -
/// cached`), `cached` the cache reads.
fn usage_of(stats: &Value) -> Usage {
    let cached = u64_at(stats, "cached").unwrap_or(0);
    let input = u64_at(stats, "input")
        .or_else(|| u64_at(stats, "input_tokens").map(|t| t.saturating_sub(cached)))
        .unwrap_or(0);
    Usage {
        input_tokens: input,
        output_tokens: u64_at(stats, "output_tokens").unwrap_or(0),
        reasoning_tokens: 0,
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    }
}

/// The model with the most tokens in `stats.models` (the main loop's, not the router's).
fn main_model(stats: &Value) -> Option<String> {
    let models = stats.get("models")?.as_object()?;
    models
        .iter()
        .max_by_key(|(_, m)| u64_at(m, "total_tokens").unwrap_or(0))
        .map(|(name, _)| name.clone())
}

/// Redact every string inside a JSON value, in place (keys are names, not data).
fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = redact::redact(s),
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => map.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// `text` cut to about [`MAX_TOOL_OUTPUT_BYTES`]: its start and end, with a marker saying how
/// much is missing.
fn cut(text: &str) -> String {
    let max = MAX_TOOL_OUTPUT_BYTES;
    if text.len() <= max {
        return text.to_string();
    }
    let mut head = max * 3 / 4;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 4;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n… [{} bytes cut] …\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tool_output_is_cut_in_the_middle() {
        let long = "é".repeat(MAX_TOOL_OUTPUT_BYTES);
        let shown = cut(&long);
        assert!(shown.len() < MAX_TOOL_OUTPUT_BYTES + 100, "{}", shown.len());
        assert!(shown.contains("bytes cut"));
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn usage_falls_back_to_input_tokens_minus_cache() {
        let stats = serde_json::json!({"input_tokens": 100, "cached": 30, "output_tokens": 5});
        let usage = usage_of(&stats);
        assert_eq!(
            (
                usage.input_tokens,
                usage.cache_read_tokens,
                usage.output_tokens
            ),
            (70, 30, 5)
        );
    }
}
