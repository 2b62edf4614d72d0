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
//! All text that leaves the parser (events and report) goes through the global redactor, once.
//!
//! Lines are read into borrowing structs of only the fields used ([`Line`]); everything else is
//! skipped without being built, and strings without escapes are not copied. Every field reads
//! leniently: a value of another JSON type than expected counts as absent rather than failing
//! the line. The few lines serde cannot read that way (repeated keys) are read through a
//! `serde_json::Value` first, with the same result as before.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use station_core::redact::{self, Redactor};
use station_core::{EventKind, ToolCall, Usage};

/// Tool output kept per call (in events and in the outcome); the middle of longer output is cut.
pub(crate) const MAX_TOOL_OUTPUT_BYTES: usize = 64 * 1024;

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
    /// Per entry of `report.tool_calls`: whether its end was reported.
    finished_calls: Vec<bool>,
    step_open: bool,
}

impl StreamParser {
    /// A parser that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the last step finished the agent's turn (a `step_finish` that asks for no tools).
    pub fn turn_finished(&self) -> bool {
        self.report.turn_finished
    }

    /// What the run amounted to so far.
    #[cfg(test)]
    fn report(&self) -> &RunReport {
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
        match serde_json::from_str::<TopLevel<Line<'_>>>(trimmed) {
            Ok(TopLevel(parsed)) => self.handle(trimmed, parsed),
            // Not JSON, not an object, or a line the typed read refuses (a repeated key).
            Err(_) => self.push_value_line(trimmed),
        }
    }

    /// The slow path: the line as a `Value` (which tells why a line is malformed, and keeps the
    /// last of repeated keys), then read into the same typed line.
    fn push_value_line(&mut self, trimmed: &str) -> Vec<EventKind> {
        let value: Value = match serde_json::from_str(trimmed) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return self.malformed(trimmed, "not a JSON object"),
            Err(_) => return self.malformed(trimmed, "not JSON"),
        };
        match Line::deserialize(&value) {
            Ok(parsed) => self.handle(trimmed, parsed),
            Err(_) => self.malformed(trimmed, "not JSON"),
        }
    }

    fn handle(&mut self, trimmed: &str, line: Line<'_>) -> Vec<EventKind> {
        let Some(kind) = line.kind.as_str() else {
            return self.malformed(trimmed, "no `type`");
        };
        let mut events = Vec::new();
        let Obj(part) = line.part;
        if self.report.session_id.is_none() {
            // The top-level id wins whenever it is a string, even an empty one.
            let session = line
                .session_id
                .as_str()
                .or_else(|| part.session_id.as_str())
                .filter(|s| !s.is_empty());
            if let Some(id) = session {
                self.report.session_id = Some(id.to_string());
                events.push(EventKind::BackendSession {
                    backend_session_id: id.to_string(),
                });
            }
        }
        match kind {
            "step_start" => self.start_step(),
            "text" => self.text(part, &mut events),
            "reasoning" => {
                if let Some(text) = part.text.into_str().filter(|t| !t.trim().is_empty()) {
                    events.push(EventKind::Reasoning {
                        text: redacted(text),
                    });
                }
            }
            "tool_use" => self.tool(part, &mut events),
            "step_finish" => self.finish_step(&part, &mut events),
            "error" => {
                let message = redact::redact(&error_message(&line.error));
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

    fn text(&mut self, part: Part<'_>, events: &mut Vec<EventKind>) {
        let Some(text) = part.text.into_str() else {
            return;
        };
        if text.trim().is_empty() {
            return;
        }
        let text = redacted(text);
        let id = part.id.as_str();
        let step = self.current_step();
        match id.and_then(|id| step.text_ids.iter().position(|t| t.as_deref() == Some(id))) {
            Some(i) => step.texts[i] = text.clone(),
            None => {
                step.texts.push(text.clone());
                step.text_ids.push(id.map(str::to_string));
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

    fn tool(&mut self, part: Part<'_>, events: &mut Vec<EventKind>) {
        let Part {
            tool,
            call_id,
            id,
            state: Obj(state),
            ..
        } = part;
        let name = tool.as_str().unwrap_or("unknown").to_string();
        let status = state.status.as_str().unwrap_or("");
        let call_id = call_id.as_str().or_else(|| id.as_str());
        let numbered;
        let key = match call_id {
            Some(id) => id,
            None => {
                numbered = format!("#{}", self.report.tool_calls.len());
                &numbered
            }
        };
        let known = self.calls.get(key).copied();
        let finishing = matches!(status, "completed" | "error")
            && known.is_none_or(|i| !self.finished_calls[i]);
        // Paths come from the input as sent, before redaction.
        let paths = if finishing && status == "completed" && is_file_editing(&name) {
            let Obj(metadata) = &state.metadata;
            let meta_path = metadata
                .filepath
                .as_str()
                .or_else(|| metadata.filediff.0.file.as_str());
            edited_paths(&state.input, meta_path)
        } else {
            Vec::new()
        };
        let mut input = state.input;
        self.current_step();
        let call_id = call_id.map(str::to_string);
        let index = match known {
            Some(i) => {
                if !is_empty_input(&input) {
                    redact_value(&mut input);
                    self.report.tool_calls[i].input = input;
                }
                i
            }
            None => {
                redact_value(&mut input);
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
                self.finished_calls.push(false);
                let index = self.report.tool_calls.len() - 1;
                self.calls.insert(key.to_string(), index);
                index
            }
        };
        if !finishing {
            return;
        }
        self.finished_calls[index] = true;
        let output = state
            .output
            .into_str()
            .map(|o| truncate_middle_owned(redacted(o), MAX_TOOL_OUTPUT_BYTES));
        let error = (status == "error").then(|| {
            redacted(
                state
                    .error
                    .into_str()
                    .unwrap_or(Cow::Borrowed("the tool failed")),
            )
        });
        let Obj(time) = &state.time;
        let duration_ms = match (time.start.as_u64(), time.end.as_u64()) {
            (Some(start), Some(end)) if end >= start => Some(end - start),
            _ => None,
        };
        let call = &mut self.report.tool_calls[index];
        call.output = output.clone();
        call.error = error.clone();
        call.duration_ms = duration_ms;
        events.push(EventKind::ToolFinished {
            call_id,
            name,
            output,
            error,
        });
        for path in paths {
            if !self.report.edited_paths.contains(&path) {
                self.report.edited_paths.push(path.clone());
            }
            events.push(EventKind::FileEdited { path });
        }
    }

    fn finish_step(&mut self, part: &Part<'_>, events: &mut Vec<EventKind>) {
        let Obj(tokens) = &part.tokens;
        let Obj(cache) = &tokens.cache;
        let usage = Usage {
            input_tokens: tokens.input.as_u64().unwrap_or(0),
            output_tokens: tokens.output.as_u64().unwrap_or(0),
            reasoning_tokens: tokens.reasoning.as_u64().unwrap_or(0),
            cache_read_tokens: cache.read.as_u64().unwrap_or(0),
            cache_write_tokens: cache.write.as_u64().unwrap_or(0),
        };
        let cost = part.cost.as_f64();
        self.report.usage += usage;
        if let Some(c) = cost {
            *self.report.cost_usd.get_or_insert(0.0) += c;
        }
        let reason = part.reason.as_str().unwrap_or("").to_string();
        self.report.turn_finished = !CONTINUING_REASONS.contains(&reason.as_str());
        self.current_step().finish_reason = Some(reason);
        self.step_open = false;
        events.push(EventKind::StepFinished {
            usage,
            cost_usd: cost,
        });
    }
}

/// One line, as far as the parser reads it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Scalar<'a>,
    #[serde(rename = "sessionID", borrow)]
    session_id: Scalar<'a>,
    #[serde(borrow)]
    part: Obj<Part<'a>>,
    /// Whatever shape it has; only `error` lines carry it.
    error: Value,
}

/// A line's `part`: the fields of every part type the parser reads, flattened.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Part<'a> {
    #[serde(borrow)]
    id: Scalar<'a>,
    #[serde(rename = "sessionID", borrow)]
    session_id: Scalar<'a>,
    #[serde(borrow)]
    text: Scalar<'a>,
    #[serde(borrow)]
    tool: Scalar<'a>,
    #[serde(rename = "callID", borrow)]
    call_id: Scalar<'a>,
    #[serde(borrow)]
    state: Obj<ToolState<'a>>,
    #[serde(borrow)]
    reason: Scalar<'a>,
    #[serde(borrow)]
    tokens: Obj<Tokens<'a>>,
    #[serde(borrow)]
    cost: Scalar<'a>,
}

/// A `tool_use` part's `state`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ToolState<'a> {
    #[serde(borrow)]
    status: Scalar<'a>,
    /// Handed on as it is (redacted), so built whole.
    input: Value,
    #[serde(borrow)]
    output: Scalar<'a>,
    #[serde(borrow)]
    error: Scalar<'a>,
    #[serde(borrow)]
    time: Obj<Span<'a>>,
    #[serde(borrow)]
    metadata: Obj<ToolMetadata<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Span<'a> {
    #[serde(borrow)]
    start: Scalar<'a>,
    #[serde(borrow)]
    end: Scalar<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ToolMetadata<'a> {
    #[serde(borrow)]
    filepath: Scalar<'a>,
    #[serde(borrow)]
    filediff: Obj<FileDiff<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct FileDiff<'a> {
    #[serde(borrow)]
    file: Scalar<'a>,
}

/// A `step_finish` part's `tokens`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Tokens<'a> {
    #[serde(borrow)]
    input: Scalar<'a>,
    #[serde(borrow)]
    output: Scalar<'a>,
    #[serde(borrow)]
    reasoning: Scalar<'a>,
    #[serde(borrow)]
    cache: Obj<TokenCache<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct TokenCache<'a> {
    #[serde(borrow)]
    read: Scalar<'a>,
    #[serde(borrow)]
    write: Scalar<'a>,
}

/// A JSON value read as a string or a number; any other value reads as [`Scalar::Absent`] (as
/// `Value::as_str`/`as_u64` gave `None` for it), skipped without being built.
#[derive(Debug, Default)]
enum Scalar<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Scalar<'a> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer; floats are rounded down, negatives ignored.
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::U64(n) => Some(n),
            Scalar::I64(n) => u64::try_from(n).ok(),
            Scalar::F64(f) => (f.is_finite() && f >= 0.0).then_some(f as u64),
            _ => None,
        }
    }

    /// Any number, as `f64`.
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(n) => Some(n as f64),
            Scalar::I64(n) => Some(n as f64),
            Scalar::F64(f) => Some(f),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Scalar::Absent)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Scalar::Absent)
    }
}

/// A JSON object read into `T`; any other value reads as `T::default()` (as `Value::get` on a
/// non-object gave `None` for every key).
#[derive(Debug, Default)]
struct Obj<T>(T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Obj(T::default()))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }
}

/// The whole line: only a JSON object is accepted (a derived struct would also take an array).
struct TopLevel<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TopLevel<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = TopLevel<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(TopLevel)
            }
        }
        deserializer.deserialize_map(ObjectOnly(PhantomData))
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// `text` through the global redactor, copied only when it was borrowed and had nothing to cut.
fn redacted(text: Cow<'_, str>) -> String {
    let changed = match Redactor::global().redact(&text) {
        Cow::Owned(r) => Some(r),
        Cow::Borrowed(_) => None,
    };
    changed.unwrap_or_else(|| text.into_owned())
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn is_file_editing(tool: &str) -> bool {
    FILE_EDITING_TOOLS
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tool))
}

/// Absent or `{}`: a later line's input that does not replace the one already known.
fn is_empty_input(input: &Value) -> bool {
    match input {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
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

/// Paths a file-editing tool call changed: its input path (else its metadata path), and for
/// patch tools the files named in the patch text.
fn edited_paths(input: &Value, meta_path: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        let p = p.trim();
        if !p.is_empty() && !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    };
    let direct = ["filePath", "file_path", "path"]
        .iter()
        .find_map(|k| str_at(input, k));
    if let Some(p) = direct.or(meta_path) {
        add(p);
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

/// Redact every string inside a JSON value, in place (keys are names, not data).
fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(r) = Redactor::global().redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => map.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// `text` cut to about `max` bytes: its start and end, with a marker saying how much is missing.
pub(crate) fn truncate_middle(text: &str, max: usize) -> String {
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

/// [`truncate_middle`] of an owned text, which is kept as it is when short enough.
fn truncate_middle_owned(text: String, max: usize) -> String {
    if text.len() <= max {
        text
    } else {
        truncate_middle(&text, max)
    }
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
    fn every_emitted_text_is_redacted_escaped_or_not() {
        let token = format!("ghp_{}", "k3Y9".repeat(9));
        // `\u0067` is `g`: the token only appears once the JSON escape is decoded.
        let escaped = format!("\\u0067{}", &token[1..]);
        let lines = [
            format!(r#"{{"type":"text","part":{{"id":"t","text":"key {token}"}}}}"#),
            format!(r#"{{"type":"text","part":{{"id":"t2","text":"key {escaped}\n"}}}}"#),
            format!(r#"{{"type":"reasoning","part":{{"text":"{escaped}"}}}}"#),
            format!(
                r#"{{"type":"tool_use","part":{{"tool":"bash","callID":"c","state":{{"status":"error","input":{{"args":["{escaped}",{{"k":"{token}"}}]}},"error":"{escaped}"}}}}}}"#
            ),
            format!(r#"{{"type":"error","error":{{"name":"E","data":{{"message":"{token}"}}}}}}"#),
            format!("not json {token}"),
        ];
        let mut p = StreamParser::new();
        let events: Vec<EventKind> = lines.iter().flat_map(|l| p.push_line(l)).collect();
        assert_eq!(events.len(), 7, "{events:?}");
        let shown = format!("{events:?} {:?}", p.report());
        assert!(!shown.contains("k3Y9k3Y9"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn fields_of_unexpected_types_read_as_absent() {
        let mut p = StreamParser::new();
        assert_eq!(kinds(&p.push_line(r#"{"type":5,"part":{}}"#)), ["notice"]);
        assert_eq!(p.report().malformed_lines, 1);
        assert!(p.push_line(r#"{"type":"text","part":"oops"}"#).is_empty());
        assert!(
            p.push_line(r#"{"type":"text","part":{"text":["x"]}}"#)
                .is_empty()
        );
        let events = p.push_line(
            r#"{"type":"step_finish","part":{"reason":["x"],"tokens":{"input":-5,"output":3.9,"reasoning":"2","cache":{"read":1e3,"write":null}},"cost":"free"}}"#,
        );
        assert!(
            matches!(
                &events[..],
                [EventKind::StepFinished { usage, cost_usd: None }]
                    if *usage == Usage { output_tokens: 3, cache_read_tokens: 1000, ..Usage::default() }
            ),
            "{events:?}"
        );
        assert_eq!(
            p.report().steps[0].finish_reason.as_deref(),
            Some(""),
            "a non-string reason reads as empty"
        );
        let events = p.push_line(
            r#"{"type":"tool_use","part":{"tool":7,"callID":{"a":1},"id":"prt_1","state":[1,2]}}"#,
        );
        assert!(
            matches!(
                &events[..],
                [EventKind::ToolStarted { call_id: Some(id), name, input: Value::Null }]
                    if id == "prt_1" && name == "unknown"
            ),
            "{events:?}"
        );
        assert_eq!(p.report().malformed_lines, 1);
    }

    #[test]
    fn repeated_keys_keep_the_last_and_sessions_come_from_parts() {
        let mut p = StreamParser::new();
        let events = p.push_line(
            r#"{"type":"text","type":"reasoning","part":{"sessionID":"ses_p","text":"a","text":"b\u00e9\n"}}"#,
        );
        assert!(
            matches!(
                &events[..],
                [EventKind::BackendSession { backend_session_id }, EventKind::Reasoning { text }]
                    if backend_session_id == "ses_p" && text == "b\u{e9}\n"
            ),
            "{events:?}"
        );
        let mut p = StreamParser::new();
        let events =
            p.push_line(r#"{"type":"step_start","sessionID":"","part":{"sessionID":"ses_x"}}"#);
        assert!(
            events.is_empty() && p.report().session_id.is_none(),
            "an empty top-level id is no id, and the part's is not used instead"
        );
    }

    #[test]
    fn a_later_input_replaces_the_first_unless_empty() {
        let mut p = StreamParser::new();
        p.push_line(r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"pending","input":{}}}}"#);
        p.push_line(r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"running","input":{"command":"ls"}}}}"#);
        p.push_line(r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"completed","input":{},"output":"x"}}}"#);
        let calls = &p.report().tool_calls;
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].input, serde_json::json!({"command": "ls"}));
        assert_eq!(calls[0].output.as_deref(), Some("x"));
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
