//! The streamable HTTP transport on 127.0.0.1.

use std::net::SocketAddr;

use rmcp::model::ProtocolVersion;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientLifecycleMode, ClientServiceExt, ServiceExt};
use serde_json::json;
use station_mcp::{HttpOptions, McpServeError};

use crate::support::*;

#[tokio::test]
async fn http_lists_tools_and_runs_a_task_with_progress() {
    let (f, _) = Fixture::fake();
    let bound = f
        .server
        .clone()
        .bind_http("127.0.0.1:0".parse().unwrap(), HttpOptions::default())
        .await
        .unwrap();
    let url = bound.url();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));

    let recorder = Recorder::default();
    let seen = recorder.0.clone();
    let client = recorder
        .serve(StreamableHttpClientTransport::from_uri(url))
        .await
        .expect("the MCP handshake over HTTP");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 10);
    assert!(tools.iter().any(|t| t.name == "code"));

    let ws = f.workspace("ws");
    let session = open(&client, &ws, "over http").await;
    let done = ok_json(
        &call(
            &client,
            "code",
            json!({"session_id": session, "instruction": "write web.py"}),
        )
        .await,
    );
    assert_eq!(done["files_changed"][0]["path"], "web.py");
    assert!(ws.join("web.py").exists());
    let messages = seen.progress_messages();
    assert!(
        messages.iter().any(|m| m == "edited web.py"),
        "progress arrives over HTTP: {messages:?}"
    );
    let error = err_json(&call(&client, "code", json!({"session_id": session})).await);
    assert_eq!(error["error"], "`instruction` is required by `code`");

    client.cancel().await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, serving)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_unless_allowed() {
    let (f, _) = Fixture::fake();
    let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = f
        .server
        .clone()
        .bind_http(addr, HttpOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, McpServeError::NotLoopback { .. }),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("0.0.0.0:0") && message.contains("not a loopback address"),
        "{message}"
    );
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    if let Err(e) = f.server.clone().bind_http(v6, HttpOptions::default()).await {
        // A machine without IPv6 cannot bind it; that is not a refusal.
        assert!(matches!(e, McpServeError::Bind { .. }), "{e:?}");
    }
}

/// Clients of protocol 2026-07-28 have no session: each request gets its own handler, and
/// background tasks still carry over from one request to the next.
#[tokio::test]
async fn stateless_http_clients_get_progress_and_background_tasks() {
    let (f, _) = Fixture::fake();
    let bound = f
        .server
        .clone()
        .bind_http("127.0.0.1:0".parse().unwrap(), HttpOptions::default())
        .await
        .unwrap();
    let url = bound.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    let recorder = Recorder::default();
    let seen = recorder.0.clone();
    let client = recorder
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("server/discover over HTTP");
    assert_eq!(client.list_all_tools().await.unwrap().len(), 10);

    let ws = f.workspace("ws");
    let session = open(&client, &ws, "stateless").await;
    let done = ok_json(
        &call(
            &client,
            "code",
            json!({"session_id": session, "instruction": "write one.py"}),
        )
        .await,
    );
    assert_eq!(done["files_changed"][0]["path"], "one.py");
    assert!(
        seen.progress_messages()
            .iter()
            .any(|m| m == "edited one.py"),
        "{:?}",
        seen.progress_messages()
    );
    let started = ok_json(
        &call(
            &client,
            "code",
            json!({"session_id": session, "instruction": "write two.py", "wait": false}),
        )
        .await,
    );
    let waited = ok_json(
        &call(
            &client,
            "coding_wait",
            json!({"task_id": started["task_id"]}),
        )
        .await,
    );
    assert_eq!(waited["status"], "succeeded");
    assert_eq!(waited["files_changed"][0]["path"], "two.py");

    drop(client);
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, serving)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}
