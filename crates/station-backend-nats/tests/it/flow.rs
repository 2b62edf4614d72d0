//! The conformance-like flow through NATS with a fake executor behind a real worker.

use std::sync::Arc;

use station_backend_nats::{WorkerOptions, meta};
use station_core::{CodingBackend, Error, EventKind, FileAction, OpenRequest, StopReason, Task};
use station_testkit::peers::NatsServer;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_execute_continue_from_another_instance_close_and_not_found() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent::default());
    let _worker = start_worker(
        &config,
        Arc::new(FakeExecutor::new(agent.clone())),
        base.path().to_path_buf(),
        "w-flow",
        WorkerOptions::default(),
    )
    .await;
    let first_client = client(&config).await;
    wait_for_workers(&first_client, &["w-flow"]).await;

    // Open with a local absolute path: only its last segment travels.
    let local = tempfile::tempdir().unwrap();
    let ws = local.path().join("ws-hello");
    let session = first_client
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(session.backend, "opencode-nats");
    assert_eq!(session.metadata[meta::WORKSPACE_NAME], "ws-hello");
    assert!(
        session.backend_session_id.is_none(),
        "no KV entry before the first task"
    );

    let (events, outcome) = run(
        first_client.clone(),
        &session,
        Task::new("write hello.py print('Hello World')"),
    )
    .await;
    assert_event_contract(&events);
    let outcome = outcome.expect("the task runs");
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.stop_reason, StopReason::Completed);
    assert_eq!(outcome.summary, "Created hello.py.");
    let written = std::fs::read_to_string(base.path().join("ws-hello/hello.py")).unwrap();
    assert_eq!(written, "print('Hello World')\n");
    assert_eq!(outcome.files_changed.len(), 1);
    assert_eq!(outcome.files_changed[0].path, "hello.py");
    assert_eq!(outcome.files_changed[0].action, FileAction::Created);
    assert_eq!(outcome.tool_calls.len(), 1);
    assert_eq!(outcome.usage.input_tokens, 10);
    assert_eq!(outcome.cost_usd, Some(0.25));
    let name = outcome
        .backend_session_id
        .clone()
        .expect("the session name");
    assert_eq!(name, session.id.to_string());

    // Live events arrive in the order the executor sent them.
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolStarted { .. } => Some("tool_started"),
            EventKind::ToolFinished { .. } => Some("tool_finished"),
            EventKind::Text { .. } => Some("text"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["tool_started", "tool_finished", "text"]);
    assert_eq!(accepted_by(&events).as_deref(), Some("w-flow"));

    // The session is in KV in the plugin's shape.
    let state = first_client
        .session_state(&name)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(state.session_name, name);
    assert_eq!(state.opencode_id, "fake_0");
    assert_eq!(state.workspace_name, "ws-hello");
    assert_eq!(state.message_count, 1);

    // A new Station instance continues the session by name, from KV alone.
    let second_client = client(&config).await;
    let again = second_client
        .open(OpenRequest {
            resume: Some(name.clone()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(again.backend_session_id.as_deref(), Some(name.as_str()));
    assert_eq!(again.metadata[meta::WORKSPACE_NAME], "ws-hello");
    let (events, outcome) = run(second_client.clone(), &again, Task::new("recall")).await;
    assert_event_contract(&events);
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(
        outcome.summary, "earlier: write hello.py print('Hello World')",
        "the executor session continued"
    );
    assert_eq!(outcome.backend_session_id.as_deref(), Some(name.as_str()));
    let state = second_client.session_state(&name).await.unwrap().unwrap();
    assert_eq!(
        (state.opencode_id.as_str(), state.message_count),
        ("fake_0", 2)
    );

    // The executor's id finds the session too; listing shows it.
    let by_id = second_client
        .open(OpenRequest {
            resume: Some("fake_0".into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(by_id.backend_session_id.as_deref(), Some(name.as_str()));
    let listed = second_client.list_sessions().await.unwrap();
    assert!(listed.iter().any(|s| s.id == name), "{listed:#?}");

    // Close is idempotent and keeps the session continuable.
    second_client.close(&again).await.unwrap();
    second_client.close(&again).await.unwrap();
    assert!(second_client.session_state(&name).await.unwrap().is_some());

    // Unknown sessions are NotFound.
    for unknown in [
        "no-such-session-anywhere-7f3a",
        "ses_00000000000000000000000000",
        "bad key!",
    ] {
        let result = second_client
            .open(OpenRequest {
                resume: Some(unknown.into()),
                ..OpenRequest::default()
            })
            .await;
        assert!(
            matches!(result, Err(Error::NotFound { .. })),
            "{unknown}: {result:?}"
        );
    }
    assert_eq!(
        agent.executions.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_workers() {
    let server = NatsServer::start().await;
    let config = config(&server);
    let base = tempfile::tempdir().unwrap();
    let c = client(&config).await;
    let health = c.health().await.unwrap();
    assert!(health.ok, "{health:?}");
    assert!(
        health.detail.contains("no Station worker answered"),
        "{}",
        health.detail
    );
    let _worker = start_worker(
        &config,
        Arc::new(FakeExecutor::new(Arc::default())),
        base.path().to_path_buf(),
        "w-health",
        WorkerOptions::default(),
    )
    .await;
    wait_for_workers(&c, &["w-health"]).await;
    let health = c.health().await.unwrap();
    assert!(health.detail.contains("w-health"), "{}", health.detail);
    let workers = c
        .workers(std::time::Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(workers[0].executor, "fake");
}
