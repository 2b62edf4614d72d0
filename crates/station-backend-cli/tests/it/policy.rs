//! `coding.policy` enforced by the real `opencode run` (rendered into its permission config),
//! with the decisions in the outcome.

use std::sync::Arc;

use station_backend_cli::{CliBackend, CliConfig};
use station_core::{CodingBackend, OpenRequest, Task};
use station_testkit::model_server::ScriptedModel;
use station_testkit::peers::{OPENCODE_ENV_REMOVE, OPENCODE_MODEL, opencode_bin, opencode_env};
use station_testkit::policy_scenario as scenario;

use crate::support::run_task;

#[tokio::test(flavor = "multi_thread")]
async fn opencode_run_obeys_the_policy_and_the_outcome_lists_the_denials() {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(scenario::script()).await.unwrap();
    let backend = Arc::new(
        CliBackend::new(CliConfig {
            binary: opencode_bin().to_string_lossy().into_owned(),
            timeout_sec: 120,
            model: Some(OPENCODE_MODEL.into()),
        })
        .with_env(opencode_env(&root.path().join("home"), &model))
        .with_env_remove(OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect())
        .with_workspace_base(root.path().join("workspaces"))
        .with_policy(scenario::example_policy()),
    );
    let ws = root.path().join("ws");
    scenario::prepare_workspace(&ws);
    let session = backend
        .open(OpenRequest {
            workspace: Some(ws.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (events, outcome) = run_task(backend, session, Task::new(scenario::INSTRUCTION)).await;
    let outcome = outcome.unwrap();
    scenario::assert_obeyed(&ws, &outcome, &format!("{events:#?}"));
}
