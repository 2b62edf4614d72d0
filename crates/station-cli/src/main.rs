//! `stn`: hand coding work to coding agents (OpenCode over HTTP, NATS or CLI; Claude Code).

mod ask;
mod backends;
mod cli;
mod commands;
mod exit;
mod instruction;
mod logging;
mod output;
mod report;
mod signals;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    logging::init(args.verbose, args.config.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error_line(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(commands::run(args)) {
        Ok(code) => code,
        Err(e) => {
            output::error_line(&format!("{e:#}"));
            ExitCode::from(exit::for_error(&e))
        }
    };
    telemetry::flush();
    code
}
