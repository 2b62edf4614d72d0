//! `stn worker`: take coding tasks from NATS and run them on a local OpenCode server.

use std::process::ExitCode;

use station_core::config::LoadedConfig;

use crate::cli::WorkerArgs;

#[cfg(not(all(feature = "nats", feature = "http")))]
pub(crate) async fn run(_loaded: LoadedConfig, _args: WorkerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "`stn worker` needs the `nats` and `http` features; rebuild stn with the default features"
    )
}

#[cfg(all(feature = "nats", feature = "http"))]
pub(crate) async fn run(mut loaded: LoadedConfig, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;

    use station_backend_http::{HttpBackend, ManagedServer, OpencodeConfig};
    use station_backend_nats::{NatsConfig, Worker, WorkerOptions};
    use tokio_util::sync::CancellationToken;

    use crate::{output, signals};

    // Both sections are read by their own crates (file, environment, secrets); flags win.
    let mut nats = NatsConfig::from_loaded(&loaded)?;
    let mut opencode = OpencodeConfig::from_loaded(&loaded)?;
    if let Some(url) = args.nats_url {
        nats.url = url;
    }
    if let Some(creds) = args.creds_file {
        nats.creds_file = Some(creds);
    }
    if let Some(ca) = args.tls_ca {
        nats.tls.ca_file = Some(ca);
    }
    if let Some(cert) = args.tls_cert {
        nats.tls.cert_file = Some(cert);
    }
    if let Some(key) = args.tls_key {
        nats.tls.key_file = Some(key);
    }
    if let Some(max) = args.max_tasks {
        nats.worker.max_tasks = Some(usize::try_from(max).unwrap_or(usize::MAX));
    }
    if let Some(url) = args.opencode_url {
        opencode.url = url;
        opencode.managed = ManagedServer::Never;
    }
    let coding = &mut loaded.config.coding;
    if let Some(base) = args.workspace_base {
        coding.workspace_base_path = Some(base);
    }
    let base = coding.workspace_base();
    std::fs::create_dir_all(&base)?;
    let executor = Arc::new(HttpBackend::new(opencode, coding)?);
    let options = WorkerOptions {
        worker_id: args.id,
        task_timeout: coding.task_timeout(),
        git: Some(Arc::new(station_backend_nats::git::StationGit(
            station_git::Git::from_loaded(&loaded),
        ))),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(nats.clone(), executor, base.clone(), options);
    let id = worker.id().to_string();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let stop_requested = signals::stop_requested();
    tokio::spawn(async move {
        let signal = stop_requested.await;
        output::progress(&format!(
            "stn worker: shutting down ({}; finishing in-flight tasks)",
            signal.name()
        ));
        stop.cancel();
        signals::exit_on_second_signal();
    });
    let bound = tokio::select! {
        _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
        bound = worker.bind() => bound?,
    };
    // Printed once subscribed: from here on, tasks reach this worker.
    let capacity = nats.worker.max_tasks.map_or_else(
        || "no task limit".to_string(),
        |n| format!("at most {n} task(s) at once"),
    );
    output::progress(&format!(
        "stn worker {id} serving {} from {} (workspaces under {}; {capacity})",
        nats.subjects.task,
        station_core::redact::redact(&nats.url),
        base.display()
    ));
    bound.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
