//! The real `opencode` CLI (`opencode run`, `opencode serve`) in an isolated HOME, pointed at the
//! scripted model.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use station_core::process::{ChildProcess, CommandSpec};

use super::{create_dirs, pair, path_var, peer_bin, with_env};
use crate::model_server::ScriptedModel;

/// The pinned OpenCode version (npm `opencode-ai`).
pub const OPENCODE_VERSION: &str = "1.18.33";

/// The model id `opencode_env` configures: provider `fake`, model `fake-model`.
pub const OPENCODE_MODEL: &str = "fake/fake-model";

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

/// How long `opencode serve` may take to listen and report healthy.
const OPENCODE_START_DEADLINE: Duration = Duration::from_secs(60);

/// The `opencode` binary: `$STN_TEST_OPENCODE`, else `<repo>/.tools/peers/node_modules/.bin/opencode`.
/// Panics with how to install it when missing.
pub fn opencode_bin() -> PathBuf {
    peer_bin("STN_TEST_OPENCODE", "opencode", OPENCODE_VERSION)
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
