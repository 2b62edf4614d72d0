//! `coding.policy` travels with the task: a worker whose own config has no policy runs the
//! real `opencode run` executor under the client's policy, and the decisions come back in the
//! client's outcome. (Here, where backends are composed: backend crates never depend on each
//! other.)

use std::sync::Arc;
use std::time::Duration;

use station_backend_cli::{CliBackend, CliConfig};
use station_backend_nats::{NatsBackend, NatsBackendOptions, NatsConfig, Worker, WorkerOptions};
use station_core::{CodingBackend, OpenRequest, RunOptions, Task, start_task};
use station_testkit::model_server::ScriptedModel;
use station_testkit::peers::{
    NatsServer, OPENCODE_ENV_REMOVE, OPENCODE_MODEL, opencode_bin, opencode_env,
};
use station_testkit::policy_scenario as scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_travels_with_the_task_to_the_worker() {
    let server = NatsServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(scenario::script()).await.unwrap();
    let base = root.path().join("workspaces");
    // The worker's executor has no policy of its own (only "no writes outside").
    let executor: Arc<dyn CodingBackend> = Arc::new(
        CliBackend::new(CliConfig {
            binary: opencode_bin().to_string_lossy().into_owned(),
            timeout_sec: 150,
            model: Some(OPENCODE_MODEL.into()),
        })
        .with_env(opencode_env(&root.path().join("home"), &model))
        .with_env_remove(OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(base.clone()),
    );
    let nats = NatsConfig {
        url: server.url.clone(),
        heartbeat_sec: 1,
        ..NatsConfig::default()
    };
    let worker = Worker::new(
        nats.clone(),
        executor,
        base.clone(),
        WorkerOptions::default(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Bound first, so the client's first task finds a subscriber.
    let worker_task = tokio::spawn(worker.bind().await.unwrap().run(shutdown.clone()));
    let client = Arc::new(
        NatsBackend::connect(&nats, NatsBackendOptions::default())
            .await
            .unwrap()
            .with_policy(scenario::example_policy()),
    );
    let ws = base.join("policy-ws");
    scenario::prepare_workspace(&ws);
    let session = client
        .open(OpenRequest {
            workspace: Some("policy-ws".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let options = RunOptions {
        default_timeout: Duration::from_secs(150),
        ..RunOptions::default()
    };
    let run = start_task(client, session, Task::new(scenario::INSTRUCTION), &options);
    let outcome = tokio::time::timeout(Duration::from_secs(180), run.follow(|_| {}))
        .await
        .expect("the task ends")
        .expect("the task runs");
    scenario::assert_obeyed(&ws, &outcome, "");
    assert!(outcome.policy_gaps.is_empty(), "{:#?}", outcome.policy_gaps);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(40), worker_task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
}
