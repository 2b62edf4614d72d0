//! The real stdio transport: this test binary runs itself as a child that serves MCP on its
//! stdin/stdout ([`CodingMcpServer::serve_stdio`]), as `stn mcp` does for Claude Desktop.

use std::time::Duration;

use rmcp::ServiceExt;
use serde_json::json;
use station_core::process::CommandSpec;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::support::*;

/// Set in the child, which serves stdio instead of testing.
const CHILD_ENV: &str = "STATION_MCP_STDIO_CHILD";
const TEST_NAME: &str = "stdio::stdio_serves_a_client_in_another_process";

#[tokio::test(flavor = "multi_thread")]
async fn stdio_serves_a_client_in_another_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // The child: serve until the parent closes stdin. (libtest's own lines on stdout are
        // not JSON and MCP clients skip them; `--quiet` keeps them off the lines we write.)
        let (f, _) = Fixture::fake();
        f.server.clone().serve_stdio().await.expect("stdio serving");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let fifo = dir.path().join("stdin");
    CommandSpec::new("mkfifo", dir.path())
        .arg(&fifo)
        .output(DEADLINE, None)
        .await
        .expect("mkfifo");
    // The child's stdin is a FIFO we write to. (`CommandSpec::stdin_piped` would be simpler,
    // but station-core's spawn drops the piped stdin; see the crate report.)
    let exe = std::env::current_exe().unwrap();
    let mut child = CommandSpec::new("sh", dir.path())
        .args(["-c", r#"exec "$0" "$@" < "$STDIN_FIFO""#])
        .arg(&exe)
        .args([
            TEST_NAME,
            "--exact",
            "--nocapture",
            "--quiet",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("STDIN_FIFO", &fifo)
        .spawn()
        .expect("the test binary starts as a child");
    let stdout = child.take_stdout().unwrap();
    // Read-write so that opening does not wait for the child to open its end.
    let stdin = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(&fifo)
        .expect("the FIFO opens");

    // Pass the child's stdout on to the client, and keep reading it after the client is gone
    // so that the child can print its test result.
    let (client_end, mut pump_end) = tokio::io::duplex(1 << 16);
    let pump = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut transcript = String::new();
        let mut forwarding = true;
        while let Ok(Some(line)) = lines.next_line().await {
            if forwarding {
                forwarding = pump_end
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_ok();
            }
            transcript.push_str(&line);
            transcript.push('\n');
        }
        transcript
    });
    let (from_child, _) = tokio::io::split(client_end);

    let recorder = Recorder::default();
    let seen = recorder.0.clone();
    let client = match tokio::time::timeout(DEADLINE, recorder.serve((from_child, stdin))).await {
        Ok(c) => c.expect("the MCP handshake over stdio"),
        Err(_) => panic!(
            "no handshake; child stderr: {}",
            child.final_stderr_tail().await
        ),
    };
    assert_eq!(client.list_all_tools().await.unwrap().len(), 11);
    let session = open(&client, &ws, "stdio").await;
    let done = ok_json(
        &call(
            &client,
            "code",
            json!({"session_id": session, "instruction": "write std.py"}),
        )
        .await,
    );
    assert_eq!(done["files_changed"][0]["path"], "std.py");
    assert!(ws.join("std.py").exists());
    let messages = seen
        .progress_messages_when(|m| m.iter().any(|m| m == "edited std.py"))
        .await;
    assert!(
        messages.iter().any(|m| m == "edited std.py"),
        "{messages:?}"
    );

    // Closing stdin ends the server, and the child exits cleanly.
    client.cancel().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the child exits after stdin closes")
        .unwrap();
    let transcript = tokio::time::timeout(DEADLINE, pump).await.unwrap().unwrap();
    assert!(
        status.success() && transcript.contains("test result: ok. 1 passed"),
        "{status:?}\n{transcript}\n{}",
        child.final_stderr_tail().await
    );
}
