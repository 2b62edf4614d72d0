//! What a child may inherit from this process's environment.
//!
//! Coding agents run commands a model chose and send their output back to the model, so a
//! variable a child inherits is a variable the model can read. Station's own secrets — the
//! variable named by `coding.git.token_env`, the OpenCode server password, the variables a
//! `${VAR}` secret came from, and any variable whose value holds a registered secret — are
//! withheld from every child unless the operator passes one on by name (`coding.pass_env`).
//! Variables a backend sets on a [`super::CommandSpec`] explicitly are not affected.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::sync::{LazyLock, RwLock};

use crate::redact::Secret;

/// Registered secrets shorter than this are not looked for in values: a one-letter password
/// would otherwise withhold half the environment.
const MIN_SECRET_LEN: usize = 6;

/// The process-wide rules for inherited variables.
#[derive(Debug, Default)]
pub struct ChildEnv {
    withheld_names: BTreeSet<OsString>,
    withheld_values: Vec<Secret>,
    passed: BTreeSet<OsString>,
}

static GLOBAL: LazyLock<RwLock<ChildEnv>> = LazyLock::new(Default::default);

impl ChildEnv {
    /// Never let a child inherit the variable `name` (unless it is passed on).
    pub fn withhold_var(name: impl AsRef<OsStr>) {
        write().withheld_names.insert(name.as_ref().to_owned());
    }

    /// Never let a child inherit a variable whose value contains `secret`.
    pub fn withhold_value(secret: &Secret) {
        if secret.expose().len() < MIN_SECRET_LEN {
            return;
        }
        let mut env = write();
        if !env.withheld_values.contains(secret) {
            env.withheld_values.push(secret.clone());
        }
    }

    /// Let children inherit `name` even when it holds a secret (the operator's explicit choice).
    pub fn pass_var(name: impl AsRef<OsStr>) {
        write().passed.insert(name.as_ref().to_owned());
    }

    /// The names among `vars` that a child must not inherit.
    pub fn withheld_among(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<OsString> {
        let env = GLOBAL.read().unwrap_or_else(|e| e.into_inner());
        if env.withheld_names.is_empty() && env.withheld_values.is_empty() {
            return Vec::new();
        }
        vars.into_iter()
            .filter(|(name, value)| !env.passed.contains(name) && env.withholds(name, value))
            .map(|(name, _)| name)
            .collect()
    }

    fn withholds(&self, name: &OsStr, value: &OsStr) -> bool {
        if self.withheld_names.contains(name) {
            return true;
        }
        let value = value.to_string_lossy();
        self.withheld_values
            .iter()
            .any(|secret| value.contains(secret.expose()))
    }
}

fn write() -> std::sync::RwLockWriteGuard<'static, ChildEnv> {
    GLOBAL.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn withholds_by_name_and_by_value_unless_passed() {
        let secret = format!("tok-{}", "q7".repeat(12));
        ChildEnv::withhold_var("CHILD_ENV_TEST_TOKEN_VAR");
        ChildEnv::withhold_value(&Secret::new(secret.clone()));
        ChildEnv::withhold_value(&Secret::new("abc"));
        ChildEnv::pass_var("CHILD_ENV_TEST_PASSED");
        let out = ChildEnv::withheld_among(vars(&[
            ("CHILD_ENV_TEST_TOKEN_VAR", "anything"),
            ("CHILD_ENV_TEST_COPY", &format!("Bearer {secret}")),
            ("CHILD_ENV_TEST_PASSED", &secret),
            ("CHILD_ENV_TEST_SHORT", "abc"),
            ("HOME", "/root"),
        ]));
        assert_eq!(
            out,
            vec![
                OsString::from("CHILD_ENV_TEST_TOKEN_VAR"),
                OsString::from("CHILD_ENV_TEST_COPY")
            ]
        );
    }
}
