//! Builds a task's [`Outcome`] from the messages it added to the session.

use std::path::Path;

use station_core::{FileAction, FileChange, Outcome, StopReason, ToolCall, Usage};

use crate::mapper::redact_json;
use crate::text::{clip, redact};
use crate::wire::{ErrorInfo, FileDiff, MessageWithParts};

/// The messages a task added: those after the last one known before it was sent.
pub(crate) fn new_messages(
    all: Vec<MessageWithParts>,
    known_before: &[String],
) -> Vec<MessageWithParts> {
    match all.iter().rposition(|m| known_before.contains(&m.info.id)) {
        Some(last_known) => all.into_iter().skip(last_known + 1).collect(),
        None if known_before.is_empty() => all,
        // The old messages vanished (reverted or compacted): keep what is not known.
        None => all
            .into_iter()
            .filter(|m| !known_before.contains(&m.info.id))
            .collect(),
    }
}

/// The outcome of a task from its messages; `stream_errors` are errors seen only on the stream.
pub(crate) fn build(messages: &[MessageWithParts], stream_errors: &[ErrorInfo]) -> Outcome {
    let assistants: Vec<&MessageWithParts> =
        messages.iter().filter(|m| m.info.is_assistant()).collect();
    let mut usage = Usage::default();
    let mut cost = 0.0;
    let mut tool_calls = Vec::new();
    for message in &assistants {
        if let Some(tokens) = message.info.tokens {
            usage += tokens.usage();
        }
        cost += message.info.cost.unwrap_or(0.0);
        for part in message.parts.iter().filter(|p| p.kind == "tool") {
            let Some(state) = &part.state else { continue };
            let duration_ms = state
                .time
                .and_then(|t| Some(t.end?.saturating_sub(t.start?)));
            let (output, error) = match state.status.as_str() {
                "completed" => (state.output.as_deref().map(|o| clip(&redact(o))), None),
                "error" => (
                    None,
                    Some(clip(&redact(
                        state.error.as_deref().unwrap_or("the tool failed"),
                    ))),
                ),
                _ => (None, Some("the tool did not finish".to_string())),
            };
            tool_calls.push(ToolCall {
                id: part.call_id.clone(),
                name: part.tool.clone().unwrap_or_default(),
                input: redact_json(&state.input),
                output,
                error,
                duration_ms,
            });
        }
    }
    let summary = assistants
        .iter()
        .rev()
        .map(|m| {
            m.parts
                .iter()
                .filter(|p| {
                    p.kind == "text" && p.ignored != Some(true) && p.synthetic != Some(true)
                })
                .filter_map(|p| p.text.as_deref())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .find(|t| !t.is_empty())
        .map(|t| redact(&t))
        .unwrap_or_default();
    let error = assistants
        .iter()
        .rev()
        .find_map(|m| m.info.error.clone())
        .or_else(|| stream_errors.last().cloned());
    let (success, stop_reason, error_text) = match &error {
        Some(e) if e.is_abort() => (false, StopReason::Cancelled, Some(e.describe())),
        Some(e) => (false, StopReason::Error, Some(redact(&e.describe()))),
        None if assistants.is_empty() => (
            false,
            StopReason::Error,
            Some("OpenCode went idle without answering the prompt".to_string()),
        ),
        None => (true, StopReason::Completed, None),
    };
    Outcome {
        success,
        summary,
        stop_reason,
        error: error_text,
        files_changed: Vec::new(),
        usage,
        cost_usd: Some(cost),
        cost_estimated: false,
        tool_calls,
        duration_ms: 0,
        backend_session_id: None,
        model: assistants.iter().rev().find_map(|m| m.info.model()),
        permissions: Vec::new(),
        policy_gaps: Vec::new(),
        patch: None,
    }
}

/// The server's diff as core file changes; paths are made relative to `workspace` when they
/// are inside it.
pub(crate) fn files_from_diff(diff: &[FileDiff], workspace: Option<&Path>) -> Vec<FileChange> {
    let mut out: Vec<FileChange> = diff
        .iter()
        .filter(|d| !d.file.is_empty())
        .map(|d| {
            let path = match workspace {
                Some(ws) if Path::new(&d.file).is_absolute() => Path::new(&d.file)
                    .strip_prefix(ws)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| d.file.clone()),
                _ => d.file.clone(),
            };
            let action = match d.status.as_deref() {
                Some("added") => FileAction::Created,
                Some("deleted") => FileAction::Deleted,
                _ => FileAction::Modified,
            };
            FileChange {
                path,
                action,
                lines_added: d.additions,
                lines_removed: d.deletions,
                ..Default::default()
            }
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<MessageWithParts> {
        let text = std::fs::read_to_string(format!(
            "{}/tests/it/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_completed_task_sums_every_assistant_message() {
        let all = sample("opencode-messages.json");
        let outcome = build(&new_messages(all, &[]), &[]);
        assert!(outcome.success);
        assert_eq!(outcome.stop_reason, StopReason::Completed);
        assert_eq!(
            outcome.summary,
            "Created api_hello.py, which prints Hello API."
        );
        assert_eq!(
            (outcome.usage.input_tokens, outcome.usage.output_tokens),
            (7740 + 7837, 20)
        );
        assert_eq!(outcome.tool_calls.len(), 1);
        let call = &outcome.tool_calls[0];
        assert_eq!(
            (call.name.as_str(), call.output.as_deref(), call.duration_ms),
            ("write", Some("Wrote file successfully."), Some(31))
        );
        assert_eq!(outcome.model.as_deref(), Some("fake/fake-model"));
    }

    #[test]
    fn an_aborted_task_keeps_its_partial_text() {
        let all = sample("opencode-messages-after-abort.json");
        let known: Vec<String> = all[..3].iter().map(|m| m.info.id.clone()).collect();
        let new = new_messages(all, &known);
        assert_eq!(new.len(), 2);
        let outcome = build(&new, &[]);
        assert!(!outcome.success);
        assert_eq!(outcome.stop_reason, StopReason::Cancelled);
        assert!(
            outcome.summary.starts_with("tick tick"),
            "{}",
            outcome.summary
        );
        assert_eq!(outcome.tool_calls, vec![]);
    }

    #[test]
    fn no_answer_is_a_failure() {
        let outcome = build(&[], &[]);
        assert!(!outcome.success);
        assert_eq!(outcome.stop_reason, StopReason::Error);
    }

    #[test]
    fn diff_paths_become_relative() {
        let diff = vec![
            FileDiff {
                file: "/ws/a.py".into(),
                status: Some("added".into()),
                additions: 2,
                deletions: 0,
            },
            FileDiff {
                file: "b.py".into(),
                status: Some("modified".into()),
                additions: 1,
                deletions: 1,
            },
        ];
        let files = files_from_diff(&diff, Some(Path::new("/ws")));
        assert_eq!(
            files[0],
            FileChange {
                path: "a.py".into(),
                action: FileAction::Created,
                lines_added: 2,
                lines_removed: 0,
                ..Default::default()
            }
        );
        assert_eq!(files[1].action, FileAction::Modified);
    }
}
