//! Maps OpenCode's `/event` frames (and, for whatever the stream missed, the final transcript)
//! onto Station's core events, for one session.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use station_core::{EventKind, EventSink, Usage};

use crate::text::{clip, redact};
use crate::wire::{ErrorInfo, MessageInfo, MessageWithParts, Part, ServerEvent, SessionStatus};

/// What a frame means for the task that is waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Keep reading.
    Continue,
    /// The session went idle after working: the task's turn is over (late parts may follow).
    Idle,
}

/// Turns the frames of one session into core events, each at most once.
///
/// Text streams as [`EventKind::TextDelta`] and is repeated whole as [`EventKind::Text`] when the
/// part completes; tool parts give [`EventKind::ToolStarted`] once running and
/// [`EventKind::ToolFinished`] once completed or failed; `step-finish` parts give
/// [`EventKind::StepFinished`]. Frames of other sessions and unknown types are ignored.
#[derive(Debug)]
pub struct EventMapper {
    session_id: String,
    roles: HashMap<String, String>,
    part_kinds: HashMap<String, String>,
    texts_done: HashSet<String>,
    tools_started: HashSet<String>,
    tools_finished: HashSet<String>,
    /// Call id → tool name, for naming the tool behind a permission request.
    tool_names: HashMap<String, String>,
    steps_done: HashSet<String>,
    usage_by_message: BTreeMap<String, (Usage, f64)>,
    errors: Vec<ErrorInfo>,
    working: bool,
    idle: bool,
    frames_for_session: u64,
}

impl EventMapper {
    /// A mapper for the session `session_id` (`ses_...`).
    pub fn new(session_id: impl Into<String>) -> Self {
        EventMapper {
            session_id: session_id.into(),
            roles: HashMap::new(),
            part_kinds: HashMap::new(),
            texts_done: HashSet::new(),
            tools_started: HashSet::new(),
            tools_finished: HashSet::new(),
            tool_names: HashMap::new(),
            steps_done: HashSet::new(),
            usage_by_message: BTreeMap::new(),
            errors: Vec::new(),
            working: false,
            idle: false,
            frames_for_session: 0,
        }
    }

    /// Mark messages that existed before the task, so their late updates are not reported.
    pub fn ignore_messages<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.roles.insert(id.to_string(), "old".to_string());
        }
    }

    /// Whether the session has been seen working (busy, or an assistant message or part).
    pub fn seen_work(&self) -> bool {
        self.working
    }

    /// Whether an idle signal arrived after work.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// Frames about this session so far.
    pub fn frames_for_session(&self) -> u64 {
        self.frames_for_session
    }

    /// Errors OpenCode reported for the session (`session.error`, `message.updated` errors).
    pub fn errors(&self) -> &[ErrorInfo] {
        &self.errors
    }

    /// The name of the tool with call id `call_id`, once its part was seen.
    pub fn tool_name(&self, call_id: &str) -> Option<&str> {
        self.tool_names.get(call_id).map(String::as_str)
    }

    /// Tokens and cost of the assistant messages seen so far (a fallback when the transcript
    /// cannot be read).
    pub fn usage(&self) -> (Usage, f64) {
        self.usage_by_message
            .values()
            .fold((Usage::default(), 0.0), |(u, c), (mu, mc)| {
                (u + *mu, c + mc)
            })
    }

    /// Handle the `data` of one SSE frame.
    pub fn handle_data(&mut self, data: &str, sink: &EventSink) -> Progress {
        match serde_json::from_str::<ServerEvent>(data) {
            Ok(event) => self.handle(&event, sink),
            Err(e) => {
                tracing::debug!("skipping an event frame that is not JSON: {e}");
                Progress::Continue
            }
        }
    }

    /// Handle one event.
    pub fn handle(&mut self, event: &ServerEvent, sink: &EventSink) -> Progress {
        let props = &event.properties;
        // `file.edited` carries no session; the stream is already scoped to the workspace.
        if event.kind == "file.edited" {
            if let Some(file) = props
                .get("file")
                .and_then(Value::as_str)
                .filter(|_| self.working && !self.idle)
            {
                sink.emit(EventKind::FileEdited {
                    path: file.to_string(),
                });
            }
            return Progress::Continue;
        }
        if event.session_id() != Some(self.session_id.as_str()) {
            return Progress::Continue;
        }
        self.frames_for_session += 1;
        match event.kind.as_str() {
            "message.updated" => {
                if let Some(info) = props
                    .get("info")
                    .and_then(|v| serde_json::from_value::<MessageInfo>(v.clone()).ok())
                {
                    self.message_updated(&info);
                }
            }
            "message.part.updated" => {
                if let Some(part) = props
                    .get("part")
                    .and_then(|v| serde_json::from_value::<Part>(v.clone()).ok())
                {
                    // Servers before 1.x sent text deltas on the part update itself.
                    if let Some(delta) = props.get("delta").and_then(Value::as_str)
                        && part.kind == "text"
                        && self.is_assistant_part(&part)
                        && !delta.is_empty()
                    {
                        self.working = true;
                        sink.emit(EventKind::TextDelta {
                            text: delta.to_string(),
                        });
                    }
                    self.part(&part, sink);
                }
            }
            "message.part.delta" => self.delta(props, sink),
            "session.status" => {
                let status: SessionStatus = props
                    .get("status")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                match status.kind.as_str() {
                    "busy" => self.working = true,
                    "retry" => {
                        self.working = true;
                        let attempt = status
                            .attempt
                            .map(|a| format!(" (attempt {a})"))
                            .unwrap_or_default();
                        let why = status
                            .message
                            .as_deref()
                            .map(|m| format!(": {}", redact(m)))
                            .unwrap_or_default();
                        sink.emit(EventKind::Notice {
                            message: format!("OpenCode is retrying the model call{attempt}{why}"),
                        });
                    }
                    "idle" => return self.went_idle(),
                    _ => {}
                }
            }
            "session.idle" => return self.went_idle(),
            "session.error" => {
                if let Some(error) = props
                    .get("error")
                    .and_then(|v| serde_json::from_value::<ErrorInfo>(v.clone()).ok())
                {
                    if !error.is_abort() {
                        sink.emit(EventKind::Notice {
                            message: format!(
                                "OpenCode reported an error: {}",
                                redact(&error.describe())
                            ),
                        });
                    }
                    self.record_error(error);
                }
            }
            "permission.asked" | "permission.updated" | "question.asked" => {
                let what = props
                    .get("title")
                    .or_else(|| props.get("permission"))
                    .or_else(|| props.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("a decision");
                sink.emit(EventKind::Notice {
                    message: format!(
                        "OpenCode is waiting for an answer ({}); allow the tools in the OpenCode config (`permission`) so tasks never wait",
                        redact(what)
                    ),
                });
            }
            _ => {}
        }
        Progress::Continue
    }

    /// Emit events for whatever the final transcript shows that the stream did not (a dropped
    /// stream, parts that arrived after the drain). Call with the task's new messages.
    pub fn reconcile(&mut self, messages: &[MessageWithParts], sink: &EventSink) {
        for message in messages {
            self.message_updated(&message.info);
            for part in &message.parts {
                self.part(part, sink);
            }
        }
    }

    fn went_idle(&mut self) -> Progress {
        if self.working {
            self.idle = true;
            Progress::Idle
        } else {
            Progress::Continue
        }
    }

    fn record_error(&mut self, error: ErrorInfo) {
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    fn message_updated(&mut self, info: &MessageInfo) {
        if info.id.is_empty() {
            return;
        }
        if self.roles.get(&info.id).is_some_and(|r| r == "old") {
            return;
        }
        self.roles.insert(info.id.clone(), info.role.clone());
        if !info.is_assistant() {
            return;
        }
        self.working = true;
        if let Some(tokens) = info.tokens {
            self.usage_by_message
                .insert(info.id.clone(), (tokens.usage(), info.cost.unwrap_or(0.0)));
        }
        if let Some(error) = &info.error {
            self.record_error(error.clone());
        }
    }

    fn is_assistant_part(&self, part: &Part) -> bool {
        match part.message_id.as_deref().and_then(|m| self.roles.get(m)) {
            Some(role) => role == "assistant",
            // Parts of a message not seen yet: user parts only ever carry the prompt text, which
            // arrives after its `message.updated`, so an unknown message is an assistant's.
            None => true,
        }
    }

    fn part(&mut self, part: &Part, sink: &EventSink) {
        if part.id.is_empty() || !self.is_assistant_part(part) {
            return;
        }
        self.part_kinds.insert(part.id.clone(), part.kind.clone());
        match part.kind.as_str() {
            "text" | "reasoning" => {
                self.working = true;
                let text = part.text.as_deref().unwrap_or("");
                let skip = part.ignored == Some(true) || text.trim().is_empty();
                if part.is_complete() && !skip && self.texts_done.insert(part.id.clone()) {
                    let text = redact(text);
                    sink.emit(if part.kind == "text" {
                        EventKind::Text { text }
                    } else {
                        EventKind::Reasoning { text }
                    });
                }
            }
            "tool" => {
                self.working = true;
                let Some(state) = &part.state else { return };
                let key = part
                    .call_id
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| part.id.clone());
                let name = part.tool.clone().unwrap_or_default();
                if !name.is_empty() {
                    self.tool_names.insert(key.clone(), name.clone());
                }
                let started = matches!(state.status.as_str(), "running" | "completed" | "error");
                if started && self.tools_started.insert(key.clone()) {
                    sink.emit(EventKind::ToolStarted {
                        call_id: part.call_id.clone(),
                        name: name.clone(),
                        input: redact_json(&state.input),
                    });
                }
                if matches!(state.status.as_str(), "completed" | "error")
                    && self.tools_finished.insert(key)
                {
                    let (output, error) = if state.status == "completed" {
                        (
                            Some(clip(&redact(state.output.as_deref().unwrap_or("")))),
                            None,
                        )
                    } else {
                        (
                            None,
                            Some(clip(&redact(
                                state.error.as_deref().unwrap_or("the tool failed"),
                            ))),
                        )
                    };
                    sink.emit(EventKind::ToolFinished {
                        call_id: part.call_id.clone(),
                        name,
                        output,
                        error,
                    });
                }
            }
            "step-finish" if self.steps_done.insert(part.id.clone()) => {
                let usage = part.tokens.map(|t| t.usage()).unwrap_or_default();
                sink.emit(EventKind::StepFinished {
                    usage,
                    cost_usd: part.cost,
                });
            }
            _ => {}
        }
    }

    fn delta(&mut self, props: &Value, sink: &EventSink) {
        let field = props.get("field").and_then(Value::as_str).unwrap_or("text");
        let Some(delta) = props.get("delta").and_then(Value::as_str) else {
            return;
        };
        if field != "text" || delta.is_empty() {
            return;
        }
        let part_id = props.get("partID").and_then(Value::as_str).unwrap_or("");
        let message_id = props.get("messageID").and_then(Value::as_str);
        if message_id
            .and_then(|m| self.roles.get(m))
            .is_some_and(|role| role != "assistant")
        {
            return;
        }
        match self.part_kinds.get(part_id).map(String::as_str) {
            Some("text") | None => {
                self.working = true;
                sink.emit(EventKind::TextDelta {
                    text: delta.to_string(),
                });
            }
            _ => {}
        }
    }
}

/// Redact every string inside a JSON value.
pub(crate) fn redact_json(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mapper: &mut EventMapper, frames: &[&str]) -> (Vec<EventKind>, Vec<Progress>) {
        let (sink, mut rx) = EventSink::channel();
        let progress = frames
            .iter()
            .map(|f| mapper.handle_data(f, &sink))
            .collect();
        drop(sink);
        let mut out = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            out.push(ev.kind);
        }
        (out, progress)
    }

    #[test]
    fn idle_before_any_work_is_not_the_end() {
        let mut m = EventMapper::new("ses_a");
        let (_, p) = run(
            &mut m,
            &[r#"{"type":"session.idle","properties":{"sessionID":"ses_a"}}"#],
        );
        assert_eq!(p, vec![Progress::Continue]);
        let (_, p) = run(
            &mut m,
            &[
                r#"{"type":"session.status","properties":{"sessionID":"ses_a","status":{"type":"busy"}}}"#,
                r#"{"type":"session.status","properties":{"sessionID":"ses_a","status":{"type":"idle"}}}"#,
            ],
        );
        assert_eq!(p, vec![Progress::Continue, Progress::Idle]);
    }

    #[test]
    fn other_sessions_user_parts_and_old_messages_are_ignored() {
        let mut m = EventMapper::new("ses_a");
        m.ignore_messages(["msg_old"]);
        let (events, _) = run(
            &mut m,
            &[
                r#"{"type":"message.part.delta","properties":{"sessionID":"ses_b","messageID":"msg_x","partID":"prt_x","field":"text","delta":"other"}}"#,
                r#"{"type":"message.updated","properties":{"sessionID":"ses_a","info":{"id":"msg_u","role":"user"}}}"#,
                r#"{"type":"message.part.updated","properties":{"sessionID":"ses_a","part":{"id":"prt_u","messageID":"msg_u","type":"text","text":"the prompt","time":{"start":1,"end":2}}}}"#,
                r#"{"type":"message.part.updated","properties":{"sessionID":"ses_a","part":{"id":"prt_o","messageID":"msg_old","type":"text","text":"old","time":{"start":1,"end":2}}}}"#,
                r#"{"type":"some.future.event","properties":{"sessionID":"ses_a"}}"#,
                "not json",
            ],
        );
        assert_eq!(events, vec![]);
    }

    #[test]
    fn tool_error_and_retry_notice() {
        let mut m = EventMapper::new("ses_a");
        let (events, _) = run(
            &mut m,
            &[
                r#"{"type":"session.status","properties":{"sessionID":"ses_a","status":{"type":"retry","attempt":2,"message":"rate limited","next":1}}}"#,
                r#"{"type":"message.part.updated","properties":{"sessionID":"ses_a","part":{"id":"prt_t","messageID":"msg_a","type":"tool","tool":"bash","callID":"call_1","state":{"status":"error","input":{"command":"false"},"error":"exit 1","time":{"start":1,"end":2}}}}}"#,
            ],
        );
        assert_eq!(
            events,
            vec![
                EventKind::Notice {
                    message: "OpenCode is retrying the model call (attempt 2): rate limited".into()
                },
                EventKind::ToolStarted {
                    call_id: Some("call_1".into()),
                    name: "bash".into(),
                    input: serde_json::json!({"command":"false"})
                },
                EventKind::ToolFinished {
                    call_id: Some("call_1".into()),
                    name: "bash".into(),
                    output: None,
                    error: Some("exit 1".into())
                },
            ]
        );
    }
}
