//! [`CodingMcpServer`]: the MCP `ServerHandler` over [`CodingTools`], and its transports.

#![allow(deprecated)] // MCP logging (`notifications/message`) is deprecated by SEP-2577; clients still use it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourcesResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ServerCapabilities,
    ServerConfig, SetLevelRequestParams, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use station_agent::CodingTools;
use station_core::Error;
use station_core::redact::{Redactor, Secret};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::docs;
use crate::error::McpServeError;
use crate::guard::{HttpGuard, MIN_TOKEN_LEN, guard_requests, parse_origin};
use crate::schema::{
    ArgError, CodeWaitArg, DEFAULT_WAIT_SECS, SessionsArgs, TaskArgs, ToolDef, WaitArgs,
    check_args, tool_defs,
};
use crate::tasks::{CancelOnDrop, TaskEntry, TaskRegistry};

/// How often a running task reports progress when nothing happens (clients that reset their
/// request timeout on progress stay alive).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Streamed text (many small events) is reported at most this often.
const STREAM_NOTE_EVERY: Duration = Duration::from_secs(1);
/// A notification that cannot be written within this long is dropped (a stuck client must not
/// stall the task it watches).
const NOTIFY_DEADLINE: Duration = Duration::from_secs(5);
/// Sessions `coding_sessions` lists by default.
const DEFAULT_SESSION_LIMIT: usize = 50;
/// The URI of the resource that documents the tools.
pub const TOOLS_RESOURCE_URI: &str = "station://coding/tools";
/// Where the HTTP transport is mounted.
pub const HTTP_PATH: &str = "/mcp";
/// The `logger` name of log notifications about coding events.
const LOGGER: &str = "station.coding";

/// What the server says about itself beyond what the tools know (shown in the
/// `station://coding/tools` resource). Never put secrets here.
#[derive(Debug, Clone, Default)]
pub struct ServerDescription {
    /// Lines about the configured backend, e.g. `binary: /usr/local/bin/opencode`,
    /// `default task timeout: 600s`.
    pub backend_details: Vec<String>,
    /// Extra text for the client's `instructions` (appended to the built-in ones).
    pub instructions: Option<String>,
}

/// HTTP transport options.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Serve on an address other than loopback, under any host name. The coding tools change
    /// files and run commands on this machine, so this must be asked for explicitly, and needs
    /// a [`token`](Self::token).
    pub allow_remote: bool,
    /// Browser origins (`https://app.example`, `http://localhost:3000`, `null`) allowed besides
    /// the server's own. Requests with any other `Origin` header are refused (403).
    pub allowed_origins: Vec<String>,
    /// Every request must carry `Authorization: Bearer <token>` (401 otherwise). Required with
    /// `allow_remote`; at least [`MIN_TOKEN_LEN`] characters. Registered with the global
    /// redactor when the server binds. [`generate_token`](crate::generate_token) makes one.
    pub token: Option<Secret>,
}

#[derive(Debug)]
struct Shared {
    tools: Arc<CodingTools>,
    description: ServerDescription,
    defs: Vec<ToolDef>,
}

/// The coding tools served over MCP. Cheap to clone; clones share the tools and the tasks.
/// A stdio connection ([`serve_io`](Self::serve_io)) has tasks of its own; the sessions of an
/// HTTP server share its tasks (a `task_id` from one request works in the next).
///
/// Tools: `coding_open`, `code`, `coding_close`, `coding_commit`, `coding_push`,
/// `coding_branch` (from [`CodingTools`], same schemas and results; `code` also takes
/// `wait`), `coding_sessions`, `coding_status`, `coding_wait` and `coding_cancel`.
/// While `code` runs, the server sends a progress notification for every coding event and at
/// least every [`DEFAULT_HEARTBEAT`], and a log notification per event.
#[derive(Debug, Clone)]
pub struct CodingMcpServer {
    shared: Arc<Shared>,
    registry: Arc<TaskRegistry>,
    heartbeat: Duration,
    /// Per connection: the level set with `logging/setLevel`.
    log_level: Arc<Mutex<LoggingLevel>>,
    /// Per connection: its id, to tell whose task asks a question.
    connection: u64,
    /// Asks the client about the policy's `ask` decisions (when set).
    permissions: Option<Arc<crate::ClientPermissions>>,
}

impl CodingMcpServer {
    /// A server over `tools`.
    pub fn new(tools: Arc<CodingTools>, description: ServerDescription) -> Self {
        CodingMcpServer {
            shared: Arc::new(Shared {
                tools,
                description,
                defs: tool_defs(),
            }),
            registry: Arc::new(TaskRegistry::default()),
            heartbeat: DEFAULT_HEARTBEAT,
            log_level: Arc::new(Mutex::new(LoggingLevel::Info)),
            connection: crate::ask::next_connection(),
            permissions: None,
        }
    }

    /// Put the policy's `ask` decisions of `code` tasks to the client that started them, as
    /// elicitations; `permissions` must also be the service's handler
    /// (`SessionService::with_permissions`).
    pub fn with_client_permissions(mut self, permissions: Arc<crate::ClientPermissions>) -> Self {
        self.permissions = Some(permissions);
        self
    }

    /// Report progress at least this often while a task runs (default [`DEFAULT_HEARTBEAT`]).
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(100));
        self
    }

    /// The tools this server calls.
    pub fn tools(&self) -> &Arc<CodingTools> {
        &self.shared.tools
    }

    /// A handler for a new connection: same tools and tasks, its own log level.
    fn for_connection(&self) -> Self {
        CodingMcpServer {
            shared: self.shared.clone(),
            registry: self.registry.clone(),
            heartbeat: self.heartbeat,
            log_level: Arc::new(Mutex::new(LoggingLevel::Info)),
            connection: crate::ask::next_connection(),
            permissions: self.permissions.clone(),
        }
    }

    /// Serve one client on stdin/stdout until it closes stdin. Nothing else may write to
    /// stdout (send logs to stderr). Running tasks are cancelled when this returns.
    pub async fn serve_stdio(self) -> Result<(), McpServeError> {
        self.serve_io(tokio::io::stdin(), tokio::io::stdout()).await
    }

    /// Serve one client on a byte stream pair (newline-delimited JSON-RPC, as on stdio) until
    /// it closes. Running tasks are cancelled when this returns or is dropped.
    pub async fn serve_io<R, W>(self, reader: R, writer: W) -> Result<(), McpServeError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let connection = CodingMcpServer {
            registry: Arc::new(TaskRegistry::default()),
            ..self.for_connection()
        };
        let _cancel_tasks = CancelAllOnDrop(connection.registry.clone());
        let running = connection
            .serve((reader, writer))
            .await
            .map_err(|e| McpServeError::Start(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| McpServeError::Transport(e.to_string()))?;
        Ok(())
    }

    /// An axum router serving MCP's streamable HTTP transport at [`HTTP_PATH`] behind `guard`.
    /// With `cancel` fired, open sessions end.
    fn http_router(&self, guard: Arc<HttpGuard>, cancel: CancellationToken) -> axum::Router {
        let mut config = StreamableHttpServerConfig::default();
        config.cancellation_token = cancel;
        // The guard checks Host and Origin (against the listen address, and with a message
        // that says how to fix it), so rmcp's own checks would only repeat them.
        config = config.disable_allowed_hosts().disable_allowed_origins();
        let server = self.clone();
        let service = StreamableHttpService::new(
            move || Ok(server.for_connection()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        axum::Router::new()
            .nest_service(HTTP_PATH, service)
            .layer(axum::middleware::from_fn_with_state(guard, guard_requests))
    }

    /// Listen on `addr` (port 0 picks one). Refuses a non-loopback address unless
    /// `options.allow_remote`, remote access without a token, a short token and allowed
    /// origins that are not origins.
    pub async fn bind_http(
        self,
        addr: SocketAddr,
        options: HttpOptions,
    ) -> Result<HttpServer, McpServeError> {
        if !addr.ip().is_loopback() && !options.allow_remote {
            return Err(McpServeError::NotLoopback { addr });
        }
        match &options.token {
            None if options.allow_remote => return Err(McpServeError::TokenRequired { addr }),
            Some(token) if token.expose().chars().count() < MIN_TOKEN_LEN => {
                return Err(McpServeError::WeakToken {
                    len: token.expose().chars().count(),
                });
            }
            Some(token) => Redactor::global().register(token),
            None => {}
        }
        let allowed_origins = options
            .allowed_origins
            .iter()
            .map(|origin| {
                parse_origin(origin).map_err(|reason| McpServeError::BadOrigin {
                    origin: origin.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| McpServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| McpServeError::Bind { addr, source })?;
        let guard = HttpGuard::new(
            local_addr,
            allowed_origins,
            options.allow_remote,
            options.token,
        );
        Ok(HttpServer {
            server: self,
            listener,
            local_addr,
            guard: Arc::new(guard),
        })
    }

    /// Serve streamable HTTP on `addr` at [`HTTP_PATH`] until `shutdown` resolves.
    pub async fn serve_http(
        self,
        addr: SocketAddr,
        options: HttpOptions,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), McpServeError> {
        self.bind_http(addr, options).await?.run(shutdown).await
    }

    fn def(&self, name: &str) -> Option<&ToolDef> {
        self.shared.defs.iter().find(|d| d.name == name)
    }

    fn tool(def: &ToolDef) -> Tool {
        let schema = def.schema.as_object().cloned().unwrap_or_default();
        let mut tool = Tool::new(def.name.clone(), def.description.clone(), schema);
        if def.read_only {
            tool.annotations = Some(ToolAnnotations::new().read_only(true));
        }
        tool
    }

    fn instructions(&self) -> String {
        let backend = self.shared.tools.service().backend().name();
        let mut text = format!(
            "Station hands coding work to the `{backend}` coding agent. Workflow: coding_open (workspace_path or repo_url) -> code (session_id, instruction) -> coding_close; coding_commit/coding_push/coding_branch for git. \
             `code` can take minutes: it sends progress notifications every few seconds. If your client cannot wait that long, call code with wait=false and then coding_wait (up to 55 s per call) until the status is no longer running. \
             Read {TOOLS_RESOURCE_URI} for details."
        );
        if let Some(extra) = &self.shared.description.instructions {
            text.push('\n');
            text.push_str(extra);
        }
        text
    }

    fn log_level(&self) -> LoggingLevel {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call(
        &self,
        name: &str,
        args: Map<String, Value>,
        ctx: &RequestContext<RoleServer>,
    ) -> Value {
        let Some(def) = self.def(name) else {
            let names: Vec<&str> = self.shared.defs.iter().map(|d| d.name.as_str()).collect();
            return failure(
                format!("unknown tool `{name}`"),
                format!("use one of: {}", names.join(", ")),
            );
        };
        if let Err(ArgError { error, fix }) = check_args(def, &args) {
            return failure(error, fix);
        }
        match name {
            "code" => self.code(args, ctx).await,
            "coding_sessions" => match read::<SessionsArgs>(name, args) {
                Ok(a) => self.sessions(a),
                Err(e) => e,
            },
            "coding_status" => {
                match read::<TaskArgs>(name, args).and_then(|a| self.task(&a.task_id)) {
                    Ok(entry) => entry.status_json(),
                    Err(e) => e,
                }
            }
            "coding_wait" => match read::<WaitArgs>(name, args) {
                Ok(a) => self.wait(a, ctx).await,
                Err(e) => e,
            },
            "coding_cancel" => match read::<TaskArgs>(name, args) {
                Ok(a) => self.cancel(&a.task_id),
                Err(e) => e,
            },
            _ => {
                let tools = &self.shared.tools;
                let args = Value::Object(args);
                tokio::select! {
                    result = tools.call(name, &args, None) => result,
                    _ = ctx.ct.cancelled() => failure(
                        format!("`{name}` was cancelled by the client"),
                        "call it again if it is still needed",
                    ),
                }
            }
        }
    }

    async fn code(&self, mut args: Map<String, Value>, ctx: &RequestContext<RoleServer>) -> Value {
        let wait = serde_json::from_value::<CodeWaitArg>(json!({ "wait": args.remove("wait") }))
            .ok()
            .and_then(|a| a.wait)
            .unwrap_or(true);
        // Resolve the session now, so that a wrong one fails this call rather than a task.
        let query = args.get("session_id").and_then(Value::as_str).unwrap_or("");
        let session = match self.shared.tools.service().get(query) {
            Ok(s) => s,
            Err(e) => return session_failure(e),
        };
        let registry = &self.registry;
        let entry = registry.start(
            self.shared.tools.clone(),
            Value::Object(args),
            session.id.to_string(),
        );
        if let Some(permissions) = &self.permissions {
            permissions.track(self.connection, &entry, ctx.peer.clone());
        }
        if !wait {
            return json!({
                "success": true,
                "task_id": entry.id,
                "session_id": entry.session_id,
                "status": "running",
                "next": "call coding_wait with this task_id until the status is no longer running; coding_status shows progress, coding_cancel stops it",
            });
        }
        let _owner = CancelOnDrop {
            registry: registry.clone(),
            entry: entry.clone(),
        };
        self.follow(&entry, ctx, true, None).await
    }

    fn sessions(&self, args: SessionsArgs) -> Value {
        let limit = args.limit.map_or(DEFAULT_SESSION_LIMIT, |l| {
            usize::try_from(l).unwrap_or(usize::MAX)
        });
        let service = self.shared.tools.service();
        let sessions = match service.index().list() {
            Ok(s) => s,
            Err(e) => {
                return failure(
                    format!("could not read the session index: {e}"),
                    "tell the user to run `stn doctor`",
                );
            }
        };
        let total = sessions.len();
        let listed: Vec<Value> = sessions
            .into_iter()
            .take(limit)
            .map(|s| {
                json!({
                    "id": s.id,
                    "title": s.title,
                    "backend": s.backend,
                    "backend_session_id": s.backend_session_id,
                    "workspace": s.workspace,
                    "repo": s.repo.map(|r| r.url),
                    "created_at": s.created_at,
                    "last_used_at": s.last_used_at,
                })
            })
            .collect();
        json!({
            "success": true,
            "backend": service.backend().name(),
            "total": total,
            "sessions": listed,
        })
    }

    fn task(&self, id: &str) -> Result<Arc<TaskEntry>, Value> {
        self.registry.get(id).ok_or_else(|| {
            failure(
                format!("unknown task_id `{id}`"),
                format!(
                    "use the task_id that code returned with wait=false; results are kept for the last {} finished tasks of this server",
                    crate::tasks::KEEP_FINISHED
                ),
            )
        })
    }

    async fn wait(&self, args: WaitArgs, ctx: &RequestContext<RoleServer>) -> Value {
        let entry = match self.task(&args.task_id) {
            Ok(e) => e,
            Err(e) => return e,
        };
        let secs = args.timeout_secs.unwrap_or(DEFAULT_WAIT_SECS);
        let deadline = Instant::now() + Duration::from_secs(secs);
        self.follow(&entry, ctx, false, Some(deadline)).await
    }

    fn cancel(&self, task_id: &str) -> Value {
        let entry = match self.task(task_id) {
            Ok(e) => e,
            Err(e) => return e,
        };
        let registry = &self.registry;
        if registry.cancel(&entry, "with coding_cancel") {
            json!({
                "success": true,
                "task_id": entry.id,
                "session_id": entry.session_id,
                "status": "cancelled",
                "note": "the backend is stopping the work; the session can be continued",
            })
        } else {
            let status = entry.result().and_then(|r| r.get("status").cloned());
            json!({
                "success": true,
                "task_id": entry.id,
                "session_id": entry.session_id,
                "status": status,
                "note": "the task had already ended; nothing to cancel",
            })
        }
    }

    /// Report a task's events to the client until it ends (its result), the client cancels
    /// (with `owns_task`, the task is cancelled too), or `deadline` passes (running status).
    async fn follow(
        &self,
        entry: &TaskEntry,
        ctx: &RequestContext<RoleServer>,
        owns_task: bool,
        deadline: Option<Instant>,
    ) -> Value {
        let mut reporter = Reporter {
            peer: ctx.peer.clone(),
            token: ctx.meta.get_progress_token(),
            task_id: entry.id.clone(),
            sent: 0,
            last_sent: Instant::now(),
            last_stream_note: None,
            // A waiter that joins later reports what happens from now on.
            next_index: if owns_task { 0 } else { entry.last_index() },
            heartbeat: self.heartbeat,
        };
        let mut changes = entry.subscribe();
        loop {
            changes.borrow_and_update();
            for note in entry.notes_after(reporter.next_index) {
                reporter.next_index = note.index;
                reporter.note(&note, self.log_level()).await;
            }
            if let Some(result) = entry.result() {
                // Every event was recorded before the result; report those that arrived while
                // the notes above were being sent.
                for note in entry.notes_after(reporter.next_index) {
                    reporter.next_index = note.index;
                    reporter.note(&note, self.log_level()).await;
                }
                return result;
            }
            let heartbeat_at = reporter.last_sent + reporter.heartbeat;
            tokio::select! {
                _ = ctx.ct.cancelled() => {
                    if owns_task {
                        self.registry.cancel(entry, "by the client");
                        return entry.result().unwrap_or_else(|| entry.running_json());
                    }
                    return entry.running_json();
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The entry is gone (cannot happen while we hold it); stop following.
                        return entry.result().unwrap_or_else(|| entry.running_json());
                    }
                }
                _ = tokio::time::sleep_until(heartbeat_at), if reporter.token.is_some() => {
                    let last = entry.last_message().unwrap_or_else(|| "starting".into());
                    let message = format!("still working ({}s); last: {last}", entry.elapsed().as_secs());
                    reporter.progress(message).await;
                }
                _ = sleep_until_opt(deadline) => return entry.running_json(),
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends one request's progress and log notifications.
struct Reporter {
    peer: Peer<RoleServer>,
    token: Option<ProgressToken>,
    task_id: String,
    sent: u64,
    last_sent: Instant,
    last_stream_note: Option<Instant>,
    next_index: u64,
    heartbeat: Duration,
}

impl Reporter {
    async fn note(&mut self, note: &crate::tasks::Note, min_level: LoggingLevel) {
        let d = &note.described;
        if d.streaming {
            let now = Instant::now();
            if self
                .last_stream_note
                .is_some_and(|t| now.duration_since(t) < STREAM_NOTE_EVERY)
            {
                return;
            }
            self.last_stream_note = Some(now);
        }
        self.progress(d.message.clone()).await;
        let level = if d.warning {
            LoggingLevel::Warning
        } else {
            LoggingLevel::Info
        };
        if rank(level) < rank(min_level) {
            return;
        }
        let param = LoggingMessageNotificationParam::new(
            level,
            json!({
                "task_id": self.task_id,
                "seq": note.seq,
                "type": d.kind,
                "message": d.message,
            }),
        )
        .with_logger(LOGGER);
        let send = self.peer.notify_logging_message(param);
        if let Ok(Err(e)) = tokio::time::timeout(NOTIFY_DEADLINE, send).await {
            tracing::debug!("could not send a log notification: {e}");
        }
    }

    async fn progress(&mut self, message: String) {
        // Counted even without a token so heartbeats stay spaced from the last report.
        self.last_sent = Instant::now();
        let Some(token) = self.token.clone() else {
            return;
        };
        self.sent += 1;
        let param = ProgressNotificationParam::new(token, self.sent as f64).with_message(message);
        let send = self.peer.notify_progress(param);
        if let Ok(Err(e)) = tokio::time::timeout(NOTIFY_DEADLINE, send).await {
            tracing::debug!("could not send a progress notification: {e}");
        }
    }
}

fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Read checked arguments into their type; a failure is the tool's result.
fn read<T: schemars::JsonSchema + serde::de::DeserializeOwned>(
    tool: &str,
    args: Map<String, Value>,
) -> Result<T, Value> {
    station_agent::args::parse_args(tool, &Value::Object(args))
        .map_err(|ArgError { error, fix }| failure(error, fix))
}

fn failure(error: impl Into<String>, fix: impl Into<String>) -> Value {
    json!({
        "success": false,
        "error": station_core::redact::redact(&error.into()),
        "fix": fix.into(),
    })
}

fn session_failure(e: Error) -> Value {
    let fix = match &e {
        Error::NotFound { .. } => {
            "call coding_open first and use the session_id it returns (coding_sessions lists known sessions)"
        }
        Error::AmbiguousSession { .. } => "use the session id, or a longer part of the title",
        _ => "report the error to the user",
    };
    failure(e.to_string(), fix)
}

/// The tool's JSON as text and structured content; `success: false` is a tool error.
fn tool_result(value: Value) -> CallToolResult {
    let failed = value.get("success").and_then(Value::as_bool) == Some(false);
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    let mut result = if failed {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    result.structured_content = Some(value);
    result
}

struct CancelAllOnDrop(Arc<TaskRegistry>);

impl Drop for CancelAllOnDrop {
    fn drop(&mut self) {
        self.0.cancel_all("because the MCP server stopped");
    }
}

impl ServerHandler for CodingMcpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_resources()
                .enable_tools()
                .build(),
        )
        .with_server_info(Implementation::new("station", env!("CARGO_PKG_VERSION")))
        .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.shared.defs.iter().map(Self::tool).collect(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.def(name).map(Self::tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let value = self.call(request.name.as_ref(), args, &context).await;
        Ok(tool_result(value).into())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner()) = request.level;
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resource = Resource::new(TOOLS_RESOURCE_URI, "coding-tools")
            .with_title("Station coding tools")
            .with_description("How to use the coding tools, and the configured coding backend")
            .with_mime_type("text/markdown");
        Ok(ListResourcesResult::with_all_items(vec![resource]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != TOOLS_RESOURCE_URI {
            return Err(ErrorData::resource_not_found(
                format!(
                    "no resource `{}`; this server has {TOOLS_RESOURCE_URI}",
                    request.uri
                ),
                None,
            ));
        }
        let text = docs::tools_markdown(
            self.shared.tools.service().backend().as_ref(),
            &self.shared.defs,
            &self.shared.description,
            self.heartbeat,
        );
        let contents =
            ResourceContents::text(text, TOOLS_RESOURCE_URI).with_mime_type("text/markdown");
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// A bound HTTP server; [`run`](Self::run) serves it.
#[derive(Debug)]
pub struct HttpServer {
    server: CodingMcpServer,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    guard: Arc<HttpGuard>,
}

impl HttpServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MCP endpoint, e.g. `http://127.0.0.1:8765/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{HTTP_PATH}", self.local_addr)
    }

    /// Serve until `shutdown` resolves; then open sessions end and running tasks are cancelled.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), McpServeError> {
        let _cancel_tasks = CancelAllOnDrop(self.server.registry.clone());
        let cancel = CancellationToken::new();
        let router = self.server.http_router(self.guard, cancel.clone());
        let stop = cancel.clone();
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop.cancel();
            })
            .await
            .map_err(|e| McpServeError::Transport(e.to_string()))
    }
}
