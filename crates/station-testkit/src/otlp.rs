//! A small OTLP/HTTP receiver on 127.0.0.1: what an OpenTelemetry collector would get.
//!
//! It accepts `POST /v1/traces` and `POST /v1/metrics` as `application/x-protobuf` (decoded
//! with `opentelemetry-proto`'s prost types) or `application/json`, and records the spans and
//! metric points for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One received span, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; empty for a root span.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// `service.name` of its resource.
    pub service_name: String,
    /// Attributes, each value as text.
    pub attributes: BTreeMap<String, String>,
    /// Status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// Status message.
    pub status_message: String,
    /// Names of its events.
    pub events: Vec<String>,
}

impl ReceivedSpan {
    /// An attribute's value as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One data point of a received metric (sum, gauge: the value; histogram: count and sum).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// Metric name.
    pub metric: String,
    /// `service.name` of its resource.
    pub service_name: String,
    /// Attributes of the point.
    pub attributes: BTreeMap<String, String>,
    /// Sum or gauge value; a histogram's sum.
    pub value: f64,
    /// A histogram's count (1 for other kinds).
    pub count: u64,
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
    /// Every request as decoded, for "is this text anywhere" checks.
    dumps: Vec<String>,
    requests: usize,
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Received>,
    arrived: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running receiver. Dropping it stops it.
#[derive(Debug)]
pub struct OtlpReceiver {
    port: u16,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl OtlpReceiver {
    /// Start on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<OtlpReceiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(shared.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(%error, "OTLP receiver stopped");
            }
        });
        Ok(OtlpReceiver {
            port,
            shared,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.lock().spans.clone()
    }

    /// The metric points received so far.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.shared.lock().points.clone()
    }

    /// How many export requests arrived (traces and metrics).
    pub fn requests(&self) -> usize {
        self.shared.lock().requests
    }

    /// Every received request, decoded, as debug text: to check a secret appears nowhere.
    pub fn dump(&self) -> String {
        self.shared.lock().dumps.join("\n")
    }

    /// Wait until `ready` holds for what was received, or `deadline` passes (then `Err` with
    /// what did arrive).
    pub async fn wait_until(
        &self,
        deadline: Duration,
        ready: impl Fn(&[ReceivedSpan], &[ReceivedPoint]) -> bool,
    ) -> Result<(), String> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let arrived = self.shared.arrived.notified();
            {
                let r = self.shared.lock();
                if ready(&r.spans, &r.points) {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                let r = self.shared.lock();
                return Err(format!(
                    "not received within {deadline:?}; spans: {:#?}\npoints: {:#?}",
                    r.spans, r.points
                ));
            }
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, String> {
    if is_json(headers) {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        T::decode(body).map_err(|e| e.to_string())
    }
}

async fn traces(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let request: ExportTraceServiceRequest = match decode(&headers, &body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, Bytes::from(e)),
    };
    let mut spans = Vec::new();
    for resource_spans in &request.resource_spans {
        let service_name = service_name(resource_spans.resource.as_ref().map(|r| &r.attributes));
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                let status = span.status.clone().unwrap_or_default();
                spans.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    service_name: service_name.clone(),
                    attributes: attributes(&span.attributes),
                    status_code: status.code,
                    status_message: status.message,
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                });
            }
        }
    }
    {
        let mut r = shared.lock();
        r.requests += 1;
        r.dumps.push(format!("{request:?}"));
        r.spans.extend(spans);
    }
    shared.arrived.notify_waiters();
    (StatusCode::OK, Bytes::new())
}

async fn metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let request: ExportMetricsServiceRequest = match decode(&headers, &body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, Bytes::from(e)),
    };
    let mut points = Vec::new();
    for resource_metrics in &request.resource_metrics {
        let service_name = service_name(resource_metrics.resource.as_ref().map(|r| &r.attributes));
        for scope in &resource_metrics.scope_metrics {
            for m in &scope.metrics {
                let point = |attributes: &[KeyValue], value: f64, count: u64| ReceivedPoint {
                    metric: m.name.clone(),
                    service_name: service_name.clone(),
                    attributes: self::attributes(attributes),
                    value,
                    count,
                };
                let number = |v: &Option<number_data_point::Value>| match v {
                    Some(number_data_point::Value::AsDouble(d)) => *d,
                    Some(number_data_point::Value::AsInt(i)) => *i as f64,
                    None => 0.0,
                };
                match &m.data {
                    Some(metric::Data::Sum(sum)) => points.extend(
                        sum.data_points
                            .iter()
                            .map(|p| point(&p.attributes, number(&p.value), 1)),
                    ),
                    Some(metric::Data::Gauge(gauge)) => points.extend(
                        gauge
                            .data_points
                            .iter()
                            .map(|p| point(&p.attributes, number(&p.value), 1)),
                    ),
                    Some(metric::Data::Histogram(h)) => points.extend(
                        h.data_points
                            .iter()
                            .map(|p| point(&p.attributes, p.sum.unwrap_or(0.0), p.count)),
                    ),
                    _ => {}
                }
            }
        }
    }
    {
        let mut r = shared.lock();
        r.requests += 1;
        r.dumps.push(format!("{request:?}"));
        r.points.extend(points);
    }
    shared.arrived.notify_waiters();
    (StatusCode::OK, Bytes::new())
}

fn service_name(attrs: Option<&Vec<KeyValue>>) -> String {
    attrs
        .map(|a| attributes(a))
        .and_then(|a| a.get("service.name").cloned())
        .unwrap_or_default()
}

fn attributes(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
