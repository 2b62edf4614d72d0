//! Failover on a 3-node cluster with JetStream (buckets with three replicas): a node under a
//! worker or a client dies mid-task, a worker dies mid-task, and a task delivered twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use station_backend_nats::wire::{Ack, AckStatus};
use station_backend_nats::{NatsConfig, WorkerOptions};
use station_core::{CodingBackend, Error, OpenRequest, Task, start_task};
use station_testkit::nats_cluster::NatsCluster;

use crate::support::*;

/// Every node in the URL list, one-second heartbeats, buckets on all three nodes.
fn cluster_config(cluster: &NatsCluster) -> NatsConfig {
    NatsConfig {
        url: cluster.urls(),
        heartbeat_sec: 1,
        replicas: 3,
        ..NatsConfig::default()
    }
}

/// The same, but the first connection goes to node `i` only (failover then uses the
/// servers the cluster announces).
fn pinned(cluster: &NatsCluster, i: usize) -> NatsConfig {
    NatsConfig {
        url: cluster.url(i),
        ..cluster_config(cluster)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_node_dies_mid_task_and_the_result_still_reaches_the_client() {
    let mut cluster = NatsCluster::start().await;
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let _worker = start_worker(
        &cluster_config(&cluster),
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-moves",
        WorkerOptions::default(),
    )
    .await;
    let worker_node = cluster.node_of_connection("station-worker-w-moves").await;
    let client_node = (worker_node + 1) % 3;
    let c = client(&pinned(&cluster, client_node)).await;
    wait_for_workers(&c, &["w-moves"]).await;
    let s = c.open(OpenRequest::default()).await.unwrap();
    let mut task_run = start_task(
        c.clone(),
        s.clone(),
        Task::new("sleep 3000"),
        &run_options(),
    );
    until_text_streams(&mut task_run).await;
    cluster.stop(worker_node).await;
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(90),
        task_run.follow(|e| events.push(e.clone())),
    )
    .await
    .expect("the task ends; it never hangs")
    .unwrap_or_else(|e| panic!("the worker reconnects to another node and delivers: {e}"));
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.summary, "slept");
    assert_eq!(agent.executions.load(Ordering::SeqCst), 1, "ran once");
    // The worker serves the next task from its new node.
    let (_, next) = run(c.clone(), &s, Task::new("echo after failover")).await;
    assert_eq!(next.unwrap().summary, "echo: echo after failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_node_dies_mid_task_and_the_result_still_reaches_it() {
    let mut cluster = NatsCluster::start().await;
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let c = client(&cluster_config(&cluster)).await;
    let client_node = cluster.node_of_connection("station-coding").await;
    let worker_node = (client_node + 1) % 3;
    let _worker = start_worker(
        &pinned(&cluster, worker_node),
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-stays",
        WorkerOptions::default(),
    )
    .await;
    wait_for_workers(&c, &["w-stays"]).await;
    let s = c.open(OpenRequest::default()).await.unwrap();
    let mut task_run = start_task(
        c.clone(),
        s.clone(),
        Task::new("sleep 3000"),
        &run_options(),
    );
    until_text_streams(&mut task_run).await;
    cluster.stop(client_node).await;
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(90),
        task_run.follow(|e| events.push(e.clone())),
    )
    .await
    .expect("the task ends; it never hangs")
    .unwrap_or_else(|e| panic!("the client reconnects and gets the result: {e}"));
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.summary, "slept");
    assert_eq!(agent.executions.load(Ordering::SeqCst), 1, "ran once");
    let (_, next) = run(c.clone(), &s, Task::new("echo from the new node")).await;
    assert_eq!(next.unwrap().summary, "echo: echo from the new node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dies_mid_task_the_client_fails_clearly_and_the_session_moves_on() {
    let cluster = NatsCluster::start().await;
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    // Only the doomed worker first, so it takes the task.
    let doomed = start_worker(
        &pinned(&cluster, 0),
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().join("doomed"),
        "w-doomed",
        WorkerOptions::default(),
    )
    .await;
    let c = client(&pinned(&cluster, 1)).await;
    wait_for_workers(&c, &["w-doomed"]).await;
    let s = c.open(OpenRequest::default()).await.unwrap();
    let mut task_run = start_task(
        c.clone(),
        s.clone(),
        Task::new("sleep 60000"),
        &run_options(),
    );
    until_text_streams(&mut task_run).await;
    let _survivor = start_worker(
        &pinned(&cluster, 2),
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().join("survivor"),
        "w-survivor",
        WorkerOptions::default(),
    )
    .await;
    wait_for_workers(&c, &["w-doomed", "w-survivor"]).await;
    drop(doomed);
    let outcome = tokio::time::timeout(Duration::from_secs(30), task_run.outcome())
        .await
        .expect("no hang");
    match outcome {
        Err(Error::Unavailable { message, .. }) => assert!(
            message.contains("w-doomed") && message.contains("no heartbeat for 3s"),
            "{message}"
        ),
        other => panic!("expected a dead-worker error, got {other:?}"),
    }
    let (events, next) = run(c.clone(), &s, Task::new("recall")).await;
    let next = next.unwrap_or_else(|e| panic!("the session continues on another worker: {e}"));
    assert!(next.success, "{next:#?}");
    assert_eq!(accepted_by(&events).as_deref(), Some("w-survivor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_delivered_twice_through_two_nodes_runs_once() {
    let cluster = NatsCluster::start().await;
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let mut workers = Vec::new();
    for (i, id) in ["w-dup-a", "w-dup-b"].into_iter().enumerate() {
        workers.push(
            start_worker(
                &pinned(&cluster, i),
                Arc::new(FakeExecutor::new(agent.clone())),
                base.path().join(id),
                id,
                // Separate queue groups: each worker gets its own copy of the task.
                WorkerOptions {
                    queue_group: id.into(),
                    ..WorkerOptions::default()
                },
            )
            .await,
        );
    }
    let c = client(&pinned(&cluster, 2)).await;
    wait_for_workers(&c, &["w-dup-a", "w-dup-b"]).await;
    // Two senders on two nodes publish the same task (a retry racing the first delivery).
    let task_id = "0b8f3c1e-dup-cluster";
    let senders = [
        async_nats::connect(cluster.url(0)).await.unwrap(),
        async_nats::connect(cluster.url(1)).await.unwrap(),
    ];
    let inbox = senders[0].new_inbox();
    let mut acks = senders[0].subscribe(inbox.clone()).await.unwrap();
    senders[0].flush().await.unwrap();
    let task = serde_json::json!({
        "taskID": task_id,
        "session": {"name": "session-dupcluster", "continue": true},
        "workspace": {"name": "ws_dup"},
        "prompt": "sleep 300",
        "callback": {
            "streamSubject": format!("station.coding.stream.{task_id}"),
            "resultSubject": format!("station.coding.result.{task_id}")
        }
    });
    let payload: bytes::Bytes = serde_json::to_vec(&task).unwrap().into();
    for sender in &senders {
        sender
            .publish_with_reply("station.coding.task", inbox.clone(), payload.clone())
            .await
            .unwrap();
        sender.flush().await.unwrap();
    }
    // Two workers (each its own queue group) times two senders: four deliveries, one run.
    let mut statuses = Vec::new();
    while statuses.len() < 4 {
        let m = tokio::time::timeout(Duration::from_secs(20), acks.next())
            .await
            .expect("both deliveries are answered")
            .unwrap();
        if let Ok(ack) = serde_json::from_slice::<Ack>(&m.payload) {
            statuses.push(ack.status);
        }
    }
    statuses.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        statuses,
        [
            AckStatus::Accepted,
            AckStatus::Duplicate,
            AckStatus::Duplicate,
            AckStatus::Duplicate
        ]
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(c.task_result(task_id).await, Ok(Some(_))) {
        assert!(
            std::time::Instant::now() < deadline,
            "the task's result is stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        agent.executions.load(Ordering::SeqCst),
        1,
        "ran exactly once"
    );
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waits_for_a_reconnect_only_within_reconnect_wait() {
    let mut server = station_testkit::peers::NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let _worker = start_worker(
        &config,
        Arc::new(FakeExecutor::new(Arc::default())),
        base.path().into(),
        "w-stranded",
        WorkerOptions::default(),
    )
    .await;
    let c = Arc::new(
        station_backend_nats::NatsBackend::connect(
            &config,
            station_backend_nats::NatsBackendOptions {
                reconnect_wait: Duration::from_secs(2),
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    );
    wait_for_workers(&c, &["w-stranded"]).await;
    let s = c.open(OpenRequest::default()).await.unwrap();
    let mut task_run = start_task(c.clone(), s, Task::new("sleep 60000"), &run_options());
    until_text_streams(&mut task_run).await;
    // Every server of the list is gone and stays gone.
    server.stop().await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), task_run.outcome())
        .await
        .expect("the wait for a reconnect is bounded");
    match outcome {
        Err(Error::Unavailable { message, .. }) => assert!(
            message.contains("lost the connection to every NATS server")
                && message.contains("coding.nats.url")
                && message.contains("for 2s"),
            "{message}"
        ),
        other => panic!("expected a lost-connection error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_message_lost_on_the_way_is_published_again() {
    use station_backend_nats::wire::WorkerInfo;
    let server = station_testkit::peers::NatsServer::start().await;
    let config = config(&server);
    // A member of the queue group that answers pings but loses the first task it gets, as a
    // worker whose node died under the message would.
    let raw = async_nats::connect(&config.url).await.unwrap();
    let mut tasks = raw
        .queue_subscribe("station.coding.task", "station-coding-workers".to_string())
        .await
        .unwrap();
    let mut pings = raw.subscribe("station.coding.task.ping").await.unwrap();
    let pinger = raw.clone();
    tokio::spawn(async move {
        while let Some(m) = pings.next().await {
            let info = WorkerInfo {
                worker: "w-lossy".into(),
                executor: "fake".into(),
                running: 0,
                version: "0".into(),
                max_tasks: None,
            };
            if let Some(reply) = m.reply {
                let _ = pinger
                    .publish(reply, serde_json::to_vec(&info).unwrap().into())
                    .await;
            }
        }
    });
    raw.flush().await.unwrap();
    let c = Arc::new(
        station_backend_nats::NatsBackend::connect(
            &config,
            station_backend_nats::NatsBackendOptions {
                ack_timeout: Duration::from_secs(1),
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    );
    let s = c.open(OpenRequest::default()).await.unwrap();
    let agent = Arc::new(FakeAgent::default());
    let task_run = start_task(c.clone(), s, Task::new("echo once"), &run_options());
    let lost = tokio::time::timeout(Duration::from_secs(20), tasks.next())
        .await
        .expect("the task reaches the lossy member")
        .unwrap();
    assert!(String::from_utf8_lossy(&lost.payload).contains("echo once"));
    tasks.unsubscribe().await.unwrap();
    let base = tempfile::tempdir().unwrap();
    let _worker = start_worker(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-real",
        WorkerOptions::default(),
    )
    .await;
    let outcome = tokio::time::timeout(Duration::from_secs(40), task_run.outcome())
        .await
        .expect("the client publishes the task again instead of waiting for a plugin")
        .unwrap();
    assert_eq!(outcome.summary, "echo: echo once");
    assert_eq!(agent.executions.load(Ordering::SeqCst), 1);
}
