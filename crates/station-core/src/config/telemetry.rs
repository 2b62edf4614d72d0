//! The station-wide `telemetry:` section: where `stn` sends OpenTelemetry traces and metrics.

use serde::{Deserialize, Serialize};

/// `telemetry:` in `config.yaml`. Export is off unless an endpoint is set here or in
/// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (which win).
/// Headers (often an API key) are only read from `OTEL_EXPORTER_OTLP_HEADERS`, never the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector, e.g. `http://127.0.0.1:4318`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported data (`OTEL_SERVICE_NAME` wins; default `stn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl TelemetryConfig {
    /// Whether nothing is set.
    pub fn is_unset(&self) -> bool {
        self == &TelemetryConfig::default()
    }
}
