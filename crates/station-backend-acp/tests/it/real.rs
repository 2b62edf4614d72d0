//! The real ACP agents, driven by the scripted model: the conformance suite, and cancel.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_acp::AcpBackend;
use station_core::service::OpenSpec;
use station_core::{CodingBackend, RunOptions, SessionIndex, SessionService, StopReason, Task};
use station_testkit::conformance::{self, Target};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::process::live_group_members;

use crate::support::{claude_backend, opencode_backend};

async fn conformance_on(make: fn(&Path, &ScriptedModel) -> AcpBackend) {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(make(root.path(), &model));
    let workspace_root = root.path().join("conformance");
    std::fs::create_dir_all(&workspace_root).unwrap();
    conformance::run_all(&Target {
        backend,
        model: &model,
        workspace_root,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_opencode_acp_passes_the_conformance_suite() {
    conformance_on(opencode_backend).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_claude_agent_acp_passes_the_conformance_suite() {
    conformance_on(claude_backend).await;
}

const AFTER_CANCEL: &str = "Answer for the task after the cancel: 4711.";

/// Cancel a streaming task: it ends `cancelled`, no process of the agent is left, and the next
/// task in the same session gets its own answer (claude-agent-acp answers out of step after a
/// cancel unless the agent is restarted).
async fn cancel_then_next_task(make: fn(&Path, &ScriptedModel) -> AcpBackend) {
    let root = tempfile::tempdir().unwrap();
    let script = Script::new()
        .on(
            "slow story",
            vec![Step::slow_text(
                "tick ".repeat(200),
                Duration::from_millis(100),
            )],
        )
        .on("after the cancel", vec![Step::text(AFTER_CANCEL)]);
    let model = ScriptedModel::start(script).await.unwrap();
    let acp = Arc::new(make(root.path(), &model));
    let backend: Arc<dyn CodingBackend> = acp.clone();
    let index = tempfile::tempdir().unwrap();
    let service = SessionService::new(
        backend,
        SessionIndex::open(index.path()).unwrap(),
        RunOptions::default(),
    );
    let ws = root.path().join("ws-cancel");
    std::fs::create_dir_all(&ws).unwrap();
    let session = service
        .open(OpenSpec {
            workspace: Some(ws),
            ..OpenSpec::default()
        })
        .await
        .unwrap();
    let run = service.execute(&session, Task::new("Tell the slow story"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !model.requests().iter().any(|r| {
        !r.side_call
            && r.prompt
                .as_deref()
                .is_some_and(|p| p.contains("slow story"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the model never got the slow task"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = acp.agent_pid().await.expect("the agent runs");
    run.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), run.outcome())
        .await
        .expect("cancel ends the task within 30s")
        .expect("a cancelled task has an outcome");
    assert_eq!(outcome.stop_reason, StopReason::Cancelled, "{outcome:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !live_group_members(pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes of the agent are left after cancel: {:?}",
            live_group_members(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session = service.get(session.id.as_str()).unwrap();
    let (events, outcome) = conformance::run_task(
        &service,
        &session,
        Task::new("Now the task after the cancel"),
        "after cancel",
    )
    .await;
    conformance::assert_event_contract(&events, "after cancel");
    let outcome = outcome.expect("the task after the cancel runs");
    assert!(outcome.success, "{outcome:#?}");
    assert!(
        outcome.summary.contains("4711"),
        "the task after the cancel gets its own answer: {outcome:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn real_opencode_acp_cancel_leaves_no_process_and_the_next_task_is_answered() {
    cancel_then_next_task(opencode_backend).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_claude_agent_acp_cancel_leaves_no_process_and_the_next_task_is_answered() {
    cancel_then_next_task(claude_backend).await;
}
