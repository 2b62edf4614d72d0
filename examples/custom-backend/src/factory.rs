//! `coding.command`: this backend's config section, and the factory that makes it selectable
//! by name in any binary that composes a [`BackendRegistry`](station_core::registry::BackendRegistry).
//!
//! ```yaml
//! coding:
//!   backend: command
//!   command:
//!     argv: [opencode, run]          # program and arguments; the prompt goes to stdin
//!     env: { NO_COLOR: "1" }         # extra environment (values may be secrets: never shown)
//!     tool_line: '^\s*← (?P<tool>\S+)'
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};
use station_core::config::{ConfigSection, LoadedConfig};
use station_core::registry::BackendFactory;
use station_core::{CodingBackend, InputError, Result};

use crate::{CommandBackend, CommandConfig, NAME};

/// `coding.command`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandSection {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Extra environment for the agent.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Inherited variables to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_remove: Vec<String>,
    /// A regex for stdout lines that announce a tool call (capture group `tool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_line: Option<String>,
}

impl std::fmt::Debug for CommandSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSection")
            .field("argv", &self.argv)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("env_remove", &self.env_remove)
            .field("tool_line", &self.tool_line)
            .finish()
    }
}

impl ConfigSection for CommandSection {
    const KEY: &'static str = "command";
}

impl CommandSection {
    /// The backend's config: the regex compiled, with an error naming the field.
    pub fn to_config(&self) -> Result<CommandConfig> {
        let tool_line = match &self.tool_line {
            Some(pattern) => Some(Regex::new(pattern).map_err(|e| {
                InputError::new(format!("`{pattern}` is not a valid regex: {e}"))
                    .field("coding.command.tool_line")
                    .hint("use a regex with a capture group named `tool`")
            })?),
            None => None,
        };
        Ok(CommandConfig {
            argv: self.argv.clone(),
            env: self.env.clone().into_iter().collect(),
            env_remove: self.env_remove.clone(),
            tool_line,
        })
    }
}

/// Makes the `command` backend from `coding.command`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandFactory;

#[async_trait]
impl BackendFactory for CommandFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn section(&self) -> &'static str {
        CommandSection::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        let section: CommandSection = config.section()?;
        Ok(Arc::new(
            CommandBackend::new(section.to_config()?)?
                .with_workspace_base(config.config.coding.workspace_base()),
        ))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(config.config.coding.task_timeout())
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        let mut section: CommandSection = config.section()?;
        // Environment values may be credentials.
        for value in section.env.values_mut() {
            *value = station_core::redact::REDACTED.to_string();
        }
        Ok(serde_json::to_value(section).unwrap_or_default())
    }
}
