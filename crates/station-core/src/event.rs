//! Typed, sequenced events that a task emits while it runs.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::ErrorKind;
use crate::model::{Outcome, SessionId, Usage};

/// One event. `seq` starts at 1 and grows by one per event of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the task's stream.
    pub seq: u64,
    /// When it was emitted.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The task started. Always the first event.
    Started {
        /// Station session id.
        session_id: SessionId,
        /// Backend name.
        backend: String,
    },
    /// The backend's session id became known.
    BackendSession {
        /// The backend's id.
        backend_session_id: String,
    },
    /// A piece of streamed assistant text.
    TextDelta {
        /// The piece.
        text: String,
    },
    /// A complete assistant text block.
    Text {
        /// The text.
        text: String,
    },
    /// Reasoning text, where the model exposes it.
    Reasoning {
        /// The text.
        text: String,
    },
    /// A tool call started.
    ToolStarted {
        /// The backend's call id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        /// Tool name.
        name: String,
        /// Arguments.
        #[serde(default)]
        input: serde_json::Value,
    },
    /// A tool call finished.
    ToolFinished {
        /// The backend's call id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        /// Tool name.
        name: String,
        /// Output (possibly truncated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// Error, when the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The agent edited a file.
    FileEdited {
        /// The path as the backend reported it.
        path: String,
    },
    /// One model call finished.
    StepFinished {
        /// Its tokens.
        usage: Usage,
        /// Its cost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The policy (or a person asked by it) decided on something the agent wanted to do.
    Permission {
        /// The decision.
        record: crate::policy::PermissionRecord,
    },
    /// The agent's plan for the task; each event replaces the previous plan as a whole.
    Plan {
        /// The steps, in order.
        entries: Vec<PlanEntry>,
    },
    /// Something worth telling the user that is not an error (a malformed line skipped, a retry).
    Notice {
        /// The message.
        message: String,
    },
    /// Terminal: the task ended with an outcome (success or not).
    Finished {
        /// The outcome.
        outcome: Box<Outcome>,
    },
    /// Terminal: the task could not run.
    Failed {
        /// Error kind.
        kind: ErrorKind,
        /// Error message.
        message: String,
    },
}

/// One step of an agent's [`EventKind::Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// What the step does.
    pub content: String,
    /// `high`, `medium` or `low`, as the agent said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub priority: String,
    /// `pending`, `in_progress` or `completed`, as the agent said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}

impl EventKind {
    /// Whether this event ends the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Finished { .. } | EventKind::Failed { .. })
    }
}

/// Where a backend sends its events. Clones share one sequence. Sending never blocks and never
/// fails; events sent after the receiver is gone are dropped.
///
/// Streamed text is redacted across fragments: a [`EventKind::TextDelta`] is held back from the
/// last point where a secret could still be continuing (a partial word, or a word like
/// `password:` or `Bearer` whose value has not arrived yet) and released, redacted, once the text
/// has moved past it or any other event is emitted. A secret split over two fragments never
/// leaves the sink.
#[derive(Debug, Clone)]
pub struct EventSink {
    inner: Arc<Mutex<SinkInner>>,
}

struct SinkInner {
    next_seq: u64,
    tx: Option<mpsc::UnboundedSender<Event>>,
    /// Streamed text not yet released (see [`EventSink`]).
    held_text: String,
    /// Sees every progress event as it is emitted (the runner's budget and audit trail).
    observer: Option<Observer>,
    /// Tool-call spans of the task this sink belongs to, when the runner traces it.
    tool_spans: Option<crate::telemetry::ToolSpans>,
}

/// A function that sees each progress event a backend emits.
pub(crate) type Observer = Arc<dyn Fn(&EventKind) + Send + Sync>;

impl std::fmt::Debug for SinkInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkInner")
            .field("next_seq", &self.next_seq)
            .field("open", &self.tx.is_some())
            .field("held_text", &self.held_text.len())
            .field("observer", &self.observer.is_some())
            .field("tool_spans", &self.tool_spans.is_some())
            .finish()
    }
}

/// Held text beyond this is released even without a safe cut (a pathological stream of
/// secret-like words must not be held forever).
const MAX_HELD_TEXT: usize = 16 * 1024;

/// A word after which a secret may follow (`token=`, `password:`, `Bearer`, `Authorization:`).
fn may_introduce_secret(word: &str) -> bool {
    let word = word.trim_end_matches(['"', '\'']);
    if word.ends_with([':', '=']) {
        return true;
    }
    let lower = word.to_ascii_lowercase();
    [
        "token",
        "passw",
        "secret",
        "key",
        "credential",
        "authorization",
        "bearer",
        "basic",
    ]
    .iter()
    .any(|k| lower.contains(k))
}

/// Where `text` can be cut so that no secret spans the cut: just after the last whitespace that
/// follows a word introducing no secret. `None`: hold everything.
fn safe_cut(text: &str) -> Option<usize> {
    let mut search_end = text.len();
    while let Some(ws) = text[..search_end].rfind(char::is_whitespace) {
        let cut = ws + text[ws..].chars().next().map_or(1, char::len_utf8);
        let before = text[..ws].trim_end();
        let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
        if word.is_empty() {
            return None;
        }
        if let Some(begin) = open_key_block_at(text, cut) {
            search_end = begin;
            continue;
        }
        if !may_introduce_secret(word) {
            return Some(cut);
        }
        search_end = before.len() - word.len();
    }
    None
}

/// The start of the PEM block (`-----BEGIN …` to the end of `-----END …-----`) that `cut` falls
/// in, if any: a private key spans lines and is redacted only whole.
fn open_key_block_at(text: &str, cut: usize) -> Option<usize> {
    let begin = text[..cut].rfind("-----BEGIN")?;
    let after_begin = &text[begin..];
    let Some(end_marker) = after_begin.find("-----END") else {
        return Some(begin);
    };
    let closing = end_marker + "-----END".len();
    match after_begin[closing..].find("-----") {
        Some(dashes) if begin + closing + dashes + "-----".len() <= cut => None,
        _ => Some(begin),
    }
}

impl EventSink {
    /// A sink and the receiver of its events.
    pub fn channel() -> (EventSink, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            EventSink {
                inner: Arc::new(Mutex::new(SinkInner {
                    next_seq: 1,
                    tx: Some(tx),
                    held_text: String::new(),
                    observer: None,
                    tool_spans: None,
                })),
            },
            rx,
        )
    }

    /// A sink that discards everything.
    pub fn discard() -> EventSink {
        EventSink {
            inner: Arc::new(Mutex::new(SinkInner {
                next_seq: 1,
                tx: None,
                held_text: String::new(),
                observer: None,
                tool_spans: None,
            })),
        }
    }

    /// Emit a progress event; returns its sequence number (0 for text held back, see
    /// [`EventSink`]). Terminal events are the runner's alone: one sent here is dropped (and
    /// logged), returning 0.
    pub fn emit(&self, kind: EventKind) -> u64 {
        if kind.is_terminal() {
            tracing::warn!("a backend tried to send a terminal event; the runner sends those");
            return 0;
        }
        let observer = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observer
            .clone();
        if let Some(observe) = observer {
            observe(&kind);
        }
        self.emit_terminal(kind)
    }

    /// Let `observer` see every progress event from now on.
    pub(crate) fn set_observer(&self, observer: Observer) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observer = Some(observer);
    }

    pub(crate) fn emit_terminal(&self, kind: EventKind) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let EventKind::TextDelta { text } = kind {
            inner.held_text.push_str(&text);
            let cut = if inner.held_text.len() > MAX_HELD_TEXT {
                Some(inner.held_text.len())
            } else {
                safe_cut(&inner.held_text)
            };
            return match cut {
                Some(cut) if cut > 0 => {
                    let rest = inner.held_text.split_off(cut);
                    let ready = std::mem::replace(&mut inner.held_text, rest);
                    inner.send(EventKind::TextDelta {
                        text: crate::redact::redact(&ready),
                    })
                }
                _ => 0,
            };
        }
        inner.release_held_text();
        inner.send(kind)
    }

    /// Open a span for each tool call sent through this sink, a child of `task_span`.
    pub(crate) fn trace_tools(&self, task_span: tracing::Span) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tool_spans = Some(crate::telemetry::ToolSpans::new(task_span));
    }

    /// Close the stream: later events are dropped and the receiver ends.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.release_held_text();
        inner.tx = None;
        // Tool calls still open end with the task.
        inner.tool_spans = None;
    }
}

impl SinkInner {
    fn release_held_text(&mut self) {
        if !self.held_text.is_empty() {
            let text = crate::redact::redact(&std::mem::take(&mut self.held_text));
            self.send(EventKind::TextDelta { text });
        }
    }

    fn send(&mut self, kind: EventKind) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(spans) = &mut self.tool_spans {
            spans.observe(&kind);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event {
                seq,
                at: Utc::now(),
                kind,
            });
        }
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deltas(sink_events: &mut mpsc::UnboundedReceiver<Event>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = sink_events.try_recv() {
            if let EventKind::TextDelta { text } = e.kind {
                out.push(text);
            }
        }
        out
    }

    fn token() -> String {
        format!("ghp_{}", "a1B2".repeat(9))
    }

    #[test]
    fn a_token_split_over_fragments_is_redacted() {
        let (sink, mut rx) = EventSink::channel();
        let t = token();
        for piece in [
            "Your token is ",
            &t[..6],
            &t[6..20],
            &t[20..],
            " and more text",
        ] {
            sink.emit(EventKind::TextDelta { text: piece.into() });
        }
        sink.close();
        let text = deltas(&mut rx).concat();
        assert!(!text.contains(&t[4..]), "{text}");
        assert_eq!(text, "Your token is [REDACTED] and more text");
    }

    #[test]
    fn a_value_after_its_key_in_a_later_fragment_is_redacted() {
        let (sink, mut rx) = EventSink::channel();
        let secret = "s3cr3t-v4lu3-1234";
        for piece in [
            "set password: ",
            secret,
            " then Authorization: Bearer ",
            "abcdefghijkl0123",
            " done",
        ] {
            sink.emit(EventKind::TextDelta { text: piece.into() });
        }
        sink.emit(EventKind::Notice {
            message: "next".into(),
        });
        let text = deltas(&mut rx).concat();
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("abcdefghijkl0123"), "{text}");
        assert_eq!(
            text,
            crate::redact::redact(&format!(
                "set password: {secret} then Authorization: Bearer abcdefghijkl0123 done"
            ))
        );
    }

    #[test]
    fn plain_words_stream_at_once_and_the_rest_before_the_next_event() {
        let (sink, mut rx) = EventSink::channel();
        assert_ne!(
            sink.emit(EventKind::TextDelta {
                text: "Hello wor".into()
            }),
            0
        );
        assert_eq!(deltas(&mut rx), vec!["Hello ".to_string()]);
        assert_eq!(sink.emit(EventKind::TextDelta { text: "ld".into() }), 0);
        sink.emit(EventKind::Notice {
            message: "n".into(),
        });
        let events: Vec<Event> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(matches!(&events[0].kind, EventKind::TextDelta { text } if text == "world"));
        assert!(matches!(&events[1].kind, EventKind::Notice { .. }));
        assert_eq!(events[1].seq, events[0].seq + 1);
    }

    #[test]
    fn held_text_is_bounded() {
        let (sink, mut rx) = EventSink::channel();
        let word = "x".repeat(MAX_HELD_TEXT + 1);
        sink.emit(EventKind::TextDelta { text: word.clone() });
        assert_eq!(deltas(&mut rx), vec![word]);
    }

    #[test]
    fn a_private_key_streamed_line_by_line_is_redacted() {
        let line = "Ab9+".repeat(16);
        let (sink, mut rx) = EventSink::channel();
        sink.emit(EventKind::TextDelta {
            text: "here it is:\n-----BEGIN PRIVATE KEY-----\n".into(),
        });
        for _ in 0..3 {
            sink.emit(EventKind::TextDelta {
                text: format!("{line}\n"),
            });
        }
        sink.emit(EventKind::TextDelta {
            text: "-----END PRIVATE KEY-----\nand text after ".into(),
        });
        sink.close();
        let text = deltas(&mut rx).concat();
        assert!(!text.contains(&line[..12]), "{text}");
        assert!(
            text.ends_with("-----END PRIVATE KEY-----\nand text after "),
            "{text}"
        );
    }

    /// Secrets of every kind, built at run time.
    fn secret_kinds() -> Vec<String> {
        let body = "Ab9+".repeat(16);
        vec![
            format!("AKIA{}", "Q7XZ".repeat(4)),
            format!("aws_secret_access_key = {}", "aB3/".repeat(10)),
            format!("-----BEGIN PRIVATE KEY-----\n{body}\n{body}\n-----END PRIVATE KEY-----"),
            format!(
                r#""private_key": "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n","#
            ),
            format!("xoxb-{}-{}", "1234567890", "aBcD".repeat(6)),
            format!(
                "https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/{}",
                "xYz9".repeat(6)
            ),
            format!("sk_live_{}", "4eC3".repeat(6)),
            format!(
                "eyJ{}.eyJ{}.{}",
                "hbGc".repeat(4),
                "zdWI".repeat(4),
                "SflK".repeat(6)
            ),
        ]
    }

    proptest::proptest! {
        #[test]
        fn no_split_leaks_a_secret_of_any_kind(
            kind in 0usize..8,
            cuts in proptest::collection::vec(0usize..400, 0..16),
        ) {
            let secret = &secret_kinds()[kind];
            let text = format!("Found this:\n{secret}\nin the file. Next line\n");
            let mut cuts: Vec<usize> = cuts
                .into_iter()
                .map(|c| c % text.len())
                .filter(|c| text.is_char_boundary(*c))
                .collect();
            cuts.push(text.len());
            cuts.sort_unstable();
            let (sink, mut rx) = EventSink::channel();
            let mut start = 0;
            for cut in cuts {
                if cut > start {
                    sink.emit(EventKind::TextDelta { text: text[start..cut].to_string() });
                    start = cut;
                }
            }
            sink.close();
            let out = deltas(&mut rx).concat();
            proptest::prop_assert_eq!(&out, &crate::redact::redact(&text));
            proptest::prop_assert!(out.contains(crate::redact::REDACTED), "{}", out);
        }

        #[test]
        fn no_split_leaks_a_secret(cuts in proptest::collection::vec(0usize..200, 0..12)) {
            let t = token();
            let text = format!(
                "First {t} then api_key = hunter2hunter2 and https://user:pa55w0rd@example.com/x end"
            );
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % text.len()).collect();
            cuts.push(text.len());
            cuts.sort_unstable();
            let (sink, mut rx) = EventSink::channel();
            let mut start = 0;
            for cut in cuts {
                if cut > start {
                    sink.emit(EventKind::TextDelta { text: text[start..cut].to_string() });
                    start = cut;
                }
            }
            sink.close();
            let out = deltas(&mut rx).concat();
            for secret in [&t[4..], "hunter2hunter2", "pa55w0rd"] {
                proptest::prop_assert!(!out.contains(secret), "{}", out);
            }
            proptest::prop_assert_eq!(out, crate::redact::redact(&text));
        }
    }
}
