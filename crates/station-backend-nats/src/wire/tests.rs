//! Wire tests: key rules, secrets, event round trips and plugin compatibility.

use super::*;
use station_core::{EventKind, StopReason, Usage};

#[test]
fn kv_keys_follow_nats_rules() {
    assert!(is_valid_key("session-1a2b3c4d"));
    assert!(is_valid_key("stn_0190abc"));
    assert!(!is_valid_key(""));
    assert!(!is_valid_key(".hidden"));
    assert!(!is_valid_key("a b"));
    assert!(!is_valid_key("a*"));
}

#[test]
fn tokens_are_read_but_never_written() {
    let token = format!("ghp_{}", "x".repeat(36));
    let json = format!(r#"{{"url":"https://example.invalid/r.git","token":"{token}"}}"#);
    let spec: GitSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(
        spec.token.as_ref().map(|t| t.expose().to_string()),
        Some(token.clone())
    );
    let out = serde_json::to_string(&spec).unwrap();
    assert!(!out.contains(&token), "{out}");
    assert!(!format!("{spec:?}").contains(&token));
}

#[test]
fn core_events_round_trip_through_the_stream() {
    let kinds = vec![
        EventKind::Text { text: "hi".into() },
        EventKind::TextDelta { text: "h".into() },
        EventKind::ToolStarted {
            call_id: Some("c1".into()),
            name: "write".into(),
            input: serde_json::json!({"path": "a"}),
        },
        EventKind::ToolFinished {
            call_id: Some("c1".into()),
            name: "write".into(),
            output: Some("ok".into()),
            error: None,
        },
        EventKind::StepFinished {
            usage: Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            },
            cost_usd: Some(0.5),
        },
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let ev = stream_event_from_core("t", i as u64 + 1, "w", &kind);
        let json = serde_json::to_string(&ev).unwrap();
        let back: StreamEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(core_event_from_stream(&back), Some(kind));
    }
}

#[test]
fn plugin_tool_end_maps_without_the_extension() {
    let ev: StreamEvent = serde_json::from_str(
            r#"{"taskID":"t","seq":3,"timestamp":"2025-01-01T00:00:00.000Z","type":"tool_end","tool":{"name":"write","callID":"c9","output":"Wrote file"}}"#,
        )
        .unwrap();
    assert_eq!(
        core_event_from_stream(&ev),
        Some(EventKind::ToolFinished {
            call_id: Some("c9".into()),
            name: "write".into(),
            output: Some("Wrote file".into()),
            error: None
        })
    );
    let call = tool_call_from_stream(&ev).unwrap();
    assert_eq!(
        (call.name.as_str(), call.output.as_deref()),
        ("write", Some("Wrote file"))
    );
}

#[test]
fn outcome_from_a_plugin_error_result() {
    let r: ResultMessage = serde_json::from_str(
            r#"{"taskID":"t","status":"error","error":"boom","errorType":"Error","session":{"name":"s","opencodeID":"","messageCount":0},"workspace":{"name":"w","path":""},"metrics":{"duration":0,"toolCalls":0,"streamEvents":1}}"#,
        )
        .unwrap();
    let o = r.to_outcome("s", vec![]);
    assert!(!o.success);
    assert_eq!(o.stop_reason, StopReason::Error);
    assert_eq!(o.error.as_deref(), Some("boom"));
    assert_eq!(o.backend_session_id.as_deref(), Some("s"));
}

#[test]
fn session_state_keeps_unknown_fields() {
    let s: SessionState = serde_json::from_str(
            r#"{"sessionName":"s","opencodeID":"ses_1","workspaceName":"w","workspacePath":"/b/w","created":"x","lastUsed":"y","messageCount":2,"future":"kept"}"#,
        )
        .unwrap();
    let out = serde_json::to_value(&s).unwrap();
    assert_eq!(out["future"], "kept");
    assert_eq!(out["messageCount"], 2);
}

#[test]
fn the_workers_patch_travels_in_the_result() {
    let r: ResultMessage = serde_json::from_str(
            r#"{"taskID":"t","status":"completed","result":"done","session":{"name":"s","opencodeID":"ses_1","messageCount":2},"workspace":{"name":"w","path":"/srv/w"},"metrics":{"duration":5,"toolCalls":1,"streamEvents":3},"files_changed":[{"path":"a.txt","action":"created","lines_added":1,"lines_removed":0}],"patch":{"text":"diff --git a/a.txt b/a.txt\nnew file mode 100644\n","truncated":false,"bytes":42}}"#,
        )
        .unwrap();
    let o = r.to_outcome("s", vec![]);
    let patch = o.patch.expect("the patch is kept");
    assert_eq!(
        (
            patch.text.as_str(),
            patch.truncated,
            patch.bytes,
            patch.path
        ),
        (
            "diff --git a/a.txt b/a.txt\nnew file mode 100644\n",
            false,
            42,
            None
        )
    );
    // A plugin result without the extension has no patch.
    let plain: ResultMessage = serde_json::from_str(
            r#"{"taskID":"t","status":"completed","session":{"name":"s","opencodeID":"","messageCount":0},"workspace":{"name":"w","path":""},"metrics":{"duration":0,"toolCalls":0,"streamEvents":0}}"#,
        )
        .unwrap();
    assert_eq!(plain.to_outcome("s", vec![]).patch, None);
}

#[test]
fn the_policy_goes_out_with_the_task_and_its_decisions_come_back_in_the_result() {
    use station_core::policy::{Action, PermissionRecord, PolicyConfig, Verdict};
    let policy: PolicyConfig =
        serde_json::from_value(serde_json::json!({"bash": {"deny": ["rm -rf *"]}})).unwrap();
    let old = r#"{"taskID":"t1","session":{"name":"s"},"workspace":{"name":"w"},"prompt":"p"}"#;
    let mut task: TaskMessage = serde_json::from_str(old).unwrap();
    assert_eq!(task.policy, None);
    task.policy = Some(policy.clone());
    let sent = serde_json::to_value(&task).unwrap();
    assert_eq!(sent["policy"]["bash"]["deny"][0], "rm -rf *", "{sent}");
    let back: TaskMessage = serde_json::from_value(sent).unwrap();
    assert_eq!(back.policy, Some(policy));

    let record = PermissionRecord {
        tool: "bash".into(),
        action: Action::Bash {
            command: "rm -rf data".into(),
        },
        verdict: Verdict::Deny,
        rule: "bash.deny \"rm -rf *\"".into(),
    };
    let mut result = ResultMessage::failure("t1", "s", "w", "x");
    result.permissions = Some(vec![record.clone()]);
    result.policy_gaps = Some(vec!["network: why".into()]);
    let text = serde_json::to_string(&result).unwrap();
    assert!(text.contains("\"policyGaps\""), "{text}");
    let outcome = serde_json::from_str::<ResultMessage>(&text)
        .unwrap()
        .to_outcome("s", Vec::new());
    assert_eq!(outcome.permissions, [record]);
    assert_eq!(outcome.policy_gaps, ["network: why"]);
}
