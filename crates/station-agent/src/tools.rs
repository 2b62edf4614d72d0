//! The coding tools an orchestrating model (or an MCP client) calls: `coding_open`, `code`,
//! `coding_close`, `coding_commit`, `coding_push`, `coding_branch`, `coding_rewind`. One implementation, bound to
//! the one station-level backend through a [`SessionService`]. Every result is JSON a model can
//! read; a failure is a result with `success: false`, an `error` and a `fix`, never a crash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use station_core::config::{Isolation, WorktreeOnClose};
use station_core::git::GitRequest;
use station_core::service::OpenSpec;
use station_core::{Error, Event, FileChange, RepoSpec, Session, SessionService, Task};

use crate::args::{ArgError, advertise_required, parse_args, schema_for};
use crate::git::GitOps;
use crate::llm::ToolSpec;
use crate::tool_args::{
    BranchArgs, CloseArgs, CodeArgs, CommitArgs, OpenArgs, PushArgs, RewindArgs,
};

/// Receives the live events of coding tasks while a tool runs.
pub type ProgressFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// The coding tools.
pub struct CodingTools {
    service: SessionService,
    git: Option<Arc<dyn GitOps>>,
    default_workspace: Option<PathBuf>,
    workspace_base: PathBuf,
    continue_session: Option<String>,
    max_instruction_bytes: u64,
    opened: Mutex<Vec<Session>>,
    files_changed: Mutex<Vec<FileChange>>,
    isolation: Isolation,
    worktree_on_close: WorktreeOnClose,
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

/// A tool's spec, its schema generated from `T`. Every tool but `coding_open` advertises
/// `session_id` as required (the runtime falls back to the session opened last).
fn spec<T: schemars::JsonSchema>(name: &str, description: &str) -> ToolSpec {
    let mut schema = schema_for::<T>();
    if name != "coding_open" {
        advertise_required(&mut schema, "session_id");
    }
    ToolSpec {
        name: name.into(),
        description: description.into(),
        schema,
    }
}

/// Names of the tools.
pub const TOOL_NAMES: [&str; 7] = [
    "coding_open",
    "code",
    "coding_close",
    "coding_commit",
    "coding_push",
    "coding_branch",
    "coding_rewind",
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
            max_instruction_bytes: station_core::config::DEFAULT_MAX_INSTRUCTION_BYTES,
            opened: Mutex::new(Vec::new()),
            files_changed: Mutex::new(Vec::new()),
            isolation: Isolation::None,
            worktree_on_close: WorktreeOnClose::Keep,
        }
    }
    /// Where new sessions work when `coding_open` does not say (`coding.isolation`), and what
    /// `coding_close` does with a session's worktree (`coding.worktree_on_close`).
    pub fn with_worktree_policy(mut self, isolation: Isolation, on_close: WorktreeOnClose) -> Self {
        self.isolation = isolation;
        self.worktree_on_close = on_close;
        self
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
    /// The largest `code` instruction accepted (`coding.max_instruction_bytes`).
    pub fn with_max_instruction_bytes(mut self, max: u64) -> Self {
        self.max_instruction_bytes = max;
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

    /// The tools' JSON schemas, generated from their argument types.
    pub fn specs() -> Vec<ToolSpec> {
        vec![
            spec::<OpenArgs>(
                "coding_open",
                "Open a coding session in a workspace directory or a fresh clone of a git repository, or continue an earlier session. Returns the session_id the other coding tools take.",
            ),
            spec::<CodeArgs>(
                "code",
                "Hand a coding task to the coding agent in an open session and wait for it to finish. Returns the agent's summary, the files it changed, and errors.",
            ),
            spec::<CloseArgs>(
                "coding_close",
                "Close a coding session when the work is done. The session can still be continued later by id or title.",
            ),
            spec::<CommitArgs>(
                "coding_commit",
                "Commit the changes in the session's git workspace. Returns the commit hash and stats.",
            ),
            spec::<PushArgs>(
                "coding_push",
                "Push the session's branch to its remote. Credentials come from the station config.",
            ),
            spec::<BranchArgs>(
                "coding_branch",
                "Create and/or switch to a git branch in the session's workspace. Returns the previous branch.",
            ),
            spec::<RewindArgs>(
                "coding_rewind",
                "Undo code tasks: restore the session's workspace files to their state before a task (default: the last one). Refuses if the workspace changed since the last task, unless force. Ignored files are never touched. Returns the files restored.",
            ),
        ]
    }

    /// Call a tool. Never fails: problems come back as `{"success": false, "error", "fix"}`.
    pub async fn call(&self, name: &str, args: &Value, progress: Option<ProgressFn>) -> Value {
        let result = match name {
            "coding_open" => match parse_args(name, args) {
                Ok(a) => self.open(a).await,
                Err(e) => Err(e.into()),
            },
            "code" => match parse_args(name, args) {
                Ok(a) => self.code(a, progress).await,
                Err(e) => Err(e.into()),
            },
            "coding_close" => match parse_args(name, args) {
                Ok(a) => self.close(a).await,
                Err(e) => Err(e.into()),
            },
            "coding_commit" => match parse_args::<CommitArgs>(name, args) {
                Ok(a) => {
                    let request = GitRequest::Commit {
                        message: a.message,
                        add_all: a.add_all,
                    };
                    self.git_tool(a.session_id, request).await
                }
                Err(e) => Err(e.into()),
            },
            "coding_push" => match parse_args::<PushArgs>(name, args) {
                Ok(a) => {
                    let request = GitRequest::Push {
                        remote: a.remote,
                        branch: a.branch,
                        set_upstream: a.set_upstream,
                    };
                    self.git_tool(a.session_id, request).await
                }
                Err(e) => Err(e.into()),
            },
            "coding_branch" => match parse_args::<BranchArgs>(name, args) {
                Ok(a) => {
                    let request = GitRequest::Branch {
                        branch: a.branch,
                        create: a.create,
                    };
                    self.git_tool(a.session_id, request).await
                }
                Err(e) => Err(e.into()),
            },
            "coding_rewind" => match parse_args::<RewindArgs>(name, args) {
                Ok(a) => self.rewind(a).await,
                Err(e) => Err(e.into()),
            },
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

    async fn open(&self, args: OpenArgs) -> Result<Value, ToolError> {
        let session_query = self.continue_session.clone().or(args.session);
        let repo_url = args.repo_url;
        let workspace = args
            .workspace_path
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
            branch: args.branch,
        });
        // A backend with a remote workspace clones there itself (the repository travels with
        // the session); a local one gets a local clone before the coding agent starts.
        let remote = self.service.backend().capabilities().remote_workspace;
        if let (Some(repo), Some(ws), false, false) = (&repo, &workspace, continuing, remote) {
            self.clone_repo(repo, ws).await?;
        }
        let isolation = args
            .isolation
            .map(Isolation::from)
            .unwrap_or(self.isolation);
        let spec = OpenSpec {
            workspace: workspace.clone(),
            repo,
            title: args.title,
            session: session_query,
        };
        let session = match (isolation, continuing, &workspace) {
            (Isolation::Worktree, false, Some(ws)) => {
                let git = self.git.as_ref().ok_or_else(|| {
                    ToolError::new(
                        "git is not available in this build, so there are no worktrees",
                        "call coding_open with isolation `none`",
                    )
                })?;
                crate::worktree::open_in_worktree(
                    &self.service,
                    git.as_ref(),
                    ws,
                    &self.workspace_base,
                    spec,
                )
                .await
            }
            _ => self.service.open(spec).await,
        }
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
            "worktree": session.worktree,
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
    fn session(&self, session_id: Option<&str>) -> Result<Session, ToolError> {
        match session_id {
            Some(id) => self.service.get(id).map_err(ToolError::from_core),
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

    async fn code(&self, args: CodeArgs, progress: Option<ProgressFn>) -> Result<Value, ToolError> {
        station_core::config::check_instruction_size(
            args.instruction.len() as u64,
            self.max_instruction_bytes,
            "the `code` call",
        )
        .map_err(ToolError::from_core)?;
        let session = self.session(args.session_id.as_deref())?;
        let task = Task {
            instruction: args.instruction,
            context: args.context,
            files: args.files,
            timeout_secs: args.timeout_secs,
            policy: None,
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
            // The number coding_rewind takes to undo this task.
            "task": outcome.patch.as_ref().and_then(|p| p.task),
            "usage": outcome.usage,
            "cost_usd": outcome.cost_usd,
            "cost_estimated": outcome.cost_estimated,
            "duration_ms": outcome.duration_ms,
        }))
    }

    async fn rewind(&self, args: RewindArgs) -> Result<Value, ToolError> {
        let session = self.session(args.session_id.as_deref())?;
        let rewound = self
            .service
            .rewind(&session, args.to_task, args.force)
            .await
            .map_err(ToolError::from_core)?;
        Ok(json!({
            "success": true,
            "session_id": session.id,
            "restored_to_before_task": rewound.to_task,
            "files": rewound.files,
        }))
    }

    async fn close(&self, args: CloseArgs) -> Result<Value, ToolError> {
        let id = match args.session_id {
            Some(id) => id,
            None => self.session(None)?.id.to_string(),
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
        let mut out = json!({"success": true, "session_id": session.id, "note": "closed; continue it later with its id or title"});
        let git = self.git.as_deref();
        if let Some(wt) =
            crate::worktree::close_worktree(git, &session, self.worktree_on_close).await
        {
            if wt["removed"] == true {
                out["note"] = json!("closed; its worktree was removed, so it cannot be continued");
            }
            out["worktree"] = wt;
        }
        Ok(out)
    }

    async fn git_tool(
        &self,
        session_id: Option<String>,
        request: GitRequest,
    ) -> Result<Value, ToolError> {
        let session = self.session(session_id.as_deref())?;
        let workspace = session.workspace.clone().ok_or_else(|| {
            ToolError::new(
                "the session has no workspace",
                "open the session with a workspace_path or repo_url",
            )
        })?;
        // A workspace on another machine (a NATS worker's host, a remote OpenCode server): the
        // backend runs the request where the workspace is.
        let response =
            if self.service.backend().capabilities().remote_workspace && !workspace.is_dir() {
                self.service.backend().git(&session, request).await
            } else {
                let git = self.git.as_ref().ok_or_else(|| {
                    ToolError::new(
                        "git is not available in this build",
                        "commit and push outside Station",
                    )
                })?;
                git.run(&workspace, request).await
            }
            .map_err(ToolError::from_core)?;
        let mut out = json!({"success": true, "session_id": session.id});
        let result = serde_json::to_value(response).map_err(|e| {
            ToolError::new(
                format!("cannot encode the git result: {e}"),
                "report the error to the user",
            )
        })?;
        if let (Some(o), Value::Object(r)) = (out.as_object_mut(), result) {
            o.extend(r);
        }
        Ok(out)
    }
}

struct ToolError {
    error: String,
    fix: String,
}

impl From<ArgError> for ToolError {
    fn from(e: ArgError) -> Self {
        ToolError::new(e.error, e.fix)
    }
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
            Error::Config(input) if input.hint.is_some() => input.hint.as_deref().unwrap_or(""),
            Error::Config(_) => "fix the arguments as the error says",
            _ => "report the error to the user",
        };
        ToolError::new(e.to_string(), fix.to_string())
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

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;

    /// A value of the type `prop` declares (within its range).
    fn sample(prop: &Value) -> Value {
        if let Some(first) = prop["enum"].as_array().and_then(|values| values.first()) {
            return first.clone();
        }
        match prop["type"].as_str() {
            Some("string") => json!("x"),
            Some("boolean") => json!(false),
            Some("integer") => json!(prop["minimum"].as_i64().unwrap_or(0) + 1),
            Some("array") => json!([sample(&prop["items"])]),
            other => panic!("no sample for type {other:?}"),
        }
    }

    /// The offered schema is `T`'s, every property it lists reads into `T`, and an argument it
    /// does not list is refused with the fix naming the ones it does.
    fn generated_from<T: schemars::JsonSchema + DeserializeOwned + std::fmt::Debug>(
        spec: &ToolSpec,
    ) {
        let mut own = schema_for::<T>();
        if spec.name != "coding_open" {
            advertise_required(&mut own, "session_id");
        }
        assert_eq!(spec.schema, own, "{}", spec.name);
        let props = spec.schema["properties"].as_object().unwrap();
        let all: serde_json::Map<String, Value> = props
            .iter()
            .map(|(key, prop)| (key.clone(), sample(prop)))
            .collect();
        let all = Value::Object(all);
        if let Err(e) = parse_args::<T>(&spec.name, &all) {
            panic!("{}: {all} was refused: {e:?}", spec.name);
        }
        let mut unknown = all.clone();
        unknown["no_such_arg"] = json!("x");
        let refused = parse_args::<T>(&spec.name, &unknown).unwrap_err();
        let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            refused,
            ArgError {
                error: format!("`{}` takes no argument `no_such_arg`", spec.name),
                fix: format!("use only these arguments: {}", names.join(", ")),
            }
        );
    }

    #[test]
    fn every_tool_schema_is_generated_from_its_argument_type() {
        let specs = CodingTools::specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, TOOL_NAMES);
        for spec in &specs {
            match spec.name.as_str() {
                "coding_open" => generated_from::<OpenArgs>(spec),
                "code" => generated_from::<CodeArgs>(spec),
                "coding_close" => generated_from::<CloseArgs>(spec),
                "coding_commit" => generated_from::<CommitArgs>(spec),
                "coding_push" => generated_from::<PushArgs>(spec),
                "coding_branch" => generated_from::<BranchArgs>(spec),
                "coding_rewind" => generated_from::<RewindArgs>(spec),
                other => panic!("no argument type for {other}"),
            }
        }
    }

    #[test]
    fn arguments_keep_their_names_descriptions_and_defaults() {
        let specs = CodingTools::specs();
        let schema = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .schema
                .clone()
        };
        let code = schema("code");
        assert_eq!(code["required"], json!(["session_id", "instruction"]));
        assert_eq!(
            code["properties"]["timeout_secs"],
            json!({"type": "integer", "description": "Deadline for this task (default: the configured one).", "minimum": 1})
        );
        assert_eq!(
            code["properties"]["files"]["items"],
            json!({"type": "string"})
        );
        let open = schema("coding_open");
        assert_eq!(
            open["properties"]["isolation"]["enum"],
            json!(["none", "worktree"]),
            "{open}"
        );
        assert_eq!(open["properties"]["isolation"]["type"], "string");
        let bad =
            parse_args::<OpenArgs>("coding_open", &json!({"isolation": "branch"})).unwrap_err();
        assert_eq!(
            bad,
            ArgError {
                error: "`isolation` must be one of none, worktree, not `branch`".into(),
                fix: "pass `isolation` as one of: none, worktree".into(),
            }
        );
        let push = schema("coding_push");
        assert_eq!(push["properties"]["set_upstream"]["default"], true);
        let read: PushArgs =
            parse_args("coding_push", &json!({"session_id": " s1 ", "remote": ""})).unwrap();
        assert_eq!(
            (read.session_id.as_deref(), read.remote, read.set_upstream),
            (Some("s1"), None, true),
            "strings are trimmed, blank is absent, defaults apply"
        );
        let missing =
            parse_args::<CommitArgs>("coding_commit", &json!({"message": "  "})).unwrap_err();
        assert_eq!(
            missing,
            ArgError {
                error: "`message` is required by `coding_commit`".into(),
                fix: "call `coding_commit` again with `message` set".into(),
            }
        );
        let wrong = parse_args::<CodeArgs>("code", &json!({"instruction": "x", "timeout_secs": 0}))
            .unwrap_err();
        assert_eq!(wrong.error, "`timeout_secs` must be at least 1, not 0");
        let not_object = parse_args::<CloseArgs>("coding_close", &json!("s1")).unwrap_err();
        assert!(not_object.fix.contains("JSON object"), "{not_object:?}");
    }
}
