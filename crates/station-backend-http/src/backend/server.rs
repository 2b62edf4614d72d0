//! The OpenCode server a backend talks to: the configured one, or a private one it starts
//! (`managed`), connected once and shared by every session; and what a user's own server
//! applies of the policy without asking Station.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use station_core::policy::PolicyConfig;
use station_core::redact::Redactor;
use station_core::{Error, Result};

use super::HttpBackend;
use crate::INSTALL_HINT;
use crate::client::{Client, NAME};
use crate::config::ManagedServer as ManagedMode;
use crate::managed::{self, ManagedServer};
use crate::permission;

#[derive(Debug)]
pub(super) struct Server {
    pub(super) client: Client,
    pub(super) managed: Option<ManagedServer>,
    /// A user's own server's `permission` config (`Null` when it sets none), as last read.
    permission_config: Mutex<Option<Value>>,
}

impl Server {
    fn new(client: Client, managed: Option<ManagedServer>) -> Server {
        Server {
            client,
            managed,
            permission_config: Mutex::new(None),
        }
    }

    /// The rules of `policy` this server applies without asking Station (none for a managed
    /// server, which asks everything; unknown until its config was read).
    pub(super) fn gaps(&self, policy: &PolicyConfig) -> Vec<String> {
        if self.managed.is_some() {
            return Vec::new();
        }
        match &*self
            .permission_config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(config) => permission::gaps(policy, config, self.client.shown_base()),
            None => Vec::new(),
        }
    }

    /// Read a user's own server's permission config (`GET /config`; a project directory can
    /// have its own).
    pub(super) async fn read_permission_config(&self, dir: Option<&str>) {
        if self.managed.is_some() {
            return;
        }
        let read = self
            .client
            .get_json_within::<Value>(&["config"], dir, &[], Duration::from_secs(5))
            .await;
        match read {
            Ok(config) => {
                let permission = config.get("permission").cloned().unwrap_or(Value::Null);
                *self
                    .permission_config
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(permission);
            }
            Err(e) => tracing::warn!(
                "cannot read the OpenCode server's config, so whether it asks Station about every request is unknown: {e}"
            ),
        }
    }
}

impl HttpBackend {
    pub(super) async fn server(&self) -> Result<&Server> {
        self.server.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<Server> {
        let configured = Client::new(
            self.url.clone(),
            self.auth(),
            self.max_attempts,
            self.tuning.clone(),
        )?;
        match self.config.managed {
            ManagedMode::Never => Ok(Server::new(configured, None)),
            ManagedMode::Always => self.start_managed().await,
            ManagedMode::Auto => {
                let probe = Client::new(self.url.clone(), self.auth(), 1, self.tuning.clone())?;
                match probe
                    .get_json_within::<Value>(
                        &["global", "health"],
                        None,
                        &[],
                        Duration::from_secs(2),
                    )
                    .await
                {
                    Err(Error::Unavailable { .. } | Error::Timeout { .. }) => {
                        if managed::installed(&self.config.binary) {
                            tracing::info!(url = %configured.shown_base(), "no OpenCode server answers; starting a private one");
                            self.start_managed().await
                        } else {
                            Err(Error::Unavailable {
                                backend: NAME.into(),
                                message: format!(
                                    "{}; or install OpenCode (`{INSTALL_HINT}`) so Station can start a private server",
                                    configured.unreachable_message("nothing answers")
                                ),
                            })
                        }
                    }
                    // It answered (even with an error): it is there.
                    _ => Ok(Server::new(configured, None)),
                }
            }
        }
    }

    async fn start_managed(&self) -> Result<Server> {
        let auth = match self.auth() {
            Some(a) => a,
            None => {
                let password = managed::random_password().ok_or_else(|| {
                    Error::backend(
                        NAME,
                        "cannot read /dev/urandom for the private server's password",
                    )
                })?;
                (self.username(), password)
            }
        };
        Redactor::global().register(&auth.1);
        // Every request the policy decides reaches Station (this wins over config files).
        let mut env = self.env.clone();
        env.push((
            permission::PERMISSION_ENV.to_string(),
            permission::ask_everything().to_string(),
        ));
        let (server, client) = managed::start(
            &self.config.binary,
            &self.workspace_base,
            &env,
            &auth,
            self.max_attempts,
            &self.tuning,
        )
        .await?;
        Ok(Server::new(client, Some(server)))
    }
}
