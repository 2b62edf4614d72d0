//! `stn mcp` over stdio, as an MCP client launches it.

use std::time::Duration;

use serde_json::{Value, json};
use station_core::process::CommandSpec;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_mcp_lists_the_coding_tools_over_stdio() {
    let home = tempfile::tempdir().unwrap();
    let mut child = CommandSpec::new(assert_cmd::cargo::cargo_bin("stn"), home.path())
        .args(["mcp", "--backend", "opencode-cli"])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("STN_DATA_DIR", home.path().join("data"))
        .env("RUST_LOG", "debug")
        .stdin_piped()
        .spawn()
        .unwrap();
    let mut stdin = child.take_stdin().unwrap();
    let mut stdout = child.take_stdout_lines().unwrap();
    let send = |v: Value| format!("{v}\n");
    stdin
        .write_all(send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}})).as_bytes())
        .await
        .unwrap();
    let init: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(init["id"], 1);
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    stdin
        .write_all(
            send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).as_bytes(),
        )
        .await
        .unwrap();
    stdin
        .write_all(send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).as_bytes())
        .await
        .unwrap();
    let list: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for tool in [
        "coding_open",
        "code",
        "coding_close",
        "coding_commit",
        "coding_push",
        "coding_branch",
        "coding_sessions",
    ] {
        assert!(names.contains(&tool), "{tool} in {names:?}");
    }
    // stdout carries only protocol: logs went to stderr.
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{}", child.stderr_tail());
}

/// `stn mcp --http … --allow-remote` on 127.0.0.1 (the test contacts only loopback), with
/// `token` in STN_MCP_TOKEN or none. Returns the child, its stderr so far and the MCP URL.
async fn start_remote_http(
    home: &std::path::Path,
    token: Option<&str>,
) -> (station_core::process::ChildProcess, String, String) {
    let mut spec = CommandSpec::new(assert_cmd::cargo::cargo_bin("stn"), home)
        .args([
            "mcp",
            "--backend",
            "opencode-cli",
            "--http",
            "127.0.0.1:0",
            "--allow-remote",
        ])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("STN_DATA_DIR", home.join("data"))
        .env("RUST_LOG", "info");
    spec = match token {
        Some(token) => spec.env("STN_MCP_TOKEN", token),
        None => spec.env_remove("STN_MCP_TOKEN"),
    };
    let child = spec.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let started = loop {
        let stderr = child.stderr_tail();
        if stderr.contains("serving the coding tools") {
            break stderr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stn mcp did not start: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = started
        .lines()
        .find_map(|l| l.split_once(" on http://"))
        .map(|(_, rest)| format!("http://{rest}"))
        .unwrap_or_else(|| panic!("no URL: {started}"));
    (child, started, url)
}

/// The HTTP status of an `initialize` POST with this `Authorization` header.
async fn initialize_status(url: &str, authorization: Option<String>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}}));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .expect("an answer in time")
        .expect("the request is sent")
        .status()
        .as_u16()
}

/// Without a configured token, remote mode makes one and prints it on a `token:` line (the
/// test reads stderr redacted, so it sees only that the line is there) and requires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_mcp_remote_http_generates_and_requires_a_token() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, started, url) = start_remote_http(home.path(), None).await;
    assert!(
        started.lines().any(|l| l == "token: [REDACTED]"),
        "{started}"
    );
    assert_eq!(initialize_status(&url, None).await, 401);
    child.terminate(Duration::from_secs(10)).await;
}

/// With STN_MCP_TOKEN, that token is required, nothing is generated, and it is never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_mcp_remote_http_uses_the_token_from_the_environment() {
    let home = tempfile::tempdir().unwrap();
    let token = format!("mcp-{}", "k7Qz".repeat(8));
    let (mut child, started, url) = start_remote_http(home.path(), Some(&token)).await;
    assert!(!started.contains("token: "), "{started}");
    assert_eq!(initialize_status(&url, None).await, 401);
    let wrong = format!("Bearer {}x", &token[..token.len() - 1]);
    assert_eq!(initialize_status(&url, Some(wrong)).await, 401);
    assert_eq!(
        initialize_status(&url, Some(format!("Bearer {token}"))).await,
        200
    );
    child.terminate(Duration::from_secs(10)).await;
    let stderr = child.final_stderr_tail().await;
    assert!(stderr.contains("wrong bearer token"), "{stderr}");
    assert!(!stderr.contains(&token), "{stderr}");
}

#[test]
fn stn_mcp_names_a_missing_token_variable() {
    let home = tempfile::tempdir().unwrap();
    assert_cmd::Command::cargo_bin("stn")
        .unwrap()
        .args([
            "mcp",
            "--backend",
            "opencode-cli",
            "--http",
            "127.0.0.1:0",
            "--token-env",
            "STN_TEST_NO_SUCH_TOKEN_VAR",
        ])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("STN_DATA_DIR", home.path().join("data"))
        .env_remove("STN_TEST_NO_SUCH_TOKEN_VAR")
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "--token-env STN_TEST_NO_SUCH_TOKEN_VAR: the environment variable STN_TEST_NO_SUCH_TOKEN_VAR is not set",
        ));
}
