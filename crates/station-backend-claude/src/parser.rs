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

use serde::Deserialize;
use serde_json::Value;
use station_core::{EventKind, Usage};

pub use report::{ApiError, RunReport, RunResult};

use text::redacted;
use wire::{Line, Obj, Str};

mod messages;
mod report;
#[cfg(test)]
mod tests;
mod text;
mod wire;

/// Tool output kept per call (in events and in the outcome); the rest is cut off.
pub const MAX_TOOL_OUTPUT_BYTES: usize = 32 * 1024;

/// Malformed lines reported as `Notice` events; later ones are only counted.
const MAX_MALFORMED_NOTICES: usize = 10;

/// How much of a malformed line a notice quotes.
const MALFORMED_QUOTE_CHARS: usize = 120;

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
