//! Wire compatibility: the TypeScript plugin's events and results against our client, and the Go
//! Station's task message against our worker. The JSON literals are the ones in PROTOCOL.md.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use station_backend_nats::{NatsBackend, NatsBackendOptions, WorkerOptions};
use station_core::{CodingBackend, EventKind, OpenRequest, StopReason, Task};
use station_testkit::peers::NatsServer;

use crate::support::*;

/// A fake plugin: takes one task from `station.coding.task` and answers with `reply(task)`,
/// the messages a plugin 0.1.0 publishes (subject, JSON) in order.
async fn fake_plugin(
    url: &str,
    delay: Duration,
    reply: impl FnOnce(&Value) -> Vec<(String, Value)> + Send + 'static,
) -> tokio::task::JoinHandle<Value> {
    let nats = async_nats::connect(url).await.unwrap();
    // No queue group, exactly like the plugin.
    let mut tasks = nats.subscribe("station.coding.task").await.unwrap();
    nats.flush().await.unwrap();
    tokio::spawn(async move {
        let m = tokio::time::timeout(Duration::from_secs(20), tasks.next())
            .await
            .expect("the plugin receives the task")
            .unwrap();
        let task: Value = serde_json::from_slice(&m.payload).unwrap();
        tokio::time::sleep(delay).await;
        for (subject, body) in reply(&task) {
            nats.publish(subject, serde_json::to_vec(&body).unwrap().into())
                .await
                .unwrap();
        }
        nats.flush().await.unwrap();
        task
    })
}

fn plugin_success(task: &Value) -> Vec<(String, Value)> {
    let id = task["taskID"].as_str().unwrap().to_string();
    let stream = task["callback"]["streamSubject"]
        .as_str()
        .unwrap()
        .to_string();
    let result = task["callback"]["resultSubject"]
        .as_str()
        .unwrap()
        .to_string();
    let name = task["session"]["name"].clone();
    let ws = task["workspace"]["name"].as_str().unwrap().to_string();
    let path = format!("/opencode/workspaces/{ws}");
    vec![
        (
            stream.clone(),
            json!({"taskID": id, "seq": 1, "timestamp": "2025-06-01T10:00:00.000Z", "type": "workspace_created", "content": path}),
        ),
        (
            stream.clone(),
            json!({"taskID": id, "seq": 2, "timestamp": "2025-06-01T10:00:00.050Z", "type": "session_created", "session": {"name": name, "opencodeID": "ses_4f2a9c"}}),
        ),
        (
            stream.clone(),
            json!({"taskID": id, "seq": 3, "timestamp": "2025-06-01T10:00:00.100Z", "type": "prompt_sent", "content": task["prompt"]}),
        ),
        (
            stream.clone(),
            json!({"taskID": id, "seq": 4, "timestamp": "2025-06-01T10:00:04.000Z", "type": "text", "content": "Created notes.md"}),
        ),
        (
            stream.clone(),
            json!({"taskID": id, "seq": 5, "timestamp": "2025-06-01T10:00:04.001Z", "type": "tool_end", "tool": {"name": "write", "callID": "toolu_01", "output": "Wrote file successfully."}}),
        ),
        (
            result,
            json!({
                "taskID": id,
                "status": "completed",
                "result": "Created notes.md",
                "session": {"name": name, "opencodeID": "ses_4f2a9c", "messageCount": 1},
                "workspace": {"name": ws, "path": path, "git": {"branch": "main", "commit": "3b18e512dba79e4c8300dd08aeb37f8e728b8dad", "dirty": true}},
                "metrics": {"duration": 4012, "toolCalls": 1, "streamEvents": 5}
            }),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_talks_to_a_plugin() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let plugin = fake_plugin(&config.url, Duration::ZERO, plugin_success).await;
    let c = client(&config).await;
    let s = c
        .open(OpenRequest {
            workspace: Some("/home/me/projects/notes".into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    let mut task = Task::new("Write notes.md");
    task.context = Some("A notes app".into());
    let (events, outcome) = run(c.clone(), &s, task).await;
    assert_event_contract(&events);

    // The task as the plugin sees it.
    let sent = plugin.await.unwrap();
    let id = sent["taskID"].as_str().unwrap();
    assert_eq!(sent["session"]["name"], s.id.to_string());
    assert_eq!(sent["session"]["continue"], true);
    assert_eq!(
        sent["workspace"]["name"], "notes",
        "a relative name, never the local path"
    );
    assert!(sent["workspace"].get("git").is_none());
    assert_eq!(
        sent["prompt"],
        "Context:\nA notes app\n\nTask:\nWrite notes.md"
    );
    assert_eq!(sent["timeout"], 600_000);
    assert_eq!(
        sent["callback"]["streamSubject"],
        format!("station.coding.stream.{id}")
    );
    assert_eq!(
        sent["callback"]["resultSubject"],
        format!("station.coding.result.{id}")
    );
    assert!(!sent.to_string().contains("token"));

    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.stop_reason, StopReason::Completed);
    assert_eq!(outcome.summary, "Created notes.md");
    assert_eq!(outcome.duration_ms, 4012);
    // A plugin does not enforce the policy sent with the task: the outcome says so.
    assert!(
        matches!(outcome.policy_gaps.as_slice(), [gap] if gap.contains("Station OpenCode plugin")),
        "{:#?}",
        outcome.policy_gaps
    );
    assert!(sent["policy"].is_object(), "{sent}");
    assert_eq!(outcome.backend_session_id, Some(s.id.to_string()));
    assert_eq!(outcome.tool_calls.len(), 1);
    assert_eq!(outcome.tool_calls[0].name, "write");
    assert_eq!(outcome.tool_calls[0].id.as_deref(), Some("toolu_01"));
    assert_eq!(
        outcome.tool_calls[0].output.as_deref(),
        Some("Wrote file successfully.")
    );
    let progress: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notice { message } => Some(format!("notice: {message}")),
            EventKind::Text { text } => Some(format!("text: {text}")),
            EventKind::ToolFinished { name, output, .. } => {
                Some(format!("tool: {name} {}", output.as_deref().unwrap_or("")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        [
            "notice: workspace created: /opencode/workspaces/notes",
            &format!(
                "notice: session created `{}` (executor session ses_4f2a9c)",
                s.id
            ),
            "text: Created notes.md",
            "tool: write Wrote file successfully.",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_result_is_a_failed_outcome_even_after_the_ack_window() {
    let server = NatsServer::start().await;
    let config = config(&server);
    // Silent for longer than the ack window, as a plugin is while OpenCode works.
    let plugin = fake_plugin(&config.url, Duration::from_secs(3), |task| {
        let id = task["taskID"].as_str().unwrap().to_string();
        let name = task["session"]["name"].clone();
        vec![
            (task["callback"]["streamSubject"].as_str().unwrap().to_string(),
             json!({"taskID": id, "seq": 1, "timestamp": "2025-06-01T10:00:00.000Z", "type": "error", "content": "Session ses_9 not found. OpenCode may not have persisted the session. Try again."})),
            (task["callback"]["resultSubject"].as_str().unwrap().to_string(),
             json!({"taskID": id, "status": "error", "error": "Session ses_9 not found. OpenCode may not have persisted the session. Try again.", "errorType": "Error",
                    "session": {"name": name, "opencodeID": "", "messageCount": 0},
                    "workspace": {"name": task["workspace"]["name"], "path": ""},
                    "metrics": {"duration": 0, "toolCalls": 0, "streamEvents": 1}})),
        ]
    })
    .await;
    let options = NatsBackendOptions {
        ack_timeout: Duration::from_secs(1),
        ..NatsBackendOptions::default()
    };
    let c = Arc::new(NatsBackend::connect(&config, options).await.unwrap());
    let s = c.open(OpenRequest::default()).await.unwrap();
    let (events, outcome) = run(c.clone(), &s, Task::new("hello")).await;
    plugin.await.unwrap();
    assert_event_contract(&events);
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Error);
    assert!(
        outcome
            .error
            .unwrap()
            .starts_with("Session ses_9 not found")
    );
    let notices: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notice { message } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("no Station worker acknowledged")),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("worker error: Session ses_9")),
        "{notices:?}"
    );
}

/// The task message exactly as the Go Station (v0.23) publishes it: an absolute local
/// workspace path, `continue: true`, the timeout in ms, no reply subject.
fn go_task(task_id: &str, prompt: &str) -> Value {
    json!({
        "taskID": task_id,
        "session": {"name": "session-1a2b3c4d", "continue": true},
        "workspace": {"name": "/workspaces/station-coding/ws_1717236000123456789"},
        "prompt": prompt,
        "timeout": 600000,
        "callback": {
            "streamSubject": format!("station.coding.stream.{task_id}"),
            "resultSubject": format!("station.coding.result.{task_id}")
        }
    })
}

async fn go_station_round(nats: &async_nats::Client, task: &Value) -> (Vec<Value>, Value) {
    let id = task["taskID"].as_str().unwrap();
    let mut stream = nats
        .subscribe(format!("station.coding.stream.{id}"))
        .await
        .unwrap();
    let mut result = nats
        .subscribe(format!("station.coding.result.{id}"))
        .await
        .unwrap();
    nats.publish(
        "station.coding.task",
        serde_json::to_vec(task).unwrap().into(),
    )
    .await
    .unwrap();
    nats.flush().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), result.next())
        .await
        .unwrap()
        .unwrap();
    let result: Value = serde_json::from_slice(&result.payload).unwrap();
    let mut events = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        events.push(serde_json::from_slice::<Value>(&m.payload).unwrap());
    }
    (events, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_worker_answers_a_go_station_like_the_plugin() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let _w = start_worker(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().into(),
        "w-go",
        WorkerOptions::default(),
    )
    .await;
    wait_for_workers(&*client(&config).await, &["w-go"]).await;
    let nats = async_nats::connect(&config.url).await.unwrap();

    let (events, result) = go_station_round(
        &nats,
        &go_task(
            "5f0c3a52-8c1e-4d8b-9a65-2f1d0e7b9c41",
            "write notes.md hello from go",
        ),
    )
    .await;
    // The upstream nesting bug is fixed: the absolute name lands at <base>/<last segment>.
    let ws = base.path().join("ws_1717236000123456789");
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.md")).unwrap(),
        "hello from go\n"
    );

    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "workspace_created",
            "session_created",
            "prompt_sent",
            "tool_start",
            "tool_end",
            "text"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["taskID"], "5f0c3a52-8c1e-4d8b-9a65-2f1d0e7b9c41");
        assert_eq!(e["seq"], i as u64 + 1);
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let canonical = ws.canonicalize().unwrap();
    assert_eq!(events[0]["content"], canonical.display().to_string());
    assert_eq!(
        events[1]["session"],
        json!({"name": "session-1a2b3c4d", "opencodeID": "fake_0"})
    );
    assert_eq!(events[2]["content"], "write notes.md hello from go");
    assert_eq!(events[4]["tool"]["name"], "write");
    assert_eq!(events[4]["tool"]["callID"], "call_1");
    assert_eq!(events[4]["tool"]["output"], "Wrote file");
    assert_eq!(events[5]["content"], "Created notes.md.");

    // The plugin's result fields, then our additive ones.
    assert_eq!(result["taskID"], "5f0c3a52-8c1e-4d8b-9a65-2f1d0e7b9c41");
    assert_eq!(result["status"], "completed");
    assert_eq!(result["result"], "Created notes.md.");
    assert_eq!(
        result["session"],
        json!({"name": "session-1a2b3c4d", "opencodeID": "fake_0", "messageCount": 1})
    );
    assert_eq!(
        result["workspace"]["name"],
        "/workspaces/station-coding/ws_1717236000123456789"
    );
    assert_eq!(result["workspace"]["path"], canonical.display().to_string());
    assert_eq!(result["metrics"]["toolCalls"], 1);
    assert_eq!(result["metrics"]["streamEvents"], 6);
    assert_eq!(result["metrics"]["promptTokens"], 10);
    assert_eq!(result["metrics"]["completionTokens"], 5);
    assert!(result["metrics"]["duration"].is_u64());
    assert!(result.get("error").is_none());
    assert_eq!(result["worker"], "w-go");
    assert_eq!(result["stop_reason"], "completed");
    assert_eq!(result["files_changed"][0]["path"], "notes.md");
    assert_eq!(result["usage"]["input_tokens"], 10);
    assert_eq!(result["cost"], 0.25);
    assert_eq!(result["tool_calls"][0]["name"], "write");

    // The session in KV, in the plugin's SessionState shape.
    let js = async_nats::jetstream::new(nats.clone());
    let kv = js.get_key_value("opencode-sessions").await.unwrap();
    let state: Value =
        serde_json::from_slice(&kv.get("session-1a2b3c4d").await.unwrap().unwrap()).unwrap();
    assert_eq!(state["sessionName"], "session-1a2b3c4d");
    assert_eq!(state["opencodeID"], "fake_0");
    assert_eq!(state["workspaceName"], "ws_1717236000123456789");
    assert_eq!(state["workspacePath"], canonical.display().to_string());
    assert_eq!(state["messageCount"], 1);
    for key in ["created", "lastUsed"] {
        assert!(
            state[key].as_str().unwrap().ends_with('Z'),
            "{key}: {state}"
        );
    }

    // The next task of the session continues it, in the same workspace, even when Go sends the
    // worker's own absolute path back (what it does after reloading a session from KV).
    let mut second = go_task("6a1d4b63-9d2f-4e9c-8b76-3a2e1f8c0d52", "recall");
    second["workspace"]["name"] = json!(canonical.display().to_string());
    let (events, result) = go_station_round(&nats, &second).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(&types[..2], ["workspace_reused", "session_reused"]);
    assert_eq!(result["result"], "earlier: write notes.md hello from go");
    assert_eq!(result["session"]["messageCount"], 2);
    assert_eq!(
        agent.executions.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refuses_escaping_workspaces_and_git_without_a_hook() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let _w = start_worker(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().join("ws"),
        "w-guard",
        WorkerOptions::default(),
    )
    .await;
    wait_for_workers(&*client(&config).await, &["w-guard"]).await;
    let nats = async_nats::connect(&config.url).await.unwrap();

    let mut escape = go_task("7b2e5c74-0e3a-4fad-9c87-4b3f2a9d1e63", "write x.txt nope");
    escape["workspace"]["name"] = json!("../outside");
    let (_, result) = go_station_round(&nats, &escape).await;
    assert_eq!(result["status"], "error");
    assert!(
        result["error"].as_str().unwrap().contains("`..`"),
        "{result}"
    );
    assert!(!base.path().join("outside").exists());

    let mut git = go_task("8c3f6d85-1f4b-40be-8d98-5c4a3b0e2f74", "write x.txt nope");
    git["workspace"] = json!({"name": "ws_git", "git": {"url": "https://example.invalid/org/repo.git", "branch": "main", "pull": true}});
    let (_, result) = go_station_round(&nats, &git).await;
    assert_eq!(result["status"], "error");
    assert!(
        result["error"].as_str().unwrap().contains("no git support"),
        "{result}"
    );
    assert_eq!(
        agent.executions.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
