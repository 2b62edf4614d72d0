//! `coding.nats`: this backend's config section (with its environment overrides), and its
//! [`BackendFactory`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use station_core::config::{ConfigSection, LoadedConfig, deadline_secs};
use station_core::process::ChildEnv;
use station_core::registry::{BackendFactory, section_json};
use station_core::{CodingBackend, InputError, Result};

use crate::conn::BACKEND;
use crate::{NatsBackend, NatsBackendOptions};

/// Overrides `coding.nats.url`.
pub const URL_ENV: &str = "STN_NATS_URL";
/// Overrides `coding.nats.tls.ca_file`.
pub const TLS_CA_ENV: &str = "STN_NATS_TLS_CA";
/// Overrides `coding.nats.tls.cert_file`.
pub const TLS_CERT_ENV: &str = "STN_NATS_TLS_CERT";
/// Overrides `coding.nats.tls.key_file`.
pub const TLS_KEY_ENV: &str = "STN_NATS_TLS_KEY";

/// `coding.nats.subjects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSubjects {
    /// Task subject (the plugin listens on `station.coding.task`).
    pub task: String,
    /// Base of per-task event subjects.
    pub stream: String,
    /// Base of per-task result subjects.
    pub result: String,
}

impl Default for NatsSubjects {
    fn default() -> Self {
        NatsSubjects {
            task: "station.coding.task".into(),
            stream: "station.coding.stream".into(),
            result: "station.coding.result".into(),
        }
    }
}

/// `coding.nats.kv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsKv {
    /// Session bucket.
    pub sessions: String,
    /// State bucket.
    pub state: String,
}

impl Default for NatsKv {
    fn default() -> Self {
        NatsKv {
            sessions: "opencode-sessions".into(),
            state: "opencode-state".into(),
        }
    }
}

/// `coding.nats.tls`: TLS to the NATS server. All optional; a `tls://` URL turns TLS on by
/// itself, trusting the system roots unless `ca_file` is set. Any setting here makes TLS
/// required, so a connection never falls back to plain text.
///
/// ```yaml
/// coding:
///   nats:
///     url: tls://nats.internal:4222
///     tls:
///       ca_file: /etc/station/nats-ca.pem     # the CAs to trust, instead of the system roots
///       cert_file: /etc/station/worker.pem    # client certificate (mutual TLS) ...
///       key_file: /etc/station/worker-key.pem # ... and its key: set both or neither
///       required: true                        # TLS even for a nats:// URL
/// ```
///
/// `STN_NATS_TLS_CA`, `STN_NATS_TLS_CERT` and `STN_NATS_TLS_KEY` override the files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTls {
    /// PEM file of the CA certificates to trust for the server's certificate. When set, only
    /// these are trusted (async-nats does not add the system roots then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Use TLS even when the URL is `nats://`, no file is set and the server does not ask
    /// for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

impl NatsTls {
    /// Nothing is configured (TLS only if the URL or the server asks for it).
    pub fn is_empty(&self) -> bool {
        self == &NatsTls::default()
    }

    /// The client certificate and its key, when mutual TLS is configured. Only one of the
    /// two is a config error naming both fields.
    pub fn client_certificate(&self) -> Result<Option<(&Path, &Path)>> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(InputError::new(
                "coding.nats.tls.cert_file is set but coding.nats.tls.key_file is not",
            )
            .field("coding.nats.tls.key_file")
            .hint("a client certificate needs its private key: set both or neither")
            .into()),
            (None, Some(_)) => Err(InputError::new(
                "coding.nats.tls.key_file is set but coding.nats.tls.cert_file is not",
            )
            .field("coding.nats.tls.cert_file")
            .hint("a private key needs its client certificate: set both or neither")
            .into()),
        }
    }
}

/// `coding.nats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL (`nats://`, or `tls://` for TLS); several comma-separated for a cluster
    /// (client and worker fail over between them).
    pub url: String,
    /// A `.creds` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// TLS settings (see [`NatsTls`]).
    #[serde(skip_serializing_if = "NatsTls::is_empty")]
    pub tls: NatsTls,
    /// Subjects.
    pub subjects: NatsSubjects,
    /// KV buckets.
    pub kv: NatsKv,
    /// Seconds between worker heartbeats; a worker silent for three is dead.
    #[serde(deserialize_with = "deadline_secs")]
    pub heartbeat_sec: u64,
    /// Replica count of the KV buckets (sessions, tasks) this side creates; 3 on a 3-node
    /// cluster keeps them through the loss of a node. Existing buckets are used as they are.
    pub replicas: usize,
    /// `coding.nats.worker`: settings of `stn worker`.
    #[serde(skip_serializing_if = "NatsWorker::is_default")]
    pub worker: NatsWorker,
}

/// `coding.nats.worker`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsWorker {
    /// Most tasks one worker runs at once (unlimited when absent); `--max-tasks` overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tasks: Option<usize>,
}

impl NatsWorker {
    fn is_default(&self) -> bool {
        self == &NatsWorker::default()
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://localhost:4222".into(),
            creds_file: None,
            tls: NatsTls::default(),
            subjects: NatsSubjects::default(),
            kv: NatsKv::default(),
            heartbeat_sec: 5,
            replicas: 1,
            worker: NatsWorker::default(),
        }
    }
}

impl ConfigSection for NatsConfig {
    const KEY: &'static str = "nats";
}

impl NatsConfig {
    /// The effective `coding.nats`: the file's section overridden by `STN_NATS_URL`,
    /// `STN_NATS_TLS_CA`, `STN_NATS_TLS_CERT` and `STN_NATS_TLS_KEY`.
    pub fn from_loaded(config: &LoadedConfig) -> Result<Self> {
        let mut section: NatsConfig = config.section()?;
        if let Some(url) = config.env_var(URL_ENV) {
            section.url = url;
        }
        let tls = &mut section.tls;
        for (var, file) in [
            (TLS_CA_ENV, &mut tls.ca_file),
            (TLS_CERT_ENV, &mut tls.cert_file),
            (TLS_KEY_ENV, &mut tls.key_file),
        ] {
            if let Some(path) = config.env_var(var) {
                *file = Some(PathBuf::from(path));
            }
        }
        // A NATS URL may carry a user and password or a token.
        if section.url.contains('@') {
            ChildEnv::withhold_var(URL_ENV);
        }
        section.check()?;
        Ok(section)
    }

    /// The servers of `url`: one URL, or several separated by commas (a cluster; the client
    /// fails over between them).
    pub fn server_urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Check the values serde cannot: a server URL, replicas 1..=5, max_tasks at least 1.
    pub fn check(&self) -> Result<()> {
        if self.server_urls().is_empty() {
            return Err(InputError::new("coding.nats.url names no server")
                .field("coding.nats.url")
                .hint("set it to nats://host:4222, or several comma-separated for a cluster")
                .into());
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(InputError::new(format!(
                "coding.nats.replicas is {}; JetStream allows 1 to 5",
                self.replicas
            ))
            .field("coding.nats.replicas")
            .hint("use 1 on a single server, 3 on a 3-node cluster")
            .into());
        }
        if self.worker.max_tasks == Some(0) {
            return Err(InputError::new(
                "coding.nats.worker.max_tasks is 0: the worker would take no task",
            )
            .field("coding.nats.worker.max_tasks")
            .hint("set at least 1, or remove it for no limit")
            .into());
        }
        Ok(())
    }
}

/// Makes the `opencode-nats` backend from `coding.nats` and the station-wide settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct NatsFactory;

#[async_trait]
impl BackendFactory for NatsFactory {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn section(&self) -> &'static str {
        NatsConfig::KEY
    }

    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        let options = NatsBackendOptions {
            task_timeout: config.config.coding.task_timeout(),
            ..Default::default()
        };
        Ok(Arc::new(
            NatsBackend::connect(&NatsConfig::from_loaded(config)?, options)
                .await?
                .with_policy(config.config.coding.policy.clone().unwrap_or_default()),
        ))
    }

    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(config.config.coding.task_timeout())
    }

    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&NatsConfig::from_loaded(config)?)
    }
}

#[cfg(test)]
mod tests;
