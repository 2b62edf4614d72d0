//! Benchmark 5: `stn` start-up: wall time and peak memory of `stn --version` and
//! `stn agent validate <fixture>`, with `true` as the floor (what spawning any process costs).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use station_core::process::CommandSpec;

use crate::report::{BenchResult, Better};
use crate::stats::Stats;

/// Where `GNU time` usually is; `-f %M` prints the peak RSS in KiB.
const GNU_TIME: &str = "/usr/bin/time";
/// A fixture agent from station-core's test data.
const AGENT_FIXTURE: &str = "crates/station-core/testdata/agents/good/code-assistant.prompt";

/// `cargo build --release -p station-cli` into `target`; the path of `stn`.
pub(crate) async fn build_stn(root: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "building stn: {cargo} build --release -p station-cli (target {})",
        target.display()
    );
    CommandSpec::new(cargo, root)
        .args(["build", "--release", "-p", "station-cli"])
        .env("CARGO_TARGET_DIR", target)
        .output(Duration::from_secs(3600), None)
        .await
        .context("building stn")?;
    let stn = target.join("release").join("stn");
    ensure!(stn.is_file(), "{} was not built", stn.display());
    Ok(stn)
}

/// One command to time.
struct Probe {
    name: &'static str,
    id: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

fn spec(probe: &Probe, cwd: &Path, home: &Path) -> CommandSpec {
    CommandSpec::new(&probe.program, cwd)
        .args(&probe.args)
        // No user config or state leaks in, and none is left behind.
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env_remove("RUST_LOG")
}

/// Wall time of one run: spawn, read stdout to the end, reap.
async fn wall(spec: &CommandSpec) -> anyhow::Result<Duration> {
    let start = Instant::now();
    spec.output(Duration::from_secs(60), None).await?;
    Ok(start.elapsed())
}

/// How peak memory is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RssMethod {
    /// `/usr/bin/time -f %M`.
    GnuTime,
    /// This binary re-run as `--peak-rss-of PROGRAM ARGS...`: it spawns the program as its only
    /// child and reports `getrusage(RUSAGE_CHILDREN).ru_maxrss` (what wait4 gives GNU time).
    SelfRusage,
}

impl RssMethod {
    fn pick() -> RssMethod {
        if Path::new(GNU_TIME).is_file() {
            RssMethod::GnuTime
        } else {
            RssMethod::SelfRusage
        }
    }

    fn describe(self) -> &'static str {
        match self {
            RssMethod::GnuTime => {
                "Peak resident set size from `/usr/bin/time -f %M` (wait4 rusage)."
            }
            RssMethod::SelfRusage => {
                "Peak resident set size from getrusage(RUSAGE_CHILDREN) in a helper process whose \
                 only child is the command (GNU time is not installed)."
            }
        }
    }
}

/// Peak RSS in KiB of one run.
async fn peak_rss_kib(
    method: RssMethod,
    probe: &Probe,
    cwd: &Path,
    home: &Path,
) -> anyhow::Result<u64> {
    let (wrapper, mut args) = match method {
        RssMethod::GnuTime => (
            PathBuf::from(GNU_TIME),
            vec!["-f".to_string(), "%M".to_string()],
        ),
        RssMethod::SelfRusage => (std::env::current_exe()?, vec!["--peak-rss-of".to_string()]),
    };
    args.push(probe.program.to_string_lossy().into_owned());
    args.extend(probe.args.iter().cloned());
    let wrapped = Probe {
        name: probe.name,
        id: probe.id,
        program: wrapper,
        args,
    };
    let mut child = spec(&wrapped, cwd, home).spawn()?;
    let mut stdout = child.take_stdout().context("stdout is piped")?;
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out).await?;
    let status = child.wait().await?;
    let stderr = child.final_stderr_tail().await;
    ensure!(status.success(), "{} failed: {stderr}", probe.name);
    let report = match method {
        RssMethod::GnuTime => stderr.clone(),
        RssMethod::SelfRusage => String::from_utf8_lossy(&out).into_owned(),
    };
    report
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| {
            format!(
                "no peak RSS in the output of {}: {report}",
                wrapped.program.display()
            )
        })
}

/// The helper side of [`RssMethod::SelfRusage`]: run `command` (stdout discarded) and print the
/// peak RSS of this process's children in KiB.
pub(crate) async fn print_peak_rss_of(command: &[String]) -> anyhow::Result<()> {
    let (program, args) = command.split_first().context("no command given")?;
    let cwd = std::env::current_dir()?;
    CommandSpec::new(program, cwd)
        .args(args)
        .output(Duration::from_secs(60), None)
        .await?;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    // Linux reports ru_maxrss in KiB.
    println!("{}", usage.max_rss());
    Ok(())
}

pub(crate) async fn run(
    stn: &Path,
    root: &Path,
    iterations: usize,
) -> anyhow::Result<Vec<BenchResult>> {
    let fixture = root.join(AGENT_FIXTURE);
    ensure!(fixture.is_file(), "missing fixture {}", fixture.display());
    let home = tempfile::tempdir()?;
    let cwd = tempfile::tempdir()?;
    let true_bin = CommandSpec::new("true", cwd.path())
        .resolve_program()
        .context("`true` is not on PATH")?;
    let probes = [
        Probe {
            name: "`true` (floor: spawning any process)",
            id: "true",
            program: true_bin,
            args: vec![],
        },
        Probe {
            name: "`stn --version`",
            id: "version",
            program: stn.to_path_buf(),
            args: vec!["--version".into()],
        },
        Probe {
            name: "`stn agent validate <fixture agent>`",
            id: "agent_validate",
            program: stn.to_path_buf(),
            args: vec![
                "agent".into(),
                "validate".into(),
                fixture.to_string_lossy().into_owned(),
            ],
        },
    ];
    let specs: Vec<CommandSpec> = probes
        .iter()
        .map(|p| spec(p, cwd.path(), home.path()))
        .collect();
    for (p, s) in probes.iter().zip(&specs) {
        // Fails loudly (with stderr) if the command does not work at all.
        s.output(Duration::from_secs(60), None)
            .await
            .with_context(|| format!("running {}", p.name))?;
    }
    // Interleaved rounds: drift hits every probe alike.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); probes.len()];
    for _ in 0..iterations {
        for (i, s) in specs.iter().enumerate() {
            times[i].push(wall(s).await?);
        }
    }
    let method = RssMethod::pick();
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); probes.len()];
    for _ in 0..iterations.clamp(1, 5) {
        for (i, p) in probes.iter().enumerate() {
            rss[i].push(peak_rss_kib(method, p, cwd.path(), home.path()).await? as f64);
        }
    }
    let group = "stn start-up";
    let mut out = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let floor = Stats::of_millis(&times[0]);
        let wall = Stats::of_millis(&times[i]);
        let row = if i == 0 {
            BenchResult::single(
                &format!("startup.{}.wall", p.id),
                group,
                &format!("{} wall time", p.name),
                "ms",
                Better::Lower,
                wall,
            )
        } else {
            BenchResult::compared(
                &format!("startup.{}.wall", p.id),
                group,
                &format!("{} wall time", p.name),
                "ms",
                Better::Lower,
                wall,
                floor,
                "`true`",
            )
        };
        out.push(row.note(
            "Spawned with CommandSpec (own process group, piped stdout/stderr), stdout read to \
             the end, exit reaped; HOME and XDG dirs point at an empty temporary directory.",
        ));
        let row = BenchResult::single(
            &format!("startup.{}.peak_rss", p.id),
            group,
            &format!("{} peak RSS", p.name),
            "KiB",
            Better::Lower,
            Stats::of(&rss[i]),
        );
        out.push(row.note(method.describe()));
    }
    Ok(out)
}
