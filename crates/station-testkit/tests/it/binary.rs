//! The `scripted-model` binary.

use std::time::Duration;

use serde_json::{Value, json};
use station_core::process::CommandSpec;

use crate::support::openai_body;

#[tokio::test]
async fn binary_serves_a_json_script_and_prints_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.json");
    std::fs::write(
        &script,
        r#"{"rules": [{"on": "hello.py", "steps": [{"write": {"path": "hello.py", "content": "print(1)\n"}}]}],
            "fallback": [{"text": "fallback reply"}]}"#,
    )
    .unwrap();
    let log = dir.path().join("log.jsonl");
    let mut child = CommandSpec::new(env!("CARGO_BIN_EXE_scripted-model"), dir.path())
        .args(["--port", "0", "--script"])
        .arg(&script)
        .arg("--log")
        .arg(&log)
        .spawn()
        .unwrap();
    let mut lines = child.take_stdout_lines().unwrap();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let reply: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&openai_body("create hello.py", &[], false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let args = reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(args).unwrap(),
        json!({"filePath": "/work/ws/hello.py", "content": "print(1)\n"})
    );
    let reply: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&openai_body("other", &[], false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "fallback reply");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    child.terminate(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn binary_rejects_a_bad_script_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bad.json");
    std::fs::write(
        &script,
        r#"{"rules": [{"on": "x", "steps": [{"unknown": 1}]}]}"#,
    )
    .unwrap();
    let err = CommandSpec::new(env!("CARGO_BIN_EXE_scripted-model"), dir.path())
        .arg("--script")
        .arg(&script)
        .output(Duration::from_secs(20), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot load script") && err.contains("exit code 2"),
        "{err}"
    );
}
