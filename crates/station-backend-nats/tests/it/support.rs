//! Fake executors, workers and clients against a real nats-server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use station_backend_nats::NatsConfig;
use station_backend_nats::{NatsBackend, NatsBackendOptions, Worker, WorkerOptions};
use station_core::{
    Capabilities, CodingBackend, Error, Event, EventKind, ExecContext, FileAction, FileChange,
    Health, OpenRequest, Outcome, Result, RunOptions, Session, StopReason, Task, TaskRun, ToolCall,
    Usage, start_task,
};
use station_testkit::peers::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the fake agent behind all fake executors remembers (shared, like one OpenCode server).
#[derive(Debug, Default)]
pub(crate) struct FakeAgent {
    /// Executor session id → prompts it received, in order.
    pub(crate) sessions: Mutex<HashMap<String, Vec<String>>>,
    /// Executions started.
    pub(crate) executions: AtomicUsize,
    /// A running task observed its cancel signal.
    pub(crate) saw_cancel: AtomicBool,
    next_id: AtomicUsize,
}

/// An in-process `CodingBackend`. What it does depends on the instruction:
///
/// * `write <path> <content>`: writes the file, reports a write tool call and the change;
/// * `sleep <ms>`: streams a text delta every 100 ms for that long (stops on cancel);
/// * `wait for cancel`: blocks until cancelled;
/// * `recall`: answers with the prompts this executor session saw before;
/// * anything else: echoes.
#[derive(Debug, Clone)]
pub(crate) struct FakeExecutor {
    pub(crate) agent: Arc<FakeAgent>,
    /// This executor's own count (per worker).
    pub(crate) executed: Arc<AtomicUsize>,
}

impl FakeExecutor {
    pub(crate) fn new(agent: Arc<FakeAgent>) -> Self {
        FakeExecutor {
            agent,
            executed: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait::async_trait]
impl CodingBackend for FakeExecutor {
    fn name(&self) -> &str {
        "fake"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            resume: true,
            cancel: true,
            ..Capabilities::NONE
        }
    }

    async fn health(&self) -> Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "fake".into(),
        })
    }

    async fn open(&self, req: OpenRequest) -> Result<Session> {
        let mut sessions = self.agent.sessions.lock().unwrap();
        let id = match req.resume {
            Some(id) if sessions.contains_key(&id) => id,
            Some(id) => return Err(Error::session_not_found(id)),
            None => {
                let id = format!("fake_{}", self.agent.next_id.fetch_add(1, Ordering::SeqCst));
                sessions.insert(id.clone(), Vec::new());
                id
            }
        };
        let mut s = Session::new("fake");
        s.backend_session_id = Some(id);
        s.workspace = req.workspace;
        Ok(s)
    }

    async fn execute(&self, session: &Session, task: &Task, ctx: ExecContext) -> Result<Outcome> {
        self.agent.executions.fetch_add(1, Ordering::SeqCst);
        self.executed.fetch_add(1, Ordering::SeqCst);
        let id = session.backend_session_id.clone().expect("opened");
        let dir = session
            .workspace
            .clone()
            .expect("the worker passes a workspace");
        let previous = {
            let mut sessions = self.agent.sessions.lock().unwrap();
            let history = sessions.entry(id.clone()).or_default();
            let previous = history.clone();
            history.push(task.instruction.clone());
            previous
        };
        let started = Instant::now();
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.backend_session_id = Some(id);
        outcome.usage = Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        };
        outcome.cost_usd = Some(0.25);
        let words: Vec<&str> = task.instruction.split_whitespace().collect();
        match words.as_slice() {
            ["write", path, content @ ..] => {
                let input = serde_json::json!({"filePath": path});
                ctx.events.emit(EventKind::ToolStarted {
                    call_id: Some("call_1".into()),
                    name: "write".into(),
                    input: input.clone(),
                });
                let text = format!("{}\n", content.join(" "));
                std::fs::write(dir.join(path), &text).map_err(|e| Error::io("write", e))?;
                ctx.events.emit(EventKind::ToolFinished {
                    call_id: Some("call_1".into()),
                    name: "write".into(),
                    output: Some("Wrote file".into()),
                    error: None,
                });
                ctx.events.emit(EventKind::Text {
                    text: format!("Created {path}."),
                });
                outcome.summary = format!("Created {path}.");
                outcome.files_changed = vec![FileChange {
                    path: path.to_string(),
                    action: FileAction::Created,
                    lines_added: 1,
                    lines_removed: 0,
                    ..Default::default()
                }];
                outcome.tool_calls = vec![ToolCall {
                    id: Some("call_1".into()),
                    name: "write".into(),
                    input,
                    output: Some("Wrote file".into()),
                    error: None,
                    duration_ms: Some(1),
                }];
            }
            ["sleep", ms] => {
                let total = Duration::from_millis(ms.parse().expect("sleep <ms>"));
                let end = tokio::time::Instant::now() + total;
                while tokio::time::Instant::now() < end {
                    ctx.events.emit(EventKind::TextDelta {
                        text: "tick ".into(),
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = ctx.cancel.cancelled() => {
                            self.agent.saw_cancel.store(true, Ordering::SeqCst);
                            return Ok(Outcome::failed(StopReason::Cancelled, "stopped"));
                        }
                    }
                }
                outcome.summary = "slept".into();
            }
            ["wait", "for", "cancel"] => {
                ctx.events.emit(EventKind::Text {
                    text: "waiting".into(),
                });
                ctx.cancel.cancelled().await;
                self.agent.saw_cancel.store(true, Ordering::SeqCst);
                let reason = ctx.cancel.reason().unwrap_or(StopReason::Cancelled);
                return Ok(Outcome::failed(reason, "the fake agent stopped on cancel"));
            }
            ["recall"] => {
                outcome.summary = format!("earlier: {}", previous.join(" | "));
            }
            _ => outcome.summary = format!("echo: {}", task.instruction),
        }
        outcome.duration_ms = started.elapsed().as_millis() as u64;
        Ok(outcome)
    }

    async fn close(&self, _session: &Session) -> Result<()> {
        Ok(())
    }
}

/// A NATS config for `server` with one-second heartbeats.
pub(crate) fn config(server: &NatsServer) -> NatsConfig {
    NatsConfig {
        url: server.url.clone(),
        heartbeat_sec: 1,
        ..NatsConfig::default()
    }
}

pub(crate) async fn client(config: &NatsConfig) -> Arc<NatsBackend> {
    Arc::new(
        NatsBackend::connect(config, NatsBackendOptions::default())
            .await
            .expect("client connects"),
    )
}

/// A running worker; dropping it aborts it (like a killed process).
#[derive(Debug)]
pub(crate) struct RunningWorker {
    pub(crate) shutdown: CancellationToken,
    pub(crate) handle: JoinHandle<Result<()>>,
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub(crate) async fn start_worker(
    config: &NatsConfig,
    executor: Arc<dyn CodingBackend>,
    base: PathBuf,
    id: &str,
    options: WorkerOptions,
) -> RunningWorker {
    let options = WorkerOptions {
        worker_id: Some(id.to_string()),
        ..options
    };
    let worker = Worker::new(config.clone(), executor, base, options);
    assert_eq!(worker.id(), id);
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    RunningWorker { shutdown, handle }
}

/// A worker `id` (see [`start_worker`]) and a client that has seen it answer a ping.
pub(crate) async fn worker_and_client(
    config: &NatsConfig,
    executor: Arc<dyn CodingBackend>,
    base: PathBuf,
    id: &str,
    options: WorkerOptions,
) -> (RunningWorker, Arc<NatsBackend>) {
    let worker = start_worker(config, executor, base, id, options).await;
    let client = client(config).await;
    wait_for_workers(&client, &[id]).await;
    (worker, client)
}

/// Read `run`'s events until streamed text arrives (bounded).
pub(crate) async fn until_text_streams(run: &mut TaskRun) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), run.next_event())
            .await
            .expect("events")
            .expect("not ended");
        if matches!(ev.kind, EventKind::TextDelta { .. }) {
            return;
        }
    }
}

/// Wait until every worker in `ids` answers a ping (it is subscribed).
pub(crate) async fn wait_for_workers(client: &NatsBackend, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = client
            .workers(Duration::from_millis(200))
            .await
            .expect("ping");
        if ids.iter().all(|id| seen.iter().any(|w| w.worker == *id)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers {ids:?} did not come up; seen {seen:?}"
        );
    }
}

pub(crate) fn run_options() -> RunOptions {
    RunOptions {
        default_timeout: Duration::from_secs(60),
        grace: Duration::from_secs(10),
        ..RunOptions::default()
    }
}

/// Run a task to its end (bounded), returning its events and outcome.
pub(crate) async fn run(
    backend: Arc<dyn CodingBackend>,
    session: &Session,
    task: Task,
) -> (Vec<Event>, Result<Outcome>) {
    let run = start_task(backend, session.clone(), task, &run_options());
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(90),
        run.follow(|e| events.push(e.clone())),
    )
    .await
    .expect("the task ends within 90 s");
    (events, outcome)
}

/// `Started` first, seq 1..n, exactly one terminal event, last.
pub(crate) fn assert_event_contract(events: &[Event]) {
    assert!(
        matches!(
            events.first().map(|e| &e.kind),
            Some(EventKind::Started { .. })
        ),
        "{events:#?}"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{events:#?}");
    }
    assert_eq!(
        events.iter().filter(|e| e.kind.is_terminal()).count(),
        1,
        "{events:#?}"
    );
    assert!(events.last().is_some_and(|e| e.kind.is_terminal()));
}

/// The worker that accepted the task, from its notice.
pub(crate) fn accepted_by(events: &[Event]) -> Option<String> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::Notice { message } => message
            .strip_prefix("worker `")
            .and_then(|rest| rest.strip_suffix("` accepted the task"))
            .map(str::to_string),
        _ => None,
    })
}

/// Poll `cond` every 20 ms until it holds (or panic after `within`).
pub(crate) async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
