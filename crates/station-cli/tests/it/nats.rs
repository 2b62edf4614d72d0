//! The conformance suite through NATS: the `opencode-nats` client, a worker composed as
//! `stn worker` composes it (the OpenCode HTTP backend as executor) in front of a real
//! `opencode serve`, a real `nats-server -js`, and the scripted model.

use std::sync::Arc;

use station_backend_http::HttpBackend;
use station_backend_nats::{NatsBackend, NatsBackendOptions, Worker, WorkerOptions};
use station_core::CodingBackend;
use station_core::config::{CodingConfig, ManagedServer, NatsConfig};
use station_testkit::conformance::{Target, run_all};
use station_testkit::model_server::{Script, ScriptedModel};
use station_testkit::peers::{self, NatsServer, OpencodeServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_nats_worker_and_real_opencode() {
    let nats = NatsServer::start().await;
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = peers::opencode_env(home.path(), &model);
    let opencode = OpencodeServer::start(&env, home.path()).await;
    let workspaces = home.path().join("workspaces");
    std::fs::create_dir_all(&workspaces).unwrap();

    let mut coding = CodingConfig::default();
    coding.opencode.url = opencode.url.clone();
    coding.opencode.managed = ManagedServer::Never;
    coding.opencode.model = Some(peers::OPENCODE_MODEL.into());
    let executor: Arc<dyn CodingBackend> = Arc::new(
        HttpBackend::new(&coding)
            .unwrap()
            .with_workspace_base(workspaces.clone()),
    );
    let nats_config = NatsConfig {
        url: nats.url.clone(),
        heartbeat_sec: 2,
        ..NatsConfig::default()
    };
    let worker = Worker::new(
        nats_config.clone(),
        executor,
        workspaces.clone(),
        WorkerOptions::default(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(shutdown.clone()));

    let backend: Arc<dyn CodingBackend> = Arc::new(
        NatsBackend::connect(&nats_config, NatsBackendOptions::default())
            .await
            .unwrap(),
    );
    run_all(&Target {
        backend,
        model: &model,
        workspace_root: workspaces,
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(40), worker_task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
}
