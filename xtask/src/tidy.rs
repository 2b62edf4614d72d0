//! `cargo xtask tidy`: the workspace's architecture rules, checked from `cargo metadata` and the
//! sources (also run as a test, so `cargo nextest run --workspace` enforces them):
//!
//! * `station-core` depends on no other crate of the workspace;
//! * a backend crate (`station-backend-*`) never depends on another backend crate;
//! * only `station-cli` (`stn`) depends on clap;
//! * no `#[derive(Debug)]` struct has a secret-bearing field (token, password, secret,
//!   credentials, `*_key`, env pairs) of a type that prints its value: such fields are `Secret` or the struct
//!   writes its own `Debug`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// One package as the rules see it: its name and its dependencies (name, kind).
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) deps: Vec<(String, Option<String>)>,
}

/// Run every rule; an error lists every violation.
pub(crate) fn run(root: &Path) -> Result<()> {
    let packages = workspace_packages(root)?;
    let mut problems = dependency_violations(&packages);
    problems.extend(debug_violations(root)?);
    if !problems.is_empty() {
        bail!(
            "the workspace breaks its rules (ARCHITECTURE.md):\n  {}",
            problems.join("\n  ")
        );
    }
    eprintln!(
        "tidy: {} packages follow the workspace rules",
        packages.len()
    );
    Ok(())
}

fn workspace_packages(root: &Path) -> Result<Vec<Package>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout).context("cargo metadata printed non-UTF-8")?;
    parse_metadata(&text)
}

/// The packages and their dependencies, from `cargo metadata` JSON.
pub(crate) fn parse_metadata(json: &str) -> Result<Vec<Package>> {
    let meta: serde_json::Value = serde_json::from_str(json).context("cargo metadata JSON")?;
    let packages = meta["packages"]
        .as_array()
        .context("metadata has packages")?;
    Ok(packages
        .iter()
        .map(|p| Package {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            deps: p["dependencies"]
                .as_array()
                .map(|deps| {
                    deps.iter()
                        .map(|d| {
                            (
                                d["name"].as_str().unwrap_or_default().to_string(),
                                d["kind"].as_str().map(str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

/// Dependency rules; `kind` None = normal, "dev", "build".
pub(crate) fn dependency_violations(packages: &[Package]) -> Vec<String> {
    let in_workspace = |name: &str| packages.iter().any(|p| p.name == name);
    let is_backend = |name: &str| name.starts_with("station-backend-");
    let mut problems = Vec::new();
    for p in packages {
        for (dep, kind) in &p.deps {
            let kind_text = kind.as_deref().unwrap_or("normal");
            if p.name == "station-core" && in_workspace(dep) && kind.as_deref() != Some("dev") {
                problems.push(format!(
                    "station-core depends on {dep} ({kind_text}); core is the contract and depends on no workspace crate"
                ));
            }
            if is_backend(&p.name) && is_backend(dep) && dep != &p.name {
                problems.push(format!(
                    "{} depends on {dep} ({kind_text}); backend crates never depend on each other",
                    p.name
                ));
            }
            if dep == "clap" && p.name != "station-cli" {
                problems.push(format!(
                    "{} depends on clap ({kind_text}); only stn (station-cli) parses a command line with clap",
                    p.name
                ));
            }
        }
    }
    problems
}

const SECRET_WORDS: [&str; 5] = ["token", "password", "secret", "credentials", "env"];

fn debug_violations(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stack = vec![root.join("crates"), root.join("examples")];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("tests") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.components().any(|c| c.as_os_str() == "src")
            {
                let text = std::fs::read_to_string(&path)?;
                for (line, field) in secret_fields_in_derived_debug(&text) {
                    problems.push(format!(
                        "{}:{line}: `{field}` is printed by a derived Debug; make it a Secret or write Debug by hand",
                        path.strip_prefix(root).unwrap_or(&path).display()
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// `(line, field)` of secret-named fields of structs that derive Debug, whose type is not
/// `Secret` (which prints `[REDACTED]`).
pub(crate) fn secret_fields_in_derived_debug(source: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    let mut derives_debug = false;
    let mut in_struct = false;
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if line.starts_with("#[derive(") && line.contains("Debug") {
            derives_debug = true;
            continue;
        }
        if derives_debug && !in_struct {
            if line.starts_with("#[") || line.starts_with("///") {
                continue;
            }
            in_struct = (line.starts_with("pub struct ")
                || line.starts_with("struct ")
                || line.contains(" struct "))
                && line.ends_with('{');
            derives_debug = in_struct;
            continue;
        }
        if in_struct {
            if line.starts_with('}') {
                in_struct = false;
                derives_debug = false;
                continue;
            }
            let Some((name, ty)) = line
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ")
                .split_once(':')
            else {
                continue;
            };
            let name = name.trim();
            let ty = ty.trim().trim_end_matches(',');
            let pairs = ty.contains("Vec<(") || ty.contains("Map<");
            // `env` alone is often the name of an environment; as pairs it is variables.
            // `key` alone is a map or config key; `api_key`, `private_key` are secrets.
            let named_secret = name.ends_with("_key")
                || name
                    .split('_')
                    .any(|word| SECRET_WORDS.contains(&word) && (word != "env" || pairs));
            let prints_value = !ty.contains("Secret") && (ty.contains("String") || pairs);
            if named_secret && prints_value && !name.ends_with("_env") && name != "env_remove" {
                found.push((i + 1, name.to_string()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, deps: &[(&str, Option<&str>)]) -> Package {
        Package {
            name: name.into(),
            deps: deps
                .iter()
                .map(|(d, k)| (d.to_string(), k.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn the_workspace_follows_its_rules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        run(root).unwrap();
    }

    #[test]
    fn forbidden_dependencies_are_named() {
        let packages = [
            package(
                "station-core",
                &[("station-git", None), ("station-testkit", Some("dev"))],
            ),
            package("station-git", &[("station-core", None)]),
            package("station-testkit", &[]),
            package(
                "station-backend-cli",
                &[("station-backend-http", Some("dev"))],
            ),
            package("station-backend-http", &[("station-core", None)]),
            package("station-mcp", &[("clap", None)]),
            package(
                "station-cli",
                &[("clap", None), ("station-backend-cli", None)],
            ),
        ];
        let problems = dependency_violations(&packages);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("station-core depends on station-git"));
        assert!(problems[1].starts_with("station-backend-cli depends on station-backend-http"));
        assert!(problems[2].starts_with("station-mcp depends on clap"));
    }

    #[test]
    fn secret_fields_in_a_derived_debug_are_found() {
        let source = "#[derive(Debug, Clone)]\npub struct Backend {\n    binary: String,\n    env: Vec<(String, String)>,\n    #[arg(long)]\n    env_name: String,\n    api_token: Option<String>,\n    password: Option<Secret>,\n    token_env: Option<String>,\n}\n\nstruct Manual {\n    token: String,\n}\n";
        assert_eq!(
            secret_fields_in_derived_debug(source),
            [(4, "env".to_string()), (7, "api_token".to_string())]
        );
    }
}
