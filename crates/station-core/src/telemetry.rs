//! Tracing spans for coding tasks, and the hook that carries a trace across processes.
//!
//! Core emits plain `tracing` spans; it knows no OpenTelemetry. A program that exports traces
//! (`stn` with its `otel` feature) turns them into OpenTelemetry spans and installs a
//! [`TraceContextHook`], through which transports (NATS) carry the W3C trace context as plain
//! strings (`traceparent`, `tracestate`) without depending on OpenTelemetry either.
//!
//! Every attribute value passes through the redactor: a span never carries a secret.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use tracing::Span;
use tracing::field::Empty;

use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::model::{Outcome, Session};
use crate::redact::redact;

/// The `tracing` target of every span this module creates.
pub const TARGET: &str = "station::task";
/// Name of the span around one coding task.
pub const TASK_SPAN: &str = "coding.task";
/// Name of the span around one tool call of the coding agent.
pub const TOOL_SPAN: &str = "coding.tool";

/// Moves a span's trace context into text headers and back (W3C `traceparent`).
pub trait TraceContextHook: Send + Sync {
    /// The context of `span` as headers to send along with a request.
    fn inject(&self, span: &Span) -> BTreeMap<String, String>;
    /// Make `span` a child of the context in `headers` (received with a request).
    fn set_parent(&self, span: &Span, headers: &BTreeMap<String, String>);
}

static HOOK: OnceLock<Arc<dyn TraceContextHook>> = OnceLock::new();

/// Install the process-wide hook; the first one wins. Without one, nothing is propagated.
pub fn install_hook(hook: Arc<dyn TraceContextHook>) {
    let _ = HOOK.set(hook);
}

/// The current span's trace context as headers; empty when no exporter is installed.
pub fn current_context() -> BTreeMap<String, String> {
    match HOOK.get() {
        Some(hook) => hook.inject(&Span::current()),
        None => BTreeMap::new(),
    }
}

/// Make `span` continue the trace whose context arrived in `headers` (no-op without a hook or
/// without a `traceparent`).
pub fn set_remote_parent(span: &Span, headers: &BTreeMap<String, String>) {
    if let Some(hook) = HOOK.get()
        && headers.contains_key("traceparent")
    {
        hook.set_parent(span, headers);
    }
}

/// The coding agent behind a backend name (`opencode-cli` → `opencode`).
fn coding_agent(backend: &str) -> &str {
    backend.split('-').next().unwrap_or(backend)
}

/// The span of one task, a child of the caller's current span. Its outcome fields are recorded
/// by [`record_result`].
pub(crate) fn task_span(backend: &str, session: &Session) -> Span {
    tracing::info_span!(
        target: TARGET,
        TASK_SPAN,
        otel.status_code = Empty,
        otel.status_message = Empty,
        station.backend = %redact(backend),
        station.agent = %redact(coding_agent(backend)),
        station.session_id = %redact(session.id.as_str()),
        station.backend_session_id = Empty,
        station.model = Empty,
        station.outcome = Empty,
        station.success = Empty,
        station.stop_reason = Empty,
        station.error_kind = Empty,
        station.tokens.input = Empty,
        station.tokens.output = Empty,
        station.cost_usd = Empty,
        station.files_changed = Empty,
        station.tool_calls = Empty,
        station.duration_ms = Empty,
    )
}

/// `success`, `failure` (the task ran and failed) or `error` (it could not run).
pub fn outcome_label(result: &Result<Outcome>) -> &'static str {
    match result {
        Ok(o) if o.success => "success",
        Ok(_) => "failure",
        Err(_) => "error",
    }
}

/// Record how the task ended on its span.
pub(crate) fn record_result(span: &Span, result: &Result<Outcome>) {
    span.record("station.outcome", outcome_label(result));
    match result {
        Ok(outcome) => {
            span.record("station.success", outcome.success);
            span.record("station.stop_reason", snake(&outcome.stop_reason).as_str());
            if let Some(id) = &outcome.backend_session_id {
                span.record("station.backend_session_id", redact(id).as_str());
            }
            if let Some(model) = &outcome.model {
                span.record("station.model", redact(model).as_str());
            }
            span.record("station.tokens.input", outcome.usage.input_tokens);
            span.record("station.tokens.output", outcome.usage.output_tokens);
            if let Some(cost) = outcome.cost_usd {
                span.record("station.cost_usd", cost);
            }
            span.record("station.files_changed", outcome.files_changed.len() as u64);
            span.record("station.tool_calls", outcome.tool_calls.len() as u64);
            span.record("station.duration_ms", outcome.duration_ms);
            if !outcome.success {
                span.record("station.error_kind", snake(&outcome.stop_reason).as_str());
                span.record("otel.status_code", "ERROR");
                let why = outcome.error.as_deref().unwrap_or("task failed");
                span.record("otel.status_message", redact(why).as_str());
            }
        }
        Err(e) => record_error(span, e),
    }
}

fn record_error(span: &Span, error: &Error) {
    span.record("station.success", false);
    span.record("station.error_kind", snake(&error.kind()).as_str());
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_message", redact(&error.to_string()).as_str());
}

/// A serde enum as its snake_case name.
fn snake(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

/// Open tool-call spans of one task, children of its task span; fed by the event sink.
#[derive(Debug)]
pub(crate) struct ToolSpans {
    parent: Span,
    open: HashMap<String, Span>,
}

impl ToolSpans {
    pub(crate) fn new(parent: Span) -> Self {
        ToolSpans {
            parent,
            open: HashMap::new(),
        }
    }

    /// A span starts at `ToolStarted` and ends at the matching `ToolFinished` (by call id, or
    /// by name when the backend gives none).
    pub(crate) fn observe(&mut self, kind: &EventKind) {
        if self.parent.is_disabled() {
            return;
        }
        match kind {
            EventKind::ToolStarted { call_id, name, .. } => {
                let span = tracing::info_span!(
                    target: TARGET,
                    parent: &self.parent,
                    TOOL_SPAN,
                    otel.status_code = Empty,
                    otel.status_message = Empty,
                    station.tool.name = %redact(name),
                    station.tool.call_id = call_id.as_deref().map(redact),
                );
                self.open.insert(key(call_id.as_deref(), name), span);
            }
            EventKind::ToolFinished {
                call_id,
                name,
                error,
                ..
            } => {
                let span = self.open.remove(&key(call_id.as_deref(), name));
                // A finish without a start still shows up, as a span of no length.
                let span = span.unwrap_or_else(|| {
                    tracing::info_span!(
                        target: TARGET,
                        parent: &self.parent,
                        TOOL_SPAN,
                        otel.status_code = Empty,
                        otel.status_message = Empty,
                        station.tool.name = %redact(name),
                        station.tool.call_id = call_id.as_deref().map(redact),
                    )
                });
                if let Some(error) = error {
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_message", redact(error).as_str());
                }
            }
            _ => {}
        }
    }
}

fn key(call_id: Option<&str>, name: &str) -> String {
    match call_id {
        Some(id) => format!("id:{id}"),
        None => format!("name:{name}"),
    }
}
