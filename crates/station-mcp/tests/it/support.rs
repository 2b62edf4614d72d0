//! Shared helpers: an in-process coding backend, an MCP client that records notifications, and
//! servers connected over a duplex pipe (the stdio transport) or HTTP.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, LoggingMessageNotificationParam,
    ProgressNotificationParam, Request, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestHandle, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use station_agent::CodingTools;
use station_core::{
    Capabilities, CodingBackend, Error, EventKind, ExecContext, FileAction, FileChange, Health,
    OpenRequest, Outcome, RunOptions, Session, SessionIndex, SessionService, StopReason, Task,
};
use station_mcp::{CodingMcpServer, ServerDescription};
use tempfile::TempDir;
use tokio::sync::Notify;

/// Every wait in these tests ends by this deadline.
pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// What the in-process backend does, chosen by words in the instruction:
/// * `write NAME`: writes NAME into the workspace and reports it;
/// * `gate`: waits until [`FakeState::release`] (at most [`DEADLINE`]);
/// * `block`: runs until cancelled (at most [`DEADLINE`]);
/// * `fail`: ends without success.
#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub(crate) started: AtomicUsize,
    pub(crate) cancelled: AtomicUsize,
    started_signal: Notify,
    gate: Notify,
}

impl FakeState {
    /// Let the task waiting at `gate` (or the next one to arrive there) go on.
    pub(crate) fn release(&self) {
        self.gate.notify_one();
    }

    /// Wait until `n` tasks have started.
    pub(crate) async fn wait_started(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.started_signal.notified();
            if self.started.load(Ordering::SeqCst) >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} started tasks, saw {}",
                    self.started.load(Ordering::SeqCst)
                );
            }
        }
    }

    /// Wait until `n` tasks saw their cancel signal.
    pub(crate) async fn wait_cancelled(&self, n: usize) {
        poll_until("the backend to see the cancel", || {
            self.cancelled.load(Ordering::SeqCst) >= n
        })
        .await;
    }
}

#[derive(Debug)]
pub(crate) struct FakeBackend {
    pub(crate) state: Arc<FakeState>,
}

#[async_trait::async_trait]
impl CodingBackend for FakeBackend {
    fn name(&self) -> &str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            cancel: true,
            ..Capabilities::NONE
        }
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "in-process".into(),
        })
    }
    async fn open(&self, req: OpenRequest) -> station_core::Result<Session> {
        let mut s = Session::new("fake");
        if let Some(ws) = &req.workspace {
            std::fs::create_dir_all(ws).unwrap();
        }
        s.workspace = req.workspace;
        s.title = req.title;
        Ok(s)
    }
    async fn execute(
        &self,
        session: &Session,
        task: &Task,
        ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        self.state.started.fetch_add(1, Ordering::SeqCst);
        self.state.started_signal.notify_waiters();
        let words: Vec<&str> = task.instruction.split_whitespace().collect();
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.backend_session_id = Some("fake_1".into());
        if words.contains(&"gate") {
            ctx.events.emit(EventKind::Notice {
                message: "waiting at the gate".into(),
            });
            let opened = self.state.gate.notified();
            tokio::select! {
                _ = opened => {}
                _ = ctx.cancel.cancelled() => {
                    self.state.cancelled.fetch_add(1, Ordering::SeqCst);
                    return Err(Error::Cancelled);
                }
                _ = tokio::time::sleep(DEADLINE) => panic!("the gate was never opened"),
            }
        }
        if words.contains(&"block") {
            ctx.events.emit(EventKind::ToolStarted {
                call_id: None,
                name: "bash".into(),
                input: json!({"command": "sleep 1000"}),
            });
            tokio::select! {
                _ = ctx.cancel.cancelled() => {
                    self.state.cancelled.fetch_add(1, Ordering::SeqCst);
                    return Err(Error::Cancelled);
                }
                _ = tokio::time::sleep(DEADLINE) => return Ok(Outcome::failed(StopReason::Error, "never cancelled")),
            }
        }
        if let Some(name) = words
            .iter()
            .position(|w| *w == "write")
            .and_then(|i| words.get(i + 1))
        {
            let ws = session.workspace.clone().expect("a workspace");
            ctx.events.emit(EventKind::ToolStarted {
                call_id: Some("c1".into()),
                name: "write".into(),
                input: json!({"filePath": ws.join(name)}),
            });
            std::fs::write(ws.join(name), "print('Hello World')\n").unwrap();
            ctx.events.emit(EventKind::ToolFinished {
                call_id: Some("c1".into()),
                name: "write".into(),
                output: None,
                error: None,
            });
            ctx.events.emit(EventKind::FileEdited {
                path: name.to_string(),
            });
            outcome.files_changed.push(FileChange {
                path: name.to_string(),
                action: FileAction::Created,
                lines_added: 1,
                lines_removed: 0,
                ..Default::default()
            });
        }
        if words.contains(&"fail") {
            return Ok(Outcome::failed(StopReason::Error, "the build failed"));
        }
        ctx.events.emit(EventKind::Text {
            text: "All done.".into(),
        });
        outcome.summary = "All done.".into();
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

/// Temp dirs, the coding tools over a backend, and the MCP server over them.
#[derive(Debug)]
pub(crate) struct Fixture {
    pub(crate) dir: TempDir,
    pub(crate) server: CodingMcpServer,
}

impl Fixture {
    pub(crate) fn new(backend: Arc<dyn CodingBackend>) -> Fixture {
        Fixture::new_with(|_| backend)
    }

    /// A fixture whose backend is made with the fixture's temp dir (for its HOME and such).
    pub(crate) fn new_with(make: impl FnOnce(&Path) -> Arc<dyn CodingBackend>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend = make(dir.path());
        let index = SessionIndex::open(dir.path().join("data")).unwrap();
        let service = SessionService::new(backend, index, RunOptions::default());
        let tools = CodingTools::new(service, dir.path().join("managed"));
        let description = ServerDescription {
            backend_details: vec!["binary: in-process test double".into()],
            instructions: None,
        };
        let server = CodingMcpServer::new(Arc::new(tools), description);
        Fixture { dir, server }
    }

    pub(crate) fn fake() -> (Fixture, Arc<FakeState>) {
        let state = Arc::new(FakeState::default());
        let fixture = Fixture::new(Arc::new(FakeBackend {
            state: state.clone(),
        }));
        (fixture, state)
    }

    pub(crate) fn workspace(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Notifications a client received.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) progress: Mutex<Vec<ProgressNotificationParam>>,
    pub(crate) logs: Mutex<Vec<LoggingMessageNotificationParam>>,
}

impl Recorded {
    pub(crate) fn progress(&self) -> Vec<ProgressNotificationParam> {
        self.progress.lock().unwrap().clone()
    }
    pub(crate) fn progress_messages(&self) -> Vec<String> {
        self.progress()
            .into_iter()
            .filter_map(|p| p.message)
            .collect()
    }
    /// The progress messages once `done` holds for them (or after 10 s, for the assertion to
    /// show what arrived). Notifications precede a tool's result on the wire, but the client
    /// handles them on other tasks, so they may land just after the call returns.
    pub(crate) async fn progress_messages_when(
        &self,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let messages = self.progress_messages();
            if done(&messages) || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    pub(crate) fn logs(&self) -> Vec<LoggingMessageNotificationParam> {
        self.logs.lock().unwrap().clone()
    }
    pub(crate) fn clear(&self) {
        self.progress.lock().unwrap().clear();
        self.logs.lock().unwrap().clear();
    }
}

/// An MCP client that records progress and log notifications.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(pub(crate) Arc<Recorded>);

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.progress.lock().unwrap().push(params);
    }
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.logs.lock().unwrap().push(params);
    }
}

pub(crate) type Client = RunningService<RoleClient, Recorder>;

/// A connected client and what it recorded.
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) seen: Arc<Recorded>,
    pub(crate) server: tokio::task::JoinHandle<Result<(), station_mcp::McpServeError>>,
}

/// Connect a client to `server` over an in-process pipe, with the same newline-delimited
/// JSON-RPC framing as stdio ([`CodingMcpServer::serve_io`] is what `serve_stdio` runs).
pub(crate) async fn connect(server: &CodingMcpServer) -> Connection {
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let (server_read, server_write) = tokio::io::split(server_end);
    let server = tokio::spawn(server.clone().serve_io(server_read, server_write));
    let recorder = Recorder::default();
    let seen = recorder.0.clone();
    let client = recorder.serve(client_end).await.expect("the MCP handshake");
    Connection {
        client,
        seen,
        server,
    }
}

/// Call a tool; panics on a protocol error (tool errors come back as results).
pub(crate) async fn call(client: &Client, name: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(name.to_string())
        .with_arguments(args.as_object().cloned().expect("object arguments"));
    client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("calling {name}: {e}"))
}

/// Start a tool call without waiting for it (to cancel it, or to wait with options).
pub(crate) async fn start_call(
    client: &Client,
    name: &str,
    args: Value,
    options: PeerRequestOptions,
) -> RequestHandle<RoleClient> {
    let params = CallToolRequestParams::new(name.to_string())
        .with_arguments(args.as_object().cloned().expect("object arguments"));
    client
        .send_request_with_option(
            ClientRequest::CallToolRequest(Request::new(params)),
            options,
        )
        .await
        .expect("the request is sent")
}

/// The result of a started call.
pub(crate) async fn finish_call(handle: RequestHandle<RoleClient>) -> CallToolResult {
    match handle.await_response().await.expect("a response") {
        ServerResult::CallToolResult(r) => r,
        other => panic!("not a tool result: {other:?}"),
    }
}

/// The JSON a tool returned (its text content, which equals the structured content).
pub(crate) fn json_of(result: &CallToolResult) -> Value {
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_else(|| panic!("no text content: {result:?}"));
    let value: Value = serde_json::from_str(&text).expect("JSON text");
    assert_eq!(
        result.structured_content.as_ref(),
        Some(&value),
        "text and structured content agree"
    );
    value
}

/// A result that succeeded; its JSON.
pub(crate) fn ok_json(result: &CallToolResult) -> Value {
    let value = json_of(result);
    assert_eq!(result.is_error, Some(false), "{value:#}");
    assert_eq!(value["success"], true, "{value:#}");
    value
}

/// A tool error; its JSON.
pub(crate) fn err_json(result: &CallToolResult) -> Value {
    let value = json_of(result);
    assert_eq!(result.is_error, Some(true), "{value:#}");
    assert_eq!(value["success"], false, "{value:#}");
    value
}

/// Open a session on `workspace`; its id.
pub(crate) async fn open(client: &Client, workspace: &Path, title: &str) -> String {
    let opened = ok_json(
        &call(
            client,
            "coding_open",
            json!({"workspace_path": workspace, "title": title}),
        )
        .await,
    );
    opened["session_id"]
        .as_str()
        .expect("session_id")
        .to_string()
}

/// Poll `done` every 50 ms until it holds; panics after [`DEADLINE`].
pub(crate) async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
