//! The MCP server over the real `opencode run` backend (pinned, from `cargo xtask install-peers`)
//! against the scripted model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CancelledNotificationParam;
use rmcp::service::PeerRequestOptions;
use serde_json::json;
use station_backend_cli::CliBackend;
use station_backend_cli::CliConfig;
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{OPENCODE_ENV_REMOVE, OPENCODE_MODEL, opencode_bin, opencode_env};
use station_testkit::process::live_group_members;

use crate::support::*;

fn real_fixture(model: &ScriptedModel, timeout_sec: u64) -> Fixture {
    Fixture::new_with(|dir| {
        let backend = CliBackend::new(CliConfig {
            binary: opencode_bin().to_string_lossy().into_owned(),
            timeout_sec,
            model: Some(OPENCODE_MODEL.into()),
        })
        .with_env(opencode_env(&dir.join("home"), model))
        .with_env_remove(OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(dir.join("backend-workspaces"));
        Arc::new(backend)
    })
}

/// Process groups of the live processes working in `dir` (`opencode run` runs there).
fn groups_working_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut groups = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|s| s.parse::<u32>().is_ok());
        if !is_pid {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).ok().as_deref() != Some(dir.as_path()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, pgrp.
        let rest = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if let Some(pgid) = fields.get(2).and_then(|s| s.parse::<u32>().ok())
            && !groups.contains(&pgid)
            && pgid != this_process_group()
        {
            groups.push(pgid);
        }
    }
    groups
}

fn this_process_group() -> u32 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
    rest.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn workspace(f: &Fixture) -> PathBuf {
    let ws = f.workspace("ws");
    std::fs::create_dir_all(&ws).unwrap();
    ws.canonicalize().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn real_opencode_open_code_close_over_mcp() {
    let script = Script::new().on(
        "hello.py",
        vec![
            Step::write("hello.py", "print('Hello World')\n")
                .with_text_before("I'll create hello.py."),
            Step::text("Created hello.py."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let f = real_fixture(&model, 120);
    let c = connect(&f.server).await;
    let ws = workspace(&f);

    let session = open(&c.client, &ws, "hello over mcp").await;
    let done = ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "Create hello.py printing Hello World"}),
        )
        .await,
    );
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["summary"], "Created hello.py.");
    assert_eq!(
        done["files_changed"],
        json!([{"path": "hello.py", "action": "created", "lines_added": 1, "lines_removed": 0}])
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    let messages = c
        .seen
        .progress_messages_when(|m| {
            m.iter().any(|m| m == "started on opencode-cli")
                && m.iter().any(|m| m.starts_with("step 1: write "))
        })
        .await;
    assert!(
        messages.iter().any(|m| m == "started on opencode-cli"),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("step 1: write ") && m.ends_with("hello.py")),
        "{messages:#?}"
    );
    assert!(
        c.seen
            .logs()
            .iter()
            .any(|l| l.data["type"] == "tool_started"),
        "{:#?}",
        c.seen.logs()
    );

    let listed = ok_json(&call(&c.client, "coding_sessions", json!({"limit": 5})).await);
    let known = &listed["sessions"][0];
    assert_eq!(known["id"], session.as_str());
    assert!(
        known["backend_session_id"]
            .as_str()
            .unwrap_or("")
            .starts_with("ses_"),
        "{listed:#}"
    );
    ok_json(&call(&c.client, "coding_close", json!({"session_id": session})).await);
}

/// A task of more than 60 s completes for a client whose request timeout is 60 s but is reset by
/// progress (what Claude Desktop and others do), thanks to the heartbeats.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_longer_than_a_minute_completes_with_progress() {
    let words = (1..=66)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = Script::new().on(
        "long answer",
        vec![Step::slow_text(words.clone(), Duration::from_secs(1))],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let f = real_fixture(&model, 300);
    let c = connect(&f.server).await;
    let ws = workspace(&f);
    let session = open(&c.client, &ws, "slow").await;

    let started = Instant::now();
    let handle = start_call(
        &c.client,
        "code",
        json!({"session_id": session, "instruction": "Give me a long answer"}),
        PeerRequestOptions::with_timeout(Duration::from_secs(60)).reset_timeout_on_progress(),
    )
    .await;
    let done = ok_json(&finish_call(handle).await);
    let took = started.elapsed();
    assert!(took > Duration::from_secs(60), "the task took {took:?}");
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert!(
        done["summary"].as_str().unwrap_or("").contains("w66"),
        "{done:#}"
    );
    let progress = c.seen.progress();
    assert!(
        progress.len() >= 10,
        "{} progress notifications: {progress:#?}",
        progress.len()
    );
    let heartbeats = c
        .seen
        .progress_messages()
        .iter()
        .filter(|m| m.starts_with("still working ("))
        .count();
    assert!(heartbeats >= 10, "{heartbeats} heartbeats in {took:?}");
}

/// A client's `notifications/cancelled` kills `opencode run` (its whole process group) and the
/// server goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_cancel_kills_the_opencode_process_group() {
    let words = (1..=300)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = Script::new()
        .on(
            "endless",
            vec![Step::slow_text(words, Duration::from_millis(500))],
        )
        .on("quick", vec![Step::text("Quick answer.")]);
    let model = ScriptedModel::start(script).await.unwrap();
    let f = real_fixture(&model, 300);
    let c = connect(&f.server).await;
    let ws = workspace(&f);
    let session = open(&c.client, &ws, "cancel me").await;

    let handle = start_call(
        &c.client,
        "code",
        json!({"session_id": session, "instruction": "Write an endless story"}),
        PeerRequestOptions::no_options(),
    )
    .await;
    // The model is streaming to a live `opencode run` in the workspace.
    let mut groups = Vec::new();
    poll_until("opencode streaming from the model", || {
        groups = groups_working_in(&ws);
        !groups.is_empty() && model.open_streams() > 0
    })
    .await;

    let cancelled_at = Instant::now();
    c.client
        .notify_cancelled(CancelledNotificationParam::new(
            Some(handle.id.clone()),
            Some("stop".into()),
        ))
        .await
        .unwrap();
    drop(handle);
    poll_until("the process group to be gone", || {
        groups.iter().all(|g| live_group_members(*g).is_empty())
    })
    .await;
    poll_until("the model stream to close", || model.open_streams() == 0).await;
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(15),
        "stopped in {:?}",
        cancelled_at.elapsed()
    );

    let done = ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "A quick one"}),
        )
        .await,
    );
    assert_eq!(done["summary"], "Quick answer.", "{done:#}");
}
