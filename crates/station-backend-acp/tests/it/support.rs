//! Backends pointed at the real agents and the scripted model.

use std::collections::BTreeMap;
use std::path::Path;

use station_backend_acp::{AcpBackend, AcpConfig};
use station_core::Secret;
use station_testkit::model_server::ScriptedModel;
use station_testkit::peers::{
    CLAUDE_ENV_REMOVE, OPENCODE_ENV_REMOVE, claude_agent_acp_bin, claude_bin, claude_env,
    opencode_bin, opencode_env,
};

fn secret_env(pairs: Vec<(String, String)>) -> BTreeMap<String, Secret> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect()
}

/// `opencode acp` against `model`, in an isolated home under `root`.
pub(crate) fn opencode_config(root: &Path, model: &ScriptedModel) -> AcpConfig {
    AcpConfig {
        agent: "opencode".into(),
        binary: Some(opencode_bin().to_string_lossy().into_owned()),
        env: secret_env(opencode_env(&root.join("home-opencode"), model)),
        timeout_sec: 180,
        ..AcpConfig::default()
    }
}

/// `claude-agent-acp` running the pinned Claude Code against `model`.
pub(crate) fn claude_config(root: &Path, model: &ScriptedModel) -> AcpConfig {
    AcpConfig {
        agent: "claude".into(),
        binary: Some(claude_agent_acp_bin().to_string_lossy().into_owned()),
        claude_binary: Some(claude_bin().to_string_lossy().into_owned()),
        env: secret_env(claude_env(&root.join("home-claude"), model)),
        timeout_sec: 180,
        ..AcpConfig::default()
    }
}

pub(crate) fn opencode_backend(root: &Path, model: &ScriptedModel) -> AcpBackend {
    AcpBackend::new(opencode_config(root, model))
        .with_env_remove(OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(root.join("workspaces"))
}

pub(crate) fn claude_backend(root: &Path, model: &ScriptedModel) -> AcpBackend {
    AcpBackend::new(claude_config(root, model))
        .with_env_remove(CLAUDE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(root.join("workspaces"))
}
