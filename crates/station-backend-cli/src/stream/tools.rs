//! `tool_use` lines: tool calls, their outputs, and the files they edited.

use std::borrow::Cow;

use serde_json::Value;
use station_core::{EventKind, ToolCall};

use super::text::{redact_value, redacted, truncate_middle_owned};
use super::wire::{Obj, Part};
use super::{MAX_TOOL_OUTPUT_BYTES, StreamParser, str_at};

/// Tools that change files, by the names OpenCode gives them.
const FILE_EDITING_TOOLS: &[&str] = &["write", "edit", "multiedit", "patch", "apply_patch"];

impl StreamParser {
    pub(super) fn tool(&mut self, part: Part<'_>, events: &mut Vec<EventKind>) {
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
