//! The real `opencode` (pinned, from `cargo xtask install-peers`) against the scripted model.
//! Each `opencode run` takes a few seconds, so the runs here are few.

use std::path::Path;
use std::sync::Arc;

use station_backend_cli::CliBackend;
use station_backend_cli::CliConfig;
use station_core::{CodingBackend, FileAction, FileChange, OpenRequest, Task};
use station_testkit::conformance::{self, Target};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{
    OPENCODE_ENV_REMOVE, OPENCODE_MODEL, OPENCODE_VERSION, opencode_bin, opencode_env,
};

use crate::support::run_task;

fn real_backend(root: &Path, model: &ScriptedModel) -> CliBackend {
    let config = CliConfig {
        binary: opencode_bin().to_string_lossy().into_owned(),
        timeout_sec: 120,
        model: Some(OPENCODE_MODEL.into()),
    };
    CliBackend::new(config)
        .with_env(opencode_env(&root.join("home"), model))
        .with_env_remove(OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(root.join("workspaces"))
}

const FIRST: &str = "Create hello.py printing Hello World";
/// Starts with `-` and holds quotes: it must reach the model verbatim.
const SECOND: &str = "-v \"What\" did you create? Answer briefly";
const THIRD: &str = "And which language is it?";

#[tokio::test(flavor = "multi_thread")]
async fn real_opencode_creates_a_file_and_continues_by_id_and_by_title() {
    let root = tempfile::tempdir().unwrap();
    let script = Script::new()
        .on(
            "hello.py",
            vec![
                Step::write("hello.py", "print('Hello World')\n")
                    .with_text_before("I'll create hello.py."),
                Step::text("Created hello.py."),
            ],
        )
        .on("did you create", vec![Step::text("I created hello.py.")])
        .on("which language", vec![Step::text("Python.")]);
    let model = ScriptedModel::start(script).await.unwrap();
    let backend = Arc::new(real_backend(root.path(), &model));

    let health = backend.health().await.unwrap();
    assert!(
        health.ok && health.version.as_deref() == Some(OPENCODE_VERSION),
        "{health:?}"
    );

    // 1. A new session writes hello.py.
    let ws = root.path().join("ws");
    let session = backend
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (events, outcome) = run_task(backend.clone(), session, Task::new(FIRST)).await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:#?}\n{events:#?}");
    let written = std::fs::read_to_string(ws.join("hello.py"))
        .unwrap_or_else(|e| panic!("hello.py: {e}\n{outcome:#?}\n{:#?}", model.requests()));
    assert_eq!(written, "print('Hello World')\n");
    assert_eq!(
        outcome.files_changed,
        [FileChange {
            path: "hello.py".into(),
            action: FileAction::Created,
            lines_added: 1,
            lines_removed: 0,
            ..Default::default()
        }]
    );
    assert_eq!(
        outcome.summary, "Created hello.py.",
        "only the final step's text"
    );
    assert_eq!(
        outcome
            .tool_calls
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["write"]
    );
    assert!(
        outcome.usage.input_tokens > 0 && outcome.usage.output_tokens > 0,
        "{:?}",
        outcome.usage
    );
    let ses = outcome.backend_session_id.clone().expect("a ses_ id");
    assert!(ses.starts_with("ses_"), "{ses}");
    let scripted = model.scripted_requests();
    assert!(
        scripted.iter().all(|r| r.prompt.as_deref() == Some(FIRST)),
        "the prompt reaches the model verbatim: {:?}",
        scripted.iter().map(|r| &r.prompt).collect::<Vec<_>>()
    );
    assert!(
        model.requests().iter().all(|r| !r.side_call),
        "--title spares the title side call"
    );

    // 2. Continue by id; the prompt starts with `-` and holds quotes.
    let by_id = backend
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            resume: Some(ses.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    model.clear_requests();
    let (_, outcome) = run_task(backend.clone(), by_id, Task::new(SECOND)).await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.backend_session_id.as_deref(), Some(ses.as_str()));
    assert_eq!(outcome.summary, "I created hello.py.");
    assert!(
        outcome.files_changed.is_empty(),
        "{:?}",
        outcome.files_changed
    );
    let request = model
        .scripted_requests()
        .pop()
        .expect("the model saw the second task");
    assert_eq!(request.prompt.as_deref(), Some(SECOND));
    let conversation = request.conversation_text();
    assert!(
        conversation.contains(FIRST) && conversation.contains("Created hello.py."),
        "{conversation}"
    );

    // 3. Continue by part of the title (the first instruction), found with `session list`.
    let listed = backend.list_sessions().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s.id == ses && s.title.as_deref() == Some(FIRST)),
        "{listed:?}"
    );
    let by_title = backend
        .open(OpenRequest {
            resume: Some("PRINTING hello".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_title.backend_session_id.as_deref(), Some(ses.as_str()));
    assert_eq!(
        by_title.workspace.as_deref(),
        Some(ws.canonicalize().unwrap().as_path()),
        "continues in the session's directory"
    );
    model.clear_requests();
    let (_, outcome) = run_task(backend.clone(), by_title, Task::new(THIRD)).await;
    let outcome = outcome.unwrap();
    assert!(
        outcome.success && outcome.summary == "Python.",
        "{outcome:#?}"
    );
    let conversation = model
        .scripted_requests()
        .pop()
        .expect("the model saw the third task")
        .conversation_text();
    assert!(
        conversation.contains(FIRST) && conversation.contains(SECOND),
        "{conversation}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn real_opencode_passes_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(real_backend(root.path(), &model));
    let workspace_root = root.path().join("conformance");
    std::fs::create_dir_all(&workspace_root).unwrap();
    conformance::run_all(&Target {
        backend,
        model: &model,
        workspace_root,
    })
    .await;
}

/// Four `opencode run` at once on an OpenCode data directory that has never been used: the
/// runs race to create OpenCode's database unless the backend makes the first start exclusive.
/// Repeated on five fresh homes, as every CI runner starts fresh.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_first_runs_on_a_fresh_data_dir_all_succeed() {
    const PARALLEL: usize = 4;
    const ROUNDS: usize = 5;
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    for round in 0..ROUNDS {
        let root = tempfile::tempdir().unwrap();
        let backend = Arc::new(real_backend(root.path(), &model));
        let mut runs = Vec::new();
        for n in 0..PARALLEL {
            let backend = backend.clone();
            let ws = root.path().join(format!("ws{n}"));
            runs.push(tokio::spawn(async move {
                let session = backend
                    .open(OpenRequest {
                        workspace: Some(ws),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                run_task(backend, session, Task::new(format!("Say hello number {n}"))).await
            }));
        }
        for (n, run) in runs.into_iter().enumerate() {
            let (events, outcome) = run.await.unwrap();
            let outcome = outcome.unwrap_or_else(|e| panic!("round {round} run {n}: {e}"));
            assert!(
                outcome.success,
                "round {round} run {n}: {outcome:#?}\n{events:#?}"
            );
        }
    }
}
