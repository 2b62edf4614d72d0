//! The MCP server over an in-process backend: fast and deterministic.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rmcp::model::{
    LoggingLevel, ReadResourceRequestParams, ResourceContents, SetLevelRequestParams,
};
use rmcp::service::PeerRequestOptions;
use serde_json::json;
use station_agent::CodingTools;

use crate::support::*;

const EXPECTED_TOOLS: [&str; 11] = [
    "coding_open",
    "code",
    "coding_close",
    "coding_commit",
    "coding_push",
    "coding_branch",
    "coding_rewind",
    "coding_sessions",
    "coding_status",
    "coding_wait",
    "coding_cancel",
];

#[tokio::test]
async fn lists_every_tool_with_its_schema_and_documents_them() {
    let (f, _) = Fixture::fake();
    let c = connect(&f.server).await;
    let info = c.client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("station")
    );
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(
        instructions.contains("`fake`") && instructions.contains("wait=false"),
        "{instructions}"
    );

    let tools = c.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, EXPECTED_TOOLS);
    for spec in CodingTools::specs() {
        let tool = tools.iter().find(|t| t.name == spec.name).unwrap();
        let mut schema = serde_json::Value::Object((*tool.input_schema).clone());
        if spec.name == "code" {
            let wait = schema["properties"]
                .as_object_mut()
                .unwrap()
                .remove("wait")
                .unwrap();
            assert_eq!(wait["type"], "boolean");
        }
        assert_eq!(schema, spec.schema, "{} has the agent's schema", spec.name);
        assert!(
            tool.description
                .as_deref()
                .unwrap_or("")
                .starts_with(&spec.description),
            "{}",
            spec.name
        );
    }
    let wait = tools.iter().find(|t| t.name == "coding_wait").unwrap();
    assert_eq!(
        wait.input_schema["properties"]["timeout_secs"]["maximum"],
        55
    );
    assert_eq!(wait.input_schema["required"], json!(["task_id"]));
    let sessions = tools.iter().find(|t| t.name == "coding_sessions").unwrap();
    assert_eq!(
        sessions.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );

    let resources = c.client.list_all_resources().await.unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].uri, station_mcp::TOOLS_RESOURCE_URI);
    let read = c
        .client
        .read_resource(ReadResourceRequestParams::new(
            station_mcp::TOOLS_RESOURCE_URI,
        ))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents {
        text, mime_type, ..
    } = &read.contents[0]
    else {
        panic!("text contents: {read:?}");
    };
    assert_eq!(mime_type.as_deref(), Some("text/markdown"));
    for needle in [
        "# Station coding tools",
        "- name: `fake`",
        "- capabilities: streaming, cancel",
        "- binary: in-process test double",
        "### `coding_wait`",
        "- `instruction` (string, required)",
        "- `wait` (boolean, optional)",
        "wait: false",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let missing = c
        .client
        .read_resource(ReadResourceRequestParams::new("station://nope"))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("no resource `station://nope`"),
        "{missing}"
    );
}

#[tokio::test]
async fn open_code_close_reports_progress_and_logs() {
    let (f, _) = Fixture::fake();
    let c = connect(&f.server).await;
    let ws = f.workspace("ws");
    let session = open(&c.client, &ws, "hello").await;

    let done = ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "please write hello.py"}),
        )
        .await,
    );
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["summary"], "All done.");
    assert_eq!(done["files_changed"][0]["path"], "hello.py");
    assert!(done["task_id"].as_str().unwrap().starts_with("task_"));
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );

    let step = format!("step 1: write {}", ws.join("hello.py").display());
    let wanted = [
        "started on fake",
        step.as_str(),
        "edited hello.py",
        "says: All done.",
    ];
    let messages = c
        .seen
        .progress_messages_when(|m| wanted.iter().all(|w| m.iter().any(|m| m == w)))
        .await;
    for expected in wanted {
        assert!(
            messages.iter().any(|m| m == expected),
            "no {expected:?} in {messages:#?}"
        );
    }
    let values: Vec<f64> = c.seen.progress().iter().map(|p| p.progress).collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "progress grows: {values:?}"
    );
    let logs = c.seen.logs();
    assert!(
        logs.iter()
            .any(|l| l.logger.as_deref() == Some("station.coding")
                && l.data["type"] == "file_edited"
                && l.data["message"] == "edited hello.py"
                && l.data["task_id"] == done["task_id"]),
        "{logs:#?}"
    );

    let listed = ok_json(&call(&c.client, "coding_sessions", json!({})).await);
    assert_eq!(listed["backend"], "fake");
    let first = &listed["sessions"][0];
    assert_eq!(first["id"], session.as_str());
    assert_eq!(first["title"], "hello");
    assert_eq!(first["backend_session_id"], "fake_1");
    assert_eq!(first["workspace"], ws.to_str().unwrap());

    let closed = ok_json(&call(&c.client, "coding_close", json!({"session_id": session})).await);
    assert_eq!(closed["session_id"], session.as_str());
}

#[tokio::test]
async fn a_failed_task_is_a_tool_error_and_log_levels_filter() {
    let (f, _) = Fixture::fake();
    let c = connect(&f.server).await;
    let session = open(&c.client, &f.workspace("ws"), "t").await;
    c.client
        .set_level(SetLevelRequestParams::new(LoggingLevel::Warning))
        .await
        .unwrap();
    let failed = err_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "fail now"}),
        )
        .await,
    );
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "the build failed");
    let logs = c.seen.logs();
    assert!(!logs.is_empty(), "the failure is a warning");
    assert!(
        logs.iter().all(|l| l.level == LoggingLevel::Warning),
        "{logs:#?}"
    );
    assert!(
        !c.seen.progress().is_empty(),
        "progress is not filtered by the log level"
    );
}

#[tokio::test]
async fn invalid_arguments_are_tool_errors_with_clear_messages() {
    let (f, state) = Fixture::fake();
    let c = connect(&f.server).await;
    let session = open(&c.client, &f.workspace("ws"), "t").await;
    let cases = [
        (
            "code",
            json!({"session_id": session}),
            "`instruction` is required by `code`",
        ),
        (
            "code",
            json!({"session_id": session, "instruction": "x", "wait": "yes"}),
            "`wait` must be true or false, not a string",
        ),
        (
            "code",
            json!({"session_id": session, "instruction": 7}),
            "`instruction` must be a string, not a number",
        ),
        (
            "code",
            json!({"session_id": session, "instructions": "x"}),
            "`code` takes no argument `instructions`",
        ),
        (
            "code",
            json!({"session_id": "stn_missing", "instruction": "x"}),
            "session not found: stn_missing",
        ),
        (
            "code",
            json!({"session_id": "stn_missing", "instruction": "x", "wait": false}),
            "session not found: stn_missing",
        ),
        ("coding_nope", json!({}), "unknown tool `coding_nope`"),
        (
            "coding_status",
            json!({"task_id": "task_nope"}),
            "unknown task_id `task_nope`",
        ),
        (
            "coding_wait",
            json!({"task_id": "task_nope"}),
            "unknown task_id `task_nope`",
        ),
        (
            "coding_cancel",
            json!({}),
            "`task_id` is required by `coding_cancel`",
        ),
        (
            "coding_wait",
            json!({"task_id": "t", "timeout_secs": 120}),
            "`timeout_secs` must be between 1 and 55, not 120",
        ),
        (
            "coding_commit",
            json!({"session_id": session}),
            "`message` is required by `coding_commit`",
        ),
    ];
    for (tool, args, expected) in cases {
        let error = err_json(&call(&c.client, tool, args.clone()).await);
        assert_eq!(error["error"], expected, "{tool} {args}");
        assert!(!error["fix"].as_str().unwrap_or("").is_empty(), "{error}");
    }
    assert_eq!(state.started.load(Ordering::SeqCst), 0, "no task ran");
}

#[tokio::test]
async fn wait_false_then_status_wait_and_cancel() {
    let (f, state) = Fixture::fake();
    let c = connect(&f.server).await;
    let session = open(&c.client, &f.workspace("ws"), "t").await;

    // Started in the background: the call returns at once.
    let started = ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "gate then write a.py", "wait": false}),
        )
        .await,
    );
    assert_eq!(started["status"], "running");
    assert_eq!(started["session_id"], session.as_str());
    let task = started["task_id"].as_str().unwrap().to_string();
    state.wait_started(1).await;

    let status = ok_json(&call(&c.client, "coding_status", json!({"task_id": task})).await);
    assert_eq!(status["status"], "running");
    assert!(status.get("result").is_none());

    // A bounded wait returns `running` while the task waits at the gate.
    let before = Instant::now();
    let waited = ok_json(
        &call(
            &c.client,
            "coding_wait",
            json!({"task_id": task, "timeout_secs": 1}),
        )
        .await,
    );
    assert_eq!(waited["status"], "running");
    assert!(
        before.elapsed() >= Duration::from_secs(1),
        "{:?}",
        before.elapsed()
    );
    assert_eq!(waited["last"], "waiting at the gate");

    state.release();
    let done = ok_json(&call(&c.client, "coding_wait", json!({"task_id": task})).await);
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["task_id"], task.as_str());
    assert_eq!(done["files_changed"][0]["path"], "a.py");
    assert!(f.workspace("ws").join("a.py").exists());
    let status = ok_json(&call(&c.client, "coding_status", json!({"task_id": task})).await);
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["result"]["summary"], "All done.");
    let kinds: Vec<&str> = status["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "notice",
            "tool_started",
            "tool_finished",
            "file_edited",
            "text",
            "finished"
        ]
    );

    // coding_cancel stops a running task on the backend.
    let blocked = ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "block", "wait": false}),
        )
        .await,
    );
    let task = blocked["task_id"].as_str().unwrap().to_string();
    state.wait_started(2).await;
    let cancelled = ok_json(&call(&c.client, "coding_cancel", json!({"task_id": task})).await);
    assert_eq!(cancelled["status"], "cancelled");
    state.wait_cancelled(1).await;
    let status = ok_json(&call(&c.client, "coding_status", json!({"task_id": task})).await);
    assert_eq!(status["status"], "cancelled");
    assert_eq!(status["result"]["stop_reason"], "cancelled");
    let waited = err_json(&call(&c.client, "coding_wait", json!({"task_id": task})).await);
    assert_eq!(waited["status"], "cancelled");
    assert_eq!(waited["error"], "task cancelled with coding_cancel");
    let again = ok_json(&call(&c.client, "coding_cancel", json!({"task_id": task})).await);
    assert_eq!(again["status"], "cancelled");
    assert!(again["note"].as_str().unwrap().contains("already ended"));
}

#[tokio::test]
async fn coding_wait_sends_progress_while_it_waits() {
    let (f, state) = Fixture::fake();
    let server = f.server.clone().with_heartbeat(Duration::from_millis(200));
    let c = connect(&server).await;
    let session = open(&c.client, &f.workspace("ws"), "t").await;
    let started = ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "gate", "wait": false}),
        )
        .await,
    );
    state.wait_started(1).await;
    poll_status(&c.client, &started["task_id"], "waiting at the gate").await;
    c.seen.clear();
    let waited = ok_json(
        &call(
            &c.client,
            "coding_wait",
            json!({"task_id": started["task_id"], "timeout_secs": 1}),
        )
        .await,
    );
    assert_eq!(waited["status"], "running");
    let messages = c.seen.progress_messages();
    assert!(messages.len() >= 3, "{messages:?}");
    assert!(
        messages
            .iter()
            .all(|m| m.starts_with("still working (") && m.ends_with("last: waiting at the gate")),
        "{messages:?}"
    );
    state.release();
}

/// Poll `coding_status` until its `last` event says `last`.
async fn poll_status(client: &Client, task: &serde_json::Value, last: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = ok_json(&call(client, "coding_status", json!({"task_id": task})).await);
        if status["last"] == last {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "last event never became {last:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_cancel_stops_the_task_and_the_server_stays_usable() {
    let (f, state) = Fixture::fake();
    let c = connect(&f.server).await;
    let session = open(&c.client, &f.workspace("ws"), "t").await;
    let handle = start_call(
        &c.client,
        "code",
        json!({"session_id": session, "instruction": "block"}),
        PeerRequestOptions::no_options(),
    )
    .await;
    state.wait_started(1).await;
    c.client
        .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
            Some(handle.id.clone()),
            Some("user pressed stop".into()),
        ))
        .await
        .unwrap();
    state.wait_cancelled(1).await;
    drop(handle);

    // Still serving: the tools list and a new task work.
    assert_eq!(
        c.client.list_all_tools().await.unwrap().len(),
        EXPECTED_TOOLS.len()
    );
    let done = ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "write b.py"}),
        )
        .await,
    );
    assert_eq!(done["files_changed"][0]["path"], "b.py");
}

#[tokio::test]
async fn closing_the_connection_cancels_running_tasks() {
    let (f, state) = Fixture::fake();
    let c = connect(&f.server).await;
    let session = open(&c.client, &f.workspace("ws"), "t").await;
    ok_json(
        &call(
            &c.client,
            "code",
            json!({"session_id": session, "instruction": "block", "wait": false}),
        )
        .await,
    );
    state.wait_started(1).await;
    c.client.cancel().await.unwrap();
    let served = tokio::time::timeout(DEADLINE, c.server)
        .await
        .expect("serve_io ends");
    served.unwrap().unwrap();
    state.wait_cancelled(1).await;
}
