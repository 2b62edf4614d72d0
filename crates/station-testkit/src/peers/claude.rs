//! The real `claude` CLI (Claude Code) and `claude-agent-acp` in an isolated HOME, pointed at the
//! scripted model's Anthropic API.

use std::path::{Path, PathBuf};

use station_core::process::CommandSpec;

use super::{create_dirs, pair, path_var, peer_bin, with_env};
use crate::model_server::ScriptedModel;

/// The pinned Claude Code version (npm `@anthropic-ai/claude-code`).
pub const CLAUDE_VERSION: &str = "2.1.197";

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

/// `claude` in `cwd` with `env` (from [`claude_env`]), [`CLAUDE_ENV_REMOVE`] removed and `PWD=cwd`.
pub fn claude_command(env: &[(String, String)], cwd: &Path) -> CommandSpec {
    with_env(CommandSpec::new(claude_bin(), cwd), env, CLAUDE_ENV_REMOVE)
        .install_hint("cargo xtask install-peers")
}
