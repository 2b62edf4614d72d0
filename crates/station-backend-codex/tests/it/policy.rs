//! `coding.policy` rendered into the real `codex`'s sandbox and exec policy rules, with the
//! decisions (and what Codex cannot enforce) in the outcome.

use std::sync::Arc;

use station_core::policy::{PolicyConfig, Verdict};
use station_core::{CodingBackend, RunOptions};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::policy_scenario as scenario;

use crate::real_codex::{open, real_backend, run};

#[tokio::test(flavor = "multi_thread")]
async fn codex_obeys_the_policy_as_far_as_it_can_express_it() {
    let model = ScriptedModel::start(scenario::script()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let backend: Arc<dyn CodingBackend> = Arc::new(
        real_backend(&home, &model, &tmp.path().join("managed"))
            .with_policy(scenario::example_policy()),
    );
    let ws = tmp.path().join("ws");
    scenario::prepare_workspace(&ws);
    let session = open(&backend, &ws).await;
    let (outcome, events) = run(
        &backend,
        &session,
        scenario::INSTRUCTION,
        &RunOptions::default(),
    )
    .await;
    scenario::assert_allowed_work_done(&ws, &outcome, &format!("{events:#?}"));
    // Codex cannot express edit patterns: the outcome says so instead of pretending.
    assert!(
        outcome
            .policy_gaps
            .iter()
            .any(|g| g.starts_with("edit.deny \"secrets/**\"")),
        "{:#?}",
        outcome.policy_gaps
    );
    assert_eq!(
        scenario::denied_rules(&outcome),
        ["bash.deny \"rm -rf *\""],
        "{:#?}",
        outcome.permissions
    );
    let secrets = outcome
        .permissions
        .iter()
        .find(|p| p.action.target().ends_with("secrets/key.txt"))
        .unwrap_or_else(|| panic!("{:#?}", outcome.permissions));
    assert_eq!(
        (secrets.verdict, secrets.rule.as_str()),
        (
            Verdict::Allow,
            "edit.deny \"secrets/**\" (not enforced by codex: a policy gap)"
        )
    );
    // The run's rules file is gone; Codex's home keeps nothing of Station's.
    let rules = home.join("codex/rules");
    let left: Vec<_> = std::fs::read_dir(&rules)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Codex refuses `rm -rf` by itself; a command it would run shows that the policy's
/// `bash.deny` reaches its exec policy.
#[tokio::test(flavor = "multi_thread")]
async fn codex_forbids_the_commands_the_policy_denies() {
    let script = Script::new().on(
        "touch it",
        vec![
            Step::bash("touch forbidden.txt"),
            Step::bash("mkdir allowed"),
            Step::text("Done."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let policy: PolicyConfig = serde_json::from_value(serde_json::json!({
        "bash": {"deny": ["touch *"]}
    }))
    .unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(
        real_backend(
            &tmp.path().join("home"),
            &model,
            &tmp.path().join("managed"),
        )
        .with_policy(policy),
    );
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let session = open(&backend, &ws).await;
    let (outcome, events) = run(&backend, &session, "touch it", &RunOptions::default()).await;
    assert!(ws.join("allowed").is_dir(), "{outcome:#?}\n{events:#?}");
    assert!(!ws.join("forbidden.txt").exists(), "{outcome:#?}");
    let denied: Vec<(&str, &str)> = outcome
        .permissions
        .iter()
        .filter(|p| p.verdict == Verdict::Deny)
        .map(|p| (p.action.target(), p.rule.as_str()))
        .collect();
    assert_eq!(
        denied,
        [("touch forbidden.txt", "bash.deny \"touch *\"")],
        "{:#?}",
        outcome.permissions
    );
}
