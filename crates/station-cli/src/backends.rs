//! The only place that knows which backends are compiled in. Each backend is behind a cargo
//! feature; a backend that is compiled out gives a clear error instead of a missing symbol.

use std::sync::Arc;
use std::time::Duration;

use station_core::config::{BackendKind, LoadedConfig};
use station_core::{CodingBackend, Error, Result};

/// The backend named `kind`, configured from `config`.
pub(crate) fn build(kind: BackendKind, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    match kind {
        BackendKind::Opencode => http(config),
        BackendKind::OpencodeCli => cli(config),
        BackendKind::ClaudeCode => claude(config),
        BackendKind::OpencodeNats => nats(config),
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

#[cfg(feature = "http")]
fn http(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(Error::not_supported(
        "opencode",
        "running tasks (the HTTP backend is being built)",
    ))
}

#[cfg(not(feature = "http"))]
fn http(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::Opencode, "http"))
}

#[cfg(feature = "cli")]
fn cli(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(Error::not_supported(
        "opencode-cli",
        "running tasks (the CLI backend is being built)",
    ))
}

#[cfg(not(feature = "cli"))]
fn cli(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::OpencodeCli, "cli"))
}

#[cfg(feature = "claude")]
fn claude(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(Error::not_supported(
        "claudecode",
        "running tasks (the Claude backend is being built)",
    ))
}

#[cfg(not(feature = "claude"))]
fn claude(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::ClaudeCode, "claude"))
}

#[cfg(feature = "nats")]
fn nats(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(Error::not_supported(
        "opencode-nats",
        "running tasks (the NATS backend is being built)",
    ))
}

#[cfg(not(feature = "nats"))]
fn nats(_config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    Err(compiled_out(BackendKind::OpencodeNats, "nats"))
}

/// Give the coding tools git (clone, commit, push, branch) where this build has it.
pub(crate) fn with_git(
    tools: station_agent::CodingTools,
    _config: &LoadedConfig,
) -> station_agent::CodingTools {
    tools
}
