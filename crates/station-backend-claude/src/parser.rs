//! A tolerant parser for `claude -p --output-format stream-json --verbose` output.
//!
//! Feed it stdout one line at a time ([`StreamParser::push_line`]); every line yields the core
//! [`EventKind`]s it stands for, right away. At the end, [`StreamParser::finish`] flushes what is
//! still open and [`StreamParser::report`] gives what the run amounted to.
//!
//! What each line type becomes:
//!
//! | line | events | kept for the outcome |
//! | --- | --- | --- |
//! | `system` `init` | `BackendSession` (first time a session id is seen) | session id, model, cwd |
//! | `stream_event` (`--include-partial-messages`) | `TextDelta` for text deltas; `StepFinished` at `message_stop` | per-step usage |
//! | `assistant` | `Text`, `Reasoning`, `ToolStarted` per content block | tool calls, last text |
//! | `user` | `FileEdited` (Write/Edit/MultiEdit/NotebookEdit that succeeded), `ToolFinished` per `tool_result`, paired by `tool_use_id` | tool outputs and errors |
//! | `result` | none | final text, cost, usage, turns, error |
//! | not JSON | `Notice` (the first few) | a count |
//! | anything else | none (debug log) | |
//!
//! Totals come from the `result` line only: the CLI repeats the usage of one API message on every
//! `assistant` line it splits that message into, so summing those over-counts.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use station_core::redact;
use station_core::{EventKind, Outcome, StopReason, ToolCall, Usage};

/// Tool output kept per call (in events and in the outcome); the rest is cut off.
pub const MAX_TOOL_OUTPUT_BYTES: usize = 32 * 1024;

/// Malformed lines reported as `Notice` events; later ones are only counted.
const MAX_MALFORMED_NOTICES: usize = 10;

/// How much of a malformed line a notice quotes.
const MALFORMED_QUOTE_CHARS: usize = 120;

/// Tools whose input names a file they change, and the input key that holds the path.
const FILE_EDITING_TOOLS: &[(&str, &str)] = &[
    ("Write", "file_path"),
    ("Edit", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
];

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
                Outcome::failed(StopReason::Error, result.error_message())
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

/// One model call in progress.
#[derive(Debug)]
struct OpenStep {
    message_id: Option<String>,
    usage: Usage,
}

/// Turns stream-json lines into events; see the module docs.
#[derive(Debug, Default)]
pub struct StreamParser {
    report: RunReport,
    init_model: Option<String>,
    calls_by_id: HashMap<String, usize>,
    step: Option<OpenStep>,
    last_step_id: Option<String>,
}

impl StreamParser {
    /// A parser that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Claude session id, once a line carried it.
    pub fn session_id(&self) -> Option<&str> {
        self.report.session_id.as_deref()
    }

    /// The `result` line, once it came.
    pub fn result(&self) -> Option<&RunResult> {
        self.report.result.as_ref()
    }

    /// Parse one line of stdout; returns its events in order.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut events = Vec::new();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return events;
        }
        let value: Value = match serde_json::from_str(trimmed) {
            Ok(v) => v,
            Err(e) => {
                self.malformed(trimmed, &e, &mut events);
                return events;
            }
        };
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            tracing::debug!("claude stream-json line without a type; ignored");
            return events;
        };
        if let Some(id) = value.get("session_id").and_then(Value::as_str) {
            self.see_session(id, &mut events);
        }
        match kind {
            "system" => self.system(&value, &mut events),
            "stream_event" => self.stream_event(&value, &mut events),
            "assistant" => self.assistant(&value, &mut events),
            "user" => {
                self.close_step(&mut events);
                self.user(&value, &mut events);
            }
            "result" => {
                self.close_step(&mut events);
                self.result_line(&value);
            }
            other => tracing::debug!(
                line_type = other,
                "unknown claude stream-json line type; ignored"
            ),
        }
        events
    }

    /// End of stream: close the model call still open.
    pub fn finish(&mut self) -> Vec<EventKind> {
        let mut events = Vec::new();
        self.close_step(&mut events);
        events
    }

    /// What the run amounted to so far.
    pub fn report(&self) -> RunReport {
        let mut report = self.report.clone();
        if report.model.is_none() {
            report.model = self.init_model.clone();
        }
        report
    }

    fn malformed(&mut self, line: &str, error: &serde_json::Error, events: &mut Vec<EventKind>) {
        self.report.malformed_lines += 1;
        let n = self.report.malformed_lines;
        if n <= MAX_MALFORMED_NOTICES {
            let quote: String = line.chars().take(MALFORMED_QUOTE_CHARS).collect();
            let more = if line.chars().count() > MALFORMED_QUOTE_CHARS {
                "…"
            } else {
                ""
            };
            let message = format!(
                "skipped a line of claude output that is not JSON ({error}; {} bytes): {quote}{more}",
                line.len()
            );
            events.push(EventKind::Notice {
                message: redact::redact(&message),
            });
        } else if n == MAX_MALFORMED_NOTICES + 1 {
            events.push(EventKind::Notice { message: "more lines of claude output are not JSON; they are skipped without further notice".into() });
        }
    }

    fn see_session(&mut self, id: &str, events: &mut Vec<EventKind>) {
        if id.is_empty() || self.report.session_id.as_deref() == Some(id) {
            return;
        }
        self.report.session_id = Some(id.to_string());
        events.push(EventKind::BackendSession {
            backend_session_id: id.to_string(),
        });
    }

    fn system(&mut self, value: &Value, events: &mut Vec<EventKind>) {
        match value.get("subtype").and_then(Value::as_str) {
            Some("init") => {
                self.init_model = value
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                self.report.cwd = value.get("cwd").and_then(Value::as_str).map(str::to_string);
            }
            Some("compact_boundary") => events.push(EventKind::Notice {
                message: "claude compacted the conversation to fit its context window".into(),
            }),
            other => tracing::debug!(subtype = other, "claude system line ignored"),
        }
    }

    fn stream_event(&mut self, value: &Value, events: &mut Vec<EventKind>) {
        let Some(event) = value.get("event") else {
            return;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.close_step(events);
                let message = event.get("message");
                let id = message
                    .and_then(|m| m.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let usage = message
                    .and_then(|m| m.get("usage"))
                    .map(parse_usage)
                    .unwrap_or_default();
                self.step = Some(OpenStep {
                    message_id: id,
                    usage,
                });
            }
            Some("content_block_delta") => {
                let delta = event.get("delta");
                if delta.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("text_delta")
                    && let Some(text) = delta.and_then(|d| d.get("text")).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    events.push(EventKind::TextDelta {
                        text: redact::redact(text),
                    });
                }
            }
            Some("message_delta") => {
                if let (Some(step), Some(usage)) = (self.step.as_mut(), event.get("usage")) {
                    // message_delta usage is cumulative for the message; it may restate input.
                    let delta = parse_usage(usage);
                    step.usage.output_tokens = delta.output_tokens.max(step.usage.output_tokens);
                    for (field, value) in [
                        (&mut step.usage.input_tokens, delta.input_tokens),
                        (&mut step.usage.cache_read_tokens, delta.cache_read_tokens),
                        (&mut step.usage.cache_write_tokens, delta.cache_write_tokens),
                    ] {
                        if value > 0 {
                            *field = value;
                        }
                    }
                }
            }
            Some("message_stop") => self.close_step(events),
            other => tracing::trace!(event = other, "claude stream event ignored"),
        }
    }

    fn assistant(&mut self, value: &Value, events: &mut Vec<EventKind>) {
        let Some(message) = value.get("message") else {
            return;
        };
        let model = message
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.starts_with('<'));
        if let Some(model) = model {
            self.report.model = Some(model.to_string());
            let id = message
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string);
            let same_step = self.step.as_ref().is_some_and(|s| s.message_id == id);
            let already_closed = id.is_some() && self.last_step_id == id;
            if !same_step && !already_closed {
                self.close_step(events);
                let usage = message.get("usage").map(parse_usage).unwrap_or_default();
                self.step = Some(OpenStep {
                    message_id: id,
                    usage,
                });
            }
        }
        let Some(blocks) = message.get("content").and_then(Value::as_array) else {
            return;
        };
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = block
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !text.is_empty() {
                        let text = redact::redact(text);
                        self.report.last_text = Some(text.clone());
                        events.push(EventKind::Text { text });
                    }
                }
                Some("thinking") => {
                    let text = block
                        .get("thinking")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !text.is_empty() {
                        events.push(EventKind::Reasoning {
                            text: redact::redact(text),
                        });
                    }
                }
                Some("tool_use") => self.tool_use(block, events),
                other => tracing::debug!(block = other, "claude assistant content block ignored"),
            }
        }
    }

    fn tool_use(&mut self, block: &Value, events: &mut Vec<EventKind>) {
        let id = block.get("id").and_then(Value::as_str).map(str::to_string);
        if let Some(id) = &id
            && self.calls_by_id.contains_key(id)
        {
            return;
        }
        let name = block
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let input = redact_json(block.get("input").cloned().unwrap_or(Value::Null));
        if let Some(id) = &id {
            self.calls_by_id
                .insert(id.clone(), self.report.tool_calls.len());
        }
        self.report.tool_calls.push(ToolCall {
            id: id.clone(),
            name: name.clone(),
            input: input.clone(),
            output: None,
            error: None,
            duration_ms: None,
        });
        events.push(EventKind::ToolStarted {
            call_id: id,
            name,
            input,
        });
    }

    fn user(&mut self, value: &Value, events: &mut Vec<EventKind>) {
        let Some(blocks) = value
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
        else {
            return;
        };
        for block in blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        {
            let call_id = block
                .get("tool_use_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            let text = truncate(
                &redact::redact(&tool_result_text(block.get("content"))),
                MAX_TOOL_OUTPUT_BYTES,
            );
            let failed = block
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let (output, error) = if failed {
                (None, Some(text))
            } else {
                (Some(text), None)
            };
            let index = call_id
                .as_ref()
                .and_then(|id| self.calls_by_id.get(id))
                .copied();
            let name = match index.map(|i| &mut self.report.tool_calls[i]) {
                Some(call) => {
                    call.output.clone_from(&output);
                    call.error.clone_from(&error);
                    if !failed && let Some(path) = edited_path(call) {
                        events.push(EventKind::FileEdited { path });
                    }
                    call.name.clone()
                }
                None => {
                    tracing::debug!(call_id = ?call_id, "claude tool result for an unknown call");
                    "unknown".to_string()
                }
            };
            events.push(EventKind::ToolFinished {
                call_id,
                name,
                output,
                error,
            });
        }
    }

    fn result_line(&mut self, value: &Value) {
        let str_of = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let errors = value
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| {
                        redact::redact(
                            &e.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| e.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.report.result = Some(RunResult {
            subtype: str_of("subtype").unwrap_or_default(),
            is_error: value
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            api_error_status: value.get("api_error_status").and_then(Value::as_u64),
            num_turns: value.get("num_turns").and_then(Value::as_u64),
            text: str_of("result").map(|t| redact::redact(&t)),
            errors,
            terminal_reason: str_of("terminal_reason"),
            usage: value.get("usage").map(parse_usage).unwrap_or_default(),
            cost_usd: value.get("total_cost_usd").and_then(Value::as_f64),
            session_id: str_of("session_id"),
        });
    }

    fn close_step(&mut self, events: &mut Vec<EventKind>) {
        if let Some(step) = self.step.take() {
            self.last_step_id = step.message_id;
            events.push(EventKind::StepFinished {
                usage: step.usage,
                cost_usd: None,
            });
        }
    }
}

/// Anthropic usage: `input_tokens`, `output_tokens`, `cache_read_input_tokens`,
/// `cache_creation_input_tokens`.
fn parse_usage(value: &Value) -> Usage {
    let n = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        reasoning_tokens: 0,
        cache_read_tokens: n("cache_read_input_tokens"),
        cache_write_tokens: n("cache_creation_input_tokens"),
    }
}

/// A tool result's `content`: a string, or a list of blocks (`text`, `image`, ...).
fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Some(other) => format!("[{other}]"),
                None => b.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
    }
}

fn edited_path(call: &ToolCall) -> Option<String> {
    let key = FILE_EDITING_TOOLS
        .iter()
        .find(|(tool, _)| *tool == call.name)
        .map(|(_, key)| *key)?;
    call.input
        .get(key)
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// Redact every string inside a JSON value (keys stay as they are).
fn redact_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact::redact(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_json).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, redact_json(v))).collect())
        }
        other => other,
    }
}

/// At most `max` bytes of `text` (on a character boundary), saying how much was cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… [{} more bytes cut]", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        let text = "é".repeat(10);
        let cut = truncate(&text, 5);
        assert!(cut.starts_with("éé") && !cut.starts_with("ééé"), "{cut}");
        assert!(cut.ends_with("[16 more bytes cut]"), "{cut}");
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn tool_result_blocks_are_joined() {
        let content = serde_json::json!([{"type": "text", "text": "a"}, {"type": "image", "source": {}}, {"type": "text", "text": "b"}]);
        assert_eq!(tool_result_text(Some(&content)), "a\n[image]\nb");
        assert_eq!(tool_result_text(Some(&Value::String("x".into()))), "x");
        assert_eq!(tool_result_text(None), "");
    }

    #[test]
    fn secrets_in_tool_input_are_redacted_and_json_stays_valid() {
        let token = format!("ghp_{}", "Ab1x".repeat(9));
        let input = serde_json::json!({"command": format!("git clone https://{token}@github.com/o/r"), "n": 1});
        let out = redact_json(input);
        let text = out.to_string();
        assert!(!text.contains(&token), "{text}");
        assert_eq!(out["n"], 1);
    }

    #[test]
    fn rejected_credentials_point_at_claude_login() {
        let mut p = StreamParser::new();
        p.push_line(r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Invalid API key"}"#);
        let outcome = p.report().outcome();
        assert_eq!(outcome.stop_reason, StopReason::Error);
        let error = outcome.error.unwrap();
        assert!(
            error.contains("HTTP 401") && error.contains("claude login"),
            "{error}"
        );
    }

    #[test]
    fn usage_is_not_summed_over_split_assistant_lines() {
        let mut p = StreamParser::new();
        let line = |block: &str| {
            format!(
                r#"{{"type":"assistant","message":{{"id":"m1","model":"claude-x","content":[{block}],"usage":{{"input_tokens":100,"output_tokens":1}}}},"session_id":"s"}}"#
            )
        };
        let mut events = p.push_line(&line(r#"{"type":"text","text":"hi"}"#));
        events.extend(p.push_line(&line(
            r#"{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}"#,
        )));
        events.extend(p.finish());
        let steps: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, EventKind::StepFinished { .. }))
            .collect();
        assert_eq!(steps.len(), 1, "{events:?}");
    }
}
