use std::collections::BTreeMap;

use station_core::config::TelemetryConfig;

use super::otel::{Endpoints, endpoints, grpc_requested};

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn file(endpoint: Option<&str>, service: Option<&str>) -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: endpoint.map(str::to_string),
        service_name: service.map(str::to_string),
    }
}

#[test]
fn off_without_an_endpoint_anywhere() {
    let read = std::cell::Cell::new(false);
    let resolved = endpoints(vars(&[("OTEL_SERVICE_NAME", "x")]), || {
        read.set(true);
        TelemetryConfig::default()
    });
    assert_eq!(resolved, None);
    assert!(read.get(), "the config may still turn it on");
}

#[test]
fn the_standard_endpoint_turns_on_traces_and_metrics_named_stn() {
    let resolved = endpoints(
        vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]),
        TelemetryConfig::default,
    );
    assert_eq!(
        resolved,
        Some(Endpoints {
            config_base: None,
            traces: true,
            metrics: true,
            service_name: "stn".into(),
        })
    );
}

#[test]
fn a_traces_endpoint_alone_exports_no_metrics_to_the_default_port() {
    let resolved = endpoints(
        vars(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces",
        )]),
        TelemetryConfig::default,
    )
    .unwrap();
    assert!(resolved.traces && !resolved.metrics, "{resolved:?}");
}

#[test]
fn the_config_section_turns_it_on_and_the_variables_win() {
    let from_file = endpoints(vars(&[]), || {
        file(Some(" http://collector:4318/ "), Some("ci-stn"))
    })
    .unwrap();
    assert_eq!(
        from_file,
        Endpoints {
            config_base: Some("http://collector:4318/".into()),
            traces: true,
            metrics: true,
            service_name: "ci-stn".into(),
        }
    );
    let env_wins = endpoints(
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ]),
        || panic!("the file is not needed when the variables say everything"),
    )
    .unwrap();
    assert_eq!(env_wins.config_base, None);
    assert_eq!(env_wins.service_name, "from-env");
}

#[test]
fn otel_sdk_disabled_wins() {
    let resolved = endpoints(
        vars(&[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ]),
        TelemetryConfig::default,
    );
    assert_eq!(resolved, None);
}

#[test]
fn grpc_is_reported_not_silently_sent_as_http() {
    assert_eq!(
        grpc_requested(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])),
        Some("OTEL_EXPORTER_OTLP_PROTOCOL")
    );
    assert_eq!(
        grpc_requested(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])),
        None
    );
}
