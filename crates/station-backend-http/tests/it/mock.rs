//! Request-level behaviour against a mocked OpenCode server (wiremock): the directory on every
//! call, retries only for idempotent calls, clear errors for 5xx, bad JSON, 401, a dropped event
//! stream and a server that goes away, and outcomes summed over every message of a task.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use station_backend_http::HttpBackend;
use station_core::{
    CodingBackend, Error, EventKind, EventSink, ExecContext, FileAction, FileChange, OpenRequest,
    Outcome, RunOptions, Secret, StopReason, Task, start_task,
};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    SAMPLE_SESSION, backend, closed_port, config, fixture, kinds, quick_tuning, sample_frames,
    session, sse, until,
};

const SID: &str = SAMPLE_SESSION;

fn json_body(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(v)
}

fn event_stream(frames: &[String]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(sse(frames), "text/event-stream")
}

/// Frames of the sample up to the first idle of its first prompt.
fn first_prompt_frames() -> Vec<String> {
    let frames = sample_frames();
    let end = frames
        .iter()
        .position(|f| f.contains(r#""type":"session.idle""#))
        .unwrap();
    frames[..=end].to_vec()
}

/// Mount a whole task: messages before (`before`) then after (`after`), the event stream, the
/// prompt, the status and the diff.
async fn mount_task(
    server: &MockServer,
    before: Value,
    after: Value,
    frames: &[String],
    diff: Value,
) {
    let messages = format!("/session/{SID}/message");
    Mock::given(method("GET"))
        .and(path(messages.clone()))
        .respond_with(json_body(before))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(messages))
        .respond_with(json_body(after))
        .with_priority(2)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/event"))
        .respond_with(event_stream(frames))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/prompt_async")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session/status"))
        .respond_with(json_body(json!({})))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}/diff")))
        .respond_with(json_body(diff))
        .mount(server)
        .await;
}

/// The task through the runner, as every caller runs it.
async fn run_through_runner(
    backend: HttpBackend,
    ws: &std::path::Path,
    task: &str,
) -> station_core::Result<Outcome> {
    let run = start_task(
        std::sync::Arc::new(backend),
        session(SID, ws),
        Task::new(task),
        &RunOptions::default(),
    );
    tokio::time::timeout(Duration::from_secs(30), run.outcome())
        .await
        .expect("the task must not hang")
}

async fn execute(
    backend: &HttpBackend,
    ws: &std::path::Path,
    task: &str,
) -> (station_core::Result<Outcome>, Vec<station_core::Event>) {
    let (sink, mut rx) = EventSink::channel();
    let ctx = ExecContext::new(sink, station_core::CancelSignal::new());
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        backend.execute(&session(SID, ws), &Task::new(task), ctx),
    )
    .await
    .expect("execute must not hang");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

#[tokio::test]
async fn a_task_streams_the_sample_and_sums_every_message() {
    let server = MockServer::start().await;
    let ws = tempfile::tempdir().unwrap();
    let after: Value = serde_json::from_str(&fixture("opencode-messages.json")).unwrap();
    mount_task(&server, json!([]), after, &first_prompt_frames(), json!([])).await;
    let (outcome, events) = execute(
        &backend(&server.uri()),
        ws.path(),
        "create api_hello.py that prints Hello API",
    )
    .await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.stop_reason, StopReason::Completed);
    assert_eq!(
        outcome.summary,
        "Created api_hello.py, which prints Hello API."
    );
    // Two model calls: both count.
    assert_eq!(
        (outcome.usage.input_tokens, outcome.usage.output_tokens),
        (7740 + 7837, 10 + 10)
    );
    assert_eq!(outcome.cost_usd, Some(0.0));
    assert_eq!(outcome.tool_calls.len(), 1);
    assert_eq!(outcome.tool_calls[0].name, "write");
    assert_eq!(
        outcome.tool_calls[0].output.as_deref(),
        Some("Wrote file successfully.")
    );
    assert_eq!(
        outcome.tool_calls[0].input["content"],
        "print(\"Hello API\")\n"
    );
    assert_eq!(outcome.model.as_deref(), Some("fake/fake-model"));
    assert_eq!(outcome.backend_session_id.as_deref(), Some(SID));
    let kinds = kinds(&events);
    let names: Vec<&str> = kinds
        .iter()
        .map(|k| match k {
            EventKind::TextDelta { .. } => "delta",
            EventKind::Text { .. } => "text",
            EventKind::ToolStarted { .. } => "tool_started",
            EventKind::ToolFinished { .. } => "tool_finished",
            EventKind::FileEdited { .. } => "file_edited",
            EventKind::StepFinished { .. } => "step_finished",
            _ => "other",
        })
        .collect();
    assert_eq!(
        names,
        // Deltas are released at word boundaries (see `EventSink`), not as the server cut them.
        [
            "delta",
            "delta",
            "tool_started",
            "text",
            "file_edited",
            "tool_finished",
            "step_finished",
            "delta",
            "delta",
            "delta",
            "delta",
            "delta",
            "text",
            "step_finished"
        ]
    );
    // The prompt body holds only documented fields.
    let requests = server.received_requests().await.unwrap();
    let prompt = requests
        .iter()
        .find(|r| r.url.path().ends_with("/prompt_async"))
        .unwrap();
    let body: Value = prompt.body_json().unwrap();
    assert_eq!(
        body,
        json!({"parts": [{"type": "text", "text": "create api_hello.py that prints Hello API"}]})
    );
}

#[tokio::test]
async fn the_workspace_directory_is_sent_on_every_call_and_encoded() {
    let server = MockServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("my ws+1&x#y ü");
    std::fs::create_dir_all(&ws).unwrap();
    let ws = ws.canonicalize().unwrap();
    let created = json!({"id": SID, "title": "t", "directory": ws.to_str().unwrap()});
    Mock::given(method("POST"))
        .and(path("/session"))
        .respond_with(json_body(created.clone()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}")))
        .respond_with(json_body(created))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/abort")))
        .respond_with(json_body(json!(true)))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/session/{SID}")))
        .respond_with(json_body(json!(true)))
        .mount(&server)
        .await;
    let after: Value = serde_json::from_str(&fixture("opencode-messages.json")).unwrap();
    mount_task(&server, json!([]), after, &first_prompt_frames(), json!([])).await;

    let backend = backend(&server.uri());
    let opened = backend
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            title: Some("t".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(opened.workspace.as_deref(), Some(ws.as_path()));
    let resumed = backend
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            resume: Some(SID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resumed.backend_session_id.as_deref(), Some(SID));
    let (outcome, _) = execute(&backend, &ws, "hello").await;
    assert!(outcome.unwrap().success);
    backend.close(&opened).await.unwrap();
    backend.delete_session(&opened).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert!(requests.len() >= 9, "{}", requests.len());
    for r in &requests {
        let dirs: Vec<String> = r
            .url
            .query_pairs()
            .filter(|(k, _)| k == "directory")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(
            dirs,
            vec![ws.to_str().unwrap().to_string()],
            "{} {}",
            r.method,
            r.url
        );
        assert!(
            !r.url.query().unwrap().contains('+') && !r.url.query().unwrap().contains(' '),
            "{}",
            r.url
        );
    }
}

#[tokio::test]
async fn files_come_from_the_server_diff_when_it_has_one() {
    let server = MockServer::start().await;
    let ws = tempfile::tempdir().unwrap();
    let after: Value = serde_json::from_str(&fixture("opencode-messages.json")).unwrap();
    let user_message = after[0]["info"]["id"].as_str().unwrap().to_string();
    let diff = json!([
        {"file": "api_hello.py", "patch": "...", "additions": 1, "deletions": 0, "status": "added"},
        {"file": "README.md", "additions": 2.0, "deletions": 1, "status": "modified"}
    ]);
    mount_task(&server, json!([]), after, &first_prompt_frames(), diff).await;
    let (outcome, _) = execute(&backend(&server.uri()), ws.path(), "go").await;
    assert_eq!(
        outcome.unwrap().files_changed,
        vec![
            FileChange {
                path: "README.md".into(),
                action: FileAction::Modified,
                lines_added: 2,
                lines_removed: 1,
                ..Default::default()
            },
            FileChange {
                path: "api_hello.py".into(),
                action: FileAction::Created,
                lines_added: 1,
                lines_removed: 0,
                ..Default::default()
            },
        ]
    );
    let requests = server.received_requests().await.unwrap();
    let diff_call = requests
        .iter()
        .find(|r| r.url.path().ends_with("/diff"))
        .unwrap();
    assert!(
        diff_call
            .url
            .query_pairs()
            .any(|(k, v)| k == "messageID" && v == user_message),
        "{}",
        diff_call.url
    );
}

#[tokio::test]
async fn files_come_from_workspace_snapshots_when_the_server_diff_is_empty() {
    let server = MockServer::start().await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("old.txt"), "a\nb\n").unwrap();
    let after: Value = serde_json::from_str(&fixture("opencode-messages.json")).unwrap();
    let messages = format!("/session/{SID}/message");
    Mock::given(method("GET"))
        .and(path(messages.clone()))
        .respond_with(json_body(json!([])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(messages))
        .respond_with(json_body(after))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/event"))
        .respond_with(event_stream(&first_prompt_frames()))
        .mount(&server)
        .await;
    // The prompt's answer is held back while the "agent" edits the workspace.
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/prompt_async")))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(800)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session/status"))
        .respond_with(json_body(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}/diff")))
        .respond_with(json_body(json!([])))
        .mount(&server)
        .await;

    let backend = backend(&server.uri());
    let dir = ws.path().to_path_buf();
    // The runner records a local workspace's changes (the backend itself no longer does).
    let run = tokio::spawn({
        let dir = dir.clone();
        async move { (run_through_runner(backend, &dir, "edit").await, ()) }
    });
    assert!(
        until(Duration::from_secs(10), async || {
            server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .any(|r| r.url.path().ends_with("/prompt_async"))
        })
        .await
    );
    std::fs::write(dir.join("api_hello.py"), "print(\"Hello API\")\n").unwrap();
    std::fs::write(dir.join("old.txt"), "a\nB\nc\n").unwrap();
    let (outcome, _) = run.await.unwrap();
    assert_eq!(
        outcome.unwrap().files_changed,
        vec![
            FileChange {
                path: "api_hello.py".into(),
                action: FileAction::Created,
                lines_added: 1,
                lines_removed: 0,
                ..Default::default()
            },
            FileChange {
                path: "old.txt".into(),
                action: FileAction::Modified,
                lines_added: 2,
                lines_removed: 1,
                ..Default::default()
            },
        ]
    );
}

#[tokio::test]
async fn tokens_cache_and_cost_are_summed_over_all_messages_of_the_task_only() {
    let server = MockServer::start().await;
    let ws = tempfile::tempdir().unwrap();
    let msg = |id: &str,
               role: &str,
               input: u64,
               output: u64,
               read: u64,
               write: u64,
               cost: f64,
               text: &str| {
        json!({
            "info": {"id": id, "role": role, "sessionID": SID, "parentID": "msg_u2", "modelID": "m", "providerID": "p",
                     "cost": cost, "finish": "stop",
                     "tokens": {"total": input + output, "input": input, "output": output, "reasoning": 1, "cache": {"read": read, "write": write}}},
            "parts": [{"id": format!("prt_{id}"), "type": "text", "text": text, "messageID": id, "time": {"start": 1, "end": 2}}]
        })
    };
    let old = vec![
        json!({"info": {"id": "msg_u1", "role": "user"}, "parts": []}),
        msg(
            "msg_a1",
            "assistant",
            1000,
            1000,
            1000,
            1000,
            9.0,
            "old answer",
        ),
    ];
    let mut after = old.clone();
    after.push(json!({"info": {"id": "msg_u2", "role": "user"}, "parts": [{"id": "prt_u2", "type": "text", "text": "task"}]}));
    after.push(msg("msg_a2", "assistant", 100, 10, 50, 5, 0.25, "step one"));
    after.push(msg("msg_a3", "assistant", 200, 20, 60, 6, 0.5, "step two"));
    after.push(msg(
        "msg_a4",
        "assistant",
        300,
        30,
        70,
        7,
        0.125,
        "final answer",
    ));
    let frames = vec![
        json!({"type": "session.status", "properties": {"sessionID": SID, "status": {"type": "busy"}}}).to_string(),
        json!({"type": "session.idle", "properties": {"sessionID": SID}}).to_string(),
    ];
    mount_task(
        &server,
        Value::Array(old),
        Value::Array(after),
        &frames,
        json!([]),
    )
    .await;
    let (outcome, events) = execute(&backend(&server.uri()), ws.path(), "task").await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.usage.input_tokens, 600);
    assert_eq!(outcome.usage.output_tokens, 60);
    assert_eq!(outcome.usage.reasoning_tokens, 3);
    assert_eq!(outcome.usage.cache_read_tokens, 180);
    assert_eq!(outcome.usage.cache_write_tokens, 18);
    assert_eq!(outcome.cost_usd, Some(0.875));
    assert_eq!(outcome.summary, "final answer");
    // The stream carried no parts: the transcript fills in the text events.
    let texts: Vec<EventKind> = kinds(&events)
        .into_iter()
        .filter(|k| matches!(k, EventKind::Text { .. }))
        .collect();
    assert_eq!(texts.len(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_for_idempotent_calls_only() {
    let server = MockServer::start().await;
    // GET /session/{id}: 500, 500, then the session.
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}")))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"name": "UnknownError", "data": {"message": "boom"}})),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}")))
        .respond_with(json_body(
            json!({"id": SID, "title": "t", "directory": "/w"}),
        ))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    // POST /session and the prompt: 500, sent once.
    Mock::given(method("POST"))
        .and(path("/session"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/prompt_async")))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}/message")))
        .respond_with(json_body(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/event"))
        .respond_with(event_stream(&[
            r#"{"type":"server.connected","properties":{}}"#.into(),
        ]))
        .mount(&server)
        .await;
    // Abort (idempotent): 500 then true.
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/abort")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/abort")))
        .respond_with(json_body(json!(true)))
        .with_priority(2)
        .mount(&server)
        .await;

    let backend = backend(&server.uri());
    let ws = tempfile::tempdir().unwrap();
    let resumed = backend
        .open(OpenRequest {
            resume: Some(SID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        resumed.workspace.as_deref(),
        Some(std::path::Path::new("/w"))
    );

    let err = backend
        .open(OpenRequest {
            workspace: Some(ws.path().into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("POST /session failed with HTTP 500"),
        "{err}"
    );

    let (result, _) = execute(&backend, ws.path(), "go").await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("prompt_async failed with HTTP 503"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("attempts"),
        "a prompt is sent once: {err}"
    );

    backend.close(&session(SID, ws.path())).await.unwrap();
    let aborts = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/abort"))
        .count();
    // A refused prompt leaves nothing to abort; the close is retried after its 500.
    assert_eq!(aborts, 2);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/session"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .expect(3)
        .mount(&server)
        .await;
    let err = backend(&server.uri()).list_sessions().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("HTTP 502 after 3 attempts: bad gateway"),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error() {
    let server = MockServer::start().await;
    let garbage = ResponseTemplate::new(200).set_body_raw("{\"id\": \"ses_", "application/json");
    Mock::given(method("POST"))
        .and(path("/session"))
        .respond_with(garbage.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>hi</html>", "text/html"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}/message")))
        .respond_with(garbage)
        .mount(&server)
        .await;
    let backend = backend(&server.uri());
    let ws = tempfile::tempdir().unwrap();
    let err = backend
        .open(OpenRequest {
            workspace: Some(ws.path().into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("POST /session"), "{err}");
    let err = backend.list_sessions().await.unwrap_err();
    assert!(err.to_string().contains("<html>"), "{err}");
    let (result, _) = execute(&backend, ws.path(), "go").await;
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
}

#[tokio::test]
async fn a_rejected_password_is_an_auth_error_that_shows_no_secret() {
    let server = MockServer::start().await;
    let password = format!("pw-{}", "s3cr3t".repeat(3));
    let expected = format!("Basic {}", base64(&format!("opencode:{password}")));
    // The right credentials get through; anything else is 401.
    Mock::given(method("GET"))
        .and(path("/session"))
        .and(header("authorization", expected.as_str()))
        .respond_with(json_body(json!([])))
        .mount(&server)
        .await;
    Mock::given(path_regex(".*"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"_tag": "UnauthorizedError", "message": "Unauthorized"})),
        )
        .with_priority(10)
        .mount(&server)
        .await;

    let mut good = config(&server.uri());
    good.password = Some(Secret::new(password.clone()));
    let good = HttpBackend::from_opencode(good, 3, Duration::from_secs(60))
        .unwrap()
        .with_tuning(quick_tuning());
    assert_eq!(good.list_sessions().await.unwrap(), vec![]);

    let mut bad = config(&server.uri());
    bad.password = Some(Secret::new("wrong-password-123"));
    let bad = HttpBackend::from_opencode(bad, 3, Duration::from_secs(60))
        .unwrap()
        .with_tuning(quick_tuning());
    let err = bad.list_sessions().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("OPENCODE_SERVER_PASSWORD") && msg.contains("`opencode`"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-password"), "{msg}");
    let health = bad.health().await.unwrap();
    assert!(
        !health.ok && health.detail.contains("rejected the password"),
        "{health:?}"
    );

    let none = backend(&server.uri());
    let err = none
        .open(OpenRequest {
            resume: Some(SID.into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requires a password"), "{err}");
    // 401s are not retried: the good listing (sessions, projects), then one call each.
    let unauthorized = server.received_requests().await.unwrap().len();
    assert_eq!(unauthorized, 2 + 1 + 1 + 1);
}

#[tokio::test]
async fn a_dropped_event_stream_is_reopened_and_reconciled() {
    let server = MockServer::start().await;
    let ws = tempfile::tempdir().unwrap();
    let after: Value = serde_json::from_str(&fixture("opencode-messages.json")).unwrap();
    // The stream ends after two deltas, with no idle: a drop.
    let frames: Vec<String> = first_prompt_frames()
        .into_iter()
        .take_while(|f| !f.contains("\"tool\""))
        .collect();
    let messages = format!("/session/{SID}/message");
    Mock::given(method("GET"))
        .and(path(messages.clone()))
        .respond_with(json_body(json!([])))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(messages))
        .respond_with(json_body(after))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/event"))
        .respond_with(event_stream(&frames))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/prompt_async")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    // Busy at the first look after the drop, idle at the second.
    Mock::given(method("GET"))
        .and(path("/session/status"))
        .respond_with(json_body(json!({SID: {"type": "busy"}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session/status"))
        .respond_with(json_body(json!({})))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}/diff")))
        .respond_with(json_body(json!([])))
        .mount(&server)
        .await;

    let (outcome, events) = execute(&backend(&server.uri()), ws.path(), "go").await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.tool_calls.len(), 1);
    let requests = server.received_requests().await.unwrap();
    let streams = requests.iter().filter(|r| r.url.path() == "/event").count();
    let polls = requests
        .iter()
        .filter(|r| r.url.path() == "/session/status")
        .count();
    assert!(
        streams >= 3 && polls >= 2,
        "streams {streams}, polls {polls}"
    );
    // What the stream missed came from the transcript, once.
    let kinds = kinds(&events);
    let finished = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::ToolFinished { .. }))
        .count();
    let steps = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::StepFinished { .. }))
        .count();
    assert_eq!((finished, steps), (1, 2));
}

#[tokio::test]
async fn a_server_that_goes_away_mid_task_is_a_clear_error() {
    let server = MockServer::builder().start().await;
    let uri = server.uri();
    let ws = tempfile::tempdir().unwrap();
    let frames: Vec<String> = first_prompt_frames().into_iter().take(12).collect();
    Mock::given(method("GET"))
        .and(path(format!("/session/{SID}/message")))
        .respond_with(json_body(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/event"))
        .respond_with(event_stream(&frames))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/session/{SID}/prompt_async")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session/status"))
        .respond_with(json_body(json!({SID: {"type": "busy"}})))
        .mount(&server)
        .await;

    let backend = Arc::new(backend(&uri));
    let run = start_task(
        backend.clone(),
        session(SID, ws.path()),
        Task::new("go"),
        &RunOptions::default(),
    );
    assert!(
        until(Duration::from_secs(10), async || {
            server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .any(|r| r.url.path().ends_with("/prompt_async"))
        })
        .await
    );
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(30), run.outcome())
        .await
        .expect("a vanished server must not hang the task");
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let msg = err.to_string();
    // The stream ended, every reconnect was refused: the server went away.
    assert!(
        msg.contains(&format!("the OpenCode server at {uri} went away"))
            && msg.contains("event stream ended")
            && msg.contains("connection refused"),
        "{msg}"
    );
    assert!(!msg.contains("aborted"), "{msg}");
}

#[tokio::test]
async fn nothing_listening_says_how_to_start_the_server() {
    let port = closed_port();
    let backend = backend(&format!("http://127.0.0.1:{port}"));
    let err = backend.open(OpenRequest::default()).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("opencode serve --port {port}")),
        "{msg}"
    );
    assert!(msg.contains("--hostname 0.0.0.0"), "{msg}");
    let err = backend.health().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn auto_mode_without_opencode_installed_says_how_to_install() {
    let port = closed_port();
    let mut cfg = config(&format!("http://127.0.0.1:{port}"));
    cfg.managed = station_backend_http::ManagedServer::Auto;
    cfg.binary = "/nonexistent/bin/opencode".into();
    let backend = HttpBackend::from_opencode(cfg, 3, Duration::from_secs(60))
        .unwrap()
        .with_tuning(quick_tuning());
    let err = backend.health().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("npm i -g opencode-ai"), "{err}");
}

#[tokio::test]
async fn resume_checks_the_session_and_finds_titles() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/session/ses_gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"name": "NotFoundError", "data": {"message": "Session not found: ses_gone"}}),
        ))
        .mount(&server)
        .await;
    let list = json!([
        {"id": "ses_1", "title": "Fix the parser", "directory": "/w1", "time": {"created": 1795479337650u64, "updated": 1795479345010u64}},
        {"id": "ses_2", "title": "Fix the parser tests", "directory": "/w2", "time": {"created": 1, "updated": 2}},
        {"id": "ses_3", "title": "child of 1", "parentID": "ses_1", "directory": "/w1", "time": {"created": 1, "updated": 3}}
    ]);
    Mock::given(method("GET"))
        .and(path("/session"))
        .respond_with(json_body(list))
        .mount(&server)
        .await;
    let backend = backend(&server.uri());
    let open = |q: &str| {
        backend.open(OpenRequest {
            resume: Some(q.into()),
            ..Default::default()
        })
    };
    assert!(matches!(
        open("ses_gone").await.unwrap_err(),
        Error::NotFound { .. }
    ));
    let s = open("fix the PARSER").await.unwrap();
    assert_eq!(
        (s.backend_session_id.as_deref(), s.workspace.as_deref()),
        (Some("ses_1"), Some(std::path::Path::new("/w1")))
    );
    assert_eq!(s.created_at.timestamp_millis(), 1795479337650);
    assert_eq!(
        open("tests").await.unwrap().backend_session_id.as_deref(),
        Some("ses_2")
    );
    let err = open("parser").await.unwrap_err();
    assert!(matches!(err, Error::AmbiguousSession { .. }), "{err:?}");
    assert!(err.to_string().contains("ses_1 (Fix the parser)"), "{err}");
    assert!(matches!(
        open("child").await.unwrap_err(),
        Error::NotFound { .. }
    ));
    let listed = backend.list_sessions().await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["ses_1", "ses_2"]
    );
}

#[tokio::test]
async fn a_failed_model_call_is_a_failed_outcome() {
    let server = MockServer::start().await;
    let ws = tempfile::tempdir().unwrap();
    let error = json!({"name": "ProviderAuthError", "data": {"providerID": "anthropic", "message": "invalid x-api-key"}});
    let after = json!([
        {"info": {"id": "msg_u", "role": "user"}, "parts": []},
        {"info": {"id": "msg_a", "role": "assistant", "parentID": "msg_u", "error": error, "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}}, "parts": []}
    ]);
    let frames = vec![
        json!({"type": "session.status", "properties": {"sessionID": SID, "status": {"type": "busy"}}}).to_string(),
        json!({"type": "session.error", "properties": {"sessionID": SID, "error": error}}).to_string(),
        json!({"type": "session.idle", "properties": {"sessionID": SID}}).to_string(),
    ];
    mount_task(&server, json!([]), after, &frames, json!([])).await;
    let (outcome, events) = execute(&backend(&server.uri()), ws.path(), "go").await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Error);
    assert_eq!(
        outcome.error.as_deref(),
        Some("anthropic rejected OpenCode's credentials (ProviderAuthError): invalid x-api-key")
    );
    assert!(kinds(&events).iter().any(
        |k| matches!(k, EventKind::Notice { message } if message.contains("ProviderAuthError"))
    ));
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn a_session_without_a_backend_id_gets_one_at_its_first_task() {
    let server = MockServer::start().await;
    let root = tempfile::tempdir().unwrap();
    // The workspace was cleaned up since the session was opened.
    let ws = root.path().join("gone");
    Mock::given(method("POST"))
        .and(path("/session"))
        .respond_with(json_body(
            json!({"id": SID, "directory": ws.to_str().unwrap()}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let after: Value = serde_json::from_str(&fixture("opencode-messages.json")).unwrap();
    mount_task(&server, json!([]), after, &first_prompt_frames(), json!([])).await;
    let mut fresh = session(SID, &ws);
    fresh.backend_session_id = None;
    fresh.title = Some("my title".into());
    let (sink, mut rx) = EventSink::channel();
    let ctx = ExecContext::new(sink, station_core::CancelSignal::new());
    let outcome = backend(&server.uri())
        .execute(&fresh, &Task::new("go"), ctx)
        .await
        .unwrap();
    assert_eq!(outcome.backend_session_id.as_deref(), Some(SID));
    assert!(ws.is_dir());
    let first = rx.try_recv().unwrap();
    assert_eq!(
        first.kind,
        EventKind::BackendSession {
            backend_session_id: SID.into()
        }
    );
    let requests = server.received_requests().await.unwrap();
    let create = requests
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == "/session")
        .unwrap();
    assert_eq!(
        create.body_json::<Value>().unwrap(),
        json!({"title": "my title"})
    );
}

/// OpenCode lists one project's sessions per call: the listing asks every project the server
/// knows, merges them without duplicates, and skips a project it cannot list.
#[tokio::test]
async fn sessions_are_listed_across_every_project() {
    use wiremock::matchers::{query_param, query_param_is_missing};
    let server = MockServer::start().await;
    let session = |id: &str, dir: &str, updated: u64| json!({"id": id, "title": id, "directory": dir, "time": {"created": 1, "updated": updated}});
    Mock::given(method("GET"))
        .and(path("/session"))
        .and(query_param_is_missing("directory"))
        .respond_with(json_body(json!([session("ses_cwd", "/srv", 5)])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/project"))
        .respond_with(json_body(json!([
            {"id": "p1", "worktree": "/repos/one", "time": {"created": 1}, "sandboxes": []},
            {"id": "global", "worktree": "/", "time": {"created": 1}, "sandboxes": []},
            {"id": "p2", "worktree": "/repos/broken", "time": {"created": 1}, "sandboxes": []}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session"))
        .and(query_param("directory", "/repos/one"))
        .respond_with(json_body(json!([
            session("ses_one", "/repos/one", 9),
            session("ses_cwd", "/srv", 5)
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session"))
        .and(query_param("directory", "/"))
        .respond_with(json_body(json!([session("ses_tmp", "/tmp/x", 7)])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/session"))
        .and(query_param("directory", "/repos/broken"))
        .respond_with(ResponseTemplate::new(400).set_body_string("no such project"))
        .mount(&server)
        .await;
    let listed = backend(&server.uri()).list_sessions().await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["ses_one", "ses_tmp", "ses_cwd"],
        "newest first, each once"
    );
    assert_eq!(
        listed[0].workspace.as_deref(),
        Some(std::path::Path::new("/repos/one"))
    );
}
