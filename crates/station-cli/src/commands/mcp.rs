//! `stn mcp`: the coding tools over MCP (stdio, or streamable HTTP on loopback).

use std::process::ExitCode;
use std::sync::Arc;

use station_agent::CodingTools;
use station_core::config::{BackendKind, LoadedConfig};
use station_mcp::{CodingMcpServer, HttpOptions, ServerDescription};

use crate::cli::McpArgs;
use crate::{backends, output, signals};

pub(crate) async fn run(loaded: &LoadedConfig, args: McpArgs) -> anyhow::Result<ExitCode> {
    let kind: BackendKind = match &args.backend {
        Some(b) => b.parse()?,
        None => loaded.config.coding.backend,
    };
    let backend = backends::build(kind, loaded).await?;
    let timeout = backends::default_timeout(kind, loaded);
    let service = backends::service(backend, kind, loaded)?;
    let running = service.clone();
    let tools = backends::with_git(
        CodingTools::new(service, loaded.config.coding.workspace_base()),
        loaded,
    );
    let description = ServerDescription {
        backend_details: vec![
            format!("default task timeout: {}s", timeout.as_secs()),
            format!(
                "managed workspaces: {}",
                loaded.config.coding.workspace_base().display()
            ),
        ],
        instructions: None,
    };
    let server = CodingMcpServer::new(Arc::new(tools), description);
    let stop_requested = signals::stop_requested();
    let stopped_by = match args.http {
        None => tokio::select! {
            served = server.serve_stdio() => { served?; None }
            stop = stop_requested => Some(stop),
        },
        Some(addr) => {
            let bound = server
                .bind_http(
                    addr,
                    HttpOptions {
                        allow_remote: args.allow_remote,
                    },
                )
                .await?;
            output::progress(&format!(
                "stn mcp: serving the coding tools ({kind}) on {}",
                bound.url()
            ));
            let stop = Arc::new(std::sync::OnceLock::new());
            let seen = stop.clone();
            bound
                .run(async move {
                    let _ = seen.set(stop_requested.await);
                })
                .await?;
            stop.get().copied()
        }
    };
    let Some(stop) = stopped_by else {
        return Ok(ExitCode::SUCCESS);
    };
    output::progress(&format!("stn mcp: stopping ({})", stop.name()));
    signals::exit_on_second_signal();
    // The server is gone and with it every task it ran; let those tasks stop.
    if !running.wait_stopped(signals::STOP_GRACE).await {
        output::warn_line("some coding tasks did not stop in time");
    }
    Ok(ExitCode::from(stop.exit_code()))
}
