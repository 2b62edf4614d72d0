//! `coding.codex`: this backend's config section, and its [`BackendFactory`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize};
use station_core::config::{ConfigSection, LoadedConfig, deadline_secs};
use station_core::registry::{BackendFactory, section_json};
use station_core::{CodingBackend, Result};

use crate::{CodexBackend, NAME};

/// Codex's sandbox for the commands the model runs (`-s` / `sandbox_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sandbox {
    /// Reads anywhere, writes nowhere: the agent cannot change the workspace.
    ReadOnly,
    /// Writes inside the workspace (and temp dirs) only.
    #[default]
    WorkspaceWrite,
    /// No sandbox at all; only inside a container or VM you are willing to let it change.
    DangerFullAccess,
}

impl Sandbox {
    /// The name Codex uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Sandbox::ReadOnly => "read-only",
            Sandbox::WorkspaceWrite => "workspace-write",
            Sandbox::DangerFullAccess => "danger-full-access",
        }
    }
}

/// `coding.codex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodexConfig {
    /// The `codex` binary.
    #[serde(alias = "binary_path")]
    pub binary: String,
    /// Per-task deadline in seconds (at most 7 days).
    #[serde(deserialize_with = "deadline_secs")]
    pub timeout_sec: u64,
    /// `--model`; Codex's own default (its `config.toml`) when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The sandbox for model-run commands (`workspace-write` by default).
    pub sandbox: Sandbox,
    /// Extra `-c key=value` overrides of Codex's `config.toml`, in order.
    #[serde(deserialize_with = "overrides", skip_serializing_if = "Vec::is_empty")]
    pub config_overrides: Vec<String>,
    /// `CODEX_HOME` for the child: where Codex keeps its login, config and sessions. Inherited
    /// (else `~/.codex`) when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codex_home: Option<PathBuf>,
}

impl Default for CodexConfig {
    fn default() -> Self {
        CodexConfig {
            binary: "codex".into(),
            timeout_sec: 600,
            model: None,
            sandbox: Sandbox::default(),
            config_overrides: Vec::new(),
            codex_home: None,
        }
    }
}

/// `config_overrides`: each `key=value` with a dotted key, as `codex -c` takes them.
fn overrides<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for entry in &list {
        let key = entry.split_once('=').map(|(k, _)| k.trim());
        let valid = key.is_some_and(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "{entry:?} is not a Codex config override: write `key=value` with a dotted key, e.g. `model_reasoning_effort=\"high\"`"
            )));
        }
    }
    Ok(list)
}

impl ConfigSection for CodexConfig {
    const KEY: &'static str = "codex";
}

/// Makes the `codex` backend from `coding.codex` and the station-wide settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodexFactory;

#[async_trait]
impl BackendFactory for CodexFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn section(&self) -> &'static str {
        CodexConfig::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        Ok(Arc::new(
            CodexBackend::new(config.section::<CodexConfig>()?)
                .with_workspace_base(config.config.coding.workspace_base())
                .with_policy(config.config.coding.policy.clone().unwrap_or_default()),
        ))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(Duration::from_secs(
            config.section::<CodexConfig>()?.timeout_sec.max(1),
        ))
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&config.section::<CodexConfig>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_core::config::Env;

    fn load(text: &str) -> LoadedConfig {
        LoadedConfig::from_text(text, Some(std::path::Path::new("/c.yaml")), Env::empty()).unwrap()
    }

    #[test]
    fn the_section_reads_its_keys_with_defaults() {
        let text = "coding:\n  backend: codex\n  codex:\n    timeout_sec: 60\n    model: gpt-5.5\n    sandbox: read-only\n    config_overrides: ['model_reasoning_effort=\"high\"']\n    codex_home: /srv/codex\n";
        let c: CodexConfig = load(text).section().unwrap();
        assert_eq!(c.timeout_sec, 60);
        assert_eq!(c.model.as_deref(), Some("gpt-5.5"));
        assert_eq!(c.sandbox, Sandbox::ReadOnly);
        assert_eq!(c.config_overrides, ["model_reasoning_effort=\"high\""]);
        assert_eq!(c.codex_home, Some(PathBuf::from("/srv/codex")));
        assert_eq!(
            CodexFactory.default_timeout(&load(text)).unwrap(),
            Duration::from_secs(60)
        );
        let c: CodexConfig = LoadedConfig::defaults("/tmp").section().unwrap();
        assert_eq!(c, CodexConfig::default());
        assert_eq!(c.sandbox.as_str(), "workspace-write");
    }

    #[test]
    fn bad_values_are_located_errors() {
        for (text, field, needle) in [
            (
                "coding:\n  codex:\n    sandbox: yolo\n",
                "coding.codex.sandbox",
                "workspace-write",
            ),
            (
                "coding:\n  codex:\n    config_overrides: [\"no equals sign\"]\n",
                "coding.codex.config_overrides",
                "key=value",
            ),
            (
                "coding:\n  codex:\n    modle: x\n",
                "coding.codex.modle",
                "model",
            ),
        ] {
            let err = load(text).section::<CodexConfig>().unwrap_err().to_string();
            assert!(
                err.contains("/c.yaml:3:") && err.contains(field) && err.contains(needle),
                "{err}"
            );
        }
    }
}
