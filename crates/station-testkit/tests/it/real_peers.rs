//! The real `opencode`, `claude` and `codex` CLIs, offline against the scripted model, and `nats-server`.
//! These fail (never skip) when a peer is missing: `cargo xtask install-peers`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{
    NatsServer, OPENCODE_MODEL, OpencodeServer, claude_command, claude_env, codex_command,
    codex_env, gemini_command, gemini_env, opencode_command, opencode_env,
};

const RUN_DEADLINE: Duration = Duration::from_secs(120);
const HELLO: &str = "print('Hello World')\n";

fn hello_script() -> Script {
    Script::new().on(
        "hello.py",
        vec![
            Step::write("hello.py", HELLO).with_text_before("I'll create hello.py."),
            Step::text("Created hello.py."),
        ],
    )
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn assert_hello_written(ws: &Path, stdout: &str) {
    let written = std::fs::read_to_string(ws.join("hello.py"))
        .unwrap_or_else(|e| panic!("hello.py was not written ({e}); stdout:\n{stdout}"));
    assert_eq!(written, HELLO);
}

#[tokio::test]
async fn opencode_run_writes_the_scripted_file() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let env = opencode_env(&root.path().join("home"), &model);
    let stdout = opencode_command(&env, &ws)
        .args([
            "run",
            "--format",
            "json",
            "--model",
            OPENCODE_MODEL,
            "create hello.py that prints Hello World",
        ])
        .output(RUN_DEADLINE, None)
        .await
        .unwrap_or_else(|e| panic!("opencode run failed: {e}"));
    assert_hello_written(&ws, &stdout);
    let events = json_lines(&stdout);
    let tool = events
        .iter()
        .find(|e| e["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use line:\n{stdout}"));
    assert_eq!(tool["part"]["tool"], "write");
    assert_eq!(
        tool["part"]["callID"],
        model.scripted_requests()[0]
            .reply
            .tool_call
            .as_ref()
            .unwrap()
            .id
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "text" && e["part"]["text"] == "Created hello.py."),
        "{stdout}"
    );

    let scripted = model.scripted_requests();
    assert_eq!(
        scripted.len(),
        2,
        "a tool turn and a final text turn: {scripted:#?}"
    );
    assert!(
        scripted
            .iter()
            .all(|r| r.offered("write") && r.path == "/v1/chat/completions")
    );
    assert_eq!(
        scripted[0].prompt.as_deref(),
        Some("create hello.py that prints Hello World")
    );
    assert_eq!(scripted[0].model.as_deref(), Some("fake-model"));
    assert_eq!(scripted[1].turn, Some(1));
    let arguments = &scripted[0].reply.tool_call.as_ref().unwrap().arguments;
    let ws_real = ws.canonicalize().unwrap();
    assert_eq!(
        arguments["filePath"],
        ws_real.join("hello.py").to_string_lossy().as_ref()
    );
}

#[tokio::test]
async fn claude_print_writes_the_scripted_file() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let env = claude_env(&root.path().join("home"), &model);
    let stdout = claude_command(&env, &ws)
        .args([
            "-p",
            "create hello.py that prints Hello World",
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
            "--max-turns",
            "5",
        ])
        .output(RUN_DEADLINE, None)
        .await
        .unwrap_or_else(|e| panic!("claude -p failed: {e}"));
    assert_hello_written(&ws, &stdout);
    let events = json_lines(&stdout);
    let result = events
        .iter()
        .find(|e| e["type"] == "result")
        .unwrap_or_else(|| panic!("no result line:\n{stdout}"));
    assert_eq!(result["subtype"], "success", "{stdout}");
    assert_eq!(result["result"], "Created hello.py.");

    let scripted = model.scripted_requests();
    assert_eq!(
        scripted.len(),
        2,
        "a tool turn and a final text turn: {scripted:#?}"
    );
    assert!(
        scripted
            .iter()
            .all(|r| r.offered("Write") && r.path == "/v1/messages")
    );
    assert_eq!(
        scripted[0].prompt.as_deref(),
        Some("create hello.py that prints Hello World")
    );
    let usage_in: u64 = scripted
        .iter()
        .map(|r| r.reply.usage.unwrap().input_tokens)
        .sum();
    let usage_out: u64 = scripted
        .iter()
        .map(|r| r.reply.usage.unwrap().output_tokens)
        .sum();
    assert_eq!(result["usage"]["input_tokens"], usage_in, "{result}");
    assert_eq!(result["usage"]["output_tokens"], usage_out, "{result}");
}

#[tokio::test]
async fn opencode_server_starts_and_is_healthy() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let env = opencode_env(&root.path().join("home"), &model);
    let server = OpencodeServer::start(&env, &ws).await;
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let health: Value = client
        .get(format!("{}/global/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["version"], station_testkit::peers::OPENCODE_VERSION);
    let pid = server.pid();
    server.stop().await;
    assert!(
        station_testkit::process::live_group_members(pid).is_empty(),
        "opencode serve left processes behind"
    );
}

#[tokio::test]
async fn nats_server_starts_accepts_and_restarts_on_the_same_port() {
    let mut nats = NatsServer::start().await;
    assert_eq!(nats.url, format!("nats://127.0.0.1:{}", nats.port));
    let greeting = read_info(nats.port).await;
    assert!(greeting.starts_with("INFO "), "{greeting}");
    assert!(greeting.contains("\"jetstream\":true"), "{greeting}");
    let port = nats.port;
    nats.stop().await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "stopped server still accepts"
    );
    nats.restart().await;
    assert_eq!(nats.port, port);
    assert!(read_info(nats.port).await.starts_with("INFO "));
    assert!(nats.store_dir().join("jetstream").is_dir());
}

/// The INFO line a NATS server sends on connect.
async fn read_info(port: u16) -> String {
    use tokio::io::AsyncBufReadExt;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::BufReader::new(stream).read_line(&mut line),
    )
    .await
    .expect("INFO within 5 s")
    .unwrap();
    line
}

/// `gemini` headless with the instruction on stdin writes the file, and `--resume` continues
/// the session with the earlier turns in the request.
#[tokio::test]
async fn gemini_headless_writes_the_scripted_file_and_resumes() {
    let script = hello_script().on("what did you create", vec![Step::text("hello.py.")]);
    let model = ScriptedModel::start(script).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let env = gemini_env(&root.path().join("home"), &model);
    let headless = [
        "--output-format",
        "stream-json",
        "--approval-mode",
        "yolo",
        "--skip-trust",
    ];
    let stdout = gemini_command(&env, &ws)
        .args(headless)
        .stdin_bytes("create hello.py that prints Hello World")
        .output(RUN_DEADLINE, None)
        .await
        .unwrap_or_else(|e| panic!("gemini failed: {e}"));
    assert_hello_written(&ws, &stdout);
    let events = json_lines(&stdout);
    let tool = events
        .iter()
        .find(|e| e["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use line:\n{stdout}"));
    assert_eq!(tool["tool_name"], "write_file");
    let result = events.last().unwrap();
    assert_eq!(result["type"], "result", "{stdout}");
    assert_eq!(result["status"], "success", "{stdout}");
    let session = events[0]["session_id"].as_str().unwrap().to_owned();

    let stdout = gemini_command(&env, &ws)
        .args(headless)
        .args(["--resume", &session])
        .stdin_bytes("What did you create?")
        .output(RUN_DEADLINE, None)
        .await
        .unwrap_or_else(|e| panic!("gemini --resume failed: {e}"));
    let events = json_lines(&stdout);
    assert_eq!(events[0]["session_id"], session.as_str(), "{stdout}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "message" && e["content"] == "hello.py."),
        "{stdout}"
    );
    let second = model
        .scripted_requests()
        .into_iter()
        .rev()
        .find(|r| r.prompt.as_deref() == Some("What did you create?"))
        .expect("the model saw the second prompt");
    assert!(second.conversation_text().contains("create hello.py"));
}

#[tokio::test]
async fn codex_exec_writes_the_scripted_file_through_apply_patch() {
    let model = ScriptedModel::start(hello_script()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let env = codex_env(&root.path().join("home"), &model);
    let stdout = codex_command(&env, &ws)
        .args([
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-s",
            "workspace-write",
            "-",
        ])
        .stdin_bytes("create hello.py that prints Hello World")
        .output(RUN_DEADLINE, None)
        .await
        .unwrap_or_else(|e| panic!("codex exec failed: {e}"));
    assert_hello_written(&ws, &stdout);
    let events = json_lines(&stdout);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "item.completed" && e["item"]["type"] == "file_change"),
        "{stdout}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "item.completed" && e["item"]["text"] == "Created hello.py."),
        "{stdout}"
    );
    let requests = model.scripted_requests();
    assert_eq!(requests[0].path, "/v1/responses");
    assert_eq!(
        requests[0].reply.tool_call.as_ref().unwrap().name,
        "apply_patch"
    );
    assert_eq!(requests[1].turn, Some(1));
}
