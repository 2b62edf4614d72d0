//! The open backend registry: each backend crate exports a [`BackendFactory`] (its name, its
//! config section and how to build it); a front end composes the factories it links in a
//! [`BackendRegistry`] and selects one by name (`coding.backend`).
//!
//! ```ignore
//! let registry = BackendRegistry::new()
//!     .with(station_backend_cli::CliFactory)
//!     .with(my_crate::MyFactory);
//! registry.check_config(&loaded)?;
//! let backend = registry.build(loaded.backend_name(), &loaded).await?;
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::CodingBackend;
use crate::config::{BACKEND_ENV, CodingConfig, LoadedConfig};
use crate::error::{Error, InputError, Result};
use crate::yaml;

/// How to make one kind of backend from config. Names are spelled once: here.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The name `coding.backend` selects it by (e.g. `opencode-cli`).
    fn name(&self) -> &'static str;
    /// Its section under `coding` (e.g. `cli` for `coding.cli`).
    fn section(&self) -> &'static str;
    /// The backend, configured from its section and the station-wide settings.
    async fn build(&self, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>>;
    /// The deadline of a task that sets none.
    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration>;
    /// Its effective section (defaults, file and environment merged; secrets redacted), for
    /// showing the config. Reading it also validates it and guards its secrets.
    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value>;
}

/// A backend this build knows by name but was built without.
#[derive(Debug, Clone)]
struct CompiledOut {
    name: &'static str,
    section: &'static str,
    feature: &'static str,
}

/// The backends a program can select by name.
#[derive(Default, Clone)]
pub struct BackendRegistry {
    factories: Vec<Arc<dyn BackendFactory>>,
    compiled_out: Vec<CompiledOut>,
}

impl std::fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendRegistry")
            .field("available", &self.names())
            .field(
                "compiled_out",
                &self.compiled_out.iter().map(|c| c.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl BackendRegistry {
    /// No backends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `factory`; one registered earlier under the same name is replaced.
    pub fn with(mut self, factory: impl BackendFactory + 'static) -> Self {
        self.register(Arc::new(factory));
        self
    }

    /// Add `factory`; one registered earlier under the same name is replaced.
    pub fn register(&mut self, factory: Arc<dyn BackendFactory>) -> &mut Self {
        self.factories.retain(|f| f.name() != factory.name());
        self.compiled_out.retain(|c| c.name != factory.name());
        self.factories.push(factory);
        self
    }

    /// Know `name` (with its config `section`) as a backend of this program that this build
    /// leaves out; selecting it says which cargo `feature` brings it in, and its section is
    /// accepted in config files.
    pub fn compiled_out(
        mut self,
        name: &'static str,
        section: &'static str,
        feature: &'static str,
    ) -> Self {
        if !self.factories.iter().any(|f| f.name() == name) {
            self.compiled_out.push(CompiledOut {
                name,
                section,
                feature,
            });
        }
        self
    }

    /// The names that can be built, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }

    /// The factories, in registration order.
    pub fn factories(&self) -> impl Iterator<Item = &dyn BackendFactory> {
        self.factories.iter().map(|f| f.as_ref())
    }

    /// The factory named `name` (case and surrounding space ignored).
    pub fn factory(&self, name: &str) -> Result<&dyn BackendFactory> {
        let name = name.trim();
        if let Some(f) = self
            .factories
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
        {
            return Ok(f.as_ref());
        }
        if let Some(c) = self
            .compiled_out
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
        {
            return Err(Error::Unavailable {
                backend: c.name.to_string(),
                message: format!(
                    "the `{}` backend is not compiled into this build; rebuild with `--features {}`",
                    c.name, c.feature
                ),
            });
        }
        Err(self.unknown_name(name).into())
    }

    fn unknown_name(&self, name: &str) -> InputError {
        let names: Vec<String> = self
            .factories
            .iter()
            .map(|f| f.name())
            .chain(self.compiled_out.iter().map(|c| c.name))
            .map(String::from)
            .collect();
        let available = if names.is_empty() {
            "none are registered".to_string()
        } else {
            names.join(", ")
        };
        let hint = match yaml::suggest(name, &names) {
            Some(n) => format!("did you mean `{n}`? available backends: {available}"),
            None => format!("available backends: {available}"),
        };
        InputError::new(format!("unknown coding backend `{name}`"))
            .field("coding.backend")
            .hint(hint)
    }

    /// The backend named `name`, configured from `config`.
    pub async fn build(&self, name: &str, config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        self.factory(name)?.build(config).await
    }

    /// The deadline of a task on `name` that sets none.
    pub fn default_timeout(&self, name: &str, config: &LoadedConfig) -> Result<Duration> {
        self.factory(name)?.default_timeout(config)
    }

    /// Every registered section, effective and redacted, by section key.
    pub fn show(
        &self,
        config: &LoadedConfig,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        self.factories
            .iter()
            .map(|f| Ok((f.section().to_string(), f.show(config)?)))
            .collect()
    }

    /// Check `config` against the backends known here: every key under `coding` is a
    /// station-wide setting or a known backend's section, the configured backend is known, and
    /// every registered section is valid (which also guards the secrets it holds).
    pub fn check_config(&self, config: &LoadedConfig) -> Result<()> {
        let keys = config.coding_keys()?;
        let valid: Vec<String> = CodingConfig::STATION_KEYS
            .into_iter()
            .chain(self.factories.iter().map(|f| f.section()))
            .chain(self.compiled_out.iter().map(|c| c.section))
            .map(String::from)
            .collect();
        for key in &keys {
            if valid.contains(&key.key) {
                continue;
            }
            let hint = match yaml::suggest(&key.key, &valid) {
                Some(s) => format!("did you mean `{s}`? valid keys here: {}", valid.join(", ")),
                None => format!("valid keys here: {}", valid.join(", ")),
            };
            let err = InputError::new(format!("unknown key `{}`", key.key))
                .field(format!("coding.{}", key.key))
                .hint(hint);
            return Err(locate(err, config, key.position).into());
        }
        let name = config.backend_name();
        let known = self
            .factories
            .iter()
            .map(|f| f.name())
            .chain(self.compiled_out.iter().map(|c| c.name))
            .any(|n| n.eq_ignore_ascii_case(name));
        if !known {
            let err = self.unknown_name(name);
            return Err(match config.env_var(BACKEND_ENV) {
                Some(_) => err.field(BACKEND_ENV),
                None => {
                    let at = keys
                        .iter()
                        .find(|k| k.key == "backend")
                        .and_then(|k| k.position);
                    locate(err, config, at)
                }
            }
            .into());
        }
        for factory in &self.factories {
            factory.show(config)?;
        }
        Ok(())
    }
}

/// A section as JSON, for [`BackendFactory::show`] (secrets serialise redacted).
pub fn section_json<T: serde::Serialize>(section: &T) -> Result<serde_json::Value> {
    serde_json::to_value(section)
        .map_err(|e| Error::config(format!("cannot show a config section: {e}")))
}

fn locate(mut err: InputError, config: &LoadedConfig, at: Option<(usize, usize)>) -> InputError {
    if let Some(path) = &config.path {
        err = err.in_file(path);
        if let Some((line, column)) = at {
            err = err.at(line, column);
        }
    }
    err
}

#[cfg(test)]
mod tests;
