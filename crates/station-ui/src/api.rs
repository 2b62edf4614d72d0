//! The JSON API under `/api` and the event stream of a running task.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use station_core::history::TaskHistory;
use station_core::service::OpenSpec;
use station_core::workspace::Checkpoints;
use station_core::{Error, ErrorKind, Session, SessionId, SessionIndex, Task, Usage};

use crate::server::Ui;

/// A refused or failed API call: `{"error": ..., "fix": ...}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: String,
    fix: String,
}

impl ApiError {
    fn bad_request(error: impl Into<String>, fix: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            fix: fix.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, fix) = match e.kind() {
            ErrorKind::NotFound => (
                StatusCode::NOT_FOUND,
                "reload the session list; the session may have been deleted",
            ),
            ErrorKind::AmbiguousSession | ErrorKind::SessionBusy => (
                StatusCode::CONFLICT,
                "wait for the running task to end, or cancel it",
            ),
            ErrorKind::Config | ErrorKind::NotSupported => {
                (StatusCode::BAD_REQUEST, "check the request and the config")
            }
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "see the `stn ui` log for details",
            ),
        };
        ApiError {
            status,
            error: e.to_string(),
            fix: fix.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.error, "fix": self.fix}));
        (self.status, body).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Run blocking index and file reads off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> station_core::Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::from(Error::backend("ui", format!("a reader panicked: {e}"))))?
        .map_err(ApiError::from)
}

/// One line of the session list.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    /// Station's id.
    pub id: SessionId,
    /// The backend.
    pub backend: String,
    /// Title, when known.
    pub title: Option<String>,
    /// Workspace path.
    pub workspace: Option<PathBuf>,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last used.
    pub last_used_at: chrono::DateTime<chrono::Utc>,
    /// Tokens of all its tasks.
    pub usage_total: Usage,
    /// Cost of all its tasks in USD (where known).
    pub cost_total_usd: f64,
    /// `running` (a task started from this page runs) or `idle`.
    pub state: &'static str,
}

/// List filters: backend name, a part of the title (any case), state.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    backend: Option<String>,
    q: Option<String>,
    state: Option<String>,
}

/// The session list with filters applied, newest first, and the backends seen (for the filter).
pub fn sessions_page(
    index: &SessionIndex,
    running: &[SessionId],
    backend: Option<&str>,
    text: Option<&str>,
    state: Option<&str>,
) -> station_core::Result<Value> {
    // Most recently used first, as the index lists them.
    let sessions = index.list()?;
    let mut backends: Vec<&str> = sessions.iter().map(|s| s.backend.as_str()).collect();
    backends.sort_unstable();
    backends.dedup();
    let text = text.map(str::to_lowercase).filter(|t| !t.is_empty());
    let rows: Vec<SessionRow> = sessions
        .iter()
        .filter(|s| backend.is_none_or(|b| b.is_empty() || s.backend == b))
        .filter(|s| {
            text.as_ref().is_none_or(|t| {
                s.title
                    .as_deref()
                    .is_some_and(|title| title.to_lowercase().contains(t))
            })
        })
        .map(|s| row(s, running.contains(&s.id)))
        .filter(|r| state.is_none_or(|want| want.is_empty() || r.state == want))
        .collect();
    Ok(json!({"sessions": rows, "backends": backends}))
}

fn row(s: &Session, running: bool) -> SessionRow {
    SessionRow {
        id: s.id.clone(),
        backend: s.backend.clone(),
        title: s.title.clone(),
        workspace: s.workspace.clone(),
        created_at: s.created_at,
        last_used_at: s.last_used_at,
        usage_total: s.usage_total,
        cost_total_usd: s.cost_total_usd,
        state: if running { "running" } else { "idle" },
    }
}

pub(crate) async fn list_sessions(
    State(ui): State<Arc<Ui>>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let index = ui.index.clone();
    let running = ui.live.running();
    let page = blocking(move || {
        sessions_page(
            &index,
            &running,
            query.backend.as_deref(),
            query.q.as_deref(),
            query.state.as_deref(),
        )
    })
    .await?;
    Ok(Json(page))
}

pub(crate) async fn show_session(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let index = ui.index.clone();
    let (session, history, checkpoints) = blocking(move || {
        let session = index.resolve(&id)?;
        let history = TaskHistory::new(index.dir()).read(&session.id)?;
        let checkpoints: Vec<u32> = Checkpoints::new(index.dir())
            .list(&session.id)?
            .iter()
            .map(|c| c.task)
            .collect();
        Ok((session, history, checkpoints))
    })
    .await?;
    let running = ui.live.is_running(&session.id);
    Ok(Json(json!({
        "session": session,
        "state": if running { "running" } else { "idle" },
        "tasks": history.tasks,
        "checkpoints": checkpoints,
        "skipped_lines": history.skipped_lines,
        "truncated": history.truncated,
    })))
}

pub(crate) async fn task_patch(
    State(ui): State<Arc<Ui>>,
    Path((id, task)): Path<(String, u32)>,
) -> ApiResult<Json<Value>> {
    let index = ui.index.clone();
    let page = blocking(move || {
        let session = index.resolve(&id)?;
        let checkpoints = Checkpoints::new(index.dir());
        let mut patch = Vec::new();
        checkpoints.write_patch(&session.id, Some(task), &mut patch)?;
        let files = checkpoints.files_changed(&session.id, Some(task))?;
        Ok(json!({
            "session": session.id,
            "task": task,
            "files_changed": files,
            "patch": String::from_utf8_lossy(&patch),
        }))
    })
    .await?;
    Ok(Json(page))
}

/// A task to start from the page.
#[derive(Debug, Deserialize)]
pub(crate) struct StartTask {
    instruction: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

/// A new session and its first task.
#[derive(Debug, Deserialize)]
pub(crate) struct NewSession {
    workspace: PathBuf,
    instruction: String,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

fn checked_instruction(text: &str) -> ApiResult<()> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the instruction is empty",
            "write what the agent should do",
        ));
    }
    Ok(())
}

pub(crate) async fn start_task(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    Json(body): Json<StartTask>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    checked_instruction(&body.instruction)?;
    let index = ui.index.clone();
    let session = blocking(move || index.resolve(&id)).await?;
    if ui.live.is_running(&session.id) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            error: format!("a task already runs on session {}", session.id),
            fix: "wait for it to end, or cancel it".into(),
        });
    }
    let service = ui.services.service(&session.backend).await?;
    let task = Task {
        instruction: body.instruction,
        timeout_secs: body.timeout_secs,
        ..Task::default()
    };
    ui.start(&service, &session, task);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"session": session.id, "state": "running"})),
    ))
}

pub(crate) async fn new_session(
    State(ui): State<Arc<Ui>>,
    Json(body): Json<NewSession>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    checked_instruction(&body.instruction)?;
    if !body.workspace.is_absolute() || !body.workspace.is_dir() {
        return Err(ApiError::bad_request(
            format!(
                "workspace `{}` is not an existing directory given by its absolute path",
                body.workspace.display()
            ),
            "give the full path of a directory on this machine, e.g. /home/me/project",
        ));
    }
    let backend = body
        .backend
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| ui.services.default_backend());
    let service = ui.services.service(&backend).await?;
    let session = service
        .open(OpenSpec {
            workspace: Some(body.workspace),
            title: body.title.filter(|t| !t.trim().is_empty()),
            ..OpenSpec::default()
        })
        .await?;
    let task = Task::new(body.instruction);
    ui.start(&service, &session, task);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"session": session.id, "state": "running"})),
    ))
}

pub(crate) async fn cancel_task(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let index = ui.index.clone();
    let session = blocking(move || index.resolve(&id)).await?;
    if !ui.live.cancel(&session.id) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            error: format!(
                "no task started from this page runs on session {}",
                session.id
            ),
            fix: "a task run by another process (stn code) is cancelled where it runs (Ctrl-C)"
                .into(),
        });
    }
    Ok(Json(json!({"session": session.id, "cancelling": true})))
}

/// Where to rewind to (default: before the last task), and whether to overwrite later edits.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RewindRequest {
    #[serde(default)]
    to_task: Option<u32>,
    #[serde(default)]
    force: bool,
}

pub(crate) async fn rewind(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    Json(body): Json<RewindRequest>,
) -> ApiResult<Json<Value>> {
    let index = ui.index.clone();
    let session = blocking(move || index.resolve(&id)).await?;
    // The same checks as `stn session rewind`: the session is claimed like a task, and edits
    // made after the checkpoint are refused unless forced.
    let rewound =
        station_core::service::rewind(&ui.index, &session, body.to_task, body.force, ui.busy_wait)
            .await?;
    Ok(Json(serde_json::to_value(rewound).unwrap_or_default()))
}

/// The events of the newest task started here on a session: those so far, then live ones, and
/// the stream ends after the terminal event. A session with no such task gets one `idle` event.
pub(crate) async fn events(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let index = ui.index.clone();
    let session = blocking(move || index.resolve(&id)).await?;
    let subscription = ui.live.subscribe(&session.id);
    let stream = async_stream(subscription);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn sse_of(event: &station_core::Event) -> SseEvent {
    SseEvent::default()
        .event("task")
        .data(serde_json::to_string(event).unwrap_or_default())
}

fn async_stream(
    subscription: Option<crate::live::Subscription>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    use futures_util::StreamExt as _;
    let Some(sub) = subscription else {
        let idle = SseEvent::default().event("idle").data("{}");
        return futures_util::stream::iter(vec![Ok(idle)]).boxed();
    };
    let ended_before = sub.past.last().is_some_and(|e| e.kind.is_terminal());
    let past: Vec<Result<SseEvent, Infallible>> = sub.past.iter().map(|e| Ok(sse_of(e))).collect();
    let live = futures_util::stream::unfold(
        (sub.next.filter(|_| !ended_before), false),
        |(receiver, done)| async move {
            let mut receiver = receiver?;
            if done {
                return None;
            }
            match receiver.recv().await {
                Ok(event) => {
                    let terminal = event.kind.is_terminal();
                    Some((Ok(sse_of(&event)), (Some(receiver), terminal)))
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    let note = SseEvent::default()
                        .event("lagged")
                        .data(json!({"missed": missed}).to_string());
                    Some((Ok(note), (Some(receiver), false)))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            }
        },
    );
    futures_util::stream::iter(past).chain(live).boxed()
}
