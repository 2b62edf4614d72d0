//! Soak: 4 workers (instant executor) on a 3-node NATS cluster with JetStream (buckets with
//! three replicas), many tasks from many concurrent sessions while one node is restarted.
//! Reports tasks/s, p50/p99 latency, tasks lost and tasks run twice; fails when any task is
//! lost or run twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use station_backend_nats::{NatsBackend, NatsBackendOptions, NatsConfig, Worker, WorkerOptions};
use station_core::{
    Capabilities, CodingBackend, ExecContext, Health, OpenRequest, Outcome, RunOptions, Session,
    StopReason, Task, start_task,
};
use station_testkit::nats_cluster::NatsCluster;
use tokio_util::sync::CancellationToken;

use crate::report::{BenchResult, Better};
use crate::stats::{Stats, percentile};

const WORKERS: usize = 4;
/// The node restarted mid-run.
const RESTARTED_NODE: usize = 1;

#[derive(Debug, Clone, Copy)]
pub(crate) struct SoakPlan {
    pub(crate) sessions: usize,
    pub(crate) tasks: usize,
}

/// An instant executor that counts how often each instruction ran (on any worker).
#[derive(Debug, Default)]
struct CountingExecutor {
    runs: Mutex<HashMap<String, usize>>,
    next_id: AtomicUsize,
}

#[async_trait::async_trait]
impl CodingBackend for CountingExecutor {
    fn name(&self) -> &str {
        "instant"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "instant".into(),
        })
    }
    async fn open(&self, req: OpenRequest) -> station_core::Result<Session> {
        let mut s = Session::new("instant");
        s.backend_session_id = Some(req.resume.unwrap_or_else(|| {
            format!("instant_{}", self.next_id.fetch_add(1, Ordering::Relaxed))
        }));
        s.workspace = req.workspace;
        Ok(s)
    }
    async fn execute(
        &self,
        session: &Session,
        task: &Task,
        _ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        *self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(task.instruction.clone())
            .or_default() += 1;
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.summary = "done".into();
        outcome.backend_session_id = session.backend_session_id.clone();
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

/// What one task ended with.
struct Finished {
    instruction: String,
    latency: Duration,
    error: Option<String>,
}

pub(crate) async fn run(plan: SoakPlan) -> anyhow::Result<Vec<BenchResult>> {
    crate::nats::require_nats_server()?;
    let mut cluster = NatsCluster::start().await;
    let config = NatsConfig {
        url: cluster.urls(),
        replicas: 3,
        heartbeat_sec: 2,
        ..NatsConfig::default()
    };
    let executor = Arc::new(CountingExecutor::default());
    let base = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let worker = Worker::new(
            config.clone(),
            executor.clone(),
            base.path().join(format!("w{i}")),
            WorkerOptions {
                worker_id: Some(format!("soak-{i}")),
                ..WorkerOptions::default()
            },
        );
        workers.push(tokio::spawn(worker.bind().await?.run(shutdown.clone())));
    }
    let client = Arc::new(NatsBackend::connect(&config, NatsBackendOptions::default()).await?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.workers(Duration::from_millis(300)).await?.len() < WORKERS {
        ensure!(
            Instant::now() < deadline,
            "the {WORKERS} soak workers did not answer a ping within 30 s"
        );
    }
    let backend: Arc<dyn CodingBackend> = client;
    let opts = RunOptions {
        default_timeout: Duration::from_secs(120),
        ..RunOptions::default()
    };
    let per_session = plan.tasks.div_ceil(plan.sessions);
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut sessions = Vec::new();
    for s in 0..plan.sessions {
        let session = backend.open(OpenRequest::default()).await?;
        let (backend, opts, done) = (backend.clone(), opts.clone(), done.clone());
        sessions.push(tokio::spawn(async move {
            let mut finished = Vec::new();
            for t in 0..per_session {
                let instruction = format!("soak task {s}-{t}");
                let began = Instant::now();
                let run = start_task(
                    backend.clone(),
                    session.clone(),
                    Task::new(&instruction),
                    &opts,
                );
                let error = match run.outcome().await {
                    Ok(o) if o.success => None,
                    Ok(o) => Some(format!(
                        "{:?}: {}",
                        o.stop_reason,
                        o.error.unwrap_or_default()
                    )),
                    Err(e) => Some(e.to_string()),
                };
                finished.push(Finished {
                    instruction,
                    latency: began.elapsed(),
                    error,
                });
                done.fetch_add(1, Ordering::SeqCst);
            }
            finished
        }));
    }
    // Restart a node once a quarter of the tasks are done, while the rest are in flight.
    let restart_at = plan.sessions * per_session / 4;
    let restart_deadline = Instant::now() + Duration::from_secs(300);
    while done.load(Ordering::SeqCst) < restart_at {
        ensure!(
            Instant::now() < restart_deadline,
            "the soak stalled before the node restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restart_began = Instant::now();
    let done_before_restart = done.load(Ordering::SeqCst);
    cluster.restart(RESTARTED_NODE).await;
    let restart_took = restart_began.elapsed();
    let mut results = Vec::new();
    for s in sessions {
        results.extend(s.await?);
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(40), w).await;
    }

    let runs = executor
        .runs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let failed: Vec<&Finished> = results.iter().filter(|f| f.error.is_some()).collect();
    let never_ran = results
        .iter()
        .filter(|f| f.error.is_none() && !runs.contains_key(&f.instruction))
        .count();
    let lost = failed.len() + never_ran;
    let twice = runs.values().filter(|n| **n > 1).count();
    let mut ms: Vec<f64> = results
        .iter()
        .map(|f| f.latency.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let total = results.len();
    let tps = total as f64 / elapsed.as_secs_f64();
    let group = "NATS backend";
    let setup = format!(
        "{WORKERS} workers (instant executor, in process) and one client on a 3-node nats-server \
         cluster (JetStream, KV buckets with 3 replicas, every client given all three URLs); \
         {total} tasks from {} concurrent sessions (one after another in each); node \
         n{RESTARTED_NODE} killed and restarted after {done_before_restart} tasks (back with a \
         meta leader after {:.1} s).",
        plan.sessions,
        restart_took.as_secs_f64()
    );
    let rows = vec![
        BenchResult::single(
            "nats.soak.throughput",
            group,
            &format!(
                "soak: throughput, {total} tasks, {} sessions, node restart",
                plan.sessions
            ),
            "tasks/s",
            Better::Higher,
            Stats::of(&[tps]),
        )
        .note(setup),
        BenchResult::single(
            "nats.soak.latency_p50",
            group,
            "soak: task latency p50 (start_task → outcome)",
            "ms",
            Better::Lower,
            Stats::of(&[percentile(&ms, 0.5)]),
        ),
        BenchResult::single(
            "nats.soak.latency_p99",
            group,
            "soak: task latency p99 (includes tasks in flight across the restart)",
            "ms",
            Better::Lower,
            Stats::of(&[percentile(&ms, 0.99)]),
        ),
        BenchResult::single(
            "nats.soak.lost",
            group,
            "soak: tasks lost (failed, or succeeded without running)",
            "tasks",
            Better::Lower,
            Stats::of(&[lost as f64]),
        ),
        BenchResult::single(
            "nats.soak.duplicated",
            group,
            "soak: tasks run more than once",
            "tasks",
            Better::Lower,
            Stats::of(&[twice as f64]),
        ),
    ];
    if lost > 0 || twice > 0 {
        let examples: Vec<String> = failed
            .iter()
            .take(5)
            .map(|f| {
                format!(
                    "{}: {}",
                    f.instruction,
                    f.error.as_deref().unwrap_or_default()
                )
            })
            .collect();
        bail!(
            "NATS soak: {lost} task(s) lost and {twice} run twice out of {total} (both must be 0); first failures: {examples:#?}"
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_soak_loses_nothing_and_runs_nothing_twice() {
        let rows = run(SoakPlan {
            sessions: 8,
            tasks: 80,
        })
        .await
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "nats.soak.throughput",
                "nats.soak.latency_p50",
                "nats.soak.latency_p99",
                "nats.soak.lost",
                "nats.soak.duplicated",
            ]
        );
        assert_eq!(rows[3].suite.unwrap().median, 0.0);
        assert_eq!(rows[4].suite.unwrap().median, 0.0);
    }
}
