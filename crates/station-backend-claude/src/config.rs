//! `coding.claudecode`: this backend's config section, and its [`BackendFactory`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use station_core::config::{ConfigSection, LoadedConfig, deadline_secs};
use station_core::registry::{BackendFactory, section_json};
use station_core::{CodingBackend, Result};

use crate::{ClaudeBackend, NAME};

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

impl ConfigSection for ClaudeConfig {
    const KEY: &'static str = "claudecode";
}

/// Makes the `claudecode` backend from `coding.claudecode` and the station-wide settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaudeFactory;

#[async_trait]
impl BackendFactory for ClaudeFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn section(&self) -> &'static str {
        ClaudeConfig::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        Ok(Arc::new(
            ClaudeBackend::new(config.section::<ClaudeConfig>()?)
                .with_workspace_base(config.config.coding.workspace_base())
                .with_policy(config.config.coding.policy.clone().unwrap_or_default()),
        ))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(Duration::from_secs(
            config.section::<ClaudeConfig>()?.timeout_sec.max(1),
        ))
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&config.section::<ClaudeConfig>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_core::config::Env;

    #[test]
    fn the_section_keeps_its_yaml_keys_and_located_errors() {
        let text = "coding:\n  backend: claudecode\n  claudecode:\n    timeout_sec: 60\n    max_turns: 4\n    model: claude-sonnet-4-5\n";
        let loaded = LoadedConfig::from_text(text, None, Env::empty()).unwrap();
        let c: ClaudeConfig = loaded.section().unwrap();
        assert_eq!((c.timeout_sec, c.max_turns), (60, 4));
        assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(
            ClaudeFactory.default_timeout(&loaded).unwrap(),
            Duration::from_secs(60)
        );
        let defaults = LoadedConfig::defaults("/tmp");
        let c: ClaudeConfig = defaults.section().unwrap();
        assert_eq!((c.timeout_sec, c.max_turns), (300, 10));
        let bad = "coding:\n  claudecode:\n    max_turns: many\n";
        let loaded =
            LoadedConfig::from_text(bad, Some(std::path::Path::new("/c.yaml")), Env::empty())
                .unwrap();
        let err = loaded.section::<ClaudeConfig>().unwrap_err().to_string();
        assert!(
            err.contains("/c.yaml:3:") && err.contains("coding.claudecode.max_turns"),
            "{err}"
        );
    }
}
