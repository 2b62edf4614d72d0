//! The real `claude` CLI (pinned, installed by `cargo xtask install-peers`) against the scripted
//! model server: create, continue, refuse another directory, then the conformance suite.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use station_backend_claude::ClaudeBackend;
use station_backend_claude::ClaudeConfig;
use station_core::{
    CodingBackend, Error, EventKind, FileAction, OpenRequest, Outcome, RunOptions, Session, Task,
    start_task,
};
use station_testkit::conformance::{Target, run_all, start_to_end};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{CLAUDE_ENV_REMOVE, CLAUDE_VERSION, claude_bin, claude_env};

const CREATE: &str = "Create hello.py that prints Hello World";
const CONTINUE: &str = "What did you create before?";

/// The backend running the real CLI in an isolated HOME, pointed at `model`.
fn real_backend(home: &Path, model: &ScriptedModel, managed: &Path) -> ClaudeBackend {
    let config = ClaudeConfig {
        binary: claude_bin().to_string_lossy().into_owned(),
        timeout_sec: 120,
        ..ClaudeConfig::default()
    };
    ClaudeBackend::new(config)
        .with_env(claude_env(home, model))
        .with_env_remove(CLAUDE_ENV_REMOVE.iter().map(|k| k.to_string()).collect())
        .with_workspace_base(managed.to_path_buf())
}

/// Run a task through the runner; its outcome and event kinds.
async fn run(
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
async fn real_claude_creates_continues_and_stays_in_its_directory() {
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
    let claude = real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    );

    let health = claude.health().await.expect("health runs");
    assert!(health.ok, "{health:?}");
    assert_eq!(health.version.as_deref(), Some(CLAUDE_VERSION));
    assert!(
        health.detail.contains("ANTHROPIC_API_KEY is set") && !health.detail.contains("dummy"),
        "{}",
        health.detail
    );

    let backend: Arc<dyn CodingBackend> = Arc::new(claude.clone());
    let mut session = backend
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(session.backend_session_id, None);
    let ws = session.workspace.clone().unwrap();

    let (first, events) = run(&backend, &session, CREATE).await;
    assert!(first.success, "{first:#?}");
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    assert_eq!(first.summary, "Created hello.py, which prints Hello World.");
    assert!(
        first
            .tool_calls
            .iter()
            .any(|c| c.name == "Write" && c.output.is_some()),
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
    let usage = first.usage;
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
    // The CLI prices its default model (opus) at $5/M input, $25/M output (cache: $0.50/M read, $6.25/M write).
    let expected = (usage.input_tokens as f64 * 5.0
        + usage.output_tokens as f64 * 25.0
        + usage.cache_read_tokens as f64 * 0.5
        + usage.cache_write_tokens as f64 * 6.25)
        / 1e6;
    let cost = first.cost_usd.expect("cost is reported");
    assert!(
        (cost - expected).abs() < 1e-9,
        "cost {cost} != {expected} for {usage:?}"
    );
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
    assert_eq!(
        second.backend_session_id.as_deref(),
        Some(id.as_str()),
        "continuing keeps the session"
    );
    let request = model
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.prompt.as_deref().is_some_and(|p| p.contains(CONTINUE)))
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
        "the session's directory comes from its transcript"
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
        matches!(err, Error::Config(_))
            && err
                .to_string()
                .contains("only from the directory it was created in"),
        "{err}"
    );

    let listed = backend.list_sessions().await.unwrap();
    assert!(
        listed.iter().any(|s| s.id == id
            && s.workspace.as_deref() == Some(ws.as_path())
            && s.title.as_deref() == Some(CREATE)),
        "{listed:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn real_claude_passes_the_conformance_suite() {
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

/// A model API that answers HTTP 500: the user sees the API error, not only "timed out". With
/// `x-should-retry: false` Claude Code gives up at once (a `result` error); without it, it
/// retries (each retry a notice) until the task deadline stops it.
#[tokio::test(flavor = "multi_thread")]
async fn real_claude_names_the_model_api_error() {
    use station_testkit::model_server::Fault;
    for (fault, retried) in [
        (Fault::Status(500), false),
        (Fault::RetryableStatus(500), true),
    ] {
        let model = ScriptedModel::start(Script::new().fallback(vec![Step::fault(fault)]))
            .await
            .expect("model server starts");
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let backend: Arc<dyn CodingBackend> = Arc::new(real_backend(
            &tmp.path().join("home"),
            &model,
            &tmp.path().join("managed"),
        ));
        let session = backend
            .open(OpenRequest {
                workspace: Some(ws),
                ..OpenRequest::default()
            })
            .await
            .unwrap();
        let mut task = Task::new("Say hello");
        task.timeout_secs = Some(25);
        let run = start_task(backend, session, task, &RunOptions::default());
        let mut events = Vec::new();
        let outcome = tokio::time::timeout(
            Duration::from_secs(90),
            run.follow(|e| events.push(e.kind.clone())),
        )
        .await
        .expect("the task ends")
        .expect("the task runs");
        assert!(!outcome.success, "{outcome:#?}");
        let error = outcome.error.clone().unwrap_or_default();
        assert!(
            error.contains("the model API answered HTTP 500"),
            "{fault:?}: {error}"
        );
        let notices: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::Notice { message } if message.contains("Claude API error 500") => {
                    Some(message)
                }
                _ => None,
            })
            .collect();
        if retried {
            assert!(!notices.is_empty(), "{events:#?}");
            assert!(error.contains("retr"), "{error}");
        }
    }
}

/// Four `claude -p` at once in a home where Claude Code never ran, five times: unlike
/// OpenCode's database, its first-run state (settings, session files) must not race.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_first_runs_in_a_fresh_home_all_succeed() {
    const PARALLEL: usize = 4;
    const ROUNDS: usize = 5;
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    for round in 0..ROUNDS {
        let root = tempfile::tempdir().unwrap();
        let backend: Arc<dyn CodingBackend> = Arc::new(real_backend(
            &root.path().join("home"),
            &model,
            &root.path().join("managed"),
        ));
        let mut runs = Vec::new();
        for n in 0..PARALLEL {
            let backend = backend.clone();
            let ws = root.path().join(format!("ws{n}"));
            std::fs::create_dir_all(&ws).unwrap();
            runs.push(tokio::spawn(async move {
                let session = backend
                    .open(OpenRequest {
                        workspace: Some(ws),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                run(&backend, &session, &format!("Say hello number {n}")).await
            }));
        }
        for (n, handle) in runs.into_iter().enumerate() {
            let (outcome, events) = handle.await.unwrap();
            assert!(
                outcome.success,
                "round {round} run {n}: {outcome:#?}\n{events:#?}"
            );
        }
    }
}
