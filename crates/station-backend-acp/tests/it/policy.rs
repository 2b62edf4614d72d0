//! `coding.policy` on ACP: permission requests and file writes decided by the policy, `ask`
//! answered by the run's handler, every decision in the outcome. The fake agent covers the
//! mapping corners; the real claude-agent-acp runs issue 19's scenario.

use std::sync::Arc;
use std::time::Duration;

use station_backend_acp::{AcpBackend, AcpConfig};
use station_core::policy::{Action, PermissionHandler, PolicyConfig, Verdict};
use station_core::service::OpenSpec;
use station_core::{
    CodingBackend, Outcome, RunOptions, Session, SessionIndex, SessionService, Task,
};
use station_testkit::conformance;
use station_testkit::fake_acp::fake_acp_agent_bin;
use station_testkit::model_server::ScriptedModel;
use station_testkit::policy_scenario as scenario;

use crate::support::{claude_backend, opencode_backend};

const DEADLINE: Duration = Duration::from_secs(30);

/// Answers every `ask` with `answer`, and counts the questions.
#[derive(Debug)]
struct Answer {
    answer: bool,
    asked: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PermissionHandler for Answer {
    async fn ask(&self, tool: &str, action: &Action) -> bool {
        self.asked
            .lock()
            .unwrap()
            .push(format!("{tool}: {}", action.target()));
        self.answer
    }
}

struct Run {
    service: SessionService,
    root: tempfile::TempDir,
    _index: tempfile::TempDir,
}

fn fake(mode: &str, env: &[(&str, String)], policy: PolicyConfig, run: RunOptions) -> Run {
    fake_in(tempfile::tempdir().unwrap(), mode, env, policy, run)
}

fn fake_in(
    root: tempfile::TempDir,
    mode: &str,
    env: &[(&str, String)],
    policy: PolicyConfig,
    run: RunOptions,
) -> Run {
    let mut vars = std::collections::BTreeMap::new();
    vars.insert("FAKE_ACP_MODE".to_string(), station_core::Secret::new(mode));
    for (k, v) in env {
        vars.insert(k.to_string(), station_core::Secret::new(v.clone()));
    }
    let config = AcpConfig {
        command: vec![fake_acp_agent_bin().to_string_lossy().into_owned()],
        env: vars,
        startup_timeout_sec: 5,
        cancel_grace_sec: 1,
        ..AcpConfig::default()
    };
    let backend: Arc<dyn CodingBackend> = Arc::new(
        AcpBackend::new(config)
            .with_workspace_base(root.path().join("wsbase"))
            .with_policy(policy),
    );
    let index = tempfile::tempdir().unwrap();
    let service = SessionService::new(backend, SessionIndex::open(index.path()).unwrap(), run);
    Run {
        service,
        root,
        _index: index,
    }
}

impl Run {
    fn workspace(&self) -> std::path::PathBuf {
        self.root.path().join("workspace")
    }

    async fn open(&self) -> Session {
        let ws = self.workspace();
        std::fs::create_dir_all(&ws).unwrap();
        self.service
            .open(OpenSpec {
                workspace: Some(ws),
                ..OpenSpec::default()
            })
            .await
            .expect("open works")
    }

    async fn run(&self, task: Task) -> Outcome {
        let session = self.open().await;
        let run = self.service.execute(&session, task);
        tokio::time::timeout(DEADLINE, run.outcome())
            .await
            .expect("the task ends within the deadline")
            .expect("an outcome")
    }
}

fn bash_call(command: &str) -> String {
    serde_json::json!({"toolCallId": "t1", "title": command, "kind": "execute",
                       "rawInput": {"command": command}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permission_request_is_decided_by_the_policy_and_audited() {
    let denied = fake(
        "permission",
        &[("FAKE_ACP_TOOL_CALL", bash_call("rm -rf data"))],
        scenario::example_policy(),
        RunOptions::default(),
    );
    let outcome = denied.run(Task::new("clean up")).await;
    assert_eq!(outcome.summary, "selected no", "{outcome:#?}");
    assert_eq!(outcome.permissions.len(), 1, "{outcome:#?}");
    let record = &outcome.permissions[0];
    assert_eq!(record.verdict, Verdict::Deny);
    assert_eq!(record.rule, "bash.deny \"rm -rf *\"");
    assert_eq!(
        record.action,
        Action::Bash {
            command: "rm -rf data".into()
        }
    );

    // An allowed command gets the once-only option, so the agent asks again next time.
    let allowed = fake(
        "permission",
        &[("FAKE_ACP_TOOL_CALL", bash_call("ls -la"))],
        scenario::example_policy(),
        RunOptions::default(),
    );
    let outcome = allowed.run(Task::new("list")).await;
    assert_eq!(outcome.summary, "selected yes", "{outcome:#?}");
    assert_eq!(outcome.permissions[0].rule, "bash.allow \"*\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_of_a_denied_path_is_refused_by_its_rule() {
    let root = tempfile::tempdir().unwrap();
    let secret = root.path().join("workspace/secrets/key.txt");
    // As claude-agent-acp sends a Write (captured), and a move out of a denied directory.
    let write = serde_json::json!({"toolCallId": "w1", "title": "Write key.txt", "kind": "edit",
        "rawInput": {"file_path": secret, "content": "k"},
        "content": [{"type": "diff", "path": secret, "oldText": null, "newText": "k"}],
        "locations": [{"path": secret}]});
    let f = fake_in(
        root,
        "permission",
        &[("FAKE_ACP_TOOL_CALL", write.to_string())],
        scenario::example_policy(),
        RunOptions::default(),
    );
    let outcome = f.run(Task::new("write the key")).await;
    assert_eq!(outcome.summary, "selected no", "{outcome:#?}");
    assert_eq!(outcome.permissions[0].rule, "edit.deny \"secrets/**\"");
    let moved = serde_json::json!({"toolCallId": "m1", "title": "mv", "kind": "move",
        "locations": [{"path": "notes.txt"}, {"path": "secrets/notes.txt"}]});
    let f = fake(
        "permission",
        &[("FAKE_ACP_TOOL_CALL", moved.to_string())],
        scenario::example_policy(),
        RunOptions::default(),
    );
    let outcome = f.run(Task::new("move")).await;
    assert_eq!(outcome.summary, "selected no", "{outcome:#?}");
    assert_eq!(
        outcome.permissions[0].action,
        Action::Edit {
            path: "secrets/notes.txt".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_write_text_file_obeys_the_policy() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("workspace/secrets/key.txt");
    let f = fake_in(
        root,
        "write_outside",
        &[("FAKE_ACP_PATH", target.to_string_lossy().into_owned())],
        scenario::example_policy(),
        RunOptions::default(),
    );
    let outcome = f.run(Task::new("write")).await;
    assert!(
        outcome.summary.starts_with("write refused")
            && outcome.summary.contains("coding.policy")
            && outcome.summary.contains("edit.deny \"secrets/**\""),
        "{outcome:#?}"
    );
    assert!(!target.exists(), "the denied file was not written");
    assert_eq!(outcome.permissions.len(), 1, "{outcome:#?}");
    assert_eq!(outcome.permissions[0].tool, "fs/write_text_file");
    assert_eq!(outcome.permissions[0].verdict, Verdict::Deny);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tasks_own_policy_wins_over_the_configured_one() {
    let f = fake(
        "permission",
        &[("FAKE_ACP_TOOL_CALL", bash_call("git push origin main"))],
        PolicyConfig::default(),
        RunOptions::default(),
    );
    let mut task = Task::new("push");
    task.policy = Some(scenario::example_policy());
    let outcome = f.run(task).await;
    assert_eq!(outcome.summary, "selected no", "{outcome:#?}");
    assert_eq!(outcome.permissions[0].rule, "bash.deny \"git push*\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_goes_to_the_runs_permission_handler() {
    let mut policy = scenario::example_policy();
    policy.unmatched = Verdict::Ask;
    policy.bash.allow.clear();
    for answer in [true, false] {
        let handler = Arc::new(Answer {
            answer,
            asked: Default::default(),
        });
        let run = RunOptions {
            permissions: handler.clone(),
            ..RunOptions::default()
        };
        let f = fake(
            "permission",
            &[("FAKE_ACP_TOOL_CALL", bash_call("make test"))],
            policy.clone(),
            run,
        );
        let outcome = f.run(Task::new("test it")).await;
        let (summary, verdict) = if answer {
            ("selected yes", Verdict::Allow)
        } else {
            ("selected no", Verdict::Deny)
        };
        assert_eq!(outcome.summary, summary, "{outcome:#?}");
        assert_eq!(outcome.permissions[0].verdict, verdict);
        assert_eq!(outcome.permissions[0].rule, "unmatched (asked)");
        assert_eq!(*handler.asked.lock().unwrap(), ["execute: make test"]);
    }
    // Nobody to ask: deny at once.
    let f = fake(
        "permission",
        &[("FAKE_ACP_TOOL_CALL", bash_call("make test"))],
        policy,
        RunOptions::default(),
    );
    let outcome = f.run(Task::new("test it")).await;
    assert_eq!(outcome.summary, "selected no", "{outcome:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_not_known_to_ask_about_everything_list_a_policy_gap() {
    let f = fake("ok", &[], scenario::example_policy(), RunOptions::default());
    let outcome = f.run(Task::new("hi")).await;
    assert_eq!(outcome.policy_gaps.len(), 1, "{outcome:#?}");
    assert!(
        outcome.policy_gaps[0].contains("fake-acp-agent")
            && outcome.policy_gaps[0].contains("asks permission for"),
        "{:?}",
        outcome.policy_gaps
    );
    let preset = |agent: &str| {
        AcpBackend::new(AcpConfig {
            agent: agent.into(),
            ..AcpConfig::default()
        })
    };
    assert!(preset("opencode").policy_gaps().is_empty());
    // Claude Code reads without asking: only a policy that allows reads outside has no gap.
    let claude = preset("claude").policy_gaps();
    assert!(
        claude.len() == 1 && claude[0].starts_with("outside_workspace for reads"),
        "{claude:?}"
    );
    let mut open_reads = scenario::example_policy();
    open_reads.outside_workspace = Verdict::Allow;
    assert!(
        preset("claude")
            .with_policy(open_reads)
            .policy_gaps()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acp_claude_agent_obeys_the_policy_and_the_outcome_lists_the_denials() {
    three_things_on(claude_backend).await;
}

/// `opencode acp` allows everything itself unless told to ask; the preset tells it to.
#[tokio::test(flavor = "multi_thread")]
async fn acp_opencode_obeys_the_policy_and_the_outcome_lists_the_denials() {
    three_things_on(opencode_backend).await;
}

/// Issue 19's scenario: the model writes secrets/key.txt, runs `rm -rf data`, writes ok.py.
async fn three_things_on(make: fn(&std::path::Path, &ScriptedModel) -> AcpBackend) {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(scenario::script()).await.unwrap();
    let backend: Arc<dyn CodingBackend> =
        Arc::new(make(root.path(), &model).with_policy(scenario::example_policy()));
    let index = tempfile::tempdir().unwrap();
    let service = SessionService::new(
        backend.clone(),
        SessionIndex::open(index.path()).unwrap(),
        RunOptions::default(),
    );
    let ws = root.path().join("ws");
    scenario::prepare_workspace(&ws);
    let session = service
        .open(OpenSpec {
            workspace: Some(ws.clone()),
            ..OpenSpec::default()
        })
        .await
        .unwrap();
    let (events, outcome) = conformance::run_task(
        &service,
        &session,
        Task::new(scenario::INSTRUCTION),
        "policy",
    )
    .await;
    backend.shutdown().await;
    let outcome = outcome.unwrap();
    scenario::assert_obeyed(&ws, &outcome, &format!("{events:#?}"));
}
