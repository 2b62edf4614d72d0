//! Issue 19's policy scenario, the same on every backend: with [`example_policy`], a scripted
//! model ([`script`]) tries to write `secrets/key.txt`, run `rm -rf data` and write `ok.py`;
//! the agent must end with `ok.py` written, the secret absent, `data/` intact and both
//! denials ([`EXPECTED_DENIALS`]) in the outcome.

use std::path::Path;

use station_core::Outcome;
use station_core::policy::{PolicyConfig, Verdict};

use crate::model_server::{Script, Step};

/// The instruction the scripted model answers with the three attempts.
pub const INSTRUCTION: &str = "Do the three things";

/// The rules of the two denials, in order.
pub const EXPECTED_DENIALS: [&str; 2] = ["edit.deny \"secrets/**\"", "bash.deny \"rm -rf *\""];

/// The policy of issue 19's example.
pub fn example_policy() -> PolicyConfig {
    serde_json::from_value(serde_json::json!({
        "edit": {"deny": ["secrets/**", "**/.env"]},
        "bash": {"allow": ["*"], "deny": ["rm -rf *", "git push*", "curl *"]},
        "outside_workspace": "deny",
        "network": "allow",
        "unmatched": "allow"
    }))
    .expect("the example policy parses")
}

/// The model's side: the three attempts, then "Done.".
pub fn script() -> Script {
    Script::new().on(
        "three things",
        vec![
            Step::write("secrets/key.txt", "k=1\n"),
            Step::bash("rm -rf data"),
            Step::write("ok.py", "print('ok')\n"),
            Step::text("Done."),
        ],
    )
}

/// Create `ws` with `data/keep.txt`, the file `rm -rf data` would destroy.
pub fn prepare_workspace(ws: &Path) {
    std::fs::create_dir_all(ws.join("data")).expect("create the workspace");
    std::fs::write(ws.join("data/keep.txt"), "keep\n").expect("write data/keep.txt");
}

/// The rules of the outcome's denials, in order.
pub fn denied_rules(outcome: &Outcome) -> Vec<&str> {
    outcome
        .permissions
        .iter()
        .filter(|p| p.verdict == Verdict::Deny)
        .map(|p| p.rule.as_str())
        .collect()
}

/// `ok.py` was written and `data/` is intact.
pub fn assert_allowed_work_done(ws: &Path, outcome: &Outcome, context: &str) {
    assert_eq!(
        std::fs::read_to_string(ws.join("ok.py")).unwrap_or_default(),
        "print('ok')\n",
        "ok.py not written\n{outcome:#?}\n{context}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("data/keep.txt")).unwrap_or_default(),
        "keep\n",
        "data/ not intact\n{outcome:#?}\n{context}"
    );
}

/// The whole scenario held: the allowed work done, the secret absent, both denials listed.
pub fn assert_obeyed(ws: &Path, outcome: &Outcome, context: &str) {
    assert_allowed_work_done(ws, outcome, context);
    assert!(
        !ws.join("secrets/key.txt").exists(),
        "secrets/key.txt written\n{outcome:#?}\n{context}"
    );
    assert_eq!(
        denied_rules(outcome),
        EXPECTED_DENIALS,
        "{:#?}\n{context}",
        outcome.permissions
    );
}
