//! `coding.policy` travels with the task: a worker whose own config has no policy runs the
//! real `opencode run` executor under the client's policy, and the decisions come back in the
//! client's outcome.

use std::sync::Arc;
use std::time::Duration;

use station_backend_cli::{CliBackend, CliConfig};
use station_backend_nats::WorkerOptions;
use station_core::policy::{PolicyConfig, Verdict};
use station_core::{CodingBackend, OpenRequest, RunOptions, Task, start_task};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{
    NatsServer, OPENCODE_ENV_REMOVE, OPENCODE_MODEL, opencode_bin, opencode_env,
};

use crate::support::{config, worker_and_client};

/// The policy of issue 19's example.
fn example_policy() -> PolicyConfig {
    serde_json::from_value(serde_json::json!({
        "edit": { "deny": ["secrets/**", "**/.env"] },
        "bash": { "allow": ["*"], "deny": ["rm -rf *", "git push*", "curl *"] },
        "outside_workspace": "deny",
        "network": "allow",
        "unmatched": "allow",
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_travels_with_the_task_to_the_worker() {
    let server = NatsServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let script = Script::new().on(
        "three things",
        vec![
            Step::write("secrets/key.txt", "k=1\n"),
            Step::bash("rm -rf data"),
            Step::write("ok.py", "print('ok')\n"),
            Step::text("Done."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let base = root.path().join("workspaces");
    // The worker's executor has no policy of its own (only "no writes outside").
    let executor: Arc<dyn CodingBackend> = Arc::new(
        CliBackend::new(CliConfig {
            binary: opencode_bin().to_string_lossy().into_owned(),
            timeout_sec: 150,
            model: Some(OPENCODE_MODEL.into()),
        })
        .with_env(opencode_env(&root.path().join("home"), &model))
        .with_env_remove(OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(base.clone()),
    );
    let nats = config(&server);
    let (_worker, client) = worker_and_client(
        &nats,
        executor,
        base.clone(),
        "w-policy",
        WorkerOptions::default(),
    )
    .await;
    let client = Arc::new(
        Arc::try_unwrap(client)
            .expect("the only handle")
            .with_policy(example_policy()),
    );
    let ws = base.join("policy-ws");
    std::fs::create_dir_all(ws.join("data")).unwrap();
    std::fs::write(ws.join("data/keep.txt"), "keep\n").unwrap();
    let session = client
        .open(OpenRequest {
            workspace: Some("policy-ws".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let options = RunOptions {
        default_timeout: Duration::from_secs(150),
        ..RunOptions::default()
    };
    let run = start_task(client, session, Task::new("Do the three things"), &options);
    let outcome = tokio::time::timeout(Duration::from_secs(180), run.follow(|_| {}))
        .await
        .expect("the task ends")
        .expect("the task runs");
    assert_eq!(
        std::fs::read_to_string(ws.join("ok.py")).ok().as_deref(),
        Some("print('ok')\n"),
        "{outcome:#?}"
    );
    assert!(!ws.join("secrets/key.txt").exists(), "{outcome:#?}");
    assert_eq!(
        std::fs::read_to_string(ws.join("data/keep.txt")).unwrap(),
        "keep\n"
    );
    let denied: Vec<&str> = outcome
        .permissions
        .iter()
        .filter(|p| p.verdict == Verdict::Deny)
        .map(|p| p.rule.as_str())
        .collect();
    assert_eq!(
        denied,
        ["edit.deny \"secrets/**\"", "bash.deny \"rm -rf *\""],
        "{:#?}",
        outcome.permissions
    );
    assert!(outcome.policy_gaps.is_empty(), "{:#?}", outcome.policy_gaps);
}
