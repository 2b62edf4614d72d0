//! A prototype of what would make the stream parsers faster, measured next to them. Not used by
//! the suite: it shows how far the proposed change moves the number.
//!
//! Typed, borrowing deserialisation of each line (only the fields the parsers read; the rest
//! skipped without allocating; tool inputs still become `serde_json::Value`, since they are
//! handed on as such) instead of a whole `serde_json::Value` tree per line.

use std::borrow::Cow;
use std::hint::black_box;

use serde::Deserialize;
use serde_json::Value;

/// One line of `claude -p --output-format stream-json`, as far as the parser reads it.
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are read only to measure their parsing")]
struct ClaudeLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    subtype: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    cwd: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<ClaudeMessage<'a>>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default, borrow)]
    result: Option<Cow<'a, str>>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    num_turns: Option<u64>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<ClaudeUsage>,
    #[serde(default, borrow)]
    errors: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    terminal_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are read only to measure their parsing")]
struct ClaudeMessage<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Vec<ClaudeBlock<'a>>,
    #[serde(default)]
    usage: Option<ClaudeUsage>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are read only to measure their parsing")]
struct ClaudeBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default, borrow)]
    tool_use_id: Option<Cow<'a, str>>,
    /// A string or a list of blocks.
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    is_error: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[allow(dead_code, reason = "fields are read only to measure their parsing")]
struct ClaudeUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

/// One line of `opencode run --format json`, as far as the parser reads it.
#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are read only to measure their parsing")]
struct OpencodeLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, rename = "sessionID", borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    part: Option<OpencodePart<'a>>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are read only to measure their parsing")]
struct OpencodePart<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, rename = "sessionID", borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool: Option<Cow<'a, str>>,
    #[serde(default, rename = "callID", borrow)]
    call_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    state: Option<OpencodeToolState<'a>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default)]
    tokens: Option<Value>,
    #[serde(default)]
    cost: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are read only to measure their parsing")]
struct OpencodeToolState<'a> {
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default, borrow)]
    output: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    error: Option<Cow<'a, str>>,
}

/// Typed borrowing parse of every Claude line (a line that does not fit is parsed as a Value,
/// as a tolerant parser would).
pub(crate) fn typed_claude(runs: &[String]) -> usize {
    let mut n = 0;
    for run in runs {
        for line in run.lines() {
            match serde_json::from_str::<ClaudeLine<'_>>(line) {
                Ok(l) => {
                    black_box(l);
                }
                Err(_) => {
                    black_box(serde_json::from_str::<Value>(line).ok());
                }
            }
            n += 1;
        }
    }
    n
}

/// Typed borrowing parse of every `opencode run` line.
pub(crate) fn typed_opencode(runs: &[String]) -> usize {
    let mut n = 0;
    for run in runs {
        for line in run.lines() {
            match serde_json::from_str::<OpencodeLine<'_>>(line) {
                Ok(l) => {
                    black_box(l);
                }
                Err(_) => {
                    black_box(serde_json::from_str::<Value>(line).ok());
                }
            }
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_prototypes_read_the_samples() {
        let claude = include_str!("../fixtures/claude-fizzbuzz.jsonl");
        for line in claude.lines() {
            let l: ClaudeLine<'_> = serde_json::from_str(line).unwrap();
            assert!(!l.kind.is_empty());
        }
        let oc = include_str!("../fixtures/opencode-run-fizzbuzz.jsonl");
        for line in oc.lines() {
            let l: OpencodeLine<'_> = serde_json::from_str(line).unwrap();
            assert!(l.part.is_some());
        }
    }
}
