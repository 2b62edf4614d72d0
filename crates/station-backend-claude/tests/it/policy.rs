//! `coding.policy` and the budget, enforced on the real `claude` (against the scripted model):
//! every tool call is decided through Claude Code's control protocol, `ask` reaches the
//! caller's handler, and a budget stops a long task with no process left behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use station_backend_claude::{ClaudeBackend, ClaudeConfig};
use station_core::budget::{Cap, TaskBudget};
use station_core::policy::{Action, PermissionHandler, PolicyConfig, Verdict};
use station_core::{
    CodingBackend, EventKind, OpenRequest, Outcome, RunOptions, Session, StopReason, Task,
    start_task,
};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{CLAUDE_ENV_REMOVE, claude_bin, claude_env};
use station_testkit::policy_scenario as scenario;

use crate::support::group_gone;

/// The real CLI in an isolated HOME under `root`, pointed at `model`.
fn backend(root: &Path, model: &ScriptedModel, max_turns: u32) -> ClaudeBackend {
    ClaudeBackend::new(ClaudeConfig {
        binary: claude_bin().to_string_lossy().into_owned(),
        timeout_sec: 120,
        max_turns,
        ..ClaudeConfig::default()
    })
    .with_env(claude_env(&root.join("home"), model))
    .with_env_remove(CLAUDE_ENV_REMOVE.iter().map(|k| k.to_string()).collect())
    .with_workspace_base(root.join("managed"))
}

/// A session in a new workspace `root/ws` holding `data/keep.txt`.
async fn session_with_data(backend: &ClaudeBackend, root: &Path) -> (Session, PathBuf) {
    let ws = root.join("ws");
    std::fs::create_dir_all(ws.join("data")).unwrap();
    std::fs::write(ws.join("data/keep.txt"), "keep\n").unwrap();
    let session = backend
        .open(OpenRequest {
            workspace: Some(ws),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    let ws = session.workspace.clone().unwrap();
    (session, ws)
}

/// Run `instruction` through the runner with `opts`; the outcome, its events, and the process
/// group the agent ran in (found while it ran: the group of a process working in `ws`).
async fn run(
    backend: ClaudeBackend,
    session: Session,
    task: Task,
    opts: RunOptions,
) -> (Outcome, Vec<EventKind>, Option<u32>) {
    let ws = session.workspace.clone().unwrap();
    let run = start_task(
        Arc::new(backend),
        session,
        task,
        &RunOptions {
            default_timeout: Duration::from_secs(150),
            ..opts
        },
    );
    let mut events = Vec::new();
    let mut group = None;
    let outcome = tokio::time::timeout(
        Duration::from_secs(180),
        run.follow(|e| {
            if group.is_none() {
                group = group_working_in(&ws);
            }
            events.push(e.kind.clone());
        }),
    )
    .await
    .expect("the task ends in time")
    .expect("the task runs");
    (outcome, events, group)
}

/// The process group of a live process whose working directory is `ws`.
fn group_working_in(ws: &Path) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            if cwd != ws {
                return None;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // Fields after the command name: state, ppid, pgrp.
            let pgrp = stat[stat.rfind(')')? + 1..].split_whitespace().nth(2)?;
            pgrp.parse()
                .ok()
                .filter(|g| *g != 0 && pid != std::process::id())
        })
}

fn decisions(outcome: &Outcome, verdict: Verdict) -> Vec<(&str, &str)> {
    outcome
        .permissions
        .iter()
        .filter(|p| p.verdict == verdict)
        .map(|p| (p.tool.as_str(), p.rule.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_obeys_the_policy_and_the_outcome_lists_the_denials() {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(scenario::script()).await.unwrap();
    let claude = backend(root.path(), &model, 10).with_policy(scenario::example_policy());
    let (session, ws) = session_with_data(&claude, root.path()).await;
    let (outcome, events, _) = run(
        claude,
        session,
        Task::new(scenario::INSTRUCTION),
        RunOptions::default(),
    )
    .await;
    scenario::assert_obeyed(&ws, &outcome, &format!("{events:#?}"));
    assert_eq!(
        decisions(&outcome, Verdict::Deny),
        [
            ("Write", "edit.deny \"secrets/**\""),
            ("Bash", "bash.deny \"rm -rf *\"")
        ],
        "{:#?}",
        outcome.permissions
    );
    assert_eq!(
        decisions(&outcome, Verdict::Allow),
        [("Write", "unmatched")],
        "each tool call is decided once: {:#?}",
        outcome.permissions
    );
    assert!(outcome.success, "{outcome:#?}");
    // The model was told why, so it can work around it.
    let told = model
        .requests()
        .iter()
        .any(|r| r.conversation_text().contains("denied by Station's policy"));
    assert!(told, "the denial reaches the model as the tool's result");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_claude_would_run_unasked_are_decided_by_the_tasks_own_policy() {
    let root = tempfile::tempdir().unwrap();
    // Claude Code runs a read-only command such as `ls` without asking its permission prompt;
    // the hook still brings it to the policy.
    let script = Script::new().on("list", vec![Step::bash("ls data"), Step::text("Done.")]);
    let model = ScriptedModel::start(script).await.unwrap();
    let claude = backend(root.path(), &model, 10);
    let (session, _ws) = session_with_data(&claude, root.path()).await;
    let policy: PolicyConfig =
        serde_json::from_value(serde_json::json!({ "bash": { "deny": ["ls *"] } })).unwrap();
    let task = Task {
        policy: Some(policy),
        ..Task::new("list the data")
    };
    let (outcome, events, _) = run(claude, session, task, RunOptions::default()).await;
    assert_eq!(
        decisions(&outcome, Verdict::Deny),
        [("Bash", "bash.deny \"ls *\"")],
        "{outcome:#?}"
    );
    let call = outcome
        .tool_calls
        .iter()
        .find(|c| c.name == "Bash")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        !format!("{call:?}").contains("keep.txt"),
        "the command did not run: {call:#?}"
    );
}

/// Answers yes for one tool, no for any other; records what it was asked.
#[derive(Debug, Default)]
struct YesTo {
    tool: &'static str,
    asked: Mutex<Vec<(String, Action)>>,
}

#[async_trait::async_trait]
impl PermissionHandler for YesTo {
    async fn ask(&self, tool: &str, action: &Action) -> bool {
        self.asked
            .lock()
            .unwrap()
            .push((tool.to_string(), action.clone()));
        tool == self.tool
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_asks_the_callers_handler_and_obeys_its_answers() {
    let root = tempfile::tempdir().unwrap();
    let script = Script::new().on(
        "two things",
        vec![
            Step::write("asked.txt", "yes\n"),
            Step::bash("touch made-by-bash.txt"),
            Step::text("Done."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let policy = PolicyConfig {
        unmatched: Verdict::Ask,
        ..PolicyConfig::default()
    };
    let claude = backend(root.path(), &model, 10).with_policy(policy);
    let (session, ws) = session_with_data(&claude, root.path()).await;
    let handler = Arc::new(YesTo {
        tool: "Write",
        ..YesTo::default()
    });
    let (outcome, events, _) = run(
        claude,
        session,
        Task::new("Do the two things"),
        RunOptions {
            permissions: handler.clone(),
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(ws.join("asked.txt"))
            .ok()
            .as_deref(),
        Some("yes\n"),
        "{outcome:#?}\n{events:#?}"
    );
    assert!(!ws.join("made-by-bash.txt").exists(), "{outcome:#?}");
    let asked: Vec<String> = handler
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(|(tool, action)| format!("{tool} {}", action.target()))
        .collect();
    assert_eq!(
        asked,
        [
            format!("Write {}", ws.join("asked.txt").display()),
            "Bash touch made-by-bash.txt".to_string()
        ]
    );
    assert_eq!(
        decisions(&outcome, Verdict::Allow),
        [("Write", "unmatched (asked)")]
    );
    assert_eq!(
        decisions(&outcome, Verdict::Deny),
        [("Bash", "unmatched (asked)")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_budget_stops_a_long_task_on_real_claude_with_no_process_left() {
    const STEPS: usize = 40;
    let root = tempfile::tempdir().unwrap();
    let mut steps: Vec<Step> = (0..STEPS)
        .map(|i| Step::bash(format!("echo step {i}")))
        .collect();
    steps.push(Step::text("All steps done."));
    let model = ScriptedModel::start(Script::new().on("long task", steps))
        .await
        .unwrap();
    let claude = backend(root.path(), &model, 100);
    let (session, ws) = session_with_data(&claude, root.path()).await;
    // Claude Code's requests carry a few thousand tokens of system prompt and tools each, so
    // this cap is passed within the first few model steps.
    let budget = TaskBudget {
        max_tokens: Some(Cap {
            limit: 5_000,
            setting: "coding.budget.max_tokens".into(),
        }),
        max_cost_usd: None,
    };
    let (outcome, events, group) = run(
        claude,
        session,
        Task::new("Run the long task"),
        RunOptions {
            budget,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(
        outcome.stop_reason,
        StopReason::BudgetExceeded,
        "{outcome:#?}\n{events:#?}"
    );
    assert!(!outcome.success);
    let error = outcome.error.clone().unwrap_or_default();
    assert!(error.contains("coding.budget.max_tokens"), "{error}");
    assert!(outcome.usage.total() > 5_000, "{:?}", outcome.usage);
    let scripted = model.scripted_requests().len();
    assert!(
        (1..=4).contains(&scripted),
        "stopped after {scripted} model requests of a {STEPS}-step task"
    );
    let group = group.unwrap_or_else(|| panic!("no process ever worked in {}", ws.display()));
    assert_eq!(group_gone(group).await, Vec::<u32>::new());
}
