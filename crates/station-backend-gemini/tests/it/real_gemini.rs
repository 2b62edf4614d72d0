//! The real `gemini` CLI (pinned, installed by `cargo xtask install-peers`) against the
//! scripted model server: create, continue, refuse another directory, cancel, errors, then the
//! conformance suite.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_gemini::{GeminiBackend, GeminiConfig};
use station_core::{
    CodingBackend, Error, EventKind, FileAction, OpenRequest, Outcome, RunOptions, Session,
    StopReason, Task, start_task,
};
use station_testkit::conformance::{Target, run_all, start_to_end};
use station_testkit::model_server::{Fault, Script, ScriptedModel, Step};
use station_testkit::peers::{GEMINI_ENV_REMOVE, GEMINI_VERSION, gemini_bin, gemini_env};
use station_testkit::process::{is_alive, live_children_of, live_group_members};

const CREATE: &str = "Create hello.py that prints Hello World";
const CONTINUE: &str = "What did you create before?";

/// The backend running the real CLI in an isolated HOME, pointed at `model`.
pub(crate) fn real_backend(home: &Path, model: &ScriptedModel, managed: &Path) -> GeminiBackend {
    let config = GeminiConfig {
        binary: gemini_bin().to_string_lossy().into_owned(),
        timeout_sec: 120,
        ..GeminiConfig::default()
    };
    GeminiBackend::new(config)
        .with_env(gemini_env(home, model))
        .with_env_remove(GEMINI_ENV_REMOVE.iter().map(|k| k.to_string()).collect())
        .with_workspace_base(managed.to_path_buf())
}

pub(crate) async fn open_in(backend: &Arc<dyn CodingBackend>, ws: &Path) -> Session {
    backend
        .open(OpenRequest {
            workspace: Some(ws.to_path_buf()),
            ..OpenRequest::default()
        })
        .await
        .unwrap()
}

/// Run a task through the runner; its outcome and event kinds.
pub(crate) async fn run(
    backend: &Arc<dyn CodingBackend>,
    session: &Session,
    instruction: &str,
) -> (Outcome, Vec<EventKind>) {
    let options = RunOptions {
        default_timeout: Duration::from_secs(150),
        ..RunOptions::default()
    };
    let (outcome, events) = start_to_end(backend, session, instruction, &options).await;
    (outcome, events.into_iter().map(|e| e.kind).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn real_gemini_creates_continues_and_stays_in_its_directory() {
    let script = Script::new()
        .on(
            "hello.py",
            vec![
                Step::write("hello.py", "print('Hello World')\n")
                    .with_text_before("I'll create hello.py."),
                Step::text("Created hello.py, which prints Hello World."),
            ],
        )
        .on(
            "what did you create",
            vec![Step::text("Earlier I created hello.py.")],
        );
    let model = ScriptedModel::start(script)
        .await
        .expect("model server starts");
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let gemini = real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    );

    let health = gemini.health().await.expect("health runs");
    assert!(health.ok, "{health:?}");
    assert_eq!(health.version.as_deref(), Some(GEMINI_VERSION));
    assert!(
        health.detail.contains("GEMINI_API_KEY is set") && !health.detail.contains("dummy"),
        "{}",
        health.detail
    );

    let backend: Arc<dyn CodingBackend> = Arc::new(gemini);
    let mut session = open_in(&backend, &ws).await;
    let ws = session.workspace.clone().unwrap();
    let (first, events) = run(&backend, &session, CREATE).await;
    assert!(first.success, "{first:#?}");
    assert_eq!(first.stop_reason, StopReason::Completed);
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    assert_eq!(first.summary, "Created hello.py, which prints Hello World.");
    assert!(
        first
            .tool_calls
            .iter()
            .any(|c| c.name == "write_file" && c.error.is_none()),
        "{:#?}",
        first.tool_calls
    );
    assert!(
        first
            .files_changed
            .iter()
            .any(|f| f.path == "hello.py" && f.action == FileAction::Created && f.lines_added == 1),
        "{:#?}",
        first.files_changed
    );
    // Tokens over the router's side call and both main turns, and the main model's name, so a
    // price table can cost the outcome.
    let scripted: u64 = model
        .requests()
        .iter()
        .filter_map(|r| r.reply.usage)
        .map(|u| u.output_tokens)
        .sum();
    assert!(first.usage.input_tokens > 0, "{:?}", first.usage);
    assert_eq!(first.usage.output_tokens, scripted, "{:?}", first.usage);
    assert_eq!(first.cost_usd, None, "the CLI reports no cost");
    let main_model = model.scripted_requests()[0].model.clone();
    assert_eq!(first.model, main_model);
    let id = first
        .backend_session_id
        .clone()
        .expect("the session id is reported");
    assert!(events.iter().any(|e| matches!(e, EventKind::BackendSession { backend_session_id } if *backend_session_id == id)), "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::TextDelta { .. })),
        "text streams live: {events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::FileEdited { path } if path.ends_with("hello.py"))),
        "{events:#?}"
    );

    session.backend_session_id = Some(id.clone());
    let (second, _) = run(&backend, &session, CONTINUE).await;
    assert!(second.success, "{second:#?}");
    assert_eq!(second.summary, "Earlier I created hello.py.");
    assert_eq!(second.backend_session_id.as_deref(), Some(id.as_str()));
    let request = model
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.prompt.as_deref() == Some(CONTINUE) && !r.side_call)
        .expect("the model saw the second task");
    assert!(
        request.conversation_text().contains(CREATE),
        "the continuation carries the first task: {}",
        request.conversation_text()
    );

    let reopened = backend
        .open(OpenRequest {
            resume: Some(id.clone()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(
        reopened.workspace.as_deref(),
        Some(ws.as_path()),
        "the session's directory comes from the CLI's project record"
    );
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let err = backend
        .open(OpenRequest {
            workspace: Some(other),
            resume: Some(id.clone()),
            ..OpenRequest::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only from the directory it was created in"),
        "{err}"
    );
    // A well-formed id the CLI does not know is NotFound, before and while running.
    let unknown = "00000000-0000-4000-8000-000000000000";
    let err = backend
        .open(OpenRequest {
            resume: Some(unknown.into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    session.backend_session_id = Some(unknown.into());
    let run = start_task(
        backend.clone(),
        session.clone(),
        Task::new("hello?"),
        &RunOptions::default(),
    );
    let err = tokio::time::timeout(Duration::from_secs(120), run.outcome())
        .await
        .expect("the task ends")
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

/// Cancel while the model streams: the outcome is complete and `cancelled`, and no process of
/// the CLI is left.
#[tokio::test(flavor = "multi_thread")]
async fn real_gemini_cancel_leaves_no_process_and_says_cancelled() {
    let words: Vec<String> = (1..=200).map(|i| format!("tick{i}")).collect();
    let script = Script::new().on(
        "slow story",
        vec![Step::slow_text(words.join(" "), Duration::from_millis(200))],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    ));
    let session = open_in(&backend, &ws).await;
    let mut run = start_task(
        backend,
        session,
        Task::new("Tell a slow story please"),
        &RunOptions::default(),
    );
    // Wait (bounded) for streamed text: the CLI is mid-answer.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|k| matches!(k, EventKind::TextDelta { .. }))
    {
        let next = tokio::time::timeout_at(deadline.into(), run.next_event())
            .await
            .expect("text streams before the deadline")
            .expect("the task is still running");
        events.push(next.kind);
    }
    // This task's CLI: a child of the test process working in this workspace (other tests of
    // the same process may run agents elsewhere).
    let ws = std::fs::canonicalize(&ws).unwrap();
    let agents: Vec<u32> = live_children_of(std::process::id())
        .into_iter()
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == ws))
        .collect();
    assert!(!agents.is_empty(), "the gemini process runs");
    run.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), run.outcome())
        .await
        .expect("cancel is prompt")
        .expect("cancel gives an outcome");
    assert_eq!(
        (outcome.success, outcome.stop_reason),
        (false, StopReason::Cancelled),
        "{outcome:#?}"
    );
    assert!(
        outcome.summary.starts_with("tick1"),
        "what streamed is kept: {outcome:#?}"
    );
    assert!(outcome.backend_session_id.is_some(), "{outcome:#?}");
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("stopped")),
        "{outcome:#?}"
    );
    for pid in agents {
        assert!(!is_alive(pid), "gemini {pid} outlived its task");
        assert!(
            live_group_members(pid).is_empty(),
            "its group {pid} is gone"
        );
    }
}

/// A model API error ends the task by itself, with the API's message.
#[tokio::test(flavor = "multi_thread")]
async fn real_gemini_names_the_model_api_error() {
    let model = ScriptedModel::start(Script::new().fallback(vec![Step::fault(Fault::Status(400))]))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    ));
    let session = open_in(&backend, &ws).await;
    let (outcome, _) = run(&backend, &session, "Say hello").await;
    assert_eq!(
        (outcome.success, outcome.stop_reason),
        (false, StopReason::Error),
        "{outcome:#?}"
    );
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("scripted fault: HTTP 400"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn real_gemini_passes_the_conformance_suite() {
    let model = ScriptedModel::start(Script::new())
        .await
        .expect("model server starts");
    let tmp = tempfile::tempdir().unwrap();
    let backend = real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    );
    let root = tmp.path().join("workspaces");
    std::fs::create_dir_all(&root).unwrap();
    run_all(&Target {
        backend: Arc::new(backend),
        model: &model,
        workspace_root: root,
    })
    .await;
}
