//! The streamable HTTP transport on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rmcp::model::ProtocolVersion;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
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
    assert_eq!(tools.len(), 11);
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
    let messages = seen
        .progress_messages_when(|m| m.iter().any(|m| m == "edited web.py"))
        .await;
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
    assert_eq!(client.list_all_tools().await.unwrap().len(), 11);

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

/// A server on 127.0.0.1 with `options`; stop it with the sender.
struct Running {
    url: String,
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), McpServeError>>,
}

impl Running {
    async fn start(f: &Fixture, options: HttpOptions) -> Running {
        let bound = f
            .server
            .clone()
            .bind_http("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let url = bound.url();
        let port = bound.local_addr().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(bound.run(async move {
            let _ = stopped.await;
        }));
        Running {
            url,
            port,
            stop,
            serving,
        }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(DEADLINE, self.serving)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// POST an `initialize` request with these extra headers: the status, a header's value and the
/// body.
async fn initialize_with(
    url: &str,
    headers: &[(&str, &str)],
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"}
            }
        }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(DEADLINE, request.send())
        .await
        .expect("an answer in time")
        .expect("the request is sent");
    let status = response.status();
    let response_headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    (status, response_headers, body)
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_own_or_none_accepted() {
    let (f, _) = Fixture::fake();
    let server = Running::start(
        &f,
        HttpOptions {
            allowed_origins: vec!["https://app.example".into()],
            ..HttpOptions::default()
        },
    )
    .await;
    let port = server.port;

    let (status, _, body) =
        initialize_with(&server.url, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("origin `https://evil.example` is not allowed")
            && body.contains("--allow-origin https://evil.example"),
        "{body}"
    );
    let other_port = format!("http://localhost:{}", port.wrapping_add(1).max(1));
    let (status, _, body) = initialize_with(&server.url, &[("origin", &other_port)]).await;
    assert_eq!(status, 403, "another local port is another origin: {body}");
    let (status, _, body) = initialize_with(&server.url, &[("origin", "null")]).await;
    assert_eq!(status, 403, "{body}");

    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
        "https://app.example".to_string(),
    ] {
        let (status, _, body) = initialize_with(&server.url, &[("origin", &origin)]).await;
        assert_eq!(status, 200, "{origin}: {body}");
    }
    let (status, _, body) = initialize_with(&server.url, &[]).await;
    assert_eq!(status, 200, "no Origin (not a browser): {body}");
    server.stop().await;
}

#[tokio::test]
async fn a_request_for_another_host_is_refused() {
    let (f, _) = Fixture::fake();
    let server = Running::start(&f, HttpOptions::default()).await;
    let port = server.port;
    for host in [
        format!("attacker.example:{port}"),
        "localhost:1".to_string(),
    ] {
        let (status, _, body) = initialize_with(&server.url, &[("host", &host)]).await;
        assert_eq!(status, 403, "{host}: {body}");
        assert!(
            body.contains(&format!("Host `{host}` is not this MCP server's"))
                && body.contains(&format!("http://127.0.0.1:{port}/mcp")),
            "{body}"
        );
    }
    let (status, _, body) =
        initialize_with(&server.url, &[("host", &format!("localhost:{port}"))]).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// A log capture for this thread (tests run on a current-thread runtime, so the server's tasks
/// log here too).
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn remote_access_needs_the_right_bearer_token_and_never_logs_it() {
    let logs = LogCapture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let (f, _) = Fixture::fake();
    let token = station_mcp::generate_token().unwrap();
    // Remote mode on a loopback address: the test never contacts another address.
    let server = Running::start(
        &f,
        HttpOptions {
            allow_remote: true,
            token: Some(token.clone()),
            ..HttpOptions::default()
        },
    )
    .await;

    let (status, headers, body) = initialize_with(&server.url, &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("needs a bearer token"), "{body}");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let wrong = format!("Bearer {}", "w".repeat(43));
    let (status, headers, body) = initialize_with(&server.url, &[("authorization", &wrong)]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("the bearer token is wrong"), "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "{headers:?}"
    );
    let basic = format!("Basic {}", token.expose());
    let (status, _, _) = initialize_with(&server.url, &[("authorization", &basic)]).await;
    assert_eq!(status, 401, "only the Bearer scheme carries the token");
    // Remote clients reach the server under names it cannot know.
    let right = format!("Bearer {}", token.expose());
    let (status, _, body) = initialize_with(
        &server.url,
        &[("authorization", &right), ("host", "mcp.example:443")],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url.clone())
            .auth_header(token.expose()),
    );
    let client = Recorder::default()
        .serve(transport)
        .await
        .expect("the MCP handshake with the token");
    assert_eq!(client.list_all_tools().await.unwrap().len(), 11);
    let ws = f.workspace("ws");
    let session = open(&client, &ws, "remote").await;
    let done = ok_json(
        &call(
            &client,
            "code",
            json!({"session_id": session, "instruction": "write remote.py"}),
        )
        .await,
    );
    assert_eq!(done["files_changed"][0]["path"], "remote.py");
    client.cancel().await.unwrap();
    server.stop().await;

    let logged = logs.text();
    assert!(
        logged.contains("refused an MCP request with a wrong bearer token"),
        "the capture sees the server's logs: {logged}"
    );
    assert!(
        !logged.contains(token.expose()),
        "the token was logged: {logged}"
    );
    assert_eq!(
        station_core::redact::redact(&format!("token: {}", token.expose())),
        "token: [REDACTED]",
        "the token is registered with the redactor"
    );
}

#[tokio::test]
async fn remote_access_without_a_strong_token_and_bad_origins_are_refused() {
    let (f, _) = Fixture::fake();
    let bind = |options: HttpOptions| {
        let server = f.server.clone();
        async move {
            server
                .bind_http("127.0.0.1:0".parse().unwrap(), options)
                .await
                .unwrap_err()
        }
    };
    let no_token = bind(HttpOptions {
        allow_remote: true,
        ..HttpOptions::default()
    })
    .await;
    assert!(
        matches!(no_token, McpServeError::TokenRequired { .. }),
        "{no_token:?}"
    );
    assert!(
        no_token.to_string().contains("without a bearer token"),
        "{no_token}"
    );
    let short = bind(HttpOptions {
        token: Some(station_core::redact::Secret::new("x".repeat(8))),
        ..HttpOptions::default()
    })
    .await;
    assert!(
        matches!(short, McpServeError::WeakToken { len: 8 }),
        "{short:?}"
    );
    let bad_origin = bind(HttpOptions {
        allowed_origins: vec!["app.example".into()],
        ..HttpOptions::default()
    })
    .await;
    let message = bad_origin.to_string();
    assert!(
        message.contains("`app.example`") && message.contains("scheme://host[:port]"),
        "{message}"
    );
}
