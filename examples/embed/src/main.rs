//! Run one coding task on a backend from Rust: `station-example-embed WORKSPACE INSTRUCTION`.
//!
//! Uses the `opencode-cli` backend (`$OPENCODE_BIN`, default `opencode`; `$OPENCODE_MODEL`
//! optional), prints each event as it arrives and the outcome at the end.
#![allow(clippy::print_stdout)] // printing events is the point

use std::sync::Arc;

use station_backend_cli::CliBackend;
use station_backend_cli::CliConfig;
use station_core::{CodingBackend, OpenRequest, RunOptions, Task, start_task};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(workspace), Some(instruction)) = (args.next(), args.next()) else {
        return Err("usage: station-example-embed WORKSPACE INSTRUCTION".into());
    };
    let backend: Arc<dyn CodingBackend> = Arc::new(CliBackend::new(CliConfig {
        binary: std::env::var("OPENCODE_BIN").unwrap_or_else(|_| "opencode".into()),
        model: std::env::var("OPENCODE_MODEL").ok(),
        ..CliConfig::default()
    }));
    let session = backend
        .open(OpenRequest {
            workspace: Some(workspace.into()),
            ..OpenRequest::default()
        })
        .await?;
    let run = start_task(
        backend,
        session,
        Task::new(instruction),
        &RunOptions::default(),
    );
    let outcome = run
        .follow(|e| println!("event {}: {:?}", e.seq, e.kind))
        .await?;
    let files: Vec<&str> = outcome
        .files_changed
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    let (tokens_in, tokens_out) = (outcome.usage.input_tokens, outcome.usage.output_tokens);
    println!(
        "outcome: success={} files_changed={files:?} tokens in={tokens_in} out={tokens_out}",
        outcome.success
    );
    if !outcome.success {
        return Err(outcome.error.unwrap_or_default().into());
    }
    Ok(())
}
