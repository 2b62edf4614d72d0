//! The harness's command line (lexopt: only `stn` uses clap, by the workspace's rules).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Measure what the Station suite adds to the work it delegates.
#[derive(Debug, Default)]
pub(crate) struct Args {
    /// Benchmarks to run (default: all).
    pub(crate) only: Vec<Bench>,
    /// Fewer iterations and a smaller transcript: a smoke run, not for publishing.
    pub(crate) quick: bool,
    /// Where to write the JSON results (default: <target dir>/bench/results.json).
    pub(crate) json: Option<PathBuf>,
    /// Also write the Markdown table here (e.g. BENCHMARKS.md).
    pub(crate) markdown: Option<PathBuf>,
    /// The `stn` binary to time (default: a release build of station-cli).
    pub(crate) stn: Option<PathBuf>,
    /// Profiling: run only the stream parser for this format (claude, opencode).
    pub(crate) profile_parser: Option<String>,
    /// Profiling: run only one side of the HTTP benchmark (suite or raw).
    pub(crate) profile_http: Option<String>,
    /// Internal: run the NATS benchmark's worker process against this server URL.
    pub(crate) nats_worker: Option<String>,
    /// Internal: run this command and print the peak RSS of its process tree (KiB).
    pub(crate) peak_rss_of: Vec<String>,
    /// Internal: run one task of the workspaces benchmark and print this process's peak RSS.
    pub(crate) workspace_peak: Vec<String>,
}

/// One benchmark group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bench {
    Blocks,
    Http,
    Nats,
    Parse,
    Cli,
    Startup,
    Parallel,
    Ui,
    Workspaces,
}

impl Bench {
    const ALL: [(Bench, &'static str); 9] = [
        (Bench::Blocks, "blocks"),
        (Bench::Http, "http"),
        (Bench::Nats, "nats"),
        (Bench::Parse, "parse"),
        (Bench::Cli, "cli"),
        (Bench::Startup, "startup"),
        (Bench::Parallel, "parallel"),
        (Bench::Ui, "ui"),
        (Bench::Workspaces, "workspaces"),
    ];

    pub(crate) fn name(self) -> &'static str {
        Bench::ALL
            .iter()
            .find(|(b, _)| *b == self)
            .map(|(_, n)| *n)
            .expect("every bench has a name")
    }

    fn parse(name: &str) -> anyhow::Result<Bench> {
        Bench::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(b, _)| *b)
            .with_context(|| {
                let names: Vec<&str> = Bench::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown benchmark `{name}`; choose from {}",
                    names.join(", ")
                )
            })
    }
}

const USAGE: &str = "usage: station-bench [--only blocks,http,nats,parse,cli,startup,parallel,ui,workspaces] [--quick] [--json FILE] [--markdown FILE] [--stn BIN]";

impl Args {
    /// Parse `argv` (without the program name).
    pub(crate) fn parse_from(
        argv: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> anyhow::Result<Args> {
        use lexopt::prelude::*;
        let mut args = Args::default();
        let mut parser = lexopt::Parser::from_args(argv);
        while let Some(arg) = parser.next()? {
            match arg {
                Long("only") => {
                    for name in parser.value()?.string()?.split(',') {
                        args.only.push(Bench::parse(name)?);
                    }
                }
                Long("quick") => args.quick = true,
                Long("json") => args.json = Some(parser.value()?.into()),
                Long("markdown") => args.markdown = Some(parser.value()?.into()),
                Long("stn") => args.stn = Some(parser.value()?.into()),
                Long("profile-parser") => args.profile_parser = Some(parser.value()?.string()?),
                Long("profile-http") => args.profile_http = Some(parser.value()?.string()?),
                Long("nats-worker") => args.nats_worker = Some(parser.value()?.string()?),
                Long("peak-rss-of") => {
                    for value in parser.raw_args()? {
                        args.peak_rss_of.push(value.string()?);
                    }
                }
                Long("workspace-peak") => {
                    for value in parser.raw_args()? {
                        args.workspace_peak.push(value.string()?);
                    }
                }
                Long("help") | Short('h') => {
                    bail!("{USAGE}")
                }
                _ => return Err(arg.unexpected()).context(USAGE),
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flags_and_names_bad_ones() {
        let a = Args::parse_from([
            "--only",
            "http,parse",
            "--quick",
            "--markdown",
            "BENCHMARKS.md",
        ])
        .unwrap();
        assert_eq!(a.only, vec![Bench::Http, Bench::Parse]);
        assert!(a.quick);
        assert_eq!(a.markdown, Some(PathBuf::from("BENCHMARKS.md")));
        let a = Args::parse_from(["--peak-rss-of", "stn", "--version"]).unwrap();
        assert_eq!(a.peak_rss_of, ["stn", "--version"]);
        let err = Args::parse_from(["--only", "htp"]).unwrap_err().to_string();
        assert!(err.contains("unknown benchmark `htp`"), "{err}");
        assert!(Args::parse_from(["--nope"]).is_err());
    }
}
