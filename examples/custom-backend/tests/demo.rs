//! The `custom-backend-demo` binary selects backends by name from one registry (this crate's
//! `command` beside the built-in `opencode-cli`) and runs a task on the `command` backend,
//! configured in a station config file, with a small shell-script agent (no model needed).

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;

fn demo(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custom-backend-demo"));
    cmd.current_dir(home).timeout(Duration::from_secs(60));
    cmd
}

/// A shell-script agent at `<dir>/agent.sh` with `body`, configured as `coding.command` in
/// `<dir>/config.yaml`; returns the config's path.
fn script_agent(dir: &Path, body: &str) -> String {
    let script = dir.join("agent.sh");
    std::fs::write(&script, body).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "coding:\n  backend: command\n  command:\n    argv: [sh, {}]\n",
            script.display()
        ),
    )
    .unwrap();
    config.display().to_string()
}

#[test]
fn command_backend_runs_a_plain_text_agent_and_reports_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let agent = script_agent(
        dir.path(),
        "cat > prompt.txt\necho 'I saved the prompt to prompt.txt.'\n",
    );
    let out = demo(dir.path())
        .args([
            "--config",
            &agent,
            "--backend",
            "command",
            ws.to_str().unwrap(),
            "Save the prompt",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("I saved the prompt to prompt.txt."),
        "{stdout}"
    );
    assert!(stdout.contains("done: 1 file(s) changed"), "{stdout}");
    let prompt = std::fs::read_to_string(ws.join("prompt.txt")).unwrap();
    assert!(
        prompt.contains("Save the prompt"),
        "the prompt arrives on stdin: {prompt}"
    );
}

#[test]
fn a_failing_agent_is_a_failed_outcome_quoting_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let agent = script_agent(
        dir.path(),
        "cat > /dev/null\necho 'model unreachable' >&2\nexit 3\n",
    );
    let out = demo(dir.path())
        .args([
            "--config",
            &agent,
            "--backend",
            "command",
            dir.path().join("ws").to_str().unwrap(),
            "Do it",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("`sh` failed (exit code 3): model unreachable"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_backend_lists_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path())
        .env("HOME", dir.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("STN_CONFIG")
        .args(["--backend", "opencod", "ws", "Do it"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("unknown coding backend `opencod`")
            && stderr.contains("did you mean `opencode-cli`")
            && stderr.contains("command, opencode-cli"),
        "{stderr}"
    );
}
