//! The OpenCode server's JSON, as far as Station reads it.
//!
//! Every type is tolerant: unknown fields are ignored, missing fields default, and numbers may be
//! integers or floats (the spec types token counts as `number`). Field names follow the server
//! (`sessionID`, `callID`, nested `tokens.cache{read,write}`).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use station_core::Usage;

/// A project (items of `GET /project`): sessions are listed per project.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProjectInfo {
    /// `global` for directories outside any git repository.
    pub id: String,
    /// The project's root directory.
    pub worktree: String,
}

/// A session (`GET /session/{id}`, `POST /session`, items of `GET /session`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SessionInfo {
    /// `ses_...`.
    pub id: String,
    /// Title (the server generates one from the first prompt when none was given).
    pub title: Option<String>,
    /// The directory the session works in.
    pub directory: Option<String>,
    /// Set on child sessions (sub-agents).
    #[serde(rename = "parentID")]
    pub parent_id: Option<String>,
    /// Creation and update times in Unix milliseconds.
    pub time: Option<SessionTime>,
}

/// Session times in Unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SessionTime {
    /// Created.
    #[serde(deserialize_with = "de_opt_u64")]
    pub created: Option<u64>,
    /// Last updated.
    #[serde(deserialize_with = "de_opt_u64")]
    pub updated: Option<u64>,
}

/// `GET /global/health`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HealthInfo {
    /// Always true when the server answers.
    pub healthy: bool,
    /// Server version.
    pub version: Option<String>,
}

/// One message with its parts (`GET /session/{id}/message`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MessageWithParts {
    /// The message.
    pub info: MessageInfo,
    /// Its parts, in order.
    pub parts: Vec<Part>,
}

/// A user or assistant message. One assistant message is one model call.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MessageInfo {
    /// `msg_...`.
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// The session.
    #[serde(rename = "sessionID")]
    pub session_id: Option<String>,
    /// For an assistant message: the user message it answers.
    #[serde(rename = "parentID")]
    pub parent_id: Option<String>,
    /// Model id (assistant).
    #[serde(rename = "modelID")]
    pub model_id: Option<String>,
    /// Provider id (assistant).
    #[serde(rename = "providerID")]
    pub provider_id: Option<String>,
    /// Tokens of this model call (assistant).
    pub tokens: Option<Tokens>,
    /// Cost in USD of this model call (assistant).
    #[serde(deserialize_with = "de_opt_f64")]
    pub cost: Option<f64>,
    /// Why the model stopped (`stop`, `tool-calls`, ...); absent while running or after an abort.
    pub finish: Option<String>,
    /// Set when the call failed or was aborted.
    pub error: Option<ErrorInfo>,
    /// Created and completed, Unix milliseconds.
    pub time: Option<PartTime>,
}

impl MessageInfo {
    /// Whether this is an assistant message.
    pub fn is_assistant(&self) -> bool {
        self.role == "assistant"
    }
    /// `provider/model`, when both are known.
    pub fn model(&self) -> Option<String> {
        match (&self.provider_id, &self.model_id) {
            (Some(p), Some(m)) if !p.is_empty() && !m.is_empty() => Some(format!("{p}/{m}")),
            (None, Some(m)) if !m.is_empty() => Some(m.clone()),
            _ => None,
        }
    }
}

/// Token counts as OpenCode reports them (cache counts are nested under `cache`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Tokens {
    /// Prompt tokens.
    #[serde(deserialize_with = "de_u64")]
    pub input: u64,
    /// Completion tokens.
    #[serde(deserialize_with = "de_u64")]
    pub output: u64,
    /// Reasoning tokens.
    #[serde(deserialize_with = "de_u64")]
    pub reasoning: u64,
    /// Prompt-cache reads and writes.
    pub cache: Option<CacheTokens>,
    /// Flat form some older servers used; read only when `cache` is absent.
    #[serde(rename = "cacheRead", deserialize_with = "de_u64")]
    pub flat_cache_read: u64,
    /// Flat form some older servers used; read only when `cache` is absent.
    #[serde(rename = "cacheWrite", deserialize_with = "de_u64")]
    pub flat_cache_write: u64,
}

/// Nested cache counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CacheTokens {
    /// Tokens read from the cache.
    #[serde(deserialize_with = "de_u64")]
    pub read: u64,
    /// Tokens written to the cache.
    #[serde(deserialize_with = "de_u64")]
    pub write: u64,
}

impl Tokens {
    /// As core [`Usage`].
    pub fn usage(&self) -> Usage {
        let (cache_read, cache_write) = match self.cache {
            Some(c) => (c.read, c.write),
            None => (self.flat_cache_read, self.flat_cache_write),
        };
        Usage {
            input_tokens: self.input,
            output_tokens: self.output,
            reasoning_tokens: self.reasoning,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
        }
    }
}

/// Start and end (or created and completed) in Unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PartTime {
    /// Start.
    #[serde(deserialize_with = "de_opt_u64")]
    pub start: Option<u64>,
    /// End.
    #[serde(deserialize_with = "de_opt_u64")]
    pub end: Option<u64>,
    /// Message created.
    #[serde(deserialize_with = "de_opt_u64")]
    pub created: Option<u64>,
    /// Message completed.
    #[serde(deserialize_with = "de_opt_u64")]
    pub completed: Option<u64>,
}

/// One part of a message. Only the fields of the kinds Station reads are modelled: `text`,
/// `reasoning`, `tool`, `step-finish`; other kinds keep their `type` and are skipped.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Part {
    /// `prt_...`.
    pub id: String,
    /// Part kind: `text`, `reasoning`, `tool`, `step-start`, `step-finish`, `file`, `patch`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The message it belongs to.
    #[serde(rename = "messageID")]
    pub message_id: Option<String>,
    /// The session it belongs to.
    #[serde(rename = "sessionID")]
    pub session_id: Option<String>,
    /// Text of a `text` or `reasoning` part.
    pub text: Option<String>,
    /// Synthetic text (added by OpenCode, not the model).
    pub synthetic: Option<bool>,
    /// Text the model does not see.
    pub ignored: Option<bool>,
    /// Start and end of a `text`/`reasoning` part; `end` is set once it is complete.
    pub time: Option<PartTime>,
    /// Tool call id (`tool`).
    #[serde(rename = "callID")]
    pub call_id: Option<String>,
    /// Tool name (`tool`).
    pub tool: Option<String>,
    /// Tool state (`tool`).
    pub state: Option<ToolState>,
    /// Why the step ended (`step-finish`).
    pub reason: Option<String>,
    /// Tokens of the step (`step-finish`).
    pub tokens: Option<Tokens>,
    /// Cost of the step (`step-finish`).
    #[serde(deserialize_with = "de_opt_f64")]
    pub cost: Option<f64>,
}

impl Part {
    /// Whether a text or reasoning part is complete.
    pub fn is_complete(&self) -> bool {
        self.time.and_then(|t| t.end).is_some()
    }
}

/// The state of a tool part: `pending` → `running` → `completed` | `error`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ToolState {
    /// `pending`, `running`, `completed` or `error`.
    pub status: String,
    /// Arguments.
    pub input: Value,
    /// Output (`completed`).
    pub output: Option<String>,
    /// Error (`error`).
    pub error: Option<String>,
    /// Short description (`running`, `completed`).
    pub title: Option<String>,
    /// Start and end.
    pub time: Option<PartTime>,
}

/// An error OpenCode attached to a message or a session: `{name, data:{message, ...}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorInfo {
    /// `MessageAbortedError`, `ProviderAuthError`, `APIError`, `UnknownError`, ...
    pub name: String,
    /// Details.
    pub data: Value,
}

impl ErrorInfo {
    /// Whether this is the error an abort leaves.
    pub fn is_abort(&self) -> bool {
        self.name == "MessageAbortedError"
    }

    /// A sentence for humans.
    pub fn describe(&self) -> String {
        let message = self
            .data
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim();
        let with = |prefix: &str| {
            if message.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}: {message}")
            }
        };
        match self.name.as_str() {
            "MessageAbortedError" => "the task was aborted".to_string(),
            "ProviderAuthError" => {
                let provider = self
                    .data
                    .get("providerID")
                    .and_then(Value::as_str)
                    .unwrap_or("the model provider");
                with(&format!(
                    "{provider} rejected OpenCode's credentials (ProviderAuthError)"
                ))
            }
            "APIError" => match self.data.get("statusCode").and_then(Value::as_u64) {
                Some(code) => with(&format!("the model API failed with HTTP {code} (APIError)")),
                None => with("the model API failed (APIError)"),
            },
            "MessageOutputLengthError" => {
                "the model reached its output length limit (MessageOutputLengthError)".to_string()
            }
            "ContextOverflowError" => with(
                "the conversation no longer fits the model's context window (ContextOverflowError)",
            ),
            "" => with("OpenCode reported an error"),
            other => with(other),
        }
    }
}

/// One diff entry of `GET /session/{id}/diff`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FileDiff {
    /// The file (relative to the project, or absolute).
    pub file: String,
    /// `added`, `deleted` or `modified`.
    pub status: Option<String>,
    /// Lines added.
    #[serde(deserialize_with = "de_u64")]
    pub additions: u64,
    /// Lines removed.
    #[serde(deserialize_with = "de_u64")]
    pub deletions: u64,
}

/// The status of a session (`GET /session/status` values, `session.status` events).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SessionStatus {
    /// `idle`, `busy` or `retry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Retry attempt (`retry`).
    #[serde(deserialize_with = "de_opt_u64")]
    pub attempt: Option<u64>,
    /// Why it retries (`retry`).
    pub message: Option<String>,
}

impl SessionStatus {
    /// Whether the session is working (busy or retrying).
    pub fn is_working(&self) -> bool {
        matches!(self.kind.as_str(), "busy" | "retry")
    }
}

/// One frame of `GET /event`: `{"id":"evt_...","type":...,"properties":{...}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerEvent {
    /// Event type (`message.part.updated`, `session.idle`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Payload.
    pub properties: Value,
}

impl ServerEvent {
    /// The session the event is about, wherever this event type keeps it.
    pub fn session_id(&self) -> Option<&str> {
        let p = &self.properties;
        p.get("sessionID")
            .or_else(|| p.get("part").and_then(|x| x.get("sessionID")))
            .or_else(|| p.get("info").and_then(|x| x.get("sessionID")))
            .and_then(Value::as_str)
    }
}

fn number_to_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.round() as u64)
        }),
        _ => None,
    }
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(number_to_u64(&Value::deserialize(d)?).unwrap_or(0))
}

fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(number_to_u64(&Value::deserialize(d)?))
}

fn de_opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Value::deserialize(d)?.as_f64().filter(|f| f.is_finite()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_cache_tokens_and_float_counts() {
        let t: Tokens = serde_json::from_str(
            r#"{"total":10,"input":7.0,"output":3,"reasoning":1,"cache":{"read":40,"write":5}}"#,
        )
        .unwrap();
        assert_eq!(
            t.usage(),
            Usage {
                input_tokens: 7,
                output_tokens: 3,
                reasoning_tokens: 1,
                cache_read_tokens: 40,
                cache_write_tokens: 5
            }
        );
        let flat: Tokens =
            serde_json::from_str(r#"{"input":1,"output":2,"cacheRead":3,"cacheWrite":4}"#).unwrap();
        assert_eq!(
            (
                flat.usage().cache_read_tokens,
                flat.usage().cache_write_tokens
            ),
            (3, 4)
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let e: ErrorInfo = serde_json::from_str(r#"{"name":"ProviderAuthError","data":{"providerID":"anthropic","message":"invalid x-api-key"}}"#).unwrap();
        assert_eq!(
            e.describe(),
            "anthropic rejected OpenCode's credentials (ProviderAuthError): invalid x-api-key"
        );
        let e: ErrorInfo = serde_json::from_str(r#"{"name":"APIError","data":{"message":"overloaded","statusCode":529,"isRetryable":true}}"#).unwrap();
        assert_eq!(
            e.describe(),
            "the model API failed with HTTP 529 (APIError): overloaded"
        );
        let e: ErrorInfo =
            serde_json::from_str(r#"{"name":"MessageAbortedError","data":{"message":"Aborted"}}"#)
                .unwrap();
        assert!(e.is_abort());
    }

    #[test]
    fn sample_transcript_parses() {
        let text = include_str!("../tests/it/fixtures/opencode-messages-after-abort.json");
        let messages: Vec<MessageWithParts> = serde_json::from_str(text).unwrap();
        assert_eq!(messages.len(), 5);
        let tool = messages[1].parts.iter().find(|p| p.kind == "tool").unwrap();
        assert_eq!(tool.tool.as_deref(), Some("write"));
        assert_eq!(
            tool.state.as_ref().unwrap().output.as_deref(),
            Some("Wrote file successfully.")
        );
        assert!(messages[4].info.error.as_ref().unwrap().is_abort());
    }
}
