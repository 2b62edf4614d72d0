//! Model messages: `stream_event` deltas, `assistant` content blocks and `user` tool results.

use std::borrow::Cow;

use serde_json::Value;
use station_core::{EventKind, ToolCall, Usage};

use super::text::{redact_json, redacted, truncate_owned};
use super::wire::{Block, Line, ResultContent};
use super::{ApiError, MAX_TOOL_OUTPUT_BYTES, OpenStep, StreamParser};

/// Tools whose input names a file they change, and the input key that holds the path.
const FILE_EDITING_TOOLS: &[(&str, &str)] = &[
    ("Write", "file_path"),
    ("Edit", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
];

impl StreamParser {
    pub(super) fn stream_event(&mut self, line: Line<'_>, events: &mut Vec<EventKind>) {
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

    pub(super) fn assistant(&mut self, line: Line<'_>, events: &mut Vec<EventKind>) {
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

    pub(super) fn tool_use(&mut self, block: Block<'_>, events: &mut Vec<EventKind>) {
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

    pub(super) fn user(&mut self, line: Line<'_>, events: &mut Vec<EventKind>) {
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
}

/// A tool result's `content` that is not a string: a list of blocks (`text`, `image`, ...), or
/// any other JSON.
pub(super) fn tool_result_text(content: Option<&Value>) -> String {
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
