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
//! | `system` `api_retry` | `Notice` (the model API failed; Claude Code retries) | the last API error |
//! | `stream_event` (`--include-partial-messages`) | `TextDelta` for text deltas; `StepFinished` at `message_stop` | per-step usage |
//! | `assistant` | `Text`, `Reasoning`, `ToolStarted` per content block | tool calls, last text |
//! | `user` | `FileEdited` (Write/Edit/MultiEdit/NotebookEdit that succeeded), `ToolFinished` per `tool_result`, paired by `tool_use_id` | tool outputs and errors |
//! | `result` | none | final text, cost, usage, turns, error |
//! | not JSON | `Notice` (the first few) | a count |
//! | anything else | none (debug log) | |
//!
//! Each line is deserialised into typed structs of only the fields read here (module `wire`),
//! borrowing its strings, so the cost stays below building a `serde_json::Value` of the line.
//!
//! Totals come from the `result` line only: the CLI repeats the usage of one API message on every
//! `assistant` line it splits that message into, so summing those over-counts.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use station_core::redact::Redactor;
use station_core::{EventKind, Outcome, StopReason, ToolCall, Usage};

use wire::{Block, Line, Obj, ResultContent, Str};

mod wire;

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
        match serde_json::from_str::<Obj<Line<'_>>>(trimmed) {
            Ok(Obj(line)) => self.line(line, &mut events),
            Err(_) => self.untyped_line(trimmed, &mut events),
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

    /// A line the typed parse refused: not JSON (reported), or JSON it cannot take (duplicate
    /// keys), which is read through a `Value` (the last duplicate wins).
    fn untyped_line(&mut self, line: &str, events: &mut Vec<EventKind>) {
        match serde_json::from_str::<Value>(line) {
            Err(e) => self.malformed(line, &e, events),
            Ok(value) => match Obj::<Line<'_>>::deserialize(&value) {
                Ok(Obj(line)) => self.line(line, events),
                Err(e) => {
                    tracing::debug!(error = %e, "claude stream-json line not understood; ignored")
                }
            },
        }
    }

    fn line(&mut self, line: Option<Line<'_>>, events: &mut Vec<EventKind>) {
        let Some(mut line) = line else {
            tracing::debug!("claude stream-json line without a type; ignored");
            return;
        };
        let kind = std::mem::take(&mut line.kind);
        let Some(kind) = kind.as_deref() else {
            tracing::debug!("claude stream-json line without a type; ignored");
            return;
        };
        if let Some(id) = line.session_id.as_deref() {
            self.see_session(id, events);
        }
        match kind {
            "system" => self.system(&line, events),
            "stream_event" => self.stream_event(line, events),
            "assistant" => self.assistant(line, events),
            "user" => {
                self.close_step(events);
                self.user(line, events);
            }
            "result" => {
                self.close_step(events);
                self.result_line(line);
            }
            other => tracing::debug!(
                line_type = other,
                "unknown claude stream-json line type; ignored"
            ),
        }
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
                message: redacted(Cow::Owned(message)),
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

    fn system(&mut self, line: &Line<'_>, events: &mut Vec<EventKind>) {
        match line.subtype.as_deref() {
            Some("init") => {
                self.init_model = line.model.as_deref().map(str::to_string);
                self.report.cwd = line.cwd.as_deref().map(str::to_string);
            }
            Some("compact_boundary") => events.push(EventKind::Notice {
                message: "claude compacted the conversation to fit its context window".into(),
            }),
            Some("api_retry") => self.api_retry(line, events),
            other => tracing::debug!(subtype = other, "claude system line ignored"),
        }
    }

    /// The model API failed and Claude Code will retry: say so, and keep it for the outcome.
    fn api_retry(&mut self, line: &Line<'_>, events: &mut Vec<EventKind>) {
        let api = self.report.api_error.get_or_insert_with(ApiError::default);
        if line.error_status.0.is_some() {
            api.status = line.error_status.0;
        }
        if let Some(kind) = line.error.as_deref() {
            api.kind = Some(redacted(Cow::Borrowed(kind)));
        }
        let attempt = line.attempt.0.unwrap_or(api.retries + 1);
        api.retries = api.retries.max(attempt);
        api.max_retries = line.max_retries.0.or(api.max_retries);
        let status = api
            .status
            .map_or_else(|| "failed".to_string(), |s| format!("error {s}"));
        let kind = api
            .kind
            .as_deref()
            .map(|k| format!(" ({k})"))
            .unwrap_or_default();
        let of = api.max_retries.map(|m| format!("/{m}")).unwrap_or_default();
        let delay = line
            .retry_delay_ms
            .0
            .map(|ms| format!(" in {:.1} s", ms / 1000.0))
            .unwrap_or_default();
        events.push(EventKind::Notice {
            message: format!("Claude API {status}{kind}, retry {attempt}{of}{delay}"),
        });
    }

    fn stream_event(&mut self, line: Line<'_>, events: &mut Vec<EventKind>) {
        let Some(event) = line.event.0 else {
            return;
        };
        match event.kind.as_deref() {
            Some("message_start") => {
                self.close_step(events);
                let message = event.message.0;
                let id = message
                    .as_ref()
                    .and_then(|m| m.id.as_deref())
                    .map(str::to_string);
                let usage = message
                    .as_ref()
                    .and_then(|m| m.usage.0.as_ref())
                    .map(Usage::from)
                    .unwrap_or_default();
                self.step = Some(OpenStep {
                    message_id: id,
                    usage,
                });
            }
            Some("content_block_delta") => {
                if let Some(delta) = event.delta.0
                    && delta.kind.as_deref() == Some("text_delta")
                    && let Some(text) = delta.text.0
                    && !text.is_empty()
                {
                    events.push(EventKind::TextDelta {
                        text: redacted(text),
                    });
                }
            }
            Some("message_delta") => {
                if let (Some(step), Some(usage)) = (self.step.as_mut(), event.usage.0.as_ref()) {
                    // message_delta usage is cumulative for the message; it may restate input.
                    let delta = Usage::from(usage);
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

    fn assistant(&mut self, line: Line<'_>, events: &mut Vec<EventKind>) {
        let api_error_kind = line.error.0.map(redacted);
        let Some(message) = line.message.0 else {
            return;
        };
        if let Some(kind) = api_error_kind {
            let text = message
                .content
                .0
                .iter()
                .filter_map(|b| b.0.as_ref())
                .find_map(|b| b.text.as_deref().filter(|t| !t.is_empty()))
                .map(|t| redacted(Cow::Borrowed(t)));
            let api = self.report.api_error.get_or_insert_with(ApiError::default);
            api.kind = Some(kind);
            if text.is_some() {
                api.message = text;
            }
        }
        let model = message.model.as_deref().filter(|m| !m.starts_with('<'));
        if let Some(model) = model {
            if self.report.model.as_deref() != Some(model) {
                self.report.model = Some(model.to_string());
            }
            let id = message.id.as_deref();
            let same_step = self
                .step
                .as_ref()
                .is_some_and(|s| s.message_id.as_deref() == id);
            let already_closed = id.is_some() && self.last_step_id.as_deref() == id;
            if !same_step && !already_closed {
                self.close_step(events);
                let usage = message
                    .usage
                    .0
                    .as_ref()
                    .map(Usage::from)
                    .unwrap_or_default();
                self.step = Some(OpenStep {
                    message_id: id.map(str::to_string),
                    usage,
                });
            }
        }
        for block in message.content.0 {
            let Some(block) = block.0 else {
                tracing::debug!("claude assistant content block that is not an object ignored");
                continue;
            };
            match block.kind.as_deref() {
                Some("text") => {
                    if let Some(text) = block.text.0
                        && !text.is_empty()
                    {
                        let text = redacted(text);
                        self.report.last_text = Some(text.clone());
                        events.push(EventKind::Text { text });
                    }
                }
                Some("thinking") => {
                    if let Some(text) = block.thinking.0
                        && !text.is_empty()
                    {
                        events.push(EventKind::Reasoning {
                            text: redacted(text),
                        });
                    }
                }
                Some("tool_use") => self.tool_use(block, events),
                other => tracing::debug!(block = other, "claude assistant content block ignored"),
            }
        }
    }

    fn tool_use(&mut self, block: Block<'_>, events: &mut Vec<EventKind>) {
        let id = block.id.0;
        if let Some(id) = &id
            && self.calls_by_id.contains_key(id.as_ref())
        {
            return;
        }
        let id = id.map(Cow::into_owned);
        let name = block
            .name
            .0
            .map_or_else(|| "unknown".to_string(), Cow::into_owned);
        let input = redact_json(block.input.unwrap_or(Value::Null));
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

    fn user(&mut self, line: Line<'_>, events: &mut Vec<EventKind>) {
        let Some(message) = line.message.0 else {
            return;
        };
        for block in message
            .content
            .0
            .into_iter()
            .filter_map(|b| b.0)
            .filter(|b| b.kind.as_deref() == Some("tool_result"))
        {
            let call_id = block.tool_use_id.0.map(Cow::into_owned);
            let content = match block.content {
                ResultContent::Missing => Cow::Borrowed(""),
                ResultContent::Text(text) => text,
                ResultContent::Json(value) => Cow::Owned(tool_result_text(Some(&value))),
            };
            let text = truncate_owned(redacted(content), MAX_TOOL_OUTPUT_BYTES);
            let failed = block.is_error.0.unwrap_or(false);
            let (output, error) = if failed {
                (None, Some(text))
            } else {
                (Some(text), None)
            };
            let index = call_id
                .as_deref()
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

    fn result_line(&mut self, line: Line<'_>) {
        let owned = |s: Str<'_>| s.0.map(Cow::into_owned);
        let errors = line
            .errors
            .0
            .iter()
            .map(|e| match e {
                Value::String(s) => redacted(Cow::Borrowed(s)),
                other => redacted(Cow::Owned(other.to_string())),
            })
            .collect();
        self.report.result = Some(RunResult {
            subtype: owned(line.subtype).unwrap_or_default(),
            is_error: line.is_error.0.unwrap_or(false),
            api_error_status: line.api_error_status.0,
            num_turns: line.num_turns.0,
            text: line.result.0.map(redacted),
            errors,
            terminal_reason: owned(line.terminal_reason),
            usage: line.usage.0.as_ref().map(Usage::from).unwrap_or_default(),
            cost_usd: line.total_cost_usd.0,
            session_id: owned(line.session_id),
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

/// The text as it may leave the parser: every secret replaced. Copies only what it must.
fn redacted(text: Cow<'_, str>) -> String {
    match Redactor::global().redact(&text) {
        Cow::Owned(clean) => clean,
        Cow::Borrowed(_) => text.into_owned(),
    }
}

/// A tool result's `content` that is not a string: a list of blocks (`text`, `image`, ...), or
/// any other JSON.
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
fn redact_json(mut value: Value) -> Value {
    redact_json_in_place(&mut value);
    value
}

fn redact_json_in_place(value: &mut Value) {
    match value {
        Value::String(s) => {
            let clean = match Redactor::global().redact(s) {
                Cow::Owned(clean) => Some(clean),
                Cow::Borrowed(_) => None,
            };
            if let Some(clean) = clean {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json_in_place),
        Value::Object(map) => map.values_mut().for_each(redact_json_in_place),
        _ => {}
    }
}

/// [`truncate`] that keeps the string it is given when it is short enough.
fn truncate_owned(text: String, max: usize) -> String {
    if text.len() <= max {
        text
    } else {
        truncate(&text, max)
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

    fn events_of(lines: &[&str]) -> (Vec<EventKind>, RunReport) {
        let mut p = StreamParser::new();
        let mut events = Vec::new();
        for line in lines {
            events.extend(p.push_line(line));
        }
        events.extend(p.finish());
        (events, p.report())
    }

    #[test]
    fn fields_of_unexpected_json_types_read_as_absent() {
        let (events, report) = events_of(&[
            r#"{"type":"assistant","session_id":7,"message":{"id":5,"model":["m"],"usage":"lots","content":[1,"s",{"type":"text","text":{"a":1}},{"type":"text","text":"ok"},{"type":"tool_use","id":"t1","name":3,"input":null}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"a"},{"type":"image"}],"is_error":"no"},{"type":"tool_result","tool_use_id":"t2","content":42}]}}"#,
            r#"{"type":"result","subtype":1,"is_error":"yes","num_turns":-1,"api_error_status":4.5,"total_cost_usd":2,"usage":[],"errors":["a",{"b":1}],"result":"done","terminal_reason":null}"#,
        ]);
        let expected = vec![
            EventKind::Text { text: "ok".into() },
            EventKind::ToolStarted {
                call_id: Some("t1".into()),
                name: "unknown".into(),
                input: Value::Null,
            },
            EventKind::ToolFinished {
                call_id: Some("t1".into()),
                name: "unknown".into(),
                output: Some("a\n[image]".into()),
                error: None,
            },
            EventKind::ToolFinished {
                call_id: Some("t2".into()),
                name: "unknown".into(),
                output: Some("42".into()),
                error: None,
            },
        ];
        assert_eq!(events, expected);
        assert_eq!(report.session_id, None);
        assert_eq!(report.model, None);
        let result = report.result.unwrap();
        assert_eq!(
            result,
            RunResult {
                subtype: String::new(),
                is_error: false,
                api_error_status: None,
                num_turns: None,
                text: Some("done".into()),
                errors: vec!["a".into(), r#"{"b":1}"#.into()],
                terminal_reason: None,
                usage: Usage::default(),
                cost_usd: Some(2.0),
                session_id: None,
            }
        );
    }

    #[test]
    fn json_that_is_not_an_object_is_ignored_not_malformed() {
        let (events, report) = events_of(&[r#"["assistant",{"content":[]}]"#, "\"text\"", "5"]);
        assert_eq!(events, []);
        assert_eq!(report.malformed_lines, 0);
    }

    #[test]
    fn duplicate_keys_take_the_last_value_as_a_json_value_would() {
        let (events, report) = events_of(&[
            r#"{"type":"system","type":"assistant","message":{"content":[{"type":"text","text":"first","text":"second"}]}}"#,
        ]);
        assert_eq!(
            events,
            [EventKind::Text {
                text: "second".into()
            }]
        );
        assert_eq!(report.malformed_lines, 0);
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let (events, _) = events_of(&[
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"a \"quoted\"\nline \u00e9"}]}}"#,
        ]);
        assert_eq!(
            events,
            [EventKind::Text {
                text: "a \"quoted\"\nline é".into()
            }]
        );
    }

    #[test]
    fn no_secret_leaves_the_parser() {
        let token = format!("ghp_{}", "Zq9w".repeat(9));
        let lines = [
            format!(
                r#"{{"type":"stream_event","event":{{"type":"content_block_delta","delta":{{"type":"text_delta","text":"delta {token}"}}}}}}"#
            ),
            format!(
                r#"{{"type":"assistant","message":{{"id":"m","model":"c","content":[{{"type":"thinking","thinking":"think {token}"}},{{"type":"text","text":"say {token}"}},{{"type":"tool_use","id":"t","name":"Write","input":{{"file_path":"/w/{token}","content":["{token}"]}}}}]}}}}"#
            ),
            format!(
                r#"{{"type":"user","message":{{"content":[{{"type":"tool_result","tool_use_id":"t","content":"wrote \"{token}\""}}]}}}}"#
            ),
            format!(
                r#"{{"type":"result","subtype":"error_during_execution","is_error":true,"result":"end {token}","errors":["err {token}",{{"k":"{token}"}}]}}"#
            ),
            format!("not json {token}"),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (events, report) = events_of(&lines);
        let all = serde_json::json!({
            "events": events,
            "report": report,
            "outcome": report.outcome(),
        })
        .to_string();
        assert!(!all.contains(&token[4..]), "{all}");
        // 8 in events, 7 in the report, 6 in the outcome.
        assert_eq!(all.matches("[REDACTED]").count(), 21, "{all}");
    }
}
