//! A scripted OpenCode server (axum) for what wiremock cannot do: event streams that stay open,
//! frames pushed while a task runs, and a server that stops.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

/// One request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) directory: Option<String>,
}

pub(crate) struct FakeState {
    session_id: String,
    requests: Mutex<Vec<Recorded>>,
    events: broadcast::Sender<String>,
    busy: AtomicBool,
    messages: Mutex<Value>,
    gone: watch::Sender<bool>,
}

pub(crate) struct FakeOpencode {
    pub(crate) url: String,
    state: Arc<FakeState>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl FakeOpencode {
    /// A fake serving one session.
    pub(crate) async fn start(session_id: &str) -> FakeOpencode {
        let (events, _) = broadcast::channel(1024);
        let (gone, _) = watch::channel(false);
        let state = Arc::new(FakeState {
            session_id: session_id.to_string(),
            requests: Mutex::new(Vec::new()),
            events,
            busy: AtomicBool::new(false),
            messages: Mutex::new(json!([])),
            gone,
        });
        let app = Router::new()
            .route("/event", get(events_handler))
            .route("/session/status", get(status_handler))
            .route("/session/{id}/message", get(messages_handler))
            .route("/session/{id}/prompt_async", post(prompt_handler))
            .route("/session/{id}/abort", post(abort_handler))
            .route(
                "/session/{id}/diff",
                get(|| async { axum::Json(json!([])) }),
            )
            .layer(middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        FakeOpencode {
            url,
            state,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Send a frame to every open event stream.
    pub(crate) fn push(&self, frame: Value) {
        let _ = self.state.events.send(frame.to_string());
    }

    pub(crate) fn set_busy(&self, busy: bool) {
        self.state.busy.store(busy, Ordering::SeqCst);
    }

    pub(crate) fn set_messages(&self, messages: Value) {
        *self.state.messages.lock().unwrap() = messages;
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests whose method is `method` and whose path ends with `suffix`.
    pub(crate) fn count(&self, method: &str, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    }

    /// Stop: end every event stream and stop listening.
    pub(crate) async fn stop(&mut self) {
        let _ = self.state.gone.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
        }
    }
}

impl Drop for FakeOpencode {
    fn drop(&mut self) {
        let _ = self.state.gone.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn record(State(st): State<Arc<FakeState>>, req: Request, next: Next) -> Response {
    let url = reqwest::Url::parse(&format!("http://fake{}", req.uri())).unwrap();
    let directory = url
        .query_pairs()
        .find(|(k, _)| k == "directory")
        .map(|(_, v)| v.into_owned());
    st.requests.lock().unwrap().push(Recorded {
        method: req.method().to_string(),
        path: url.path().to_string(),
        directory,
    });
    next.run(req).await
}

async fn events_handler(
    State(st): State<Arc<FakeState>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = st.events.subscribe();
    let gone = st.gone.subscribe();
    let first = futures_util::stream::once(async {
        Ok(SseEvent::default().data(r#"{"id":"evt_0","type":"server.connected","properties":{}}"#))
    });
    let rest = futures_util::stream::unfold((rx, gone), |(mut rx, mut gone)| async move {
        loop {
            if *gone.borrow() {
                return None;
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(frame) => return Some((Ok(SseEvent::default().data(frame)), (rx, gone))),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = gone.changed() => continue,
            }
        }
    });
    Sse::new(first.chain(rest))
}

async fn status_handler(State(st): State<Arc<FakeState>>) -> impl IntoResponse {
    if st.busy.load(Ordering::SeqCst) {
        axum::Json(json!({ st.session_id.clone(): {"type": "busy"} }))
    } else {
        axum::Json(json!({}))
    }
}

async fn messages_handler(State(st): State<Arc<FakeState>>) -> impl IntoResponse {
    axum::Json(st.messages.lock().unwrap().clone())
}

async fn prompt_handler(State(st): State<Arc<FakeState>>) -> impl IntoResponse {
    st.busy.store(true, Ordering::SeqCst);
    axum::http::StatusCode::NO_CONTENT
}

async fn abort_handler(State(st): State<Arc<FakeState>>) -> impl IntoResponse {
    let was_busy = st.busy.swap(false, Ordering::SeqCst);
    if was_busy {
        let sid = st.session_id.clone();
        let error = json!({"name": "MessageAbortedError", "data": {"message": "Aborted"}});
        let _ = st.events.send(
            json!({"type": "session.error", "properties": {"sessionID": sid, "error": error}})
                .to_string(),
        );
        let _ = st.events.send(json!({"type": "session.status", "properties": {"sessionID": sid, "status": {"type": "idle"}}}).to_string());
        let _ = st
            .events
            .send(json!({"type": "session.idle", "properties": {"sessionID": sid}}).to_string());
    }
    axum::Json(json!(true))
}

/// Frames and transcript pieces for one scripted task.
pub(crate) fn busy(sid: &str) -> Value {
    json!({"type": "session.status", "properties": {"sessionID": sid, "status": {"type": "busy"}}})
}

pub(crate) fn idle(sid: &str) -> Vec<Value> {
    vec![
        json!({"type": "session.status", "properties": {"sessionID": sid, "status": {"type": "idle"}}}),
        json!({"type": "session.idle", "properties": {"sessionID": sid}}),
    ]
}

pub(crate) fn delta(sid: &str, text: &str) -> Value {
    json!({"type": "message.part.delta", "properties": {"sessionID": sid, "messageID": "msg_a", "partID": "prt_t", "field": "text", "delta": text}})
}

/// A transcript: the user prompt and one assistant answer (with `error` when aborted).
pub(crate) fn transcript(text: &str, error: Option<Value>) -> Value {
    let mut assistant = json!({
        "id": "msg_a", "role": "assistant", "parentID": "msg_u", "providerID": "fake", "modelID": "fake-model", "cost": 0.01,
        "tokens": {"input": 10, "output": 5, "reasoning": 0, "cache": {"read": 2, "write": 1}}
    });
    match error {
        Some(e) => assistant["error"] = e,
        None => assistant["finish"] = json!("stop"),
    }
    json!([
        {"info": {"id": "msg_u", "role": "user"}, "parts": [{"id": "prt_u", "type": "text", "text": "prompt"}]},
        {"info": assistant, "parts": [{"id": "prt_t", "messageID": "msg_a", "type": "text", "text": text, "time": {"start": 1, "end": 2}}]}
    ])
}
