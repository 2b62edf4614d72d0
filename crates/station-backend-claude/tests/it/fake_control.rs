//! The control protocol against a fake `claude`: what Station answers to each kind of control
//! request, one decision per tool call, and stdin closed after the result.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use station_backend_claude::ClaudeConfig;
use station_core::policy::{PolicyConfig, Verdict};
use station_core::{RunOptions, Task, start_task};

use crate::support::Fake;

/// Reads the opening lines, sends four control requests, records the four answers, prints a
/// whole run, then waits for stdin to close before it exits.
const FAKE: &str = r#"
head -n 2 > "$FAKE_DIR/opening"
echo '{"type":"control_request","request_id":"r1","request":{"subtype":"hook_callback","callback_id":"station_policy","input":{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"rm -rf data"},"tool_use_id":"t1"},"tool_use_id":"t1"}}'
echo '{"type":"control_request","request_id":"r2","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"rm -rf data"},"tool_use_id":"t1"}}'
echo '{"type":"control_request","request_id":"r3","request":{"subtype":"can_use_tool","tool_name":"Write","input":{"file_path":"ok.py","content":"x"},"tool_use_id":"t2"}}'
echo '{"type":"control_request","request_id":"r4","request":{"subtype":"mcp_message","server_name":"s","message":{}}}'
head -n 4 > "$FAKE_DIR/answers"
cat "$FIXTURES/claude-fizzbuzz.jsonl"
cat > /dev/null
echo closed > "$FAKE_DIR/eof"
"#;

#[tokio::test]
async fn control_requests_are_answered_from_the_policy_once_per_tool_call() {
    let fake = Fake::new(FAKE).await;
    let policy: PolicyConfig =
        serde_json::from_value(serde_json::json!({ "bash": { "deny": ["rm -rf *"] } })).unwrap();
    let backend = fake.backend(ClaudeConfig::default()).with_policy(policy);
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        start_task(
            Arc::new(backend),
            fake.session(),
            Task::new("go"),
            &RunOptions::default(),
        )
        .outcome(),
    )
    .await
    .expect("the task ends")
    .expect("the task runs");

    let answers: Vec<Value> = fake
        .record("answers")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let response = |i: usize| &answers[i]["response"];
    assert_eq!(response(0)["request_id"], "r1");
    let hook = &response(0)["response"]["hookSpecificOutput"];
    assert_eq!(hook["hookEventName"], "PreToolUse");
    assert_eq!(hook["permissionDecision"], "deny");
    assert!(
        hook["permissionDecisionReason"]
            .as_str()
            .unwrap()
            .contains("bash.deny \"rm -rf *\""),
        "{hook}"
    );
    assert_eq!(response(1)["request_id"], "r2");
    assert_eq!(response(1)["response"]["behavior"], "deny");
    assert_eq!(response(2)["response"]["behavior"], "allow");
    assert_eq!(
        response(2)["response"]["updatedInput"]["file_path"],
        "ok.py"
    );
    assert_eq!(response(3)["subtype"], "error");
    assert!(
        response(3)["error"]
            .as_str()
            .unwrap()
            .contains("mcp_message"),
        "{}",
        answers[3]
    );

    let decided: Vec<(&str, Verdict)> = outcome
        .permissions
        .iter()
        .map(|p| (p.tool.as_str(), p.verdict))
        .collect();
    assert_eq!(
        decided,
        [("Bash", Verdict::Deny), ("Write", Verdict::Allow)],
        "the hook's decision is reused for the same tool call"
    );
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(
        fake.record("eof").trim(),
        "closed",
        "stdin is closed after the result"
    );
}
