//! `coding.policy` through Claude Code's stream-json control protocol.
//!
//! The CLI runs with `--permission-prompt-tool=stdio` and stdin kept open. Station's first line
//! is an `initialize` control request that registers one `PreToolUse` hook for every tool, so
//! each tool call (read-only ones and Claude's own housekeeping tools included, which Claude's
//! permission prompt never asks about) comes to us as a `hook_callback` before it runs; the
//! answer is `permissionDecision` `allow` or `deny`. A `can_use_tool` request (Claude's
//! permission prompt) is answered too, from the same decision when the hook already made one.
//! Every decision goes through [`Policy::judge`], which asks a person for `ask` and emits the
//! audit event. Stdin is closed once the `result` line came, so the CLI exits.

use std::collections::HashMap;
use std::convert::Infallible;

use serde_json::{Value, json};
use station_core::agent_process::StdoutParser;
use station_core::policy::{ASK_DEADLINE, Action, PermissionRecord, Policy, Verdict};
use station_core::{EventKind, ExecContext};
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, oneshot};

use crate::parser::StreamParser;

/// The id of our `PreToolUse` hook in the `initialize` request.
const POLICY_HOOK: &str = "station_policy";

/// What Claude waits for the hook's answer: longer than a person may take over an `ask`.
const HOOK_TIMEOUT_SECS: u64 = ASK_DEADLINE.as_secs() + 30;

/// The first lines on the CLI's stdin: `initialize` with the policy hook, then the prompt as a
/// stream-json user message.
pub(crate) fn opening_lines(prompt: &str) -> Vec<u8> {
    let initialize = json!({
        "type": "control_request",
        "request_id": "station_initialize",
        "request": {
            "subtype": "initialize",
            "hooks": {
                "PreToolUse": [{
                    "matcher": "*",
                    "hookCallbackIds": [POLICY_HOOK],
                    "timeout": HOOK_TIMEOUT_SECS,
                }],
            },
        },
    });
    let mut lines = initialize.to_string().into_bytes();
    lines.push(b'\n');
    lines.extend(user_message_line(prompt));
    lines
}

/// One stream-json user message (`--input-format stream-json`), newline-terminated.
pub(crate) fn user_message_line(prompt: &str) -> Vec<u8> {
    let message = json!({
        "type": "user",
        "message": { "role": "user", "content": [ { "type": "text", "text": prompt } ] },
    });
    let mut line = message.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// What the stdout side hands to [`serve`].
#[derive(Debug)]
pub(crate) enum FromClaude {
    /// A `control_request` from the CLI, to be answered on stdin.
    Request {
        /// Its `request_id`.
        id: String,
        /// Its `request` object.
        request: Value,
    },
    /// The `result` line came: close stdin so the CLI exits.
    Finished,
}

/// The stream-json parser, with control messages taken out of the stream and handed to
/// [`serve`].
#[derive(Debug)]
pub(crate) struct ControlledParser {
    pub(crate) inner: StreamParser,
    to_serve: mpsc::UnboundedSender<FromClaude>,
    finished_sent: bool,
}

impl ControlledParser {
    pub(crate) fn new(inner: StreamParser, to_serve: mpsc::UnboundedSender<FromClaude>) -> Self {
        ControlledParser {
            inner,
            to_serve,
            finished_sent: false,
        }
    }
}

/// The control message on `line`, if it is one (`type` `control_*` or `keep_alive`).
fn control_message(line: &str) -> Option<Value> {
    // Cheap test first: most lines are not control messages, and some are megabytes long.
    if !line.contains("\"control_") && !line.contains("\"keep_alive\"") {
        return None;
    }
    let value: Value = serde_json::from_str(line).ok()?;
    let kind = value.get("type")?.as_str()?;
    (kind.starts_with("control_") || kind == "keep_alive").then_some(value)
}

impl StdoutParser for ControlledParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        if let Some(message) = control_message(line) {
            if message["type"] == "control_request" {
                let id = message["request_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let request = message.get("request").cloned().unwrap_or(Value::Null);
                let _ = self.to_serve.send(FromClaude::Request { id, request });
            }
            // Answers to our `initialize`, cancelled requests and keep-alives carry no events.
            return Vec::new();
        }
        let events = self.inner.push_line(line);
        if !self.finished_sent && self.inner.result().is_some() {
            self.finished_sent = true;
            let _ = self.to_serve.send(FromClaude::Finished);
        }
        events
    }

    fn finished(&self) -> bool {
        self.inner.result().is_some()
    }
}

/// Talks to the CLI on its stdin for one task: writes `opening`, answers each control request
/// with `policy`'s decision, closes stdin when the result came. Never returns; the caller drops
/// it when the process has ended.
pub(crate) async fn serve(
    stdin: oneshot::Receiver<ChildStdin>,
    opening: Vec<u8>,
    mut from_claude: mpsc::UnboundedReceiver<FromClaude>,
    policy: Policy,
    ctx: &ExecContext,
) -> Infallible {
    // No stdin: the spawn failed, and the caller ends with that error.
    let mut stdin = stdin.await.ok();
    write_line(&mut stdin, &opening).await;
    let mut decided: HashMap<String, PermissionRecord> = HashMap::new();
    while let Some(message) = from_claude.recv().await {
        match message {
            FromClaude::Request { id, request } => {
                let answer = match answer(&request, &policy, ctx, &mut decided).await {
                    Ok(response) => json!({
                        "type": "control_response",
                        "response": { "subtype": "success", "request_id": id, "response": response },
                    }),
                    Err(error) => json!({
                        "type": "control_response",
                        "response": { "subtype": "error", "request_id": id, "error": error },
                    }),
                };
                let mut line = answer.to_string().into_bytes();
                line.push(b'\n');
                write_line(&mut stdin, &line).await;
            }
            // Closing stdin is what makes the CLI exit after its result.
            FromClaude::Finished => stdin = None,
        }
    }
    std::future::pending().await
}

/// Write to the CLI; once that fails (it exited) nothing more is written.
async fn write_line(stdin: &mut Option<ChildStdin>, bytes: &[u8]) {
    if let Some(pipe) = stdin.as_mut() {
        let written = async {
            pipe.write_all(bytes).await?;
            pipe.flush().await
        };
        if let Err(e) = written.await {
            tracing::debug!("writing to claude's stdin failed: {e}");
            *stdin = None;
        }
    }
}

/// The `response` for one control request, or the error to report for a request we do not
/// serve.
async fn answer(
    request: &Value,
    policy: &Policy,
    ctx: &ExecContext,
    decided: &mut HashMap<String, PermissionRecord>,
) -> Result<Value, String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match request["subtype"].as_str().unwrap_or_default() {
        "hook_callback" => {
            let input = &request["input"];
            if input["hook_event_name"] != "PreToolUse" {
                return Ok(json!({}));
            }
            let tool = text(&input["tool_name"]);
            let tool_use_id = text(input.get("tool_use_id").unwrap_or(&request["tool_use_id"]));
            let record = decide(
                &tool,
                &input["tool_input"],
                &tool_use_id,
                policy,
                ctx,
                decided,
            )
            .await;
            let permission = match record.verdict {
                Verdict::Allow => "allow",
                Verdict::Deny | Verdict::Ask => "deny",
            };
            Ok(json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": permission,
                    "permissionDecisionReason": reason(&record),
                },
            }))
        }
        "can_use_tool" => {
            let tool = text(&request["tool_name"]);
            let input = &request["input"];
            let record = decide(
                &tool,
                input,
                &text(&request["tool_use_id"]),
                policy,
                ctx,
                decided,
            )
            .await;
            Ok(match record.verdict {
                Verdict::Allow => json!({ "behavior": "allow", "updatedInput": input }),
                Verdict::Deny | Verdict::Ask => {
                    json!({ "behavior": "deny", "message": reason(&record) })
                }
            })
        }
        other => Err(format!(
            "Station does not serve control requests of subtype `{other}`"
        )),
    }
}

/// The policy's decision on one tool call, judged once per `tool_use_id`.
async fn decide(
    tool: &str,
    input: &Value,
    tool_use_id: &str,
    policy: &Policy,
    ctx: &ExecContext,
    decided: &mut HashMap<String, PermissionRecord>,
) -> PermissionRecord {
    if let Some(record) = decided.get(tool_use_id).filter(|_| !tool_use_id.is_empty()) {
        return record.clone();
    }
    let record = policy
        .judge(tool, Action::of_tool_call(tool, input), ctx)
        .await;
    if !tool_use_id.is_empty() {
        decided.insert(tool_use_id.to_string(), record.clone());
    }
    record
}

/// What Claude (and the model) is told about a decision.
fn reason(record: &PermissionRecord) -> String {
    match record.verdict {
        Verdict::Allow => format!("allowed by Station's policy ({})", record.rule),
        Verdict::Deny | Verdict::Ask => format!(
            "denied by Station's policy ({}); do not retry this, work around it or say it cannot be done",
            record.rule
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_registers_the_hook_for_every_tool_then_sends_the_prompt() {
        let opening = String::from_utf8(opening_lines("--help\nme \"now\"")).unwrap();
        let lines: Vec<Value> = opening
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{opening}");
        assert_eq!(lines[0]["request"]["subtype"], "initialize");
        let hook = &lines[0]["request"]["hooks"]["PreToolUse"][0];
        assert_eq!(hook["matcher"], "*");
        assert_eq!(hook["hookCallbackIds"][0], POLICY_HOOK);
        assert!(hook["timeout"].as_u64().unwrap() > ASK_DEADLINE.as_secs());
        assert_eq!(lines[1]["type"], "user");
        assert_eq!(
            lines[1]["message"]["content"][0]["text"],
            "--help\nme \"now\""
        );
    }

    #[test]
    fn control_lines_are_taken_out_and_others_pass() {
        assert!(control_message(r#"{"type":"control_request","request_id":"1"}"#).is_some());
        assert!(control_message(r#"{"type":"keep_alive"}"#).is_some());
        let text = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"\"control_request\""}]}}"#;
        assert!(control_message(text).is_none());
    }
}
