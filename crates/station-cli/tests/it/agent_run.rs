use predicates::prelude::*;
use serde_json::Value;
use station_testkit::model_server::{Fault, Script, ScriptedModel, Step};

use crate::support::stn;

#[test]
fn create_list_show_delete() {
    let home = tempfile::tempdir().unwrap();
    stn(home.path())
        .args([
            "agent",
            "create",
            "coder",
            "--description",
            "Coding assistant",
            "--prompt",
            "You are a coding assistant.",
            "--coding",
            r#"{"enabled":true}"#,
            "--max-steps",
            "10",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("created agent `coder`"));
    let file = home
        .path()
        .join(".config/station/environments/default/agents/coder.prompt");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("{{userInput}}") && text.contains("enabled: true"),
        "{text}"
    );
    stn(home.path())
        .args(["agent", "validate"])
        .arg(&file)
        .assert()
        .success();
    stn(home.path())
        .args(["agent", "create", "coder", "-d", "x", "-p", "y"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    stn(home.path())
        .args([
            "agent", "create", "bad", "-d", "x", "-p", "y", "--coding", "{nope",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid --coding JSON"));
    let out = stn(home.path())
        .args(["agent", "list", "--json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "coder");
    assert_eq!(list[0]["coding"], true);
    stn(home.path())
        .args(["agent", "show", "coder"])
        .assert()
        .success()
        .stdout(predicate::str::contains("You are a coding assistant."));
    stn(home.path())
        .args(["agent", "delete", "coder"])
        .assert()
        .success();
    stn(home.path())
        .args(["agent", "show", "coder"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("agent not found: coder"));
}

fn write_agent(home: &std::path::Path, name: &str, body: &str) {
    let dir = home.join(".config/station/environments/default/agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.prompt")), body).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_agent_runs_against_the_model() {
    let model =
        ScriptedModel::start(Script::new().on("summarise", vec![Step::text("A short summary.")]))
            .await
            .unwrap();
    let home = tempfile::tempdir().unwrap();
    write_agent(
        home.path(),
        "summarizer",
        "---\nmetadata:\n  name: summarizer\nmodel: openai/gpt-4o-mini\nmax_steps: 2\n---\n{{role \"system\"}}Summarise.\n{{role \"user\"}}{{userInput}}\n",
    );
    let out = stn(home.path())
        .args([
            "agent",
            "run",
            "summarizer",
            "please summarise this",
            "--json",
        ])
        .env("STN_AI_BASE_URL", model.base_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["final_text"], "A short summary.");
    assert_eq!(report["steps"], 1);
    assert_eq!(report["success"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent_and_model_errors_exit_non_zero() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    model.set_fault(Some(Fault::Status(500)));
    let home = tempfile::tempdir().unwrap();
    stn(home.path())
        .args(["agent", "run", "ghost", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("agent not found: ghost"));
    write_agent(
        home.path(),
        "plain",
        "---\nmetadata:\n  name: plain\nmodel: openai/gpt-4o\n---\n{{userInput}}\n",
    );
    stn(home.path())
        .args(["agent", "run", "plain", "hi"])
        .env("STN_AI_BASE_URL", model.base_url())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("model"));
    // No key and no base URL: the error names the variable to set.
    stn(home.path())
        .args(["agent", "run", "plain", "hi"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("OPENAI_API_KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_steps_exhaustion_exits_non_zero() {
    let script = Script::new().on(
        "loop",
        vec![
            Step::tool("coding_open", serde_json::json!({})),
            Step::tool("coding_open", serde_json::json!({})),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    write_agent(
        home.path(),
        "looper",
        "---\nmetadata:\n  name: looper\nmodel: openai/gpt-4o\nmax_steps: 1\ncoding:\n  enabled: true\n---\n{{userInput}}\n",
    );
    let cfg = home.path().join(".config/station/config.yaml");
    let opencode = station_testkit::peers::opencode_bin();
    std::fs::write(
        &cfg,
        format!(
            "coding:\n  backend: opencode-cli\n  cli:\n    binary: {}\n  workspace_base_path: {}\n",
            opencode.display(),
            home.path().join("ws").display()
        ),
    )
    .unwrap();
    stn(home.path())
        .args(["agent", "run", "looper", "loop forever"])
        .env("STN_AI_BASE_URL", model.base_url())
        .assert()
        .code(4)
        .stderr(predicate::str::contains("max_steps"));
}

/// `stn agent run NAME -` reads the task from stdin, `--file PATH` from a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_comes_from_stdin_or_a_file() {
    let model = ScriptedModel::start(
        Script::new()
            .on("from stdin", vec![Step::text("Read stdin.")])
            .on("from a file", vec![Step::text("Read the file.")]),
    )
    .await
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    write_agent(
        home.path(),
        "echo",
        "---\nmetadata:\n  name: echo\nmodel: openai/gpt-4o-mini\nmax_steps: 2\n---\n{{userInput}}\n",
    );
    let task_file = home.path().join("task.md");
    std::fs::write(&task_file, "Summarise this, from a file\nwith two lines\n").unwrap();
    for (args, stdin, answer) in [
        (vec!["-"], "Summarise this, from stdin\n", "Read stdin."),
        (
            vec!["--file", task_file.to_str().unwrap()],
            "",
            "Read the file.",
        ),
    ] {
        let out = stn(home.path())
            .args(["agent", "run", "echo", "--json"])
            .args(&args)
            .env("STN_AI_BASE_URL", model.base_url())
            .write_stdin(stdin)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["final_text"], answer);
    }
    let prompts: Vec<String> = model
        .requests()
        .into_iter()
        .filter_map(|r| r.prompt)
        .collect();
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("from a file\nwith two lines")),
        "the whole file: {prompts:?}"
    );
}
