//! `coding.acp`: this backend's config section, the agent presets (data, not code paths), and
//! its [`BackendFactory`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use station_core::config::{ConfigSection, LoadedConfig, deadline_secs};
use station_core::process::CommandSpec;
use station_core::registry::{BackendFactory, section_json};
use station_core::{CodingBackend, Error, InputError, Result, Secret};

use crate::{AcpBackend, NAME};

/// One known ACP agent: how to start it.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The name used in `coding.acp.agent`.
    pub name: &'static str,
    /// Program and arguments (the program is looked up on PATH unless `binary` is set).
    pub argv: &'static [&'static str],
    /// Environment the agent needs: `(variable, config field whose value it takes)`.
    pub env_from_config: &'static [(&'static str, &'static str)],
    /// How to install it.
    pub install_hint: &'static str,
    /// Environment the preset always gets, so that every decision `coding.policy` makes
    /// reaches Station as a permission request (the agent's own default would allow silently).
    pub env_fixed: &'static [(&'static str, &'static str)],
}

/// OpenCode asks the client about every edit, command, web request and path outside the
/// workspace; without this `opencode acp` allows them itself.
const OPENCODE_ASKS_EVERYTHING: &str =
    r#"{"edit":"ask","bash":"ask","webfetch":"ask","websearch":"ask","external_directory":"ask"}"#;

/// OpenCode ends the whole turn at the first denied tool call unless told to go on; a policy
/// denial should cost the model that one call, as with the other agents.
const OPENCODE_GOES_ON_AFTER_A_DENIAL: &str = r#"{"experimental":{"continue_loop_on_deny":true}}"#;

/// The agents Station knows how to start.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "opencode",
        argv: &["opencode", "acp"],
        env_from_config: &[],
        install_hint: "npm i -g opencode-ai",
        env_fixed: &[
            ("OPENCODE_PERMISSION", OPENCODE_ASKS_EVERYTHING),
            ("OPENCODE_CONFIG_CONTENT", OPENCODE_GOES_ON_AFTER_A_DENIAL),
        ],
    },
    Preset {
        name: "claude",
        argv: &["claude-agent-acp"],
        env_from_config: &[("CLAUDE_CODE_EXECUTABLE", "claude_binary")],
        install_hint: "npm i -g @zed-industries/claude-agent-acp",
        env_fixed: &[],
    },
    Preset {
        name: "gemini",
        argv: &["gemini", "--acp"],
        env_from_config: &[],
        install_hint: "npm i -g @google/gemini-cli",
        env_fixed: &[],
    },
    Preset {
        name: "codex",
        argv: &["codex-acp"],
        env_from_config: &[],
        install_hint: "npm i -g @zed-industries/codex-acp",
        env_fixed: &[],
    },
    Preset {
        name: "goose",
        argv: &["goose", "acp"],
        env_from_config: &[],
        install_hint: "see https://block.github.io/goose/ to install goose",
        env_fixed: &[],
    },
];

/// `coding.acp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcpConfig {
    /// A preset: `opencode`, `claude`, `gemini`, `codex` or `goose`. Ignored when `command` is set.
    pub agent: String,
    /// Program and arguments of any other ACP agent (instead of a preset).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The preset's program, when it is not on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// The `claude` binary claude-agent-acp runs (`CLAUDE_CODE_EXECUTABLE`); its bundled one
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claude_binary: Option<String>,
    /// Extra environment for the agent (values are never shown).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, Secret>,
    /// The model to select in each session (a session config option `model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How long the agent may take to start and answer `initialize`.
    #[serde(deserialize_with = "deadline_secs")]
    pub startup_timeout_sec: u64,
    /// Per-task deadline in seconds (at most 7 days).
    #[serde(deserialize_with = "deadline_secs")]
    pub timeout_sec: u64,
    /// How long a cancelled turn may take to end before the agent's process group is killed.
    #[serde(deserialize_with = "deadline_secs")]
    pub cancel_grace_sec: u64,
    /// The largest message the agent may send, in MiB.
    pub max_message_mb: u64,
}

impl Default for AcpConfig {
    fn default() -> Self {
        AcpConfig {
            agent: "opencode".into(),
            command: Vec::new(),
            binary: None,
            claude_binary: None,
            env: BTreeMap::new(),
            model: None,
            startup_timeout_sec: 60,
            timeout_sec: 600,
            cancel_grace_sec: 5,
            max_message_mb: 8,
        }
    }
}

impl ConfigSection for AcpConfig {
    const KEY: &'static str = "acp";
}

impl AcpConfig {
    /// The preset named by `agent`, or a config error listing the known ones.
    pub fn preset(&self) -> Result<&'static Preset> {
        let name = self.agent.trim();
        PRESETS
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                InputError::new(format!("unknown ACP agent `{name}`"))
                    .field("coding.acp.agent")
                    .hint(format!(
                        "use one of {}, or set coding.acp.command to the agent's argv",
                        known.join(", ")
                    ))
                    .into()
            })
    }

    /// What the agent is called in messages: the preset, or the command's program.
    pub fn agent_label(&self) -> String {
        match self.command.first() {
            Some(program) => Path::new(program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| program.clone()),
            None => self.agent.trim().to_string(),
        }
    }

    /// The command that starts the agent in `cwd`.
    pub fn command_spec(&self, cwd: &Path) -> Result<CommandSpec> {
        let mut spec = if let Some((program, args)) = self.command.split_first() {
            CommandSpec::new(program, cwd).args(args)
        } else {
            let preset = self.preset()?;
            let program = self.binary.clone().unwrap_or_else(|| preset.argv[0].into());
            let mut spec = CommandSpec::new(PathBuf::from(program), cwd)
                .args(&preset.argv[1..])
                .install_hint(preset.install_hint);
            for (var, value) in preset.env_fixed {
                spec = spec.env(var, value);
            }
            for (var, field) in preset.env_from_config {
                if let Some(value) = self.field_value(field) {
                    spec = spec.env(var, value);
                }
            }
            spec
        };
        for (key, value) in &self.env {
            spec = spec.env(key, value.expose());
        }
        Ok(spec.stdin_piped())
    }

    /// The preset's fixed environment (none for a `command`); it wins over removals of
    /// inherited variables.
    pub fn fixed_env(&self) -> &'static [(&'static str, &'static str)] {
        if self.command.is_empty() {
            self.preset().map_or(&[], |p| p.env_fixed)
        } else {
            &[]
        }
    }

    fn field_value(&self, field: &str) -> Option<&str> {
        match field {
            "claude_binary" => self.claude_binary.as_deref(),
            "model" => self.model.as_deref(),
            _ => None,
        }
    }

    /// Checks a loaded section can start an agent (preset known, command not empty).
    pub fn validate(&self) -> Result<()> {
        if self.command.is_empty() {
            self.preset()?;
        } else if self.command[0].trim().is_empty() {
            return Err(
                InputError::new("coding.acp.command starts with an empty program")
                    .field("coding.acp.command")
                    .hint("give the agent's program first, then its arguments")
                    .into(),
            );
        }
        if self.max_message_mb == 0 {
            return Err(Error::config(
                "coding.acp.max_message_mb must be at least 1",
            ));
        }
        Ok(())
    }

    /// `startup_timeout_sec` as a duration.
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_sec.max(1))
    }
}

/// Makes the `acp` backend from `coding.acp` and the station-wide settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcpFactory;

#[async_trait]
impl BackendFactory for AcpFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn section(&self) -> &'static str {
        AcpConfig::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        let section = config.section::<AcpConfig>()?;
        section.validate()?;
        Ok(Arc::new(
            AcpBackend::new(section)
                .with_workspace_base(config.config.coding.workspace_base())
                .with_policy(config.config.coding.policy.clone().unwrap_or_default()),
        ))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(Duration::from_secs(
            config.section::<AcpConfig>()?.timeout_sec.max(1),
        ))
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&config.section::<AcpConfig>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_core::config::Env;

    #[test]
    fn presets_are_data_and_commands_are_built_from_them() {
        let text = "coding:\n  backend: acp\n  acp:\n    agent: claude\n    claude_binary: /opt/claude\n    model: sonnet\n    startup_timeout_sec: 20\n";
        let loaded = LoadedConfig::from_text(text, None, Env::empty()).unwrap();
        let c: AcpConfig = loaded.section().unwrap();
        assert_eq!(c.startup_timeout(), Duration::from_secs(20));
        let spec = c.command_spec(Path::new("/tmp")).unwrap();
        assert_eq!(spec.program(), Path::new("claude-agent-acp"));
        let shown = format!("{spec:?}");
        assert!(shown.contains("CLAUDE_CODE_EXECUTABLE=…"), "{shown}");
        for (agent, argv) in [
            ("opencode", vec!["opencode", "acp"]),
            ("gemini", vec!["gemini", "--acp"]),
            ("codex", vec!["codex-acp"]),
            ("goose", vec!["goose", "acp"]),
        ] {
            let c = AcpConfig {
                agent: agent.into(),
                ..AcpConfig::default()
            };
            let spec = c.command_spec(Path::new("/tmp")).unwrap();
            let mut got = vec![spec.program().to_string_lossy().into_owned()];
            got.extend(
                spec.get_args()
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned()),
            );
            assert_eq!(got, argv, "{agent}");
        }
    }

    #[test]
    fn an_unknown_agent_names_the_field_and_the_presets() {
        let c = AcpConfig {
            agent: "copilot".into(),
            ..AcpConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("coding.acp.agent") && err.contains("opencode, claude, gemini"),
            "{err}"
        );
        let custom = AcpConfig {
            agent: "copilot".into(),
            command: vec!["my-agent".into(), "--acp".into()],
            ..AcpConfig::default()
        };
        custom.validate().unwrap();
        assert_eq!(custom.agent_label(), "my-agent");
    }

    #[test]
    fn env_values_are_never_shown() {
        let value = format!("sk-{}", "x".repeat(30));
        let text =
            format!("coding:\n  acp:\n    agent: opencode\n    env:\n      API_KEY: {value}\n");
        let loaded = LoadedConfig::from_text(&text, None, Env::empty()).unwrap();
        let shown = AcpFactory.show(&loaded).unwrap().to_string();
        assert!(!shown.contains(&value), "{shown}");
        let c: AcpConfig = loaded.section().unwrap();
        assert!(!format!("{c:?}").contains(&value));
    }
}
