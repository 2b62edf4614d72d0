//! JSON-RPC 2.0 over the agent's stdio, one JSON message per line.
//!
//! Why not the SDK's connection builder: Station must cap the size of each line before parsing
//! (a 10 MB update must not be buffered without limit), skip lines that are not JSON without
//! dropping the connection, and own the child (its process group is killed on cancel, drop and
//! timeout through `station_core::process`). So this module owns the transport and the
//! request/response correlation; the messages themselves are the SDK's schema types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use station_core::process::{ChildProcess, describe_status};
use station_core::redact;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

/// An error the agent answered, or why no answer can come.
#[derive(Debug, Clone)]
pub(crate) enum RpcError {
    /// The agent answered with a JSON-RPC error.
    Remote {
        code: i64,
        message: String,
        data: Option<Value>,
    },
    /// The connection is gone (the agent exited, or sent something we refuse).
    Closed(String),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Remote {
                code,
                message,
                data,
            } => {
                write!(f, "{message} (code {code})")?;
                if let Some(d) = data.as_ref().filter(|d| !d.is_null()) {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            RpcError::Closed(reason) => f.write_str(reason),
        }
    }
}

/// A request the agent sent us, to be answered with [`Connection::respond`].
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) id: Value,
    pub(crate) method: String,
    pub(crate) params: Value,
}

type Pending = HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>;

/// One running agent process and the JSON-RPC connection to it.
#[derive(Debug)]
pub(crate) struct Connection {
    label: String,
    /// Lines to the agent's stdin; `None` once the input is closed (shutdown).
    out: Mutex<Option<mpsc::UnboundedSender<String>>>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    sessions: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>,
    closed: watch::Receiver<Option<String>>,
    pid: u32,
    child: Arc<tokio::sync::Mutex<Option<ChildProcess>>>,
    garbage: Arc<Mutex<Option<String>>>,
}

impl Connection {
    /// Take over `child`'s stdio. Requests the agent sends go to `incoming`.
    pub(crate) fn start(
        label: String,
        mut child: ChildProcess,
        max_message_bytes: usize,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> Arc<Connection> {
        let stdin = child.take_stdin().expect("the agent's stdin is piped");
        let stdout = child.take_stdout().expect("the agent's stdout is piped");
        let pid = child.pid();
        let (out, out_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(None);
        let conn = Arc::new(Connection {
            label,
            out: Mutex::new(Some(out)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            closed,
            pid,
            child: Arc::new(tokio::sync::Mutex::new(Some(child))),
            garbage: Arc::default(),
        });
        tokio::spawn(write_lines(stdin, out_rx));
        let reader = Reader {
            label: conn.label.clone(),
            pending: conn.pending.clone(),
            sessions: conn.sessions.clone(),
            child: conn.child.clone(),
            incoming,
            closed: closed_tx,
            max_message_bytes,
            garbage: conn.garbage.clone(),
        };
        tokio::spawn(reader.run(stdout));
        conn
    }

    /// The agent's pid (also its process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The first line the agent printed that was not JSON-RPC, if any.
    pub(crate) fn garbage(&self) -> Option<String> {
        self.garbage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the connection is closed, if it is.
    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }

    /// Resolves when the connection closes, with the reason.
    pub(crate) async fn wait_closed(&self) -> String {
        let mut rx = self.closed.clone();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return format!("the connection to {} ended", self.label);
            }
        }
    }

    /// Send a request and wait for its answer (or for the connection to close).
    pub(crate) async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        if let Some(reason) = self.closed_reason() {
            self.forget(id);
            return Err(RpcError::Closed(reason));
        }
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(line);
        let answer = tokio::select! {
            answer = rx => answer.unwrap_or_else(|_| Err(RpcError::Closed(format!("{} closed the connection", self.label)))),
            reason = self.wait_closed() => Err(RpcError::Closed(reason)),
        };
        self.forget(id);
        answer
    }

    /// Send a notification.
    pub(crate) fn notify(&self, method: &str, params: Value) {
        self.send_line(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Answer a request the agent sent.
    pub(crate) fn respond(&self, id: Value, result: Result<Value, (i64, String)>) {
        let line = match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        };
        self.send_line(line);
    }

    /// Receive the `session/update`s of `session_id` (replacing an earlier subscriber).
    pub(crate) fn subscribe(&self, session_id: &str) -> mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session_id.to_string(), tx);
        rx
    }

    /// Stop receiving a session's updates.
    pub(crate) fn unsubscribe(&self, session_id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
    }

    /// Kill the agent's whole process group now (SIGTERM, then SIGKILL after `grace`).
    pub(crate) async fn kill(&self, grace: Duration) {
        let child = self.child.lock().await.take();
        if let Some(mut child) = child {
            child.terminate(grace).await;
        }
    }

    /// Stop the agent gracefully: close its stdin (end of input lets it save its sessions and
    /// exit), wait up to `wait`, then SIGTERM the group and SIGKILL it after `grace`.
    pub(crate) async fn shutdown(&self, wait: Duration, grace: Duration) {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).take();
        let child = self.child.lock().await.take();
        if let Some(mut child) = child
            && tokio::time::timeout(wait, child.wait()).await.is_err()
        {
            child.terminate(grace).await;
        }
    }

    /// Kill the group without waiting (for `Drop`).
    pub(crate) fn kill_now(&self) {
        if let Ok(pgid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn send_line(&self, value: Value) {
        if let Some(out) = self.out.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = out.send(value.to_string());
        }
    }

    fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.kill_now();
    }
}

async fn write_lines(
    mut stdin: impl tokio::io::AsyncWrite + Unpin,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

struct Reader {
    label: String,
    pending: Arc<Mutex<Pending>>,
    sessions: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>,
    child: Arc<tokio::sync::Mutex<Option<ChildProcess>>>,
    incoming: mpsc::UnboundedSender<Incoming>,
    closed: watch::Sender<Option<String>>,
    max_message_bytes: usize,
    /// The first line that was not JSON-RPC, for error messages.
    garbage: Arc<Mutex<Option<String>>>,
}

/// A line, or how it went wrong.
enum Line {
    Text(String),
    TooLong,
    End,
}

impl Reader {
    async fn run(mut self, stdout: impl AsyncRead + Unpin) {
        let mut reader = BufReader::with_capacity(64 * 1024, stdout);
        let reason = loop {
            match read_capped_line(&mut reader, self.max_message_bytes).await {
                Line::Text(line) => self.dispatch(&line),
                Line::TooLong => {
                    break format!(
                        "{} sent a message larger than {} MiB; the connection was closed (raise coding.acp.max_message_mb if the agent needs more)",
                        self.label,
                        self.max_message_bytes / (1024 * 1024)
                    );
                }
                Line::End => break self.exit_reason().await,
            }
        };
        // A refused connection must not keep the agent running.
        if let Some(mut child) = self.child.lock().await.take() {
            child.terminate(Duration::from_secs(2)).await;
        }
        self.close(reason);
    }

    async fn exit_reason(&mut self) -> String {
        let mut guard = self.child.lock().await;
        let mut reason = match guard.as_mut() {
            Some(child) => match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(Ok(status)) => {
                    let tail = child.final_stderr_tail().await;
                    let mut r = format!("{} exited ({})", self.label, describe_status(status));
                    if !tail.is_empty() {
                        r.push_str(&format!("; its last stderr: {tail}"));
                    }
                    r
                }
                _ => format!("{} closed its stdout", self.label),
            },
            None => format!("{} was stopped", self.label),
        };
        if let Some(garbage) = self
            .garbage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            reason.push_str(&format!(
                "; it also printed output that is not ACP JSON-RPC: {garbage:?}"
            ));
        }
        reason
    }

    fn close(&self, reason: String) {
        let reason = redact::redact(&reason);
        let _ = self.closed.send(Some(reason.clone()));
        let pending: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(RpcError::Closed(reason.clone())));
        }
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn dispatch(&mut self, line: &str) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(trimmed) else {
            self.note_garbage(trimmed);
            return;
        };
        let method = msg.get("method").and_then(Value::as_str);
        match (method, msg.get("id")) {
            (Some(method), Some(id)) => {
                let _ = self.incoming.send(Incoming {
                    id: id.clone(),
                    method: method.to_string(),
                    params: msg.get("params").cloned().unwrap_or(Value::Null),
                });
            }
            (Some("session/update"), None) => {
                let params = msg.get("params").cloned().unwrap_or(Value::Null);
                let Some(session) = params.get("sessionId").and_then(Value::as_str) else {
                    self.note_garbage(trimmed);
                    return;
                };
                let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(tx) = sessions.get(session) {
                    let _ = tx.send(params.get("update").cloned().unwrap_or(Value::Null));
                }
            }
            (Some(other), None) => tracing::debug!(method = other, "ignoring an ACP notification"),
            (None, Some(id)) => {
                let Some(id) = id.as_u64() else {
                    self.note_garbage(trimmed);
                    return;
                };
                let answer = match (msg.get("result"), msg.get("error")) {
                    (_, Some(err)) => Err(RpcError::Remote {
                        code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                        message: err
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("error without a message")
                            .to_string(),
                        data: err.get("data").cloned(),
                    }),
                    (Some(result), None) => Ok(result.clone()),
                    (None, None) => Ok(Value::Null),
                };
                let tx = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(answer);
                }
            }
            (None, None) => self.note_garbage(trimmed),
        }
    }

    fn note_garbage(&mut self, line: &str) {
        let excerpt: String = line.chars().take(120).collect();
        tracing::warn!(agent = %self.label, "skipping a line that is not ACP JSON-RPC: {}", redact::redact(&excerpt));
        let mut first = self.garbage.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(redact::redact(&excerpt));
        }
    }
}

/// Read one line of at most `max` bytes (the newline excluded).
async fn read_capped_line(reader: &mut (impl AsyncBufReadExt + Unpin), max: usize) -> Line {
    let mut buf = Vec::new();
    loop {
        let available = match reader.fill_buf().await {
            Ok(b) => b,
            Err(_) => return Line::End,
        };
        if available.is_empty() {
            return if buf.is_empty() {
                Line::End
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            };
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > max {
            return Line::TooLong;
        }
        buf.extend_from_slice(chunk);
        let consumed = done.unwrap_or(chunk.len());
        reader.consume(consumed);
        if done.is_some() {
            return Line::Text(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_over_the_cap_are_refused_and_others_read() {
        let data = format!("short\n{}\n", "x".repeat(100));
        let mut reader = BufReader::with_capacity(16, data.as_bytes());
        assert!(matches!(read_capped_line(&mut reader, 50).await, Line::Text(t) if t == "short"));
        assert!(matches!(
            read_capped_line(&mut reader, 50).await,
            Line::TooLong
        ));
        let mut reader = BufReader::new("last".as_bytes());
        assert!(matches!(read_capped_line(&mut reader, 50).await, Line::Text(t) if t == "last"));
        assert!(matches!(read_capped_line(&mut reader, 50).await, Line::End));
    }
}
