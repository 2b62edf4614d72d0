//! Anthropic Messages replies, in the shapes Claude Code accepts.

use serde_json::{Value, json};

use super::Ctx;
use super::reply::Message;
use super::stream::{Chunk, json_pieces, text_pieces};

fn event(kind: &str, data: &Value) -> Chunk {
    Chunk::data(format!("event: {kind}\ndata: {data}\n\n"))
}

fn message_id(ctx: &Ctx<'_>) -> String {
    format!("msg_scripted{:06}", ctx.seq)
}

fn usage(message: &Message, output_tokens: u64) -> Value {
    json!({
        "input_tokens": message.usage.input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    })
}

fn stop_reason(message: &Message) -> &'static str {
    if message.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn message_start(ctx: &Ctx<'_>, usage: Value) -> Chunk {
    event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": message_id(ctx), "type": "message", "role": "assistant", "model": ctx.model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
        }}),
    )
}

/// The SSE events of a streamed reply.
pub(crate) fn stream(message: &Message, ctx: &Ctx<'_>) -> Vec<Chunk> {
    let pause = message.chunk_delay;
    let mut out = vec![message_start(ctx, usage(message, 1))];
    let mut index = 0;
    let mut pinged = false;
    let mut ping = |out: &mut Vec<Chunk>| {
        if !pinged {
            pinged = true;
            out.push(event("ping", &json!({"type": "ping"})));
        }
    };
    if !message.text.is_empty() || message.tool.is_none() {
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        ping(&mut out);
        for piece in text_pieces(&message.text, pause.is_some()) {
            out.extend(pause.map(Chunk::Sleep));
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    if let (Some(tool), Some(args)) = (&message.tool, message.arguments_json()) {
        out.extend(pause.map(Chunk::Sleep));
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}}),
        ));
        ping(&mut out);
        for piece in json_pieces(&args) {
            out.extend(pause.map(Chunk::Sleep));
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(message), "stop_sequence": null},
                "usage": {"output_tokens": message.usage.output_tokens}}),
    ));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}

/// A non-streamed `message`.
pub(crate) fn complete(message: &Message, ctx: &Ctx<'_>) -> Value {
    let mut content = Vec::new();
    if !message.text.is_empty() || message.tool.is_none() {
        content.push(json!({"type": "text", "text": message.text}));
    }
    if let Some(tool) = &message.tool {
        content.push(
            json!({"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.arguments}),
        );
    }
    json!({
        "id": message_id(ctx), "type": "message", "role": "assistant", "model": ctx.model,
        "content": content, "stop_reason": stop_reason(message), "stop_sequence": null,
        "usage": usage(message, message.usage.output_tokens),
    })
}

/// An error body: `{"type": "error", "error": {"type", "message"}, "request_id"}`.
pub(crate) fn error_body(status: u16, message: &str, request_id: &str) -> Value {
    let kind = match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id})
}

/// The start of a reply, for a connection dropped mid-stream.
pub(crate) fn stream_prefix(ctx: &Ctx<'_>) -> Vec<Chunk> {
    let usage = json!({"input_tokens": 1, "output_tokens": 1});
    vec![
        message_start(ctx, usage),
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Partial "}}),
        ),
    ]
}

/// An event whose data is not JSON, then a proper end.
pub(crate) fn malformed_stream(ctx: &Ctx<'_>) -> Vec<Chunk> {
    vec![
        Chunk::data(format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"{}\",broken\n\n",
            message_id(ctx)
        )),
        event("message_stop", &json!({"type": "message_stop"})),
    ]
}
