//! Benchmark 7: N tasks at once on each local backend with the real agent and the scripted
//! model — `opencode run` per task, one managed `opencode serve` shared by all tasks, and
//! `claude -p` per task — each task writing one file. Reports the wall time until all N are
//! done and the peak proportional set size (PSS) of every process this one started (agents,
//! servers, their tool subprocesses), sampled every 50 ms. Not a comparison with a baseline:
//! which backend to pick when, with numbers (README's table is built from these rows).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use station_backend_claude::{ClaudeBackend, ClaudeConfig};
use station_backend_cli::{CliBackend, CliConfig};
use station_backend_http::{HttpBackend, ManagedServer, OpencodeConfig};
use station_core::{CodingBackend, OpenRequest, RunOptions, Task, start_task};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{
    CLAUDE_ENV_REMOVE, OPENCODE_ENV_REMOVE, OPENCODE_MODEL, claude_bin, claude_env, opencode_bin,
    opencode_env,
};

use crate::report::{BenchResult, Better};
use crate::stats::Stats;

const GROUP: &str = "Parallel tasks (real agents)";
const INSTRUCTION: &str = "Create out.txt containing parallel";
const CONTENT: &str = "parallel\n";
const TASK_DEADLINE: Duration = Duration::from_secs(600);
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct ParallelPlan {
    /// Numbers of tasks at once.
    pub(crate) counts: Vec<usize>,
    /// Repetitions per count.
    pub(crate) repeats: usize,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    OpencodeCli,
    OpencodeHttp,
    Claude,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::OpencodeCli, Kind::OpencodeHttp, Kind::Claude];

    fn id(self) -> &'static str {
        match self {
            Kind::OpencodeCli => "opencode_cli",
            Kind::OpencodeHttp => "opencode_http",
            Kind::Claude => "claudecode",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::OpencodeCli => "`opencode-cli` (one `opencode run` per task)",
            Kind::OpencodeHttp => "`opencode` (HTTP, one managed `opencode serve` for all)",
            Kind::Claude => "`claudecode` (one `claude -p` per task)",
        }
    }

    fn backend(
        self,
        home: &Path,
        base: &Path,
        model: &ScriptedModel,
    ) -> anyhow::Result<Arc<dyn CodingBackend>> {
        let remove = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ok(match self {
            Kind::OpencodeCli => Arc::new(
                CliBackend::new(CliConfig {
                    binary: opencode_bin().to_string_lossy().into_owned(),
                    timeout_sec: TASK_DEADLINE.as_secs(),
                    model: Some(OPENCODE_MODEL.into()),
                })
                .with_env(opencode_env(home, model))
                .with_env_remove(remove(OPENCODE_ENV_REMOVE))
                .with_workspace_base(base.to_path_buf()),
            ),
            Kind::OpencodeHttp => Arc::new(
                HttpBackend::from_opencode(
                    OpencodeConfig {
                        url: "http://127.0.0.1:9".into(),
                        model: Some(OPENCODE_MODEL.into()),
                        managed: ManagedServer::Always,
                        binary: opencode_bin().to_string_lossy().into_owned(),
                        ..Default::default()
                    },
                    3,
                    TASK_DEADLINE,
                )?
                .with_env(opencode_env(home, model))
                .with_workspace_base(base.to_path_buf()),
            ),
            Kind::Claude => Arc::new(
                ClaudeBackend::new(ClaudeConfig {
                    binary: claude_bin().to_string_lossy().into_owned(),
                    timeout_sec: TASK_DEADLINE.as_secs(),
                    ..ClaudeConfig::default()
                })
                .with_env(claude_env(home, model))
                .with_env_remove(remove(CLAUDE_ENV_REMOVE))
                .with_workspace_base(base.to_path_buf()),
            ),
        })
    }
}

pub(crate) async fn run(plan: ParallelPlan) -> anyhow::Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    for kind in Kind::ALL {
        let script = Script::new().on(
            "out.txt",
            vec![
                Step::write("out.txt", CONTENT),
                Step::text("Wrote out.txt."),
            ],
        );
        let model = ScriptedModel::start(script).await?;
        let root = tempfile::tempdir()?;
        let backend = kind.backend(&root.path().join("home"), &root.path().join("base"), &model)?;
        // Warm-up: first start (OpenCode's database, a managed server), not measured.
        batch(&backend, &root.path().join("warmup"), 1)
            .await
            .context("warm-up")?;
        for &n in &plan.counts {
            let (mut walls, mut peaks) = (Vec::new(), Vec::new());
            for rep in 0..plan.repeats {
                let dir = root.path().join(format!("n{n}-{rep}"));
                let sampler = PeakSampler::start();
                let started = Instant::now();
                batch(&backend, &dir, n)
                    .await
                    .with_context(|| format!("{} with {n} at once", kind.id()))?;
                walls.push(started.elapsed().as_secs_f64() * 1000.0);
                peaks.push(sampler.stop().await as f64 / 1024.0);
            }
            eprintln!(
                "   {} × {n}: {:.0} ms, {:.0} MiB",
                kind.id(),
                median(&walls),
                median(&peaks)
            );
            let id = format!("parallel.{}.{n}", kind.id());
            let first = n == plan.counts[0];
            let wall = BenchResult::single(
                &format!("{id}.wall"),
                GROUP,
                &format!(
                    "{}: {n} at once, wall time until all are done",
                    kind.label()
                ),
                "ms",
                Better::Lower,
                Stats::of(&walls),
            );
            results.push(if !first {
                wall
            } else {
                wall.note(format!(
                    "n = {} runs of {n} tasks at once, each `{INSTRUCTION}` in its own new \
                     session and workspace, after one unmeasured warm-up task on the same \
                     backend (first start). Real agent, scripted model on 127.0.0.1 (two model \
                     calls per task: the write, then the final text).",
                    plan.repeats
                ))
            });
            let pss = BenchResult::single(
                &format!("{id}.pss"),
                GROUP,
                &format!(
                    "{}: {n} at once, peak memory of all processes (PSS)",
                    kind.label()
                ),
                "MiB",
                Better::Lower,
                Stats::of(&peaks),
            );
            results.push(if !first {
                pss
            } else {
                pss.note(
                    "Peak over the run of the summed `Pss` (/proc/PID/smaps_rollup) of every \
                     process descended from the benchmark, sampled every 50 ms: agents, the \
                     managed server, their tool subprocesses; the benchmark process itself \
                     (suite + scripted model) is not counted.",
                )
            });
        }
        drop(backend);
        drop(model);
    }
    Ok(results)
}

/// Run `n` tasks at once in new sessions under `dir`; every one must write its file.
async fn batch(backend: &Arc<dyn CodingBackend>, dir: &Path, n: usize) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for i in 0..n {
        let ws = dir.join(format!("ws{i}"));
        std::fs::create_dir_all(&ws)?;
        let backend = backend.clone();
        runs.push(tokio::spawn(async move {
            let session = backend
                .open(OpenRequest {
                    workspace: Some(ws.clone()),
                    ..Default::default()
                })
                .await?;
            let outcome = start_task(
                backend,
                session,
                Task::new(INSTRUCTION),
                &RunOptions {
                    default_timeout: TASK_DEADLINE,
                    ..RunOptions::default()
                },
            )
            .follow(|_| {})
            .await?;
            anyhow::Ok((ws, outcome))
        }));
    }
    for run in runs {
        let (ws, outcome) = run.await??;
        if !outcome.success {
            bail!("a task failed: {:?}", outcome.error);
        }
        let written = std::fs::read_to_string(ws.join("out.txt")).unwrap_or_default();
        if written != CONTENT {
            bail!("{} holds {written:?}", ws.join("out.txt").display());
        }
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    Stats::of(values).map(|s| s.median).unwrap_or(f64::NAN)
}

/// Samples the summed PSS of all descendants of this process until stopped.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakSampler {
    fn start() -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, peak_kib) = (stop.clone(), peak_kib.clone());
            tokio::task::spawn_blocking(move || {
                let me = std::process::id();
                while !stop.load(Ordering::Relaxed) {
                    let total: u64 = descendants(me).into_iter().filter_map(pss_kib).sum();
                    peak_kib.fetch_max(total, Ordering::Relaxed);
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        PeakSampler {
            stop,
            peak_kib,
            task,
        }
    }

    /// The peak in KiB.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// Every live process below `root` (children, their children, …).
fn descendants(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for child in station_testkit::process::live_children_of(pid) {
            if found.len() < 10_000 && !found.contains(&child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// `Pss:` of `/proc/PID/smaps_rollup`, in KiB (gone or unreadable: none).
fn pss_kib(pid: u32) -> Option<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/smaps_rollup"));
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
