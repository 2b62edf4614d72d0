//! NATS credentials files against a real nats-server in operator mode (JWTs and nkeys made at
//! run time): the client and the worker get in with `coding.nats.creds_file`, nobody else does.

use station_backend_nats::NatsConfig;
use station_core::ErrorKind;
use station_testkit::peers::{NatsCreds, NatsServer};

use crate::support::*;
use crate::tls::{connect_error, round_trip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_gets_client_and_worker_in() {
    let creds = NatsCreds::generate();
    let server = NatsServer::start_with_accounts(&creds).await;
    let config = NatsConfig {
        creds_file: Some(creds.creds_file.clone()),
        ..config(&server)
    };
    round_trip(&config, "w-creds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_valid_credentials_the_error_names_the_setting() {
    let creds = NatsCreds::generate();
    let server = NatsServer::start_with_accounts(&creds).await;
    for creds_file in [None, Some(creds.stranger_creds_file.clone())] {
        let config = NatsConfig {
            creds_file: creds_file.clone(),
            ..config(&server)
        };
        let err = connect_error(&config).await;
        assert_eq!(err.kind(), ErrorKind::Auth, "{creds_file:?}: {err}");
        assert!(
            err.to_string().contains("coding.nats.creds_file"),
            "{creds_file:?}: {err}"
        );
    }
    // The seed never shows up in an error.
    let seed_line = std::fs::read_to_string(&creds.stranger_creds_file)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("SU"))
        .unwrap()
        .to_string();
    let config = NatsConfig {
        creds_file: Some(creds.stranger_creds_file.clone()),
        ..config(&server)
    };
    assert!(
        !connect_error(&config)
            .await
            .to_string()
            .contains(&seed_line)
    );
}
