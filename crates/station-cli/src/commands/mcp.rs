//! `stn mcp`: the coding tools over MCP (stdio, or streamable HTTP on loopback).

use anyhow::Context as _;

use std::process::ExitCode;
use std::sync::Arc;

use station_agent::CodingTools;
use station_core::config::LoadedConfig;
use station_core::process::ChildEnv;
use station_core::redact::Secret;
use station_mcp::{CodingMcpServer, HttpOptions, ServerDescription};

use crate::cli::McpArgs;
use crate::{backends, output, signals};

pub(crate) async fn run(loaded: &LoadedConfig, args: McpArgs) -> anyhow::Result<ExitCode> {
    let kind = backends::selected(args.backend.as_deref(), loaded)?;
    let backend = backends::build(&kind, loaded).await?;
    let timeout = backends::default_timeout(&kind, loaded)?;
    // The policy's `ask` goes to the MCP client when it can answer a form, else it is a deny.
    let asker = Arc::new(station_mcp::ClientPermissions::default());
    let service = backends::service(backend, &kind, loaded)?.with_permissions(asker.clone());
    let running = service.clone();
    let tools = backends::with_git(
        CodingTools::new(service, loaded.config.coding.workspace_base())
            .with_max_instruction_bytes(loaded.config.coding.max_instruction_bytes),
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
    let server = CodingMcpServer::new(Arc::new(tools), description).with_client_permissions(asker);
    let stop_requested = signals::stop_requested();
    let stopped_by = match args.http {
        None => tokio::select! {
            served = server.serve_stdio() => { served?; None }
            stop = stop_requested => Some(stop),
        },
        Some(addr) => {
            let (token, generated) = bearer_token(
                args.token_env.as_deref(),
                TOKEN_ENV,
                args.allow_remote,
                "MCP",
            )?;
            let bound = server
                .bind_http(
                    addr,
                    HttpOptions {
                        allow_remote: args.allow_remote,
                        allowed_origins: args.allow_origin.clone(),
                        token: token.clone(),
                    },
                )
                .await?;
            if let (Some(token), true) = (&token, generated) {
                // Printed once, unredacted, so that the operator can copy it; never logged.
                eprintln!("token: {}", token.expose());
                output::progress(
                    "stn mcp: clients send that token in the Authorization header (Bearer scheme); set STN_MCP_TOKEN to keep one across restarts",
                );
            }
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
        running.backend().shutdown().await;
        return Ok(ExitCode::SUCCESS);
    };
    output::progress(&format!("stn mcp: stopping ({})", stop.name()));
    signals::exit_on_second_signal();
    // The server is gone and with it every task it ran; let those tasks stop.
    if !running.wait_stopped(signals::STOP_GRACE).await {
        output::warn_line("some coding tasks did not stop in time");
    }
    running.backend().shutdown().await;
    Ok(ExitCode::from(stop.exit_code()))
}

/// The environment variable `stn mcp --http` takes its bearer token from by default.
const TOKEN_ENV: &str = "STN_MCP_TOKEN";

/// An HTTP bearer token: from `--token-env VAR`, else `default_var`, else (remote access only) a
/// new one; `true` when generated here. `server` names the server in errors (`MCP`, `UI`).
pub(crate) fn bearer_token(
    token_env: Option<&str>,
    default_var: &str,
    allow_remote: bool,
    server: &str,
) -> anyhow::Result<(Option<Secret>, bool)> {
    let from_env = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()))
    };
    if let Some(var) = token_env {
        // Like every Station secret, the token's variable never reaches a coding agent.
        ChildEnv::withhold_var(var);
        let token = from_env(var).with_context(|| {
            format!(
                "--token-env {var}: the environment variable {var} is not set or empty; export the token in it, or leave out --token-env (then {default_var} is used, or a token is generated with --allow-remote)"
            )
        })?;
        return Ok((Some(token), false));
    }
    // Its variable never reaches a coding agent either.
    ChildEnv::withhold_var(default_var);
    if let Some(token) = from_env(default_var) {
        return Ok((Some(token), false));
    }
    if allow_remote {
        let token = station_mcp::generate_token().with_context(|| {
            format!("could not get random bytes from the operating system for the {server} bearer token; set {default_var} instead")
        })?;
        return Ok((Some(token), true));
    }
    Ok((None, false))
}
