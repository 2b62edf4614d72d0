//! Workers dying, the server restarting, load sharing, duplicates, cancel, shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use station_backend_nats::NatsConfig;
use station_backend_nats::wire::{Ack, AckStatus, ResultMessage, WorkerInfo};
use station_backend_nats::{NatsBackend, NatsBackendOptions, WorkerOptions};
use station_core::{CodingBackend, Error, EventKind, OpenRequest, StopReason, Task, start_task};
use station_testkit::peers::NatsServer;

use crate::support::*;

async fn session(client: &NatsBackend) -> station_core::Session {
    client.open(OpenRequest::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_the_task_within_the_heartbeat_window() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let (worker, c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(Arc::default())),
        base.path().to_path_buf(),
        "w-doomed",
        WorkerOptions::default(),
    )
    .await;
    let s = session(&c).await;
    let mut run = start_task(c.clone(), s, Task::new("sleep 60000"), &run_options());
    // Wait until it streams, then kill the worker.
    until_text_streams(&mut run).await;
    drop(worker);
    let killed = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), run.outcome())
        .await
        .expect("no hang");
    let waited = killed.elapsed();
    match outcome {
        Err(Error::Unavailable { message, .. }) => {
            assert!(
                message.contains("w-doomed") && message.contains("heartbeat"),
                "{message}"
            );
        }
        other => panic!("expected a dead-worker error, got {other:?}"),
    }
    // 3 missed one-second beats, plus a tick.
    assert!(waited < Duration::from_secs(6), "took {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_task_does_not_lose_the_result() {
    let mut server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let (_worker, c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().to_path_buf(),
        "w-restart",
        WorkerOptions::default(),
    )
    .await;
    let s = session(&c).await;
    let mut run = start_task(c.clone(), s, Task::new("sleep 4000"), &run_options());
    until_text_streams(&mut run).await;
    server.restart().await;
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        run.follow(|e| events.push(e.clone())),
    )
    .await
    .expect("the task ends after the restart; it never hangs");
    let outcome = outcome.unwrap_or_else(|e| panic!("the result survives the restart: {e}"));
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.summary, "slept");
    assert_eq!(agent.executions.load(Ordering::SeqCst), 1);
    assert!(events.last().is_some_and(|e| e.kind.is_terminal()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_the_queue_group_share_the_tasks() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let a = FakeExecutor::new(agent.clone());
    let b = FakeExecutor::new(agent.clone());
    let _wa = start_worker(
        &config,
        Arc::new(a.clone()),
        base.path().into(),
        "w-a",
        WorkerOptions::default(),
    )
    .await;
    let _wb = start_worker(
        &config,
        Arc::new(b.clone()),
        base.path().into(),
        "w-b",
        WorkerOptions::default(),
    )
    .await;
    let c = client(&config).await;
    wait_for_workers(&c, &["w-a", "w-b"]).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut tasks = 0;
    // A queue group spreads messages at random; 40 tasks all landing on one worker has a
    // probability of 2^-39.
    while seen.len() < 2 && tasks < 40 {
        let s = session(&c).await;
        let (events, outcome) = run(c.clone(), &s, Task::new(format!("task {tasks}"))).await;
        assert!(outcome.unwrap().success);
        seen.insert(accepted_by(&events).expect("a worker accepted"));
        tasks += 1;
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["w-a", "w-b"]);
    assert!(a.executed.load(Ordering::SeqCst) > 0 && b.executed.load(Ordering::SeqCst) > 0);
    assert_eq!(agent.executions.load(Ordering::SeqCst), tasks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_does_not_run_the_task_twice() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let (_w, _c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-dedupe",
        WorkerOptions::default(),
    )
    .await;

    let nats = async_nats::connect(&config.url).await.unwrap();
    let task_id = "0b8f3c1e-dup-0001";
    let mut results = nats
        .subscribe(format!("station.coding.result.{task_id}"))
        .await
        .unwrap();
    let inbox = nats.new_inbox();
    let mut acks = nats.subscribe(inbox.clone()).await.unwrap();
    let task = serde_json::json!({
        "taskID": task_id,
        "session": {"name": "session-dup00001", "continue": true},
        "workspace": {"name": "ws_dup"},
        "prompt": "sleep 500",
        "callback": {
            "streamSubject": format!("station.coding.stream.{task_id}"),
            "resultSubject": format!("station.coding.result.{task_id}")
        }
    });
    let payload: bytes::Bytes = serde_json::to_vec(&task).unwrap().into();
    // Two deliveries back to back (a Go Station plus a retry, or two plugin-era subscribers).
    for _ in 0..2 {
        nats.publish_with_reply("station.coding.task", inbox.clone(), payload.clone())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(10), acks.next())
            .await
            .unwrap()
            .unwrap();
        statuses.push(serde_json::from_slice::<Ack>(&m.payload).unwrap().status);
    }
    statuses.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(statuses, [AckStatus::Accepted, AckStatus::Duplicate]);
    let first = tokio::time::timeout(Duration::from_secs(10), results.next())
        .await
        .unwrap()
        .unwrap();
    let first: ResultMessage = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(first.status, "completed");

    // Redelivered after it finished: not run again, the stored result is sent again.
    nats.publish_with_reply("station.coding.task", inbox.clone(), payload.clone())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), acks.next())
        .await
        .unwrap()
        .unwrap();
    let ack: Ack = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(ack.status, AckStatus::Duplicate);
    assert!(ack.reason.unwrap().contains("already done"));
    let again = tokio::time::timeout(Duration::from_secs(10), results.next())
        .await
        .unwrap()
        .unwrap();
    let again: ResultMessage = serde_json::from_slice(&again.payload).unwrap();
    assert_eq!(again, first);
    assert_eq!(
        agent.executions.load(Ordering::SeqCst),
        1,
        "ran exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_listening_fails_fast_and_clearly() {
    let server = NatsServer::start().await;
    let c = client(&config(&server)).await;
    let s = session(&c).await;
    let started = Instant::now();
    let (events, outcome) = run(c.clone(), &s, Task::new("anything")).await;
    assert_event_contract(&events);
    match outcome {
        Err(Error::Unavailable { message, .. }) => {
            assert!(
                message.contains("no worker is listening on station.coding.task"),
                "{message}"
            );
            assert!(message.contains("stn worker"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A short grace (a restarted node learning the cluster's subscriptions), not the 3 s ack
    // timeout nor the task deadline.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_says_how_to_start_nats() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = NatsConfig {
        url: format!("nats://127.0.0.1:{port}"),
        ..NatsConfig::default()
    };
    let started = Instant::now();
    let options = NatsBackendOptions {
        connect_timeout: Duration::from_secs(2),
        ..NatsBackendOptions::default()
    };
    match NatsBackend::connect(&config, options).await {
        Err(Error::Unavailable { message, .. }) => {
            assert!(message.contains("nats-server -js"), "{message}");
            assert!(message.contains(&port.to_string()), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_executor_and_the_outcome_is_cancelled() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let (_w, c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-cancel",
        WorkerOptions::default(),
    )
    .await;
    let s = session(&c).await;
    let mut run = start_task(c.clone(), s, Task::new("wait for cancel"), &run_options());
    let mut events = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), run.next_event())
            .await
            .unwrap()
            .unwrap();
        let waiting = matches!(&ev.kind, EventKind::Text { text } if text == "waiting");
        events.push(ev);
        if waiting {
            break;
        }
    }
    let cancelled_at = Instant::now();
    run.cancel();
    let outcome = tokio::time::timeout(
        Duration::from_secs(15),
        run.follow(|e| events.push(e.clone())),
    )
    .await
    .unwrap()
    .unwrap();
    assert_event_contract(&events);
    assert_eq!(
        (outcome.success, outcome.stop_reason),
        (false, StopReason::Cancelled),
        "{outcome:#?}"
    );
    assert!(
        agent.saw_cancel.load(Ordering::SeqCst),
        "the executor saw the cancel"
    );
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(3),
        "cancel is prompt: {:?}",
        cancelled_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_is_a_timeout_outcome_and_stops_the_executor() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let (_w, c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-deadline",
        WorkerOptions::default(),
    )
    .await;
    let s = session(&c).await;
    let mut task = Task::new("wait for cancel");
    task.timeout_secs = Some(1);
    let (events, outcome) = run(c.clone(), &s, task).await;
    assert_event_contract(&events);
    let outcome = outcome.unwrap();
    assert_eq!(
        (outcome.success, outcome.stop_reason),
        (false, StopReason::Timeout),
        "{outcome:#?}"
    );
    assert!(outcome.error.unwrap().contains("timed out"));
    eventually(
        Duration::from_secs(5),
        "the executor sees the timeout",
        || agent.saw_cancel.load(Ordering::SeqCst),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_short_tasks_and_fails_long_ones_clearly() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let options = WorkerOptions {
        shutdown_grace: Duration::from_secs(1),
        ..WorkerOptions::default()
    };
    let (mut worker, c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-stop",
        options,
    )
    .await;
    let short = start_task(
        c.clone(),
        session(&c).await,
        Task::new("sleep 300"),
        &run_options(),
    );
    let long = start_task(
        c.clone(),
        session(&c).await,
        Task::new("wait for cancel"),
        &run_options(),
    );
    eventually(Duration::from_secs(10), "both tasks run", || {
        agent.executions.load(Ordering::SeqCst) == 2
    })
    .await;
    worker.shutdown.cancel();
    let short = tokio::time::timeout(Duration::from_secs(20), short.outcome())
        .await
        .unwrap()
        .unwrap();
    assert!(
        short.success,
        "a task that ends within the grace period finishes: {short:#?}"
    );
    let long = tokio::time::timeout(Duration::from_secs(20), long.outcome())
        .await
        .unwrap()
        .unwrap();
    assert!(!long.success);
    assert_eq!(long.stop_reason, StopReason::Error);
    assert!(
        long.error.as_deref().unwrap().contains("w-stop` shut down"),
        "{long:#?}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(20), &mut worker.handle).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the worker returns Ok: {ended:?}"
    );
    // After shutdown nobody listens: the next task fails fast.
    let (_, outcome) = run(c.clone(), &session(&c).await, Task::new("late")).await;
    assert!(
        matches!(outcome, Err(Error::Unavailable { .. })),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_can_start_before_its_server() {
    let mut server = NatsServer::start().await;
    let config = config(&server);
    server.stop().await;
    let base = tempfile::tempdir().unwrap();
    let options = WorkerOptions {
        wait_for_server: true,
        connect_timeout: Duration::from_secs(1),
        ..WorkerOptions::default()
    };
    let _w = start_worker(
        &config,
        Arc::new(FakeExecutor::new(Arc::default())),
        base.path().into(),
        "w-early",
        options,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await;
    let c = client(&config).await;
    wait_for_workers(&c, &["w-early"]).await;
    let (_, outcome) = run(c.clone(), &session(&c).await, Task::new("hi")).await;
    assert_eq!(outcome.unwrap().summary, "echo: hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_waiting_a_worker_fails_clearly_when_nats_is_down() {
    let mut server = NatsServer::start().await;
    let config = config(&server);
    server.stop().await;
    let base = tempfile::tempdir().unwrap();
    let options = WorkerOptions {
        connect_timeout: Duration::from_secs(1),
        ..WorkerOptions::default()
    };
    let mut w = start_worker(
        &config,
        Arc::new(FakeExecutor::new(Arc::default())),
        base.path().into(),
        "w-nonats",
        options,
    )
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut w.handle)
        .await
        .unwrap()
        .unwrap();
    match ended {
        Err(Error::Unavailable { message, .. }) => {
            assert!(message.contains("nats-server -js"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_execute_cancels_the_remote_task() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let (_w, c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-drop",
        WorkerOptions::default(),
    )
    .await;
    let s = session(&c).await;
    let ctx = station_core::ExecContext::new(
        station_core::EventSink::discard(),
        station_core::CancelSignal::new(),
    );
    let task = Task::new("wait for cancel");
    let mut execute = Box::pin(c.execute(&s, &task, ctx));
    let agent_runs = agent.clone();
    let running = eventually(Duration::from_secs(20), "the task runs", move || {
        agent_runs.executions.load(Ordering::SeqCst) == 1
    });
    tokio::select! {
        r = &mut execute => panic!("the task ended on its own: {r:?}"),
        _ = running => {}
    }
    // The future is dropped mid-task, without its cancel signal ever firing.
    drop(execute);
    eventually(
        Duration::from_secs(5),
        "the worker's executor is cancelled",
        || agent.saw_cancel.load(Ordering::SeqCst),
    )
    .await;
}

/// A worker whose beats are lost (as while it reconnects after a node restart) but which still
/// answers pings with the task running is alive: the client keeps waiting for its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_that_answers_pings_is_not_declared_dead() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let nats = async_nats::connect(&config.url).await.unwrap();
    let mut tasks = nats.subscribe("station.coding.task").await.unwrap();
    let mut pings = nats.subscribe("station.coding.task.ping").await.unwrap();
    let c = client(&config).await;
    let s = session(&c).await;
    let run = start_task(c.clone(), s, Task::new("slow"), &run_options());

    let m = tokio::time::timeout(Duration::from_secs(10), tasks.next())
        .await
        .unwrap()
        .unwrap();
    let task: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    let task_id = task["taskID"].as_str().unwrap().to_string();
    let ack = Ack {
        task_id: task_id.clone(),
        status: AckStatus::Accepted,
        worker: "w-silent".into(),
        heartbeat_sec: 1,
        reason: None,
        busy: false,
    };
    let reply = m.reply.unwrap();
    nats.publish(reply, serde_json::to_vec(&ack).unwrap().into())
        .await
        .unwrap();
    // No heartbeats for well past the 3 s liveness window; pings are answered meanwhile.
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answerer = {
        let (nats, answered) = (nats.clone(), answered.clone());
        tokio::spawn(async move {
            while let Some(p) = pings.next().await {
                let info = WorkerInfo {
                    worker: "w-silent".into(),
                    executor: "fake".into(),
                    running: 1,
                    version: "test".into(),
                    max_tasks: None,
                };
                let reply = p.reply.unwrap();
                let _ = nats
                    .publish(reply, serde_json::to_vec(&info).unwrap().into())
                    .await;
                answered.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        answered.load(Ordering::SeqCst) > 0,
        "the client never pinged the silent worker"
    );
    let mut result = ResultMessage::failure(
        &task_id,
        task["session"]["name"].as_str().unwrap(),
        "ws",
        "",
    );
    result.status = "completed".into();
    result.error = None;
    result.result = Some("done late".into());
    let subject = task["callback"]["resultSubject"]
        .as_str()
        .unwrap()
        .to_string();
    nats.publish(subject, serde_json::to_vec(&result).unwrap().into())
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), run.outcome())
        .await
        .expect("no hang")
        .expect("a live worker's result, not a dead-worker error");
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.summary, "done late");
    answerer.abort();
}
