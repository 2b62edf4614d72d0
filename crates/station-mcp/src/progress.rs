//! One line per coding event, for progress and log notifications ("step 3: write hello.py").

use serde_json::Value;
use station_core::{Event, EventKind};

/// How long a progress or log line may be.
const MAX_LINE: usize = 160;

/// An event as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    /// The event's `type` (`tool_started`, `file_edited`, ...).
    pub(crate) kind: &'static str,
    /// One line.
    pub(crate) message: String,
    /// Worth a warning rather than an info log line.
    pub(crate) warning: bool,
    /// A piece of streamed text: many of these arrive, so notifications about them are throttled.
    pub(crate) streaming: bool,
}

/// Describe `event`; `step` is the number of this tool call when the event starts one.
pub(crate) fn describe(event: &Event, step: u64) -> Described {
    // Backends redact their events; this is a second line of defence, as these lines leave
    // the machine in notifications.
    let plain = |kind, message: String| Described {
        kind,
        message: truncate(&station_core::redact::redact(&message), MAX_LINE),
        warning: false,
        streaming: false,
    };
    match &event.kind {
        EventKind::Started { backend, .. } => plain("started", format!("started on {backend}")),
        EventKind::BackendSession { backend_session_id } => plain(
            "backend_session",
            format!("backend session {backend_session_id}"),
        ),
        EventKind::TextDelta { text } => Described {
            streaming: true,
            ..plain("text_delta", format!("writing: {}", one_line(text)))
        },
        EventKind::Text { text } => plain("text", format!("says: {}", one_line(text))),
        EventKind::Reasoning { .. } => Described {
            streaming: true,
            ..plain("reasoning", "thinking".into())
        },
        EventKind::ToolStarted { name, input, .. } => {
            let what = tool_target(input)
                .map(|t| format!(" {t}"))
                .unwrap_or_default();
            plain("tool_started", format!("step {step}: {name}{what}"))
        }
        EventKind::ToolFinished { name, error, .. } => match error {
            Some(e) => Described {
                warning: true,
                ..plain("tool_finished", format!("{name} failed: {}", one_line(e)))
            },
            None => plain("tool_finished", format!("{name} done")),
        },
        EventKind::FileEdited { path } => plain("file_edited", format!("edited {path}")),
        EventKind::StepFinished { usage, .. } => plain(
            "step_finished",
            format!(
                "model turn finished ({} tokens in, {} out)",
                usage.input_tokens, usage.output_tokens
            ),
        ),
        EventKind::Notice { message } => plain("notice", one_line(message)),
        EventKind::Finished { outcome } => {
            if outcome.success {
                plain("finished", "finished".into())
            } else {
                Described {
                    warning: true,
                    ..plain(
                        "finished",
                        format!(
                            "finished without success: {}",
                            one_line(outcome.error.as_deref().unwrap_or("no error given"))
                        ),
                    )
                }
            }
        }
        EventKind::Failed { message, .. } => Described {
            warning: true,
            ..plain("failed", format!("could not run: {}", one_line(message)))
        },
        _ => plain("event", "event".into()),
    }
}

/// What a tool call works on: a path, a command or a pattern.
fn tool_target(input: &Value) -> Option<String> {
    ["filePath", "file_path", "path", "command", "pattern", "url"]
        .iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .map(|s| truncate(&one_line(s), 80))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, with `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 1,
            at: Utc::now(),
            kind,
        }
    }

    #[test]
    fn a_tool_call_names_its_step_and_target() {
        let d = describe(
            &event(EventKind::ToolStarted {
                call_id: None,
                name: "write".into(),
                input: json!({"filePath": "/ws/hello.py", "content": "print(1)"}),
            }),
            3,
        );
        assert_eq!(d.message, "step 3: write /ws/hello.py");
        assert_eq!(d.kind, "tool_started");
        assert!(!d.streaming && !d.warning);
    }

    #[test]
    fn deltas_are_streaming_and_failures_are_warnings() {
        let delta = describe(
            &event(EventKind::TextDelta {
                text: "a\nb".into(),
            }),
            0,
        );
        assert!(delta.streaming);
        assert_eq!(delta.message, "writing: a b");
        let failed = describe(
            &event(EventKind::ToolFinished {
                call_id: None,
                name: "bash".into(),
                output: None,
                error: Some("exit 1".into()),
            }),
            0,
        );
        assert!(failed.warning);
        assert_eq!(failed.message, "bash failed: exit 1");
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries() {
        let text = "é".repeat(300);
        let d = describe(&event(EventKind::Text { text }), 0);
        assert_eq!(d.message.chars().count(), MAX_LINE);
        assert!(d.message.ends_with('…'));
    }
}
