//! `coding.policy` on the real `opencode serve`: a managed server asks Station about every
//! edit and command, Station answers by the policy (or asks its handler), the outcome lists the
//! decisions; a user's own server that allows edits and commands unasked is a policy gap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use station_backend_http::{HttpBackend, ManagedServer, OpencodeConfig};
use station_core::policy::{Action, PermissionHandler, PolicyConfig, Verdict};
use station_core::{CodingBackend, OpenRequest, Outcome, RunOptions, Session, Task, start_task};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{OPENCODE_MODEL, OpencodeServer, opencode_bin, opencode_env};
use station_testkit::policy_scenario as scenario;

fn managed_backend(root: &Path, model: &ScriptedModel, policy: PolicyConfig) -> Arc<HttpBackend> {
    let config = OpencodeConfig {
        // Never contacted: `always` ignores the URL.
        url: "http://127.0.0.1:9".into(),
        model: Some(OPENCODE_MODEL.into()),
        managed: ManagedServer::Always,
        binary: opencode_bin().to_string_lossy().into_owned(),
        ..Default::default()
    };
    Arc::new(
        HttpBackend::from_opencode(config, 3, Duration::from_secs(600))
            .unwrap()
            .with_env(opencode_env(&root.join("home"), model))
            .with_workspace_base(root.join("base"))
            .with_policy(policy),
    )
}

fn workspace(root: &Path) -> PathBuf {
    let ws = root.join("ws");
    scenario::prepare_workspace(&ws);
    ws.canonicalize().unwrap()
}

async fn run(backend: Arc<HttpBackend>, session: Session, options: &RunOptions) -> Outcome {
    let task_run = start_task(backend, session, Task::new(scenario::INSTRUCTION), options);
    tokio::time::timeout(Duration::from_secs(180), task_run.follow(|_| {}))
        .await
        .expect("a real task ends")
        .expect("a real task runs")
}

/// A session of `backend` in `ws`.
async fn open_in(backend: &HttpBackend, ws: &Path) -> Session {
    backend
        .open(OpenRequest {
            workspace: Some(ws.to_path_buf()),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_http_obeys_the_policy_and_the_outcome_lists_the_denials() {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(scenario::script()).await.unwrap();
    let backend = managed_backend(root.path(), &model, scenario::example_policy());
    let ws = workspace(root.path());
    let session = open_in(&backend, &ws).await;
    let outcome = run(backend.clone(), session, &RunOptions::default()).await;
    scenario::assert_obeyed(&ws, &outcome, "");
    let tools: Vec<&str> = outcome
        .permissions
        .iter()
        .map(|p| p.tool.as_str())
        .collect();
    assert_eq!(
        tools,
        ["write", "bash", "write"],
        "{:#?}",
        outcome.permissions
    );
    assert!(outcome.policy_gaps.is_empty(), "{:#?}", outcome.policy_gaps);
}

/// Allows `a.txt`, refuses everything else, and remembers what it was asked.
#[derive(Debug, Default)]
struct AllowsOnlyA {
    asked: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PermissionHandler for AllowsOnlyA {
    async fn ask(&self, _tool: &str, action: &Action) -> bool {
        self.asked.lock().unwrap().push(action.target().to_string());
        action.target().ends_with("/a.txt")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_rules_are_put_to_the_permission_handler_and_its_answers_obeyed() {
    let root = tempfile::tempdir().unwrap();
    let script = Script::new().on(
        "three things",
        vec![
            Step::write("a.txt", "a\n"),
            Step::write("b.txt", "b\n"),
            Step::text("Done."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let policy: PolicyConfig = serde_json::from_value(serde_json::json!({
        "edit": { "allow": ["ok/**"] },
        "unmatched": "ask",
    }))
    .unwrap();
    let backend = managed_backend(root.path(), &model, policy);
    let ws = workspace(root.path());
    let session = open_in(&backend, &ws).await;
    let handler = Arc::new(AllowsOnlyA::default());
    let options = RunOptions {
        permissions: handler.clone(),
        ..RunOptions::default()
    };
    let outcome = run(backend, session, &options).await;
    assert_eq!(
        std::fs::read_to_string(ws.join("a.txt")).ok().as_deref(),
        Some("a\n"),
        "{outcome:#?}"
    );
    assert!(!ws.join("b.txt").exists(), "{outcome:#?}");
    let asked = handler.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [
            ws.join("a.txt").display().to_string(),
            ws.join("b.txt").display().to_string()
        ]
    );
    let decisions: Vec<(Verdict, &str)> = outcome
        .permissions
        .iter()
        .map(|p| (p.verdict, p.rule.as_str()))
        .collect();
    assert_eq!(
        decisions,
        [
            (Verdict::Allow, "unmatched (asked)"),
            (Verdict::Deny, "unmatched (asked)")
        ],
        "{:#?}",
        outcome.permissions
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_server_that_allows_edits_and_commands_unasked_reports_policy_gaps() {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    // The testkit's config: `"permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"}`.
    let env = opencode_env(&root.path().join("home"), &model);
    let server = OpencodeServer::start(&env, root.path()).await;
    let config = OpencodeConfig {
        url: server.url.clone(),
        model: Some(OPENCODE_MODEL.into()),
        managed: ManagedServer::Never,
        ..Default::default()
    };
    let backend = HttpBackend::from_opencode(config, 3, Duration::from_secs(600))
        .unwrap()
        .with_policy(scenario::example_policy());
    assert!(backend.health().await.unwrap().ok);
    let gaps = backend.policy_gaps();
    let rules: Vec<&str> = gaps
        .iter()
        .map(|g| g.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        rules,
        [
            "edit.deny \"secrets/**\"",
            "edit.deny \"**/.env\"",
            "bash.deny \"rm -rf *\"",
            "bash.deny \"git push*\"",
            "bash.deny \"curl *\""
        ],
        "{gaps:#?}"
    );
    assert!(
        gaps[0].contains(&server.url)
            && gaps[0].contains("permission.edit is \"allow\"")
            && gaps[0].contains("managed: always"),
        "{}",
        gaps[0]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_agents_requests_are_decided_by_the_policy_too() {
    let root = tempfile::tempdir().unwrap();
    let script = Script::new()
        .on(
            "hand it over",
            vec![
                Step::tool(
                    "task",
                    serde_json::json!({"description": "write files", "prompt": "Sub-agent job",
                                       "subagent_type": "general"}),
                ),
                Step::text("Done."),
            ],
        )
        .on(
            "sub-agent job",
            vec![
                Step::write("secrets/key.txt", "k=1\n"),
                Step::write("sub.txt", "sub\n"),
                Step::text("Written."),
            ],
        );
    let model = ScriptedModel::start(script).await.unwrap();
    let backend = managed_backend(root.path(), &model, scenario::example_policy());
    let ws = workspace(root.path());
    let session = open_in(&backend, &ws).await;
    let options = RunOptions {
        default_timeout: Duration::from_secs(120),
        ..RunOptions::default()
    };
    let task_run = start_task(backend, session, Task::new("Hand it over"), &options);
    let outcome = tokio::time::timeout(Duration::from_secs(180), task_run.follow(|_| {}))
        .await
        .expect("a real task ends")
        .expect("a real task runs");
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(
        std::fs::read_to_string(ws.join("sub.txt")).ok().as_deref(),
        Some("sub\n"),
        "{outcome:#?}"
    );
    assert!(!ws.join("secrets/key.txt").exists(), "{outcome:#?}");
    let denied: Vec<&str> = outcome
        .permissions
        .iter()
        .filter(|p| p.verdict == Verdict::Deny)
        .map(|p| p.rule.as_str())
        .collect();
    assert_eq!(
        denied,
        ["edit.deny \"secrets/**\""],
        "{:#?}",
        outcome.permissions
    );
}
