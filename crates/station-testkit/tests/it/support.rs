//! Request bodies shaped like the real clients' and an SSE reader.

use serde_json::{Value, json};

/// One SSE frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

impl Frame {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("frame data is not JSON ({e}): {}", self.data))
    }
}

/// Split an SSE body into frames.
pub(crate) fn frames(body: &str) -> Vec<Frame> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut frame = Frame {
                event: None,
                data: String::new(),
            };
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    frame.event = Some(e.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    frame.data.push_str(d);
                }
            }
            frame
        })
        .collect()
}

fn tool_schema(props: &[&str], required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|p| ((*p).to_owned(), json!({"type": "string"})))
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

/// The tools OpenCode offers (subset), as OpenAI function tools.
pub(crate) fn opencode_tools() -> Value {
    let tools = [
        (
            "write",
            tool_schema(&["content", "filePath"], &["content", "filePath"]),
        ),
        (
            "edit",
            tool_schema(
                &["filePath", "newString", "oldString", "replaceAll"],
                &["filePath", "oldString", "newString"],
            ),
        ),
        (
            "bash",
            tool_schema(&["command", "timeout", "workdir"], &["command"]),
        ),
        (
            "read",
            tool_schema(&["filePath", "limit", "offset"], &["filePath"]),
        ),
    ];
    tools
        .into_iter()
        .map(|(name, parameters)| json!({"type": "function", "function": {"name": name, "description": "d", "parameters": parameters}}))
        .collect()
}

/// The tools Claude Code offers (subset), plus an MCP-style tool.
pub(crate) fn claude_tools() -> Value {
    let tools = [
        (
            "Write",
            tool_schema(&["content", "file_path"], &["file_path", "content"]),
        ),
        (
            "Edit",
            tool_schema(
                &["file_path", "new_string", "old_string", "replace_all"],
                &["file_path", "old_string", "new_string"],
            ),
        ),
        (
            "Bash",
            tool_schema(&["command", "description", "timeout"], &["command"]),
        ),
        ("coding_open", tool_schema(&["repo"], &["repo"])),
    ];
    tools
        .into_iter()
        .map(|(name, schema)| json!({"name": name, "description": "d", "input_schema": schema}))
        .collect()
}

/// An OpenCode-style chat-completions body: system prompt with the working directory, the
/// quoted prompt, then `history`.
pub(crate) fn openai_body(prompt: &str, history: &[Value], stream: bool) -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": "You are opencode.\n<env>\n  Working directory: /work/ws\n  Platform: linux\n</env>"}),
        json!({"role": "user", "content": format!("\"{prompt}\"")}),
    ];
    messages.extend_from_slice(history);
    json!({"model": "fake-model", "max_tokens": 4096, "tool_choice": "auto", "stream": stream,
           "stream_options": {"include_usage": true}, "messages": messages, "tools": opencode_tools()})
}

/// A Claude-style messages body: system blocks with the working directory, reminder blocks
/// around the prompt, a mid-conversation system entry, then `history`.
pub(crate) fn anthropic_body(prompt: &str, history: &[Value], stream: bool) -> Value {
    let mut messages = vec![
        json!({"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nSkills are available.\n</system-reminder>"},
            {"type": "text", "text": prompt}
        ]}),
        json!({"role": "system", "content": "Available agent types: general"}),
    ];
    messages.extend_from_slice(history);
    json!({"model": "claude-opus-4-8", "max_tokens": 64000, "stream": stream,
           "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197"},
                      {"type": "text", "text": "You are Claude Code.\n<env>\n - Primary working directory: /work/cc\n</env>"}],
           "messages": messages, "tools": claude_tools(), "thinking": {"type": "adaptive"},
           "metadata": {"user_id": "{\"device\":\"x\"}"}, "output_config": {"effort": "high"}})
}
