//! The agent runtime against the scripted model server (OpenAI and Anthropic APIs) and an
//! in-process coding backend.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;
use station_agent::llm::{LlmSettings, ModelRef};
use station_agent::{AgentEvent, CodingTools, GenaiClient, Runtime};
use station_core::agent::AgentDefinition;
use station_core::{
    Capabilities, CodingBackend, EventKind, ExecContext, FileAction, FileChange, Health,
    OpenRequest, Outcome, RunOptions, Session, SessionIndex, SessionService, StopReason, Task,
};
use station_testkit::model_server::{Fault, Script, ScriptedModel, Step};

mod rewind;
mod worktree;

/// Writes `hello.py` into the session workspace for any instruction mentioning it.
#[derive(Debug)]
struct WritingBackend;

#[async_trait::async_trait]
impl CodingBackend for WritingBackend {
    fn name(&self) -> &str {
        "opencode"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            resume: true,
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
        let mut s = Session::new("opencode");
        if let Some(ws) = &req.workspace {
            std::fs::create_dir_all(ws).unwrap();
        }
        s.workspace = req.workspace;
        s.title = req.title;
        s.backend_session_id = req.resume;
        Ok(s)
    }
    async fn execute(
        &self,
        session: &Session,
        task: &Task,
        ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        let ws = session.workspace.clone().unwrap();
        ctx.events.emit(EventKind::ToolStarted {
            call_id: None,
            name: "write".into(),
            input: json!({"filePath": "hello.py"}),
        });
        std::fs::write(ws.join("hello.py"), "print('Hello World')\n").unwrap();
        ctx.events.emit(EventKind::FileEdited {
            path: "hello.py".into(),
        });
        let mut o = Outcome::new(true, StopReason::Completed);
        o.summary = format!("did: {}", task.instruction);
        o.files_changed = vec![FileChange {
            path: "hello.py".into(),
            action: FileAction::Created,
            lines_added: 1,
            lines_removed: 0,
            ..Default::default()
        }];
        o.backend_session_id = Some(
            session
                .backend_session_id
                .clone()
                .unwrap_or_else(|| "ses_fake".into()),
        );
        Ok(o)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

fn agent(model: &str, max_steps: u32) -> AgentDefinition {
    let text = format!(
        "---\nmetadata:\n  name: coder\nmodel: {model}\nmax_steps: {max_steps}\ncoding:\n  enabled: true\n---\n{{{{role \"system\"}}}}You code with the coding tools.\n{{{{role \"user\"}}}}{{{{userInput}}}}\n"
    );
    AgentDefinition::parse(&text, None).unwrap()
}

fn coding_script() -> Script {
    Script::new().on(
        "hello.py",
        vec![
            Step::tool("coding_open", json!({"title": "hello agent"})),
            Step::tool(
                "code",
                json!({"instruction": "Create hello.py that prints Hello World"}),
            ),
            Step::tool("coding_close", json!({})),
            Step::text("hello.py is ready."),
        ],
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    service: SessionService,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path().join("data")).unwrap();
    let service = SessionService::new(Arc::new(WritingBackend), index, RunOptions::default());
    Fixture {
        base: dir.path().join("workspaces"),
        _dir: dir,
        service,
    }
}

fn runtime(model: &ScriptedModel) -> Runtime {
    let settings = LlmSettings {
        openai_base_url: Some(model.openai_base_url() + "/"),
        anthropic_base_url: Some(model.base_url() + "/v1/"),
        request_timeout: std::time::Duration::from_secs(30),
        ..LlmSettings::default()
    };
    Runtime::new(Arc::new(GenaiClient::new(settings).unwrap()), None, None)
}

async fn run(
    model: &ScriptedModel,
    f: &Fixture,
    agent: &AgentDefinition,
    task: &str,
) -> (
    station_core::Result<station_agent::AgentReport>,
    Vec<AgentEvent>,
) {
    let tools = CodingTools::new(f.service.clone(), f.base.clone());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let report = runtime(model)
        .run(
            agent,
            task,
            &BTreeMap::new(),
            Some(&tools),
            Arc::new(move |e| sink.lock().unwrap().push(e)),
        )
        .await;
    let events = events.lock().unwrap().clone();
    (report, events)
}

#[tokio::test]
async fn openai_agent_opens_codes_and_closes() {
    let model = ScriptedModel::start(coding_script()).await.unwrap();
    let f = fixture();
    let (report, events) = run(
        &model,
        &f,
        &agent("openai/gpt-4o", 10),
        "Create a hello.py that prints Hello World",
    )
    .await;
    let report = report.unwrap();
    assert!(report.success, "{report:#?}");
    assert_eq!(report.final_text, "hello.py is ready.");
    assert_eq!(report.steps, 4);
    let names: Vec<&str> = report.tool_calls.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["coding_open", "code", "coding_close"]);
    assert!(report.tool_calls.iter().all(|t| t.success), "{report:#?}");
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.files_changed.len(), 1);
    let session = f.service.get(report.sessions[0].as_str()).unwrap();
    assert!(
        session
            .workspace
            .as_ref()
            .unwrap()
            .join("hello.py")
            .exists()
    );
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Coding { event } if matches!(event.kind, EventKind::FileEdited { .. }))), "coding progress streams");
    // The model saw the tools and the task; the system prompt came from the agent body.
    let first = model.requests().into_iter().find(|r| !r.side_call).unwrap();
    for tool in station_agent::tools::TOOL_NAMES {
        assert!(first.offered(tool), "{tool} offered");
    }
    assert!(
        first
            .conversation_text()
            .contains("You code with the coding tools.")
    );
    assert_eq!(first.model.as_deref(), Some("gpt-4o"));
}

#[tokio::test]
async fn anthropic_agent_works_the_same() {
    let model = ScriptedModel::start(coding_script()).await.unwrap();
    let f = fixture();
    let (report, _) = run(
        &model,
        &f,
        &agent("anthropic/claude-sonnet-4-5-20250929", 10),
        "Create a hello.py that prints Hello World",
    )
    .await;
    let report = report.unwrap();
    assert!(report.success, "{report:#?}");
    assert_eq!(report.tool_calls.len(), 3);
    assert!(
        model
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/v1/messages"))
    );
}

#[tokio::test]
async fn max_steps_exhaustion_is_reported() {
    let model = ScriptedModel::start(coding_script()).await.unwrap();
    let f = fixture();
    let (report, _) = run(&model, &f, &agent("openai/gpt-4o", 2), "Create a hello.py").await;
    let report = report.unwrap();
    assert!(!report.success);
    assert!(report.error.unwrap().contains("max_steps"));
    assert_eq!(report.steps, 2);
}

#[tokio::test]
async fn tool_errors_go_back_to_the_model() {
    let script = Script::new().on(
        "broken",
        vec![
            Step::tool("code", json!({"instruction": "x"})),
            Step::text("I could not open a session."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let f = fixture();
    let (report, events) = run(&model, &f, &agent("openai/gpt-4o", 5), "a broken task").await;
    let report = report.unwrap();
    assert!(report.success, "the agent recovers: {report:#?}");
    assert!(!report.tool_calls[0].success);
    let result = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::ToolResult { result, .. } => Some(result.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(result["success"], false);
    assert!(
        result["fix"].as_str().unwrap().contains("coding_open"),
        "{result}"
    );
    let second = model
        .requests()
        .into_iter()
        .filter(|r| !r.side_call)
        .nth(1)
        .unwrap();
    assert!(
        second.conversation_text().contains("session_id"),
        "the tool error reached the model"
    );
}

/// A misspelt argument is refused with the same words MCP uses (one checker for both), naming
/// the argument and the ones the tool takes, before anything runs.
#[tokio::test]
async fn a_misspelt_argument_is_named_with_the_arguments_to_use() {
    let script = Script::new().on(
        "typo",
        vec![
            Step::tool("code", json!({"instructions": "x", "timeout_secs": 5})),
            Step::text("I will spell it right next time."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let f = fixture();
    let (report, events) = run(&model, &f, &agent("openai/gpt-4o", 5), "a typo task").await;
    assert!(report.unwrap().success);
    let result = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::ToolResult { result, .. } => Some(result.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        result,
        json!({
            "success": false,
            "error": "`code` takes no argument `instructions`",
            "fix": "use only these arguments: context, files, instruction, session_id, timeout_secs",
        })
    );
}

#[tokio::test]
async fn a_model_api_error_is_a_clear_error() {
    let model = ScriptedModel::start(coding_script()).await.unwrap();
    model.set_fault(Some(Fault::Status(500)));
    let f = fixture();
    let (report, _) = run(&model, &f, &agent("openai/gpt-4o", 5), "Create a hello.py").await;
    let err = report.unwrap_err().to_string();
    assert!(err.contains("model"), "{err}");
}

#[tokio::test]
async fn a_missing_api_key_says_which_variable() {
    use station_agent::LlmClient;
    use station_agent::llm::{ChatSpec, Turn};
    let client = GenaiClient::new(LlmSettings::default()).unwrap();
    let spec = ChatSpec {
        model: ModelRef::parse("anthropic/claude-sonnet-4-5", None).unwrap(),
        system: None,
        turns: vec![Turn::User("hi".into())],
        tools: vec![],
    };
    let err = client.chat(&spec).await.unwrap_err();
    assert!(matches!(err, station_core::Error::Auth { .. }), "{err}");
    assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
}

/// `coding_open repo_url` clones through `Git::clone_or_reuse`: an interrupted clone in the
/// workspace is refused, a URL that is not an allowed https remote is refused, and a complete
/// clone of the same URL is reused.
#[tokio::test]
async fn coding_open_never_reuses_an_interrupted_clone_and_refuses_disallowed_urls() {
    use station_testkit::git_server::{GitServer, fake_token, seeded_repo};

    let f = fixture();
    let repos = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, _) = seeded_repo(repos.path(), "repo").await;
    let server = GitServer::start(repos.path(), "x-access-token", &token).await;
    let creds = station_git::GitCredentials::new(Some(station_core::Secret::new(token.clone())))
        .allow_host("127.0.0.1")
        .allow_http_loopback(true);
    let tools = CodingTools::new(f.service.clone(), f.base.clone()).with_git(Arc::new(
        station_agent::LocalGit::new(station_git::Git::new(creds)),
    ));

    let interrupted = f.base.join("interrupted");
    std::fs::create_dir_all(interrupted.join(".git")).unwrap();
    let result = tools
        .call(
            "coding_open",
            &json!({"repo_url": server.url("repo"), "workspace_path": interrupted}),
            None,
        )
        .await;
    assert_eq!(result["success"], false, "{result:#}");
    assert!(
        result.to_string().contains("not a complete git repository"),
        "{result:#}"
    );

    let file_url = format!("file://{}", bare.display());
    let result = tools
        .call("coding_open", &json!({"repo_url": file_url}), None)
        .await;
    assert_eq!(result["success"], false, "{result:#}");
    assert!(result.to_string().contains("only https://"), "{result:#}");

    let ws = f.base.join("clone");
    for _ in 0..2 {
        let result = tools
            .call(
                "coding_open",
                &json!({"repo_url": server.url("repo"), "workspace_path": ws}),
                None,
            )
            .await;
        assert_eq!(result["success"], true, "{result:#}");
        assert!(ws.join("README.md").is_file());
    }
}

/// `code` (for agents and MCP) refuses an instruction over `coding.max_instruction_bytes`
/// before the backend runs, naming the cap and the key; one at the cap runs.
#[tokio::test]
async fn code_refuses_an_instruction_over_the_cap() {
    let f = fixture();
    let tools =
        CodingTools::new(f.service.clone(), f.base.clone()).with_max_instruction_bytes(1000);
    let opened = tools.call("coding_open", &json!({}), None).await;
    let id = opened["session_id"].as_str().unwrap().to_string();
    let over = tools
        .call(
            "code",
            &json!({"session_id": id, "instruction": "x".repeat(1001)}),
            None,
        )
        .await;
    assert_eq!(over["success"], false, "{over:#}");
    let text = over.to_string();
    assert!(
        text.contains("limit of 1000 bytes") && text.contains("coding.max_instruction_bytes"),
        "{text}"
    );
    let history = station_core::history::TaskHistory::new(f.service.index().dir());
    assert!(
        history
            .read(&station_core::SessionId::from(id.as_str()))
            .unwrap()
            .tasks
            .is_empty(),
        "the refused task never ran"
    );
    let at_cap = format!("write hello.py {}", "x".repeat(1000 - 15));
    let ok = tools
        .call(
            "code",
            &json!({"session_id": id, "instruction": at_cap}),
            None,
        )
        .await;
    assert_eq!(ok["success"], true, "{ok:#}");
    let tasks = history
        .read(&station_core::SessionId::from(id.as_str()))
        .unwrap()
        .tasks;
    assert_eq!(tasks.len(), 1, "the session service recorded the task");
    assert!(tasks[0].instruction.starts_with("write hello.py"));
}
