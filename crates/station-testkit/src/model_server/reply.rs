//! Choosing the reply: side calls, script steps, and mapping abstract tool calls onto the
//! tools the client offered.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::request::{Conversation, OfferedTool, TokenUsage, token_estimate};
use super::script::{Action, Fault, Script};

/// Tool names that are always mapped, never passed through raw.
const ABSTRACT_TOOLS: &[&str] = &["write", "edit", "bash", "read"];

/// Property names an abstract argument may take in a client's schema, best first.
const ARG_ALIASES: &[(&str, &[&str])] = &[
    ("path", &["filePath", "file_path", "path"]),
    ("old", &["oldString", "old_string"]),
    ("new", &["newString", "new_string"]),
];

/// A tool call to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedTool {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: Value,
}

/// A normal reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub(crate) text: String,
    pub(crate) tool: Option<PlannedTool>,
    /// One word per chunk with this pause; `None` streams at full speed.
    pub(crate) chunk_delay: Option<Duration>,
    pub(crate) usage: TokenUsage,
}

impl Message {
    pub(crate) fn arguments_json(&self) -> Option<String> {
        self.tool.as_ref().map(|t| t.arguments.to_string())
    }
}

/// What to answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    Message(Message),
    Fault(Fault),
}

/// The reply, when to send it, and whether the script was consulted.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) plan: Plan,
    pub(crate) delay: Duration,
    pub(crate) side_call: bool,
}

/// Decide the reply to a model request.
pub(crate) fn plan(
    script: &Script,
    fault: Option<Fault>,
    conv: &Conversation,
    tool_id: String,
) -> Planned {
    // A side call (a title or other JSON helper request) offers no tools and asks for a title or
    // for JSON; a tool-less request that is neither (an agent without tools) follows the script.
    let side_call = conv.tools.is_empty() && (conv.json_schema.is_some() || conv.title_request);
    if let Some(fault) = fault {
        return Planned {
            plan: Plan::Fault(fault),
            delay: Duration::ZERO,
            side_call,
        };
    }
    if side_call {
        let text = side_call_text(conv);
        return Planned {
            plan: Plan::Message(message(conv, text, None, None)),
            delay: Duration::ZERO,
            side_call,
        };
    }
    let Some(step) = script.step_for(conv.prompt.as_deref(), conv.turn) else {
        let text = script.final_text_str().to_owned();
        return Planned {
            plan: Plan::Message(message(conv, text, None, None)),
            delay: Duration::ZERO,
            side_call,
        };
    };
    let before = step.text_before.clone().unwrap_or_default();
    let plan = match &step.action {
        Action::Fault(fault) => Plan::Fault(*fault),
        Action::Text(text) => Plan::Message(message(conv, before + text, None, step.chunk_delay())),
        other => {
            let (name, args) = other.tool_call().unwrap_or_default();
            match resolve_tool(&name, args, &conv.tools, conv.working_dir.as_deref()) {
                Ok((name, arguments)) => {
                    let tool = PlannedTool {
                        id: tool_id,
                        name,
                        arguments,
                    };
                    Plan::Message(message(conv, before, Some(tool), step.chunk_delay()))
                }
                Err(problem) => {
                    tracing::warn!(%problem, "scripted tool call cannot be made");
                    Plan::Message(message(
                        conv,
                        format!("[scripted-model] {problem}"),
                        None,
                        None,
                    ))
                }
            }
        }
    };
    Planned {
        plan,
        delay: step.delay(),
        side_call,
    }
}

fn message(
    conv: &Conversation,
    text: String,
    tool: Option<PlannedTool>,
    chunk_delay: Option<Duration>,
) -> Message {
    let args_chars = tool
        .as_ref()
        .map_or(0, |t| t.arguments.to_string().chars().count());
    let output_chars = text.chars().count() + args_chars;
    let usage = TokenUsage {
        input_tokens: conv.input_tokens,
        output_tokens: token_estimate(&"x".repeat(output_chars)),
    };
    Message {
        text,
        tool,
        chunk_delay,
        usage,
    }
}

/// The answer to a request without tools: JSON when the client asked for JSON, else a title.
fn side_call_text(conv: &Conversation) -> String {
    let title = title_from(conv.prompt.as_deref().unwrap_or(""));
    match &conv.json_schema {
        None => title,
        Some(Value::Null) => serde_json::json!({ "title": title }).to_string(),
        Some(schema) => schema_instance(schema, &title, 0).to_string(),
    }
}

/// A short title: the first words of the prompt's first line of text (`<tag>` words, as in
/// Claude's `<session>` wrapper, skipped).
pub(crate) fn title_from(prompt: &str) -> String {
    let is_tag = |w: &&str| w.starts_with('<') && w.ends_with('>');
    let line = prompt
        .lines()
        .find(|line| line.split_whitespace().any(|w| !is_tag(&w)))
        .unwrap_or("");
    let words: Vec<&str> = line
        .split_whitespace()
        .filter(|w| !is_tag(w))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .take(6)
        .collect();
    if words.is_empty() {
        "Scripted session".to_owned()
    } else {
        words.join(" ")
    }
}

/// A small value that satisfies `schema` (the common JSON-schema subset: type, properties,
/// required, enum, const, anyOf/oneOf/allOf, items, minItems, minimum).
pub(crate) fn schema_instance(schema: &Value, title: &str, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        return Value::String(title.to_owned());
    };
    if let Some(value) = obj.get("const") {
        return value.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = obj
            .get(combinator)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return schema_instance(first, title, depth + 1);
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    out.insert(name.clone(), schema_instance(sub, title, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = obj
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(4);
            let item = obj.get("items").cloned().unwrap_or(Value::Null);
            Value::Array(
                (0..min)
                    .map(|_| schema_instance(&item, title, depth + 1))
                    .collect(),
            )
        }
        "integer" | "number" => obj.get("minimum").cloned().unwrap_or(Value::from(0)),
        "boolean" => Value::Bool(false),
        "null" => Value::Null,
        _ => Value::String(title.to_owned()),
    }
}

fn is_abstract(name: &str) -> bool {
    ABSTRACT_TOOLS.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Pick the offered tool for a scripted call and shape its arguments.
pub(crate) fn resolve_tool(
    name: &str,
    args: Value,
    offered: &[OfferedTool],
    working_dir: Option<&str>,
) -> Result<(String, Value), String> {
    if !is_abstract(name)
        && let Some(tool) = offered.iter().find(|t| t.name == name)
    {
        return Ok((tool.name.clone(), args));
    }
    let Some(tool) = offered.iter().find(|t| t.name.eq_ignore_ascii_case(name)) else {
        if let Some(mapped) = super::responses::codex_tool(name, &args, offered, working_dir) {
            return mapped;
        }
        let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
        return Err(format!(
            "tool `{name}` is not offered (offered: {})",
            names.join(", ")
        ));
    };
    let Value::Object(args) = args else {
        return Ok((tool.name.clone(), Value::Object(Map::new())));
    };
    let mut mapped = Map::new();
    for (key, value) in args {
        let Some(target) = target_property(&key, tool.properties.as_deref()) else {
            continue;
        };
        let value = match (&value, working_dir) {
            (Value::String(path), Some(dir)) if is_path_key(&target) && !path.starts_with('/') => {
                Value::String(Path::new(dir).join(path).to_string_lossy().into_owned())
            }
            _ => value,
        };
        mapped.insert(target, value);
    }
    Ok((tool.name.clone(), Value::Object(mapped)))
}

fn normalized(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_path_key(key: &str) -> bool {
    matches!(normalized(key).as_str(), "path" | "filepath")
}

/// The schema property an abstract argument maps to, or `None` to drop it.
fn target_property(key: &str, properties: Option<&[String]>) -> Option<String> {
    let Some(properties) = properties else {
        return Some(key.to_owned());
    };
    if properties.iter().any(|p| p == key) {
        return Some(key.to_owned());
    }
    let aliases = ARG_ALIASES
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(&[][..], |(_, a)| *a);
    if let Some(alias) = aliases.iter().find(|a| properties.iter().any(|p| p == *a)) {
        return Some((*alias).to_owned());
    }
    let key = normalized(key);
    properties.iter().find(|p| normalized(p) == key).cloned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool(name: &str, props: &[&str]) -> OfferedTool {
        OfferedTool {
            name: name.into(),
            properties: Some(props.iter().map(|p| (*p).to_owned()).collect()),
        }
    }

    fn opencode_tools() -> Vec<OfferedTool> {
        vec![
            tool("write", &["content", "filePath"]),
            tool(
                "edit",
                &["filePath", "newString", "oldString", "replaceAll"],
            ),
            tool("bash", &["command", "timeout", "workdir"]),
            tool("read", &["filePath", "limit", "offset"]),
        ]
    }

    fn claude_tools() -> Vec<OfferedTool> {
        vec![
            tool("Write", &["content", "file_path"]),
            tool(
                "Edit",
                &["file_path", "new_string", "old_string", "replace_all"],
            ),
            tool(
                "Bash",
                &[
                    "command",
                    "dangerouslyDisableSandbox",
                    "description",
                    "run_in_background",
                    "timeout",
                ],
            ),
            tool("coding_open", &["repo"]),
        ]
    }

    #[test]
    fn abstract_calls_map_onto_each_client() {
        let args = json!({"path": "hello.py", "content": "x"});
        assert_eq!(
            resolve_tool("write", args.clone(), &opencode_tools(), Some("/ws")).unwrap(),
            (
                "write".into(),
                json!({"filePath": "/ws/hello.py", "content": "x"})
            )
        );
        assert_eq!(
            resolve_tool("write", args, &claude_tools(), Some("/ws")).unwrap(),
            (
                "Write".into(),
                json!({"file_path": "/ws/hello.py", "content": "x"})
            )
        );
        let edit = json!({"path": "/abs/a.py", "old": "1", "new": "2", "replace_all": true});
        assert_eq!(
            resolve_tool("edit", edit, &opencode_tools(), None)
                .unwrap()
                .1,
            json!({"filePath": "/abs/a.py", "oldString": "1", "newString": "2", "replaceAll": true})
        );
        let bash = json!({"command": "ls", "description": "list"});
        assert_eq!(
            resolve_tool("bash", bash.clone(), &opencode_tools(), None)
                .unwrap()
                .1,
            json!({"command": "ls"})
        );
        assert_eq!(
            resolve_tool("BASH", bash.clone(), &claude_tools(), None).unwrap(),
            ("Bash".into(), bash)
        );
    }

    #[test]
    fn verbatim_names_pass_through_raw_and_missing_tools_explain() {
        let raw = json!({"repo": "r", "extra": [1]});
        assert_eq!(
            resolve_tool("coding_open", raw.clone(), &claude_tools(), Some("/w"))
                .unwrap()
                .1,
            raw
        );
        let err = resolve_tool("coding_close", json!({}), &claude_tools(), None).unwrap_err();
        assert!(
            err.contains("coding_close") && err.contains("Write, Edit"),
            "{err}"
        );
        // A case-insensitive match of a non-abstract name is mapped (unknown args dropped).
        assert_eq!(
            resolve_tool("CODING_OPEN", raw, &claude_tools(), None)
                .unwrap()
                .1,
            json!({"repo": "r"})
        );
    }

    #[test]
    fn schema_instances_match_common_shapes() {
        let schema = json!({"type": "object", "properties": {
            "title": {"type": "string"}, "n": {"type": "integer", "minimum": 3},
            "ok": {"type": "boolean"}, "kind": {"enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "maybe": {"type": ["null", "number"]}, "nested": {"properties": {"c": {"const": 7}}}
        }, "required": ["title"]});
        assert_eq!(
            schema_instance(&schema, "T", 0),
            json!({"title": "T", "n": 3, "ok": false, "kind": "a", "tags": ["T"], "maybe": 0, "nested": {"c": 7}})
        );
        assert_eq!(
            title_from("  \"create hello.py that prints Hello World now please\" "),
            "create hello.py that prints Hello World"
        );
        assert_eq!(title_from("!!"), "Scripted session");
        let claude = "<session>\ncreate hello.py please\n</session>\n\nWrite the title in the language the user wrote in.";
        assert_eq!(title_from(claude), "create hello.py please");
    }
}
