use super::*;
use station_core::config::Env;

fn loaded(text: &str, vars: &[(&'static str, &'static str)]) -> LoadedConfig {
    let vars = vars.to_vec();
    let env = Env::new(move |k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    });
    LoadedConfig::from_text(text, Some(Path::new("/c.yaml")), env).unwrap()
}

#[test]
fn defaults() {
    let c = NatsConfig::from_loaded(&LoadedConfig::defaults("/tmp")).unwrap();
    assert_eq!(c.url, "nats://localhost:4222");
    assert_eq!(c.subjects.task, "station.coding.task");
    assert_eq!(c.kv.sessions, "opencode-sessions");
    assert_eq!(c.heartbeat_sec, 5);
}

#[test]
fn nats_tls_parses_with_env_overrides() {
    let text = "coding:\n  nats:\n    url: tls://127.0.0.1:4222\n    tls:\n      ca_file: /etc/ca.pem\n      cert_file: /etc/client.pem\n      key_file: /etc/client-key.pem\n      required: true\n";
    let c = NatsConfig::from_loaded(&loaded(text, &[])).unwrap();
    let tls = &c.tls;
    assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert!(tls.required);
    assert_eq!(
        tls.client_certificate().unwrap(),
        Some((
            Path::new("/etc/client.pem"),
            Path::new("/etc/client-key.pem")
        ))
    );
    let c = NatsConfig::from_loaded(&loaded(
        text,
        &[
            (TLS_CA_ENV, "/env/ca.pem"),
            (TLS_CERT_ENV, "/env/c.pem"),
            (TLS_KEY_ENV, "/env/k.pem"),
            (URL_ENV, "nats://127.0.0.1:4333"),
        ],
    ))
    .unwrap();
    let tls = &c.tls;
    assert_eq!(
        (
            tls.ca_file.as_deref(),
            tls.cert_file.as_deref(),
            tls.key_file.as_deref()
        ),
        (
            Some(Path::new("/env/ca.pem")),
            Some(Path::new("/env/c.pem")),
            Some(Path::new("/env/k.pem"))
        )
    );
    assert_eq!(c.url, "nats://127.0.0.1:4333");
    let err = NatsConfig::from_loaded(&loaded(
        "coding:\n  nats:\n    tls:\n      ca_flie: x\n",
        &[],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("/c.yaml:4:7") && err.contains("coding.nats.tls.ca_flie"),
        "{err}"
    );
}

#[test]
fn nats_tls_is_hidden_when_empty_and_needs_cert_and_key_together() {
    let shown = NatsFactory.show(&LoadedConfig::defaults("/tmp")).unwrap();
    assert!(shown.get("tls").is_none(), "{shown}");
    let tls = NatsTls {
        required: true,
        ..NatsTls::default()
    };
    assert_eq!(
        serde_json::to_value(&tls).unwrap(),
        serde_json::json!({"required": true})
    );
    assert_eq!(tls.client_certificate().unwrap(), None);
    let cert_only = NatsTls {
        cert_file: Some("/c.pem".into()),
        ..NatsTls::default()
    };
    let key_only = NatsTls {
        key_file: Some("/k.pem".into()),
        ..NatsTls::default()
    };
    for half in [cert_only, key_only] {
        let err = half.client_certificate().unwrap_err();
        assert_eq!(err.kind(), station_core::ErrorKind::Config);
        let err = err.to_string();
        assert!(
            err.contains("coding.nats.tls.cert_file") && err.contains("coding.nats.tls.key_file"),
            "{err}"
        );
    }
}

#[test]
fn heartbeats_are_bounded_with_the_field_and_line() {
    let err = NatsConfig::from_loaded(&loaded(
        "coding:\n  nats:\n    heartbeat_sec: 9223372036854775807\n",
        &[],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("/c.yaml:3:") && err.contains("coding.nats.heartbeat_sec"),
        "{err}"
    );
}

#[test]
fn cluster_urls_replicas_and_worker_capacity_parse() {
    let text = "coding:\n  nats:\n    url: nats://127.0.0.1:4222, nats://127.0.0.1:4223 ,nats://127.0.0.1:4224\n    replicas: 3\n    worker:\n      max_tasks: 2\n";
    let c = NatsConfig::from_loaded(&loaded(text, &[])).unwrap();
    assert_eq!(
        c.server_urls(),
        [
            "nats://127.0.0.1:4222",
            "nats://127.0.0.1:4223",
            "nats://127.0.0.1:4224"
        ]
    );
    assert_eq!(c.replicas, 3);
    assert_eq!(c.worker.max_tasks, Some(2));
    let d = NatsConfig::from_loaded(&LoadedConfig::defaults("/tmp")).unwrap();
    assert_eq!((d.replicas, d.worker.max_tasks), (1, None));
}

#[test]
fn bad_replicas_and_zero_capacity_name_their_field() {
    for (text, field) in [
        (
            "coding:\n  nats:\n    replicas: 7\n",
            "coding.nats.replicas",
        ),
        (
            "coding:\n  nats:\n    replicas: 0\n",
            "coding.nats.replicas",
        ),
        (
            "coding:\n  nats:\n    worker:\n      max_tasks: 0\n",
            "coding.nats.worker.max_tasks",
        ),
        ("coding:\n  nats:\n    url: ' , '\n", "coding.nats.url"),
    ] {
        let err = NatsConfig::from_loaded(&loaded(text, &[])).unwrap_err();
        assert!(format!("{err:?}").contains(field), "{text}: {err:?}");
    }
}
