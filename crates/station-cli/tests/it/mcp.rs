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
