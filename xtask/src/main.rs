//! Dev automation: `cargo xtask <command>`.
//!
//! * `ci`: what CI runs: fmt check, clippy (-D warnings), a build with only the HTTP backend,
//!   and the whole test suite (nextest when installed).
//! * `install-peers`: install the pinned `opencode` and `claude` CLIs into `.tools/peers`.
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask runs tools and talks to the developer"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Pinned versions of the real peers the e2e tests drive.
const OPENCODE: (&str, &str) = ("opencode-ai", "1.18.33");
const CLAUDE: (&str, &str) = ("@anthropic-ai/claude-code", "2.1.197");

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("install-peers") => install_peers(&root),
        _ => {
            eprintln!("usage: cargo xtask <ci|install-peers>");
            eprintln!("  ci             fmt check, clippy -D warnings, feature build, all tests");
            eprintln!(
                "  install-peers  npm-install the pinned opencode and claude CLIs into .tools/peers"
            );
            bail!("unknown or missing command")
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo root")
        .to_path_buf()
}

fn run(root: &Path, program: &str, args: &[&str]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn has(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ci(root: &Path) -> Result<()> {
    install_peers(root)?;
    run(root, "cargo", &["fmt", "--all", "--check"])?;
    run(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Each backend can be compiled alone.
    run(
        root,
        "cargo",
        &[
            "build",
            "-p",
            "station-cli",
            "--no-default-features",
            "--features",
            "http",
        ],
    )?;
    if has("cargo", &["nextest", "--version"]) {
        run(
            root,
            "cargo",
            &["nextest", "run", "--workspace", "--no-fail-fast"],
        )
    } else {
        run(root, "cargo", &["test", "--workspace", "--no-fail-fast"])
    }
}

fn peer_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn install_peers(root: &Path) -> Result<()> {
    let dir = root.join(".tools/peers");
    let bin = dir.join("node_modules/.bin");
    let wanted = [
        (OPENCODE, bin.join("opencode")),
        (CLAUDE, bin.join("claude")),
    ];
    let missing: Vec<String> = wanted
        .iter()
        .filter(|((_, version), path)| !peer_version(path).is_some_and(|v| v.contains(version)))
        .map(|((name, version), _)| format!("{name}@{version}"))
        .collect();
    if missing.is_empty() {
        eprintln!(
            "peers: opencode {} and claude {} are installed in {}",
            OPENCODE.1,
            CLAUDE.1,
            dir.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    if !dir.join("package.json").exists() {
        std::fs::write(dir.join("package.json"), "{\"private\":true}\n")?;
    }
    let mut args = vec!["install", "--no-audit", "--no-fund", "--save-exact"];
    args.extend(missing.iter().map(String::as_str));
    run(&dir, "npm", &args)
        .context("installing the pinned peers needs npm and the npm registry")?;
    for ((name, version), path) in &wanted {
        match peer_version(path) {
            Some(v) if v.contains(version) => eprintln!("peers: {name} {v}"),
            other => bail!("{name}@{version} did not install correctly (got {other:?})"),
        }
    }
    Ok(())
}
