//! NATS over TLS: a real nats-server with throwaway certificates made at run time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_nats::{NatsBackend, NatsBackendOptions, WorkerOptions};
use station_backend_nats::{NatsConfig, NatsTls};
use station_core::{CodingBackend, Error, ErrorKind, OpenRequest, Task};
use station_testkit::peers::{NatsServer, TlsFiles};

use crate::support::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn tls_config(server: &NatsServer, tls: NatsTls) -> NatsConfig {
    NatsConfig {
        tls,
        ..config(server)
    }
}

fn trusting(files: &TlsFiles) -> NatsTls {
    NatsTls {
        ca_file: Some(files.ca_file.clone()),
        ..NatsTls::default()
    }
}

fn with_client_certificate(files: &TlsFiles) -> NatsTls {
    NatsTls {
        cert_file: Some(files.client_cert.clone()),
        key_file: Some(files.client_key.clone()),
        ..trusting(files)
    }
}

/// Connect a client, expecting it to fail, within the connect timeout (plus slack).
pub(crate) async fn connect_error(config: &NatsConfig) -> Error {
    let started = Instant::now();
    let options = NatsBackendOptions {
        connect_timeout: CONNECT_TIMEOUT,
        ..NatsBackendOptions::default()
    };
    let result = tokio::time::timeout(
        CONNECT_TIMEOUT + Duration::from_secs(5),
        NatsBackend::connect(config, options),
    )
    .await
    .expect("connect gives up within its timeout");
    let elapsed = started.elapsed();
    assert!(
        elapsed < CONNECT_TIMEOUT + Duration::from_secs(2),
        "took {elapsed:?}"
    );
    match result {
        Ok(_) => panic!("the connection should have failed"),
        Err(e) => e,
    }
}

/// A worker on `config`, a client on `config`, and one task through both.
pub(crate) async fn round_trip(config: &NatsConfig, worker_id: &str) {
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let _worker = start_worker(
        config,
        Arc::new(FakeExecutor::new(agent)),
        base.path().to_path_buf(),
        worker_id,
        WorkerOptions::default(),
    )
    .await;
    let client = client(config).await;
    wait_for_workers(&client, &[worker_id]).await;
    let session = client
        .open(OpenRequest {
            workspace: Some(PathBuf::from("ws-tls")),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    let (events, outcome) = run(
        client.clone(),
        &session,
        Task::new("write secure.txt over tls"),
    )
    .await;
    assert_event_contract(&events);
    let outcome = outcome.expect("the task runs");
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(accepted_by(&events).as_deref(), Some(worker_id));
    let written = std::fs::read_to_string(base.path().join("ws-tls/secure.txt")).unwrap();
    assert_eq!(written, "over tls\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_round_trip_over_tls_with_the_ca_configured() {
    let files = TlsFiles::generate();
    let server = NatsServer::start_tls(&files, false).await;
    assert!(server.url.starts_with("tls://127.0.0.1:"), "{}", server.url);
    round_trip(&tls_config(&server, trusting(&files)), "w-tls").await;

    // `required` with a nats:// URL: TLS all the same.
    let config = NatsConfig {
        url: format!("nats://127.0.0.1:{}", server.port),
        tls: NatsTls {
            required: true,
            ..trusting(&files)
        },
        ..config(&server)
    };
    client(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_fails_fast_naming_ca_file() {
    let files = TlsFiles::generate();
    let server = NatsServer::start_tls(&files, false).await;

    // System roots only.
    let err = connect_error(&tls_config(&server, NatsTls::default())).await;
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("coding.nats.tls.ca_file") && text.contains("not trust"),
        "{text}"
    );

    // A CA that did not sign the server's certificate.
    let wrong = NatsTls {
        ca_file: Some(files.other_ca_file.clone()),
        ..NatsTls::default()
    };
    let err = connect_error(&tls_config(&server, wrong.clone())).await;
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("coding.nats.tls.ca_file"), "{err}");

    // A worker gives up too, even when told to wait for its server: retrying cannot help.
    let base = tempfile::tempdir().unwrap();
    let worker = start_worker(
        &tls_config(&server, wrong),
        Arc::new(FakeExecutor::new(Arc::new(FakeAgent::default()))),
        base.path().to_path_buf(),
        "w-untrusting",
        WorkerOptions {
            connect_timeout: CONNECT_TIMEOUT,
            wait_for_server: true,
            ..WorkerOptions::default()
        },
    )
    .await;
    let mut worker = worker;
    let ended = tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(5), &mut worker.handle)
        .await
        .expect("the worker gives up instead of retrying an untrusted server")
        .expect("the worker task does not panic");
    let err = ended.expect_err("the worker cannot connect");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("coding.nats.tls.ca_file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_works_with_the_client_certificate_and_fails_clearly_without() {
    let files = TlsFiles::generate();
    let server = NatsServer::start_tls(&files, true).await;
    round_trip(
        &tls_config(&server, with_client_certificate(&files)),
        "w-mtls",
    )
    .await;

    let err = connect_error(&tls_config(&server, trusting(&files))).await;
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("requires a client certificate")
            && text.contains("coding.nats.tls.cert_file")
            && text.contains("coding.nats.tls.key_file"),
        "{text}"
    );

    // A client certificate from a CA the server does not know.
    let strangers = TlsFiles::generate();
    let foreign = NatsTls {
        cert_file: Some(strangers.client_cert.clone()),
        key_file: Some(strangers.client_key.clone()),
        ..trusting(&files)
    };
    let err = connect_error(&tls_config(&server, foreign)).await;
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(
        err.to_string().contains("signed by a CA the server trusts"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_against_a_plain_server_fail_clearly() {
    let server = NatsServer::start().await;
    let config = tls_config(
        &server,
        NatsTls {
            required: true,
            ..NatsTls::default()
        },
    );
    let err = connect_error(&config).await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("TLS handshake") && text.contains("coding.nats.tls"),
        "{text}"
    );

    // A CA file alone means TLS too: no silent fall back to plain text.
    let files = TlsFiles::generate();
    let err = connect_error(&tls_config(&server, trusting(&files))).await;
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_are_config_errors_before_connecting() {
    let files = TlsFiles::generate();
    // Nothing listens here: a connection attempt would be `Unavailable`, not `Config`.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_with = |tls: NatsTls| NatsConfig {
        url: format!("tls://127.0.0.1:{port}"),
        tls,
        ..NatsConfig::default()
    };
    let missing = files.ca_file.with_file_name("no-such-ca.pem");
    let cases = [
        (
            NatsTls {
                cert_file: Some(files.client_cert.clone()),
                ..NatsTls::default()
            },
            vec!["coding.nats.tls.cert_file", "coding.nats.tls.key_file"],
        ),
        (
            NatsTls {
                key_file: Some(files.client_key.clone()),
                ..NatsTls::default()
            },
            vec!["coding.nats.tls.cert_file", "coding.nats.tls.key_file"],
        ),
        (
            NatsTls {
                ca_file: Some(missing.clone()),
                ..NatsTls::default()
            },
            vec!["coding.nats.tls.ca_file", "no-such-ca.pem"],
        ),
        (
            // A key where the CA should be.
            NatsTls {
                ca_file: Some(files.client_key.clone()),
                ..NatsTls::default()
            },
            vec!["coding.nats.tls.ca_file", "no PEM certificate"],
        ),
        (
            // A certificate where the key should be.
            NatsTls {
                cert_file: Some(files.client_cert.clone()),
                key_file: Some(files.client_cert.clone()),
                ..NatsTls::default()
            },
            vec!["coding.nats.tls.key_file", "no PEM private key"],
        ),
        (
            NatsTls {
                cert_file: Some(missing.with_file_name("no-such-cert.pem")),
                key_file: Some(files.client_key.clone()),
                ..NatsTls::default()
            },
            vec!["coding.nats.tls.cert_file", "no-such-cert.pem"],
        ),
    ];
    let key_text = std::fs::read_to_string(&files.client_key).unwrap();
    let key_body = key_text
        .lines()
        .find(|l| !l.starts_with("-----"))
        .expect("a PEM body line");
    for (tls, needles) in cases {
        let err = connect_error(&config_with(tls.clone())).await;
        assert_eq!(err.kind(), ErrorKind::Config, "{tls:?}: {err}");
        let text = err.to_string();
        for needle in needles {
            assert!(text.contains(needle), "{tls:?}: `{needle}` not in {text}");
        }
        assert!(!text.contains(key_body), "key material in {text}");
    }
}
