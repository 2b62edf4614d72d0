//! `coding.policy` rendered into the real Gemini CLI's policy engine, with the denials in the
//! outcome.

use std::sync::Arc;

use station_core::CodingBackend;
use station_core::policy::{PolicyConfig, Verdict};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::policy_scenario as scenario;

use crate::real_gemini::{open_in, real_backend, run};

#[tokio::test(flavor = "multi_thread")]
async fn gemini_obeys_the_policy_and_the_outcome_lists_the_denials() {
    let model = ScriptedModel::start(scenario::script()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let backend: Arc<dyn CodingBackend> = Arc::new(
        real_backend(&home, &model, &tmp.path().join("managed"))
            .with_policy(scenario::example_policy()),
    );
    let ws = tmp.path().join("ws");
    scenario::prepare_workspace(&ws);
    let session = open_in(&backend, &ws).await;
    let (outcome, events) = run(&backend, &session, scenario::INSTRUCTION).await;
    scenario::assert_obeyed(&ws, &outcome, &format!("{events:#?}"));
    // The policy file lived in a Station-owned temporary directory; ~/.gemini holds none.
    assert!(!home.join(".gemini/policies").exists());
}

/// `unmatched: deny` is a default deny in Gemini's policy with the allow patterns carved
/// out of it. (The CLI does not even offer the model a tool that is denied outright, such as
/// `write_file` here, so only the shell call reaches the audit.)
#[tokio::test(flavor = "multi_thread")]
async fn gemini_denies_what_no_rule_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let script = Script::new().on(
        "strict",
        vec![
            Step::bash("mkdir made"),
            Step::bash("touch nope.txt"),
            Step::write("notes.txt", "n\n"),
            Step::text("Done."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let policy: PolicyConfig = serde_json::from_value(serde_json::json!({
        "bash": {"allow": ["mkdir *"]},
        "unmatched": "deny"
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
    let session = open_in(&backend, &ws).await;
    let (outcome, events) = run(&backend, &session, "Be strict").await;
    assert!(ws.join("made").is_dir(), "{outcome:#?}\n{events:#?}");
    assert!(!ws.join("nope.txt").exists(), "{outcome:#?}");
    assert!(!ws.join("notes.txt").exists(), "{outcome:#?}");
    let denied: Vec<(&str, &str)> = outcome
        .permissions
        .iter()
        .filter(|p| p.verdict == Verdict::Deny)
        .map(|p| (p.action.target(), p.rule.as_str()))
        .collect();
    assert_eq!(
        denied,
        [("touch nope.txt", "unmatched")],
        "{:#?}",
        outcome.permissions
    );
}

/// Without a policy, writes outside the workspace are refused (by the CLI's own workspace
/// check, which comes before its policy engine) and the audit records the denial.
#[tokio::test(flavor = "multi_thread")]
async fn gemini_refuses_writes_outside_the_workspace_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside.txt");
    let script = Script::new().on(
        "outside",
        vec![
            Step::write(outside.to_string_lossy(), "o\n"),
            Step::write("inside.txt", "i\n"),
            Step::text("Done."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(real_backend(
        &tmp.path().join("home"),
        &model,
        &tmp.path().join("managed"),
    ));
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let session = open_in(&backend, &ws).await;
    let (outcome, events) = run(&backend, &session, "Write outside").await;
    assert!(ws.join("inside.txt").is_file(), "{outcome:#?}\n{events:#?}");
    assert!(!outside.exists(), "{outcome:#?}");
    let refused = outcome
        .tool_calls
        .iter()
        .find(|c| c.input["file_path"] == outside.to_string_lossy().as_ref())
        .unwrap_or_else(|| panic!("{outcome:#?}"));
    assert!(refused.error.is_some(), "{refused:#?}");
    let denied: Vec<&str> = outcome
        .permissions
        .iter()
        .filter(|p| p.verdict == Verdict::Deny)
        .map(|p| p.rule.as_str())
        .collect();
    assert_eq!(denied, ["outside_workspace"], "{:#?}", outcome.permissions);
}
