//! The real `gemini` CLI (Gemini CLI, a node bundle) in an isolated HOME, pointed at the
//! scripted model's Gemini API.

use std::path::{Path, PathBuf};

use serde_json::json;
use station_core::process::CommandSpec;

use super::{create_dirs, pair, path_var, peer_bin, with_env};
use crate::model_server::ScriptedModel;

/// The pinned Gemini CLI version (npm `@google/gemini-cli`).
pub const GEMINI_VERSION: &str = "0.61.0";

/// Variables removed from a `gemini` child's environment: other credentials and auth
/// switches of the developer's shell, which would send it elsewhere than the scripted model.
pub const GEMINI_ENV_REMOVE: &[&str] = &[
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_GCA",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_VERTEX_BASE_URL",
    "GEMINI_MODEL",
    "GEMINI_CLI_HOME",
    "GEMINI_CLI_SYSTEM_SETTINGS_PATH",
];

/// The `gemini` binary: `$STN_TEST_GEMINI`, else `<repo>/.tools/peers/node_modules/.bin/gemini`.
/// Panics with how to install it when missing.
pub fn gemini_bin() -> PathBuf {
    peer_bin("STN_TEST_GEMINI", "gemini", GEMINI_VERSION)
}

/// The `~/.gemini/settings.json` the tests use: API-key auth (with `GOOGLE_GEMINI_BASE_URL`
/// alone the CLI picks the `gateway` auth type and exits 41), no usage statistics, telemetry
/// or update checks.
pub fn gemini_settings() -> serde_json::Value {
    json!({
        "security": { "auth": { "selectedType": "gemini-api-key" } },
        "privacy": { "usageStatisticsEnabled": false },
        "telemetry": { "enabled": false },
        "general": { "disableAutoUpdate": true, "disableUpdateNag": true }
    })
}

/// Write `<home>/.gemini/settings.json` ([`gemini_settings`]) and return the isolated
/// environment for `gemini` against `model`: HOME under `home`, `GOOGLE_GEMINI_BASE_URL`, a
/// dummy `GEMINI_API_KEY`, no relaunch into a second node process, no colour, and PATH.
/// Remove [`GEMINI_ENV_REMOVE`] as well.
pub fn gemini_env(home: &Path, model: &ScriptedModel) -> Vec<(String, String)> {
    let gemini_dir = home.join(".gemini");
    create_dirs(&[home, &gemini_dir]);
    let settings = gemini_dir.join("settings.json");
    let text = serde_json::to_string_pretty(&gemini_settings()).unwrap_or_default();
    std::fs::write(&settings, text)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", settings.display()));
    vec![
        pair("HOME", home),
        pair("GOOGLE_GEMINI_BASE_URL", model.base_url()),
        pair("GEMINI_API_KEY", "dummy"),
        pair("GEMINI_CLI_NO_RELAUNCH", "true"),
        pair("NO_COLOR", "1"),
        path_var(),
    ]
}

/// `gemini` in `cwd` with `env` (from [`gemini_env`]), [`GEMINI_ENV_REMOVE`] removed and
/// `PWD=cwd`.
pub fn gemini_command(env: &[(String, String)], cwd: &Path) -> CommandSpec {
    with_env(CommandSpec::new(gemini_bin(), cwd), env, GEMINI_ENV_REMOVE)
        .install_hint("cargo xtask install-peers")
}
