//! Results, the machine they were measured on, and how they are written (JSON and Markdown).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use station_core::process::CommandSpec;

use crate::stats::{Paired, Stats};

/// Which way a number is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Better {
    /// Times, memory: less is better; the ratio is suite / baseline.
    Lower,
    /// Throughput: more is better; the ratio is suite / baseline too (≥ 1 means as fast).
    Higher,
}

/// A target and whether the measurement met it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Target {
    /// As written in the table, e.g. `≤ 1.10× and ≤ 0.5 ms added`.
    pub(crate) text: String,
    pub(crate) met: bool,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BenchResult {
    /// Stable id, e.g. `http.task.default`.
    pub(crate) id: String,
    /// Section, e.g. `HTTP backend`.
    pub(crate) group: String,
    /// What was measured.
    pub(crate) name: String,
    /// Unit of the statistics (`ms`, `MB/s`, `tasks/s`, `KiB`).
    pub(crate) unit: String,
    pub(crate) better: Better,
    /// The suite.
    pub(crate) suite: Option<Stats>,
    /// The same work without the suite (absent where there is none).
    pub(crate) baseline: Option<Stats>,
    /// What the baseline is.
    pub(crate) baseline_name: Option<String>,
    /// Suite median / baseline median.
    pub(crate) ratio: Option<f64>,
    /// Suite median − baseline median, in `unit`.
    pub(crate) added: Option<f64>,
    pub(crate) target: Option<Target>,
    /// What limits it, how it was measured.
    pub(crate) notes: Vec<String>,
    /// CPU time and context switches per iteration, suite and baseline (timed rows).
    pub(crate) usage: Option<String>,
}

impl BenchResult {
    /// A row without a baseline.
    pub(crate) fn single(
        id: &str,
        group: &str,
        name: &str,
        unit: &str,
        better: Better,
        suite: Option<Stats>,
    ) -> BenchResult {
        BenchResult {
            id: id.into(),
            group: group.into(),
            name: name.into(),
            unit: unit.into(),
            better,
            suite,
            baseline: None,
            baseline_name: None,
            ratio: None,
            added: None,
            target: None,
            notes: Vec::new(),
            usage: None,
        }
    }

    /// A row comparing the suite with a baseline.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compared(
        id: &str,
        group: &str,
        name: &str,
        unit: &str,
        better: Better,
        suite: Option<Stats>,
        baseline: Option<Stats>,
        baseline_name: &str,
    ) -> BenchResult {
        let ratio = match (suite, baseline) {
            (Some(s), Some(b)) if b.median > 0.0 => Some(s.median / b.median),
            _ => None,
        };
        let added = match (suite, baseline) {
            (Some(s), Some(b)) => Some(s.median - b.median),
            _ => None,
        };
        BenchResult {
            baseline,
            baseline_name: Some(baseline_name.into()),
            ratio,
            added,
            ..BenchResult::single(id, group, name, unit, better, suite)
        }
    }

    /// A timed A/B comparison in milliseconds.
    pub(crate) fn timed(
        id: &str,
        group: &str,
        name: &str,
        paired: &Paired,
        baseline_name: &str,
    ) -> BenchResult {
        BenchResult::compared(
            id,
            group,
            name,
            "ms",
            Better::Lower,
            Stats::of_millis(&paired.subject),
            Stats::of_millis(&paired.baseline),
            baseline_name,
        )
        .with_usage(paired.usage_note())
    }

    fn with_usage(mut self, usage: String) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Target: suite/baseline ratio at most `max_ratio` (times) or at least it (throughput),
    /// and, when given, at most `max_added` more of the unit at p50.
    pub(crate) fn with_ratio_target(mut self, max_ratio: f64, max_added: Option<f64>) -> Self {
        let (ratio_text, ratio_met) = match self.better {
            Better::Lower => (
                format!("≤ {max_ratio:.2}×"),
                self.ratio.is_some_and(|r| r <= max_ratio),
            ),
            Better::Higher => (
                format!("≥ {max_ratio:.2}× baseline"),
                self.ratio.is_some_and(|r| r >= max_ratio),
            ),
        };
        let (text, met) = match max_added {
            Some(max) => (
                format!("{ratio_text} and ≤ {max} {} added", self.unit),
                ratio_met && self.added.is_some_and(|a| a <= max),
            ),
            None => (ratio_text, ratio_met),
        };
        self.target = Some(Target { text, met });
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// What the numbers were measured on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) memory_total_kib: Option<u64>,
    pub(crate) cpu_model: Option<String>,
    pub(crate) rustc: Option<String>,
    pub(crate) kernel: Option<String>,
    pub(crate) git_commit: Option<String>,
}

impl Machine {
    pub(crate) async fn read(repo: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_total_kib: proc_field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse().ok()),
            cpu_model: proc_field(&cpuinfo, "model name"),
            rustc: first_line(CommandSpec::new("rustc", repo).arg("--version")).await,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
            git_commit: first_line(CommandSpec::new("git", repo).args(["rev-parse", "HEAD"])).await,
        }
    }
}

/// `key : value` from a /proc file.
fn proc_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

async fn first_line(spec: CommandSpec) -> Option<String> {
    let out = spec.output(Duration::from_secs(20), None).await.ok()?;
    out.lines()
        .next()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) generated_at: String,
    pub(crate) command: String,
    pub(crate) harness: String,
    /// Where the JSON results were written (relative to the repository root when inside it).
    pub(crate) json_path: String,
    pub(crate) total_seconds: f64,
    pub(crate) machine: Machine,
    pub(crate) results: Vec<BenchResult>,
}

impl Report {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    pub(crate) fn to_markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let unknown = || "unknown".to_string();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Generated by `station-bench` (crates/station-bench) on {}; do not edit by hand. \
             Every number below was measured in this run; each ratio compares the suite with a \
             baseline doing the same work without it, measured in the same process, interleaved \
             (A/B, alternating order) after a warm-up.\n",
            self.generated_at
        );
        let _ = writeln!(md, "## Machine\n");
        let _ = writeln!(md, "| | |\n| --- | --- |");
        let _ = writeln!(md, "| CPUs (nproc) | {} |", m.nproc);
        let _ = writeln!(
            md,
            "| Memory | {} |",
            m.memory_total_kib
                .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
                .unwrap_or_else(unknown)
        );
        let _ = writeln!(
            md,
            "| CPU model | {} |",
            m.cpu_model.clone().unwrap_or_else(unknown)
        );
        let _ = writeln!(
            md,
            "| rustc | {} |",
            m.rustc.clone().unwrap_or_else(unknown)
        );
        let _ = writeln!(
            md,
            "| Kernel | {} |",
            m.kernel.clone().unwrap_or_else(unknown)
        );
        let _ = writeln!(
            md,
            "| Commit | {} |",
            m.git_commit.clone().unwrap_or_else(unknown)
        );
        let _ = writeln!(md, "| Whole run | {:.0} s |\n", self.total_seconds);
        let _ = writeln!(md, "## How to reproduce\n");
        let _ = writeln!(
            md,
            "```sh\n{}\n```\n\nNeeds `nats-server` on PATH (`apt-get install nats-server`) and \
             `/usr/bin/time` for peak memory (else a getrusage helper is used). The same numbers \
             as JSON: `{}`.\n\nHarness: {}\n",
            self.command, self.json_path, self.harness
        );
        let _ = writeln!(md, "## Results\n");
        let _ = writeln!(
            md,
            "| Benchmark | Unit | Suite median | min | max | Baseline median | min | max | Ratio | Added (p50) | Target | Met? |"
        );
        let _ = writeln!(
            md,
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
        );
        for r in &self.results {
            let (s, b) = (r.suite, r.baseline);
            let cell = |st: Option<Stats>, f: fn(&Stats) -> f64| {
                st.map(|st| fmt_num(f(&st))).unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                md,
                "| {}: {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.group,
                r.name,
                r.unit,
                cell(s, |x| x.median),
                cell(s, |x| x.min),
                cell(s, |x| x.max),
                cell(b, |x| x.median),
                cell(b, |x| x.min),
                cell(b, |x| x.max),
                r.ratio
                    .map(|x| format!("{x:.3}×"))
                    .unwrap_or_else(|| "–".into()),
                r.added.map(fmt_signed).unwrap_or_else(|| "–".into()),
                r.target
                    .as_ref()
                    .map(|t| t.text.clone())
                    .unwrap_or_else(|| "report only".into()),
                match &r.target {
                    Some(t) if t.met => "yes",
                    Some(_) => "**no**",
                    None => "–",
                }
            );
        }
        let _ = writeln!(md, "\n## Notes\n");
        for r in &self.results {
            let baseline = r
                .baseline_name
                .as_deref()
                .map(|b| format!(" Baseline: {b}."))
                .unwrap_or_default();
            let n = r.suite.map(|s| s.n).unwrap_or(0);
            let usage = r
                .usage
                .as_deref()
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "- **{}: {}** (`{}`, n = {n}).{baseline} {}{usage}",
                r.group,
                r.name,
                r.id,
                r.notes.join(" ")
            );
        }
        md
    }
}

/// Three significant digits, without an exponent.
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_signed(x: f64) -> String {
    if x >= 0.0 {
        format!("+{}", fmt_num(x))
    } else {
        fmt_num(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(median: f64) -> Option<Stats> {
        Stats::of(&[median])
    }

    #[test]
    fn targets_are_judged_on_the_measured_numbers() {
        let r = BenchResult::compared(
            "a",
            "G",
            "n",
            "ms",
            Better::Lower,
            stats(1.2),
            stats(1.0),
            "raw",
        )
        .with_ratio_target(1.10, Some(0.5));
        assert!((r.ratio.unwrap() - 1.2).abs() < 1e-9);
        assert!(!r.target.as_ref().unwrap().met);
        let r = BenchResult::compared(
            "b",
            "G",
            "n",
            "ms",
            Better::Lower,
            stats(10.3),
            stats(10.0),
            "raw",
        )
        .with_ratio_target(1.10, Some(0.5));
        assert!(r.target.as_ref().unwrap().met);
        let r = BenchResult::compared(
            "c",
            "G",
            "n",
            "MB/s",
            Better::Higher,
            stats(90.0),
            stats(100.0),
            "raw",
        )
        .with_ratio_target(1.0, None);
        assert!(!r.target.as_ref().unwrap().met);
    }

    #[test]
    fn markdown_has_a_row_per_result_and_the_machine() {
        let report = Report {
            generated_at: "now".into(),
            command: "cargo xtask bench".into(),
            harness: "hand-written".into(),
            json_path: "target/bench/results.json".into(),
            total_seconds: 1.0,
            machine: Machine {
                nproc: 2,
                memory_total_kib: Some(24 * 1024 * 1024),
                cpu_model: Some("Test CPU".into()),
                rustc: Some("rustc 1.95.0".into()),
                kernel: None,
                git_commit: None,
            },
            results: vec![
                BenchResult::compared(
                    "x.y",
                    "HTTP backend",
                    "one task",
                    "ms",
                    Better::Lower,
                    stats(2.0),
                    stats(1.0),
                    "raw",
                )
                .with_ratio_target(1.1, None),
            ],
        };
        let md = report.to_markdown();
        assert!(md.contains("| CPUs (nproc) | 2 |"), "{md}");
        assert!(md.contains("24.0 GiB"), "{md}");
        assert!(
            md.contains("| HTTP backend: one task | ms | 2.00 |"),
            "{md}"
        );
        assert!(md.contains("2.000×"), "{md}");
        assert!(md.contains("**no**"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["results"][0]["ratio"], 2.0);
        assert_eq!(json["machine"]["nproc"], 2);
    }
}
