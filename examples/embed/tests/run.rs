//! The embed example runs one task on the real `opencode` against the scripted model.

use std::time::Duration;

use assert_cmd::Command;
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{OPENCODE_ENV_REMOVE, OPENCODE_MODEL, opencode_bin, opencode_env};

#[tokio::test(flavor = "multi_thread")]
async fn embed_example_runs_a_task_and_prints_events_and_outcome() {
    let script = Script::new().on(
        "hello.py",
        vec![
            Step::write("hello.py", "print('Hello World')\n"),
            Step::text("Created hello.py."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_station-example-embed"));
    cmd.timeout(Duration::from_secs(300));
    cmd.env_clear()
        .envs(opencode_env(&root.path().join("home"), &model))
        .env("OPENCODE_BIN", opencode_bin())
        .env("OPENCODE_MODEL", OPENCODE_MODEL)
        .args([ws.to_str().unwrap(), "Create hello.py printing Hello World"]);
    for key in OPENCODE_ENV_REMOVE {
        cmd.env_remove(key);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    for expected in [
        "Started",
        "ToolStarted",
        "Finished",
        "outcome: success=true",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("files_changed=[\"hello.py\"]"),
        "the outcome lists hello.py:\n{stdout}"
    );
    let tokens_in = stdout
        .split("tokens in=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(tokens_in > 0, "token usage is printed:\n{stdout}");
}
