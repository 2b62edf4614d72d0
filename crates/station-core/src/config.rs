//! The `config.yaml` model: which backend, where it is, timeouts, git credentials, and the
//! orchestrating model.
//!
//! Lookup: an explicit path, else `$STN_CONFIG`, else `$XDG_CONFIG_HOME/station/config.yaml`, else
//! `~/.config/station/config.yaml`; no file means defaults. Unknown keys are errors with line and
//! column. `STN_CODING_BACKEND` and `STN_AI_BASE_URL` override the file.
//!
//! Core reads only the station-wide settings. Each backend's section (`coding.opencode`,
//! `coding.nats`, `coding.cli`, `coding.claudecode`, ...) is a [`ConfigSection`] type in its
//! backend crate, read with [`LoadedConfig::section`] (same located errors) and overridden from
//! that crate's own environment variables.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, InputError, Result};
use crate::process::ChildEnv;
use crate::redact::{Redactor, Secret};
use crate::yaml;

/// The longest deadline any setting or flag may ask for (7 days). Longer values are refused:
/// they mean "never" and overflow clock arithmetic.
pub const MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The largest config file read (a config is a few KiB; this stops `/dev/zero` and the like).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

mod sections;
mod telemetry;

pub use sections::{ConfigSection, KeyAt};
pub use telemetry::TelemetryConfig;

/// Deserialise seconds, at most [`MAX_DEADLINE`] (`#[serde(deserialize_with = ...)]`).
pub fn deadline_secs<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    bounded(u64::deserialize(d)?, 1, "seconds")
}

/// Deserialise minutes, at most [`MAX_DEADLINE`] (`#[serde(deserialize_with = ...)]`).
pub fn deadline_min<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    bounded(u64::deserialize(d)?, 60, "minutes")
}

fn bounded<E: serde::de::Error>(
    value: u64,
    unit_secs: u64,
    unit: &str,
) -> std::result::Result<u64, E> {
    let max = MAX_DEADLINE.as_secs() / unit_secs;
    if value > max {
        return Err(E::custom(format!(
            "{value} {unit} is longer than the longest deadline allowed, {max} {unit} (7 days)"
        )));
    }
    Ok(value)
}

/// `coding.git`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitConfig {
    /// Name of the environment variable holding the token (recommended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The token itself; `${VAR}` is expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Commit author name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Commit author email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    /// User name sent with the token, per host (defaults: GitHub `x-access-token`, GitLab `oauth2`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub usernames: BTreeMap<String, String>,
    /// Hosts (`host` for any port, or `host:port`) that remotes may name; clones and pushes to
    /// any other host are refused before any network traffic. When empty: the hosts of
    /// `usernames`, or `github.com` when a token is set and `usernames` is empty; without a token,
    /// any host (nothing can leak), still only over https.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Allow plain `http://` remotes on loopback addresses (127.0.0.0/8, ::1, localhost), e.g.
    /// a local test server. Every other `http://` remote is refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_http_loopback: bool,
}

/// The default of `coding.max_instruction_bytes` (4 MiB).
pub const DEFAULT_MAX_INSTRUCTION_BYTES: u64 = 4 * 1024 * 1024;

/// The config key that caps instruction sizes.
pub const MAX_INSTRUCTION_KEY: &str = "coding.max_instruction_bytes";

/// Refuse an instruction of `len` bytes when it is over `max` (`coding.max_instruction_bytes`).
/// `source` says where it came from ("stdin", "the file x", "the MCP `code` call").
pub fn check_instruction_size(len: u64, max: u64, source: &str) -> Result<()> {
    if len <= max {
        return Ok(());
    }
    Err(InputError::new(format!(
        "the instruction from {source} is larger than the limit of {max} bytes{}",
        if len == max.saturating_add(1) {
            String::new()
        } else {
            format!(" ({len} bytes)")
        }
    ))
    .field(MAX_INSTRUCTION_KEY)
    .hint(format!(
        "shorten it, or raise {MAX_INSTRUCTION_KEY} in config.yaml"
    ))
    .into())
}

/// The backend used when `coding.backend` is not set.
pub const DEFAULT_BACKEND: &str = "opencode";

/// The environment variable that overrides `coding.backend`.
pub const BACKEND_ENV: &str = "STN_CODING_BACKEND";

/// `coding`: the station-wide settings. Each backend's own section (`coding.opencode`,
/// `coding.cli`, ...) is read by its backend crate ([`LoadedConfig::section`]); keys here that
/// are neither station-wide nor a registered section are reported by
/// [`BackendRegistry::check_config`](crate::registry::BackendRegistry::check_config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CodingConfig {
    /// The name of the backend every coding agent uses (see [`crate::registry`]).
    pub backend: String,
    /// Git credentials and identity.
    pub git: GitConfig,
    /// Where managed workspaces are created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_base_path: Option<PathBuf>,
    /// Task deadline in minutes (HTTP and NATS backends; at most 7 days).
    #[serde(deserialize_with = "deadline_min")]
    pub task_timeout_min: u64,
    /// Attempts for idempotent requests.
    pub max_attempts: u32,
    /// Clone deadline in seconds.
    #[serde(deserialize_with = "deadline_secs")]
    pub clone_timeout_sec: u64,
    /// Push deadline in seconds.
    #[serde(deserialize_with = "deadline_secs")]
    pub push_timeout_sec: u64,
    /// How long a task waits for its session to be free when another task runs on it.
    #[serde(deserialize_with = "deadline_secs")]
    pub session_busy_wait_sec: u64,
    /// Environment variables coding agents may inherit even though they hold one of Station's
    /// secrets (by default every child is started without them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
    /// What coding agents may do, the same for every backend (none: everything inside the
    /// workspace, no writes outside it where the agent lets Station decide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::PolicyConfig>,
    /// What each task and each session may spend.
    #[serde(skip_serializing_if = "is_default_budget")]
    pub budget: crate::policy::BudgetConfig,
    /// Where a new session works by default: in the workspace itself, or in a git worktree of
    /// it on a branch of its own (`none` | `worktree`).
    pub isolation: Isolation,
    /// What closing a session does with its worktree (`keep` | `remove`).
    pub worktree_on_close: WorktreeOnClose,
    /// Prices per model (USD per million tokens) added to or replacing the built-in ones, for
    /// backends that report tokens but no cost (see [`crate::pricing`]).
    #[serde(
        deserialize_with = "crate::pricing::price_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub pricing: BTreeMap<String, crate::pricing::ModelPrice>,
    /// The largest instruction a task accepts, in bytes (`stn code -`, `--file`, MCP `code`).
    pub max_instruction_bytes: u64,
}

/// `coding.isolation`: where a new session works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// In the workspace itself.
    #[default]
    None,
    /// In a new git worktree of the workspace's repository, on a new branch `stn/<session id>`
    /// under the workspace base, so several sessions can work on one repository at once.
    Worktree,
}

impl Isolation {
    /// The values, as written in config and flags.
    pub const VALUES: [&'static str; 2] = ["none", "worktree"];
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "none" => Ok(Isolation::None),
            "worktree" => Ok(Isolation::Worktree),
            other => Err(format!(
                "`{other}` is not an isolation mode; use one of: {}",
                Isolation::VALUES.join(", ")
            )),
        }
    }
}

/// `coding.worktree_on_close`: what closing a session does with its worktree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorktreeOnClose {
    /// Leave the worktree where it is.
    #[default]
    Keep,
    /// Remove the worktree (never one with uncommitted changes); its branch stays.
    Remove,
}

fn is_default_budget(budget: &crate::policy::BudgetConfig) -> bool {
    !budget.is_set()
}

impl Default for CodingConfig {
    fn default() -> Self {
        CodingConfig {
            backend: DEFAULT_BACKEND.into(),
            git: GitConfig::default(),
            workspace_base_path: None,
            task_timeout_min: 10,
            max_attempts: 3,
            clone_timeout_sec: 300,
            push_timeout_sec: 120,
            session_busy_wait_sec: 30,
            pass_env: Vec::new(),
            policy: None,
            budget: crate::policy::BudgetConfig::default(),
            isolation: Isolation::None,
            worktree_on_close: WorktreeOnClose::Keep,
            pricing: BTreeMap::new(),
            max_instruction_bytes: DEFAULT_MAX_INSTRUCTION_BYTES,
        }
    }
}

impl CodingConfig {
    /// The keys of `coding` that are station-wide (every other key is a backend's section).
    pub const STATION_KEYS: [&'static str; 15] = [
        "backend",
        "git",
        "workspace_base_path",
        "task_timeout_min",
        "max_attempts",
        "clone_timeout_sec",
        "push_timeout_sec",
        "session_busy_wait_sec",
        "pass_env",
        "policy",
        "budget",
        "isolation",
        "worktree_on_close",
        "pricing",
        "max_instruction_bytes",
    ];

    /// The task deadline.
    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.task_timeout_min.max(1).saturating_mul(60)).min(MAX_DEADLINE)
    }
    /// How long a task waits for a busy session.
    pub fn session_busy_wait(&self) -> Duration {
        Duration::from_secs(self.session_busy_wait_sec).min(MAX_DEADLINE)
    }
    /// The price table: the built-in prices with `pricing` on top.
    pub fn price_table(&self) -> crate::pricing::PriceTable {
        crate::pricing::PriceTable::with_overrides(&self.pricing)
    }
    /// Where managed workspaces go: `workspace_base_path`, else `$TMPDIR/station-coding`.
    pub fn workspace_base(&self) -> PathBuf {
        self.workspace_base_path
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("station-coding"))
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Coding backends.
    pub coding: CodingConfig,
    /// Provider of the orchestrating model (`openai`, `anthropic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_provider: Option<String>,
    /// The orchestrating model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_model: Option<String>,
    /// Base URL of the orchestrating model's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_base_url: Option<String>,
    /// Where traces and metrics go (OpenTelemetry); the standard `OTEL_*` variables win.
    #[serde(default, skip_serializing_if = "TelemetryConfig::is_unset")]
    pub telemetry: TelemetryConfig,
}

/// A config with where it came from and its resolved secrets.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedConfig {
    /// The effective config.
    #[serde(flatten)]
    pub config: Config,
    /// The file it was read from; `None` when defaults were used.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The station config directory (agents live under `environments/` here).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The git token after `token_env`/`${VAR}` resolution.
    #[serde(skip)]
    pub git_token: Option<Secret>,
    /// Problems that do not stop loading.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The file's text, re-read by backend crates for their own sections.
    #[serde(skip)]
    source: Option<Arc<str>>,
    /// Where environment overrides come from.
    #[serde(skip)]
    env: Env,
}

/// Where environment variables come from (the process, or a map in tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// An owned environment lookup, kept in a [`LoadedConfig`] so that backend crates apply their
/// own overrides when they read their section.
#[derive(Clone)]
pub struct Env(Arc<EnvFn>);

type EnvFn = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Env {
    /// Look up through `lookup`.
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Env(Arc::new(lookup))
    }

    /// No variables at all.
    pub fn empty() -> Self {
        Env::new(|_| None)
    }

    /// The variable's value; unset and empty are both `None`.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets.
        f.write_str("Env(..)")
    }
}

/// The process environment.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

impl Config {
    /// The config file to read: `explicit`, else `$STN_CONFIG`, else the XDG default.
    /// The flag says whether the path was asked for (and so must exist).
    pub fn locate(explicit: Option<&Path>, env: EnvLookup<'_>) -> Result<(PathBuf, bool)> {
        if let Some(p) = explicit {
            return Ok((p.to_path_buf(), true));
        }
        if let Some(p) = env("STN_CONFIG").filter(|p| !p.is_empty()) {
            return Ok((PathBuf::from(p), true));
        }
        let base = match env("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => {
                let home = env("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
                    Error::config("HOME is not set, so the default config file cannot be found")
                })?;
                PathBuf::from(home).join(".config")
            }
        };
        Ok((base.join("station").join("config.yaml"), false))
    }

    /// Parse config text (`path` names it in errors).
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        Ok(yaml::parse(text, path, 1, "")?)
    }

    /// Locate, read and resolve the config; registers resolved secrets with the global
    /// redactor. `env` is kept: backend crates apply their overrides from it.
    pub fn load(
        explicit: Option<&Path>,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<LoadedConfig> {
        let env = Env::new(env);
        let lookup = |k: &str| (env.0)(k);
        let (path, required) = Self::locate(explicit, &lookup)?;
        let (config, source) =
            match crate::fsutil::read_text(&path, MAX_CONFIG_BYTES, "config file") {
                Ok(text) => (Self::parse(&text, Some(&path))?, Some(Arc::from(text))),
                Err(Error::NotFound { .. }) if !required => (Config::default(), None),
                Err(Error::NotFound { .. }) => {
                    return Err(InputError::new("the config file does not exist")
                        .in_file(&path)
                        .into());
                }
                Err(e) => return Err(e),
            };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut loaded = LoadedConfig {
            config,
            path: source.is_some().then_some(path),
            dir,
            git_token: None,
            warnings: Vec::new(),
            source,
            env,
        };
        loaded.apply_env();
        loaded.resolve_secrets()?;
        loaded.guard_secrets();
        Ok(loaded)
    }
}

impl LoadedConfig {
    /// Defaults, as if no file existed and no variable were set (for tests and embedding).
    pub fn defaults(dir: impl Into<PathBuf>) -> Self {
        LoadedConfig {
            config: Config::default(),
            path: None,
            dir: dir.into(),
            git_token: None,
            warnings: Vec::new(),
            source: None,
            env: Env::empty(),
        }
    }

    /// Config text as if read from `path` (for tests and embedding): backend sections are
    /// read from `text`, environment overrides from `env`. Secrets are not resolved.
    pub fn from_text(text: &str, path: Option<&Path>, env: Env) -> Result<Self> {
        Ok(LoadedConfig {
            config: Config::parse(text, path)?,
            path: path.map(Path::to_path_buf),
            dir: path
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            git_token: None,
            warnings: Vec::new(),
            source: Some(Arc::from(text)),
            env,
        })
    }

    /// The environment variable `name` (unset and empty are both `None`), from the lookup the
    /// config was loaded with.
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.env.var(name)
    }

    /// The backend named by `coding.backend` (or `STN_CODING_BACKEND`).
    pub fn backend_name(&self) -> &str {
        self.config.coding.backend.trim()
    }

    /// Register the resolved secrets with the global redactor, and keep them (and the
    /// variables they came from) out of every child's environment.
    fn guard_secrets(&self) {
        let coding = &self.config.coding;
        if let Some(secret) = &self.git_token {
            guard_secret(secret);
        }
        if let Some(var) = &coding.git.token_env {
            ChildEnv::withhold_var(var);
        }
        ChildEnv::withhold_var("STN_MCP_TOKEN");
        for var in &coding.pass_env {
            ChildEnv::pass_var(var);
        }
    }

    fn apply_env(&mut self) {
        if let Some(b) = self.env.var(BACKEND_ENV) {
            self.config.coding.backend = b.trim().to_string();
        }
        if let Some(u) = self.env.var("STN_AI_BASE_URL") {
            self.config.ai_base_url = Some(u);
        }
    }

    /// Expand `${VAR}` in a secret setting `field` from the config's environment; a variable
    /// a secret came from is withheld from children too.
    pub fn expand_secret(&self, field: &str, value: &Secret) -> Result<Secret> {
        shellexpand::env_with_context(
            value.expose(),
            |var: &str| -> std::result::Result<Option<String>, String> {
                match (self.env.0)(var) {
                    Some(v) => {
                        ChildEnv::withhold_var(var);
                        Ok(Some(v))
                    }
                    None => Err(var.to_string()),
                }
            },
        )
        .map(|s| Secret::new(s.into_owned()))
        .map_err(|e| {
            let mut err = InputError::new(format!("environment variable `{}` is not set", e.cause))
                .field(field)
                .hint(format!("export {} or change the value", e.var_name));
            if let Some(path) = &self.path {
                err = err.in_file(path);
            }
            err.into()
        })
    }

    fn resolve_secrets(&mut self) -> Result<()> {
        let git = &self.config.coding.git;
        let from_field = match &git.token {
            Some(t) => Some(self.expand_secret("coding.git.token", t)?),
            None => None,
        };
        let from_env = match &git.token_env {
            Some(var) => match self.env.var(var) {
                Some(v) => Some(Secret::new(v)),
                None => {
                    self.warnings.push(format!("coding.git.token_env names `{var}`, which is not set; git operations on private repositories will fail"));
                    None
                }
            },
            None => None,
        };
        // Unused or not, a configured token never reaches a child.
        for token in [&from_field, &from_env].into_iter().flatten() {
            guard_secret(token);
        }
        if from_field.is_some() && from_env.is_some() {
            self.warnings.push(
                "both coding.git.token and coding.git.token_env are set; using token_env".into(),
            );
        }
        self.git_token = from_env.or(from_field).filter(|t| !t.is_empty());
        Ok(())
    }

    /// The directory of an environment's agents.
    pub fn agents_dir(&self, env: &str) -> PathBuf {
        self.dir.join("environments").join(env).join("agents")
    }
}

/// Register `secret` with the global redactor and keep it out of every child's environment
/// (backend crates call this for the secrets their section holds).
pub fn guard_secret(secret: &Secret) {
    if !secret.is_empty() {
        Redactor::global().register(secret);
        ChildEnv::withhold_value(secret);
    }
}

#[cfg(test)]
pub(crate) mod tests;
