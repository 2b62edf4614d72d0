//! `coding.gemini`: this backend's config section, and its [`BackendFactory`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use station_core::config::{ConfigSection, LoadedConfig, deadline_secs};
use station_core::registry::{BackendFactory, section_json};
use station_core::{CodingBackend, Result};

use crate::{GeminiBackend, NAME};

/// `--approval-mode`: which tool calls the CLI runs without asking. Headless, nobody can
/// answer a question, so a call that needs approval is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Every tool runs (the only mode in which the agent can edit and run commands headless).
    #[default]
    Yolo,
    /// Edits run; shell commands and other tools are refused.
    AutoEdit,
    /// Tools that change anything are refused.
    Default,
    /// Read-only planning.
    Plan,
}

impl ApprovalMode {
    /// The CLI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Yolo => "yolo",
            ApprovalMode::AutoEdit => "auto_edit",
            ApprovalMode::Default => "default",
            ApprovalMode::Plan => "plan",
        }
    }
}

/// `coding.gemini`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeminiConfig {
    /// The `gemini` binary.
    #[serde(alias = "binary_path")]
    pub binary: String,
    /// `--model` (the CLI routes between its own models when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `--approval-mode`.
    pub approval_mode: ApprovalMode,
    /// Per-task deadline in seconds (at most 7 days).
    #[serde(deserialize_with = "deadline_secs")]
    pub timeout_sec: u64,
    /// The directory that holds the CLI's `.gemini/` (settings, login, sessions), passed as
    /// `GEMINI_CLI_HOME`; unset, the CLI uses the user's home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        GeminiConfig {
            binary: "gemini".into(),
            model: None,
            approval_mode: ApprovalMode::Yolo,
            timeout_sec: 300,
            home: None,
        }
    }
}

impl ConfigSection for GeminiConfig {
    const KEY: &'static str = "gemini";
}

/// Makes the `gemini` backend from `coding.gemini` and the station-wide settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct GeminiFactory;

#[async_trait]
impl BackendFactory for GeminiFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn section(&self) -> &'static str {
        GeminiConfig::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        Ok(Arc::new(
            GeminiBackend::new(config.section::<GeminiConfig>()?)
                .with_workspace_base(config.config.coding.workspace_base())
                .with_policy(config.config.coding.policy.clone().unwrap_or_default()),
        ))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(Duration::from_secs(
            config.section::<GeminiConfig>()?.timeout_sec.max(1),
        ))
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&config.section::<GeminiConfig>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_core::config::Env;

    #[test]
    fn the_section_reads_its_keys_with_defaults_and_located_errors() {
        let text = "coding:\n  backend: gemini\n  gemini:\n    timeout_sec: 60\n    model: gemini-3.8-flash\n    approval_mode: auto_edit\n    home: /srv/gemini\n";
        let loaded = LoadedConfig::from_text(text, None, Env::empty()).unwrap();
        let c: GeminiConfig = loaded.section().unwrap();
        assert_eq!(c.timeout_sec, 60);
        assert_eq!(c.model.as_deref(), Some("gemini-3.8-flash"));
        assert_eq!(c.approval_mode, ApprovalMode::AutoEdit);
        assert_eq!(c.home, Some(PathBuf::from("/srv/gemini")));
        assert_eq!(
            GeminiFactory.default_timeout(&loaded).unwrap(),
            Duration::from_secs(60)
        );
        let defaults: GeminiConfig = LoadedConfig::defaults("/tmp").section().unwrap();
        assert_eq!(defaults, GeminiConfig::default());
        assert_eq!(defaults.approval_mode.as_str(), "yolo");
        let bad = "coding:\n  gemini:\n    approval_mode: always\n";
        let loaded =
            LoadedConfig::from_text(bad, Some(std::path::Path::new("/c.yaml")), Env::empty())
                .unwrap();
        let err = loaded.section::<GeminiConfig>().unwrap_err().to_string();
        assert!(
            err.contains("/c.yaml:3:") && err.contains("coding.gemini.approval_mode"),
            "{err}"
        );
    }
}
