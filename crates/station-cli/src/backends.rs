//! The only place that knows which backends are compiled in. Each backend is behind a cargo
//! feature; a backend that is compiled out gives a clear error instead of a missing symbol.

use std::sync::Arc;
use std::time::Duration;

#[cfg(not(all(
    feature = "http",
    feature = "cli",
    feature = "claude",
    feature = "nats"
)))]
use station_core::Error;
use station_core::config::{BackendKind, LoadedConfig};
use station_core::{CodingBackend, Result, RunOptions, SessionIndex, SessionService};

/// The backend named `kind`, configured from `config`.
pub(crate) async fn build(
    kind: BackendKind,
    config: &LoadedConfig,
) -> Result<Arc<dyn CodingBackend>> {
    match kind {
        BackendKind::Opencode => http(config),
        BackendKind::OpencodeCli => cli(config),
        BackendKind::ClaudeCode => claude(config),
        BackendKind::OpencodeNats => nats(config).await,
    }
}

/// The deadline of a task on `kind` when the task sets none.
pub(crate) fn default_timeout(kind: BackendKind, config: &LoadedConfig) -> Duration {
    let coding = &config.config.coding;
    match kind {
        BackendKind::Opencode | BackendKind::OpencodeNats => coding.task_timeout(),
        BackendKind::OpencodeCli => Duration::from_secs(coding.cli.timeout_sec.max(1)),
        BackendKind::ClaudeCode => Duration::from_secs(coding.claudecode.timeout_sec.max(1)),
    }
}

#[cfg(not(all(
    feature = "http",
    feature = "cli",
    feature = "claude",
    feature = "nats"
)))]
fn compiled_out(kind: BackendKind, feature: &str) -> Error {
    Error::Unavailable {
        backend: kind.to_string(),
        message: format!(
            "the `{kind}` backend is not compiled into this build of stn; rebuild with `--features {feature}` (on by default)"
        ),
    }
}

/// The OpenCode HTTP backend (also the executor of `stn worker`).
#[cfg(feature = "http")]
pub(crate) fn http_backend(config: &LoadedConfig) -> Result<station_backend_http::HttpBackend> {
    let coding = &config.config.coding;
    Ok(
        station_backend_http::HttpBackend::new(coding)?
            .with_workspace_base(coding.workspace_base()),
    )
}

#[cfg(feature = "http")]
fn http(config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Ok(Arc::new(http_backend(config)?))
}

#[cfg(not(feature = "http"))]
fn http(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::Opencode, "http"))
}

#[cfg(feature = "cli")]
fn cli(config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    let coding = &config.config.coding;
    Ok(Arc::new(
        station_backend_cli::CliBackend::new(coding.cli.clone())
            .with_workspace_base(coding.workspace_base()),
    ))
}

#[cfg(not(feature = "cli"))]
fn cli(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::OpencodeCli, "cli"))
}

#[cfg(feature = "claude")]
fn claude(config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    let coding = &config.config.coding;
    Ok(Arc::new(
        station_backend_claude::ClaudeBackend::new(coding.claudecode.clone())
            .with_workspace_base(coding.workspace_base()),
    ))
}

#[cfg(not(feature = "claude"))]
fn claude(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::ClaudeCode, "claude"))
}

#[cfg(feature = "nats")]
async fn nats(config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    let coding = &config.config.coding;
    let options = station_backend_nats::NatsBackendOptions {
        task_timeout: coding.task_timeout(),
        ..Default::default()
    };
    Ok(Arc::new(
        station_backend_nats::NatsBackend::connect(&coding.nats, options).await?,
    ))
}

#[cfg(not(feature = "nats"))]
async fn nats(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::OpencodeNats, "nats"))
}

/// `backend` bound to the session index in the data dir, with the configured deadline and
/// busy-session wait.
pub(crate) fn service(
    backend: Arc<dyn CodingBackend>,
    kind: BackendKind,
    config: &LoadedConfig,
) -> Result<SessionService> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let run = RunOptions {
        default_timeout: default_timeout(kind, config),
        ..RunOptions::default()
    };
    Ok(SessionService::new(backend, index, run)
        .with_busy_wait(config.config.coding.session_busy_wait()))
}

/// Give the coding tools git (clone, commit, push, branch) with the configured credentials.
pub(crate) fn with_git(
    tools: station_agent::CodingTools,
    config: &LoadedConfig,
) -> station_agent::CodingTools {
    tools.with_git(Arc::new(station_agent::LocalGit::new(
        station_git::Git::from_loaded(config),
    )))
}
