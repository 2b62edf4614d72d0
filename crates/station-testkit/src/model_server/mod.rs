//! A scripted model server on 127.0.0.1 that speaks OpenAI Chat Completions (OpenCode) and
//! Anthropic Messages (Claude Code), streamed and not, with tool calls and deliberate faults;
//! and OpenAI Responses (Codex, see `responses.rs`).
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/messages` (query ignored), `POST /v1/responses`,
//! `POST /v1/messages/count_tokens`, `GET /v1/models`; anything else gets a JSON 404.
//! Under `/v1beta/models` it speaks the Gemini API (Gemini CLI; see `gemini.rs`).
//!
//! The server is stateless per request, as both clients resend the whole history:
//!
//! * **prompt** = the last real user message (OpenAI: the last `role:"user"`; Anthropic: the
//!   last user message without `tool_result` blocks, `<system-reminder>` blocks dropped), with
//!   one pair of enclosing double quotes stripped;
//! * **turn** `k` = the number of assistant messages after it; the first [`Script`] rule whose
//!   needle occurs in the prompt answers with its step `k`, and with the final text (`Done.`)
//!   once the steps run out;
//! * a request that offers **no tools** (a title or other side call) never advances the script:
//!   it gets a short title taken from the prompt, or JSON matching the schema when Anthropic
//!   `output_config.format` or OpenAI `response_format` asks for JSON;
//! * abstract tools (`write`, `edit`, `bash`, `read`) are matched case-insensitively against the
//!   offered tools and their arguments renamed onto the offered schema (`path` → `filePath` |
//!   `file_path`, `old` → `oldString` | `old_string`, `new` → `newString` | `new_string`);
//!   arguments the schema lacks are dropped; relative paths are joined to the working directory
//!   from the system prompt (`Working directory: X` / `Primary working directory: X`). Any other
//!   tool name offered verbatim is called with its arguments unchanged.
//!
//! Ids are deterministic per server (`req_scripted000001`, `call_scripted000001`,
//! `toolu_scripted000001`, `msg_scripted000001`), and so is usage (see [`TokenUsage`]).

mod anthropic;
mod gemini;
mod openai;
mod reply;
mod request;
mod responses;
mod script;
mod stream;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use request::{Api, RecordedReply, RecordedRequest, RecordedToolCall, TokenUsage};
pub use script::{DEFAULT_FINAL_TEXT, Fault, Script, Step};

use reply::{Message, Plan};
use stream::Chunk;

/// Request bodies larger than this get a 413.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Headers never recorded.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "proxy-authorization",
    "cookie",
    "x-goog-api-key",
];

/// The per-request facts the wire formats need.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) model: &'a str,
    pub(crate) seq: u64,
    pub(crate) created: u64,
}

/// How to start a [`ScriptedModel`] beyond the defaults (port 0, no log file).
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    port: u16,
    request_log: Option<PathBuf>,
}

impl ServerOptions {
    /// Defaults: a free port, no log file.
    pub fn new() -> ServerOptions {
        ServerOptions::default()
    }

    /// Listen on this port of 127.0.0.1 (0 = any free port).
    pub fn port(mut self, port: u16) -> ServerOptions {
        self.port = port;
        self
    }

    /// Append one JSON line per request ([`RecordedRequest`]) to this file.
    pub fn request_log(mut self, path: impl Into<PathBuf>) -> ServerOptions {
        self.request_log = Some(path.into());
        self
    }
}

#[derive(Debug)]
struct Shared {
    script: Mutex<Script>,
    fault: Mutex<Option<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Notify,
    seq: AtomicU64,
    open_streams: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    request_log: Option<PathBuf>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running scripted model server. Dropping it stops the server: it stops accepting, and
/// replies still streaming (stalls and slow streams included) are cut off.
#[derive(Debug)]
pub struct ScriptedModel {
    port: u16,
    shared: Arc<Shared>,
}

impl ScriptedModel {
    /// Start on a free port of 127.0.0.1.
    pub async fn start(script: Script) -> std::io::Result<ScriptedModel> {
        ScriptedModel::start_with(script, ServerOptions::new()).await
    }

    /// Start with explicit [`ServerOptions`].
    pub async fn start_with(
        script: Script,
        options: ServerOptions,
    ) -> std::io::Result<ScriptedModel> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            fault: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            seq: AtomicU64::new(0),
            open_streams: Arc::new(AtomicUsize::new(0)),
            shutdown: CancellationToken::new(),
            request_log: options.request_log,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let stop = shared.shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(%error, "scripted model server stopped");
            }
        });
        Ok(ScriptedModel { port, shared })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/v1`, for an OpenAI-compatible `baseURL`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Replace the script (requests already answered are unaffected).
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.script) = script;
    }

    /// Fail every following model request with `fault` (`None` to stop).
    pub fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.shared.fault) = fault;
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The model requests the script answered (side calls and other routes left out).
    pub fn scripted_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.turn.is_some() && !r.side_call)
            .collect()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Wait until at least `count` requests have arrived; panics after `timeout` with what did.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let requests = lock(&self.shared.requests);
                if requests.len() >= count {
                    return requests.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                panic!(
                    "scripted model: expected {count} requests within {timeout:?}, got {seen:?}"
                );
            }
        }
    }

    /// Response bodies still being sent (streams, stalls). Drops to 0 once clients disconnect.
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    Completion(Api),
    CountTokens,
    Models,
    Root,
    Gemini(gemini::Call),
    WrongMethod,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    let post = method == Method::POST;
    if path.starts_with("/v1beta/models") {
        return Route::Gemini(gemini::route(method, path));
    }
    match path {
        "/v1/chat/completions" if post => Route::Completion(Api::OpenAi),
        "/v1/messages" if post => Route::Completion(Api::Anthropic),
        "/v1/responses" if post => Route::Completion(Api::Responses),
        "/v1/messages/count_tokens" if post => Route::CountTokens,
        "/v1/models" if method == Method::GET => Route::Models,
        // Bun's connectivity check before Claude's first request.
        "/" if method == Method::GET || method == Method::HEAD => Route::Root,
        "/v1/chat/completions"
        | "/v1/messages"
        | "/v1/messages/count_tokens"
        | "/v1/models"
        | "/v1/responses" => Route::WrongMethod,
        _ => Route::NotFound,
    }
}

fn route_api(route: Route, path: &str, headers: &HeaderMap) -> Api {
    match route {
        Route::Completion(api) => api,
        Route::CountTokens => Api::Anthropic,
        Route::Gemini(_) => Api::Gemini,
        _ if headers.contains_key("anthropic-version") || path.contains("messages") => {
            Api::Anthropic
        }
        _ => Api::OpenAi,
    }
}

fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !SECRET_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A response being prepared: the record's reply is filled in along the way.
struct Responder<'a> {
    shared: &'a Shared,
    api: Api,
    request_id: String,
}

impl Responder<'_> {
    fn base(&self, status: StatusCode, content_type: &'static str, body: Body) -> Response {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            headers.insert("request-id", id.clone());
            headers.insert("x-request-id", id);
        }
        response
    }

    fn json(&self, status: StatusCode, value: &Value) -> Response {
        self.base(status, "application/json", Body::from(value.to_string()))
    }

    fn error(&self, record: &mut RecordedRequest, status: StatusCode, message: &str) -> Response {
        let mut response = self.retryable_error(record, status, message);
        response
            .headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
        response
    }

    /// An error in the API's shape that leaves retrying to the client's own policy.
    fn retryable_error(
        &self,
        record: &mut RecordedRequest,
        status: StatusCode,
        message: &str,
    ) -> Response {
        record.reply.status = status.as_u16();
        let body = match self.api {
            Api::OpenAi | Api::Responses => openai::error_body(status.as_u16(), message),
            Api::Anthropic => anthropic::error_body(status.as_u16(), message, &self.request_id),
            Api::Gemini => gemini::error_body(status.as_u16(), message),
        };
        self.json(status, &body)
    }

    fn played(&self, content_type: &'static str, chunks: Vec<Chunk>) -> Response {
        let body = stream::body(
            chunks,
            self.shared.shutdown.clone(),
            self.shared.open_streams.clone(),
        );
        let mut response = self.base(StatusCode::OK, content_type, body);
        if content_type == "text/event-stream" {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        response
    }

    fn fault(
        &self,
        record: &mut RecordedRequest,
        fault: Fault,
        ctx: &Ctx<'_>,
        stream: bool,
    ) -> Response {
        record.reply.fault = Some(fault);
        record.reply.status = 200;
        let content_type = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        match fault {
            Fault::Status(code) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                self.error(
                    record,
                    status,
                    &format!("scripted fault: HTTP {}", status.as_u16()),
                )
            }
            Fault::RetryableStatus(code) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                self.retryable_error(
                    record,
                    status,
                    &format!("scripted fault: HTTP {}", status.as_u16()),
                )
            }
            Fault::Stall => self.played(content_type, vec![Chunk::Stall]),
            Fault::DropMidStream => {
                let mut chunks = match (stream, self.api) {
                    (false, _) => vec![Chunk::data("{\"id\":\"partial")],
                    (true, Api::OpenAi) => openai::stream_prefix(ctx),
                    (true, Api::Anthropic) => anthropic::stream_prefix(ctx),
                    (true, Api::Gemini) => gemini::stream_prefix(ctx),
                    (true, Api::Responses) => responses::stream_prefix(ctx),
                };
                // The pause lets hyper flush what was sent before the connection goes.
                chunks.extend([Chunk::Sleep(Duration::from_millis(50)), Chunk::Abort]);
                self.played(content_type, chunks)
            }
            Fault::MalformedSse => {
                let chunks = match (stream, self.api) {
                    (false, _) => vec![Chunk::data("{\"id\": broken")],
                    (true, Api::OpenAi) => openai::malformed_stream(ctx),
                    (true, Api::Anthropic) => anthropic::malformed_stream(ctx),
                    (true, Api::Gemini) => gemini::malformed_stream(ctx),
                    (true, Api::Responses) => responses::malformed_stream(ctx),
                };
                self.played(content_type, chunks)
            }
        }
    }

    fn message(
        &self,
        record: &mut RecordedRequest,
        message: &Message,
        ctx: &Ctx<'_>,
        conv_stream: bool,
        include_usage: bool,
    ) -> Response {
        record.reply.status = 200;
        record.reply.text = message.text.clone();
        record.reply.usage = Some(message.usage);
        record.reply.tool_call = message.tool.as_ref().map(|t| RecordedToolCall {
            id: t.id.clone(),
            name: t.name.clone(),
            arguments: t.arguments.clone(),
        });
        match (conv_stream, self.api) {
            (true, Api::OpenAi) => self.played(
                "text/event-stream",
                openai::stream(message, ctx, include_usage),
            ),
            (true, Api::Anthropic) => {
                self.played("text/event-stream", anthropic::stream(message, ctx))
            }
            (true, Api::Responses) => {
                self.played("text/event-stream", responses::stream(message, ctx))
            }
            (false, Api::OpenAi) => self.json(StatusCode::OK, &openai::complete(message, ctx)),
            (false, Api::Responses) => {
                self.json(StatusCode::OK, &responses::complete(message, ctx))
            }
            (false, Api::Anthropic) => {
                self.json(StatusCode::OK, &anthropic::complete(message, ctx))
            }
            (true, Api::Gemini) => self.played("text/event-stream", gemini::stream(message, ctx)),
            (false, Api::Gemini) => self.json(StatusCode::OK, &gemini::complete(message, ctx)),
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let route = route(&parts.method, &path);
    let api = route_api(route, &path, &parts.headers);
    let responder = Responder {
        shared: &shared,
        api,
        request_id: format!("req_scripted{seq:06}"),
    };
    let mut record = RecordedRequest {
        seq,
        api,
        method: parts.method.as_str().to_owned(),
        path,
        model: None,
        body: Value::Null,
        prompt: None,
        turn: None,
        offered_tools: Vec::new(),
        stream: false,
        side_call: false,
        headers: recorded_headers(&parts.headers),
        reply: RecordedReply::default(),
    };
    let (response, delay) = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Err(error) => (
            responder.error(
                &mut record,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read the body: {error}"),
            ),
            Duration::ZERO,
        ),
        Ok(bytes) => respond(&responder, &mut record, route, &parts.headers, &bytes),
    };
    tracing::debug!(seq, path = %record.path, status = record.reply.status, "scripted model request");
    shared.record(record);
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.shutdown.cancelled() => {
                return responder.json(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "server stopping"}));
            }
        }
    }
    response
}

fn respond(
    responder: &Responder<'_>,
    record: &mut RecordedRequest,
    route: Route,
    headers: &HeaderMap,
    bytes: &[u8],
) -> (Response, Duration) {
    let parsed: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(bytes).ok()
    };
    if let Some(body) = &parsed {
        record.body = body.clone();
        record.model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    }
    let response = match route {
        Route::Gemini(call) => return gemini::respond(responder, record, call, parsed.as_ref()),
        Route::NotFound => responder.error(
            record,
            StatusCode::NOT_FOUND,
            &format!("no route for {} {}", record.method, record.path),
        ),
        Route::WrongMethod => responder.error(
            record,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} is not allowed on {}", record.method, record.path),
        ),
        Route::Root => {
            record.reply.status = 200;
            responder.json(
                StatusCode::OK,
                &json!({"ok": true, "server": "scripted-model"}),
            )
        }
        Route::Models => {
            record.reply.status = 200;
            let body = if headers.contains_key("anthropic-version") {
                json!({"data": [{"type": "model", "id": "fake-model", "display_name": "Fake Model",
                                  "created_at": "2025-01-01T00:00:00Z"}],
                       "has_more": false, "first_id": "fake-model", "last_id": "fake-model"})
            } else {
                json!({"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "scripted"}]})
            };
            responder.json(StatusCode::OK, &body)
        }
        Route::CountTokens => match &parsed {
            Some(body) if body.get("messages").is_some_and(Value::is_array) => {
                record.reply.status = 200;
                let tokens =
                    request::token_estimate(&request::conversation_text(Api::Anthropic, body));
                responder.json(StatusCode::OK, &json!({"input_tokens": tokens}))
            }
            _ => responder.error(
                record,
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object with a `messages` array",
            ),
        },
        Route::Completion(api) => {
            let Some(body) = &parsed else {
                return (
                    responder.error(record, StatusCode::BAD_REQUEST, "the body is not JSON"),
                    Duration::ZERO,
                );
            };
            let conv = match request::parse_conversation(api, body) {
                Ok(conv) => conv,
                Err(message) => {
                    return (
                        responder.error(record, StatusCode::BAD_REQUEST, &message),
                        Duration::ZERO,
                    );
                }
            };
            record.prompt = conv.prompt.clone();
            record.turn = Some(conv.turn);
            record.offered_tools = conv.tools.iter().map(|t| t.name.clone()).collect();
            record.stream = conv.stream;
            let tool_id = match api {
                Api::OpenAi | Api::Responses => format!("call_scripted{:06}", record.seq),
                Api::Anthropic => format!("toolu_scripted{:06}", record.seq),
                Api::Gemini => format!("gemini_call_scripted{:06}", record.seq),
            };
            let planned = {
                let script = lock(&responder.shared.script);
                let fault = *lock(&responder.shared.fault);
                reply::plan(&script, fault, &conv, tool_id)
            };
            record.side_call = planned.side_call;
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let ctx = Ctx {
                model: conv.model.as_deref().unwrap_or("fake-model"),
                seq: record.seq,
                created,
            };
            let response = match &planned.plan {
                Plan::Fault(fault) => responder.fault(record, *fault, &ctx, conv.stream),
                Plan::Message(message) => {
                    responder.message(record, message, &ctx, conv.stream, conv.include_usage)
                }
            };
            return (response, planned.delay);
        }
    };
    (response, Duration::ZERO)
}

impl Shared {
    fn record(&self, record: RecordedRequest) {
        if let Some(path) = &self.request_log {
            append_line(path, &record);
        }
        lock(&self.requests).push(record);
        self.arrived.notify_waiters();
    }
}

fn append_line(path: &Path, record: &RecordedRequest) {
    let line = serde_json::to_string(record).unwrap_or_default();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(error) = written {
        tracing::warn!(%error, path = %path.display(), "cannot write the request log");
    }
}
