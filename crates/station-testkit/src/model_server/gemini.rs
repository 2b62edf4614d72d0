//! The Gemini API (`/v1beta/models/...`), as the Gemini CLI calls it.
//!
//! * `POST {m}:streamGenerateContent?alt=sse`: `data:` chunks of `GenerateContentResponse`,
//!   text in small pieces, a `functionCall` part whole in a chunk of its own; the last chunk
//!   carries `finishReason` and `usageMetadata`.
//! * `POST {m}:generateContent`: one `GenerateContentResponse` (the CLI's side calls, e.g. its
//!   model router, which asks for JSON via `generationConfig.responseJsonSchema`).
//! * `POST {m}:countTokens`: `{totalTokens}`; `GET /v1beta/models[/m]`: the model list.
//!
//! Reading a request: the prompt is the last user content that still has text once the CLI's
//! `<session_context>` block is stripped (a content of only `functionResponse` parts is a tool
//! result); each `model` content after it is one turn; the working directory is the first entry
//! under `- **Workspace Directories:**`. Abstract tools map onto the CLI's (`write` →
//! `write_file`, `edit` → `replace`, `bash` → `run_shell_command`, `read` → `read_file`), and
//! required string parameters the script does not give are filled in (`replace` requires an
//! `instruction`).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::reply::{self, Message, Plan};
use super::request::{Conversation, OfferedTool, clean_prompt, token_estimate};
use super::stream::{Chunk, text_pieces};
use super::{Ctx, RecordedRequest, Responder, lock};

/// The models `GET /v1beta/models` lists.
const MODELS: &[&str] = &["gemini-3.8-flash", "gemini-3.5-flash-lite"];

/// Gemini CLI tool names an abstract tool stands for, best first.
const TOOL_ALIASES: &[(&str, &[&str])] = &[
    ("write", &["write_file", "create_file"]),
    ("edit", &["replace", "edit_file"]),
    (
        "bash",
        &[
            "run_shell_command",
            "shell_command",
            "exec_command",
            "shell",
        ],
    ),
    ("read", &["read_file"]),
];

/// The value of a required string parameter the script left out.
const FILLED_IN: &str = "edit requested by the scripted scenario";

/// What a `/v1beta/models` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Stream,
    Generate,
    CountTokens,
    Models,
    WrongMethod,
    Unknown,
}

/// The call a `/v1beta/models...` path names.
pub(crate) fn route(method: &Method, path: &str) -> Call {
    let rest = path.strip_prefix("/v1beta/models").unwrap_or("");
    let Some(action) = rest.rsplit_once(':').map(|(_, a)| a) else {
        return if method == Method::GET {
            Call::Models
        } else {
            Call::WrongMethod
        };
    };
    let call = match action {
        "streamGenerateContent" => Call::Stream,
        "generateContent" => Call::Generate,
        "countTokens" => Call::CountTokens,
        _ => return Call::Unknown,
    };
    if method == Method::POST {
        call
    } else {
        Call::WrongMethod
    }
}

/// The model named in `/v1beta/models/{m}[:action]`.
fn path_model(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1beta/models/")?;
    let model = rest.split(':').next().unwrap_or(rest);
    (!model.is_empty()).then(|| model.to_owned())
}

/// Answer a Gemini API request.
pub(crate) fn respond(
    responder: &Responder<'_>,
    record: &mut RecordedRequest,
    call: Call,
    body: Option<&Value>,
) -> (Response, Duration) {
    record.model = path_model(&record.path);
    let response = match call {
        Call::Unknown => responder.error(
            record,
            StatusCode::NOT_FOUND,
            &format!("no Gemini method at {}", record.path),
        ),
        Call::WrongMethod => responder.error(
            record,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} is not allowed on {}", record.method, record.path),
        ),
        Call::Models => {
            record.reply.status = 200;
            let listed: Vec<Value> = MODELS.iter().map(|m| model_entry(m)).collect();
            let value = match &record.model {
                Some(m) => model_entry(m),
                None => json!({ "models": listed }),
            };
            responder.json(StatusCode::OK, &value)
        }
        Call::CountTokens => match body.filter(|b| b.is_object()) {
            Some(body) => {
                record.reply.status = 200;
                let tokens = token_estimate(&conversation_text(body));
                responder.json(StatusCode::OK, &json!({ "totalTokens": tokens }))
            }
            None => responder.error(record, StatusCode::BAD_REQUEST, "the body is not JSON"),
        },
        Call::Stream | Call::Generate => {
            return generate(responder, record, call == Call::Stream, body);
        }
    };
    (response, Duration::ZERO)
}

fn model_entry(name: &str) -> Value {
    json!({
        "name": format!("models/{name}"), "version": "001", "displayName": name,
        "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

fn generate(
    responder: &Responder<'_>,
    record: &mut RecordedRequest,
    stream: bool,
    body: Option<&Value>,
) -> (Response, Duration) {
    let Some(body) = body else {
        return (
            responder.error(record, StatusCode::BAD_REQUEST, "the body is not JSON"),
            Duration::ZERO,
        );
    };
    let (conv, real_names) = match parse_conversation(body, record.model.clone(), stream) {
        Ok(parsed) => parsed,
        Err(message) => {
            return (
                responder.error(record, StatusCode::BAD_REQUEST, &message),
                Duration::ZERO,
            );
        }
    };
    record.prompt = conv.prompt.clone();
    record.turn = Some(conv.turn);
    record.offered_tools = real_names.iter().map(|(_, real)| real.clone()).collect();
    record.offered_tools.dedup();
    record.stream = stream;
    let mut planned = {
        let script = lock(&responder.shared.script);
        let fault = *lock(&responder.shared.fault);
        reply::plan(
            &script,
            fault,
            &conv,
            format!("gemini_call_scripted{:06}", record.seq),
        )
    };
    if let Plan::Message(message) = &mut planned.plan
        && let Some(tool) = &mut message.tool
    {
        if let Some((_, real)) = real_names.iter().find(|(offered, _)| *offered == tool.name) {
            tool.name = real.clone();
        }
        fill_required(&mut tool.arguments, &tool.name, body);
    }
    record.side_call = planned.side_call;
    let model = record
        .model
        .clone()
        .unwrap_or_else(|| "gemini-scripted".into());
    let ctx = Ctx {
        model: &model,
        seq: record.seq,
        created: 0,
    };
    let response = match &planned.plan {
        Plan::Fault(fault) => responder.fault(record, *fault, &ctx, stream),
        Plan::Message(message) => responder.message(record, message, &ctx, stream, true),
    };
    (response, planned.delay)
}

/// Understand a `generateContent` body. Besides the conversation, the pairs (name offered to
/// the planner, real tool name): each offered tool under its own name, plus the abstract name
/// (`write`, ...) of the first tool that stands for it.
pub(crate) fn parse_conversation(
    body: &Value,
    model: Option<String>,
    stream: bool,
) -> Result<(Conversation, Vec<(String, String)>), String> {
    let Some(object) = body.as_object() else {
        return Err("the request body must be a JSON object".into());
    };
    let Some(contents) = object.get("contents").and_then(Value::as_array) else {
        return Err("`contents` must be an array".into());
    };
    let (tools, names) = offered_tools(body);
    let prompt = contents.iter().enumerate().rev().find_map(|(i, content)| {
        if role(content) != Some("user") {
            return None;
        }
        let text = strip_session_context(&part_texts(content).join("\n"));
        let text = clean_prompt(&text);
        (!text.is_empty()).then_some((i, text))
    });
    let turn = contents
        .iter()
        .skip(prompt.as_ref().map_or(0, |(i, _)| i + 1))
        .filter(|c| role(c) == Some("model"))
        .count();
    let all_text = conversation_text(body);
    Ok((
        Conversation {
            model,
            stream,
            include_usage: true,
            tools,
            working_dir: working_dir(&all_text),
            prompt: prompt.map(|(_, p)| p),
            turn,
            json_schema: json_schema(body),
            title_request: false,
            input_tokens: token_estimate(&all_text),
        },
        names,
    ))
}

fn role(content: &Value) -> Option<&str> {
    content.get("role").and_then(Value::as_str)
}

fn parts(content: &Value) -> impl Iterator<Item = &Value> {
    content
        .get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The `text` parts of a content (thoughts included; function calls and results not).
fn part_texts(content: &Value) -> Vec<String> {
    parts(content)
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// `text` without its `<session_context>…</session_context>` blocks.
fn strip_session_context(text: &str) -> String {
    const OPEN: &str = "<session_context>";
    const CLOSE: &str = "</session_context>";
    let mut rest = text;
    let mut out = String::with_capacity(text.len());
    // Each pass consumes one opening tag, so this ends.
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        rest = after
            .find(CLOSE)
            .map_or("", |end| &after[end + CLOSE.len()..]);
    }
    out.push_str(rest);
    out
}

/// Everything the request says, in order: system instruction, texts, function calls and
/// function results.
pub(crate) fn conversation_text(body: &Value) -> String {
    let mut out = Vec::new();
    if let Some(system) = body.get("systemInstruction") {
        out.extend(part_texts(system));
    }
    for content in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for part in parts(content) {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                out.push(text.to_owned());
            }
            for key in ["functionCall", "functionResponse"] {
                if let Some(value) = part.get(key) {
                    out.push(value.to_string());
                }
            }
        }
    }
    out.join("\n")
}

/// The first directory listed under `- **Workspace Directories:**`.
fn working_dir(text: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.find(|l| l.contains("**Workspace Directories:**"))?;
    let first = lines.next()?.trim().strip_prefix("- ")?.trim();
    first.starts_with('/').then(|| first.to_owned())
}

/// Every offered function declaration, plus its abstract alias (see [`parse_conversation`]).
fn offered_tools(body: &Value) -> (Vec<OfferedTool>, Vec<(String, String)>) {
    let declarations: Vec<&Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .collect();
    let mut tools = Vec::new();
    let mut names = Vec::new();
    for declaration in &declarations {
        let Some(name) = declaration.get("name").and_then(Value::as_str) else {
            continue;
        };
        let properties = schema_of(declaration)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect::<Vec<_>>());
        tools.push(OfferedTool {
            name: name.to_owned(),
            properties: properties.clone(),
        });
        names.push((name.to_owned(), name.to_owned()));
    }
    for (alias, candidates) in TOOL_ALIASES {
        if names.iter().any(|(n, _)| n.eq_ignore_ascii_case(alias)) {
            continue;
        }
        let found = candidates
            .iter()
            .find_map(|c| tools.iter().find(|t| t.name == *c).cloned());
        if let Some(tool) = found {
            names.push(((*alias).to_owned(), tool.name.clone()));
            tools.push(OfferedTool {
                name: (*alias).to_owned(),
                properties: tool.properties,
            });
        }
    }
    (tools, names)
}

fn schema_of(declaration: &Value) -> Option<&Value> {
    declaration
        .get("parametersJsonSchema")
        .or_else(|| declaration.get("parameters"))
}

/// Give every required string parameter of `tool` that `arguments` lacks a value.
fn fill_required(arguments: &mut Value, tool: &str, body: &Value) {
    let Some(args) = arguments.as_object_mut() else {
        return;
    };
    let schema = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .find(|d| d.get("name").and_then(Value::as_str) == Some(tool))
        .and_then(schema_of);
    let Some(schema) = schema else {
        return;
    };
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let is_string = schema
            .pointer(&format!("/properties/{name}/type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("string"));
        if is_string && !args.contains_key(name) {
            args.insert(name.to_owned(), Value::from(FILLED_IN));
        }
    }
}

/// The schema when the request asks for JSON (`generationConfig.responseMimeType`), its
/// Gemini spelling made plain: types lower-cased, numbers at least 1 (the CLI's router rejects
/// a complexity score of 0).
fn json_schema(body: &Value) -> Option<Value> {
    let config = body.get("generationConfig")?;
    if config.get("responseMimeType").and_then(Value::as_str) != Some("application/json") {
        return None;
    }
    let schema = config
        .get("responseJsonSchema")
        .or_else(|| config.get("responseSchema"))
        .cloned()
        .unwrap_or(Value::Null);
    Some(plain_schema(schema))
}

fn plain_schema(schema: Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .into_iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("type", Value::String(t)) => Value::String(t.to_lowercase()),
                        (_, v) => plain_schema(v),
                    };
                    (k, v)
                })
                .collect();
            let numeric = out
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t == "integer" || t == "number");
            if numeric && !out.contains_key("minimum") {
                out.insert("minimum".into(), Value::from(1));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(plain_schema).collect()),
        other => other,
    }
}

fn response_id(ctx: &Ctx<'_>) -> String {
    format!("gemini_scripted{:06}", ctx.seq)
}

fn usage(message: &Message) -> Value {
    let u = message.usage;
    json!({
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens,
        "totalTokenCount": u.input_tokens + u.output_tokens,
    })
}

fn response(ctx: &Ctx<'_>, parts: Vec<Value>, last: Option<&Message>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    let mut value =
        json!({"candidates": [], "modelVersion": ctx.model, "responseId": response_id(ctx)});
    if let Some(message) = last {
        candidate["finishReason"] = Value::from("STOP");
        value["usageMetadata"] = usage(message);
    }
    value["candidates"] = json!([candidate]);
    value
}

fn frame(value: &Value) -> Chunk {
    Chunk::data(format!("data: {value}\r\n\r\n"))
}

fn function_call(message: &Message) -> Option<Value> {
    message
        .tool
        .as_ref()
        .map(|t| json!({"functionCall": {"name": t.name, "args": t.arguments}}))
}

/// The `data:` chunks of a streamed reply.
pub(crate) fn stream(message: &Message, ctx: &Ctx<'_>) -> Vec<Chunk> {
    let pause = message.chunk_delay;
    let mut pieces: Vec<Value> = text_pieces(&message.text, pause.is_some())
        .into_iter()
        .map(|t| json!({ "text": t }))
        .collect();
    pieces.extend(function_call(message));
    if pieces.is_empty() {
        pieces.push(json!({"text": ""}));
    }
    let last = pieces.len() - 1;
    let mut out = Vec::new();
    for (i, part) in pieces.into_iter().enumerate() {
        if i > 0 {
            out.extend(pause.map(Chunk::Sleep));
        }
        let end = (i == last).then_some(message);
        out.push(frame(&response(ctx, vec![part], end)));
    }
    out
}

/// A whole `GenerateContentResponse`.
pub(crate) fn complete(message: &Message, ctx: &Ctx<'_>) -> Value {
    let mut parts = Vec::new();
    if !message.text.is_empty() || message.tool.is_none() {
        parts.push(json!({"text": message.text}));
    }
    parts.extend(function_call(message));
    response(ctx, parts, Some(message))
}

/// An error body: `{"error": {"code", "message", "status"}}`.
pub(crate) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 | 405 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": kind}})
}

/// The start of a reply, for a connection dropped mid-stream.
pub(crate) fn stream_prefix(ctx: &Ctx<'_>) -> Vec<Chunk> {
    vec![frame(&response(
        ctx,
        vec![json!({"text": "Partial "})],
        None,
    ))]
}

/// A chunk whose data is not JSON, then a proper end.
pub(crate) fn malformed_stream(ctx: &Ctx<'_>) -> Vec<Chunk> {
    vec![
        Chunk::data(format!(
            "data: {{\"candidates\":[{{\"content\":broken,\"responseId\":\"{}\"\r\n\r\n",
            response_id(ctx)
        )),
        frame(&response(ctx, vec![json!({"text": ""})], None)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_models_come_from_the_path() {
        let post = Method::POST;
        assert_eq!(
            route(&post, "/v1beta/models/g-1:streamGenerateContent"),
            Call::Stream
        );
        assert_eq!(
            route(&post, "/v1beta/models/g-1:generateContent"),
            Call::Generate
        );
        assert_eq!(
            route(&post, "/v1beta/models/g-1:countTokens"),
            Call::CountTokens
        );
        assert_eq!(route(&post, "/v1beta/models/g-1:embed"), Call::Unknown);
        assert_eq!(route(&Method::GET, "/v1beta/models"), Call::Models);
        assert_eq!(route(&Method::GET, "/v1beta/models/g-1"), Call::Models);
        assert_eq!(
            route(&Method::GET, "/v1beta/models/g-1:generateContent"),
            Call::WrongMethod
        );
        assert_eq!(
            path_model("/v1beta/models/g-1:countTokens").as_deref(),
            Some("g-1")
        );
        assert_eq!(path_model("/v1beta/models"), None);
    }

    #[test]
    fn schemas_are_made_plain() {
        let schema = json!({"type": "OBJECT", "properties": {
            "complexity_reasoning": {"type": "STRING"}, "complexity_score": {"type": "INTEGER"}}});
        assert_eq!(
            plain_schema(schema),
            json!({"type": "object", "properties": {
                "complexity_reasoning": {"type": "string"},
                "complexity_score": {"type": "integer", "minimum": 1}}})
        );
    }

    #[test]
    fn session_context_is_stripped_and_names_the_workspace() {
        let text = "<session_context>\nOS\n- **Workspace Directories:**\n  - /w/ws\n- **Directory Structure:**\n</session_context>\ncreate a.py";
        assert_eq!(strip_session_context(text).trim(), "create a.py");
        assert_eq!(working_dir(text).as_deref(), Some("/w/ws"));
        assert_eq!(strip_session_context("a <session_context>x").trim(), "a");
    }
}
