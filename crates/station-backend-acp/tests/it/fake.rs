//! The scripted fake ACP agent: corner cases real agents do not produce on demand. Each ends
//! in a clear error or a clean answer within its deadline: no panic, no hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_acp::{AcpBackend, AcpConfig};
use station_core::service::OpenSpec;
use station_core::{
    CodingBackend, Error, Outcome, RunOptions, Session, SessionIndex, SessionService, StopReason,
    Task,
};
use station_testkit::fake_acp::fake_acp_agent_bin;
use station_testkit::process::live_group_members;

/// Every corner case must end well within this.
const DEADLINE: Duration = Duration::from_secs(30);

struct Fake {
    acp: Arc<AcpBackend>,
    service: SessionService,
    root: tempfile::TempDir,
    _index: tempfile::TempDir,
}

fn fake(mode: &str, extra_env: &[(&str, String)]) -> Fake {
    fake_with(mode, extra_env, None)
}

fn fake_with(mode: &str, extra_env: &[(&str, String)], model: Option<&str>) -> Fake {
    let root = tempfile::tempdir().unwrap();
    let mut env = std::collections::BTreeMap::new();
    env.insert("FAKE_ACP_MODE".to_string(), station_core::Secret::new(mode));
    for (k, v) in extra_env {
        env.insert(k.to_string(), station_core::Secret::new(v.clone()));
    }
    let config = AcpConfig {
        command: vec![fake_acp_agent_bin().to_string_lossy().into_owned()],
        env,
        startup_timeout_sec: 3,
        cancel_grace_sec: 1,
        model: model.map(str::to_string),
        ..AcpConfig::default()
    };
    let acp = Arc::new(AcpBackend::new(config).with_workspace_base(root.path().join("ws")));
    let backend: Arc<dyn CodingBackend> = acp.clone();
    let index = tempfile::tempdir().unwrap();
    let service = SessionService::new(
        backend,
        SessionIndex::open(index.path()).unwrap(),
        RunOptions::default(),
    );
    Fake {
        acp,
        service,
        root,
        _index: index,
    }
}

impl Fake {
    async fn open(&self) -> Session {
        let ws = self.root.path().join("workspace");
        std::fs::create_dir_all(&ws).unwrap();
        tokio::time::timeout(
            DEADLINE,
            self.service.open(OpenSpec {
                workspace: Some(ws),
                ..OpenSpec::default()
            }),
        )
        .await
        .expect("open ends within the deadline")
        .expect("open works")
    }

    async fn run(&self, session: &Session, task: Task) -> station_core::Result<Outcome> {
        let run = self.service.execute(session, task);
        tokio::time::timeout(DEADLINE, run.outcome())
            .await
            .expect("the task ends within the deadline")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_output_is_a_clear_startup_error() {
    let f = fake("garbage", &[]);
    let started = Instant::now();
    let err = f
        .service
        .open(OpenSpec {
            workspace: Some(f.root.path().join("workspace")),
            ..OpenSpec::default()
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        text.contains("initialize")
            && text.contains("coding.acp.startup_timeout_sec")
            && text.contains("not ACP JSON-RPC")
            && text.contains("Welcome to not-an-agent"),
        "{text}"
    );
    assert!(started.elapsed() < DEADLINE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_turn_is_a_clear_error_and_the_agent_is_restarted() {
    let f = fake("crash", &[]);
    let session = f.open().await;
    let first_pid = f.acp.agent_pid().await.expect("the agent runs");
    let err = f.run(&session, Task::new("do it")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("exit code 3")
            && text.contains("crashing on purpose")
            && text.contains("started again"),
        "{text}"
    );
    // The next use starts a fresh process.
    let again = f.open().await;
    let second_pid = f.acp.agent_pid().await.expect("a new agent runs");
    assert_ne!(first_pid, second_pid);
    assert!(again.backend_session_id.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_never_answers_is_cancelled_and_its_group_killed() {
    let f = fake("hang", &[]);
    let session = f.open().await;
    let pid = f.acp.agent_pid().await.expect("the agent runs");
    let run = f.service.execute(&session, Task::new("never answered"));
    run.cancel();
    let outcome = tokio::time::timeout(DEADLINE, run.outcome())
        .await
        .expect("cancel ends the task within the deadline")
        .expect("a cancelled task has an outcome");
    assert_eq!(outcome.stop_reason, StopReason::Cancelled, "{outcome:#?}");
    let deadline = Instant::now() + DEADLINE;
    while !live_group_members(pid).is_empty() {
        assert!(Instant::now() < deadline, "the agent outlived the cancel");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The deadline works the same way.
    let mut task = Task::new("never answered either");
    task.timeout_secs = Some(1);
    let outcome = f.run(&session, task).await.expect("an outcome");
    assert_eq!(outcome.stop_reason, StopReason::Timeout, "{outcome:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permission_request_storm_is_answered() {
    let f = fake("storm", &[("FAKE_ACP_STORM", "2000".into())]);
    let session = f.open().await;
    let outcome = f
        .run(&session, Task::new("storm"))
        .await
        .expect("an outcome");
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.summary, "allowed 2000 of 2000");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_10_mb_update_is_a_clear_error() {
    let f = fake("huge", &[]);
    let session = f.open().await;
    let pid = f.acp.agent_pid().await.expect("the agent runs");
    let err = f.run(&session, Task::new("big")).await.unwrap_err();
    assert!(
        err.to_string().contains("larger than 8 MiB")
            && err.to_string().contains("coding.acp.max_message_mb"),
        "{err}"
    );
    assert!(
        live_group_members(pid).is_empty(),
        "the refused agent is stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_update_kind_is_skipped() {
    let f = fake("unknown", &[]);
    let session = f.open().await;
    let outcome = f
        .run(&session, Task::new("anything"))
        .await
        .expect("an outcome");
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.summary, "after unknown");
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_write_text_file_outside_the_workspace_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("stolen.txt");
    let f = fake(
        "write_outside",
        &[("FAKE_ACP_PATH", target.to_string_lossy().into_owned())],
    );
    let session = f.open().await;
    let outcome = f
        .run(&session, Task::new("write"))
        .await
        .expect("an outcome");
    assert!(
        outcome.summary.starts_with("write refused")
            && outcome.summary.contains("outside the session's workspace"),
        "{outcome:#?}"
    );
    assert!(
        !target.exists(),
        "nothing was written outside the workspace"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_commands_run_with_their_output_limit() {
    let f = fake("terminal", &[]);
    let session = f.open().await;
    let outcome = f
        .run(&session, Task::new("run it"))
        .await
        .expect("an outcome");
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.summary, "exit 0 output 6789 truncated true");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_agent_process_serves_several_sessions() {
    let f = fake_with("ok", &[], Some("fake-model"));
    let first = f.open().await;
    let pid = f.acp.agent_pid().await.expect("the agent runs");
    let second = f.open().await;
    assert_ne!(first.backend_session_id, second.backend_session_id);
    assert_eq!(f.acp.agent_pid().await, Some(pid), "the same process");
    for session in [&first, &second] {
        let outcome = f.run(session, Task::new("hi")).await.expect("an outcome");
        assert_eq!(outcome.summary, "fake answer");
        assert_eq!(outcome.model.as_deref(), Some("fake-model"));
    }
    assert_eq!(f.acp.agent_pid().await, Some(pid));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_the_agent_refuses_names_the_setting() {
    let f = fake_with("ok", &[], Some("no-such-model"));
    let err = f
        .service
        .open(OpenSpec {
            workspace: Some(f.root.path().join("workspace")),
            ..OpenSpec::default()
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("coding.acp.model") && text.contains("unknown model no-such-model"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_agent_save_its_sessions_and_exit() {
    let marker = tempfile::tempdir().unwrap();
    let saved = marker.path().join("saved");
    let f = fake(
        "ok",
        &[(
            "FAKE_ACP_SAVE_ON_EXIT",
            saved.to_string_lossy().into_owned(),
        )],
    );
    let s = f.open().await;
    assert!(f.run(&s, Task::new("hello")).await.unwrap().success);
    let pid = f.acp.agent_pid().await.expect("the agent runs");
    tokio::time::timeout(DEADLINE, f.acp.shutdown())
        .await
        .expect("shutdown is bounded");
    assert_eq!(
        std::fs::read_to_string(&saved).ok().as_deref(),
        Some("saved"),
        "the agent was killed before it could save"
    );
    assert!(live_group_members(pid).is_empty(), "nothing left running");
    assert_eq!(f.acp.agent_pid().await, None);
}
