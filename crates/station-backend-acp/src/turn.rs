//! One prompt turn: `session/update`s become events, and the outcome's parts are collected.

use std::collections::{BTreeSet, HashMap};

use agent_client_protocol::v1::schema::{
    ContentBlock, SessionUpdate, ToolCallContent, ToolCallStatus,
};
use serde_json::Value;
use station_core::{EventKind, EventSink, PlanEntry, StopReason, ToolCall, Usage};

/// What a turn has gathered so far.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    pub(crate) text: String,
    pub(crate) tool_calls: Vec<ToolCall>,
    open_tools: HashMap<String, ToolCall>,
    edited: BTreeSet<String>,
    /// Latest cumulative session cost the agent reported.
    pub(crate) cost: Option<f64>,
    /// Updates received (a turn without any may be the out-of-step answer after a cancel).
    pub(crate) updates: usize,
}

fn text_of(block: &ContentBlock) -> Option<&str> {
    match block {
        ContentBlock::Text(t) => Some(&t.text),
        _ => None,
    }
}

impl Turn {
    /// Apply one raw `update`; unknown kinds are skipped (ACP agents add kinds over time).
    pub(crate) fn apply(&mut self, update: Value, events: &EventSink) {
        self.updates += 1;
        let kind = update["sessionUpdate"].as_str().unwrap_or("").to_string();
        let claude_tool_name = update["_meta"]["claudeCode"]["toolName"]
            .as_str()
            .map(str::to_string);
        let parsed: SessionUpdate = match serde_json::from_value(update) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("skipping an ACP update of kind `{kind}`: {e}");
                return;
            }
        };
        match parsed {
            SessionUpdate::AgentMessageChunk(chunk) => {
                if let Some(t) = text_of(&chunk.content).filter(|t| !t.is_empty()) {
                    self.text.push_str(t);
                    events.emit(EventKind::TextDelta {
                        text: t.to_string(),
                    });
                }
            }
            SessionUpdate::AgentThoughtChunk(chunk) => {
                if let Some(t) = text_of(&chunk.content).filter(|t| !t.is_empty()) {
                    events.emit(EventKind::Reasoning {
                        text: t.to_string(),
                    });
                }
            }
            SessionUpdate::ToolCall(call) => {
                let name = claude_tool_name
                    .or(call.name.clone())
                    .unwrap_or_else(|| call.title.clone());
                let id = call.tool_call_id.0.to_string();
                let input = call.raw_input.clone().unwrap_or(Value::Null);
                events.emit(EventKind::ToolStarted {
                    call_id: Some(id.clone()),
                    name: name.clone(),
                    input: input.clone(),
                });
                self.open_tools.insert(
                    id.clone(),
                    ToolCall {
                        id: Some(id.clone()),
                        name,
                        input,
                        output: None,
                        error: None,
                        duration_ms: None,
                    },
                );
                self.diffs(&call.content, events);
                self.finish_if_done(
                    &id,
                    Some(call.status),
                    &call.content,
                    call.raw_output.as_ref(),
                    events,
                );
            }
            SessionUpdate::ToolCallUpdate(update) => {
                let id = update.tool_call_id.0.to_string();
                let fields = update.fields;
                if let (Some(open), Some(input)) = (self.open_tools.get_mut(&id), fields.raw_input)
                {
                    open.input = input;
                }
                let content = fields.content.unwrap_or_default();
                self.diffs(&content, events);
                self.finish_if_done(
                    &id,
                    fields.status,
                    &content,
                    fields.raw_output.as_ref(),
                    events,
                );
            }
            SessionUpdate::Plan(plan) => {
                let entries = plan
                    .entries
                    .iter()
                    .map(|e| {
                        let v = serde_json::to_value(e).unwrap_or(Value::Null);
                        PlanEntry {
                            content: e.content.clone(),
                            priority: v["priority"].as_str().unwrap_or_default().to_string(),
                            status: v["status"].as_str().unwrap_or_default().to_string(),
                        }
                    })
                    .collect();
                events.emit(EventKind::Plan { entries });
            }
            SessionUpdate::UsageUpdate(usage) => {
                if let Some(cost) = usage
                    .cost
                    .filter(|c| c.currency.eq_ignore_ascii_case("USD"))
                {
                    self.cost = Some(cost.amount);
                }
            }
            _ => {}
        }
    }

    fn diffs(&mut self, content: &[ToolCallContent], events: &EventSink) {
        for c in content {
            if let ToolCallContent::Diff(diff) = c {
                let path = diff.path.display().to_string();
                if self.edited.insert(path.clone()) {
                    events.emit(EventKind::FileEdited { path });
                }
            }
        }
    }

    fn finish_if_done(
        &mut self,
        id: &str,
        status: Option<ToolCallStatus>,
        content: &[ToolCallContent],
        raw_output: Option<&Value>,
        events: &EventSink,
    ) {
        let failed = match status {
            Some(ToolCallStatus::Completed) => false,
            Some(ToolCallStatus::Failed) => true,
            _ => return,
        };
        let Some(mut call) = self.open_tools.remove(id) else {
            return;
        };
        let text: Vec<&str> = content
            .iter()
            .filter_map(|c| match c {
                ToolCallContent::Content(c) => text_of(&c.content),
                _ => None,
            })
            .collect();
        let output = if text.is_empty() {
            raw_output.map(|o| match o {
                Value::String(s) => s.clone(),
                other => other["output"]
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string),
            })
        } else {
            Some(text.join("\n"))
        };
        if failed {
            call.error = Some(output.clone().unwrap_or_else(|| "the tool failed".into()));
        } else {
            call.output = output.clone();
        }
        events.emit(EventKind::ToolFinished {
            call_id: call.id.clone(),
            name: call.name.clone(),
            output: if failed { None } else { output },
            error: call.error.clone(),
        });
        self.tool_calls.push(call);
    }

    /// Tools the agent never finished (the turn ended first).
    pub(crate) fn unfinished_tools(&mut self) -> Vec<ToolCall> {
        self.open_tools.drain().map(|(_, c)| c).collect()
    }
}

/// `usage` of a `session/prompt` result (camelCase token counts).
pub(crate) fn prompt_usage(result: &Value) -> Usage {
    let u = &result["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("inputTokens"),
        output_tokens: n("outputTokens"),
        reasoning_tokens: n("thoughtTokens"),
        cache_read_tokens: n("cachedReadTokens"),
        cache_write_tokens: n("cachedWriteTokens"),
    }
}

/// Our stop reason for an ACP `stopReason`, and whether the task succeeded.
pub(crate) fn map_stop_reason(reason: &str) -> (bool, StopReason, Option<String>) {
    match reason {
        "end_turn" => (true, StopReason::Completed, None),
        "cancelled" => (
            false,
            StopReason::Cancelled,
            Some("the task was cancelled".into()),
        ),
        "max_tokens" => (
            false,
            StopReason::MaxTurns,
            Some("the agent hit its token limit (stopReason max_tokens)".into()),
        ),
        "max_turn_requests" => (
            false,
            StopReason::MaxTurns,
            Some("the agent hit its turn limit (stopReason max_turn_requests)".into()),
        ),
        "refusal" => (
            false,
            StopReason::Error,
            Some("the agent refused the task".into()),
        ),
        other => (
            false,
            StopReason::Error,
            Some(format!(
                "the agent stopped with an unknown reason `{other}`"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn updates_become_events_and_unknown_kinds_are_skipped() {
        let (sink, mut rx) = EventSink::channel();
        let mut turn = Turn::default();
        turn.apply(json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Hi there "}}), &sink);
        turn.apply(json!({"sessionUpdate": "brand_new_kind", "x": 1}), &sink);
        turn.apply(json!({"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "Write", "kind": "edit", "status": "pending", "_meta": {"claudeCode": {"toolName": "Write"}}}), &sink);
        turn.apply(json!({"sessionUpdate": "tool_call_update", "toolCallId": "t1", "content": [{"type": "diff", "path": "/w/a.py", "oldText": null, "newText": "x"}]}), &sink);
        turn.apply(
            json!({"sessionUpdate": "tool_call_update", "toolCallId": "t1", "status": "completed"}),
            &sink,
        );
        turn.apply(json!({"sessionUpdate": "plan", "entries": [{"content": "write a.py", "priority": "high", "status": "pending"}]}), &sink);
        turn.apply(json!({"sessionUpdate": "usage_update", "used": 10, "size": 100, "cost": {"amount": 0.5, "currency": "USD"}}), &sink);
        turn.apply(json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "done."}}), &sink);
        drop(sink);
        let mut kinds = Vec::new();
        while let Some(e) = rx.recv().await {
            kinds.push(e.kind);
        }
        assert!(
            kinds
                .iter()
                .any(|k| matches!(k, EventKind::ToolStarted { name, .. } if name == "Write"))
        );
        assert!(
            kinds
                .iter()
                .any(|k| matches!(k, EventKind::FileEdited { path } if path == "/w/a.py"))
        );
        assert!(
            kinds
                .iter()
                .any(|k| matches!(k, EventKind::Plan { entries } if entries[0].priority == "high"))
        );
        assert_eq!(turn.text, "Hi there done.");
        assert_eq!(turn.tool_calls.len(), 1);
        assert_eq!(turn.cost, Some(0.5));
        assert_eq!(turn.updates, 8);
    }
}
