//! Benchmark 2: a task round trip through `NatsBackend` and a `Worker` whose executor answers at
//! once, versus a raw async-nats request/reply of similar payloads, against a real
//! `nats-server -js`. Also throughput with 100 concurrent sessions, and client memory per
//! session.
//!
//! The worker (and the raw responder) run in a second process, this binary re-run as
//! `--nats-worker URL`, as in a deployment; so the client's RSS is the client's alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use serde_json::{Value, json};
use station_backend_nats::NatsConfig;
use station_backend_nats::{NatsBackend, NatsBackendOptions, Worker, WorkerOptions};
use station_core::process::{ChildProcess, CommandSpec};
use station_core::{CodingBackend, OpenRequest, RunOptions, Session, Task, start_task};
use station_testkit::peers::NatsServer;

use crate::blocks::InstantBackend;
use crate::report::{BenchResult, Better};
use crate::stats::{Case, Stats, compare};

/// The raw responder's subject.
const RAW_SUBJECT: &str = "bench.raw.task";
const PROMPT: &str = "Write notes.md with a line that says hello";
const WORKER_ID: &str = "bench-worker";

/// A task message shaped like the suite's (same fields, similar size).
fn raw_task(n: u64) -> Vec<u8> {
    json!({
        "taskID": format!("0190a1b2-c3d4-7e5f-8a9b-{n:012x}"),
        "session": {"name": "stn_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "continue": true},
        "workspace": {"name": "stn_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"},
        "prompt": PROMPT,
        "timeout": 600000,
        "callback": {
            "streamSubject": format!("station.coding.stream.{n}"),
            "resultSubject": format!("station.coding.result.{n}")
        },
        "task": {"instruction": PROMPT}
    })
    .to_string()
    .into_bytes()
}

/// A result shaped like the worker's for an instant task.
fn raw_result() -> Vec<u8> {
    json!({
        "taskID": "0190a1b2-c3d4-7e5f-8a9b-000000000001",
        "status": "completed",
        "result": "done",
        "session": {"name": "stn_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "opencodeID": "instant_1", "messageCount": 1},
        "workspace": {"name": "stn_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "path": "/tmp/bench/stn_0190a1b2c3d47e5f8a9b0c1d2e3f4a5b"},
        "metrics": {"duration": 0, "toolCalls": 0, "streamEvents": 2, "promptTokens": 0, "completionTokens": 0},
        "worker": WORKER_ID,
        "stop_reason": "completed",
        "files_changed": [],
        "usage": {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0},
        "tool_calls": []
    })
    .to_string()
    .into_bytes()
}

/// The worker process: a Station `Worker` with an instant executor, and a raw responder that
/// answers every request on [`RAW_SUBJECT`] with a result-sized reply. Runs until killed.
pub(crate) async fn worker_process(url: String) -> anyhow::Result<()> {
    let raw = async_nats::connect(url.as_str()).await?;
    let mut requests = raw.subscribe(RAW_SUBJECT).await?;
    let reply = bytes::Bytes::from(raw_result());
    let responder = {
        let raw = raw.clone();
        tokio::spawn(async move {
            while let Some(msg) = requests.next().await {
                // Parse the request as the worker parses a task.
                let _ = serde_json::from_slice::<Value>(&msg.payload);
                if let Some(to) = msg.reply {
                    let _ = raw.publish(to, reply.clone()).await;
                }
            }
        })
    };
    let base = tempfile::tempdir()?;
    let config = NatsConfig {
        url: url.to_string(),
        ..NatsConfig::default()
    };
    let worker = Worker::new(
        config,
        Arc::new(InstantBackend::default()),
        base.path().to_path_buf(),
        WorkerOptions {
            worker_id: Some(WORKER_ID.into()),
            ..WorkerOptions::default()
        },
    );
    let result = worker.run(tokio_util::sync::CancellationToken::new()).await;
    responder.abort();
    result.map_err(Into::into)
}

/// Where the worker runs; stopped on drop.
enum WorkerHost {
    /// This binary re-run with `--nats-worker` (killed with its group on drop).
    Process { _child: Box<ChildProcess> },
    /// A task in this process (tests, where the binary is the test harness).
    Task(tokio::task::JoinHandle<anyhow::Result<()>>),
}

impl WorkerHost {
    fn start(url: &str, in_process: bool) -> anyhow::Result<WorkerHost> {
        if in_process {
            return Ok(WorkerHost::Task(tokio::spawn(worker_process(
                url.to_string(),
            ))));
        }
        let exe = std::env::current_exe()?;
        let child = CommandSpec::new(exe, std::env::temp_dir())
            .args(["--nats-worker", url])
            .spawn()?;
        Ok(WorkerHost::Process {
            _child: Box::new(child),
        })
    }
}

impl Drop for WorkerHost {
    fn drop(&mut self) {
        if let WorkerHost::Task(handle) = self {
            handle.abort();
        }
    }
}

struct RawRequest {
    client: async_nats::Client,
    n: u64,
}

impl Case for RawRequest {
    async fn run(&mut self) -> anyhow::Result<()> {
        self.n += 1;
        let reply = self
            .client
            .request(RAW_SUBJECT, raw_task(self.n).into())
            .await?;
        let v: Value = serde_json::from_slice(&reply.payload)?;
        ensure!(v["status"] == "completed");
        Ok(())
    }
}

struct SuiteTask {
    backend: Arc<dyn CodingBackend>,
    session: Session,
    opts: RunOptions,
}

impl Case for SuiteTask {
    async fn run(&mut self) -> anyhow::Result<()> {
        let outcome = start_task(
            self.backend.clone(),
            self.session.clone(),
            Task::new(PROMPT),
            &self.opts,
        )
        .follow(|ev| {
            std::hint::black_box(ev);
        })
        .await?;
        if !outcome.success {
            bail!("the task failed: {outcome:?}");
        }
        Ok(())
    }
}

struct KvPut {
    kv: async_nats::jetstream::kv::Store,
    value: bytes::Bytes,
}

impl Case for KvPut {
    async fn run(&mut self) -> anyhow::Result<()> {
        self.kv.put("bench-probe", self.value.clone()).await?;
        Ok(())
    }
}

/// VmRSS of this process in KiB.
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// Runs `per_session` tasks in each of `sessions`, the sessions concurrently; tasks per second.
async fn suite_throughput(
    backend: &Arc<dyn CodingBackend>,
    sessions: &[Session],
    per_session: usize,
    opts: &RunOptions,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for session in sessions {
        let mut case = SuiteTask {
            backend: backend.clone(),
            session: session.clone(),
            opts: opts.clone(),
        };
        handles.push(tokio::spawn(async move {
            for _ in 0..per_session {
                case.run().await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok((sessions.len() * per_session) as f64 / start.elapsed().as_secs_f64())
}

/// The same with raw requests: `concurrency` requesters, `per_requester` requests each.
async fn raw_throughput(
    client: &async_nats::Client,
    concurrency: usize,
    per_requester: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..concurrency {
        let mut case = RawRequest {
            client: client.clone(),
            n: (i * per_requester) as u64,
        };
        handles.push(tokio::spawn(async move {
            for _ in 0..per_requester {
                case.run().await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok((concurrency * per_requester) as f64 / start.elapsed().as_secs_f64())
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct NatsPlan {
    pub(crate) warmup: usize,
    pub(crate) iterations: usize,
    pub(crate) concurrent_sessions: usize,
    pub(crate) tasks_per_session: usize,
    pub(crate) throughput_rounds: usize,
    pub(crate) memory_sessions: usize,
}

pub(crate) async fn run(plan: NatsPlan) -> anyhow::Result<Vec<BenchResult>> {
    run_with(plan, false).await
}

async fn run_with(plan: NatsPlan, worker_in_process: bool) -> anyhow::Result<Vec<BenchResult>> {
    require_nats_server()?;
    let server = NatsServer::start().await;
    let _worker = WorkerHost::start(&server.url, worker_in_process)?;
    let config = NatsConfig {
        url: server.url.clone(),
        ..NatsConfig::default()
    };
    let nats = NatsBackend::connect(&config, NatsBackendOptions::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nats
        .workers(Duration::from_millis(200))
        .await?
        .iter()
        .any(|w| w.worker == WORKER_ID)
    {
        ensure!(
            Instant::now() < deadline,
            "the benchmark worker did not answer a ping within 30 s"
        );
    }
    let backend: Arc<dyn CodingBackend> = Arc::new(nats);
    let raw = async_nats::connect(&server.url).await?;
    let mut raw_case = RawRequest {
        client: raw.clone(),
        n: 0,
    };
    let opts = RunOptions::default();
    let open = |backend: Arc<dyn CodingBackend>| async move {
        backend
            .open(OpenRequest::default())
            .await
            .map_err(anyhow::Error::from)
    };
    let mut suite_case = SuiteTask {
        backend: backend.clone(),
        session: open(backend.clone()).await?,
        opts: opts.clone(),
    };
    let group = "NATS backend";
    let mut out = Vec::new();

    // Memory first, while the allocator has little freed memory to hand out again: sessions
    // opened, then one task in each, all Session values kept.
    let before = rss_kib()?;
    let mut many = Vec::with_capacity(plan.memory_sessions);
    for _ in 0..plan.memory_sessions {
        many.push(open(backend.clone()).await?);
    }
    let opened = rss_kib()?;
    for chunk in many.chunks(plan.concurrent_sessions.max(1)) {
        suite_throughput(&backend, chunk, 1, &opts).await?;
    }
    let after_tasks = rss_kib()?;
    // More tasks in each: steady-state growth per round (a per-task leak would show here).
    let mut growth = Vec::new();
    let mut last = after_tasks;
    for _ in 0..3 {
        for chunk in many.chunks(plan.concurrent_sessions.max(1)) {
            suite_throughput(&backend, chunk, 1, &opts).await?;
        }
        let now = rss_kib()?;
        growth.push(now.saturating_sub(last) as f64 / plan.memory_sessions as f64);
        last = now;
    }
    let per = |kib: u64| kib.saturating_sub(before) as f64 / plan.memory_sessions as f64;
    out.push(
        BenchResult::single(
            "nats.rss_per_open_session",
            group,
            &format!(
                "client RSS per open session ({} opened)",
                plan.memory_sessions
            ),
            "KiB",
            Better::Lower,
            Stats::of(&[per(opened)]),
        )
        .note(format!(
            "VmRSS of the client process before and after opening {} sessions (kept alive): \
             {before} → {opened} KiB. `open` is local: the session lives in the Session value \
             until its first task.",
            plan.memory_sessions
        )),
    );
    out.push(
        BenchResult::single(
            "nats.rss_per_session_after_task",
            group,
            &format!(
                "client RSS per session after one task in each ({})",
                plan.memory_sessions
            ),
            "KiB",
            Better::Lower,
            Stats::of(&[per(after_tasks)]),
        )
        .note(format!(
            "Same sessions after one task each ({} at a time): {before} → {after_tasks} KiB. \
             Includes what the allocator keeps after the concurrent tasks' buffers are freed.",
            plan.concurrent_sessions
        )),
    );
    out.push(
        BenchResult::single(
            "nats.rss_growth_per_task",
            group,
            &format!(
                "client RSS growth per task, 3 more rounds of one task in each of the {} sessions",
                plan.memory_sessions
            ),
            "KiB",
            Better::Lower,
            Stats::of(&growth),
        )
        .note(format!(
            "{after_tasks} → {last} KiB over the 3 rounds (one value per round): what stays \
             behind per task once the process is warm; a steady non-zero value would be a \
             per-task leak in the client."
        )),
    );
    drop(many);

    let paired = compare(plan.warmup, plan.iterations, &mut raw_case, &mut suite_case).await?;
    out.push(
        BenchResult::timed(
            "nats.round_trip",
            group,
            "one task round trip (client + worker, instant executor)",
            &paired,
            "one async-nats request/reply of a task-sized request and a result-sized reply, \
             answered by a responder in the worker process",
        )
        .with_ratio_target(1.5, None)
        .note(
            "Suite: `start_task` on `NatsBackend` → task message (subscriptions to events, \
             heartbeats, result and an ack inbox first) → `Worker` in a second process (ack, \
             task claim created in the JetStream KV tasks bucket while the session state is \
             read, executor run, session state and result stored in the KV buckets at once, \
             then the result published) → events and result back. One session, continued by \
             every task. What limits the ratio: the two KV round trips on the critical path \
             (claim, store) are durability the baseline does not have — a duplicate delivery \
             must find the claim before the task runs, and a client that missed the result \
             message must find it stored — and each costs a good part of the whole raw \
             exchange (next row). Only dropping claims or stored results would move it further.",
        ),
    );

    // What one round trip of the kinds the suite makes per task costs here.
    let js = async_nats::jetstream::new(raw.clone());
    // The bucket the worker keeps task claims and results in (the backend created it).
    let kv = js
        .get_key_value(station_backend_nats::wire::TASKS_BUCKET)
        .await?;
    let mut put = KvPut {
        kv,
        value: bytes::Bytes::from(raw_result()),
    };
    let paired = compare(plan.warmup, plan.iterations, &mut raw_case, &mut put).await?;
    out.push(
        BenchResult::timed(
            "nats.kv_put",
            group,
            "building block: one JetStream KV put (file storage)",
            &paired,
            "one raw request/reply",
        )
        .note(
            "Per task the worker makes two KV round trips on the critical path (the task claim \
             with the session read alongside; the result store with the session write \
             alongside) before it publishes the result. A KV put is one client → server → client trip; the raw request/reply \
             crosses the server twice (client → server → worker process and back).",
        ),
    );
    let mut sessions = Vec::new();
    for _ in 0..plan.concurrent_sessions {
        sessions.push(open(backend.clone()).await?);
    }
    // Warm-up: the first task of each session creates its state and workspace on the worker.
    suite_throughput(&backend, &sessions, 1, &opts).await?;
    raw_throughput(&raw, plan.concurrent_sessions, 1).await?;
    let (mut suite_tps, mut raw_tps) = (Vec::new(), Vec::new());
    for _ in 0..plan.throughput_rounds {
        suite_tps.push(suite_throughput(&backend, &sessions, plan.tasks_per_session, &opts).await?);
        raw_tps.push(raw_throughput(&raw, plan.concurrent_sessions, plan.tasks_per_session).await?);
    }
    out.push(
        BenchResult::compared(
            "nats.throughput",
            group,
            &format!(
                "throughput, {} concurrent sessions × {} tasks",
                plan.concurrent_sessions, plan.tasks_per_session
            ),
            "tasks/s",
            Better::Higher,
            Stats::of(&suite_tps),
            Stats::of(&raw_tps),
            "the same number of raw request/replies from as many concurrent requesters",
        )
        .note(
            "Client, worker, nats-server and the runtime share the 2 cores. Each session runs \
             its tasks one after another; the sessions run concurrently.",
        ),
    );

    // Latency and throughput first in the table; memory was measured first.
    out.rotate_left(3);
    Ok(out)
}

/// Fails with how to install `nats-server` when it is not there.
pub(crate) fn require_nats_server() -> anyhow::Result<()> {
    let on_path = CommandSpec::new("nats-server", std::env::temp_dir())
        .resolve_program()
        .is_ok();
    let configured = std::env::var_os("STN_TEST_NATS_SERVER").is_some();
    ensure!(
        on_path || configured,
        "`nats-server` was not found on PATH: install it with `apt-get install nats-server` (or set STN_TEST_NATS_SERVER)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_row_is_measured_against_a_real_server() {
        let rows = run_with(
            NatsPlan {
                warmup: 1,
                iterations: 3,
                concurrent_sessions: 4,
                tasks_per_session: 2,
                throughput_rounds: 1,
                memory_sessions: 8,
            },
            true,
        )
        .await
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "nats.round_trip",
                "nats.kv_put",
                "nats.throughput",
                "nats.rss_per_open_session",
                "nats.rss_per_session_after_task",
                "nats.rss_growth_per_task",
            ]
        );
        assert!(rows[0].ratio.unwrap() > 0.0);
        assert!(rows[2].suite.unwrap().median > 0.0);
    }
}
