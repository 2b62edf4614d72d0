//! Snapshots of what the parser makes of captured `gemini --output-format stream-json` output.

use serde::Serialize;
use station_backend_gemini::parser::{RunReport, StreamParser};
use station_core::EventKind;

#[derive(Serialize)]
struct Parsed {
    events: Vec<EventKind>,
    report: RunReport,
}

fn parse_fixture(name: &str) -> Parsed {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut parser = StreamParser::new();
    let events = text
        .lines()
        .flat_map(|line| parser.push_line(line))
        .collect();
    Parsed {
        events,
        report: parser.into_report(),
    }
}

#[test]
fn create_streams_text_then_the_write_then_the_answer() {
    let parsed = parse_fixture("gemini-p-1-create.jsonl");
    let r = &parsed.report;
    assert_eq!(
        r.session_id.as_deref(),
        Some("ed22165a-0c6a-4e91-b5dc-fd14e3f9c3db")
    );
    assert_eq!(r.summary, "Created gm_hello.py, which prints Hello Gemini.");
    let result = r.result.as_ref().unwrap();
    assert!(result.is_success());
    assert_eq!(
        (result.usage.input_tokens, result.usage.output_tokens),
        (24081, 30)
    );
    assert_eq!(
        result.model.as_deref(),
        Some("gemini-3.8-flash"),
        "the main model, not the router"
    );
    assert!(
        parsed.events.iter().any(
            |e| matches!(e, EventKind::FileEdited { path } if path == "/WORKDIR/ws/gm_hello.py")
        )
    );
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn resume_keeps_the_session_and_runs_the_shell() {
    let parsed = parse_fixture("gemini-p-2-resume.jsonl");
    let r = &parsed.report;
    assert_eq!(r.tool_calls[0].name, "run_shell_command");
    assert_eq!(r.tool_calls[0].output.as_deref(), Some("Hello Gemini"));
    assert_eq!(r.summary, "Ran the command.");
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn fizzbuzz_four_turns() {
    let parsed = parse_fixture("gemini-p-3-fizzbuzz.jsonl");
    let r = &parsed.report;
    let names: Vec<&str> = r.tool_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["write_file", "run_shell_command", "replace"]);
    assert_eq!(
        r.summary,
        "Implemented FizzBuzz in fb.py, ran it, and extended it to 30."
    );
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn sigint_leaves_no_result() {
    let parsed = parse_fixture("gemini-p-5-sigint.jsonl");
    assert!(parsed.report.result.is_none());
    assert!(
        parsed.report.summary.starts_with("tick1 tick2"),
        "{}",
        parsed.report.summary
    );
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn api_error_result() {
    let parsed = parse_fixture("captured-api-error.jsonl");
    let result = parsed.report.result.as_ref().unwrap();
    assert!(!result.is_success() && !result.is_turn_limit());
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .contains("scripted fault: HTTP 400")
    );
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn turn_limit_result() {
    let parsed = parse_fixture("captured-turn-limit.jsonl");
    assert!(parsed.report.result.as_ref().unwrap().is_turn_limit());
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn tool_errors_noise_and_unknown_lines() {
    let parsed = parse_fixture("handmade-tool-error-and-noise.jsonl");
    let r = &parsed.report;
    assert_eq!(r.malformed_lines, 3);
    assert_eq!(
        r.tool_calls[0].error.as_deref(),
        Some("File not found: /WORKDIR/ws/missing.py")
    );
    assert_eq!(r.errors, ["Loop detected, stopping execution"]);
    assert_eq!(r.summary, "The file does not exist.");
    let usage = r.result.as_ref().unwrap().usage;
    assert_eq!((usage.input_tokens, usage.cache_read_tokens), (60, 40));
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn secrets_in_tool_arguments_and_output_are_redacted() {
    let token = format!("ghp_{}", "x".repeat(36));
    let mut parser = StreamParser::new();
    let mut events = parser.push_line(&format!(
        r#"{{"type":"tool_use","tool_name":"run_shell_command","tool_id":"t1","parameters":{{"command":"echo {token}"}}}}"#
    ));
    events.extend(parser.push_line(&format!(
        r#"{{"type":"tool_result","tool_id":"t1","status":"success","output":"{token}"}}"#
    )));
    let shown =
        serde_json::to_string(&events).unwrap() + &serde_json::to_string(parser.report()).unwrap();
    assert!(!shown.contains(&token), "{shown}");
}
