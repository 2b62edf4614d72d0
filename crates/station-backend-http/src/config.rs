//! `coding.opencode`: this backend's config section (with its environment overrides and
//! secrets), and its [`BackendFactory`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use station_core::config::{ConfigSection, LoadedConfig, guard_secret};
use station_core::process::ChildEnv;
use station_core::registry::{BackendFactory, section_json};
use station_core::{CodingBackend, Result, Secret};

use crate::HttpBackend;
use crate::client::NAME;

/// Overrides `coding.opencode.url`.
pub const URL_ENV: &str = "STN_CODING_OPENCODE_URL";

/// The server password when `coding.opencode.password` is not set (OpenCode's own variable).
pub const PASSWORD_ENV: &str = "OPENCODE_SERVER_PASSWORD";

/// When the HTTP backend starts its own `opencode serve`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedServer {
    /// Only when the configured URL is unreachable and `opencode` is installed.
    #[default]
    Auto,
    /// Always start a private server; ignore `url`.
    Always,
    /// Never; fail when the URL is unreachable.
    Never,
}

/// `coding.opencode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpencodeConfig {
    /// Server URL.
    pub url: String,
    /// Model as `provider/model`; the server's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Basic-auth user (OpenCode's default is `opencode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic-auth password (`OPENCODE_SERVER_PASSWORD` when absent). `${VAR}` is expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Whether to start a private server.
    pub managed: ManagedServer,
    /// The `opencode` binary for managed mode.
    #[serde(alias = "binary_path")]
    pub binary: String,
}

impl Default for OpencodeConfig {
    fn default() -> Self {
        OpencodeConfig {
            url: "http://localhost:4096".into(),
            model: None,
            username: None,
            password: None,
            managed: ManagedServer::Auto,
            binary: "opencode".into(),
        }
    }
}

impl ConfigSection for OpencodeConfig {
    const KEY: &'static str = "opencode";
}

impl OpencodeConfig {
    /// The effective `coding.opencode`: the file's section, `STN_CODING_OPENCODE_URL`, and the
    /// password (`${VAR}` expanded, else `OPENCODE_SERVER_PASSWORD`), which is registered with
    /// the redactor and withheld from every child.
    pub fn from_loaded(config: &LoadedConfig) -> Result<Self> {
        let mut section: OpencodeConfig = config.section()?;
        if let Some(url) = config.env_var(URL_ENV) {
            section.url = url;
        }
        ChildEnv::withhold_var(PASSWORD_ENV);
        section.password = match &section.password {
            Some(p) => Some(config.expand_secret("coding.opencode.password", p)?),
            None => config.env_var(PASSWORD_ENV).map(Secret::new),
        };
        if let Some(password) = &section.password {
            guard_secret(password);
        }
        Ok(section)
    }
}

/// Makes the `opencode` backend from `coding.opencode` and the station-wide settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpFactory;

#[async_trait]
impl BackendFactory for HttpFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn section(&self) -> &'static str {
        OpencodeConfig::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        Ok(Arc::new(HttpBackend::new(
            OpencodeConfig::from_loaded(config)?,
            &config.config.coding,
        )?))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(config.config.coding.task_timeout())
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&OpencodeConfig::from_loaded(config)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_core::config::Env;

    fn loaded(text: &str, vars: &[(&'static str, String)]) -> LoadedConfig {
        let vars = vars.to_vec();
        let env =
            Env::new(move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
        LoadedConfig::from_text(text, None, env).unwrap()
    }

    #[test]
    fn url_and_password_come_from_the_file_or_the_environment() {
        let password = format!("pw-{}", "K4j".repeat(6));
        let text = "coding:\n  opencode:\n    url: http://127.0.0.1:1\n    binary_path: /opt/opencode\n    managed: never\n";
        let c = OpencodeConfig::from_loaded(&loaded(text, &[])).unwrap();
        assert_eq!(
            (c.url.as_str(), c.binary.as_str()),
            ("http://127.0.0.1:1", "/opt/opencode")
        );
        assert_eq!((c.managed, c.password), (ManagedServer::Never, None));
        let c = OpencodeConfig::from_loaded(&loaded(
            text,
            &[
                (URL_ENV, "http://127.0.0.1:9999".into()),
                (PASSWORD_ENV, password.clone()),
            ],
        ))
        .unwrap();
        assert_eq!(c.url, "http://127.0.0.1:9999");
        assert_eq!(
            c.password.as_ref().map(Secret::expose),
            Some(password.as_str())
        );
        let shown = HttpFactory
            .show(&loaded(text, &[(PASSWORD_ENV, password.clone())]))
            .unwrap()
            .to_string();
        assert!(!shown.contains("K4j"), "{shown}");
        let expanded = "coding:\n  opencode:\n    password: ${MY_PW}\n";
        let c =
            OpencodeConfig::from_loaded(&loaded(expanded, &[("MY_PW", password.clone())])).unwrap();
        assert_eq!(
            c.password.as_ref().map(Secret::expose),
            Some(password.as_str())
        );
        let err = OpencodeConfig::from_loaded(&loaded(expanded, &[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MY_PW") && err.contains("coding.opencode.password"),
            "{err}"
        );
    }

    #[test]
    fn the_default_timeout_is_the_station_task_timeout() {
        let c = loaded("coding:\n  task_timeout_min: 20\n", &[]);
        assert_eq!(
            HttpFactory.default_timeout(&c).unwrap(),
            Duration::from_secs(1200)
        );
    }
}
