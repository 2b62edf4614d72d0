//! The parser pinned by snapshots over recorded and hand-made stream-json transcripts.

use serde_json::Value;
use station_backend_claude::parser::{MAX_TOOL_OUTPUT_BYTES, StreamParser};
use station_core::{EventKind, StopReason};

use crate::support::{fixture, shorten};

/// Every event of a transcript (as JSON), what the parser kept, and the outcome it gives.
fn parse(text: &str) -> Value {
    let mut parser = StreamParser::new();
    let mut events = Vec::new();
    for line in text.split('\n') {
        events.extend(parser.push_line(line));
    }
    events.extend(parser.finish());
    let report = parser.report();
    let outcome = report.outcome();
    // The report's tool calls are the outcome's; not repeated.
    let mut parsed = serde_json::json!({
        "events": events,
        "result": report.result,
        "cwd": report.cwd,
        "malformed_lines": report.malformed_lines,
        "outcome": outcome,
    });
    if let Some(api) = &report.api_error {
        parsed["api_error"] = serde_json::json!(api);
    }
    shorten(parsed)
}

macro_rules! snapshot_fixture {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            insta::assert_yaml_snapshot!(parse(&fixture($file)));
        }
    };
}

snapshot_fixture!(create_then_resume, "claude-stream-create-then-resume.jsonl");
snapshot_fixture!(fizzbuzz_four_turns, "claude-fizzbuzz.jsonl");
snapshot_fixture!(partial_messages, "claude-partial-messages.jsonl");
snapshot_fixture!(output_json_result_only, "claude-output-json.json");
snapshot_fixture!(tool_errors, "handmade-tool-error.jsonl");
snapshot_fixture!(max_turns, "captured-max-turns.jsonl");
snapshot_fixture!(api_error, "captured-api-error.jsonl");
snapshot_fixture!(api_retries, "captured-api-retry.jsonl");
snapshot_fixture!(resume_not_found, "captured-resume-not-found.jsonl");
snapshot_fixture!(malformed_lines, "handmade-malformed.jsonl");

#[test]
fn the_outcome_uses_the_result_line_not_the_interim_narration() {
    let parsed = parse(&fixture("claude-fizzbuzz.jsonl"));
    let outcome = &parsed["outcome"];
    assert_eq!(
        outcome["summary"],
        "Implemented FizzBuzz in fizz_cc.py, ran it, and extended it to 30."
    );
    assert_eq!(outcome["cost_usd"], 0.38664);
    assert_eq!(outcome["usage"]["input_tokens"], 77128);
    assert_eq!(outcome["usage"]["output_tokens"], 40);
    let names: Vec<&str> = outcome["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Write", "Bash", "Edit"]);
    assert!(
        outcome["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["output"].is_string()),
        "every call has its output: {outcome}"
    );
}

#[test]
fn max_turns_and_api_errors_are_distinct_failures() {
    let max = parse(&fixture("captured-max-turns.jsonl"));
    assert_eq!(max["outcome"]["stop_reason"], "max_turns");
    assert_eq!(max["outcome"]["success"], false);
    assert!(
        max["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("max_turns"),
        "{}",
        max["outcome"]
    );
    let api = parse(&fixture("captured-api-error.jsonl"));
    assert_eq!(api["outcome"]["stop_reason"], "error");
    let error = api["outcome"]["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 400") && error.contains("bad thing happened"),
        "{error}"
    );
}

#[test]
fn session_id_is_announced_once_per_id() {
    let parsed = parse(&fixture("claude-stream-create-then-resume.jsonl"));
    let announced: Vec<&Value> = parsed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "backend_session")
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
}

#[test]
fn a_ten_megabyte_line_is_parsed_and_its_output_cut() {
    let session = "7b1c2d3e-0000-4000-8000-00000000a002";
    let big = "0123456789abcdef".repeat(10 * 1024 * 1024 / 16);
    let lines = [
        serde_json::json!({"type":"system","subtype":"init","session_id":session,"model":"claude-opus-4-8","cwd":"/w"}),
        serde_json::json!({"type":"assistant","message":{"id":"m1","model":"claude-opus-4-8","content":[{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/w/big.txt"}}],"usage":{"input_tokens":10,"output_tokens":1}},"session_id":session}),
        serde_json::json!({"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":big}]},"session_id":session}),
        serde_json::json!({"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"read it","session_id":session,"total_cost_usd":0.5,"usage":{"input_tokens":20,"output_tokens":3}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert!(text.len() > 10 * 1024 * 1024);
    let mut parser = StreamParser::new();
    let mut events = Vec::new();
    for line in text.lines() {
        events.extend(parser.push_line(line));
    }
    let finished = events.iter().find_map(|e| match e {
        EventKind::ToolFinished {
            output: Some(output),
            ..
        } => Some(output.clone()),
        _ => None,
    });
    let output = finished.expect("the tool result was parsed");
    assert!(
        output.len() < MAX_TOOL_OUTPUT_BYTES + 100 && output.starts_with("0123456789abcdef"),
        "{}",
        output.len()
    );
    assert!(
        output.ends_with("more bytes cut]"),
        "{}",
        &output[output.len() - 40..]
    );
    let outcome = parser.report().outcome();
    assert_eq!(
        (
            outcome.success,
            outcome.stop_reason,
            outcome.summary.as_str()
        ),
        (true, StopReason::Completed, "read it")
    );
    insta::assert_yaml_snapshot!(shorten(serde_json::to_value(&events).unwrap()));
}

/// Claude Code retrying a failing model API: each retry is a notice, and a run stopped before
/// its `result` still knows which API error held it up.
#[test]
fn api_retries_are_notices_and_name_the_api_error() {
    let text = fixture("captured-api-retry.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    let mut parser = StreamParser::new();
    let notices: Vec<String> = lines[..2]
        .iter()
        .flat_map(|l| parser.push_line(l))
        .filter_map(|e| match e {
            EventKind::Notice { message } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices[1].starts_with("Claude API error 500 (server_error), retry 2/3 in 1.0 s"),
        "{notices:?}"
    );
    let api = parser.report().api_error.expect("the API error is kept");
    assert_eq!((api.status, api.retries), (Some(500), 2));
    assert_eq!(
        api.describe(),
        "the model API answered HTTP 500: server_error (after 2 retries)"
    );
    // The final result names the API error and how often it was retried.
    for line in &lines[2..] {
        parser.push_line(line);
    }
    let error = parser.report().outcome().error.unwrap();
    assert!(
        error.starts_with("the model API answered HTTP 500: API Error: 500 scripted fault")
            && error.ends_with("(after 3 retries)"),
        "{error}"
    );
}
