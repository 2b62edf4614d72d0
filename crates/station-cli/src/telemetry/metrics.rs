//! Task metrics, read from the task spans core records (no metrics code in core): tasks,
//! task duration, tokens and cost, by backend and outcome.

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use station_core::telemetry::{TARGET, TASK_SPAN};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

pub(super) struct TaskMetrics {
    tasks: Counter<u64>,
    duration: Histogram<f64>,
    tokens: Counter<u64>,
    cost: Counter<f64>,
}

impl TaskMetrics {
    pub(super) fn new(provider: &SdkMeterProvider) -> Self {
        let meter = provider.meter("stn");
        TaskMetrics {
            tasks: meter
                .u64_counter("station.tasks")
                .with_description("Coding tasks run, by backend and outcome")
                .with_unit("{task}")
                .build(),
            duration: meter
                .f64_histogram("station.task.duration")
                .with_description("Wall time of a coding task")
                .with_unit("s")
                .build(),
            tokens: meter
                .u64_counter("station.tokens")
                .with_description(
                    "Model tokens used by coding tasks (station.token.type: input or output)",
                )
                .with_unit("{token}")
                .build(),
            cost: meter
                .f64_counter("station.cost")
                .with_description("Cost of coding tasks as the backend reports it")
                .with_unit("USD")
                .build(),
        }
    }
}

/// What a task span recorded, kept in the span until it closes.
struct TaskFields {
    started: Instant,
    backend: String,
    outcome: String,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: f64,
}

impl Visit for TaskFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "station.backend" => self.backend = value.to_string(),
            "station.outcome" => self.outcome = value.to_string(),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "station.tokens.input" => self.tokens_in = value,
            "station.tokens.output" => self.tokens_out = value,
            _ => {}
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "station.cost_usd" {
            self.cost_usd = value;
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here; their Debug is the Display text.
        self.record_str(field, &format!("{value:?}"));
    }
}

fn is_task_span(metadata: &Metadata<'_>) -> bool {
    metadata.name() == TASK_SPAN && metadata.target() == TARGET
}

impl<S> tracing_subscriber::Layer<S> for TaskMetrics
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_task_span(attrs.metadata()) {
            return;
        }
        let mut fields = TaskFields {
            started: Instant::now(),
            backend: String::new(),
            outcome: "error".to_string(),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
        };
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<TaskFields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(fields) = span.extensions_mut().remove::<TaskFields>() else {
            return;
        };
        let by = [
            KeyValue::new("station.backend", fields.backend),
            KeyValue::new("station.outcome", fields.outcome),
        ];
        self.tasks.add(1, &by);
        self.duration
            .record(fields.started.elapsed().as_secs_f64(), &by);
        for (kind, count) in [("input", fields.tokens_in), ("output", fields.tokens_out)] {
            let mut attrs = by.to_vec();
            attrs.push(KeyValue::new("station.token.type", kind));
            self.tokens.add(count, &attrs);
        }
        if fields.cost_usd > 0.0 {
            self.cost.add(fields.cost_usd, &by);
        }
    }
}
