//! Benchmark 3: the stream parsers of the CLI backends over a large transcript, versus parsing
//! the same lines into `serde_json::Value`.
//!
//! The transcript is made at run time by repeating a recorded run (`fixtures/*.jsonl`) with every
//! id (`ses_…`, `msg_…`, `prt_…`, `call_…`, `toolu_…`, UUIDs) changed per repetition, so no two
//! runs are alike. Each repetition is one task's output: the suite side gives it a fresh parser,
//! feeds it every line, and takes the parser's report, as the backends do per task.

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use regex::{Captures, Regex};
use serde_json::Value;

use crate::report::{BenchResult, Better};
use crate::stats::Stats;

const CLAUDE_SAMPLE: &str = include_str!("../fixtures/claude-fizzbuzz.jsonl");
const OPENCODE_SAMPLE: &str = include_str!("../fixtures/opencode-run-fizzbuzz.jsonl");

static IDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(ses|msg|prt|call|toolu|evt)_([A-Za-z0-9]{8,})|\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-)[0-9a-f]{12}\b")
        .expect("id pattern compiles")
});

/// The sample with every id made unique to repetition `k` (same lengths).
fn vary_ids(sample: &str, k: usize) -> String {
    IDS.replace_all(sample, |c: &Captures<'_>| {
        match (c.get(1), c.get(2), c.get(3)) {
            (Some(prefix), Some(id), _) => {
                let id = id.as_str();
                format!(
                    "{}_{}{:08}",
                    prefix.as_str(),
                    &id[..id.len() - 8],
                    k % 100_000_000
                )
            }
            (_, _, Some(uuid_head)) => format!("{}{:012x}", uuid_head.as_str(), k),
            _ => c[0].to_string(),
        }
    })
    .into_owned()
}

/// Repetitions of `sample` (one run each) until they add up to at least `bytes`.
fn transcript(sample: &str, bytes: usize) -> Vec<String> {
    let mut runs = Vec::new();
    let mut total = 0;
    while total < bytes {
        let run = vary_ids(sample, runs.len());
        total += run.len();
        runs.push(run);
    }
    runs
}

fn total_bytes(runs: &[String]) -> usize {
    runs.iter().map(String::len).sum()
}

/// The baseline: every line into a `serde_json::Value`.
fn parse_values(runs: &[String]) -> usize {
    let mut lines = 0;
    for run in runs {
        for line in run.lines() {
            let v: Value = serde_json::from_str(line).expect("the transcript is JSON");
            black_box(v);
            lines += 1;
        }
    }
    lines
}

/// `station_backend_claude::parser::StreamParser`, one per run, as the backend uses it.
fn parse_claude(runs: &[String]) -> usize {
    let mut events = 0;
    for run in runs {
        let mut parser = station_backend_claude::parser::StreamParser::new();
        for line in run.lines() {
            events += black_box(parser.push_line(line)).len();
        }
        events += black_box(parser.finish()).len();
        black_box(parser.report().outcome());
    }
    events
}

/// `station_backend_cli::stream::StreamParser`, one per run, as the backend uses it.
fn parse_opencode(runs: &[String]) -> usize {
    let mut events = 0;
    for run in runs {
        let mut parser = station_backend_cli::stream::StreamParser::new();
        for line in run.lines() {
            events += black_box(parser.push_line(line)).len();
        }
        black_box(parser.into_report());
    }
    events
}

/// Only the redaction the parsers do: the global redactor over every text of every line that
/// the parser passes through it (tool inputs are redacted as JSON values; their strings here).
fn redact_strings(runs: &[String]) -> usize {
    fn walk(v: &Value, n: &mut usize) {
        match v {
            Value::String(s) => {
                black_box(station_core::redact::redact(s));
                *n += 1;
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, n)),
            Value::Object(o) => o.values().for_each(|x| walk(x, n)),
            _ => {}
        }
    }
    let mut n = 0;
    for run in runs {
        for line in run.lines() {
            let v: Value = serde_json::from_str(line).expect("the transcript is JSON");
            walk(&v, &mut n);
        }
    }
    n
}

/// Sizes and rounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParsePlan {
    /// Transcript size per format.
    pub(crate) bytes: usize,
    /// Measured rounds (after one warm-up round) per side.
    pub(crate) repeats: usize,
}

/// Throughput in MB/s (10^6 bytes) of `work` over `runs`, `repeats` rounds, interleaved with the
/// baseline (alternating order).
fn throughput_pair(
    runs: &[String],
    repeats: usize,
    baseline: fn(&[String]) -> usize,
    subject: fn(&[String]) -> usize,
) -> (Vec<f64>, Vec<f64>) {
    let mb = total_bytes(runs) as f64 / 1e6;
    let timed = |f: fn(&[String]) -> usize| -> f64 {
        let start = Instant::now();
        black_box(f(runs));
        mb / start.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
    };
    timed(baseline);
    timed(subject);
    let (mut b, mut s) = (Vec::new(), Vec::new());
    for i in 0..repeats {
        if i % 2 == 0 {
            b.push(timed(baseline));
            s.push(timed(subject));
        } else {
            s.push(timed(subject));
            b.push(timed(baseline));
        }
    }
    (b, s)
}

/// Microseconds per call of `f` on `text`: `rounds` rounds of `calls` calls.
fn micros_per_call(text: &str, rounds: usize, calls: usize, f: fn(&str) -> String) -> Vec<f64> {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                black_box(f(black_box(text)));
            }
            start.elapsed().as_secs_f64() * 1e6 / calls as f64
        })
        .collect()
}

/// The text of the first tool result in the Claude sample (what Write answers).
fn claude_tool_result_text() -> String {
    CLAUDE_SAMPLE
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| {
            v.pointer("/message/content/0/content")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .expect("the Claude sample has a tool result")
}

fn redaction_rows(group: &str) -> Vec<BenchResult> {
    let text = claude_tool_result_text();
    let ascii = text.replace('\u{2014}', "-");
    let core = |t: &str| station_core::redact::redact(t);
    let (rounds, calls) = (15, 2000);
    // Interleaved so both see the same machine state.
    let mut with_dash = Vec::new();
    let mut without = Vec::new();
    for _ in 0..rounds {
        without.extend(micros_per_call(&ascii, 1, calls, core));
        with_dash.extend(micros_per_call(&text, 1, calls, core));
    }
    vec![
        BenchResult::compared(
            "redact.non_ascii",
            group,
            "redact() of a Claude tool result holding an em dash",
            "µs",
            Better::Lower,
            Stats::of(&with_dash),
            Stats::of(&without),
            "the same text with the em dash replaced by '-'",
        )
        .note(format!(
            "The text is the Write tool's result from the recorded run ({} bytes): \"{}\". \
             With Unicode `\\b` in the rules, any non-ASCII character sent the regex engine \
             off its lazy DFA to a backtracking engine for every search; the rules now use \
             ASCII `\\b`, and this row shows whether non-ASCII text still costs more.",
            text.len(),
            text
        )),
    ]
}

pub(crate) fn run(plan: ParsePlan) -> anyhow::Result<Vec<BenchResult>> {
    let group = "Stream parsing";
    let baseline_name = "serde_json::from_str::<serde_json::Value> on the same lines";
    let mut out = Vec::new();
    type Work = fn(&[String]) -> usize;
    for (id, name, sample, subject) in [
        (
            "parse.claude",
            "Claude stream-json (StreamParser)",
            CLAUDE_SAMPLE,
            parse_claude as Work,
        ),
        (
            "parse.opencode_run",
            "`opencode run` JSON lines (StreamParser)",
            OPENCODE_SAMPLE,
            parse_opencode as Work,
        ),
    ] {
        let runs = transcript(sample, plan.bytes);
        let size = total_bytes(&runs);
        let (b, s) = throughput_pair(&runs, plan.repeats, parse_values, subject);
        out.push(
            BenchResult::compared(
                id,
                group,
                name,
                "MB/s",
                Better::Higher,
                Stats::of(&s),
                Stats::of(&b),
                baseline_name,
            )
            .with_ratio_target(1.0, None)
            .note(format!(
                "{:.1} MB transcript: {} repetitions of the recorded run with fresh ids, one \
                 parser per repetition (as per task), report taken at the end of each. The \
                 parser reads each line into typed structs of only the fields it uses (strings \
                 borrowed, everything else skipped without allocating; tool inputs become \
                 Values), then redacts what it emits, builds events and the report.",
                size as f64 / 1e6,
                runs.len()
            )),
        );
        let (_, r) = throughput_pair(&runs, plan.repeats.min(3), parse_values, redact_strings);
        out.push(
            BenchResult::single(
                &format!("{id}.redact_all_strings"),
                group,
                &format!("{name}: Value parse + redact every string (diagnostic)"),
                "MB/s",
                Better::Higher,
                Stats::of(&r),
            )
            .note(
                "Diagnostic, not the suite: parse into Value and run the global redactor over \
                 every string in every line. Shows the cost of redaction if all text passed \
                 through it.",
            ),
        );
    }
    out.extend(redaction_rows(group));
    Ok(out)
}

/// Only the suite's parser for `format` (`claude` or `opencode`) over `bytes` of transcript,
/// `rounds` times: something to run under a profiler (`perf record`, `valgrind --tool=callgrind`).
pub(crate) fn profile(format: &str, bytes: usize, rounds: usize) -> anyhow::Result<()> {
    let (sample, parse): (&str, fn(&[String]) -> usize) = match format {
        "claude" => (CLAUDE_SAMPLE, parse_claude),
        "opencode" => (OPENCODE_SAMPLE, parse_opencode),
        other => anyhow::bail!("unknown format `{other}` (claude, opencode)"),
    };
    let start = Instant::now();
    let runs = transcript(sample, bytes);
    // Start the profiler after this (e.g. `perf record -D <ms>`): making the transcript is not
    // the parser's work.
    eprintln!("transcript made in {} ms", start.elapsed().as_millis());
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(parse(&runs));
    }
    eprintln!(
        "parsed {rounds} times in {} ms",
        start.elapsed().as_millis()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitions_differ_in_ids_only() {
        let a = vary_ids(OPENCODE_SAMPLE, 1);
        let b = vary_ids(OPENCODE_SAMPLE, 2);
        assert_ne!(a, b);
        assert_eq!(a.len(), OPENCODE_SAMPLE.len());
        assert!(!a.contains("ses_df5175ff4ffelu5fzSfjSvJu3x"), "{a}");
        let c = vary_ids(CLAUDE_SAMPLE, 7);
        assert!(!c.contains("f228dd03-2fcf-4ac5-9b4a-f320d8eae3f7"));
        assert!(c.contains("f228dd03-2fcf-4ac5-9b4a-000000000007"));
        for line in a.lines().chain(c.lines()) {
            serde_json::from_str::<Value>(line).unwrap();
        }
    }

    #[test]
    fn parsers_see_every_run() {
        let runs = transcript(CLAUDE_SAMPLE, 3 * CLAUDE_SAMPLE.len());
        assert_eq!(runs.len(), 3);
        assert_eq!(parse_values(&runs), 3 * CLAUDE_SAMPLE.lines().count());
        let per_run = parse_claude(&runs[..1]);
        assert!(per_run > 5, "{per_run}");
        assert_eq!(parse_claude(&runs), 3 * per_run);
        let runs = transcript(OPENCODE_SAMPLE, 2 * OPENCODE_SAMPLE.len());
        let per_run = parse_opencode(&runs[..1]);
        assert!(per_run > 5, "{per_run}");
        assert_eq!(parse_opencode(&runs), 2 * per_run);
    }
}
