//! `coding.policy` rendered into the real Gemini CLI's policy engine, with the denials in the
//! outcome.

use std::sync::Arc;

use station_core::CodingBackend;
use station_core::policy::{PolicyConfig, Verdict};
use station_testkit::model_server::{Script, ScriptedModel, Step};

use crate::real_gemini::{open_in, real_backend, run};

/// The policy of issue 19's example.
fn example_policy() -> PolicyConfig {
    serde_json::from_value(serde_json::json!({
        "edit": {"deny": ["secrets/**", "**/.env"]},
        "bash": {"allow": ["*"], "deny": ["rm -rf *", "git push*", "curl *"]},
        "outside_workspace": "deny",
        "network": "allow",
        "unmatched": "allow"
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_obeys_the_policy_and_the_outcome_lists_the_denials() {
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
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let backend: Arc<dyn CodingBackend> = Arc::new(
        real_backend(&home, &model, &tmp.path().join("managed")).with_policy(example_policy()),
    );
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(ws.join("data")).unwrap();
    std::fs::write(ws.join("data/keep.txt"), "keep\n").unwrap();
    let session = open_in(&backend, &ws).await;
    let (outcome, events) = run(&backend, &session, "Do the three things").await;
    assert_eq!(
        std::fs::read_to_string(ws.join("ok.py")).unwrap_or_default(),
        "print('ok')\n",
        "{outcome:#?}\n{events:#?}"
    );
    assert!(
        !ws.join("secrets/key.txt").exists(),
        "{outcome:#?}\n{events:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("data/keep.txt")).unwrap_or_default(),
        "keep\n",
        "{outcome:#?}\n{events:#?}"
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
    // The policy file lived in a Station-owned temporary directory; ~/.gemini holds none.
    assert!(!home.join(".gemini/policies").exists());
}
