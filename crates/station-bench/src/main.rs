//! `station-bench`: measures what the Station suite adds to the work it delegates.
//!
//! Every benchmark runs the suite and a baseline that does the same work without it, in the same
//! process, interleaved, after a warm-up; the result is a table (median, min, max, ratio, target,
//! met?) written to `BENCHMARKS.md` and `results.json`. Run it in release mode:
//!
//! ```sh
//! cargo run --release -p station-bench -- --markdown BENCHMARKS.md
//! ```
#![allow(
    clippy::print_stdout,
    reason = "a benchmark binary prints its table and where it wrote it"
)]

mod args;
mod blocks;
mod cli;
mod http;
mod nats;
mod nats_soak;
mod parallel;
mod parse;
mod report;
mod startup;
mod stats;
mod ui;
mod workspaces;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::args::{Args, Bench};
use crate::report::{Machine, Report};

/// The workspace root (this crate is `crates/station-bench`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives in <root>/crates/station-bench")
        .to_path_buf()
}

/// `$CARGO_TARGET_DIR`, else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(std::env::args_os().skip(1))?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: station-bench was built without optimisations; run it with `cargo run --release -p station-bench`"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(url) = &args.nats_worker {
        return runtime.block_on(async { tokio::spawn(nats::worker_process(url.clone())).await? });
    }
    if let Some(side) = args.profile_http.clone() {
        return runtime
            .block_on(async { tokio::spawn(http::profile(side == "suite", 3000)).await? });
    }
    if let Some(format) = &args.profile_parser {
        return parse::profile(format, 50 << 20, 3);
    }
    if !args.workspace_peak.is_empty() {
        return runtime.block_on(async {
            tokio::spawn(async move { workspaces::print_peak(&args.workspace_peak).await }).await?
        });
    }
    if !args.peak_rss_of.is_empty() {
        return runtime.block_on(startup::print_peak_rss_of(&args.peak_rss_of));
    }
    // On a worker thread, like the code of an application built on the suite (on the thread
    // that calls block_on, every wake-up from a worker would be a cross-thread unpark).
    runtime.block_on(async { tokio::spawn(run(args)).await? })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = repo_root();
    let target = target_dir(&root);
    let wants = |b: Bench| args.only.is_empty() || args.only.contains(&b);
    let quick = args.quick;
    let mut results = Vec::new();

    if wants(Bench::Startup) {
        eprintln!("== stn start-up");
        let stn = match &args.stn {
            Some(p) => p.clone(),
            None => startup::build_stn(&root, &target).await?,
        };
        results.extend(
            startup::run(&stn, &root, if quick { 5 } else { 30 })
                .await
                .context("stn start-up")?,
        );
    }
    if wants(Bench::Blocks) {
        eprintln!("== building blocks");
        let (warmup, iterations) = if quick { (20, 200) } else { (200, 2000) };
        results.extend(
            blocks::run(warmup, iterations)
                .await
                .context("building blocks")?,
        );
    }
    if wants(Bench::Http) {
        eprintln!("== HTTP backend");
        let plan = if quick {
            http::HttpPlan {
                warmup: 2,
                default_iterations: 3,
                iterations: 20,
            }
        } else {
            http::HttpPlan {
                warmup: 20,
                default_iterations: 20,
                iterations: 1000,
            }
        };
        results.extend(http::run(plan).await.context("HTTP benchmark")?);
    }
    if wants(Bench::Nats) {
        eprintln!("== NATS backend");
        let plan = if quick {
            nats::NatsPlan {
                warmup: 5,
                iterations: 30,
                concurrent_sessions: 100,
                tasks_per_session: 2,
                throughput_rounds: 1,
                memory_sessions: 200,
            }
        } else {
            nats::NatsPlan {
                warmup: 30,
                iterations: 300,
                concurrent_sessions: 100,
                tasks_per_session: 10,
                throughput_rounds: 3,
                memory_sessions: 1000,
            }
        };
        results.extend(nats::run(plan).await.context("NATS benchmark")?);
        eprintln!("== NATS soak (3-node cluster, one node restarted)");
        let soak = nats_soak::SoakPlan {
            sessions: 50,
            tasks: 1000,
        };
        results.extend(nats_soak::run(soak).await.context("NATS soak")?);
    }
    if wants(Bench::Parse) {
        eprintln!("== stream parsing");
        let plan = if quick {
            parse::ParsePlan {
                bytes: 4 << 20,
                repeats: 3,
            }
        } else {
            parse::ParsePlan {
                bytes: 50 << 20,
                repeats: 7,
            }
        };
        results.extend(parse::run(plan).context("parse benchmark")?);
    }
    if wants(Bench::Cli) {
        eprintln!("== CLI backends");
        let plan = if quick {
            cli::CliPlan {
                warmup: 2,
                iterations: 10,
            }
        } else {
            cli::CliPlan {
                warmup: 10,
                iterations: 200,
            }
        };
        results.extend(cli::run(plan).await.context("CLI benchmark")?);
    }

    if wants(Bench::Parallel) {
        eprintln!("== parallel tasks on the real agents");
        let plan = if quick {
            parallel::ParallelPlan {
                counts: vec![1, 2],
                repeats: 1,
            }
        } else {
            parallel::ParallelPlan {
                counts: vec![1, 2, 4, 8],
                repeats: 3,
            }
        };
        results.extend(parallel::run(plan).await.context("parallel benchmark")?);
    }

    if wants(Bench::Ui) {
        eprintln!("== stn ui page load");
        let plan = if quick {
            ui::UiPlan {
                sessions: 1000,
                warmup: 2,
                iterations: 10,
            }
        } else {
            ui::UiPlan {
                sessions: 1000,
                warmup: 10,
                iterations: 100,
            }
        };
        results.extend(ui::run(plan).await.context("UI benchmark")?);
    }

    if wants(Bench::Workspaces) {
        eprintln!("== workspaces (change tracking on large generated repositories)");
        let plan = if quick {
            workspaces::quick_plan()
        } else {
            workspaces::WorkspacesPlan::full()
        };
        results.extend(
            workspaces::run(plan)
                .await
                .context("workspaces benchmark")?,
        );
    }

    // The table in the order of the issue; building blocks last.
    let order = [
        "HTTP backend",
        "NATS backend",
        "Stream parsing",
        "CLI backends",
        "Parallel tasks (real agents)",
        "stn ui",
        "Workspaces",
        "stn start-up",
        "Building blocks",
    ];
    results.sort_by_key(|r| {
        order
            .iter()
            .position(|g| *g == r.group)
            .unwrap_or(order.len())
    });
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target.join("bench").join("results.json"));
    let report = Report {
        json_path: json_path
            .strip_prefix(&root)
            .unwrap_or(&json_path)
            .display()
            .to_string(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: reproduce_command(&args),
        harness: "hand-written, not criterion (crates/station-bench/src/stats.rs): a warm-up, \
                  then N iterations of suite and baseline interleaved, alternating which goes \
                  first, all on one multi-threaded tokio runtime (2 worker threads on 2 cores) \
                  with the measured code on a worker thread; median, min and max per series \
                  here, p10/p90/mean too in the JSON. Parser throughput is bytes / wall time of \
                  a whole pass. Profile a parser with \
                  `perf record -D 1000 <target>/release/station-bench --profile-parser claude` \
                  (or `opencode`; it prints when the transcript is made), one side of the HTTP \
                  benchmark with `--profile-http suite` (or `raw`)."
            .into(),
        total_seconds: started.elapsed().as_secs_f64(),
        machine: Machine::read(&root).await,
        results,
    };
    write(&json_path, &report.to_json())?;
    let markdown = report.to_markdown();
    if let Some(md) = &args.markdown {
        write(md, &markdown)?;
    }
    println!("{markdown}");
    eprintln!("wrote {}", json_path.display());
    if let Some(md) = &args.markdown {
        eprintln!("wrote {}", md.display());
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The command that reproduces this run.
fn reproduce_command(args: &Args) -> String {
    let mut cmd = String::from("cargo run --release -p station-bench --");
    if !args.only.is_empty() {
        let names: Vec<String> = args.only.iter().map(|b| b.name().to_string()).collect();
        cmd.push_str(&format!(" --only {}", names.join(",")));
    }
    if args.quick {
        cmd.push_str(" --quick");
    }
    if args.markdown.is_some() {
        cmd.push_str(" --markdown BENCHMARKS.md");
    }
    format!("# from the repository root (what `cargo xtask bench` runs)\n{cmd}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reproduce_command_repeats_the_flags() {
        let a = Args::parse_from([
            "--only",
            "http,parse",
            "--quick",
            "--markdown",
            "BENCHMARKS.md",
        ])
        .unwrap();
        assert!(
            reproduce_command(&a).contains("--only http,parse --quick --markdown BENCHMARKS.md")
        );
    }
}
