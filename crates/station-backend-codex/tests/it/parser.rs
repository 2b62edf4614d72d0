//! The parser pinned by snapshots over recorded and hand-made `codex exec --json` outputs.

use serde_json::{Value, json};
use station_backend_codex::parser::ExecParser;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every event of an output (as JSON) and what the parser kept.
fn parse(text: &str) -> Value {
    let mut parser = ExecParser::new();
    let mut events = Vec::new();
    for line in text.split('\n') {
        events.extend(parser.push_line(line));
    }
    let report = parser.report();
    json!({
        "events": events,
        "thread_id": report.thread_id,
        "summary": report.summary,
        "usage": report.usage,
        "tool_calls": report.tool_calls,
        "turn_completed": report.turn_completed,
        "turn_failed": report.turn_failed,
        "last_error": report.last_error,
        "malformed_lines": report.malformed_lines,
        "turn_ended": parser.turn_ended(),
    })
}

macro_rules! snapshot_fixture {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            insta::assert_yaml_snapshot!(parse(&fixture($file)));
        }
    };
}

snapshot_fixture!(create, "codex-exec-1-create.jsonl");
snapshot_fixture!(resume, "codex-exec-2-resume.jsonl");
snapshot_fixture!(fizzbuzz_four_turns, "codex-exec-3-fizzbuzz.jsonl");
snapshot_fixture!(unknown_model_warning, "codex-exec-4-fallback-model.jsonl");
snapshot_fixture!(read_only_sandbox, "codex-exec-5-readonly.jsonl");
snapshot_fixture!(sigint_leaves_no_final_event, "codex-exec-6-sigint.jsonl");
snapshot_fixture!(api_error_400, "captured-api-error-400.jsonl");
snapshot_fixture!(api_retries_then_failure, "captured-api-retries-500.jsonl");
snapshot_fixture!(
    mcp_reasoning_todo_and_failures,
    "handmade-mcp-reasoning-todo.jsonl"
);
