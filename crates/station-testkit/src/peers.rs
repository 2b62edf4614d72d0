//! The real peers tests run against: the pinned `opencode`, `claude` and `gemini` CLIs (installed into
//! `<repo>/.tools/peers` by `cargo xtask install-peers`) and `nats-server`, each with an isolated
//! environment so no state leaks between tests or from the developer's machine.
//!
//! Missing binaries make the calling test **fail** with how to install them: CI installs them.

use std::path::{Path, PathBuf};

use station_core::process::CommandSpec;

mod claude;
mod codex;
mod gemini;
mod nats;
mod opencode;
pub use claude::*;
pub use codex::*;
pub use gemini::{
    GEMINI_ENV_REMOVE, GEMINI_VERSION, gemini_bin, gemini_command, gemini_env, gemini_settings,
};
pub use nats::*;
pub use opencode::*;

const INSTALL_PEERS: &str = "run `cargo xtask install-peers` (npm i opencode-ai@1.18.33 \
     @anthropic-ai/claude-code@2.1.197 @openai/codex@0.169.0 into <repo>/.tools/peers)";

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
