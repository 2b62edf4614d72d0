//! A tolerant parser for `opencode run --format json` output.
//!
//! Every stdout line is one JSON object `{"type", "timestamp", "sessionID", "part"?, "error"?}`.
//! Feed lines to [`StreamParser::push_line`]; each yields the core [`EventKind`]s it stands for
//! right away. [`StreamParser::report`] gives what the run amounted to.
//!
//! | line type | events | kept for the outcome |
//! | --- | --- | --- |
//! | any, first `sessionID` | `BackendSession` | the session id |
//! | `step_start` | none | opens a step |
//! | `text` | `Text` | the text parts of the last step that has any (the final answer) |
//! | `reasoning` | `Reasoning` | none |
//! | `tool_use` | `ToolStarted` once per call, `ToolFinished` when `state.status` is `completed`/`error`, `FileEdited` per changed path | tool calls with outputs |
//! | `step_finish` | `StepFinished` | tokens (incl. `tokens.cache.{read,write}`) and cost, summed over steps |
//! | `error` | `Notice` | the error message |
//! | not JSON | `Notice` (the first few) | a count |
//! | other types | none (debug log) | |
//!
//! All text that leaves the parser (events and report) goes through the global redactor.

use std::collections::{HashMap, HashSet};

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

/// Tools that change files, by the names OpenCode gives them.
const FILE_EDITING_TOOLS: &[&str] = &["write", "edit", "multiedit", "patch", "apply_patch"];

/// `step_finish` reasons after which the agent loop calls the model again.
const CONTINUING_REASONS: &[&str] = &["tool-calls", "tool_calls"];

/// One model call (`step_start` … `step_finish`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Step {
    /// Text parts in order, by part id (a part sent twice replaces itself).
    pub texts: Vec<String>,
    /// `step_finish.reason`, once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip)]
    text_ids: Vec<Option<String>>,
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

/// Parses `opencode run --format json` output line by line.
#[derive(Debug, Default)]
pub struct StreamParser {
    report: RunReport,
    /// Index into `report.tool_calls` by call id.
    calls: HashMap<String, usize>,
    finished_calls: HashSet<String>,
    step_open: bool,
}

impl StreamParser {
    /// A parser that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session id, once a line named it.
    pub fn session_id(&self) -> Option<&str> {
        self.report.session_id.as_deref()
    }

    /// Whether the last step finished the agent's turn (a `step_finish` that asks for no tools).
    pub fn turn_finished(&self) -> bool {
        self.report.turn_finished
    }

    /// Whether any JSON event was understood.
    pub fn saw_events(&self) -> bool {
        self.report.session_id.is_some()
            || !self.report.steps.is_empty()
            || !self.report.errors.is_empty()
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
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            return self.malformed(trimmed, "no `type`");
        };
        let mut events = Vec::new();
        let session = value
            .get("sessionID")
            .and_then(Value::as_str)
            .or_else(|| value.pointer("/part/sessionID").and_then(Value::as_str))
            .filter(|s| !s.is_empty());
        if let (None, Some(id)) = (&self.report.session_id, session) {
            self.report.session_id = Some(id.to_string());
            events.push(EventKind::BackendSession {
                backend_session_id: id.to_string(),
            });
        }
        let part = value.get("part").unwrap_or(&Value::Null);
        match kind {
            "step_start" => self.start_step(),
            "text" => self.text(part, &mut events),
            "reasoning" => {
                if let Some(text) = str_at(part, "text").filter(|t| !t.trim().is_empty()) {
                    events.push(EventKind::Reasoning {
                        text: redact::redact(text),
                    });
                }
            }
            "tool_use" => self.tool(part, &mut events),
            "step_finish" => self.finish_step(part, &mut events),
            "error" => {
                let message =
                    redact::redact(&error_message(value.get("error").unwrap_or(&Value::Null)));
                events.push(EventKind::Notice {
                    message: format!("opencode reported an error: {message}"),
                });
                self.report.errors.push(message);
            }
            other => tracing::debug!(kind = other, "ignoring an unknown `opencode run` event"),
        }
        events
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
            "skipped a malformed line from opencode ({why}): {}",
            redact::redact(&quote)
        );
        if n == MAX_MALFORMED_NOTICES {
            message.push_str(" (further malformed lines are only counted)");
        }
        vec![EventKind::Notice { message }]
    }

    fn start_step(&mut self) {
        self.report.steps.push(Step::default());
        self.step_open = true;
        self.report.turn_finished = false;
    }

    fn current_step(&mut self) -> &mut Step {
        if !self.step_open {
            self.start_step();
        }
        self.report.steps.last_mut().expect("a step is open")
    }

    fn text(&mut self, part: &Value, events: &mut Vec<EventKind>) {
        let Some(text) = str_at(part, "text") else {
            return;
        };
        if text.trim().is_empty() {
            return;
        }
        let text = redact::redact(text);
        let id = str_at(part, "id").map(str::to_string);
        let step = self.current_step();
        match id
            .as_ref()
            .and_then(|id| step.text_ids.iter().position(|t| t.as_ref() == Some(id)))
        {
            Some(i) => step.texts[i] = text.clone(),
            None => {
                step.texts.push(text.clone());
                step.text_ids.push(id);
            }
        }
        self.update_summary();
        events.push(EventKind::Text { text });
    }

    fn update_summary(&mut self) {
        if let Some(step) = self.report.steps.iter().rev().find(|s| !s.texts.is_empty()) {
            self.report.summary = step.texts.join("\n\n");
        }
    }

    fn tool(&mut self, part: &Value, events: &mut Vec<EventKind>) {
        let name = str_at(part, "tool").unwrap_or("unknown").to_string();
        let state = part.get("state").unwrap_or(&Value::Null);
        let status = str_at(state, "status").unwrap_or("");
        let call_id = str_at(part, "callID")
            .or_else(|| str_at(part, "id"))
            .map(str::to_string);
        let key = call_id
            .clone()
            .unwrap_or_else(|| format!("#{}", self.report.tool_calls.len()));
        let input = redact_value(state.get("input").cloned().unwrap_or(Value::Null));
        self.current_step();
        let index = match self.calls.get(&key) {
            Some(&i) => {
                if !input.is_null() && input != Value::Object(Default::default()) {
                    self.report.tool_calls[i].input = input;
                }
                i
            }
            None => {
                events.push(EventKind::ToolStarted {
                    call_id: call_id.clone(),
                    name: name.clone(),
                    input: input.clone(),
                });
                self.report.tool_calls.push(ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    input,
                    output: None,
                    error: None,
                    duration_ms: None,
                });
                self.calls
                    .insert(key.clone(), self.report.tool_calls.len() - 1);
                self.report.tool_calls.len() - 1
            }
        };
        if !matches!(status, "completed" | "error") || !self.finished_calls.insert(key) {
            return;
        }
        let output = str_at(state, "output")
            .map(|o| truncate_middle(&redact::redact(o), MAX_TOOL_OUTPUT_BYTES));
        let error = if status == "error" {
            Some(redact::redact(
                str_at(state, "error").unwrap_or("the tool failed"),
            ))
        } else {
            None
        };
        let duration_ms = match (u64_at(state, "/time/start"), u64_at(state, "/time/end")) {
            (Some(start), Some(end)) if end >= start => Some(end - start),
            _ => None,
        };
        let call = &mut self.report.tool_calls[index];
        call.output = output.clone();
        call.error = error.clone();
        call.duration_ms = duration_ms;
        events.push(EventKind::ToolFinished {
            call_id,
            name: name.clone(),
            output,
            error: error.clone(),
        });
        if error.is_none() && FILE_EDITING_TOOLS.contains(&name.to_ascii_lowercase().as_str()) {
            for path in edited_paths(state) {
                if !self.report.edited_paths.contains(&path) {
                    self.report.edited_paths.push(path.clone());
                }
                events.push(EventKind::FileEdited { path });
            }
        }
    }

    fn finish_step(&mut self, part: &Value, events: &mut Vec<EventKind>) {
        let usage = Usage {
            input_tokens: u64_at(part, "/tokens/input").unwrap_or(0),
            output_tokens: u64_at(part, "/tokens/output").unwrap_or(0),
            reasoning_tokens: u64_at(part, "/tokens/reasoning").unwrap_or(0),
            cache_read_tokens: u64_at(part, "/tokens/cache/read").unwrap_or(0),
            cache_write_tokens: u64_at(part, "/tokens/cache/write").unwrap_or(0),
        };
        let cost = part.get("cost").and_then(Value::as_f64);
        self.report.usage += usage;
        if let Some(c) = cost {
            *self.report.cost_usd.get_or_insert(0.0) += c;
        }
        let reason = str_at(part, "reason").unwrap_or("").to_string();
        self.report.turn_finished = !CONTINUING_REASONS.contains(&reason.as_str());
        self.current_step().finish_reason = Some(reason);
        self.step_open = false;
        events.push(EventKind::StepFinished {
            usage,
            cost_usd: cost,
        });
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A non-negative integer at a JSON pointer; floats are rounded down, negatives ignored.
fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    let n = v.pointer(pointer)?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// `Name: message` from an `error` line's `error` value, whatever its shape.
fn error_message(error: &Value) -> String {
    let name = str_at(error, "name");
    let message = error
        .pointer("/data/message")
        .and_then(Value::as_str)
        .or_else(|| str_at(error, "message"))
        .or_else(|| error.as_str());
    match (name, message) {
        (Some(n), Some(m)) => format!("{n}: {m}"),
        (None, Some(m)) => m.to_string(),
        (Some(n), None) => n.to_string(),
        (None, None) if error.is_null() => "unknown error".to_string(),
        (None, None) => error.to_string(),
    }
}

/// Paths a file-editing tool call changed: its input path, its metadata path, and for patch
/// tools the files named in the patch text.
fn edited_paths(state: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        let p = p.trim();
        if !p.is_empty() && !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    };
    let input = state.get("input").unwrap_or(&Value::Null);
    let direct = ["filePath", "file_path", "path"]
        .iter()
        .find_map(|k| str_at(input, k));
    let meta = state
        .pointer("/metadata/filepath")
        .and_then(Value::as_str)
        .or_else(|| {
            state
                .pointer("/metadata/filediff/file")
                .and_then(Value::as_str)
        });
    match (direct, meta) {
        (Some(p), _) | (None, Some(p)) => add(p),
        (None, None) => {}
    }
    for key in ["patchText", "patch", "input"] {
        if let Some(text) = str_at(input, key) {
            for line in text.lines() {
                for marker in [
                    "*** Add File:",
                    "*** Update File:",
                    "*** Delete File:",
                    "*** Move to:",
                ] {
                    if let Some(p) = line.strip_prefix(marker) {
                        add(p);
                    }
                }
            }
        }
    }
    out
}

/// Redact every string inside a JSON value.
fn redact_value(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact::redact(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_value).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, redact_value(v))).collect())
        }
        other => other,
    }
}

/// `text` cut to about `max` bytes: its start and end, with a marker saying how much is missing.
pub fn truncate_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let head_len = floor_char_boundary(text, max * 3 / 4);
    let tail_start = ceil_char_boundary(text, text.len() - max / 4);
    format!(
        "{}\n… [{} bytes cut] …\n{}",
        &text[..head_len],
        tail_start - head_len,
        &text[tail_start..]
    )
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[EventKind]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                EventKind::BackendSession { .. } => "session",
                EventKind::Text { .. } => "text",
                EventKind::Reasoning { .. } => "reasoning",
                EventKind::ToolStarted { .. } => "tool_started",
                EventKind::ToolFinished { .. } => "tool_finished",
                EventKind::FileEdited { .. } => "file_edited",
                EventKind::StepFinished { .. } => "step_finished",
                EventKind::Notice { .. } => "notice",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn tool_lifecycle_is_reported_once_per_status() {
        let mut p = StreamParser::new();
        let pending = r#"{"type":"tool_use","sessionID":"ses_1","part":{"tool":"bash","callID":"c1","state":{"status":"running","input":{"command":"ls"}}}}"#;
        let done = r#"{"type":"tool_use","sessionID":"ses_1","part":{"tool":"bash","callID":"c1","state":{"status":"completed","input":{"command":"ls"},"output":"a\n","time":{"start":10,"end":25}}}}"#;
        assert_eq!(kinds(&p.push_line(pending)), ["session", "tool_started"]);
        assert_eq!(kinds(&p.push_line(done)), ["tool_finished"]);
        assert!(
            p.push_line(done).is_empty(),
            "a repeated completion is not reported twice"
        );
        let call = &p.report().tool_calls[0];
        assert_eq!(
            (call.output.as_deref(), call.duration_ms),
            (Some("a\n"), Some(15))
        );
    }

    #[test]
    fn failed_tools_and_patches() {
        let mut p = StreamParser::new();
        let failed = r#"{"type":"tool_use","part":{"tool":"write","callID":"c1","state":{"status":"error","input":{"filePath":"/w/a.txt"},"error":"rejected"}}}"#;
        assert_eq!(
            kinds(&p.push_line(failed)),
            ["tool_started", "tool_finished"]
        );
        assert!(
            p.report().edited_paths.is_empty(),
            "a failed write edits nothing"
        );
        let patch = r#"{"type":"tool_use","part":{"tool":"apply_patch","callID":"c2","state":{"status":"completed","input":{"patchText":"*** Begin Patch\n*** Add File: new.txt\n+x\n*** Update File: old.txt\n*** End Patch"}}}}"#;
        assert_eq!(
            kinds(&p.push_line(patch)),
            [
                "tool_started",
                "tool_finished",
                "file_edited",
                "file_edited"
            ]
        );
        assert_eq!(p.report().edited_paths, ["new.txt", "old.txt"]);
    }

    #[test]
    fn errors_reasoning_and_unknown_lines() {
        let mut p = StreamParser::new();
        let err = r#"{"type":"error","sessionID":"ses_9","error":{"name":"APIError","data":{"message":"Cannot connect to API"}}}"#;
        assert_eq!(kinds(&p.push_line(err)), ["session", "notice"]);
        assert_eq!(p.report().errors, ["APIError: Cannot connect to API"]);
        assert_eq!(
            kinds(&p.push_line(r#"{"type":"reasoning","part":{"text":"hmm"}}"#)),
            ["reasoning"]
        );
        assert!(
            p.push_line(r#"{"type":"future_thing","part":{}}"#)
                .is_empty()
        );
        assert!(p.push_line("   ").is_empty());
        assert_eq!(kinds(&p.push_line("[1,2]")), ["notice"]);
        assert_eq!(kinds(&p.push_line(r#"{"no":"type"}"#)), ["notice"]);
        assert_eq!(p.report().malformed_lines, 2);
    }

    #[test]
    fn malformed_notices_are_capped() {
        let mut p = StreamParser::new();
        let notices: usize = (0..100)
            .map(|i| p.push_line(&format!("garbage {i}")).len())
            .sum();
        assert_eq!(notices as u64, MAX_MALFORMED_NOTICES);
        assert_eq!(p.report().malformed_lines, 100);
    }

    #[test]
    fn summary_is_the_last_step_with_text_and_usage_sums() {
        let mut p = StreamParser::new();
        let lines = [
            r#"{"type":"step_start","part":{}}"#,
            r#"{"type":"text","part":{"id":"t1","text":"I'll do it."}}"#,
            r#"{"type":"step_finish","part":{"reason":"tool-calls","tokens":{"input":10,"output":2,"reasoning":1,"cache":{"read":5,"write":3}},"cost":0.25}}"#,
            r#"{"type":"step_start","part":{}}"#,
            r#"{"type":"text","part":{"id":"t2","text":"Done: part one."}}"#,
            r#"{"type":"text","part":{"id":"t3","text":"Part two."}}"#,
            r#"{"type":"text","part":{"id":"t3","text":"Part two, revised."}}"#,
            r#"{"type":"step_finish","part":{"reason":"stop","tokens":{"input":20.0,"output":4,"cache":{"read":1}},"cost":0.5}}"#,
        ];
        for l in lines {
            p.push_line(l);
        }
        let r = p.report();
        assert_eq!(r.summary, "Done: part one.\n\nPart two, revised.");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 30,
                output_tokens: 6,
                reasoning_tokens: 1,
                cache_read_tokens: 6,
                cache_write_tokens: 3
            }
        );
        assert_eq!(r.cost_usd, Some(0.75));
        assert!(r.turn_finished);
    }

    #[test]
    fn secrets_are_redacted() {
        let token = format!("ghp_{}", "k3Y9".repeat(9));
        let mut p = StreamParser::new();
        let line = serde_json::json!({"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"completed","input":{"command":format!("echo {token}")},"output":format!("{token}\n")}}}).to_string();
        let events = p.push_line(&line);
        let shown = format!("{events:?} {:?}", p.report());
        assert!(!shown.contains("k3Y9k3Y9"), "{shown}");
    }

    #[test]
    fn truncation_keeps_both_ends_on_char_boundaries() {
        let text = "é".repeat(100_000);
        let cut = truncate_middle(&text, 1000);
        assert!(
            cut.len() < 1100
                && cut.starts_with('é')
                && cut.ends_with('é')
                && cut.contains("bytes cut")
        );
        assert_eq!(truncate_middle("short", 10), "short");
    }
}
