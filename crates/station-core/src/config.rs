//! The `config.yaml` model: which backend, where it is, timeouts, git credentials, and the
//! orchestrating model.
//!
//! Lookup: `--config FILE`, else `$STN_CONFIG`, else `$XDG_CONFIG_HOME/station/config.yaml`, else
//! `~/.config/station/config.yaml`; no file means defaults. Unknown keys are errors with line and
//! column. `STN_CODING_BACKEND`, `STN_CODING_OPENCODE_URL`, `STN_NATS_URL`, `STN_NATS_TLS_CA`,
//! `STN_NATS_TLS_CERT`, `STN_NATS_TLS_KEY` and `STN_AI_BASE_URL` override the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
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

/// Deserialise seconds, at most [`MAX_DEADLINE`].
fn deadline_secs<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    bounded(u64::deserialize(d)?, 1, "seconds")
}

/// Deserialise minutes, at most [`MAX_DEADLINE`].
fn deadline_min<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
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

/// The coding backends a station can be configured with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackendKind {
    /// OpenCode server over HTTP.
    #[default]
    #[serde(rename = "opencode")]
    Opencode,
    /// OpenCode behind NATS workers.
    #[serde(rename = "opencode-nats")]
    OpencodeNats,
    /// `opencode run` per task.
    #[serde(rename = "opencode-cli")]
    OpencodeCli,
    /// The Claude Code CLI.
    #[serde(rename = "claudecode")]
    ClaudeCode,
}

impl BackendKind {
    /// Every kind, in documentation order.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Opencode,
        BackendKind::OpencodeNats,
        BackendKind::OpencodeCli,
        BackendKind::ClaudeCode,
    ];

    /// The configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Opencode => "opencode",
            BackendKind::OpencodeNats => "opencode-nats",
            BackendKind::OpencodeCli => "opencode-cli",
            BackendKind::ClaudeCode => "claudecode",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        BackendKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<String> = BackendKind::ALL
                    .iter()
                    .map(|k| k.as_str().to_string())
                    .collect();
                let hint = match yaml::suggest(s, &names) {
                    Some(n) => format!("did you mean `{n}`? valid backends: {}", names.join(", ")),
                    None => format!("valid backends: {}", names.join(", ")),
                };
                InputError::new(format!("unknown coding backend `{s}`"))
                    .field("coding.backend")
                    .hint(hint)
                    .into()
            })
    }
}

/// When the HTTP backend starts its own `opencode serve`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedServer {
    /// Only when the configured URL is unreachable and `opencode` is installed.
    #[default]
    Auto,
    /// Always start a private server; ignore `url`.
    Always,
    /// Never; fail when the URL is unreachable.
    Never,
}

/// `coding.opencode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpencodeConfig {
    /// Server URL.
    pub url: String,
    /// Model as `provider/model`; the server's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Basic-auth user (OpenCode's default is `opencode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic-auth password (`OPENCODE_SERVER_PASSWORD` when absent). `${VAR}` is expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Whether to start a private server.
    pub managed: ManagedServer,
    /// The `opencode` binary for managed mode.
    #[serde(alias = "binary_path")]
    pub binary: String,
}

impl Default for OpencodeConfig {
    fn default() -> Self {
        OpencodeConfig {
            url: "http://localhost:4096".into(),
            model: None,
            username: None,
            password: None,
            managed: ManagedServer::Auto,
            binary: "opencode".into(),
        }
    }
}

/// `coding.nats.subjects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSubjects {
    /// Task subject (the plugin listens on `station.coding.task`).
    pub task: String,
    /// Base of per-task event subjects.
    pub stream: String,
    /// Base of per-task result subjects.
    pub result: String,
}

impl Default for NatsSubjects {
    fn default() -> Self {
        NatsSubjects {
            task: "station.coding.task".into(),
            stream: "station.coding.stream".into(),
            result: "station.coding.result".into(),
        }
    }
}

/// `coding.nats.kv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsKv {
    /// Session bucket.
    pub sessions: String,
    /// State bucket.
    pub state: String,
}

impl Default for NatsKv {
    fn default() -> Self {
        NatsKv {
            sessions: "opencode-sessions".into(),
            state: "opencode-state".into(),
        }
    }
}

/// `coding.nats.tls`: TLS to the NATS server. All optional; a `tls://` URL turns TLS on by
/// itself, trusting the system roots unless `ca_file` is set. Any setting here makes TLS
/// required, so a connection never falls back to plain text.
///
/// ```yaml
/// coding:
///   nats:
///     url: tls://nats.internal:4222
///     tls:
///       ca_file: /etc/station/nats-ca.pem     # the CAs to trust, instead of the system roots
///       cert_file: /etc/station/worker.pem    # client certificate (mutual TLS) ...
///       key_file: /etc/station/worker-key.pem # ... and its key: set both or neither
///       required: true                        # TLS even for a nats:// URL
/// ```
///
/// `STN_NATS_TLS_CA`, `STN_NATS_TLS_CERT` and `STN_NATS_TLS_KEY` override the files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTls {
    /// PEM file of the CA certificates to trust for the server's certificate. When set, only
    /// these are trusted (async-nats does not add the system roots then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Use TLS even when the URL is `nats://`, no file is set and the server does not ask
    /// for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

impl NatsTls {
    /// Nothing is configured (TLS only if the URL or the server asks for it).
    pub fn is_empty(&self) -> bool {
        self == &NatsTls::default()
    }

    /// The client certificate and its key, when mutual TLS is configured. Only one of the
    /// two is a config error naming both fields.
    pub fn client_certificate(&self) -> Result<Option<(&Path, &Path)>> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(InputError::new(
                "coding.nats.tls.cert_file is set but coding.nats.tls.key_file is not",
            )
            .field("coding.nats.tls.key_file")
            .hint("a client certificate needs its private key: set both or neither")
            .into()),
            (None, Some(_)) => Err(InputError::new(
                "coding.nats.tls.key_file is set but coding.nats.tls.cert_file is not",
            )
            .field("coding.nats.tls.cert_file")
            .hint("a private key needs its client certificate: set both or neither")
            .into()),
        }
    }
}

/// `coding.nats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL (`nats://`, or `tls://` for TLS).
    pub url: String,
    /// A `.creds` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// TLS settings (see [`NatsTls`]).
    #[serde(skip_serializing_if = "NatsTls::is_empty")]
    pub tls: NatsTls,
    /// Subjects.
    pub subjects: NatsSubjects,
    /// KV buckets.
    pub kv: NatsKv,
    /// Seconds between worker heartbeats; a worker silent for three is dead.
    #[serde(deserialize_with = "deadline_secs")]
    pub heartbeat_sec: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://localhost:4222".into(),
            creds_file: None,
            tls: NatsTls::default(),
            subjects: NatsSubjects::default(),
            kv: NatsKv::default(),
            heartbeat_sec: 5,
        }
    }
}

/// `coding.cli` (`opencode run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CliConfig {
    /// The `opencode` binary.
    #[serde(alias = "binary_path")]
    pub binary: String,
    /// Per-task deadline in seconds (at most 7 days).
    #[serde(deserialize_with = "deadline_secs")]
    pub timeout_sec: u64,
    /// Model as `provider/model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Default for CliConfig {
    fn default() -> Self {
        CliConfig {
            binary: "opencode".into(),
            timeout_sec: 300,
            model: None,
        }
    }
}

/// `coding.claudecode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaudeConfig {
    /// The `claude` binary.
    #[serde(alias = "binary_path")]
    pub binary: String,
    /// Per-task deadline in seconds (at most 7 days).
    #[serde(deserialize_with = "deadline_secs")]
    pub timeout_sec: u64,
    /// `--max-turns`.
    pub max_turns: u32,
    /// `--model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `--allowed-tools`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// `--disallowed-tools`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disallowed_tools: Vec<String>,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        ClaudeConfig {
            binary: "claude".into(),
            timeout_sec: 300,
            max_turns: 10,
            model: None,
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
        }
    }
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

/// `coding`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodingConfig {
    /// The backend every coding agent uses.
    pub backend: BackendKind,
    /// HTTP backend.
    pub opencode: OpencodeConfig,
    /// NATS backend.
    pub nats: NatsConfig,
    /// `opencode run` backend.
    pub cli: CliConfig,
    /// Claude Code backend.
    pub claudecode: ClaudeConfig,
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
}

impl Default for CodingConfig {
    fn default() -> Self {
        CodingConfig {
            backend: BackendKind::default(),
            opencode: OpencodeConfig::default(),
            nats: NatsConfig::default(),
            cli: CliConfig::default(),
            claudecode: ClaudeConfig::default(),
            git: GitConfig::default(),
            workspace_base_path: None,
            task_timeout_min: 10,
            max_attempts: 3,
            clone_timeout_sec: 300,
            push_timeout_sec: 120,
            session_busy_wait_sec: 30,
            pass_env: Vec::new(),
        }
    }
}

impl CodingConfig {
    /// The task deadline.
    pub fn task_timeout(&self) -> Duration {
        Duration::from_secs(self.task_timeout_min.max(1).saturating_mul(60)).min(MAX_DEADLINE)
    }
    /// How long a task waits for a busy session.
    pub fn session_busy_wait(&self) -> Duration {
        Duration::from_secs(self.session_busy_wait_sec).min(MAX_DEADLINE)
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
}

/// Where environment variables come from (the process, or a map in tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
                    Error::config("HOME is not set; pass --config or set STN_CONFIG")
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
    /// redactor.
    pub fn load(explicit: Option<&Path>, env: EnvLookup<'_>) -> Result<LoadedConfig> {
        let (path, required) = Self::locate(explicit, env)?;
        let (config, found) = match crate::fsutil::read_text(&path, MAX_CONFIG_BYTES, "config file")
        {
            Ok(text) => (Self::parse(&text, Some(&path))?, true),
            Err(Error::NotFound { .. }) if !required => (Config::default(), false),
            Err(Error::NotFound { .. }) => {
                return Err(InputError::new("the config file does not exist")
                    .in_file(&path)
                    .hint("check the path given with --config or STN_CONFIG")
                    .into());
            }
            Err(e) => return Err(e),
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut loaded = LoadedConfig {
            config,
            path: found.then_some(path.clone()),
            dir,
            git_token: None,
            warnings: Vec::new(),
        };
        loaded.apply_env(env)?;
        loaded.resolve_secrets(env, &path)?;
        loaded.guard_secrets();
        Ok(loaded)
    }
}

impl LoadedConfig {
    /// Defaults, as if no file existed (for tests and embedding).
    pub fn defaults(dir: impl Into<PathBuf>) -> Self {
        LoadedConfig {
            config: Config::default(),
            path: None,
            dir: dir.into(),
            git_token: None,
            warnings: Vec::new(),
        }
    }

    /// Register the resolved secrets with the global redactor, and keep them (and the
    /// variables they came from) out of every child's environment.
    fn guard_secrets(&self) {
        let coding = &self.config.coding;
        for secret in [&self.git_token, &coding.opencode.password]
            .into_iter()
            .flatten()
        {
            Redactor::global().register(secret);
            ChildEnv::withhold_value(secret);
        }
        if let Some(var) = &coding.git.token_env {
            ChildEnv::withhold_var(var);
        }
        for var in ["OPENCODE_SERVER_PASSWORD", "STN_MCP_TOKEN"] {
            ChildEnv::withhold_var(var);
        }
        // A NATS URL may carry a user and password or a token.
        if coding.nats.url.contains('@') {
            ChildEnv::withhold_var("STN_NATS_URL");
        }
        for var in &coding.pass_env {
            ChildEnv::pass_var(var);
        }
    }

    fn apply_env(&mut self, env: EnvLookup<'_>) -> Result<()> {
        let coding = &mut self.config.coding;
        if let Some(b) = env("STN_CODING_BACKEND").filter(|v| !v.is_empty()) {
            coding.backend = b.parse().map_err(|e: Error| match e {
                Error::Config(mut ie) => {
                    ie.field = Some("STN_CODING_BACKEND".into());
                    Error::Config(ie)
                }
                other => other,
            })?;
        }
        if let Some(u) = env("STN_CODING_OPENCODE_URL").filter(|v| !v.is_empty()) {
            coding.opencode.url = u;
        }
        if let Some(u) = env("STN_NATS_URL").filter(|v| !v.is_empty()) {
            coding.nats.url = u;
        }
        let tls = &mut coding.nats.tls;
        for (var, file) in [
            ("STN_NATS_TLS_CA", &mut tls.ca_file),
            ("STN_NATS_TLS_CERT", &mut tls.cert_file),
            ("STN_NATS_TLS_KEY", &mut tls.key_file),
        ] {
            if let Some(path) = env(var).filter(|v| !v.is_empty()) {
                *file = Some(PathBuf::from(path));
            }
        }
        if let Some(u) = env("STN_AI_BASE_URL").filter(|v| !v.is_empty()) {
            self.config.ai_base_url = Some(u);
        }
        Ok(())
    }

    fn resolve_secrets(&mut self, env: EnvLookup<'_>, path: &Path) -> Result<()> {
        let git = &self.config.coding.git;
        let expand = |field: &str, value: &Secret| -> Result<Secret> {
            shellexpand::env_with_context(
                value.expose(),
                |var: &str| -> std::result::Result<Option<String>, String> {
                    match env(var) {
                        Some(v) => {
                            // A variable a secret came from is a secret too.
                            ChildEnv::withhold_var(var);
                            Ok(Some(v))
                        }
                        None => Err(var.to_string()),
                    }
                },
            )
            .map(|s| Secret::new(s.into_owned()))
            .map_err(|e| {
                InputError::new(format!("environment variable `{}` is not set", e.cause))
                    .in_file(path)
                    .field(field)
                    .hint(format!("export {} or change the value", e.var_name))
                    .into()
            })
        };
        let from_field = match &git.token {
            Some(t) => Some(expand("coding.git.token", t)?),
            None => None,
        };
        let from_env = match &git.token_env {
            Some(var) => match env(var).filter(|v| !v.is_empty()) {
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
            Redactor::global().register(token);
            ChildEnv::withhold_value(token);
        }
        if from_field.is_some() && from_env.is_some() {
            self.warnings.push(
                "both coding.git.token and coding.git.token_env are set; using token_env".into(),
            );
        }
        self.git_token = from_env.or(from_field).filter(|t| !t.is_empty());
        let password = match &self.config.coding.opencode.password {
            Some(p) => Some(expand("coding.opencode.password", p)?),
            None => env("OPENCODE_SERVER_PASSWORD")
                .filter(|v| !v.is_empty())
                .map(Secret::new),
        };
        self.config.coding.opencode.password = password;
        Ok(())
    }

    /// The directory of an environment's agents.
    pub fn agents_dir(&self, env: &str) -> PathBuf {
        self.dir.join("environments").join(env).join("agents")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<LoadedConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &env_of(env))
    }

    #[test]
    fn defaults_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let loaded = Config::load(None, &env_of(&[("HOME", home)])).unwrap();
        assert_eq!(loaded.path, None);
        assert_eq!(loaded.dir, dir.path().join(".config/station"));
        let c = &loaded.config.coding;
        assert_eq!(c.backend, BackendKind::Opencode);
        assert_eq!(c.opencode.url, "http://localhost:4096");
        assert_eq!(
            (c.claudecode.timeout_sec, c.claudecode.max_turns),
            (300, 10)
        );
        assert_eq!(
            (c.task_timeout_min, c.max_attempts, c.cli.timeout_sec),
            (10, 3, 300)
        );
        assert_eq!(c.nats.subjects.task, "station.coding.task");
    }

    #[test]
    fn lookup_order() {
        let (p, req) = Config::locate(
            None,
            &env_of(&[
                ("STN_CONFIG", "/a.yaml"),
                ("XDG_CONFIG_HOME", "/x"),
                ("HOME", "/h"),
            ]),
        )
        .unwrap();
        assert_eq!((p, req), (PathBuf::from("/a.yaml"), true));
        let (p, req) =
            Config::locate(None, &env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])).unwrap();
        assert_eq!((p, req), (PathBuf::from("/x/station/config.yaml"), false));
        let (p, _) = Config::locate(None, &env_of(&[("HOME", "/h")])).unwrap();
        assert_eq!(p, PathBuf::from("/h/.config/station/config.yaml"));
        let (p, _) = Config::locate(
            Some(Path::new("/c.yaml")),
            &env_of(&[("STN_CONFIG", "/a.yaml")]),
        )
        .unwrap();
        assert_eq!(p, PathBuf::from("/c.yaml"));
    }

    #[test]
    fn full_file_and_env_overrides() {
        let text = "coding:\n  backend: claudecode\n  claudecode:\n    timeout_sec: 60\n    max_turns: 4\n    model: claude-sonnet-4-5\n  cli:\n    binary_path: /opt/opencode\n  git:\n    token_env: GH\n    user_name: Bot\n  task_timeout_min: 20\nai_model: gpt-4o\n";
        let loaded = load_text(
            text,
            &[
                ("GH", "tok-123456789"),
                ("STN_CODING_OPENCODE_URL", "http://127.0.0.1:9999"),
                ("STN_AI_BASE_URL", "http://127.0.0.1:1/v1"),
            ],
        )
        .unwrap();
        let c = &loaded.config.coding;
        assert_eq!(c.backend, BackendKind::ClaudeCode);
        assert_eq!(c.claudecode.max_turns, 4);
        assert_eq!(c.cli.binary, "/opt/opencode");
        assert_eq!(c.opencode.url, "http://127.0.0.1:9999");
        assert_eq!(c.task_timeout(), Duration::from_secs(1200));
        assert_eq!(
            loaded.git_token.as_ref().map(Secret::expose),
            Some("tok-123456789")
        );
        assert_eq!(
            loaded.config.ai_base_url.as_deref(),
            Some("http://127.0.0.1:1/v1")
        );
        let backend_env = load_text(text, &[("STN_CODING_BACKEND", "opencode-cli")]).unwrap();
        assert_eq!(backend_env.config.coding.backend, BackendKind::OpencodeCli);
        let err = load_text(text, &[("STN_CODING_BACKEND", "claude")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STN_CODING_BACKEND") && err.contains("claudecode"),
            "{err}"
        );
    }

    #[test]
    fn token_expansion_and_redaction() {
        let token = format!("ghp_{}", "Z9y8".repeat(9));
        let loaded = load_text(
            "coding:\n  git:\n    token: ${GITHUB_TOKEN}\n",
            &[("GITHUB_TOKEN", &token)],
        )
        .unwrap();
        assert_eq!(loaded.git_token.as_ref().unwrap().expose(), token);
        let shown = serde_json::to_string(&loaded).unwrap();
        assert!(
            !shown.contains(&token) && !shown.contains("Z9y8"),
            "{shown}"
        );
        assert!(!format!("{loaded:?}").contains("Z9y8"));
        let err = load_text("coding:\n  git:\n    token: ${NOPE_TOKEN}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NOPE_TOKEN") && err.contains("coding.git.token"),
            "{err}"
        );
    }

    #[test]
    fn nats_tls_parses_with_env_overrides() {
        let text = "coding:\n  nats:\n    url: tls://127.0.0.1:4222\n    tls:\n      ca_file: /etc/ca.pem\n      cert_file: /etc/client.pem\n      key_file: /etc/client-key.pem\n      required: true\n";
        let loaded = load_text(text, &[]).unwrap();
        let tls = &loaded.config.coding.nats.tls;
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert!(tls.required);
        assert_eq!(
            tls.client_certificate().unwrap(),
            Some((
                Path::new("/etc/client.pem"),
                Path::new("/etc/client-key.pem")
            ))
        );
        let loaded = load_text(
            text,
            &[
                ("STN_NATS_TLS_CA", "/env/ca.pem"),
                ("STN_NATS_TLS_CERT", "/env/c.pem"),
                ("STN_NATS_TLS_KEY", "/env/k.pem"),
            ],
        )
        .unwrap();
        let tls = &loaded.config.coding.nats.tls;
        assert_eq!(
            (
                tls.ca_file.as_deref(),
                tls.cert_file.as_deref(),
                tls.key_file.as_deref()
            ),
            (
                Some(Path::new("/env/ca.pem")),
                Some(Path::new("/env/c.pem")),
                Some(Path::new("/env/k.pem"))
            )
        );
        let err = load_text("coding:\n  nats:\n    tls:\n      ca_flie: x\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("coding.nats.tls.ca_flie"), "{err}");
    }

    #[test]
    fn nats_tls_is_hidden_when_empty_and_needs_cert_and_key_together() {
        let shown = serde_json::to_value(Config::default()).unwrap();
        assert!(shown["coding"]["nats"].get("tls").is_none(), "{shown}");
        let tls = NatsTls {
            required: true,
            ..NatsTls::default()
        };
        assert_eq!(
            serde_json::to_value(&tls).unwrap(),
            serde_json::json!({"required": true})
        );
        assert_eq!(tls.client_certificate().unwrap(), None);
        let cert_only = NatsTls {
            cert_file: Some("/c.pem".into()),
            ..NatsTls::default()
        };
        let key_only = NatsTls {
            key_file: Some("/k.pem".into()),
            ..NatsTls::default()
        };
        for half in [cert_only, key_only] {
            let err = half.client_certificate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            let err = err.to_string();
            assert!(
                err.contains("coding.nats.tls.cert_file")
                    && err.contains("coding.nats.tls.key_file"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_located() {
        let err = load_text("coding:\n  backnd: opencode\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:3"), "{err}");
        assert!(
            err.contains("coding.backnd") && err.contains("did you mean `backend`"),
            "{err}"
        );
        let err = load_text("coding:\n  backend: opencode-http\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:") && err.contains("valid values"), "{err}");
        let err = load_text("coding:\n  claudecode:\n    max_turns: many\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":3:") && err.contains("coding.claudecode.max_turns"),
            "{err}"
        );
        let err = load_text("api_port: 8080\n", &[]).unwrap_err().to_string();
        assert!(err.contains("unknown key `api_port`"), "{err}");
    }

    #[test]
    fn deadlines_are_bounded_with_the_field_and_line() {
        let err = load_text(
            "coding:\n  cli:\n    timeout_sec: 9223372036854775807\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(":3:") && err.contains("coding.cli.timeout_sec") && err.contains("7 days"),
            "{err}"
        );
        let err = load_text("coding:\n  task_timeout_min: 18446744073709551615\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("coding.task_timeout_min") && err.contains("minutes"),
            "{err}"
        );
        let ok = load_text(
            "coding:\n  task_timeout_min: 10080\n  claudecode:\n    timeout_sec: 604800\n",
            &[],
        )
        .unwrap();
        assert_eq!(ok.config.coding.task_timeout(), MAX_DEADLINE);
    }

    #[test]
    fn config_files_must_be_small_regular_files() {
        let err = Config::load(Some(Path::new("/dev/zero")), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/zero") && err.contains("device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
        let err = Config::load(Some(&big), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than 1 MiB"), "{err}");
    }
}
