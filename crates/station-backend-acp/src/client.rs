//! The client side of ACP: the requests an agent sends us (`fs/*`, `terminal/*`,
//! `session/request_permission`). Files are served inside the session's workspace only.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use station_core::process::{ChildProcess, CommandSpec};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use station_core::policy::Policy;

use crate::permission::{self, TurnJudge};
use crate::rpc::{Connection, Incoming};

/// JSON-RPC "invalid params": the request names something we refuse.
const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i64 = -32601;
/// Largest file `fs/read_text_file` serves.
const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;
/// Output a terminal keeps when the agent sets no limit.
const DEFAULT_TERMINAL_OUTPUT: usize = 1024 * 1024;

/// What the client knows about one live session.
#[derive(Debug, Clone)]
pub(crate) struct SessionState {
    /// Its workspace (canonical).
    pub(crate) workspace: PathBuf,
    /// A cancel is under way: permission requests are answered `cancelled`.
    pub(crate) cancelling: bool,
    /// The turn was cancelled and the agent kept running; the next prompt may be answered out
    /// of step (claude-agent-acp), so the agent is restarted first when it is idle.
    pub(crate) stale_after_cancel: bool,
    /// Cumulative cost the agent last reported for the session.
    pub(crate) last_cost: Option<f64>,
    /// Decides requests while a turn runs (the task's policy, ask handler and events).
    pub(crate) judge: Option<Arc<TurnJudge>>,
    /// Decides requests outside a turn: the configured policy, `ask` denied.
    pub(crate) idle_policy: Arc<Policy>,
}

/// Sessions of one agent process, shared with the request handler.
pub(crate) type Sessions = Arc<Mutex<HashMap<String, SessionState>>>;

/// Whether `path` (absolute, or relative to `workspace`) is inside `workspace`, after `..`
/// and symlinks of its existing part are resolved.
pub fn inside_workspace(workspace: &Path, path: &Path) -> bool {
    let root = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    let mut normal = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    // Resolve symlinks in the part that exists, then re-append the rest.
    let mut existing = normal.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => {
                rest.push(name.to_os_string());
                existing.pop();
            }
            None => break,
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved.starts_with(&root)
}

/// A command the agent runs through `terminal/*`.
#[derive(Debug)]
struct Terminal {
    pid: u32,
    child: tokio::sync::Mutex<ChildProcess>,
    output: Arc<Mutex<(Vec<u8>, bool)>>,
    collector: Mutex<Option<tokio::task::JoinHandle<()>>>,
    exit: Mutex<Option<Value>>,
}

impl Terminal {
    fn kill(&self) {
        if let Ok(pgid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

type Terminals = tokio::sync::Mutex<HashMap<String, Arc<Terminal>>>;

/// Serves one agent's requests until its connection ends.
pub(crate) async fn serve(
    conn: std::sync::Weak<Connection>,
    sessions: Sessions,
    mut incoming: mpsc::UnboundedReceiver<Incoming>,
) {
    let terminals: Arc<Terminals> = Arc::default();
    let mut next_terminal = 0u64;
    while let Some(req) = incoming.recv().await {
        let Some(conn) = conn.upgrade() else { break };
        let sessions = sessions.clone();
        let terminals = terminals.clone();
        next_terminal += 1;
        let terminal_id = format!("term-{next_terminal}");
        tokio::spawn(async move {
            let answer = handle(&req, &sessions, &terminals, terminal_id).await;
            conn.respond(req.id, answer);
        });
    }
    // The agent is gone: its terminals go with it.
    for (_, term) in terminals.lock().await.drain() {
        term.kill();
    }
}

fn session_of(sessions: &Sessions, params: &Value) -> Result<SessionState, (i64, String)> {
    let id = params["sessionId"].as_str().unwrap_or_default();
    sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| (INVALID_PARAMS, format!("unknown session `{id}`")))
}

fn checked_path(
    state: &SessionState,
    params: &Value,
    what: &str,
) -> Result<PathBuf, (i64, String)> {
    let path = params["path"].as_str().unwrap_or_default();
    if !Path::new(path).is_absolute() {
        return Err((
            INVALID_PARAMS,
            format!("{what}: path `{path}` must be absolute"),
        ));
    }
    if !inside_workspace(&state.workspace, Path::new(path)) {
        return Err((
            INVALID_PARAMS,
            format!(
                "{what} refused: {path} is outside the session's workspace {}",
                state.workspace.display()
            ),
        ));
    }
    Ok(PathBuf::from(path))
}

async fn handle(
    req: &Incoming,
    sessions: &Sessions,
    terminals: &Terminals,
    terminal_id: String,
) -> Result<Value, (i64, String)> {
    let p = &req.params;
    match req.method.as_str() {
        "session/request_permission" => {
            let state = session_of(sessions, p)?;
            Ok(json!({"outcome": permission_outcome(&state, p).await}))
        }
        "fs/read_text_file" => {
            let state = session_of(sessions, p)?;
            let path = checked_path(&state, p, "reading a file")?;
            let text = match tokio::fs::metadata(&path).await {
                Ok(meta) if meta.len() > MAX_READ_BYTES => {
                    return Err((
                        INVALID_PARAMS,
                        format!("{} is larger than 16 MiB", path.display()),
                    ));
                }
                // A missing file reads as empty: Gemini checks a file before creating it and
                // fails on a not-found error.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                _ => tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| (INVALID_PARAMS, format!("reading {}: {e}", path.display())))?,
            };
            Ok(json!({"content": slice_lines(&text, p["line"].as_u64(), p["limit"].as_u64())}))
        }
        "fs/write_text_file" => {
            let state = session_of(sessions, p)?;
            let path = checked_path(&state, p, "writing a file")?;
            permission::allow_write(state.judge.as_deref(), &state.idle_policy, &path)
                .await
                .map_err(|refused| (INVALID_PARAMS, refused))?;
            let content = p["content"].as_str().unwrap_or_default();
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| {
                    (
                        INVALID_PARAMS,
                        format!("creating {}: {e}", parent.display()),
                    )
                })?;
            }
            tokio::fs::write(&path, content)
                .await
                .map_err(|e| (INVALID_PARAMS, format!("writing {}: {e}", path.display())))?;
            Ok(Value::Null)
        }
        "terminal/create" => {
            let state = session_of(sessions, p)?;
            let cwd = match p["cwd"].as_str() {
                Some(cwd) if !inside_workspace(&state.workspace, Path::new(cwd)) => {
                    return Err((
                        INVALID_PARAMS,
                        format!("terminal cwd {cwd} is outside the workspace"),
                    ));
                }
                Some(cwd) => PathBuf::from(cwd),
                None => state.workspace.clone(),
            };
            let limit = p["outputByteLimit"]
                .as_u64()
                .map_or(DEFAULT_TERMINAL_OUTPUT, |l| {
                    (l as usize).min(DEFAULT_TERMINAL_OUTPUT)
                });
            let mut spec = CommandSpec::new(p["command"].as_str().unwrap_or_default(), cwd);
            for arg in p["args"].as_array().into_iter().flatten() {
                spec = spec.arg(arg.as_str().unwrap_or_default());
            }
            for var in p["env"].as_array().into_iter().flatten() {
                if let (Some(k), Some(v)) = (var["name"].as_str(), var["value"].as_str()) {
                    spec = spec.env(k, v);
                }
            }
            let mut child = spec
                .spawn()
                .map_err(|e| (INVALID_PARAMS, format!("starting the command: {e}")))?;
            let output = Arc::new(Mutex::new((Vec::new(), false)));
            let collector = child
                .take_stdout()
                .map(|stdout| tokio::spawn(collect_output(stdout, output.clone(), limit)));
            let term = Terminal {
                pid: child.pid(),
                child: tokio::sync::Mutex::new(child),
                output,
                collector: Mutex::new(collector),
                exit: Mutex::new(None),
            };
            terminals
                .lock()
                .await
                .insert(terminal_id.clone(), Arc::new(term));
            Ok(json!({"terminalId": terminal_id}))
        }
        "terminal/output" | "terminal/wait_for_exit" | "terminal/kill" | "terminal/release" => {
            let id = p["terminalId"].as_str().unwrap_or_default().to_string();
            let term = match req.method.as_str() {
                "terminal/release" => terminals.lock().await.remove(&id),
                _ => terminals.lock().await.get(&id).cloned(),
            };
            let Some(term) = term else {
                return Err((INVALID_PARAMS, format!("unknown terminal `{id}`")));
            };
            match req.method.as_str() {
                "terminal/output" => {
                    let (bytes, truncated) = term
                        .output
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    let mut out =
                        json!({"output": String::from_utf8_lossy(&bytes), "truncated": truncated});
                    if let Some(exit) = term.exit.lock().unwrap_or_else(|e| e.into_inner()).clone()
                    {
                        out["exitStatus"] = exit;
                    }
                    Ok(out)
                }
                "terminal/wait_for_exit" => {
                    let status = term
                        .child
                        .lock()
                        .await
                        .wait()
                        .await
                        .map_err(|e| (INVALID_PARAMS, e.to_string()))?;
                    // All output is in once the command has exited and its pipe is drained.
                    let collector = term
                        .collector
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                    if let Some(collector) = collector {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), collector)
                            .await;
                    }
                    let exit = exit_json(status);
                    *term.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(exit.clone());
                    Ok(exit)
                }
                _ => {
                    // kill, or release (which also kills a command still running).
                    term.kill();
                    Ok(Value::Null)
                }
            }
        }
        other => Err((
            METHOD_NOT_FOUND,
            format!("Station does not serve `{other}`"),
        )),
    }
}

fn exit_json(status: std::process::ExitStatus) -> Value {
    use std::os::unix::process::ExitStatusExt;
    json!({"exitCode": status.code(), "signal": status.signal().map(|s| s.to_string())})
}

async fn collect_output(
    mut out: impl tokio::io::AsyncRead + Unpin,
    buf: Arc<Mutex<(Vec<u8>, bool)>>,
    limit: usize,
) {
    let mut chunk = [0u8; 8192];
    while let Ok(n) = out.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
        b.0.extend_from_slice(&chunk[..n]);
        if b.0.len() > limit {
            // Keep the end; cut at a UTF-8 character boundary.
            let mut cut = b.0.len() - limit;
            while cut < b.0.len() && (b.0[cut] & 0xC0) == 0x80 {
                cut += 1;
            }
            b.0.drain(..cut);
            b.1 = true;
        }
    }
}

fn slice_lines(text: &str, line: Option<u64>, limit: Option<u64>) -> String {
    if line.is_none() && limit.is_none() {
        return text.to_string();
    }
    let start = line.unwrap_or(1).saturating_sub(1) as usize;
    let take = limit.map_or(usize::MAX, |l| l as usize);
    text.split_inclusive('\n').skip(start).take(take).collect()
}

/// The `outcome` of a permission request: cancelled during a cancel, else the option that
/// carries the policy's decision.
async fn permission_outcome(state: &SessionState, params: &Value) -> Value {
    if state.cancelling {
        return json!({"outcome": "cancelled"});
    }
    let allowed = permission::allow_tool_call(
        state.judge.as_deref(),
        &state.idle_policy,
        &params["toolCall"],
    )
    .await;
    let options = params["options"].as_array().cloned().unwrap_or_default();
    match permission::option_for(&options, allowed) {
        Some(id) => json!({"outcome": "selected", "optionId": id}),
        None => json!({"outcome": "cancelled"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permission_is_allowed_inside_and_denied_outside_the_workspace_by_default() {
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path().canonicalize().unwrap();
        let inside = json!({"kind": "edit", "locations": [{"path": root.join("a.py")}], "rawInput": {"filePath": "b/c.py"}});
        let escape = root.join("../outside.py");
        let outside =
            json!({"kind": "edit", "content": [{"type": "diff", "path": escape, "newText": "x"}]});
        let state = SessionState {
            workspace: root.clone(),
            cancelling: false,
            stale_after_cancel: false,
            last_cost: None,
            judge: None,
            idle_policy: Arc::new(Policy::new(Default::default(), &root)),
        };
        let options = json!([{"optionId": "ok", "kind": "allow_once"}, {"optionId": "no", "kind": "reject_once"}]);
        let params = json!({"toolCall": outside, "options": options});
        assert_eq!(permission_outcome(&state, &params).await["optionId"], "no");
        let params = json!({"toolCall": inside, "options": options});
        assert_eq!(permission_outcome(&state, &params).await["optionId"], "ok");
        let cancelling = SessionState {
            cancelling: true,
            ..state
        };
        assert_eq!(
            permission_outcome(&cancelling, &params).await["outcome"],
            "cancelled"
        );
    }

    #[test]
    fn symlinks_out_of_the_workspace_are_outside() {
        let ws = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), ws.path().join("link")).unwrap();
        assert!(!inside_workspace(
            ws.path(),
            &ws.path().join("link/new.txt")
        ));
        assert!(inside_workspace(ws.path(), &ws.path().join("sub/new.txt")));
        assert!(!inside_workspace(ws.path(), Path::new("/etc/passwd")));
    }
}
