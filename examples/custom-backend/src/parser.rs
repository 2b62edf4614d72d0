//! Plain-text agent output, line by line, into events.

use std::sync::LazyLock;

use regex::Regex;
use station_core::agent_process::StdoutParser;
use station_core::{EventKind, ToolCall};

static ANSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]").expect("ANSI pattern compiles"));

/// Reads a plain-text agent's stdout: every line is assistant text, except lines matching the
/// optional tool pattern (a tool call; the lines after it up to a blank line are its output).
#[derive(Debug, Default)]
pub struct PlainTextParser {
    tool_line: Option<Regex>,
    /// The tool call whose output is being read.
    open_tool: Option<ToolCall>,
    tool_calls: Vec<ToolCall>,
    /// Text since the last tool call: the agent's final answer once it exits.
    answer: Vec<String>,
}

impl PlainTextParser {
    /// A parser; `tool_line` must have a capture group named `tool` (the tool's name).
    pub fn new(tool_line: Option<Regex>) -> Self {
        PlainTextParser {
            tool_line,
            ..PlainTextParser::default()
        }
    }

    /// The final answer: the text after the last tool call.
    pub fn summary(&self) -> String {
        self.answer.join("\n").trim().to_string()
    }

    /// The tool calls seen, in order (the last one may still lack its output).
    pub fn tool_calls(&self) -> Vec<ToolCall> {
        let mut calls = self.tool_calls.clone();
        calls.extend(self.open_tool.clone());
        calls
    }

    fn finish_tool(&mut self, events: &mut Vec<EventKind>) {
        if let Some(call) = self.open_tool.take() {
            events.push(EventKind::ToolFinished {
                call_id: None,
                name: call.name.clone(),
                output: call.output.clone(),
                error: None,
            });
            self.tool_calls.push(call);
        }
    }
}

impl StdoutParser for PlainTextParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let line = ANSI.replace_all(line, "");
        let line = line.trim_end();
        let mut events = Vec::new();
        let tool = self.tool_line.as_ref().and_then(|re| {
            re.captures(line)
                .and_then(|c| c.name("tool"))
                .map(|m| m.as_str().to_string())
        });
        if let Some(name) = tool {
            self.finish_tool(&mut events);
            self.answer.clear();
            events.push(EventKind::ToolStarted {
                call_id: None,
                name: name.clone(),
                input: serde_json::Value::Null,
            });
            self.open_tool = Some(ToolCall {
                id: None,
                name,
                input: serde_json::Value::Null,
                output: None,
                error: None,
                duration_ms: None,
            });
            return events;
        }
        if let Some(call) = &mut self.open_tool {
            if !line.trim().is_empty() {
                let output = call.output.get_or_insert_with(String::new);
                if !output.is_empty() {
                    output.push('\n');
                }
                output.push_str(line);
                return events;
            }
            self.finish_tool(&mut events);
        }
        self.answer.push(line.to_string());
        events.push(EventKind::TextDelta {
            text: format!("{line}\n"),
        });
        events
    }

    fn finished(&self) -> bool {
        // Plain text has no "final result" marker: the agent is done when it exits.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> PlainTextParser {
        PlainTextParser::new(Some(Regex::new(r"^← (?P<tool>\w+)").unwrap()))
    }

    #[test]
    fn tool_lines_become_tool_calls_and_the_answer_is_the_text_after_them() {
        let mut p = parser();
        let mut events = Vec::new();
        for line in [
            "\x1b[0m",
            "I'll create hello.py.",
            "\x1b[0m← \x1b[0mWrite hello.py",
            "Wrote file successfully.",
            "\x1b[0m",
            "Created hello.py.",
        ] {
            events.extend(p.push_line(line));
        }
        let names: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::ToolStarted { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["Write"]);
        assert!(events.iter().any(|e| matches!(e,
            EventKind::ToolFinished { output: Some(o), .. } if o == "Wrote file successfully.")));
        assert_eq!(p.summary(), "Created hello.py.");
        assert_eq!(p.tool_calls().len(), 1);
    }

    #[test]
    fn without_a_tool_pattern_every_line_is_text() {
        let mut p = PlainTextParser::new(None);
        p.push_line("← Write hello.py");
        p.push_line("Done.");
        assert!(p.tool_calls().is_empty());
        assert_eq!(p.summary(), "← Write hello.py\nDone.");
    }
}
