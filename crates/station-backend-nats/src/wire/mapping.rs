//! Mapping core events to stream events and back.

use station_core::{EventKind, ToolCall};

use super::{StreamEvent, ToolInfo, now_iso};

/// How a core event goes on the wire: the plugin type and fields where the plugin has one, our
/// own type name otherwise, and always the typed event.
pub fn stream_event_from_core(
    task_id: &str,
    seq: u64,
    worker: &str,
    kind: &EventKind,
) -> StreamEvent {
    let mut ev = StreamEvent {
        task_id: task_id.to_string(),
        seq,
        timestamp: now_iso(),
        kind: String::new(),
        content: None,
        tool: None,
        git: None,
        session: None,
        event: serde_json::to_value(kind).ok(),
        worker: Some(worker.to_string()),
    };
    match kind {
        EventKind::Text { text } => {
            ev.kind = "text".into();
            ev.content = Some(text.clone());
        }
        EventKind::TextDelta { text } => {
            ev.kind = "text_delta".into();
            ev.content = Some(text.clone());
        }
        EventKind::Reasoning { text } => {
            ev.kind = "thinking".into();
            ev.content = Some(text.clone());
        }
        EventKind::ToolStarted {
            call_id,
            name,
            input,
        } => {
            ev.kind = "tool_start".into();
            ev.tool = Some(ToolInfo {
                name: name.clone(),
                call_id: call_id.clone().unwrap_or_default(),
                args: Some(input.clone()),
                output: None,
                duration: None,
                error: None,
            });
        }
        EventKind::ToolFinished {
            call_id,
            name,
            output,
            error,
        } => {
            ev.kind = "tool_end".into();
            let shown = error.clone().or_else(|| output.clone());
            ev.tool = Some(ToolInfo {
                name: name.clone(),
                call_id: call_id.clone().unwrap_or_default(),
                args: None,
                output: shown.map(serde_json::Value::String),
                duration: None,
                error: error.clone(),
            });
        }
        EventKind::FileEdited { path } => {
            ev.kind = "file_edited".into();
            ev.content = Some(path.clone());
        }
        EventKind::StepFinished { .. } => ev.kind = "step_finished".into(),
        EventKind::Notice { message } => {
            ev.kind = "notice".into();
            ev.content = Some(message.clone());
        }
        EventKind::BackendSession { backend_session_id } => {
            ev.kind = "backend_session".into();
            ev.content = Some(backend_session_id.clone());
        }
        EventKind::Failed { message, .. } => {
            ev.kind = "error".into();
            ev.content = Some(message.clone());
        }
        EventKind::Started { .. } => ev.kind = "started".into(),
        EventKind::Finished { .. } => ev.kind = "finished".into(),
        _ => ev.kind = "event".into(),
    }
    ev
}

/// The core event a stream event stands for, if any. The typed extension wins; plugin events
/// are mapped by type. `Started`/terminal events are never returned: the runner owns them.
pub fn core_event_from_stream(ev: &StreamEvent) -> Option<EventKind> {
    if let Some(kind) = ev
        .event
        .as_ref()
        .and_then(|v| serde_json::from_value::<EventKind>(v.clone()).ok())
    {
        return match kind {
            EventKind::Started { .. } | EventKind::Finished { .. } => None,
            EventKind::Failed { message, .. } => Some(EventKind::Notice {
                message: format!("worker error: {message}"),
            }),
            // The client reports the session name as the backend id; the executor's id is a
            // detail of the worker.
            EventKind::BackendSession { backend_session_id } => Some(EventKind::Notice {
                message: format!("executor session: {backend_session_id}"),
            }),
            other => Some(other),
        };
    }
    let content = ev.content.clone().unwrap_or_default();
    let tool_call_id = |t: &ToolInfo| Some(t.call_id.clone()).filter(|c| !c.is_empty());
    match ev.kind.as_str() {
        "text" => Some(EventKind::Text { text: content }),
        "text_delta" => Some(EventKind::TextDelta { text: content }),
        "thinking" => Some(EventKind::Reasoning { text: content }),
        "tool_start" => ev.tool.as_ref().map(|t| EventKind::ToolStarted {
            call_id: tool_call_id(t),
            name: t.name.clone(),
            input: t.args.clone().unwrap_or(serde_json::Value::Null),
        }),
        "tool_end" => ev.tool.as_ref().map(|t| EventKind::ToolFinished {
            call_id: tool_call_id(t),
            name: t.name.clone(),
            output: t
                .output
                .as_ref()
                .map(value_text)
                .filter(|_| t.error.is_none()),
            error: t.error.clone(),
        }),
        "file_edited" => Some(EventKind::FileEdited { path: content }),
        "error" => Some(EventKind::Notice {
            message: format!("worker error: {content}"),
        }),
        "workspace_created" | "workspace_reused" => Some(EventKind::Notice {
            message: format!("{}: {content}", ev.kind.replace('_', " ")),
        }),
        "session_created" | "session_reused" => {
            let s = ev.session.clone().unwrap_or_default();
            Some(EventKind::Notice {
                message: format!(
                    "{} `{}` (executor session {})",
                    ev.kind.replace('_', " "),
                    s.name,
                    if s.opencode_id.is_empty() {
                        "pending"
                    } else {
                        &s.opencode_id
                    }
                ),
            })
        }
        "git_clone" | "git_pull" | "git_checkout" => {
            let g = ev.git.clone().unwrap_or_default();
            Some(EventKind::Notice {
                message: format!(
                    "{}: {} {} {}",
                    ev.kind.replace('_', " "),
                    g.url.unwrap_or_default(),
                    g.branch.unwrap_or_default(),
                    g.commit.unwrap_or_default()
                )
                .trim_end()
                .to_string(),
            })
        }
        "notice" => Some(EventKind::Notice { message: content }),
        // The prompt is the caller's own text; echoing it adds nothing.
        _ => None,
    }
}

/// A tool call as the plugin reports it in a `tool_end` event.
pub fn tool_call_from_stream(ev: &StreamEvent) -> Option<ToolCall> {
    if ev.kind != "tool_end" {
        return None;
    }
    let t = ev.tool.as_ref()?;
    Some(ToolCall {
        id: Some(t.call_id.clone()).filter(|c| !c.is_empty()),
        name: t.name.clone(),
        input: t.args.clone().unwrap_or(serde_json::Value::Null),
        output: t
            .output
            .as_ref()
            .map(value_text)
            .filter(|_| t.error.is_none()),
        error: t.error.clone(),
        duration_ms: t.duration,
    })
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
