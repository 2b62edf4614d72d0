//! The coding tools an orchestrating model (or an MCP client) calls: `coding_open`, `code`,
//! `coding_close`, `coding_commit`, `coding_push`, `coding_branch`. One implementation, bound to
//! the one station-level backend through a [`SessionService`]. Every result is JSON a model can
//! read; a failure is a result with `success: false`, an `error` and a `fix`, never a crash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use station_core::service::OpenSpec;
use station_core::{Error, Event, FileChange, RepoSpec, Session, SessionService, Task};

use crate::git::GitOps;
use crate::llm::ToolSpec;

/// Receives the live events of coding tasks while a tool runs.
pub type ProgressFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// The coding tools.
pub struct CodingTools {
    service: SessionService,
    git: Option<Arc<dyn GitOps>>,
    default_workspace: Option<PathBuf>,
    workspace_base: PathBuf,
    continue_session: Option<String>,
    opened: Mutex<Vec<Session>>,
    files_changed: Mutex<Vec<FileChange>>,
}

impl std::fmt::Debug for CodingTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodingTools")
            .field("backend", &self.service.backend().name())
            .field("default_workspace", &self.default_workspace)
            .field("continue_session", &self.continue_session)
            .finish()
    }
}

/// Names of the tools.
pub const TOOL_NAMES: [&str; 6] = [
    "coding_open",
    "code",
    "coding_close",
    "coding_commit",
    "coding_push",
    "coding_branch",
];

impl CodingTools {
    /// Tools bound to `service`; managed workspaces are created under `workspace_base`.
    pub fn new(service: SessionService, workspace_base: PathBuf) -> Self {
        CodingTools {
            service,
            git: None,
            default_workspace: None,
            workspace_base,
            continue_session: None,
            opened: Mutex::new(Vec::new()),
            files_changed: Mutex::new(Vec::new()),
        }
    }
    /// Git for `coding_commit`/`coding_push`/`coding_branch` and repository clones.
    pub fn with_git(mut self, git: Arc<dyn GitOps>) -> Self {
        self.git = Some(git);
        self
    }
    /// The workspace `coding_open` uses when the model names none (the agent's `coding.workspace_path`).
    pub fn with_default_workspace(mut self, dir: Option<PathBuf>) -> Self {
        self.default_workspace = dir;
        self
    }
    /// Make `coding_open` continue this session (`--coding-session`).
    pub fn with_continue_session(mut self, session: Option<String>) -> Self {
        self.continue_session = session;
        self
    }
    /// The service (backend + index).
    pub fn service(&self) -> &SessionService {
        &self.service
    }
    /// Sessions opened through these tools.
    pub fn opened_sessions(&self) -> Vec<Session> {
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Every file changed by `code` calls so far.
    pub fn files_changed(&self) -> Vec<FileChange> {
        self.files_changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The tools' JSON schemas.
    pub fn specs() -> Vec<ToolSpec> {
        let spec = |name: &str, description: &str, schema: Value| ToolSpec {
            name: name.into(),
            description: description.into(),
            schema,
        };
        vec![
            spec(
                "coding_open",
                "Open a coding session in a workspace directory or a fresh clone of a git repository, or continue an earlier session. Returns the session_id the other coding tools take.",
                json!({"type": "object", "properties": {
                    "workspace_path": {"type": "string", "description": "Directory to work in (created if missing). Omit to use the agent's default or a new managed directory."},
                    "repo_url": {"type": "string", "description": "HTTPS URL of a git repository to clone into the workspace. Never put credentials in it; they come from the station config."},
                    "branch": {"type": "string", "description": "Branch to check out after cloning."},
                    "title": {"type": "string", "description": "A title for a new session (default: the first instruction)."},
                    "session": {"type": "string", "description": "Continue an earlier session: its id or part of its title."}
                }}),
            ),
            spec(
                "code",
                "Hand a coding task to the coding agent in an open session and wait for it to finish. Returns the agent's summary, the files it changed, and errors.",
                json!({"type": "object", "required": ["session_id", "instruction"], "properties": {
                    "session_id": {"type": "string", "description": "From coding_open."},
                    "instruction": {"type": "string", "description": "What to do, in full sentences."},
                    "context": {"type": "string", "description": "Background the coding agent should know."},
                    "files": {"type": "array", "items": {"type": "string"}, "description": "Files to focus on."},
                    "timeout_secs": {"type": "integer", "minimum": 1, "description": "Deadline for this task (default: the configured one)."}
                }}),
            ),
            spec(
                "coding_close",
                "Close a coding session when the work is done. The session can still be continued later by id or title.",
                json!({"type": "object", "required": ["session_id"], "properties": {"session_id": {"type": "string"}}}),
            ),
            spec(
                "coding_commit",
                "Commit the changes in the session's git workspace. Returns the commit hash and stats.",
                json!({"type": "object", "required": ["session_id", "message"], "properties": {
                    "session_id": {"type": "string"},
                    "message": {"type": "string", "description": "Commit message."},
                    "add_all": {"type": "boolean", "description": "Stage all changes, including new files (default true)."}
                }}),
            ),
            spec(
                "coding_push",
                "Push the session's branch to its remote. Credentials come from the station config.",
                json!({"type": "object", "required": ["session_id"], "properties": {
                    "session_id": {"type": "string"},
                    "remote": {"type": "string", "description": "Remote name (default origin)."},
                    "branch": {"type": "string", "description": "Branch (default: the current one)."},
                    "set_upstream": {"type": "boolean", "description": "Set the upstream branch (default true)."}
                }}),
            ),
            spec(
                "coding_branch",
                "Create and/or switch to a git branch in the session's workspace. Returns the previous branch.",
                json!({"type": "object", "required": ["session_id", "branch"], "properties": {
                    "session_id": {"type": "string"},
                    "branch": {"type": "string"},
                    "create": {"type": "boolean", "description": "Create it if it does not exist (default true)."}
                }}),
            ),
        ]
    }

    /// Call a tool. Never fails: problems come back as `{"success": false, "error", "fix"}`.
    pub async fn call(&self, name: &str, args: &Value, progress: Option<ProgressFn>) -> Value {
        let result = match name {
            "coding_open" => self.open(args).await,
            "code" => self.code(args, progress).await,
            "coding_close" => self.close(args).await,
            "coding_commit" | "coding_push" | "coding_branch" => self.git_tool(name, args).await,
            other => Err(ToolError::new(
                format!("unknown tool `{other}`"),
                format!("use one of: {}", TOOL_NAMES.join(", ")),
            )),
        };
        match result {
            Ok(v) => v,
            Err(e) => {
                json!({"success": false, "error": station_core::redact::redact(&e.error), "fix": e.fix})
            }
        }
    }

    async fn open(&self, args: &Value) -> Result<Value, ToolError> {
        let session_query = self
            .continue_session
            .clone()
            .or_else(|| opt_str(args, "session"));
        let repo_url = opt_str(args, "repo_url");
        let workspace = opt_str(args, "workspace_path")
            .map(PathBuf::from)
            .or_else(|| self.default_workspace.clone());
        let continuing = session_query.is_some();
        let workspace = match (&workspace, &repo_url, continuing) {
            (Some(w), _, _) => Some(w.clone()),
            (None, _, true) => None,
            (None, _, false) => Some(self.managed_workspace(repo_url.as_deref())),
        };
        let repo = repo_url.map(|url| RepoSpec {
            url,
            branch: opt_str(args, "branch"),
        });
        // A backend with a remote workspace clones there itself (the repository travels with
        // the session); a local one gets a local clone before the coding agent starts.
        let remote = self.service.backend().capabilities().remote_workspace;
        if let (Some(repo), Some(ws), false, false) = (&repo, &workspace, continuing, remote) {
            self.clone_repo(repo, ws).await?;
        }
        let session = self
            .service
            .open(OpenSpec {
                workspace,
                repo,
                title: opt_str(args, "title"),
                session: session_query,
            })
            .await
            .map_err(ToolError::from_core)?;
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session.clone());
        Ok(json!({
            "success": true,
            "session_id": session.id,
            "workspace": session.workspace,
            "backend": session.backend,
            "title": session.title,
            "continued": continuing,
        }))
    }

    fn managed_workspace(&self, repo_url: Option<&str>) -> PathBuf {
        managed_workspace_dir(&self.workspace_base, repo_url)
    }

    async fn clone_repo(&self, repo: &RepoSpec, workspace: &Path) -> Result<(), ToolError> {
        let git = self.git.as_ref().ok_or_else(|| {
            ToolError::new(
                "git is not available in this build",
                "open a workspace_path instead of a repo_url",
            )
        })?;
        git.clone_repo(&repo.url, repo.branch.as_deref(), workspace)
            .await
            .map_err(ToolError::from_core)
    }

    /// The session a tool call names; without `session_id`, the one opened last in this run
    /// (models sometimes leave it out when there is only one).
    fn session(&self, args: &Value) -> Result<Session, ToolError> {
        match opt_str(args, "session_id") {
            Some(id) => self.service.get(&id).map_err(ToolError::from_core),
            None => {
                let last = self
                    .opened
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last()
                    .cloned();
                let last = last.ok_or_else(|| {
                    ToolError::new(
                        "`session_id` is required",
                        "call coding_open first and pass the session_id it returns",
                    )
                })?;
                self.service
                    .get(last.id.as_str())
                    .map_err(ToolError::from_core)
            }
        }
    }

    async fn code(&self, args: &Value, progress: Option<ProgressFn>) -> Result<Value, ToolError> {
        let session = self.session(args)?;
        let instruction = req_str(args, "instruction")?;
        let files = args
            .get("files")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let task = Task {
            instruction,
            context: opt_str(args, "context"),
            files,
            timeout_secs: args.get("timeout_secs").and_then(Value::as_u64),
        };
        let run = self.service.execute(&session, task);
        let outcome = run
            .follow(|event| {
                if let Some(p) = &progress {
                    p(event);
                }
            })
            .await
            .map_err(ToolError::from_core)?;
        self.files_changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(outcome.files_changed.iter().cloned());
        Ok(json!({
            "success": outcome.success,
            "session_id": session.id,
            "summary": outcome.summary,
            "stop_reason": outcome.stop_reason,
            "error": outcome.error,
            "files_changed": outcome.files_changed,
            "usage": outcome.usage,
            "cost_usd": outcome.cost_usd,
            "duration_ms": outcome.duration_ms,
        }))
    }

    async fn close(&self, args: &Value) -> Result<Value, ToolError> {
        let id = match opt_str(args, "session_id") {
            Some(id) => id,
            None => self.session(args)?.id.to_string(),
        };
        let session = match self.service.get(&id) {
            Ok(s) => s,
            // Closing something unknown is not worth failing an agent over.
            Err(Error::NotFound { .. }) => {
                return Ok(
                    json!({"success": true, "session_id": id, "note": "no such session; nothing to close"}),
                );
            }
            Err(e) => return Err(ToolError::from_core(e)),
        };
        self.service
            .close(&session.id)
            .await
            .map_err(ToolError::from_core)?;
        Ok(
            json!({"success": true, "session_id": session.id, "note": "closed; continue it later with its id or title"}),
        )
    }

    async fn git_tool(&self, name: &str, args: &Value) -> Result<Value, ToolError> {
        let session = self.session(args)?;

        let workspace = session.workspace.clone().ok_or_else(|| {
            ToolError::new(
                "the session has no workspace",
                "open the session with a workspace_path or repo_url",
            )
        })?;
        // A workspace on another machine (a NATS worker's host, a remote OpenCode server): the
        // backend runs the request where the workspace is.
        if self.service.backend().capabilities().remote_workspace && !workspace.is_dir() {
            let request = match name {
                "coding_commit" => serde_json::json!({
                    "op": "commit",
                    "message": req_str(args, "message")?,
                    "add_all": args.get("add_all").and_then(Value::as_bool).unwrap_or(true),
                }),
                "coding_push" => serde_json::json!({
                    "op": "push",
                    "remote": opt_str(args, "remote"),
                    "branch": opt_str(args, "branch"),
                    "set_upstream": args.get("set_upstream").and_then(Value::as_bool).unwrap_or(true),
                }),
                _ => serde_json::json!({
                    "op": "branch",
                    "branch": req_str(args, "branch")?,
                    "create": args.get("create").and_then(Value::as_bool).unwrap_or(true),
                }),
            };
            let result = self
                .service
                .backend()
                .git(&session, request)
                .await
                .map_err(ToolError::from_core)?;
            let mut out = json!({"success": true, "session_id": session.id});
            if let (Some(o), Some(r)) = (out.as_object_mut(), result.as_object()) {
                o.extend(r.clone());
            }
            return Ok(out);
        }
        let git = self.git.as_ref().ok_or_else(|| {
            ToolError::new(
                "git is not available in this build",
                "commit and push outside Station",
            )
        })?;
        let result = match name {
            "coding_commit" => {
                git.commit(
                    &workspace,
                    &req_str(args, "message")?,
                    args.get("add_all").and_then(Value::as_bool).unwrap_or(true),
                )
                .await
            }
            "coding_push" => {
                git.push(
                    &workspace,
                    opt_str(args, "remote").as_deref(),
                    opt_str(args, "branch").as_deref(),
                    args.get("set_upstream")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                )
                .await
            }
            _ => {
                git.branch(
                    &workspace,
                    &req_str(args, "branch")?,
                    args.get("create").and_then(Value::as_bool).unwrap_or(true),
                )
                .await
            }
        }
        .map_err(ToolError::from_core)?;
        let mut out = json!({"success": true, "session_id": session.id});
        if let (Some(o), Some(r)) = (out.as_object_mut(), result.as_object()) {
            o.extend(r.clone());
        }
        Ok(out)
    }
}

struct ToolError {
    error: String,
    fix: String,
}

impl ToolError {
    fn new(error: impl Into<String>, fix: impl Into<String>) -> Self {
        ToolError {
            error: error.into(),
            fix: fix.into(),
        }
    }
    fn from_core(e: Error) -> Self {
        let fix = match &e {
            Error::NotFound { .. } => "call coding_open first and use the session_id it returns",
            Error::AmbiguousSession { .. } => "use the session id, or a longer part of the title",
            Error::Unavailable { .. } => {
                "the coding backend is down or not installed; tell the user to run `stn doctor`"
            }
            Error::Auth { .. } => {
                "credentials are missing or wrong; tell the user to check the station config (coding.git.token_env)"
            }
            Error::Timeout { .. } => "split the task into smaller steps or raise the timeout",
            Error::Config(_) => "fix the arguments as the error says",
            _ => "report the error to the user",
        };
        ToolError::new(e.to_string(), fix)
    }
}

/// A new workspace directory under `base`, named after the repository when there is one
/// (`<repo>-<8 hex>`, else `ws-<8 hex>`).
pub fn managed_workspace_dir(base: &Path, repo_url: Option<&str>) -> PathBuf {
    let stem = repo_url
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .map(|s| s.trim_end_matches(".git").to_string())
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .unwrap_or_else(|| "ws".into());
    let id = station_core::SessionId::generate();
    base.join(format!("{stem}-{}", &id.as_str()[id.as_str().len() - 8..]))
}

fn opt_str(args: &Value, key: &str) -> Option<String> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn req_str(args: &Value, key: &str) -> Result<String, ToolError> {
    opt_str(args, key).ok_or_else(|| {
        ToolError::new(
            format!("`{key}` is required"),
            format!("call the tool again with a `{key}` argument"),
        )
    })
}
