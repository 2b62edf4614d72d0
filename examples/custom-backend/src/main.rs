//! `custom-backend-demo --backend NAME WORKSPACE INSTRUCTION`: a tiny `stn`-like runner that
//! selects the `command` backend of this crate or a built-in one by name.
//!
//! * `command` runs `$COMMAND_AGENT` (program and arguments separated by spaces; default
//!   `opencode run`) with the prompt on stdin.
//! * `opencode-cli` runs `$OPENCODE_BIN` (default `opencode`) with `--format json`.
#![allow(clippy::print_stdout)] // printing events is the point

use std::process::ExitCode;
use std::sync::Arc;

use station_backend_cli::CliBackend;
use station_backend_cli::CliConfig;
use station_core::{CodingBackend, EventKind, OpenRequest, RunOptions, Task, start_task};
use station_example_custom_backend::{CommandBackend, CommandConfig};

const USAGE: &str = "usage: custom-backend-demo --backend NAME WORKSPACE INSTRUCTION";

/// Every backend this binary can build, by name (the one place that composes them).
fn build_backend(name: &str) -> Result<Arc<dyn CodingBackend>, String> {
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
    match name {
        station_example_custom_backend::NAME => {
            let argv = env("COMMAND_AGENT", "opencode run")
                .split_whitespace()
                .map(String::from)
                .collect();
            let config = CommandConfig {
                argv,
                ..CommandConfig::default()
            };
            Ok(Arc::new(CommandBackend::new(config).map_err(|e| {
                format!("{e} (set COMMAND_AGENT, e.g. COMMAND_AGENT='opencode run')")
            })?))
        }
        station_backend_cli::NAME => Ok(Arc::new(CliBackend::new(CliConfig {
            binary: env("OPENCODE_BIN", "opencode"),
            ..CliConfig::default()
        }))),
        other => Err(format!(
            "unknown backend `{other}`; available: {}, {}",
            station_example_custom_backend::NAME,
            station_backend_cli::NAME
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, name, workspace, instruction] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if flag != "--backend" {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let backend = match build_backend(name) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("custom-backend-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let request = OpenRequest {
        workspace: Some(workspace.into()),
        ..OpenRequest::default()
    };
    let session = match backend.open(request).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custom-backend-demo: opening a session failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = start_task(
        backend,
        session,
        Task::new(instruction.as_str()),
        &RunOptions::default(),
    );
    let outcome = run
        .follow(|event| match &event.kind {
            EventKind::TextDelta { text } => print!("{text}"),
            EventKind::Finished { .. } | EventKind::Failed { .. } => {}
            other => println!("[{other:?}]"),
        })
        .await;
    match outcome {
        Ok(o) if o.success => {
            println!("done: {} file(s) changed", o.files_changed.len());
            ExitCode::SUCCESS
        }
        Ok(o) => {
            eprintln!("failed: {}", o.error.unwrap_or_default());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("custom-backend-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
