//! `coding.policy` enforced by the real `opencode run` (rendered into its permission config),
//! with the decisions in the outcome.

use std::sync::Arc;

use station_backend_cli::{CliBackend, CliConfig};
use station_core::policy::{PolicyConfig, Verdict};
use station_core::{CodingBackend, OpenRequest, Task};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers::{OPENCODE_ENV_REMOVE, OPENCODE_MODEL, opencode_bin, opencode_env};

use crate::support::run_task;

/// The policy of issue 19's example.
pub(crate) fn example_policy() -> PolicyConfig {
    serde_saphyr::from_str(
        r#"
edit: { deny: ["secrets/**", "**/.env"] }
bash: { allow: ["*"], deny: ["rm -rf *", "git push*", "curl *"] }
outside_workspace: deny
network: allow
unmatched: allow
"#,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn opencode_run_obeys_the_policy_and_the_outcome_lists_the_denials() {
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
    let backend = Arc::new(
        CliBackend::new(CliConfig {
            binary: opencode_bin().to_string_lossy().into_owned(),
            timeout_sec: 120,
            model: Some(OPENCODE_MODEL.into()),
        })
        .with_env(opencode_env(&root.path().join("home"), &model))
        .with_env_remove(OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(root.path().join("workspaces"))
        .with_policy(example_policy()),
    );
    let ws = root.path().join("ws");
    std::fs::create_dir_all(ws.join("data")).unwrap();
    std::fs::write(ws.join("data/keep.txt"), "keep\n").unwrap();
    let session = backend
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (events, outcome) = run_task(backend, session, Task::new("Do the three things")).await;
    let outcome = outcome.unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.join("ok.py")).unwrap(),
        "print('ok')\n",
        "{outcome:#?}\n{events:#?}"
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
}
