//! What the scripted model answers: rules keyed on the user prompt, each a list of steps.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The text sent once a rule's steps have run out.
pub const DEFAULT_FINAL_TEXT: &str = "Done.";

/// A deliberate failure of the model server.
///
/// JSON form: `{"status": 500}`, `{"retryable_status": 500}`, `"stall"`, `"drop_mid_stream"`, `"malformed_sse"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this HTTP status and an error body in the API's own shape. The response
    /// carries `x-should-retry: false`, so SDK clients fail at once instead of backing off.
    Status(u16),
    /// Like [`Fault::Status`] but without `x-should-retry: false`: clients retry it as they
    /// would a real provider's error (Claude Code backs off and reports each retry).
    RetryableStatus(u16),
    /// Send the response headers, then nothing until the client disconnects, the server is
    /// dropped, or 10 minutes pass; then the connection is dropped.
    Stall,
    /// Send the start of a reply, then drop the connection.
    DropMidStream,
    /// Send SSE frames whose data is not valid JSON (a non-streaming request gets a broken
    /// JSON body).
    MalformedSse,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// Reply with text and stop.
    Text(String),
    /// Call a tool. Abstract names (`write`, `edit`, `bash`, `read`) and names that only match
    /// case-insensitively get their arguments mapped onto the offered schema; any other name
    /// offered verbatim is called with `args` unchanged.
    Tool {
        name: String,
        #[serde(default)]
        args: Value,
    },
    /// Abstract `write{path, content}`.
    Write { path: String, content: String },
    /// Abstract `bash{command}`.
    Bash { command: String },
    /// Abstract `edit{path, old, new}`.
    Edit {
        path: String,
        old: String,
        new: String,
    },
    /// Abstract `read{path}`.
    Read { path: String },
    /// Fail this one request.
    Fault(Fault),
}

impl Action {
    /// The tool name and arguments, for the tool-calling actions.
    pub(crate) fn tool_call(&self) -> Option<(String, Value)> {
        match self {
            Action::Tool { name, args } => Some((name.clone(), args.clone())),
            Action::Write { path, content } => {
                Some(("write".into(), json!({ "path": path, "content": content })))
            }
            Action::Bash { command } => Some(("bash".into(), json!({ "command": command }))),
            Action::Edit { path, old, new } => Some((
                "edit".into(),
                json!({ "path": path, "old": old, "new": new }),
            )),
            Action::Read { path } => Some(("read".into(), json!({ "path": path }))),
            Action::Text(_) | Action::Fault(_) => None,
        }
    }
}

/// One model reply.
///
/// JSON form: one action key (`text`, `tool{name,args}`, `write{path,content}`,
/// `bash{command}`, `edit{path,old,new}`, `read{path}`, `fault`) plus the optional
/// `text_before`, `delay_ms` and `chunk_delay_ms`, e.g.
/// `{"write": {"path": "hello.py", "content": "print(1)\n"}, "text_before": "Writing."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub(crate) action: Action,
    /// Text sent before a tool call in the same reply (or before the text of a text step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) text_before: Option<String>,
    /// Wait this long before answering (before the response headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) delay_ms: Option<u64>,
    /// Stream one word per chunk with this pause between chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) chunk_delay_ms: Option<u64>,
}

impl Step {
    fn new(action: Action) -> Step {
        Step {
            action,
            text_before: None,
            delay_ms: None,
            chunk_delay_ms: None,
        }
    }

    /// Reply with `text` and stop.
    pub fn text(text: impl Into<String>) -> Step {
        Step::new(Action::Text(text.into()))
    }

    /// Call tool `name` with `args` (see the module docs for how names and args are mapped).
    pub fn tool(name: impl Into<String>, args: Value) -> Step {
        Step::new(Action::Tool {
            name: name.into(),
            args,
        })
    }

    /// Write `content` to `path` (relative paths resolve against the client's working directory).
    pub fn write(path: impl Into<String>, content: impl Into<String>) -> Step {
        Step::new(Action::Write {
            path: path.into(),
            content: content.into(),
        })
    }

    /// Run a shell command.
    pub fn bash(command: impl Into<String>) -> Step {
        Step::new(Action::Bash {
            command: command.into(),
        })
    }

    /// Replace `old` with `new` in `path`.
    pub fn edit(path: impl Into<String>, old: impl Into<String>, new: impl Into<String>) -> Step {
        Step::new(Action::Edit {
            path: path.into(),
            old: old.into(),
            new: new.into(),
        })
    }

    /// Read `path`.
    pub fn read(path: impl Into<String>) -> Step {
        Step::new(Action::Read { path: path.into() })
    }

    /// Reply with `text`, one word per chunk, pausing `per_chunk_delay` between chunks
    /// (for abort and cancel tests).
    pub fn slow_text(text: impl Into<String>, per_chunk_delay: Duration) -> Step {
        Step::text(text).with_chunk_delay(per_chunk_delay)
    }

    /// Fail this request with `fault`.
    pub fn fault(fault: Fault) -> Step {
        Step::new(Action::Fault(fault))
    }

    /// Send `text` before the tool call, in the same reply.
    pub fn with_text_before(mut self, text: impl Into<String>) -> Step {
        self.text_before = Some(text.into());
        self
    }

    /// Wait `delay` before answering.
    pub fn delayed(mut self, delay: Duration) -> Step {
        self.delay_ms = Some(millis(delay));
        self
    }

    /// Stream one word per chunk with `delay` between chunks.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Step {
        self.chunk_delay_ms = Some(millis(delay));
        self
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.unwrap_or(0))
    }

    pub(crate) fn chunk_delay(&self) -> Option<Duration> {
        self.chunk_delay_ms.map(Duration::from_millis)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rule {
    on: String,
    steps: Vec<Step>,
}

/// The whole conversation plan: the first rule whose needle occurs in the last real user
/// prompt (case-insensitive) answers turn `k` with its step `k`; once its steps run out, the
/// model sends the final text. With no matching rule the fallback steps are used.
///
/// JSON form (for the `scripted-model` binary):
/// `{"rules": [{"on": "hello.py", "steps": [...]}], "fallback": [...], "final_text": "Done."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    fallback: Vec<Step>,
    #[serde(default = "default_final_text")]
    final_text: String,
}

fn default_final_text() -> String {
    DEFAULT_FINAL_TEXT.to_owned()
}

impl Default for Script {
    fn default() -> Self {
        Script {
            rules: Vec::new(),
            fallback: Vec::new(),
            final_text: default_final_text(),
        }
    }
}

impl Script {
    /// An empty script: every prompt gets the final text.
    pub fn new() -> Script {
        Script::default()
    }

    /// When the prompt contains `needle` (case-insensitive), answer with `steps`.
    pub fn on(mut self, needle: &str, steps: Vec<Step>) -> Script {
        self.rules.push(Rule {
            on: needle.to_owned(),
            steps,
        });
        self
    }

    /// The steps for prompts no rule matches.
    pub fn fallback(mut self, steps: Vec<Step>) -> Script {
        self.fallback = steps;
        self
    }

    /// The text sent once the steps have run out (default `Done.`).
    pub fn final_text(mut self, text: impl Into<String>) -> Script {
        self.final_text = text.into();
        self
    }

    /// Parse the JSON form.
    pub fn from_json(json: &str) -> Result<Script, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub(crate) fn final_text_str(&self) -> &str {
        &self.final_text
    }

    /// The step for `turn` of the conversation opened by `prompt`, or `None` when the steps
    /// have run out.
    pub(crate) fn step_for(&self, prompt: Option<&str>, turn: usize) -> Option<&Step> {
        let prompt = prompt.unwrap_or("").to_lowercase();
        let steps = self
            .rules
            .iter()
            .find(|rule| prompt.contains(&rule.on.to_lowercase()))
            .map_or(&self.fallback, |rule| &rule.steps);
        steps.get(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_case_insensitively_and_fall_back() {
        let script = Script::new()
            .on(
                "Hello.PY",
                vec![Step::write("hello.py", "x"), Step::text("made")],
            )
            .fallback(vec![Step::text("fallback")]);
        assert_eq!(
            script.step_for(Some("create hello.py now"), 1),
            Some(&Step::text("made"))
        );
        assert_eq!(script.step_for(Some("create HELLO.py now"), 2), None);
        assert_eq!(
            script.step_for(Some("something else"), 0),
            Some(&Step::text("fallback"))
        );
        assert_eq!(script.step_for(None, 0), Some(&Step::text("fallback")));
    }

    #[test]
    fn json_form_round_trips() {
        let script = Script::new()
            .on(
                "go",
                vec![
                    Step::write("a.py", "print(1)\n").with_text_before("Writing."),
                    Step::bash("ls").delayed(Duration::from_millis(5)),
                    Step::edit("a.py", "1", "2"),
                    Step::tool("coding_open", json!({"x": 1})),
                    Step::slow_text("a b c", Duration::from_millis(20)),
                    Step::fault(Fault::Status(429)),
                    Step::fault(Fault::Stall),
                ],
            )
            .final_text("Finished.");
        let text = script.to_json();
        assert_eq!(Script::from_json(&text).unwrap(), script);
    }

    #[test]
    fn hand_written_json_parses() {
        let script = Script::from_json(
            r#"{"rules":[{"on":"hello","steps":[
                {"write":{"path":"hello.py","content":"print('hi')\n"},"text_before":"Sure."},
                {"fault":{"status":500}},
                {"fault":"drop_mid_stream"},
                {"text":"ok","chunk_delay_ms":10}
            ]}]}"#,
        )
        .unwrap();
        assert_eq!(script.final_text_str(), DEFAULT_FINAL_TEXT);
        assert_eq!(
            script.step_for(Some("hello"), 0),
            Some(&Step::write("hello.py", "print('hi')\n").with_text_before("Sure."))
        );
        assert_eq!(
            script.step_for(Some("hello"), 1),
            Some(&Step::fault(Fault::Status(500)))
        );
        assert_eq!(
            script.step_for(Some("hello"), 2),
            Some(&Step::fault(Fault::DropMidStream))
        );
        assert_eq!(
            script.step_for(Some("hello"), 3),
            Some(&Step::slow_text("ok", Duration::from_millis(10)))
        );
        assert!(Script::from_json(r#"{"rules":[{"on":"x","steps":[{"nope":1}]}]}"#).is_err());
    }
}
