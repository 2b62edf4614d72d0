//! The real `codex` CLI in an isolated HOME, pointed at the scripted model's Responses API.

use std::path::{Path, PathBuf};

use station_core::process::CommandSpec;

use super::{create_dirs, pair, path_var, peer_bin, with_env};
use crate::model_server::ScriptedModel;

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
