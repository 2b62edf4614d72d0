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
//! Lines are read into borrowing structs of only the fields used ([`wire::Line`]); everything
//! else is skipped without being built, and strings without escapes are not copied. Every field
//! reads leniently: a value of another JSON type than expected counts as absent rather than
//! failing the line. The few lines serde cannot read that way (repeated keys) are read through a
//! `serde_json::Value` first, with the same result as before.

mod report;
#[cfg(test)]
mod tests;
mod text;
mod tools;
mod wire;

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use station_core::redact;
use station_core::{EventKind, Usage};

pub use report::{RunReport, Step};

use text::redacted;
use wire::{Line, Obj, Part, TopLevel};

/// Tool output kept per call (in events and in the outcome); the middle of longer output is cut.
pub(crate) const MAX_TOOL_OUTPUT_BYTES: usize = 64 * 1024;

/// Malformed lines reported as `Notice` events; later ones are only counted.
const MAX_MALFORMED_NOTICES: u64 = 10;

/// How much of a malformed line a notice quotes.
const MALFORMED_QUOTE_CHARS: usize = 120;

/// `step_finish` reasons after which the agent loop calls the model again.
const CONTINUING_REASONS: &[&str] = &["tool-calls", "tool_calls"];

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

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
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
