//! Capacity: `max_tasks` per worker, "no capacity" instead of queueing forever, and KV
//! bucket replicas reported when they differ from `coding.nats.replicas`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use station_backend_nats::{
    NatsBackend, NatsBackendOptions, NatsConfig, NatsWorker, WorkerOptions,
};
use station_core::{
    Capabilities, CodingBackend, Error, ExecContext, Health, OpenRequest, Outcome, Result, Session,
    StopReason, Task, start_task,
};
use station_testkit::peers::NatsServer;

use crate::support::*;

/// When one task ran on one worker.
#[derive(Debug, Clone)]
struct Span {
    worker: String,
    start: Instant,
    end: Instant,
}

/// A [`FakeExecutor`] that records the span of every execution under its worker's name.
#[derive(Debug, Clone)]
struct Recording {
    inner: FakeExecutor,
    worker: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

#[async_trait::async_trait]
impl CodingBackend for Recording {
    fn name(&self) -> &str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn health(&self) -> Result<Health> {
        self.inner.health().await
    }
    async fn open(&self, req: OpenRequest) -> Result<Session> {
        self.inner.open(req).await
    }
    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        let start = Instant::now();
        let outcome = self.inner.execute(session, task, ctx).await;
        self.spans.lock().unwrap().push(Span {
            worker: self.worker.clone(),
            start,
            end: Instant::now(),
        });
        outcome
    }
    async fn close(&self, session: &Session) -> Result<()> {
        self.inner.close(session).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tasks_one_on_two_workers_never_runs_two_tasks_at_once_on_a_worker() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let spans = Arc::new(Mutex::new(Vec::new()));
    let one = WorkerOptions {
        max_tasks: Some(1),
        ..WorkerOptions::default()
    };
    let mut workers = Vec::new();
    for id in ["w-cap-a", "w-cap-b"] {
        let executor = Recording {
            inner: FakeExecutor::new(agent.clone()),
            worker: id.into(),
            spans: spans.clone(),
        };
        let dir = base.path().join(id);
        workers.push(start_worker(&config, Arc::new(executor), dir, id, one.clone()).await);
    }
    let c = client(&config).await;
    wait_for_workers(&c, &["w-cap-a", "w-cap-b"]).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let s = c.open(OpenRequest::default()).await.unwrap();
        runs.push(start_task(
            c.clone(),
            s,
            Task::new("sleep 600"),
            &run_options(),
        ));
    }
    for run in runs {
        let outcome = tokio::time::timeout(Duration::from_secs(60), run.outcome())
            .await
            .expect("every task ends: the third waits for a free worker, it is not lost")
            .unwrap_or_else(|e| panic!("the waiting task runs once a worker is free: {e}"));
        assert!(outcome.success, "{outcome:#?}");
    }
    let spans = spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    for id in ["w-cap-a", "w-cap-b"] {
        let mut mine: Vec<&Span> = spans.iter().filter(|s| s.worker == id).collect();
        mine.sort_by_key(|s| s.start);
        for pair in mine.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "worker {id} ran two tasks at once: {mine:#?}"
            );
        }
    }
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_worker_has_room_for_fails_with_no_capacity() {
    let server = NatsServer::start().await;
    let config = NatsConfig {
        worker: NatsWorker { max_tasks: Some(1) },
        ..config(&server)
    };
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let (_worker, c) = worker_and_client(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-full",
        WorkerOptions::default(),
    )
    .await;
    let seen = c.workers(Duration::from_millis(500)).await.unwrap();
    assert_eq!(
        seen[0].max_tasks,
        Some(1),
        "coding.nats.worker.max_tasks applies: {seen:?}"
    );
    let s = c.open(OpenRequest::default()).await.unwrap();
    let mut busy = start_task(c.clone(), s, Task::new("wait for cancel"), &run_options());
    until_text_or_accepted(&mut busy).await;

    let impatient = Arc::new(
        NatsBackend::connect(
            &config,
            NatsBackendOptions {
                capacity_wait: Some(Duration::from_secs(2)),
                ..NatsBackendOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let s2 = impatient.open(OpenRequest::default()).await.unwrap();
    let (_, outcome) = run(impatient.clone(), &s2, Task::new("echo me")).await;
    match outcome {
        Err(Error::Unavailable { message, .. }) => assert!(
            message.contains("no capacity")
                && message.contains("w-full")
                && message.contains("max_tasks"),
            "{message}"
        ),
        other => panic!("expected a no-capacity error, got {other:?}"),
    }
    assert_eq!(
        agent.executions.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the refused task never ran"
    );
    busy.cancel_signal().cancel_with(StopReason::Cancelled);
    let ended = tokio::time::timeout(Duration::from_secs(30), busy.outcome())
        .await
        .expect("the busy task ends on cancel")
        .unwrap();
    assert_eq!(ended.stop_reason, StopReason::Cancelled);
}

/// Read events until the fake agent's first text (the task runs on the worker).
async fn until_text_or_accepted(run: &mut station_core::TaskRun) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), run.next_event())
            .await
            .expect("events")
            .expect("not ended");
        if matches!(ev.kind, station_core::EventKind::Text { .. }) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_bucket_with_another_replica_count_is_used_and_reported() {
    let server = NatsServer::start().await;
    // Created with one replica (the single server's only choice)...
    let first = client(&config(&server)).await;
    assert!(
        first.bucket_warnings().is_empty(),
        "{:?}",
        first.bucket_warnings()
    );
    // ...then opened by a client configured for three: used as it is, with a warning.
    let wants_three = NatsConfig {
        replicas: 3,
        ..config(&server)
    };
    let c = client(&wants_three).await;
    let warnings = c.bucket_warnings().join("\n");
    assert!(
        warnings.contains("opencode-sessions")
            && warnings.contains("1 replica")
            && warnings.contains("coding.nats.replicas is 3"),
        "{warnings}"
    );
    let health = c.health().await.unwrap();
    assert!(
        health.detail.contains("coding.nats.replicas is 3"),
        "{health:?}"
    );
}
