//! `stn completions` and `stn generate` (man pages and schemas, also for `cargo xtask`).
//!
//! xtask runs `stn generate ...` rather than linking a station-cli library: xtask stays free of
//! dependencies, and the pages describe exactly the binary that was built (its features).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, GenerateCommand};

pub(crate) fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "stn", &mut out);
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .context("writing the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn generate(command: &GenerateCommand) -> anyhow::Result<ExitCode> {
    match command {
        GenerateCommand::Man { dir } => man_pages(dir)?,
        GenerateCommand::OutcomeSchema { file } => {
            std::fs::write(file, crate::report::outcome_schema())
                .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))
}
