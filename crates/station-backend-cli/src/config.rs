//! `coding.cli`: this backend's config section, and its [`BackendFactory`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use station_core::config::{ConfigSection, LoadedConfig, deadline_secs};
use station_core::registry::{BackendFactory, section_json};
use station_core::{CodingBackend, Result};

use crate::{CliBackend, NAME};

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

impl ConfigSection for CliConfig {
    const KEY: &'static str = "cli";
}

/// Makes the `opencode-cli` backend from `coding.cli` and the station-wide settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CliFactory;

#[async_trait]
impl BackendFactory for CliFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn section(&self) -> &'static str {
        CliConfig::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        Ok(Arc::new(
            CliBackend::new(config.section::<CliConfig>()?)
                .with_workspace_base(config.config.coding.workspace_base())
                .with_policy(config.config.coding.policy.clone().unwrap_or_default()),
        ))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(Duration::from_secs(
            config.section::<CliConfig>()?.timeout_sec.max(1),
        ))
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&config.section::<CliConfig>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_core::config::Env;

    #[test]
    fn the_section_keeps_its_yaml_keys_and_located_errors() {
        let text = "coding:\n  backend: opencode-cli\n  cli:\n    binary_path: /opt/opencode\n    timeout_sec: 60\n";
        let loaded = LoadedConfig::from_text(text, None, Env::empty()).unwrap();
        let cli: CliConfig = loaded.section().unwrap();
        assert_eq!(
            (cli.binary.as_str(), cli.timeout_sec),
            ("/opt/opencode", 60)
        );
        assert_eq!(
            CliFactory.default_timeout(&loaded).unwrap(),
            Duration::from_secs(60)
        );
        let bad = "coding:\n  cli:\n    timeout_sec: 9223372036854775807\n";
        let loaded =
            LoadedConfig::from_text(bad, Some(std::path::Path::new("/c.yaml")), Env::empty())
                .unwrap();
        let err = loaded.section::<CliConfig>().unwrap_err().to_string();
        assert!(
            err.contains("/c.yaml:3:")
                && err.contains("coding.cli.timeout_sec")
                && err.contains("7 days"),
            "{err}"
        );
    }
}
