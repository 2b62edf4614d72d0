//! Snapshots of what the parser makes of captured real `opencode run --format json` output.

use serde::Serialize;
use station_backend_cli::stream::{RunReport, StreamParser};
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
fn two_turn_create_file_run() {
    let parsed = parse_fixture("opencode-run-json.jsonl");
    let r = &parsed.report;
    assert_eq!(
        r.summary, "Created oc_run.py, which prints Hello from opencode run.",
        "only the final step's text"
    );
    assert_eq!(
        (r.usage.input_tokens, r.usage.output_tokens),
        (7365 + 7464, 20),
        "tokens are summed over steps"
    );
    assert_eq!(r.edited_paths, ["/WORKDIR/oc/ws_run/oc_run.py"]);
    assert!(r.turn_finished && r.malformed_lines == 0);
    insta::assert_yaml_snapshot!(parsed);
}

#[test]
fn four_turn_fizzbuzz_run() {
    let parsed = parse_fixture("opencode-run-fizzbuzz.jsonl");
    let r = &parsed.report;
    assert_eq!(
        r.summary,
        "Implemented FizzBuzz in fizz_oc.py, ran it, and extended it to 30."
    );
    assert_eq!(
        r.tool_calls
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["write", "bash", "edit"]
    );
    assert_eq!(r.tool_calls[1].output.as_deref(), Some("(no output)"));
    assert_eq!(r.usage.input_tokens, 7360 + 7479 + 7551 + 7645);
    assert_eq!(r.steps.len(), 4);
    insta::assert_yaml_snapshot!(parsed);
}
