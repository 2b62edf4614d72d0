//! A real `stn worker` (with its private `opencode serve` on the scripted model) on a 3-node
//! NATS cluster: the node it is connected to dies mid-task; it reconnects to another node and
//! the result reaches the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_nats::{NatsBackend, NatsBackendOptions, NatsConfig};
use station_core::{CodingBackend, OpenRequest, RunOptions, Task, start_task};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::nats_cluster::NatsCluster;
use station_testkit::peers;

use crate::e2e::{Env, bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_worker_survives_its_nats_node_dying_mid_task_with_real_opencode() {
    let mut cluster = NatsCluster::start().await;
    // The answer comes late, so the node dies while OpenCode waits for the model.
    let model = ScriptedModel::start(Script::new().on(
        "summarise the plan",
        vec![Step::text("The plan is sound.").delayed(Duration::from_secs(4))],
    ))
    .await
    .unwrap();
    let env = Env::new(
        &model,
        &format!(
            "  backend: opencode-nats\n  nats:\n    url: \"{}\"\n    heartbeat_sec: 2\n    replicas: 3\n  opencode:\n    managed: always\n    binary: {}\n    model: {}\n",
            cluster.urls(),
            bin(peers::opencode_bin()),
            peers::OPENCODE_MODEL
        ),
    );
    let stn = assert_cmd::cargo::cargo_bin("stn");
    let mut spec = station_core::process::CommandSpec::new(stn, env.home.path())
        .args(["worker", "--id", "w-real", "--max-tasks", "1"])
        .env_clear();
    for (k, v) in &env.vars {
        spec = spec.env(k, v);
    }
    let mut worker = spec.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !worker.stderr_tail().contains("serving") {
        assert!(
            Instant::now() < deadline,
            "stn worker did not start: {}",
            worker.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worker.stderr_tail().contains("at most 1 task(s) at once"),
        "{}",
        worker.stderr_tail()
    );
    let worker_node = cluster.node_of_connection("station-worker-w-real").await;
    // The client sits on another node.
    let client_config = NatsConfig {
        url: cluster.url((worker_node + 1) % 3),
        heartbeat_sec: 2,
        replicas: 3,
        ..NatsConfig::default()
    };
    let client = Arc::new(
        NatsBackend::connect(&client_config, NatsBackendOptions::default())
            .await
            .unwrap(),
    );
    let session = client.open(OpenRequest::default()).await.unwrap();
    let options = RunOptions {
        default_timeout: Duration::from_secs(120),
        ..RunOptions::default()
    };
    let run = start_task(
        client.clone(),
        session,
        Task::new("summarise the plan"),
        &options,
    );
    // Mid-task: OpenCode has asked the model and waits for the delayed answer.
    let deadline = Instant::now() + Duration::from_secs(90);
    while model.scripted_requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the task did not reach OpenCode; worker: {}",
            worker.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop(worker_node).await;
    let outcome = tokio::time::timeout(Duration::from_secs(120), run.outcome())
        .await
        .expect("the task ends")
        .unwrap_or_else(|e| {
            panic!(
                "the worker reconnects to another node and delivers: {e}; worker: {}",
                worker.stderr_tail()
            )
        });
    assert!(outcome.success, "{outcome:#?}");
    assert!(
        outcome.summary.contains("The plan is sound."),
        "{outcome:#?}"
    );
    assert_eq!(model.scripted_requests().len(), 1, "the task ran once");

    worker.signal_group(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{}", worker.stderr_tail());
}
