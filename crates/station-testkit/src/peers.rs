//! The real peers tests run against: the pinned `opencode`, `claude` and `gemini` CLIs (installed into
//! `<repo>/.tools/peers` by `cargo xtask install-peers`) and `nats-server`, each with an isolated
//! environment so no state leaks between tests or from the developer's machine.
//!
//! Missing binaries make the calling test **fail** with how to install them: CI installs them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use station_core::process::{ChildProcess, CommandSpec};

use crate::model_server::ScriptedModel;

mod gemini;
pub use gemini::{
    GEMINI_ENV_REMOVE, GEMINI_VERSION, gemini_bin, gemini_command, gemini_env, gemini_settings,
};

/// The pinned OpenCode version (npm `opencode-ai`).
pub const OPENCODE_VERSION: &str = "1.18.33";
/// The pinned Claude Code version (npm `@anthropic-ai/claude-code`).
pub const CLAUDE_VERSION: &str = "2.1.197";
/// The pinned Codex CLI version (npm `@openai/codex`).
pub const CODEX_VERSION: &str = "0.169.0";
/// The model `codex_env` configures: a slug from Codex's own catalogue, so Codex offers
/// `apply_patch` (with an unknown slug it falls back to shell writes and warns).
pub const CODEX_MODEL: &str = "gpt-5.5";
/// The variable `codex_env`'s provider reads its (dummy) API key from.
pub const CODEX_KEY_VAR: &str = "STN_TEST_CODEX_KEY";

/// Variables removed from a `codex` child's environment, so a developer's real credentials
/// and overrides never reach the test.
pub const CODEX_ENV_REMOVE: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CODEX_API_KEY",
    "CODEX_HOME",
];

/// The model id `opencode_env` configures: provider `fake`, model `fake-model`.
pub const OPENCODE_MODEL: &str = "fake/fake-model";

/// Variables removed from a `claude` child's environment, so a developer's real credentials
/// and overrides never reach the test.
pub const CLAUDE_ENV_REMOVE: &[&str] = &[
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_ENABLE_TELEMETRY",
];

/// Variables removed from an `opencode` child's environment (config overrides and server
/// credentials of the developer's shell).
pub const OPENCODE_ENV_REMOVE: &[&str] = &[
    "OPENCODE_CONFIG_CONTENT",
    "OPENCODE_CONFIG_DIR",
    "OPENCODE_PERMISSION",
    "OPENCODE_SERVER_PASSWORD",
    "OPENCODE_SERVER_USERNAME",
    "OPENCODE_DB",
];

const INSTALL_PEERS: &str = "run `cargo xtask install-peers` (npm i opencode-ai@1.18.33 \
     @anthropic-ai/claude-code@2.1.197 @openai/codex@0.169.0 into <repo>/.tools/peers)";

/// How long `opencode serve` may take to listen and report healthy.
const OPENCODE_START_DEADLINE: Duration = Duration::from_secs(60);
/// How long `nats-server` may take to accept connections.
const NATS_START_DEADLINE: Duration = Duration::from_secs(20);

/// The workspace root (`crates/station-testkit/../..`).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn peer_bin(env_var: &str, name: &str, version: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} does not exist; unset it or {INSTALL_PEERS}",
            path.display()
        );
        return path;
    }
    let path = repo_root()
        .join(".tools/peers/node_modules/.bin")
        .join(name);
    assert!(
        path.is_file(),
        "`{name}` {version} is not installed at {}: {INSTALL_PEERS}, or set {env_var} to its path",
        path.display()
    );
    path
}

/// The `opencode` binary: `$STN_TEST_OPENCODE`, else `<repo>/.tools/peers/node_modules/.bin/opencode`.
/// Panics with how to install it when missing.
pub fn opencode_bin() -> PathBuf {
    peer_bin("STN_TEST_OPENCODE", "opencode", OPENCODE_VERSION)
}

/// The `claude` binary: `$STN_TEST_CLAUDE`, else `<repo>/.tools/peers/node_modules/.bin/claude`.
/// Panics with how to install it when missing.
pub fn claude_bin() -> PathBuf {
    peer_bin("STN_TEST_CLAUDE", "claude", CLAUDE_VERSION)
}

/// The `claude-agent-acp` binary (ACP adapter for Claude Code):
/// `$STN_TEST_CLAUDE_AGENT_ACP`, else `<repo>/.tools/peers/node_modules/.bin/claude-agent-acp`.
/// Panics with how to install it when missing.
pub fn claude_agent_acp_bin() -> PathBuf {
    peer_bin("STN_TEST_CLAUDE_AGENT_ACP", "claude-agent-acp", "0.23.1")
}

/// The `nats-server` binary: `$STN_TEST_NATS_SERVER`, else the one on PATH. Panics with how
/// to install it when missing.
pub fn nats_server_bin() -> PathBuf {
    const HINT: &str =
        "install it with `apt-get install nats-server` (or set STN_TEST_NATS_SERVER)";
    if let Some(path) = std::env::var_os("STN_TEST_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "STN_TEST_NATS_SERVER={} does not exist; {HINT}",
            path.display()
        );
        return path;
    }
    CommandSpec::new("nats-server", repo_root())
        .resolve_program()
        .unwrap_or_else(|_| panic!("`nats-server` was not found on PATH: {HINT}"))
}

fn create_dirs(dirs: &[&Path]) {
    for dir in dirs {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
}

fn path_var() -> (String, String) {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    ("PATH".to_owned(), path)
}

fn pair(key: &str, value: impl AsRef<Path>) -> (String, String) {
    (
        key.to_owned(),
        value.as_ref().to_string_lossy().into_owned(),
    )
}

/// The `opencode.json` pointing OpenCode at `model` (provider `fake`, model `fake-model`,
/// edits and shell allowed without prompts).
pub fn opencode_config(model: &ScriptedModel) -> serde_json::Value {
    json!({
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted model",
                "options": { "baseURL": model.openai_base_url(), "apiKey": "dummy" },
                "models": { "fake-model": { "name": "Fake Model", "tool_call": true,
                                            "limit": { "context": 128000, "output": 4096 } } }
            }
        },
        "enabled_providers": ["fake"],
        "model": OPENCODE_MODEL,
        "small_model": OPENCODE_MODEL,
        "autoupdate": false,
        "share": "disabled",
        "permission": { "edit": "allow", "bash": "allow", "webfetch": "deny" }
    })
}

/// Write `<home>/opencode.json` for `model` and return the isolated environment for
/// `opencode`: HOME and XDG dirs under `home`, `OPENCODE_CONFIG`, the `OPENCODE_DISABLE_*`
/// switches, and PATH. Remove [`OPENCODE_ENV_REMOVE`] as well.
pub fn opencode_env(home: &Path, model: &ScriptedModel) -> Vec<(String, String)> {
    let config = home.join(".config");
    let data = home.join(".local/share");
    let cache = home.join(".cache");
    let state = home.join(".local/state");
    create_dirs(&[home, &config, &data, &cache, &state]);
    let config_file = home.join("opencode.json");
    let text = serde_json::to_string_pretty(&opencode_config(model)).unwrap_or_default();
    std::fs::write(&config_file, text)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_file.display()));
    let mut env = vec![
        pair("HOME", home),
        pair("XDG_CONFIG_HOME", &config),
        pair("XDG_DATA_HOME", &data),
        pair("XDG_CACHE_HOME", &cache),
        pair("XDG_STATE_HOME", &state),
        pair("OPENCODE_CONFIG", &config_file),
    ];
    for switch in [
        "OPENCODE_DISABLE_MODELS_FETCH",
        "OPENCODE_DISABLE_AUTOUPDATE",
        "OPENCODE_DISABLE_LSP_DOWNLOAD",
        "OPENCODE_DISABLE_SHARE",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS",
        "OPENCODE_DISABLE_CLAUDE_CODE",
    ] {
        env.push(pair(switch, "1"));
    }
    env.push(path_var());
    env
}

/// Whether this process runs as root (Claude then needs `IS_SANDBOX=1` to accept
/// `--dangerously-skip-permissions`).
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The isolated environment for `claude` against `model`: HOME, CLAUDE_CONFIG_DIR and
/// XDG_CONFIG_HOME under `home`, `ANTHROPIC_BASE_URL`, a dummy API key, `IS_SANDBOX=1` when
/// root, telemetry/updater/error reporting/non-essential traffic off, and PATH. Remove
/// [`CLAUDE_ENV_REMOVE`] as well.
pub fn claude_env(home: &Path, model: &ScriptedModel) -> Vec<(String, String)> {
    let claude_dir = home.join(".claude");
    let config = home.join(".config");
    create_dirs(&[home, &claude_dir, &config]);
    let mut env = vec![
        pair("HOME", home),
        pair("CLAUDE_CONFIG_DIR", &claude_dir),
        pair("XDG_CONFIG_HOME", &config),
        pair("ANTHROPIC_BASE_URL", model.base_url()),
        pair("ANTHROPIC_API_KEY", "dummy"),
    ];
    if running_as_root() {
        env.push(pair("IS_SANDBOX", "1"));
    }
    for switch in [
        "DISABLE_TELEMETRY",
        "DISABLE_AUTOUPDATER",
        "DISABLE_ERROR_REPORTING",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    ] {
        env.push(pair(switch, "1"));
    }
    env.push(path_var());
    env
}

/// `$CODEX_HOME/config.toml` pointing Codex at `model`: provider `fake` speaking the Responses
/// API, model [`CODEX_MODEL`], no update check, analytics off.
pub fn codex_config(model: &ScriptedModel) -> String {
    format!(
        "model = \"{CODEX_MODEL}\"\nmodel_provider = \"fake\"\ncheck_for_update_on_startup = false\n\n\
         [model_providers.fake]\nname = \"Scripted model\"\nbase_url = \"{}\"\n\
         wire_api = \"responses\"\nenv_key = \"{CODEX_KEY_VAR}\"\n\n[analytics]\nenabled = false\n",
        model.openai_base_url()
    )
}

/// Write `<home>/codex/config.toml` for `model` and return the isolated environment for
/// `codex`: HOME under `home`, `CODEX_HOME=<home>/codex`, the dummy key in [`CODEX_KEY_VAR`],
/// and PATH. Remove [`CODEX_ENV_REMOVE`] as well (`CODEX_HOME` is then set from `env`).
pub fn codex_env(home: &Path, model: &ScriptedModel) -> Vec<(String, String)> {
    let codex_home = home.join("codex");
    create_dirs(&[home, &codex_home]);
    let config_file = codex_home.join("config.toml");
    std::fs::write(&config_file, codex_config(model))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_file.display()));
    vec![
        pair("HOME", home),
        pair("CODEX_HOME", &codex_home),
        pair(CODEX_KEY_VAR, "dummy"),
        path_var(),
    ]
}

/// The `codex` binary: `$STN_TEST_CODEX`, else `<repo>/.tools/peers/node_modules/.bin/codex`.
/// Panics with how to install it when missing.
pub fn codex_bin() -> PathBuf {
    peer_bin("STN_TEST_CODEX", "codex", CODEX_VERSION)
}

/// `codex` in `cwd` with `env` (from [`codex_env`]), [`CODEX_ENV_REMOVE`] removed and `PWD=cwd`.
pub fn codex_command(env: &[(String, String)], cwd: &Path) -> CommandSpec {
    with_env(CommandSpec::new(codex_bin(), cwd), env, CODEX_ENV_REMOVE)
        .install_hint("cargo xtask install-peers")
}

/// `env` applied to `spec`, `remove` removed, and PWD set to the working directory: OpenCode
/// takes its project directory from `$PWD`, so an inherited PWD would point it elsewhere.
fn with_env(mut spec: CommandSpec, env: &[(String, String)], remove: &[&str]) -> CommandSpec {
    for key in remove {
        spec = spec.env_remove(key);
    }
    for (key, value) in env {
        spec = spec.env(key, value);
    }
    let cwd = spec.cwd().to_path_buf();
    spec.env("PWD", cwd)
}

/// `opencode` in `cwd` with `env` (from [`opencode_env`]), [`OPENCODE_ENV_REMOVE`] removed and
/// `PWD=cwd` (OpenCode resolves its directory from `$PWD`, not from the process cwd).
pub fn opencode_command(env: &[(String, String)], cwd: &Path) -> CommandSpec {
    with_env(
        CommandSpec::new(opencode_bin(), cwd),
        env,
        OPENCODE_ENV_REMOVE,
    )
    .install_hint("cargo xtask install-peers")
}

/// `claude` in `cwd` with `env` (from [`claude_env`]), [`CLAUDE_ENV_REMOVE`] removed and `PWD=cwd`.
pub fn claude_command(env: &[(String, String)], cwd: &Path) -> CommandSpec {
    with_env(CommandSpec::new(claude_bin(), cwd), env, CLAUDE_ENV_REMOVE)
        .install_hint("cargo xtask install-peers")
}

/// A running `opencode serve` on 127.0.0.1; its process group is killed on drop.
#[derive(Debug)]
pub struct OpencodeServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    child: ChildProcess,
}

impl OpencodeServer {
    /// Run `opencode serve --hostname 127.0.0.1 --port 0` in `cwd` with `env`, wait for its
    /// "listening on" line and a healthy `GET /global/health`. Panics (with its stderr) when it
    /// does not come up within 60 s.
    pub async fn start(env: &[(String, String)], cwd: &Path) -> OpencodeServer {
        Self::start_on_port(env, cwd, 0).await
    }

    /// [`start`](Self::start) on a given port (0: any free one).
    pub async fn start_on_port(env: &[(String, String)], cwd: &Path, port: u16) -> OpencodeServer {
        let port = port.to_string();
        let spec = opencode_command(env, cwd).args([
            "serve",
            "--hostname",
            "127.0.0.1",
            "--port",
            port.as_str(),
        ]);
        let mut child = spec
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `opencode serve`: {e}"));
        let mut lines = child.take_stdout_lines().expect("stdout is piped");
        let deadline = tokio::time::Instant::now() + OPENCODE_START_DEADLINE;
        let port = loop {
            let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None) | Err(_)) => {
                    let stderr = child.final_stderr_tail().await;
                    panic!("`opencode serve` exited before listening; stderr: {stderr}");
                }
                Err(_) => {
                    let stderr = child.stderr_tail();
                    panic!(
                        "`opencode serve` did not listen within {OPENCODE_START_DEADLINE:?}; stderr: {stderr}"
                    );
                }
            };
            if let Some(port) = listening_port(&line) {
                break port;
            }
        };
        // Keep reading stdout so a full pipe never blocks the server; the task ends with it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let url = format!("http://127.0.0.1:{port}");
        wait_healthy(&url, deadline, &child).await;
        OpencodeServer { url, port, child }
    }

    /// The server's pid (also its process group).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// SIGTERM the group, then SIGKILL after 2 s.
    pub async fn stop(mut self) {
        self.child.terminate(Duration::from_secs(2)).await;
    }
}

/// The port in `opencode server listening on http://127.0.0.1:PORT`.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on http://127.0.0.1:").nth(1)?;
    rest.trim().trim_end_matches('/').parse().ok()
}

async fn wait_healthy(url: &str, deadline: tokio::time::Instant, child: &ChildProcess) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .expect("a plain HTTP client builds");
    let health = format!("{url}/global/health");
    let mut last = String::new();
    // Bounded by `deadline`.
    while tokio::time::Instant::now() < deadline {
        match client.get(&health).send().await {
            Ok(response) if response.status().is_success() => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if body["healthy"] == true {
                    return;
                }
                last = format!("unhealthy answer {body}");
            }
            Ok(response) => last = format!("HTTP {}", response.status()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "`opencode serve` at {url} was not healthy in time ({last}); stderr: {}",
        child.stderr_tail()
    );
}

/// A running `nats-server -js` on 127.0.0.1 with a temporary store; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    /// `nats://127.0.0.1:PORT` (`tls://` for [`NatsServer::start_tls`]).
    pub url: String,
    /// The client port (kept across restarts).
    pub port: u16,
    store: tempfile::TempDir,
    /// The server config file (TLS), kept across restarts.
    config_file: Option<PathBuf>,
    child: Option<ChildProcess>,
}

impl NatsServer {
    /// Start on a port the server picks, with JetStream and a fresh store directory. Panics
    /// when it does not accept connections within 20 s.
    pub async fn start() -> NatsServer {
        let store = tempfile::tempdir().expect("a temporary store directory");
        let child = spawn_nats(store.path(), None, None);
        let port = wait_for_port(&child).await;
        wait_accepting(port, &child).await;
        NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
            config_file: None,
            child: Some(child),
        }
    }

    /// Like [`NatsServer::start`], but clients must use TLS with the server certificate of
    /// `tls`; with `verify_clients` they must also present a certificate signed by its CA
    /// (mutual TLS). The URL is `tls://127.0.0.1:PORT`.
    pub async fn start_tls(tls: &TlsFiles, verify_clients: bool) -> NatsServer {
        let store = tempfile::tempdir().expect("a temporary store directory");
        // nats-server's config syntax takes JSON strings.
        let quoted = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("a string");
        let config = format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify_clients}\n  timeout: 5\n}}\n",
            quoted(&tls.server_cert),
            quoted(&tls.server_key),
            quoted(&tls.ca_file),
        );
        let config_file = store.path().join("nats-server.conf");
        std::fs::write(&config_file, config).expect("write the nats-server config");
        let child = spawn_nats(store.path(), None, Some(&config_file));
        let port = wait_for_port(&child).await;
        wait_accepting(port, &child).await;
        NatsServer {
            url: format!("tls://127.0.0.1:{port}"),
            port,
            store,
            config_file: Some(config_file),
            child: Some(child),
        }
    }

    /// Like [`NatsServer::start`], but in operator mode (decentralised JWT auth): only users
    /// of the account in `creds` get in, with a `.creds` file ([`NatsCreds::creds_file`]).
    pub async fn start_with_accounts(creds: &NatsCreds) -> NatsServer {
        let store = tempfile::tempdir().expect("a temporary store directory");
        let quoted = |s: &str| serde_json::to_string(s).expect("a string");
        let config = format!(
            "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {}\n  {}: {}\n}}\n",
            quoted(&creds.operator_jwt),
            quoted(&creds.system_account),
            quoted(&creds.system_account),
            quoted(&creds.system_account_jwt),
            quoted(&creds.account),
            quoted(&creds.account_jwt),
        );
        let config_file = store.path().join("nats-server.conf");
        std::fs::write(&config_file, config).expect("write the nats-server config");
        let child = spawn_nats(store.path(), None, Some(&config_file));
        let port = wait_for_port(&child).await;
        wait_accepting(port, &child).await;
        NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store,
            config_file: Some(config_file),
            child: Some(child),
        }
    }

    /// Stop the server (SIGTERM, then SIGKILL after 2 s). [`NatsServer::restart`] brings it back.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(2)).await;
        }
    }

    /// Stop the server and start it again on the same port and store directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let child = spawn_nats(
            self.store.path(),
            Some(self.port),
            self.config_file.as_deref(),
        );
        wait_accepting(self.port, &child).await;
        self.child = Some(child);
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }
}

fn spawn_nats(store: &Path, port: Option<u16>, config_file: Option<&Path>) -> ChildProcess {
    let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
    let mut command = CommandSpec::new(nats_server_bin(), store);
    if let Some(config_file) = config_file {
        command = command.arg("-c").arg(config_file);
    }
    // Flags after `-c` override the file.
    command
        .args(["-js", "-a", "127.0.0.1", "-p", &port, "--store_dir"])
        .arg(store)
        .install_hint("apt-get install nats-server")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"))
}

/// Throwaway NATS decentralised-auth material made at run time: an operator, a system account,
/// an account with JetStream, a user of it (as a `.creds` file), and a user of an account the
/// server does not know. Files in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct NatsCreds {
    /// A user of the server's account: JWT and seed, in the format `nsc` writes.
    pub creds_file: PathBuf,
    /// A user of an account the server does not know (it must be refused).
    pub stranger_creds_file: PathBuf,
    operator_jwt: String,
    system_account: String,
    system_account_jwt: String,
    account: String,
    account_jwt: String,
    _dir: tempfile::TempDir,
}

impl NatsCreds {
    /// Generate fresh keys and JWTs (panics if that fails).
    pub fn generate() -> NatsCreds {
        use nkeys::KeyPair;
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let stranger_account = KeyPair::new_account();
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
        });
        let account_claims = |name: &str, jetstream: bool| {
            let mut limits = unlimited.clone();
            if !jetstream {
                for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
                    limits[k] = 0.into();
                }
            }
            serde_json::json!({"limits": limits, "type": "account", "version": 2, "name": name})
        };
        let user_claims = serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        });
        let operator_jwt = nats_jwt(
            &operator,
            &operator.public_key(),
            "test-operator",
            serde_json::json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
        );
        let system_account_jwt = nats_jwt(
            &operator,
            &system.public_key(),
            "SYS",
            account_claims("SYS", false),
        );
        let account_jwt = nats_jwt(
            &operator,
            &account.public_key(),
            "station",
            account_claims("station", true),
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write_user = |issuer: &KeyPair, file: &str| {
            let user = KeyPair::new_user();
            let jwt = nats_jwt(
                issuer,
                &user.public_key(),
                "station-user",
                user_claims.clone(),
            );
            let seed = user.seed().expect("a user seed");
            let creds = format!(
                "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\
                 NKEY Seed printed below can be used to sign and prove identity.\n\
                 NKEYs are sensitive and should be treated as secrets.\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
                 *************************************************************\n"
            );
            let path = dir.path().join(file);
            std::fs::write(&path, creds).expect("write a creds file");
            path
        };
        let creds_file = write_user(&account, "station.creds");
        let stranger_creds_file = write_user(&stranger_account, "stranger.creds");
        NatsCreds {
            creds_file,
            stranger_creds_file,
            operator_jwt,
            system_account: system.public_key(),
            system_account_jwt,
            account: account.public_key(),
            account_jwt,
            _dir: dir,
        }
    }
}

/// A NATS JWT (`ed25519-nkey`) for `subject`, signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let jti = format!("{:X}{:X}", now, std::process::id()) + &subject[1..20];
    let claims = serde_json::json!({
        "jti": jti, "iat": now, "iss": issuer.public_key(), "name": name, "sub": subject,
        "nats": nats
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signature = issuer
        .sign(signing_input.as_bytes())
        .expect("an nkey signature");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Throwaway TLS material made at run time: a CA, a server certificate for `127.0.0.1` and
/// `localhost` and a client certificate, both signed by the CA, plus an unrelated CA. PEM
/// files in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca_file: PathBuf,
    /// A CA that signed nothing here (trusting it alone must fail).
    pub other_ca_file: PathBuf,
    /// The server certificate (SANs `127.0.0.1`, `localhost`).
    pub server_cert: PathBuf,
    /// The server certificate's key.
    pub server_key: PathBuf,
    /// A client certificate for mutual TLS.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Generate fresh keys and certificates (panics if that fails).
    pub fn generate() -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };

        fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().expect("a CA key");
            let cert = params.self_signed(&key).expect("a self-signed CA");
            (cert.pem(), Issuer::new(params, key))
        }

        fn leaf(
            names: &[&str],
            usage: ExtendedKeyUsagePurpose,
            issuer: &Issuer<'static, KeyPair>,
        ) -> (String, String) {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let mut params = CertificateParams::new(names.clone()).expect("leaf params");
            params.distinguished_name.push(
                DnType::CommonName,
                names.first().cloned().unwrap_or_default(),
            );
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().expect("a leaf key");
            let cert = params.signed_by(&key, issuer).expect("a signed leaf");
            (cert.pem(), key.serialize_pem())
        }

        let dir = tempfile::tempdir().expect("a temporary TLS directory");
        let (ca_pem, issuer) = ca("Station test CA");
        let (other_ca_pem, _) = ca("Station unrelated CA");
        let (server_pem, server_key) = leaf(
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let (client_pem, client_key) = leaf(
            &["station-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        );
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
            path
        };
        TlsFiles {
            ca_file: write("ca.pem", &ca_pem),
            other_ca_file: write("other-ca.pem", &other_ca_pem),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client-key.pem", &client_key),
            _dir: dir,
        }
    }
}

/// The port from `Listening for client connections on 127.0.0.1:PORT` in the server's log.
async fn wait_for_port(child: &ChildProcess) -> u16 {
    const MARK: &str = "Listening for client connections on 127.0.0.1:";
    let deadline = tokio::time::Instant::now() + NATS_START_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let log = child.stderr_tail();
        if let Some(port) = log.split(MARK).nth(1).and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        }) {
            return port;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "nats-server did not report its port within {NATS_START_DEADLINE:?}; log: {}",
        child.stderr_tail()
    );
}

pub(crate) async fn wait_accepting(port: u16, child: &ChildProcess) {
    let deadline = tokio::time::Instant::now() + NATS_START_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "nats-server on port {port} did not accept connections within {NATS_START_DEADLINE:?}; log: {}",
        child.stderr_tail()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_gives_the_port() {
        assert_eq!(
            listening_port("opencode server listening on http://127.0.0.1:4096"),
            Some(4096)
        );
        assert_eq!(
            listening_port("opencode server listening on http://127.0.0.1:51234/\r"),
            Some(51234)
        );
        assert_eq!(listening_port("something else"), None);
    }
}
