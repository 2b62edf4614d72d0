//! OpenAI Responses (`POST /v1/responses`), in the shapes Codex (`codex exec`) reads: the
//! request (prompt, turn, working directory, tools) and the reply, streamed or not.
//!
//! * **prompt** = the last user `message` that still has text once Codex's context blocks
//!   (`<environment_context>`, `<user_instructions>`, `<INSTRUCTIONS>`,
//!   `<skills_instructions>`) are stripped;
//! * **turn** = model replies after it: each `function_call`/`custom_tool_call` is one, and an
//!   assistant `message` is one unless a call follows it directly (text before a call);
//! * **working directory** = the last `<cwd>X</cwd>`;
//! * **tools**: Codex has no write or edit tool. Abstract `write` becomes an `apply_patch`
//!   (a free-form `custom` tool) `*** Add File:`, `edit` an `*** Update File:` whose old text is
//!   widened to whole lines (apply_patch matches lines only); without `apply_patch` (an unknown
//!   model slug) both fall back to a shell command. `bash`/`read` go to `exec_command{cmd}` (or
//!   `shell_command`/`shell`), never to `write_stdin`.
//!
//! Streamed replies are SSE frames with `event:` lines and a `sequence_number`, from
//! `response.created` to `response.completed` (with usage); the connection then closes.

use std::path::Path;

use serde_json::{Value, json};

use super::Ctx;
use super::reply::{Message, PlannedTool};
use super::request::{self, Api, Conversation, OfferedTool, clean_prompt, token_estimate};
use super::stream::{Chunk, json_pieces, text_pieces};

/// Blocks Codex adds to user messages that are context, not the user's words.
const CONTEXT_BLOCKS: &[&str] = &[
    "environment_context",
    "user_instructions",
    "INSTRUCTIONS",
    "skills_instructions",
];

/// Item types that are a model call (one turn each).
const CALL_ITEMS: &[&str] = &["function_call", "custom_tool_call"];

/// Shell tools Codex may offer, best first, with the argument that carries the command.
const SHELL_TOOLS: &[(&str, &str)] = &[
    ("exec_command", "cmd"),
    ("shell_command", "command"),
    ("shell", "command"),
];

fn items(body: &Value) -> Vec<Value> {
    match body.get("input") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(text)) => {
            vec![json!({"type": "message", "role": "user", "content": text})]
        }
        _ => Vec::new(),
    }
}

fn item_type(item: &Value) -> &str {
    item.get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
}

fn role(item: &Value) -> Option<&str> {
    item.get("role").and_then(Value::as_str)
}

/// The text parts of a message item.
fn message_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// `text` without Codex's context blocks (an unclosed block runs to the end).
fn strip_context(text: &str) -> String {
    let mut out = text.to_owned();
    for tag in CONTEXT_BLOCKS {
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        // Each pass removes one opening tag, so this ends.
        while let Some(start) = out.find(&open) {
            let end = out[start..]
                .find(&close)
                .map_or(out.len(), |e| start + e + close.len());
            out.replace_range(start..end, "");
        }
    }
    // What is left of Codex's AGENTS.md message is only its heading.
    if out.trim_start().starts_with("# AGENTS.md instructions") {
        return String::new();
    }
    out
}

/// Understand a `/v1/responses` body; `Err` is a message for a 400 reply.
pub(crate) fn parse_conversation(body: &Value) -> Result<Conversation, String> {
    let Some(object) = body.as_object() else {
        return Err("the request body must be a JSON object".into());
    };
    if !matches!(
        object.get("input"),
        Some(Value::Array(_) | Value::String(_))
    ) {
        return Err("`input` must be an array of items or a string".into());
    }
    let items = items(body);
    let prompt_at = items.iter().enumerate().rev().find_map(|(i, item)| {
        (item_type(item) == "message" && role(item) == Some("user"))
            .then(|| clean_prompt(&strip_context(&message_text(item))))
            .filter(|p| !p.is_empty())
            .map(|p| (i, p))
    });
    let after = prompt_at.as_ref().map_or(0, |(i, _)| i + 1);
    let turn = count_turns(&items[after.min(items.len())..]);
    let text = conversation_text(body);
    let json_schema = body.pointer("/text/format").and_then(|format| {
        match format.get("type").and_then(Value::as_str)? {
            "json_schema" => Some(format.get("schema").cloned().unwrap_or(Value::Null)),
            "json_object" => Some(Value::Null),
            _ => None,
        }
    });
    Ok(Conversation {
        model: object
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned),
        stream: object
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        include_usage: true,
        tools: request::offered_tools(Api::Responses, body),
        working_dir: working_dir(&text),
        prompt: prompt_at.map(|(_, p)| p),
        turn,
        json_schema,
        title_request: false,
        input_tokens: token_estimate(&text),
    })
}

/// Model replies in `items`: a call is one; an assistant message is one unless a call follows.
fn count_turns(items: &[Value]) -> usize {
    let is_call = |item: Option<&Value>| item.is_some_and(|i| CALL_ITEMS.contains(&item_type(i)));
    (0..items.len())
        .filter(|&i| {
            let item = &items[i];
            if CALL_ITEMS.contains(&item_type(item)) {
                return true;
            }
            item_type(item) == "message"
                && role(item) == Some("assistant")
                && !is_call(items.get(i + 1))
        })
        .count()
}

/// The last `<cwd>X</cwd>` of the request.
fn working_dir(text: &str) -> Option<String> {
    let start = text.rfind("<cwd>")? + "<cwd>".len();
    let end = text[start..].find("</cwd>")? + start;
    let dir = text[start..end].trim();
    dir.starts_with('/').then(|| dir.to_owned())
}

/// All text of the request in order: instructions, messages, call arguments and outputs.
pub(crate) fn conversation_text(body: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        parts.push(instructions.to_owned());
    }
    for item in items(body) {
        match item_type(&item) {
            "message" => parts.push(message_text(&item)),
            "function_call" => parts.extend(str_field(&item, "arguments")),
            "custom_tool_call" => parts.extend(str_field(&item, "input")),
            "function_call_output" | "custom_tool_call_output" => match item.get("output") {
                Some(Value::String(s)) => parts.push(s.clone()),
                Some(other) => parts.push(other.to_string()),
                None => {}
            },
            _ => {}
        }
    }
    parts.join("\n")
}

fn str_field(item: &Value, key: &str) -> Option<String> {
    item.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn offered<'a>(tools: &'a [OfferedTool], name: &str) -> Option<&'a OfferedTool> {
    tools.iter().find(|t| t.name == name)
}

/// Map an abstract call onto Codex's tools (see the module docs); `None` when `tools` are not
/// Codex's or `name` is not abstract.
pub(crate) fn codex_tool(
    name: &str,
    args: &Value,
    tools: &[OfferedTool],
    working_dir: Option<&str>,
) -> Option<Result<(String, Value), String>> {
    let shell = SHELL_TOOLS
        .iter()
        .find(|(tool, _)| offered(tools, tool).is_some());
    let patch = offered(tools, "apply_patch").is_some();
    if shell.is_none() && !patch {
        return None;
    }
    let arg = |key: &str| args.get(key).and_then(Value::as_str).unwrap_or_default();
    let path = || {
        let path = arg("path");
        match working_dir {
            Some(dir) if !path.starts_with('/') => {
                Path::new(dir).join(path).to_string_lossy().into_owned()
            }
            _ => path.to_owned(),
        }
    };
    let run = |command: String| match shell {
        Some((tool, "command")) if *tool == "shell" => Ok((
            (*tool).to_owned(),
            json!({"command": ["bash", "-lc", command]}),
        )),
        Some((tool, key)) => Ok(((*tool).to_owned(), json!({ *key: command }))),
        None => Err(format!(
            "no shell tool is offered for `{name}` (looked for exec_command, shell_command, shell)"
        )),
    };
    Some(match name.to_ascii_lowercase().as_str() {
        "bash" => run(arg("command").to_owned()),
        "read" => run(format!("cat -- {}", quote(&path()))),
        "write" if patch => Ok((
            "apply_patch".into(),
            Value::String(add_patch(&path(), arg("content"))),
        )),
        "write" => run(format!(
            "printf '%s' {} > {}",
            quote(arg("content")),
            quote(&path())
        )),
        "edit" if patch => update_patch(&path(), arg("old"), arg("new"))
            .map(|patch| ("apply_patch".into(), Value::String(patch))),
        "edit" => run(format!(
            "python3 -c {} {} {} {}",
            quote(
                "import sys;p,o,n=sys.argv[1:];t=open(p).read();open(p,'w').write(t.replace(o,n,1))"
            ),
            quote(&path()),
            quote(arg("old")),
            quote(arg("new"))
        )),
        _ => return None,
    })
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn add_patch(path: &str, content: &str) -> String {
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    for line in content.lines() {
        patch.push_str(&format!("+{line}\n"));
    }
    patch.push_str("*** End Patch\n");
    patch
}

/// An update patch replacing the first `old` in `path` by `new`, widened to whole lines.
fn update_patch(path: &str, old: &str, new: &str) -> Result<String, String> {
    let content = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {path} to build the patch: {e}"))?;
    let at = content
        .find(old)
        .filter(|_| !old.is_empty())
        .ok_or_else(|| format!("{old:?} is not in {path}"))?;
    let start = content[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = content[at + old.len()..]
        .find('\n')
        .map_or(content.len(), |i| at + old.len() + i);
    let before = &content[start..end];
    let after = format!(
        "{}{new}{}",
        &content[start..at],
        &content[at + old.len()..end]
    );
    let mut patch = format!("*** Begin Patch\n*** Update File: {path}\n@@\n");
    for line in before.split('\n') {
        patch.push_str(&format!("-{line}\n"));
    }
    for line in after.split('\n') {
        patch.push_str(&format!("+{line}\n"));
    }
    patch.push_str("*** End Patch\n");
    Ok(patch)
}

/// SSE frames numbered from 0.
struct Frames {
    next: u64,
    out: Vec<Chunk>,
}

impl Frames {
    fn push(&mut self, kind: &str, mut data: Value) {
        data["type"] = Value::from(kind);
        data["sequence_number"] = Value::from(self.next);
        self.next += 1;
        self.out
            .push(Chunk::data(format!("event: {kind}\ndata: {data}\n\n")));
    }
}

fn response_id(ctx: &Ctx<'_>) -> String {
    format!("resp_scripted{:06}", ctx.seq)
}

fn usage(message: &Message) -> Value {
    let u = message.usage;
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn response(ctx: &Ctx<'_>, status: &str, output: Vec<Value>, usage: Value) -> Value {
    json!({
        "id": response_id(ctx), "object": "response", "created_at": ctx.created,
        "status": status, "model": ctx.model, "output": output, "usage": usage,
        "error": null, "incomplete_details": null,
    })
}

fn text_item(ctx: &Ctx<'_>, text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{"type": "output_text", "text": text, "annotations": []}])
    } else {
        json!([])
    };
    json!({"type": "message", "id": format!("msg_scripted{:06}", ctx.seq), "role": "assistant",
           "status": status, "content": content})
}

/// A custom tool (free-form input) is called with a string; a function with JSON arguments.
fn tool_item(ctx: &Ctx<'_>, tool: &PlannedTool, complete: bool) -> Value {
    match &tool.arguments {
        Value::String(input) => json!({
            "type": "custom_tool_call", "id": format!("ctc_scripted{:06}", ctx.seq),
            "call_id": tool.id, "name": tool.name,
            "input": if complete { input.as_str() } else { "" },
            "status": if complete { "completed" } else { "in_progress" },
        }),
        args => json!({
            "type": "function_call", "id": format!("fc_scripted{:06}", ctx.seq),
            "call_id": tool.id, "name": tool.name,
            "arguments": if complete { args.to_string() } else { String::new() },
            "status": if complete { "completed" } else { "in_progress" },
        }),
    }
}

fn has_text(message: &Message) -> bool {
    !message.text.is_empty() || message.tool.is_none()
}

fn start(ctx: &Ctx<'_>) -> Frames {
    let mut frames = Frames {
        next: 0,
        out: Vec::new(),
    };
    let empty = response(ctx, "in_progress", Vec::new(), Value::Null);
    frames.push("response.created", json!({ "response": empty }));
    frames.push("response.in_progress", json!({ "response": empty }));
    frames
}

/// The SSE events of a streamed reply.
pub(crate) fn stream(message: &Message, ctx: &Ctx<'_>) -> Vec<Chunk> {
    let pause = message.chunk_delay;
    let mut frames = start(ctx);
    let mut output = Vec::new();
    let mut index = 0;
    if has_text(message) {
        let item_id = format!("msg_scripted{:06}", ctx.seq);
        frames.push(
            "response.output_item.added",
            json!({"output_index": index, "item": text_item(ctx, "", "in_progress")}),
        );
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
        frames.push(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": part("")}),
        );
        for piece in text_pieces(&message.text, pause.is_some()) {
            frames.out.extend(pause.map(Chunk::Sleep));
            frames.push(
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": piece}),
            );
        }
        frames.push(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": message.text}),
        );
        frames.push(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": part(&message.text)}),
        );
        let done = text_item(ctx, &message.text, "completed");
        frames.push(
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        output.push(done);
        index += 1;
    }
    if let Some(tool) = &message.tool {
        frames.out.extend(pause.map(Chunk::Sleep));
        let added = tool_item(ctx, tool, false);
        let item_id = added["id"].clone();
        frames.push(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        let (delta_kind, done_kind, key, whole) = match &tool.arguments {
            Value::String(input) => (
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "input",
                input.clone(),
            ),
            args => (
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "arguments",
                args.to_string(),
            ),
        };
        for piece in json_pieces(&whole) {
            frames.out.extend(pause.map(Chunk::Sleep));
            frames.push(
                delta_kind,
                json!({"item_id": item_id, "output_index": index, "delta": piece}),
            );
        }
        frames.push(
            done_kind,
            json!({"item_id": item_id, "output_index": index, key: whole}),
        );
        let done = tool_item(ctx, tool, true);
        frames.push(
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        output.push(done);
    }
    frames.push(
        "response.completed",
        json!({"response": response(ctx, "completed", output, usage(message))}),
    );
    frames.out
}

/// A non-streamed `response`.
pub(crate) fn complete(message: &Message, ctx: &Ctx<'_>) -> Value {
    let mut output = Vec::new();
    if has_text(message) {
        output.push(text_item(ctx, &message.text, "completed"));
    }
    if let Some(tool) = &message.tool {
        output.push(tool_item(ctx, tool, true));
    }
    response(ctx, "completed", output, usage(message))
}

/// The start of a reply, for a connection dropped mid-stream.
pub(crate) fn stream_prefix(ctx: &Ctx<'_>) -> Vec<Chunk> {
    let mut frames = start(ctx);
    frames.push(
        "response.output_item.added",
        json!({"output_index": 0, "item": text_item(ctx, "", "in_progress")}),
    );
    frames.push(
        "response.output_text.delta",
        json!({"item_id": format!("msg_scripted{:06}", ctx.seq), "output_index": 0,
               "content_index": 0, "delta": "Partial "}),
    );
    frames.out
}

/// An event whose data is not JSON, then a proper end.
pub(crate) fn malformed_stream(ctx: &Ctx<'_>) -> Vec<Chunk> {
    let mut frames = start(ctx);
    frames.out.push(Chunk::data(format!(
        "event: response.output_item.added\ndata: {{\"type\":\"response.output_item.added\",\"item\":{{\"id\":\"msg_scripted{:06}\",broken\n\n",
        ctx.seq
    )));
    frames.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codex_tools(with_patch: bool) -> Vec<OfferedTool> {
        let mut tools = vec![
            OfferedTool {
                name: "exec_command".into(),
                properties: Some(vec!["cmd".into(), "workdir".into()]),
            },
            OfferedTool {
                name: "write_stdin".into(),
                properties: Some(vec!["chars".into(), "session_id".into()]),
            },
        ];
        if with_patch {
            tools.push(OfferedTool {
                name: "apply_patch".into(),
                properties: None,
            });
        }
        tools
    }

    #[test]
    fn prompt_turn_and_cwd_skip_codex_context() {
        let body = json!({"model": "gpt-5.5", "stream": true, "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/w/ws</cwd>\n</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "create a.py"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Writing."}]},
            {"type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin Patch", "call_id": "c1"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Success"},
            {"type": "function_call", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}", "call_id": "c2"},
            {"type": "function_call_output", "call_id": "c2", "output": "a.py"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/w/ws</cwd>\n</environment_context>"}]}
        ], "tools": [{"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {}}}},
                     {"type": "custom", "name": "apply_patch"}, {"type": "web_search"}]});
        let conv = parse_conversation(&body).unwrap();
        assert_eq!(conv.prompt.as_deref(), Some("create a.py"));
        assert_eq!(conv.turn, 2);
        assert_eq!(conv.working_dir.as_deref(), Some("/w/ws"));
        let names: Vec<&str> = conv.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["exec_command", "apply_patch"]);
        let text = conversation_text(&body);
        assert!(
            text.contains("Success") && text.contains("\"cmd\":\"ls\""),
            "{text}"
        );
        assert!(parse_conversation(&json!({"input": 3})).is_err());
    }

    #[test]
    fn abstract_tools_map_onto_codex_tools() {
        let tools = codex_tools(true);
        let (name, input) = codex_tool(
            "write",
            &json!({"path": "a.py", "content": "x = 1\ny\n"}),
            &tools,
            Some("/w"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(name, "apply_patch");
        assert_eq!(
            input,
            "*** Begin Patch\n*** Add File: /w/a.py\n+x = 1\n+y\n*** End Patch\n"
        );
        let (name, args) = codex_tool("bash", &json!({"command": "ls"}), &tools, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (name.as_str(), args),
            ("exec_command", json!({"cmd": "ls"}))
        );
        let (_, args) = codex_tool(
            "write",
            &json!({"path": "/a", "content": "it's"}),
            &codex_tools(false),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(args, json!({"cmd": "printf '%s' 'it'\\''s' > '/a'"}));
        assert!(codex_tool("coding_open", &json!({}), &tools, None).is_none());
        assert!(codex_tool("write", &json!({}), &[], None).is_none());
    }

    #[test]
    fn edits_widen_to_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fb.py");
        std::fs::write(&file, "a = 1\nprint('Hello World')\nb = 2\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let patch = update_patch(&path, "Hello", "Bye").unwrap();
        assert_eq!(
            patch,
            format!(
                "*** Begin Patch\n*** Update File: {path}\n@@\n-print('Hello World')\n+print('Bye World')\n*** End Patch\n"
            )
        );
        assert!(
            update_patch(&path, "absent", "x")
                .unwrap_err()
                .contains("absent")
        );
    }
}
