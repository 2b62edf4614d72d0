//! Reading a model request: which API, the real user prompt, the turn, the offered tools, the
//! working directory; and the record kept of it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::script::Fault;

/// Which wire API a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Api {
    /// OpenAI Chat Completions (`/v1/chat/completions`), as OpenCode's openai-compatible provider calls it.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages (`/v1/messages`), as Claude Code calls it.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// The Gemini API (`/v1beta/models/{m}:streamGenerateContent`), as the Gemini CLI calls it.
    #[serde(rename = "gemini")]
    Gemini,
    /// OpenAI Responses (`/v1/responses`), as Codex calls it.
    #[serde(rename = "responses")]
    Responses,
}

/// Token counts the server reported for one reply.
///
/// Deterministic: `input_tokens = 1 + chars(conversation_text) / 4` and
/// `output_tokens = 1 + (chars(reply text) + chars(tool arguments JSON)) / 4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens (`prompt_tokens` / `input_tokens`).
    pub input_tokens: u64,
    /// Completion tokens (`completion_tokens` / `output_tokens`).
    pub output_tokens: u64,
}

/// A tool call the server sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedToolCall {
    /// The call id (`call_…` or `toolu_…`).
    pub id: String,
    /// The tool name as offered by the client (e.g. `write` or `Write`).
    pub name: String,
    /// The arguments after mapping onto the offered schema.
    pub arguments: Value,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordedReply {
    /// HTTP status.
    pub status: u16,
    /// All reply text (the text before a tool call included).
    pub text: String,
    /// The tool call, if the reply made one.
    pub tool_call: Option<RecordedToolCall>,
    /// The fault injected instead of a normal reply.
    pub fault: Option<Fault>,
    /// The usage reported in the reply.
    pub usage: Option<TokenUsage>,
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// The API (guessed from the path and headers for unknown routes).
    pub api: Api,
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The `model` field of the body.
    pub model: Option<String>,
    /// The parsed JSON body (`null` when it was not JSON).
    pub body: Value,
    /// The last real user prompt (reminder blocks and one pair of enclosing quotes removed).
    pub prompt: Option<String>,
    /// Assistant messages after the prompt: the index of the step that answered.
    pub turn: Option<usize>,
    /// Names of the tools the client offered.
    pub offered_tools: Vec<String>,
    /// Whether the body asked for a streamed reply.
    pub stream: bool,
    /// A model request that offered no tools (title or other side call): the script did not advance.
    pub side_call: bool,
    /// Request headers, names lower-cased, without `authorization`, `x-api-key` and cookies.
    pub headers: Vec<(String, String)>,
    /// What the server answered.
    pub reply: RecordedReply,
}

impl RecordedRequest {
    /// All message text joined by newlines: system prompt, user and assistant text, tool
    /// arguments and tool results.
    pub fn conversation_text(&self) -> String {
        conversation_text(self.api, &self.body)
    }

    /// A request header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client offered a tool with exactly this name.
    pub fn offered(&self, tool: &str) -> bool {
        self.offered_tools.iter().any(|t| t == tool)
    }
}

/// A tool the client offered, with its schema's property names (`None` when it has no schema).
#[derive(Debug, Clone)]
pub(crate) struct OfferedTool {
    pub(crate) name: String,
    pub(crate) properties: Option<Vec<String>>,
}

/// A model request, understood.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) tools: Vec<OfferedTool>,
    pub(crate) working_dir: Option<String>,
    pub(crate) prompt: Option<String>,
    pub(crate) turn: usize,
    /// `Some(schema)` when the client asked for JSON output (`Value::Null` for a schema-less
    /// JSON mode).
    pub(crate) json_schema: Option<Value>,
    /// The system prompt asks for a title (OpenCode's title generator).
    pub(crate) title_request: bool,
    pub(crate) input_tokens: u64,
}

/// Understand a chat-completions or messages body; `Err` is a message for a 400 reply.
pub(crate) fn parse_conversation(api: Api, body: &Value) -> Result<Conversation, String> {
    if api == Api::Gemini {
        return super::gemini::parse_conversation(body, None, false).map(|(conv, _)| conv);
    }
    if api == Api::Responses {
        return super::responses::parse_conversation(body);
    }
    let Some(object) = body.as_object() else {
        return Err("the request body must be a JSON object".into());
    };
    let Some(messages) = object.get("messages").and_then(Value::as_array) else {
        return Err("`messages` must be an array".into());
    };
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stream = object
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tools = offered_tools(api, body);
    let (prompt_index, prompt) = match api {
        Api::OpenAi | Api::Responses => openai_prompt(messages),
        Api::Anthropic => anthropic_prompt(messages),
        Api::Gemini => None,
    }
    .map_or((None, None), |(i, p)| (Some(i), Some(p)));
    let turn = messages
        .iter()
        .skip(prompt_index.map_or(0, |i| i + 1))
        .filter(|m| role(m) == Some("assistant"))
        .count();
    let include_usage = match api {
        Api::OpenAi => body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        Api::Anthropic | Api::Gemini | Api::Responses => true,
    };
    let json_schema = match api {
        Api::OpenAi | Api::Responses => openai_json_schema(body),
        Api::Anthropic => anthropic_json_schema(body),
        Api::Gemini => None,
    };
    let text = conversation_text(api, body);
    let system = system_text(api, body);
    Ok(Conversation {
        model,
        stream,
        include_usage,
        tools,
        working_dir: working_dir(&system),
        title_request: system.to_lowercase().contains("title"),
        prompt,
        turn,
        json_schema,
        input_tokens: token_estimate(&text),
    })
}

/// The deterministic token count of `text`.
pub(crate) fn token_estimate(text: &str) -> u64 {
    1 + u64::try_from(text.chars().count() / 4).unwrap_or(u64::MAX - 1)
}

/// The names and schema properties of the offered tools.
pub(crate) fn offered_tools(api: Api, body: &Value) -> Vec<OfferedTool> {
    let Some(tools) = body.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|tool| {
            let (name, schema) = match api {
                Api::OpenAi => {
                    let function = tool.get("function")?;
                    (function.get("name")?.as_str()?, function.get("parameters"))
                }
                Api::Anthropic => (tool.get("name")?.as_str()?, tool.get("input_schema")),
                Api::Gemini => return None,
                Api::Responses => (tool.get("name")?.as_str()?, tool.get("parameters")),
            };
            let properties = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect());
            Some(OfferedTool {
                name: name.to_owned(),
                properties,
            })
        })
        .collect()
}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// OpenAI: the last `role:"user"` message.
fn openai_prompt(messages: &[Value]) -> Option<(usize, String)> {
    let (index, message) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| role(m) == Some("user"))?;
    let mut parts = Vec::new();
    collect_content_text(message.get("content").unwrap_or(&Value::Null), &mut parts);
    Some((index, clean_prompt(&parts.join("\n"))))
}

/// Anthropic: the last user message without a `tool_result` block, reminder blocks dropped.
fn anthropic_prompt(messages: &[Value]) -> Option<(usize, String)> {
    let (index, message) = messages.iter().enumerate().rev().find(|(_, m)| {
        role(m) == Some("user")
            && !m
                .get("content")
                .and_then(Value::as_array)
                .is_some_and(|blocks| blocks.iter().any(|b| block_type(b) == Some("tool_result")))
    })?;
    let parts: Vec<String> = match message.get("content") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| block_type(b) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Some((index, clean_prompt(&parts.join("\n"))))
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

/// Drop `<system-reminder>` sections, trim, and strip one pair of enclosing double quotes.
pub(crate) fn clean_prompt(text: &str) -> String {
    const OPEN: &str = "<system-reminder>";
    const CLOSE: &str = "</system-reminder>";
    let mut rest = text;
    let mut out = String::with_capacity(text.len());
    // Each pass consumes at least one opening tag, so this ends.
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        rest = after
            .find(CLOSE)
            .map_or("", |end| &after[end + CLOSE.len()..]);
    }
    out.push_str(rest);
    let trimmed = out.trim();
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(trimmed);
    unquoted.to_owned()
}

/// Push the text of a message `content` (a string or a list of blocks/parts).
fn collect_content_text(content: &Value, out: &mut Vec<String>) {
    match content {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => {
            for item in items {
                collect_block_text(item, out);
            }
        }
        _ => {}
    }
}

fn collect_block_text(block: &Value, out: &mut Vec<String>) {
    match block {
        Value::String(s) => out.push(s.clone()),
        Value::Object(map) => {
            if let Some(text) = map.get("text").and_then(Value::as_str) {
                out.push(text.to_owned());
            }
            if let Some(input) = map.get("input") {
                out.push(input.to_string());
            }
            if let Some(content) = map.get("content") {
                collect_content_text(content, out);
            }
        }
        _ => {}
    }
}

/// All text of the request, in order (see [`RecordedRequest::conversation_text`]).
pub(crate) fn conversation_text(api: Api, body: &Value) -> String {
    if api == Api::Gemini {
        return super::gemini::conversation_text(body);
    }
    if api == Api::Responses {
        return super::responses::conversation_text(body);
    }
    let mut parts = Vec::new();
    if api == Api::Anthropic {
        collect_content_text(body.get("system").unwrap_or(&Value::Null), &mut parts);
    }
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_content_text(message.get("content").unwrap_or(&Value::Null), &mut parts);
        for call in message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                parts.push(args.to_owned());
            }
        }
    }
    parts.join("\n")
}

/// The system prompt text: OpenAI `system`/`developer` messages; Anthropic `system` plus
/// mid-conversation `role:"system"` messages.
fn system_text(api: Api, body: &Value) -> String {
    let mut parts = Vec::new();
    if api == Api::Anthropic {
        collect_content_text(body.get("system").unwrap_or(&Value::Null), &mut parts);
    }
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if matches!(role(message), Some("system" | "developer")) {
            collect_content_text(message.get("content").unwrap_or(&Value::Null), &mut parts);
        }
    }
    parts.join("\n")
}

/// The path after `Working directory:` (OpenCode) or `Primary working directory:` (Claude).
pub(crate) fn working_dir(system: &str) -> Option<String> {
    const KEY: &str = "working directory:";
    system.lines().find_map(|line| {
        let lower = line.to_ascii_lowercase();
        let at = lower.find(KEY)?;
        let value = line[at + KEY.len()..].trim().trim_matches('`');
        value.starts_with('/').then(|| value.to_owned())
    })
}

fn openai_json_schema(body: &Value) -> Option<Value> {
    let format = body.get("response_format")?;
    match format.get("type").and_then(Value::as_str)? {
        "json_schema" => Some(
            format
                .pointer("/json_schema/schema")
                .cloned()
                .unwrap_or(Value::Null),
        ),
        "json_object" => Some(Value::Null),
        _ => None,
    }
}

fn anthropic_json_schema(body: &Value) -> Option<Value> {
    let format = body.pointer("/output_config/format")?;
    (format.get("type").and_then(Value::as_str) == Some("json_schema"))
        .then(|| format.get("schema").cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_prompt_turn_tools_and_working_dir() {
        let body = json!({
            "model": "fake-model", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "You are opencode.\n<env>\n  Working directory: /tmp/ws\n</env>"},
                {"role": "user", "content": "old prompt"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "\"create hello.py\""}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "write", "arguments": "{\"filePath\":\"x\"}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "Wrote file successfully."}
            ],
            "tools": [{"type": "function", "function": {"name": "write", "parameters": {"type": "object", "properties": {"filePath": {}, "content": {}}}}}]
        });
        let conv = parse_conversation(Api::OpenAi, &body).unwrap();
        assert_eq!(conv.prompt.as_deref(), Some("create hello.py"));
        assert_eq!(conv.turn, 1);
        assert!(conv.stream && conv.include_usage);
        assert_eq!(conv.working_dir.as_deref(), Some("/tmp/ws"));
        assert_eq!(conv.tools[0].name, "write");
        assert_eq!(
            conv.tools[0].properties.as_ref().unwrap(),
            &["filePath", "content"]
        );
        assert!(conv.json_schema.is_none());
        let text = conversation_text(Api::OpenAi, &body);
        assert!(
            text.contains("Wrote file successfully.") && text.contains("filePath"),
            "{text}"
        );
    }

    #[test]
    fn anthropic_prompt_skips_tool_results_reminders_and_system_entries() {
        let body = json!({
            "model": "claude-opus-4-8",
            "system": [{"type": "text", "text": "x-anthropic-billing-header: cc"}, {"type": "text", "text": "Env:\n - Primary working directory: /w/ws\n"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>\nignore me\n</system-reminder>"},
                    {"type": "text", "text": "create hello.py"}
                ]},
                {"role": "system", "content": "agent types"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Write", "input": {"file_path": "a"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "File created"}]}
            ],
            "tools": [{"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}}],
            "output_config": {"effort": "high"}
        });
        let conv = parse_conversation(Api::Anthropic, &body).unwrap();
        assert_eq!(conv.prompt.as_deref(), Some("create hello.py"));
        assert_eq!(conv.turn, 1);
        assert!(!conv.stream);
        assert_eq!(conv.working_dir.as_deref(), Some("/w/ws"));
        assert!(conv.json_schema.is_none());
        let text = conversation_text(Api::Anthropic, &body);
        assert!(
            text.contains("File created") && text.contains("billing"),
            "{text}"
        );
    }

    #[test]
    fn json_output_requests_are_detected() {
        let anthropic = json!({"messages": [], "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}});
        assert_eq!(
            parse_conversation(Api::Anthropic, &anthropic)
                .unwrap()
                .json_schema,
            Some(json!({"type": "object"}))
        );
        let openai = json!({"messages": [], "response_format": {"type": "json_object"}});
        assert_eq!(
            parse_conversation(Api::OpenAi, &openai)
                .unwrap()
                .json_schema,
            Some(Value::Null)
        );
    }

    #[test]
    fn clean_prompt_handles_reminders_and_quotes() {
        assert_eq!(clean_prompt("\"a b\""), "a b");
        assert_eq!(clean_prompt("\"\"a\"\""), "\"a\"");
        assert_eq!(
            clean_prompt("x <system-reminder>r</system-reminder> y"),
            "x  y"
        );
        assert_eq!(clean_prompt("x <system-reminder>unclosed"), "x");
        assert_eq!(clean_prompt("\""), "\"");
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        for body in [json!(null), json!([1]), json!({"messages": 3}), json!("x")] {
            assert!(parse_conversation(Api::OpenAi, &body).is_err());
            assert!(parse_conversation(Api::Anthropic, &body).is_err());
        }
        let odd = json!({"messages": [1, null, {"role": 5}, {"role": "user", "content": {"a": 1}}], "tools": [1, {"function": 2}, {"name": null}]});
        let conv = parse_conversation(Api::OpenAi, &odd).unwrap();
        assert_eq!(conv.prompt.as_deref(), Some(""));
        assert!(conv.tools.is_empty());
        assert!(parse_conversation(Api::Anthropic, &odd).is_ok());
    }
}
