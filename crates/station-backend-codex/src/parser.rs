//! A tolerant parser for `codex exec --json` output (one JSON event per line).
//!
//! Feed it stdout line by line ([`ExecParser::push_line`]); each line yields its
//! [`EventKind`]s at once. [`ExecParser::report`] says what the run amounted to.
//!
//! | line | events | kept for the outcome |
//! | --- | --- | --- |
//! | `thread.started` | `BackendSession` | the thread id |
//! | `item.started` (command, file change, MCP call, web search) | `ToolStarted` | the call |
//! | `item.completed` `agent_message` / `reasoning` | `Text` / `Reasoning` | the last message (summary) |
//! | `item.completed` command / file change / MCP call / web search | (`ToolStarted` if not yet sent) `ToolFinished`, `FileEdited` per changed file | output, error |
//! | `item.*` `todo_list` | `Notice` (the checklist) | |
//! | `item.completed` `error` (a warning, e.g. unknown model) | `Notice` | |
//! | `turn.completed` | `StepFinished` (tokens) | usage, summed |
//! | `turn.failed`, `error` | `Notice` | the error (`Reconnecting… n/m` retries only as notices) |
//! | not JSON | `Notice` (the first few) | a count |
//!
//! Codex reports no cost. Its token counts are mapped onto [`Usage`]: cached (and cache-write)
//! input is taken out of `input_tokens`, reasoning out of `output_tokens`, as Codex counts both
//! inside the totals.

use std::collections::HashMap;

use serde_json::{Value, json};
use station_core::redact::redact;
use station_core::{EventKind, ToolCall, Usage};

/// Tool output kept per call (in events and in the outcome); the rest is cut off.
pub const MAX_TOOL_OUTPUT_BYTES: usize = 32 * 1024;

/// Malformed lines reported as `Notice` events; later ones are only counted.
const MAX_MALFORMED_NOTICES: usize = 10;

/// How much of a malformed line a notice quotes.
const MALFORMED_QUOTE_CHARS: usize = 120;

/// What a run amounted to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// The thread id (`thread.started`).
    pub thread_id: Option<String>,
    /// The last agent message: the final answer.
    pub summary: String,
    /// Tokens over every turn.
    pub usage: Usage,
    /// Tool calls in the order they started.
    pub tool_calls: Vec<ToolCall>,
    /// `turn.completed` came.
    pub turn_completed: bool,
    /// `turn.failed` came, with this message.
    pub turn_failed: Option<String>,
    /// The last `error` event that was not a retry notice.
    pub last_error: Option<String>,
    /// Lines that were not JSON.
    pub malformed_lines: usize,
}

/// Turns `codex exec --json` lines into events; see the module docs.
#[derive(Debug, Default)]
pub struct ExecParser {
    report: RunReport,
    calls_by_item: HashMap<String, usize>,
}

impl ExecParser {
    /// A parser that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the run amounted to so far.
    pub fn report(&self) -> &RunReport {
        &self.report
    }

    /// The turn ended (completed or failed): Codex exits next.
    pub fn turn_ended(&self) -> bool {
        self.report.turn_completed || self.report.turn_failed.is_some()
    }

    /// Parse one line of stdout; returns its events in order.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut events = Vec::new();
        let line = line.trim();
        if line.is_empty() {
            return events;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value) => self.event(&value, &mut events),
            Err(e) => self.malformed(line, &e, &mut events),
        }
        events
    }

    fn event(&mut self, value: &Value, events: &mut Vec<EventKind>) {
        match str_at(value, "type") {
            Some("thread.started") => {
                if let Some(id) = str_at(value, "thread_id").filter(|id| !id.is_empty())
                    && self.report.thread_id.as_deref() != Some(id)
                {
                    self.report.thread_id = Some(id.to_owned());
                    events.push(EventKind::BackendSession {
                        backend_session_id: id.to_owned(),
                    });
                }
            }
            Some("item.started" | "item.updated") => {
                if let Some(item) = value.get("item") {
                    self.item_started(item, events);
                }
            }
            Some("item.completed") => {
                if let Some(item) = value.get("item") {
                    self.item_completed(item, events);
                }
            }
            Some("turn.completed") => {
                let usage = usage(value.get("usage").unwrap_or(&Value::Null));
                self.report.usage += usage;
                self.report.turn_completed = true;
                events.push(EventKind::StepFinished {
                    usage,
                    cost_usd: None,
                });
            }
            Some("turn.failed") => {
                let message = error_text(value.pointer("/error/message"));
                events.push(EventKind::Notice {
                    message: format!("codex: the turn failed: {message}"),
                });
                self.report.turn_failed = Some(message);
            }
            Some("error") => {
                let message = error_text(value.get("message"));
                if !message.starts_with("Reconnecting") {
                    self.report.last_error = Some(message.clone());
                }
                events.push(EventKind::Notice {
                    message: format!("codex: {message}"),
                });
            }
            Some("turn.started") => {}
            other => tracing::debug!(event = ?other, "codex event ignored"),
        }
    }

    fn item_started(&mut self, item: &Value, events: &mut Vec<EventKind>) {
        match str_at(item, "type") {
            Some("todo_list") => events.push(todo_notice(item)),
            Some(_) => {
                self.start_call(item, events);
            }
            None => {}
        }
    }

    fn item_completed(&mut self, item: &Value, events: &mut Vec<EventKind>) {
        match str_at(item, "type") {
            Some("agent_message") => {
                let text = str_at(item, "text").unwrap_or_default().to_owned();
                self.report.summary = text.clone();
                events.push(EventKind::Text { text });
            }
            Some("reasoning") => events.push(EventKind::Reasoning {
                text: str_at(item, "text").unwrap_or_default().to_owned(),
            }),
            Some("todo_list") => events.push(todo_notice(item)),
            Some("error") => events.push(EventKind::Notice {
                message: format!("codex: {}", error_text(item.get("message"))),
            }),
            Some(_) => {
                let Some(index) = self.start_call(item, events) else {
                    return;
                };
                let (output, error) = call_result(item);
                let call = &mut self.report.tool_calls[index];
                call.output = output.clone();
                call.error = error.clone();
                if error.is_none() && str_at(item, "type") == Some("file_change") {
                    for path in changed_paths(item) {
                        events.push(EventKind::FileEdited { path });
                    }
                }
                events.push(EventKind::ToolFinished {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    output,
                    error,
                });
            }
            None => {}
        }
    }

    /// The call for a tool item, started (and announced) the first time it is seen; `None`
    /// for items that are not tool calls.
    fn start_call(&mut self, item: &Value, events: &mut Vec<EventKind>) -> Option<usize> {
        let (name, input) = call_of(item)?;
        let id = str_at(item, "id").map(str::to_owned);
        if let Some(index) = id.as_ref().and_then(|id| self.calls_by_item.get(id)) {
            return Some(*index);
        }
        let index = self.report.tool_calls.len();
        if let Some(id) = &id {
            self.calls_by_item.insert(id.clone(), index);
        }
        events.push(EventKind::ToolStarted {
            call_id: id.clone(),
            name: name.clone(),
            input: input.clone(),
        });
        self.report.tool_calls.push(ToolCall {
            id,
            name,
            input,
            output: None,
            error: None,
            duration_ms: None,
        });
        Some(index)
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
            events.push(EventKind::Notice {
                message: redact(&format!(
                    "skipped a line of codex output that is not JSON ({error}; {} bytes): {quote}{more}",
                    line.len()
                )),
            });
        } else if n == MAX_MALFORMED_NOTICES + 1 {
            events.push(EventKind::Notice {
                message: "more lines of codex output are not JSON; they are skipped without further notice".into(),
            });
        }
    }
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// An error message, redacted; an API error body (`{"error":{"message":…}}`) is unwrapped.
fn error_text(message: Option<&Value>) -> String {
    let text = match message {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "no message".to_owned(),
    };
    let inner = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        v.pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    redact(inner.as_deref().unwrap_or(&text))
}

/// Codex's token counts as [`Usage`] (see the module docs).
fn usage(value: &Value) -> Usage {
    let n = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cached_input_tokens");
    let cache_write = n("cache_write_input_tokens");
    let reasoning = n("reasoning_output_tokens");
    Usage {
        input_tokens: n("input_tokens").saturating_sub(cached + cache_write),
        output_tokens: n("output_tokens").saturating_sub(reasoning),
        reasoning_tokens: reasoning,
        cache_read_tokens: cached,
        cache_write_tokens: cache_write,
    }
}

/// The tool name and input of an item that is a tool call. File changes are named by what they
/// do (`write` adds, `edit` updates, `delete`), so they read like other agents' tools.
fn call_of(item: &Value) -> Option<(String, Value)> {
    match str_at(item, "type")? {
        "command_execution" => Some((
            "bash".into(),
            json!({"command": str_at(item, "command").unwrap_or_default()}),
        )),
        "file_change" => {
            let changes = item.get("changes").cloned().unwrap_or(Value::Null);
            let kinds: Vec<&str> = changes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| str_at(c, "kind"))
                .collect();
            let name = match kinds.first() {
                Some(first) if kinds.iter().all(|k| k == first) => match *first {
                    "add" => "write",
                    "update" => "edit",
                    "delete" => "delete",
                    _ => "apply_patch",
                },
                _ => "apply_patch",
            };
            Some((name.into(), json!({ "changes": changes })))
        }
        "mcp_tool_call" => Some((
            format!(
                "{}.{}",
                str_at(item, "server").unwrap_or("mcp"),
                str_at(item, "tool").unwrap_or("tool")
            ),
            item.get("arguments").cloned().unwrap_or(Value::Null),
        )),
        "web_search" => Some((
            "web_search".into(),
            json!({"query": str_at(item, "query").unwrap_or_default()}),
        )),
        _ => None,
    }
}

/// Output and error of a finished tool item.
fn call_result(item: &Value) -> (Option<String>, Option<String>) {
    let status = str_at(item, "status").unwrap_or("completed");
    let failed = matches!(status, "failed" | "declined");
    match str_at(item, "type") {
        Some("command_execution") => {
            let output = str_at(item, "aggregated_output").map(cut);
            let code = item.get("exit_code").and_then(Value::as_i64);
            let error = match code {
                Some(0) if !failed => None,
                Some(code) => Some(format!("exit code {code}")),
                None if failed => Some(format!("command {status}")),
                None => None,
            };
            (output, error)
        }
        Some("mcp_tool_call") => {
            let text = item
                .pointer("/result/content")
                .and_then(Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| str_at(p, "text"))
                        .collect::<Vec<_>>()
                        .join("\n")
                });
            let error = item
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(redact)
                .or_else(|| failed.then(|| format!("MCP call {status}")));
            (text.map(|t| cut(&t)), error)
        }
        _ => (None, failed.then(|| status.to_string())),
    }
}

fn changed_paths(item: &Value) -> Vec<String> {
    item.get("changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| str_at(c, "path").map(str::to_owned))
        .collect()
}

fn todo_notice(item: &Value) -> EventKind {
    let steps: Vec<String> = item
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|step| {
            let done = step.get("completed").and_then(Value::as_bool) == Some(true);
            let mark = if done { "x" } else { " " };
            format!("[{mark}] {}", str_at(step, "text").unwrap_or_default())
        })
        .collect();
    EventKind::Notice {
        message: format!("codex plan: {}", steps.join("; ")),
    }
}

/// `text` redacted and cut to [`MAX_TOOL_OUTPUT_BYTES`] at a char boundary.
fn cut(text: &str) -> String {
    let text = redact(text);
    if text.len() <= MAX_TOOL_OUTPUT_BYTES {
        return text;
    }
    let mut end = MAX_TOOL_OUTPUT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_takes_cached_and_reasoning_out_of_the_totals() {
        let u = usage(&json!({"input_tokens": 100, "cached_input_tokens": 30,
            "cache_write_input_tokens": 10, "output_tokens": 50, "reasoning_output_tokens": 20}));
        assert_eq!(
            u,
            Usage {
                input_tokens: 60,
                output_tokens: 30,
                reasoning_tokens: 20,
                cache_read_tokens: 30,
                cache_write_tokens: 10,
            }
        );
        assert_eq!(
            usage(&json!({"input_tokens": 1, "cached_input_tokens": 5})).input_tokens,
            0
        );
    }

    #[test]
    fn api_error_bodies_are_unwrapped() {
        let body = json!("{\"error\":{\"message\":\"bad key\",\"type\":\"x\"}}");
        assert_eq!(error_text(Some(&body)), "bad key");
        assert_eq!(error_text(Some(&json!("plain"))), "plain");
        assert_eq!(error_text(None), "no message");
    }

    #[test]
    fn long_output_is_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_TOOL_OUTPUT_BYTES);
        let cut = cut(&long);
        assert!(
            cut.len() < long.len() && cut.ends_with("bytes cut]"),
            "{}",
            cut.len()
        );
    }
}
