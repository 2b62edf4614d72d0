//! Unit tests of the `opencode run` stream parser.

use super::text::truncate_middle;
use super::*;

fn kinds(events: &[EventKind]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            EventKind::BackendSession { .. } => "session",
            EventKind::Text { .. } => "text",
            EventKind::Reasoning { .. } => "reasoning",
            EventKind::ToolStarted { .. } => "tool_started",
            EventKind::ToolFinished { .. } => "tool_finished",
            EventKind::FileEdited { .. } => "file_edited",
            EventKind::StepFinished { .. } => "step_finished",
            EventKind::Notice { .. } => "notice",
            _ => "other",
        })
        .collect()
}

#[test]
fn tool_lifecycle_is_reported_once_per_status() {
    let mut p = StreamParser::new();
    let pending = r#"{"type":"tool_use","sessionID":"ses_1","part":{"tool":"bash","callID":"c1","state":{"status":"running","input":{"command":"ls"}}}}"#;
    let done = r#"{"type":"tool_use","sessionID":"ses_1","part":{"tool":"bash","callID":"c1","state":{"status":"completed","input":{"command":"ls"},"output":"a\n","time":{"start":10,"end":25}}}}"#;
    assert_eq!(kinds(&p.push_line(pending)), ["session", "tool_started"]);
    assert_eq!(kinds(&p.push_line(done)), ["tool_finished"]);
    assert!(
        p.push_line(done).is_empty(),
        "a repeated completion is not reported twice"
    );
    let call = &p.report().tool_calls[0];
    assert_eq!(
        (call.output.as_deref(), call.duration_ms),
        (Some("a\n"), Some(15))
    );
}

#[test]
fn failed_tools_and_patches() {
    let mut p = StreamParser::new();
    let failed = r#"{"type":"tool_use","part":{"tool":"write","callID":"c1","state":{"status":"error","input":{"filePath":"/w/a.txt"},"error":"rejected"}}}"#;
    assert_eq!(
        kinds(&p.push_line(failed)),
        ["tool_started", "tool_finished"]
    );
    assert!(
        p.report().edited_paths.is_empty(),
        "a failed write edits nothing"
    );
    let patch = r#"{"type":"tool_use","part":{"tool":"apply_patch","callID":"c2","state":{"status":"completed","input":{"patchText":"*** Begin Patch\n*** Add File: new.txt\n+x\n*** Update File: old.txt\n*** End Patch"}}}}"#;
    assert_eq!(
        kinds(&p.push_line(patch)),
        [
            "tool_started",
            "tool_finished",
            "file_edited",
            "file_edited"
        ]
    );
    assert_eq!(p.report().edited_paths, ["new.txt", "old.txt"]);
}

#[test]
fn errors_reasoning_and_unknown_lines() {
    let mut p = StreamParser::new();
    let err = r#"{"type":"error","sessionID":"ses_9","error":{"name":"APIError","data":{"message":"Cannot connect to API"}}}"#;
    assert_eq!(kinds(&p.push_line(err)), ["session", "notice"]);
    assert_eq!(p.report().errors, ["APIError: Cannot connect to API"]);
    assert_eq!(
        kinds(&p.push_line(r#"{"type":"reasoning","part":{"text":"hmm"}}"#)),
        ["reasoning"]
    );
    assert!(
        p.push_line(r#"{"type":"future_thing","part":{}}"#)
            .is_empty()
    );
    assert!(p.push_line("   ").is_empty());
    assert_eq!(kinds(&p.push_line("[1,2]")), ["notice"]);
    assert_eq!(kinds(&p.push_line(r#"{"no":"type"}"#)), ["notice"]);
    assert_eq!(p.report().malformed_lines, 2);
}

#[test]
fn malformed_notices_are_capped() {
    let mut p = StreamParser::new();
    let notices: usize = (0..100)
        .map(|i| p.push_line(&format!("garbage {i}")).len())
        .sum();
    assert_eq!(notices as u64, MAX_MALFORMED_NOTICES);
    assert_eq!(p.report().malformed_lines, 100);
}

#[test]
fn summary_is_the_last_step_with_text_and_usage_sums() {
    let mut p = StreamParser::new();
    let lines = [
        r#"{"type":"step_start","part":{}}"#,
        r#"{"type":"text","part":{"id":"t1","text":"I'll do it."}}"#,
        r#"{"type":"step_finish","part":{"reason":"tool-calls","tokens":{"input":10,"output":2,"reasoning":1,"cache":{"read":5,"write":3}},"cost":0.25}}"#,
        r#"{"type":"step_start","part":{}}"#,
        r#"{"type":"text","part":{"id":"t2","text":"Done: part one."}}"#,
        r#"{"type":"text","part":{"id":"t3","text":"Part two."}}"#,
        r#"{"type":"text","part":{"id":"t3","text":"Part two, revised."}}"#,
        r#"{"type":"step_finish","part":{"reason":"stop","tokens":{"input":20.0,"output":4,"cache":{"read":1}},"cost":0.5}}"#,
    ];
    for l in lines {
        p.push_line(l);
    }
    let r = p.report();
    assert_eq!(r.summary, "Done: part one.\n\nPart two, revised.");
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 30,
            output_tokens: 6,
            reasoning_tokens: 1,
            cache_read_tokens: 6,
            cache_write_tokens: 3
        }
    );
    assert_eq!(r.cost_usd, Some(0.75));
    assert!(r.turn_finished);
}

#[test]
fn secrets_are_redacted() {
    let token = format!("ghp_{}", "k3Y9".repeat(9));
    let mut p = StreamParser::new();
    let line = serde_json::json!({"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"completed","input":{"command":format!("echo {token}")},"output":format!("{token}\n")}}}).to_string();
    let events = p.push_line(&line);
    let shown = format!("{events:?} {:?}", p.report());
    assert!(!shown.contains("k3Y9k3Y9"), "{shown}");
}

#[test]
fn every_emitted_text_is_redacted_escaped_or_not() {
    let token = format!("ghp_{}", "k3Y9".repeat(9));
    // `\u0067` is `g`: the token only appears once the JSON escape is decoded.
    let escaped = format!("\\u0067{}", &token[1..]);
    let lines = [
        format!(r#"{{"type":"text","part":{{"id":"t","text":"key {token}"}}}}"#),
        format!(r#"{{"type":"text","part":{{"id":"t2","text":"key {escaped}\n"}}}}"#),
        format!(r#"{{"type":"reasoning","part":{{"text":"{escaped}"}}}}"#),
        format!(
            r#"{{"type":"tool_use","part":{{"tool":"bash","callID":"c","state":{{"status":"error","input":{{"args":["{escaped}",{{"k":"{token}"}}]}},"error":"{escaped}"}}}}}}"#
        ),
        format!(r#"{{"type":"error","error":{{"name":"E","data":{{"message":"{token}"}}}}}}"#),
        format!("not json {token}"),
    ];
    let mut p = StreamParser::new();
    let events: Vec<EventKind> = lines.iter().flat_map(|l| p.push_line(l)).collect();
    assert_eq!(events.len(), 7, "{events:?}");
    let shown = format!("{events:?} {:?}", p.report());
    assert!(!shown.contains("k3Y9k3Y9"), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
}

#[test]
fn fields_of_unexpected_types_read_as_absent() {
    let mut p = StreamParser::new();
    assert_eq!(kinds(&p.push_line(r#"{"type":5,"part":{}}"#)), ["notice"]);
    assert_eq!(p.report().malformed_lines, 1);
    assert!(p.push_line(r#"{"type":"text","part":"oops"}"#).is_empty());
    assert!(
        p.push_line(r#"{"type":"text","part":{"text":["x"]}}"#)
            .is_empty()
    );
    let events = p.push_line(
        r#"{"type":"step_finish","part":{"reason":["x"],"tokens":{"input":-5,"output":3.9,"reasoning":"2","cache":{"read":1e3,"write":null}},"cost":"free"}}"#,
    );
    assert!(
        matches!(
            &events[..],
            [EventKind::StepFinished { usage, cost_usd: None }]
                if *usage == Usage { output_tokens: 3, cache_read_tokens: 1000, ..Usage::default() }
        ),
        "{events:?}"
    );
    assert_eq!(
        p.report().steps[0].finish_reason.as_deref(),
        Some(""),
        "a non-string reason reads as empty"
    );
    let events = p.push_line(
        r#"{"type":"tool_use","part":{"tool":7,"callID":{"a":1},"id":"prt_1","state":[1,2]}}"#,
    );
    assert!(
        matches!(
            &events[..],
            [EventKind::ToolStarted { call_id: Some(id), name, input: Value::Null }]
                if id == "prt_1" && name == "unknown"
        ),
        "{events:?}"
    );
    assert_eq!(p.report().malformed_lines, 1);
}

#[test]
fn repeated_keys_keep_the_last_and_sessions_come_from_parts() {
    let mut p = StreamParser::new();
    let events = p.push_line(
        r#"{"type":"text","type":"reasoning","part":{"sessionID":"ses_p","text":"a","text":"b\u00e9\n"}}"#,
    );
    assert!(
        matches!(
            &events[..],
            [EventKind::BackendSession { backend_session_id }, EventKind::Reasoning { text }]
                if backend_session_id == "ses_p" && text == "b\u{e9}\n"
        ),
        "{events:?}"
    );
    let mut p = StreamParser::new();
    let events =
        p.push_line(r#"{"type":"step_start","sessionID":"","part":{"sessionID":"ses_x"}}"#);
    assert!(
        events.is_empty() && p.report().session_id.is_none(),
        "an empty top-level id is no id, and the part's is not used instead"
    );
}

#[test]
fn a_later_input_replaces_the_first_unless_empty() {
    let mut p = StreamParser::new();
    p.push_line(r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"pending","input":{}}}}"#);
    p.push_line(r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"running","input":{"command":"ls"}}}}"#);
    p.push_line(r#"{"type":"tool_use","part":{"tool":"bash","callID":"c","state":{"status":"completed","input":{},"output":"x"}}}"#);
    let calls = &p.report().tool_calls;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].input, serde_json::json!({"command": "ls"}));
    assert_eq!(calls[0].output.as_deref(), Some("x"));
}

#[test]
fn truncation_keeps_both_ends_on_char_boundaries() {
    let text = "é".repeat(100_000);
    let cut = truncate_middle(&text, 1000);
    assert!(
        cut.len() < 1100 && cut.starts_with('é') && cut.ends_with('é') && cut.contains("bytes cut")
    );
    assert_eq!(truncate_middle("short", 10), "short");
}
