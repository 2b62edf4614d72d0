//! The real `codex` CLI (pinned, installed by `cargo xtask install-peers`) against the scripted
//! model server: the conformance suite, cancel, and tokens with an estimated cost.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_codex::{CodexBackend, CodexConfig};
use station_core::config::Config;
use station_core::{
    CodingBackend, EventKind, OpenRequest, Outcome, RunOptions, Session, StopReason, Task,
    start_task,
};
use station_testkit::conformance::{Target, run_all, start_to_end};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{CODEX_ENV_REMOVE, CODEX_MODEL, codex_bin, codex_env};
use station_testkit::process::{is_alive, live_children_of, live_group_members};

const TASK_DEADLINE: Duration = Duration::from_secs(120);

/// The backend running the real CLI with an isolated HOME and CODEX_HOME, pointed at `model`.
pub(crate) fn real_backend(home: &Path, model: &ScriptedModel, managed: &Path) -> CodexBackend {
    let config = CodexConfig {
        binary: codex_bin().to_string_lossy().into_owned(),
        timeout_sec: TASK_DEADLINE.as_secs(),
        ..CodexConfig::default()
    };
    CodexBackend::new(config)
        .with_env(codex_env(home, model))
        .with_env_remove(CODEX_ENV_REMOVE.iter().map(|k| k.to_string()).collect())
        .with_workspace_base(managed.to_path_buf())
}

pub(crate) async fn open(backend: &Arc<dyn CodingBackend>, ws: &Path) -> Session {
    backend
        .open(OpenRequest {
            workspace: Some(ws.to_path_buf()),
            ..OpenRequest::default()
        })
        .await
        .expect("open")
}

/// Run a task through the runner with `opts`; its outcome and event kinds.
pub(crate) async fn run(
    backend: &Arc<dyn CodingBackend>,
    session: &Session,
    instruction: &str,
    opts: &RunOptions,
) -> (Outcome, Vec<EventKind>) {
    let opts = RunOptions {
        default_timeout: opts.default_timeout.min(TASK_DEADLINE),
        ..opts.clone()
    };
    let (outcome, events) = start_to_end(backend, session, instruction, &opts).await;
    (outcome, events.into_iter().map(|e| e.kind).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn real_codex_passes_the_conformance_suite() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let backend = real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    );
    run_all(&Target {
        backend: Arc::new(backend),
        model: &model,
        workspace_root: tmp.path().join("suite"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_mid_task_stops_every_codex_process_and_says_cancelled() {
    let script = Script::new().on(
        "slow",
        vec![Step::slow_text(
            "tick ".repeat(200),
            Duration::from_millis(100),
        )],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(
        real_backend(
            &tmp.path().join("home"),
            &model,
            &tmp.path().join("managed"),
        )
        .with_kill_grace(Duration::from_secs(2)),
    );
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let session = open(&backend, &ws).await;
    let mut run = start_task(
        backend.clone(),
        session,
        Task::new("a slow answer please"),
        &RunOptions::default(),
    );
    model.wait_for_requests(1, TASK_DEADLINE).await;
    // The agent is this test process's child (codex.js and the native codex in its group).
    let agents = live_children_of(std::process::id());
    assert!(!agents.is_empty(), "codex runs while the model streams");
    run.cancel();
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = run.next_event().await {
            events.push(e.kind);
        }
        run.outcome().await
    })
    .await
    .expect("cancel ends the task promptly")
    .expect("cancel gives an outcome");
    assert_eq!(
        (outcome.success, outcome.stop_reason),
        (false, StopReason::Cancelled),
        "{outcome:#?}"
    );
    let error = outcome.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("cancelled") && error.contains("codex"),
        "{error}"
    );
    assert!(
        outcome.backend_session_id.is_some(),
        "the thread id is kept: {outcome:#?}"
    );
    assert!(matches!(events.last(), Some(EventKind::Finished { .. })));
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in agents {
        // The outcome comes after the group is gone; only reaping may lag.
        while (is_alive(pid) || !live_group_members(pid).is_empty()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !is_alive(pid) && live_group_members(pid).is_empty(),
            "codex process group {pid} is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outcomes_carry_tokens_and_a_cost_estimated_from_the_configured_prices() {
    let script = Script::new().fallback(vec![
        Step::write("notes.txt", "hi\n").with_text_before("Writing notes."),
        Step::text("Wrote notes.txt."),
    ]);
    let model = ScriptedModel::start(script).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    ));
    let priced = |per_million: f64| {
        let text = format!(
            "coding:\n  pricing:\n    {CODEX_MODEL}: {{input: {per_million}, cached_input: 0, output: {per_million}}}\n"
        );
        RunOptions {
            default_timeout: TASK_DEADLINE,
            pricing: Config::parse(&text, None).unwrap().coding.price_table(),
            ..RunOptions::default()
        }
    };
    let mut costs = Vec::new();
    for (name, opts) in [
        ("builtin", RunOptions::default()),
        ("one", priced(1.0)),
        ("three", priced(3.0)),
    ] {
        let ws = tmp.path().join(name);
        std::fs::create_dir_all(&ws).unwrap();
        let session = open(&backend, &ws).await;
        let (outcome, _) = run(&backend, &session, "write the notes", &opts).await;
        assert!(outcome.success, "{outcome:#?}");
        assert_eq!(outcome.model.as_deref(), Some(CODEX_MODEL));
        let usage = outcome.usage;
        assert!(
            usage.input_tokens > 0 && usage.output_tokens > 0,
            "{usage:?}"
        );
        costs.push((outcome.cost_usd, outcome.cost_estimated, usage));
    }
    // The built-in list has no price for the scripted slug: no cost, and no error.
    assert_eq!((costs[0].0, costs[0].1), (None, false));
    let (one, estimated, usage) = costs[1];
    let tokens = usage.total() + usage.cache_read_tokens + usage.cache_write_tokens;
    assert!(estimated);
    let one = one.expect("a configured price gives a cost");
    assert!(
        (one - tokens as f64 / 1e6).abs() < 1e-12,
        "{one} for {usage:?}"
    );
    let three = costs[2].0.expect("priced");
    let tokens3 = {
        let u = costs[2].2;
        u.total() + u.cache_read_tokens + u.cache_write_tokens
    };
    assert!(
        (three - 3.0 * tokens3 as f64 / 1e6).abs() < 1e-12,
        "{three}"
    );
}
