//! Dev automation: `cargo xtask <command>`.
//!
//! * `ci`: what CI runs: fmt check, clippy (-D warnings), `tidy`, a build of `stn` with each
//!   backend alone, and the whole test suite (nextest when installed).
//! * `tidy`: the workspace's architecture rules (dependencies, no secrets in derived Debug).
//! * `install-peers`: install the pinned `opencode` and `claude` CLIs into `.tools/peers`.
//! * `bench`: the benchmarks (`station-bench`, release build); writes BENCHMARKS.md and JSON.
//! * `man [DIR]`: stn's man pages (clap_mangen, via `stn generate man`), default
//!   `target/man`.
//! * `schema`: regenerate `schemas/outcome.schema.json` (the `stn code --json` shape).
//! * `demo`: `stn agent create` + `stn agent run` end to end, with a scripted model standing in
//!   for both the orchestrating model and the coding agent's model.
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "xtask runs tools and talks to the developer"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod tidy;

/// Pinned versions of the real peers the e2e tests drive: npm package, version, binary.
const PEERS: &[(&str, &str, &str)] = &[
    ("opencode-ai", "1.18.33", "opencode"),
    ("@anthropic-ai/claude-code", "2.1.197", "claude"),
    ("@openai/codex", "0.169.0", "codex"),
    ("@google/gemini-cli", "0.61.0", "gemini"),
    (
        "@zed-industries/claude-agent-acp",
        "0.23.1",
        "claude-agent-acp",
    ),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("install-peers") => install_peers(&root),
        Some("tidy") => tidy::run(&root),
        Some("man") => man(&root, args.get(1).map(String::as_str)),
        Some("schema") => schema(&root),
        Some("bench") => bench(&root, &args[1..]),
        Some("demo") => demo(
            &root,
            args.get(1).map(String::as_str),
            args.get(2).map(String::as_str),
        ),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|install-peers|demo [--backend opencode-cli|claudecode|opencode]>"
            );
            eprintln!(
                "  demo           run a coding agent end to end against a scripted model (no API key needed)"
            );
            eprintln!(
                "  ci             fmt check, clippy -D warnings, tidy, each backend alone, all tests"
            );
            eprintln!("  tidy           check the workspace's dependency and Debug rules");
            eprintln!("  man [DIR]      write stn's man pages into DIR (default target/man)");
            eprintln!(
                "  schema         regenerate schemas/outcome.schema.json from the Rust types"
            );
            eprintln!(
                "  bench [ARGS]   benchmarks vs raw baselines (release); writes BENCHMARKS.md and JSON"
            );
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

/// Man pages come from `stn` itself (`stn generate man DIR`), so xtask needs no clap and the
/// pages match the built binary.
fn man(root: &Path, dir: Option<&str>) -> Result<()> {
    let dir = match dir {
        Some(d) => std::env::current_dir()?.join(d),
        None => root.join("target/man"),
    };
    let dir = dir.display().to_string();
    run(
        root,
        "cargo",
        &[
            "run",
            "-q",
            "-p",
            "station-cli",
            "--bin",
            "stn",
            "--",
            "generate",
            "man",
            &dir,
        ],
    )?;
    eprintln!("man pages in {dir} (try `man -l {dir}/stn.1`)");
    Ok(())
}

/// The JSON Schema of `stn code --json`, generated from the Rust types by `stn` itself.
fn schema(root: &Path) -> Result<()> {
    let file = root.join("schemas/outcome.schema.json");
    std::fs::create_dir_all(root.join("schemas"))?;
    let file = file.display().to_string();
    run(
        root,
        "cargo",
        &[
            "run",
            "-q",
            "-p",
            "station-cli",
            "--bin",
            "stn",
            "--",
            "generate",
            "outcome-schema",
            &file,
        ],
    )
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
    tidy::run(root)?;
    // Each backend can be compiled alone.
    for feature in ["http", "nats", "cli", "claude", "gemini", "codex", "acp"] {
        run(
            root,
            "cargo",
            &[
                "build",
                "-p",
                "station-cli",
                "--no-default-features",
                "--features",
                feature,
            ],
        )?;
    }
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

/// The installed version of an npm package (from its package.json), if its binary is there too.
fn installed_version(dir: &Path, package: &str, bin: &str) -> Option<String> {
    if !dir.join("node_modules/.bin").join(bin).exists() {
        return None;
    }
    let manifest =
        std::fs::read_to_string(dir.join("node_modules").join(package).join("package.json"))
            .ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest).ok()?;
    manifest["version"].as_str().map(str::to_string)
}

fn install_peers(root: &Path) -> Result<()> {
    let dir = root.join(".tools/peers");
    let missing: Vec<String> = PEERS
        .iter()
        .filter(|(package, version, bin)| {
            installed_version(&dir, package, bin).as_deref() != Some(*version)
        })
        .map(|(package, version, _)| format!("{package}@{version}"))
        .collect();
    if missing.is_empty() {
        let list: Vec<String> = PEERS
            .iter()
            .map(|(_, v, bin)| format!("{bin} {v}"))
            .collect();
        eprintln!("peers: {} installed in {}", list.join(", "), dir.display());
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
    for (package, version, bin) in PEERS {
        match installed_version(&dir, package, bin) {
            Some(v) if v == *version => eprintln!("peers: {package} {v}"),
            other => bail!("{package}@{version} did not install correctly (got {other:?})"),
        }
    }
    Ok(())
}

/// Kills the child when dropped, so no demo server outlives the demo.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const DEMO_TASK: &str = "Create a hello.py that prints Hello World";
const DEMO_INSTRUCTION: &str = "Write the file hello.py that prints Hello World";

fn demo_script() -> String {
    serde_json_like(&[
        // The coding agent's model: answers the instruction the orchestrator hands over.
        (DEMO_INSTRUCTION, r#"[{"write": {"path": "hello.py", "content": "print('Hello World')\n"}, "text_before": "Creating hello.py."}, {"text": "Created hello.py; it prints Hello World."}]"#.to_string()),
        // The orchestrating model: opens a coding session, hands over the task, closes it.
        ("create a hello.py", format!(
            r#"[{{"tool": {{"name": "coding_open", "args": {{}}}}, "text_before": "I'll open a coding session."}}, {{"tool": {{"name": "code", "args": {{"instruction": "{DEMO_INSTRUCTION}"}}}}}}, {{"tool": {{"name": "coding_close", "args": {{}}}}}}, {{"text": "Done: hello.py prints Hello World."}}]"#
        )),
    ])
}

fn serde_json_like(rules: &[(&str, String)]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|(on, steps)| format!(r#"{{"on": "{on}", "steps": {steps}}}"#))
        .collect();
    format!(
        r#"{{"rules": [{}], "final_text": "Done."}}"#,
        rules.join(", ")
    )
}

fn demo(root: &Path, flag: Option<&str>, value: Option<&str>) -> Result<()> {
    let backend = match (flag, value) {
        (None, _) => "opencode-cli",
        (Some("--backend"), Some(b @ ("opencode-cli" | "claudecode" | "opencode"))) => b,
        _ => bail!("usage: cargo xtask demo [--backend opencode-cli|claudecode|opencode]"),
    };
    install_peers(root)?;
    run(
        root,
        "cargo",
        &[
            "build",
            "--quiet",
            "-p",
            "station-cli",
            "-p",
            "station-testkit",
            "--bin",
            "stn",
            "--bin",
            "scripted-model",
        ],
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let stn = target.join("debug/stn");
    let dir = std::env::temp_dir().join(format!("stn-demo-{}", std::process::id()));
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".config/station"))?;
    std::fs::write(dir.join("script.json"), demo_script())?;

    eprintln!(
        "\n== Starting the SCRIPTED model server (a stand-in for a real LLM; no API key, no network)"
    );
    let mut model = Command::new(target.join("debug/scripted-model"));
    model
        .args(["--script"])
        .arg(dir.join("script.json"))
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null());
    let mut model = KillOnDrop(model.spawn().context("cannot start scripted-model")?);
    let url = {
        use std::io::BufRead;
        let stdout = model.0.stdout.take().context("scripted-model stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        line.trim()
            .strip_prefix("listening on ")
            .context("scripted-model did not print its address")?
            .to_string()
    };
    eprintln!("   {url}");

    let peers = root.join(".tools/peers/node_modules/.bin");
    let opencode_config = format!(
        r#"{{"provider": {{"fake": {{"npm": "@ai-sdk/openai-compatible", "name": "Scripted model", "options": {{"baseURL": "{url}/v1", "apiKey": "dummy"}}, "models": {{"fake-model": {{"name": "Fake Model", "tool_call": true, "limit": {{"context": 128000, "output": 4096}}}}}}}}}}, "enabled_providers": ["fake"], "model": "fake/fake-model", "small_model": "fake/fake-model", "autoupdate": false, "share": "disabled", "permission": {{"edit": "allow", "bash": "allow", "webfetch": "deny"}}}}"#
    );
    std::fs::write(home.join("opencode.json"), opencode_config)?;
    let coding = match backend {
        "opencode-cli" => format!(
            "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: fake/fake-model\n",
            peers.join("opencode").display()
        ),
        "claudecode" => format!(
            "  backend: claudecode\n  claudecode:\n    binary: {}\n",
            peers.join("claude").display()
        ),
        _ => format!(
            "  backend: opencode\n  opencode:\n    managed: always\n    binary: {}\n    model: fake/fake-model\n",
            peers.join("opencode").display()
        ),
    };
    let config = format!(
        "# Written by `cargo xtask demo`.\nai_model: openai/gpt-4o\ncoding:\n  workspace_base_path: {}\n{coding}",
        dir.join("workspaces").display()
    );
    std::fs::write(home.join(".config/station/config.yaml"), &config)?;

    let stn_cmd = |args: &[&str]| -> Result<()> {
        eprintln!(
            "\n$ stn {}",
            args.iter()
                .map(|a| if a.contains(' ') {
                    format!("\"{a}\"")
                } else {
                    a.to_string()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut cmd = Command::new(&stn);
        cmd.args(args)
            .current_dir(&dir)
            .stdin(std::process::Stdio::null());
        let h = home.display().to_string();
        for (k, v) in [
            ("HOME", h.clone()),
            ("XDG_CONFIG_HOME", format!("{h}/.config")),
            ("XDG_DATA_HOME", format!("{h}/.local/share")),
            ("XDG_CACHE_HOME", format!("{h}/.cache")),
            ("XDG_STATE_HOME", format!("{h}/.local/state")),
            ("STN_AI_BASE_URL", url.clone()),
            ("OPENCODE_CONFIG", format!("{h}/opencode.json")),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
            ("OPENCODE_DISABLE_AUTOUPDATE", "1".into()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1".into()),
            ("OPENCODE_DISABLE_SHARE", "1".into()),
            ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1".into()),
            ("OPENCODE_DISABLE_CLAUDE_CODE", "1".into()),
            ("CLAUDE_CONFIG_DIR", format!("{h}/.claude")),
            ("ANTHROPIC_BASE_URL", url.clone()),
            ("ANTHROPIC_API_KEY", "scripted-model-needs-no-key".into()),
            ("DISABLE_TELEMETRY", "1".into()),
            ("DISABLE_AUTOUPDATER", "1".into()),
            ("DISABLE_ERROR_REPORTING", "1".into()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ] {
            cmd.env(k, v);
        }
        for k in [
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "ANTHROPIC_AUTH_TOKEN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "STN_CONFIG",
            "STN_DATA_DIR",
            "STN_CODING_BACKEND",
        ] {
            cmd.env_remove(k);
        }
        let status = cmd.status().context("cannot run stn")?;
        if !status.success() {
            bail!("stn {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    eprintln!("\n== Demo of the `{backend}` backend in {}", dir.display());
    stn_cmd(&[
        "agent",
        "create",
        "coder",
        "--description",
        "Coding assistant",
        "--prompt",
        "You are a coding assistant. Use the coding tools to accomplish tasks.",
        "--coding",
        r#"{"enabled":true}"#,
        "--max-steps",
        "10",
    ])?;
    stn_cmd(&["agent", "run", "coder", DEMO_TASK, "--tail"])?;
    stn_cmd(&["session", "list"])?;
    let workspaces = dir.join("workspaces");
    let hello = std::fs::read_dir(&workspaces)?
        .flatten()
        .map(|e| e.path().join("hello.py"))
        .find(|p| p.is_file())
        .context("hello.py was not written")?;
    eprintln!(
        "\n== {} (written by the real coding agent, driven by the scripted model):",
        hello.display()
    );
    eprintln!("{}", std::fs::read_to_string(&hello)?.trim_end());
    eprintln!(
        "\nThe same run against real models: set OPENAI_API_KEY (and the coding agent's own login), drop STN_AI_BASE_URL, and run `stn agent run coder \"...\" --tail`."
    );
    drop(model);
    Ok(())
}

/// `cargo run --release -p station-bench -- --markdown BENCHMARKS.md [ARGS]` (e.g. `--quick`,
/// `--only http,nats`).
fn bench(root: &Path, extra: &[String]) -> Result<()> {
    let mut args = vec![
        "run",
        "--release",
        "-p",
        "station-bench",
        "--",
        "--markdown",
        "BENCHMARKS.md",
    ];
    args.extend(extra.iter().map(String::as_str));
    run(root, "cargo", &args)
}
