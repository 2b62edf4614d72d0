//! OpenAI Chat Completions replies, in the shapes OpenCode's openai-compatible provider accepts.

use serde_json::{Value, json};

use super::Ctx;
use super::reply::Message;
use super::stream::{Chunk, json_pieces, text_pieces};

fn frame(value: &Value) -> Chunk {
    Chunk::data(format!("data: {value}\n\n"))
}

fn chunk(ctx: &Ctx<'_>, delta: Value, finish_reason: Option<&str>) -> Chunk {
    frame(&json!({
        "id": format!("chatcmpl-scripted{:06}", ctx.seq),
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }))
}

fn usage(message: &Message) -> Value {
    let u = message.usage;
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn finish_reason(message: &Message) -> &'static str {
    if message.tool.is_some() {
        "tool_calls"
    } else {
        "stop"
    }
}

/// The SSE frames of a streamed reply.
pub(crate) fn stream(message: &Message, ctx: &Ctx<'_>, include_usage: bool) -> Vec<Chunk> {
    let pause = message.chunk_delay;
    let mut out = vec![chunk(
        ctx,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    for piece in text_pieces(&message.text, pause.is_some()) {
        out.extend(pause.map(Chunk::Sleep));
        out.push(chunk(ctx, json!({"content": piece}), None));
    }
    if let (Some(tool), Some(args)) = (&message.tool, message.arguments_json()) {
        out.extend(pause.map(Chunk::Sleep));
        out.push(chunk(
            ctx,
            json!({"tool_calls": [{"index": 0, "id": tool.id, "type": "function",
                                   "function": {"name": tool.name, "arguments": ""}}]}),
            None,
        ));
        for piece in json_pieces(&args) {
            out.extend(pause.map(Chunk::Sleep));
            out.push(chunk(
                ctx,
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    out.push(chunk(ctx, json!({}), Some(finish_reason(message))));
    if include_usage {
        out.push(frame(&json!({
            "id": format!("chatcmpl-scripted{:06}", ctx.seq),
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "choices": [],
            "usage": usage(message),
        })));
    }
    out.push(Chunk::data("data: [DONE]\n\n"));
    out
}

/// A non-streamed `chat.completion`.
pub(crate) fn complete(message: &Message, ctx: &Ctx<'_>) -> Value {
    let mut reply = json!({
        "role": "assistant",
        "content": if message.text.is_empty() && message.tool.is_some() { Value::Null } else { Value::from(message.text.as_str()) },
    });
    if let (Some(tool), Some(args)) = (&message.tool, message.arguments_json()) {
        reply["tool_calls"] = json!([{"id": tool.id, "type": "function",
                                      "function": {"name": tool.name, "arguments": args}}]);
    }
    json!({
        "id": format!("chatcmpl-scripted{:06}", ctx.seq),
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [{"index": 0, "message": reply, "finish_reason": finish_reason(message), "logprobs": null}],
        "usage": usage(message),
    })
}

/// An error body: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 404 | 405 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// The start of a reply, for a connection dropped mid-stream.
pub(crate) fn stream_prefix(ctx: &Ctx<'_>) -> Vec<Chunk> {
    vec![
        chunk(ctx, json!({"role": "assistant", "content": ""}), None),
        chunk(ctx, json!({"content": "Partial "}), None),
    ]
}

/// Frames whose data is not JSON, then a proper end.
pub(crate) fn malformed_stream(ctx: &Ctx<'_>) -> Vec<Chunk> {
    vec![
        chunk(ctx, json!({"role": "assistant", "content": ""}), None),
        Chunk::data(format!(
            "data: {{\"id\":\"chatcmpl-scripted{:06}\",\"choices\":[{{\"delta\":{{\"content\":\"broken\n\n",
            ctx.seq
        )),
        Chunk::data("data: [DONE]\n\n"),
    ]
}
