//! `custom-backend-demo [--config FILE] --backend NAME WORKSPACE INSTRUCTION`: a tiny
//! `stn`-like runner. It composes this crate's `command` backend with a built-in one
//! (`opencode-cli`) in one [`BackendRegistry`] and selects by name; each reads its own section
//! of the station config (`coding.command`, `coding.cli`).
#![allow(clippy::print_stdout, clippy::print_stderr)] // printing events is the point

use std::path::PathBuf;
use std::process::ExitCode;

use station_core::config::{Config, process_env};
use station_core::registry::BackendRegistry;
use station_core::{EventKind, OpenRequest, RunOptions, Task, start_task};

const USAGE: &str =
    "usage: custom-backend-demo [--config FILE] --backend NAME WORKSPACE INSTRUCTION";

/// Every backend this binary can build: the one place that composes them.
fn registry() -> BackendRegistry {
    BackendRegistry::new()
        .with(station_example_custom_backend::CommandFactory)
        .with(station_backend_cli::CliFactory)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.first().map(String::as_str) {
        Some("--config") if args.len() > 1 => {
            Some(PathBuf::from(args.drain(..2).nth(1).unwrap_or_default()))
        }
        _ => None,
    };
    let [flag, name, workspace, instruction] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if flag != "--backend" {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let registry = registry();
    let built = async {
        let mut loaded = Config::load(config.as_deref(), process_env)?;
        // --backend picks the backend, as `stn --backend` does.
        loaded.config.coding.backend.clone_from(name);
        registry.check_config(&loaded)?;
        registry.build(name, &loaded).await
    };
    let backend = match built.await {
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
