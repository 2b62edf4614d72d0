//! The only place that knows which backends are compiled in: it composes their factories
//! (each behind its cargo feature) into one registry. A backend that is compiled out is still
//! known by name, so selecting it says which feature to enable.

use std::sync::Arc;
use std::time::Duration;

use station_core::config::LoadedConfig;
use station_core::registry::BackendRegistry;
use station_core::{CodingBackend, Error, Result, RunOptions, SessionIndex, SessionService};

/// Every backend this build of stn can select by name.
pub(crate) fn registry() -> BackendRegistry {
    let registry = BackendRegistry::new();
    #[cfg(feature = "http")]
    let registry = registry.with(station_backend_http::HttpFactory);
    #[cfg(not(feature = "http"))]
    let registry = registry.compiled_out("opencode", "opencode", "http");
    #[cfg(feature = "nats")]
    let registry = registry.with(station_backend_nats::NatsFactory);
    #[cfg(not(feature = "nats"))]
    let registry = registry.compiled_out("opencode-nats", "nats", "nats");
    #[cfg(feature = "cli")]
    let registry = registry.with(station_backend_cli::CliFactory);
    #[cfg(not(feature = "cli"))]
    let registry = registry.compiled_out("opencode-cli", "cli", "cli");
    #[cfg(feature = "claude")]
    let registry = registry.with(station_backend_claude::ClaudeFactory);
    #[cfg(not(feature = "claude"))]
    let registry = registry.compiled_out("claudecode", "claudecode", "claude");
    #[cfg(feature = "gemini")]
    let registry = registry.with(station_backend_gemini::GeminiFactory);
    #[cfg(not(feature = "gemini"))]
    let registry = registry.compiled_out("gemini", "gemini", "gemini");
    #[cfg(feature = "codex")]
    let registry = registry.with(station_backend_codex::CodexFactory);
    #[cfg(not(feature = "codex"))]
    let registry = registry.compiled_out("codex", "codex", "codex");
    #[cfg(feature = "acp")]
    let registry = registry.with(station_backend_acp::AcpFactory);
    #[cfg(not(feature = "acp"))]
    let registry = registry.compiled_out("acp", "acp", "acp");
    registry
}

/// The backend to use: `--backend NAME` when given (checked here, so a typo names the flag),
/// else `coding.backend` / `STN_CODING_BACKEND` (checked when the config was loaded).
/// The name comes back as its factory spells it.
pub(crate) fn selected(flag: Option<&str>, config: &LoadedConfig) -> Result<String> {
    let name = flag.unwrap_or_else(|| config.backend_name());
    match registry().factory(name) {
        Ok(factory) => Ok(factory.name().to_string()),
        // Compiled out: known, and building it says which feature to enable.
        Err(Error::Unavailable { .. }) => Ok(name.trim().to_string()),
        Err(Error::Config(mut e)) if flag.is_some() => {
            e.field = Some("--backend".into());
            Err(Error::Config(e))
        }
        Err(other) => Err(other),
    }
}

/// The backend named `name`, configured from `config`.
pub(crate) async fn build(name: &str, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
    registry().build(name, config).await
}

/// The deadline of a task on `name` when the task sets none.
pub(crate) fn default_timeout(name: &str, config: &LoadedConfig) -> Result<Duration> {
    registry().default_timeout(name, config)
}

/// `backend` bound to the session index in the data dir, with the configured deadline and
/// busy-session wait.
pub(crate) fn service(
    backend: Arc<dyn CodingBackend>,
    name: &str,
    config: &LoadedConfig,
) -> Result<SessionService> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let run = RunOptions {
        default_timeout: default_timeout(name, config)?,
        pricing: config.config.coding.price_table(),
        ..RunOptions::default()
    };
    Ok(SessionService::new(backend, index, run)
        .with_busy_wait(config.config.coding.session_busy_wait())
        .with_budget(config.config.coding.budget.clone()))
}

/// Give the coding tools git (clone, commit, push, branch) with the configured credentials,
/// and the configured worktree isolation (`coding.isolation`, `coding.worktree_on_close`).
pub(crate) fn with_git(
    tools: station_agent::CodingTools,
    config: &LoadedConfig,
) -> station_agent::CodingTools {
    let coding = &config.config.coding;
    tools
        .with_git(Arc::new(station_agent::LocalGit::new(
            station_git::Git::from_loaded(config),
        )))
        .with_worktree_policy(coding.isolation, coding.worktree_on_close)
}
