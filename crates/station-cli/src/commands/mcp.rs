//! `stn mcp`: the coding tools over MCP (stdio, or streamable HTTP on loopback).

use std::process::ExitCode;
use std::sync::Arc;

use station_agent::CodingTools;
use station_core::config::{BackendKind, LoadedConfig};
use station_core::{RunOptions, SessionIndex, SessionService};
use station_mcp::{CodingMcpServer, HttpOptions, ServerDescription};

use crate::cli::McpArgs;
use crate::{backends, output};

pub(crate) async fn run(loaded: &LoadedConfig, args: McpArgs) -> anyhow::Result<ExitCode> {
    let kind: BackendKind = match &args.backend {
        Some(b) => b.parse()?,
        None => loaded.config.coding.backend,
    };
    let backend = backends::build(kind, loaded).await?;
    let timeout = backends::default_timeout(kind, loaded);
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let service = SessionService::new(
        backend,
        index,
        RunOptions {
            default_timeout: timeout,
            ..RunOptions::default()
        },
    );
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
    match args.http {
        None => server.serve_stdio().await?,
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
            bound
                .run(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
