//! OpenTelemetry export of traces and metrics (cargo feature `otel`).
//!
//! Off unless an OTLP endpoint is configured: `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (traces only) or `telemetry.otlp_endpoint` in the config.
//! When off, no layer is installed and the task spans stay disabled, so nothing is paid.

use std::path::Path;

use tracing_subscriber::Registry;

/// The layer that exports the task spans, when telemetry is on.
pub(crate) type BoxedLayer = Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>;

/// Start the exporters if an endpoint is configured; `None` when telemetry is off.
#[cfg(feature = "otel")]
pub(crate) fn start(config: Option<&Path>) -> Option<BoxedLayer> {
    otel::start(config)
}

/// Without the `otel` feature there is nothing to export.
#[cfg(not(feature = "otel"))]
pub(crate) fn start(_config: Option<&Path>) -> Option<BoxedLayer> {
    None
}

/// Export what is still buffered, waiting at most a few seconds: called before every exit,
/// including a signal's. Never hangs on a dead collector.
pub(crate) fn flush() {
    #[cfg(feature = "otel")]
    otel::shutdown(otel::FLUSH_DEADLINE);
}

#[cfg(feature = "otel")]
mod metrics;

#[cfg(feature = "otel")]
mod otel {
    use std::collections::{BTreeMap, HashMap};
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use station_core::config::TelemetryConfig;
    use station_core::telemetry::TraceContextHook;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::Targets;

    use super::BoxedLayer;

    /// How long an exit waits for the last spans and metrics to be sent.
    pub(super) const FLUSH_DEADLINE: Duration = Duration::from_secs(3);

    struct Providers {
        traces: Option<SdkTracerProvider>,
        metrics: Option<SdkMeterProvider>,
    }

    static PROVIDERS: Mutex<Option<Providers>> = Mutex::new(None);

    /// Where to send: the standard variables, else the config's `telemetry` section.
    #[derive(Debug, PartialEq)]
    pub(super) struct Endpoints {
        /// Set when the base endpoint comes from the config (the variables are read by the
        /// exporter itself).
        pub(super) config_base: Option<String>,
        pub(super) traces: bool,
        pub(super) metrics: bool,
        pub(super) service_name: String,
    }

    fn env(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    /// What to export, from the variables (`var`) and, when they leave it open, the config
    /// file's `telemetry` section (`file`, read only then). `None`: telemetry is off.
    pub(super) fn endpoints(
        var: impl Fn(&str) -> Option<String>,
        file: impl FnOnce() -> TelemetryConfig,
    ) -> Option<Endpoints> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        let base = var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        let traces = base || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
        let metrics = base || var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some();
        let file = if (traces || metrics) && var("OTEL_SERVICE_NAME").is_some() {
            TelemetryConfig::default()
        } else {
            file()
        };
        let config_base = match (traces || metrics, &file.otlp_endpoint) {
            (false, Some(url)) if !url.trim().is_empty() => Some(url.trim().to_string()),
            _ => None,
        };
        if !traces && !metrics && config_base.is_none() {
            return None;
        }
        let service_name = var("OTEL_SERVICE_NAME")
            .or(file.service_name)
            .unwrap_or_else(|| "stn".to_string());
        Some(Endpoints {
            traces: traces || config_base.is_some(),
            metrics: metrics || config_base.is_some(),
            config_base,
            service_name,
        })
    }

    /// The config file's `telemetry` section, read quietly: errors in the file are reported
    /// when the command loads it.
    fn file_section(config: Option<&Path>) -> TelemetryConfig {
        station_core::config::Config::load(config, station_core::config::process_env)
            .map(|loaded| loaded.config.telemetry)
            .unwrap_or_default()
    }

    /// gRPC needs a transport this build does not carry; say so instead of sending HTTP to a
    /// gRPC port.
    pub(super) fn grpc_requested(var: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
        [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .into_iter()
        .find(|name| var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("grpc")))
    }

    pub(super) fn start(config: Option<&Path>) -> Option<BoxedLayer> {
        let endpoints = endpoints(env, || file_section(config))?;
        if let Some(var) = grpc_requested(env) {
            crate::output::warn_line(&format!(
                "telemetry is off: {var}=grpc is not supported by stn; set it to http/protobuf \
                 (or http/json) and point the endpoint at the collector's OTLP/HTTP port (4318)"
            ));
            return None;
        }
        match build(&endpoints) {
            Ok(layer) => Some(layer),
            Err(e) => {
                crate::output::warn_line(&format!(
                    "telemetry is off: cannot set up the OTLP exporter: {e}; check \
                     OTEL_EXPORTER_OTLP_ENDPOINT (or telemetry.otlp_endpoint in the config)"
                ));
                None
            }
        }
    }

    fn build(endpoints: &Endpoints) -> anyhow::Result<BoxedLayer> {
        let resource = Resource::builder()
            .with_service_name(endpoints.service_name.clone())
            .build();
        let url = |path: &str| {
            endpoints
                .config_base
                .as_ref()
                .map(|base| format!("{}{path}", base.trim_end_matches('/')))
        };
        let traces = if endpoints.traces {
            let mut exporter = SpanExporter::builder().with_http();
            if let Some(url) = url("/v1/traces") {
                exporter = exporter.with_endpoint(url);
            }
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter.build()?)
                    .with_resource(resource.clone())
                    .build(),
            )
        } else {
            None
        };
        let metrics = if endpoints.metrics {
            let mut exporter = MetricExporter::builder().with_http();
            if let Some(url) = url("/v1/metrics") {
                exporter = exporter.with_endpoint(url);
            }
            Some(
                SdkMeterProvider::builder()
                    .with_periodic_exporter(exporter.build()?)
                    .with_resource(resource)
                    .build(),
            )
        } else {
            None
        };
        // Only Station's own spans: their fields are redacted, other crates' logs are not.
        let targets = || {
            Targets::new()
                .with_target(station_core::telemetry::TARGET, tracing::Level::INFO)
                .with_target("station::agent", tracing::Level::INFO)
        };
        let mut layers: Vec<BoxedLayer> = Vec::new();
        if let Some(provider) = &traces {
            let tracer = provider.tracer("stn");
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_location(false)
                    .with_threads(false)
                    .with_filter(targets())
                    .boxed(),
            );
            station_core::telemetry::install_hook(Arc::new(W3cTraceContext));
        }
        if let Some(provider) = &metrics {
            layers.push(
                super::metrics::TaskMetrics::new(provider)
                    .with_filter(targets())
                    .boxed(),
            );
        }
        *PROVIDERS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Providers { traces, metrics });
        Ok(layers.boxed())
    }

    /// Send what is buffered and stop, on another thread: the exit waits at most `deadline`.
    pub(super) fn shutdown(deadline: Duration) {
        let Some(providers) = PROVIDERS.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("stn-otel-flush".into())
            .spawn(move || {
                if let Some(traces) = providers.traces {
                    let _ = traces.shutdown_with_timeout(deadline);
                }
                if let Some(metrics) = providers.metrics {
                    let _ = metrics.shutdown_with_timeout(deadline);
                }
                let _ = done.send(());
            });
        if spawned.is_ok() && finished.recv_timeout(deadline).is_err() {
            tracing::warn!(
                "the OTLP collector did not take the last spans within {}s; exiting without them",
                deadline.as_secs()
            );
        }
    }

    /// W3C `traceparent`/`tracestate` headers from and into tracing spans.
    struct W3cTraceContext;

    impl TraceContextHook for W3cTraceContext {
        fn inject(&self, span: &tracing::Span) -> BTreeMap<String, String> {
            let mut headers = HashMap::new();
            TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
            headers.into_iter().collect()
        }

        fn set_parent(&self, span: &tracing::Span, headers: &BTreeMap<String, String>) {
            let carrier: HashMap<String, String> = headers.clone().into_iter().collect();
            let parent = TraceContextPropagator::new().extract(&carrier);
            let _ = span.set_parent(parent);
        }
    }
}

#[cfg(all(test, feature = "otel"))]
mod tests;
