//! Unit tests of the stream-json parser (snapshot tests are in tests/it/parser.rs).

use station_core::StopReason;

use super::messages::tool_result_text;
use super::text::{redact_json, truncate};
use super::*;

#[test]
fn truncate_respects_char_boundaries() {
    let text = "é".repeat(10);
    let cut = truncate(&text, 5);
    assert!(cut.starts_with("éé") && !cut.starts_with("ééé"), "{cut}");
    assert!(cut.ends_with("[16 more bytes cut]"), "{cut}");
    assert_eq!(truncate("short", 10), "short");
}

#[test]
fn tool_result_blocks_are_joined() {
    let content = serde_json::json!([{"type": "text", "text": "a"}, {"type": "image", "source": {}}, {"type": "text", "text": "b"}]);
    assert_eq!(tool_result_text(Some(&content)), "a\n[image]\nb");
    assert_eq!(tool_result_text(Some(&Value::String("x".into()))), "x");
    assert_eq!(tool_result_text(None), "");
}

#[test]
fn secrets_in_tool_input_are_redacted_and_json_stays_valid() {
    let token = format!("ghp_{}", "Ab1x".repeat(9));
    let input =
        serde_json::json!({"command": format!("git clone https://{token}@github.com/o/r"), "n": 1});
    let out = redact_json(input);
    let text = out.to_string();
    assert!(!text.contains(&token), "{text}");
    assert_eq!(out["n"], 1);
}

#[test]
fn rejected_credentials_point_at_claude_login() {
    let mut p = StreamParser::new();
    p.push_line(r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Invalid API key"}"#);
    let outcome = p.report().outcome();
    assert_eq!(outcome.stop_reason, StopReason::Error);
    let error = outcome.error.unwrap();
    assert!(
        error.contains("HTTP 401") && error.contains("claude login"),
        "{error}"
    );
}

#[test]
fn usage_is_not_summed_over_split_assistant_lines() {
    let mut p = StreamParser::new();
    let line = |block: &str| {
        format!(
            r#"{{"type":"assistant","message":{{"id":"m1","model":"claude-x","content":[{block}],"usage":{{"input_tokens":100,"output_tokens":1}}}},"session_id":"s"}}"#
        )
    };
    let mut events = p.push_line(&line(r#"{"type":"text","text":"hi"}"#));
    events.extend(p.push_line(&line(
        r#"{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}"#,
    )));
    events.extend(p.finish());
    let steps: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, EventKind::StepFinished { .. }))
        .collect();
    assert_eq!(steps.len(), 1, "{events:?}");
}

fn events_of(lines: &[&str]) -> (Vec<EventKind>, RunReport) {
    let mut p = StreamParser::new();
    let mut events = Vec::new();
    for line in lines {
        events.extend(p.push_line(line));
    }
    events.extend(p.finish());
    (events, p.report())
}

#[test]
fn fields_of_unexpected_json_types_read_as_absent() {
    let (events, report) = events_of(&[
        r#"{"type":"assistant","session_id":7,"message":{"id":5,"model":["m"],"usage":"lots","content":[1,"s",{"type":"text","text":{"a":1}},{"type":"text","text":"ok"},{"type":"tool_use","id":"t1","name":3,"input":null}]}}"#,
        r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"a"},{"type":"image"}],"is_error":"no"},{"type":"tool_result","tool_use_id":"t2","content":42}]}}"#,
        r#"{"type":"result","subtype":1,"is_error":"yes","num_turns":-1,"api_error_status":4.5,"total_cost_usd":2,"usage":[],"errors":["a",{"b":1}],"result":"done","terminal_reason":null}"#,
    ]);
    let expected = vec![
        EventKind::Text { text: "ok".into() },
        EventKind::ToolStarted {
            call_id: Some("t1".into()),
            name: "unknown".into(),
            input: Value::Null,
        },
        EventKind::ToolFinished {
            call_id: Some("t1".into()),
            name: "unknown".into(),
            output: Some("a\n[image]".into()),
            error: None,
        },
        EventKind::ToolFinished {
            call_id: Some("t2".into()),
            name: "unknown".into(),
            output: Some("42".into()),
            error: None,
        },
    ];
    assert_eq!(events, expected);
    assert_eq!(report.session_id, None);
    assert_eq!(report.model, None);
    let result = report.result.unwrap();
    assert_eq!(
        result,
        RunResult {
            subtype: String::new(),
            is_error: false,
            api_error_status: None,
            num_turns: None,
            text: Some("done".into()),
            errors: vec!["a".into(), r#"{"b":1}"#.into()],
            terminal_reason: None,
            usage: Usage::default(),
            cost_usd: Some(2.0),
            session_id: None,
        }
    );
}

#[test]
fn json_that_is_not_an_object_is_ignored_not_malformed() {
    let (events, report) = events_of(&[r#"["assistant",{"content":[]}]"#, "\"text\"", "5"]);
    assert_eq!(events, []);
    assert_eq!(report.malformed_lines, 0);
}

#[test]
fn duplicate_keys_take_the_last_value_as_a_json_value_would() {
    let (events, report) = events_of(&[
        r#"{"type":"system","type":"assistant","message":{"content":[{"type":"text","text":"first","text":"second"}]}}"#,
    ]);
    assert_eq!(
        events,
        [EventKind::Text {
            text: "second".into()
        }]
    );
    assert_eq!(report.malformed_lines, 0);
}

#[test]
fn escaped_strings_are_unescaped() {
    let (events, _) = events_of(&[
        r#"{"type":"assistant","message":{"content":[{"type":"text","text":"a \"quoted\"\nline \u00e9"}]}}"#,
    ]);
    assert_eq!(
        events,
        [EventKind::Text {
            text: "a \"quoted\"\nline é".into()
        }]
    );
}

#[test]
fn no_secret_leaves_the_parser() {
    let token = format!("ghp_{}", "Zq9w".repeat(9));
    let lines = [
        format!(
            r#"{{"type":"stream_event","event":{{"type":"content_block_delta","delta":{{"type":"text_delta","text":"delta {token}"}}}}}}"#
        ),
        format!(
            r#"{{"type":"assistant","message":{{"id":"m","model":"c","content":[{{"type":"thinking","thinking":"think {token}"}},{{"type":"text","text":"say {token}"}},{{"type":"tool_use","id":"t","name":"Write","input":{{"file_path":"/w/{token}","content":["{token}"]}}}}]}}}}"#
        ),
        format!(
            r#"{{"type":"user","message":{{"content":[{{"type":"tool_result","tool_use_id":"t","content":"wrote \"{token}\""}}]}}}}"#
        ),
        format!(
            r#"{{"type":"result","subtype":"error_during_execution","is_error":true,"result":"end {token}","errors":["err {token}",{{"k":"{token}"}}]}}"#
        ),
        format!("not json {token}"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (events, report) = events_of(&lines);
    let all = serde_json::json!({
        "events": events,
        "report": report,
        "outcome": report.outcome(),
    })
    .to_string();
    assert!(!all.contains(&token[4..]), "{all}");
    // 8 in events, 7 in the report, 6 in the outcome.
    assert_eq!(all.matches("[REDACTED]").count(), 21, "{all}");
}
