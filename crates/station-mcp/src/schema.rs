//! The tools this server offers: the coding tools exactly as [`CodingTools::specs`] describes
//! them (plus `wait` on `code`), and the tools for sessions and background tasks. Arguments are
//! checked against these schemas before anything runs.

use serde_json::{Map, Value, json};
use station_agent::CodingTools;

/// The longest a `coding_wait` call waits: under the ~60 s request timeout of common clients.
pub(crate) const MAX_WAIT_SECS: u64 = 55;
/// How long `coding_wait` waits by default.
pub(crate) const DEFAULT_WAIT_SECS: u64 = 50;

/// One tool.
#[derive(Debug, Clone)]
pub(crate) struct ToolDef {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) schema: Value,
    /// It changes nothing (sessions, status, wait).
    pub(crate) read_only: bool,
}

/// Every tool, in the order clients list them.
pub(crate) fn tool_defs() -> Vec<ToolDef> {
    let mut defs: Vec<ToolDef> = CodingTools::specs()
        .into_iter()
        .map(|spec| {
            let mut def = ToolDef {
                name: spec.name,
                description: spec.description,
                schema: spec.schema,
                read_only: false,
            };
            if def.name == "code" {
                add_wait(&mut def);
            }
            def
        })
        .collect();
    let def = |name: &str, description: &str, schema: Value| ToolDef {
        name: name.into(),
        description: description.into(),
        schema,
        read_only: true,
    };
    let task_id = json!({"type": "string", "description": "From code with wait=false."});
    defs.extend([
        def(
            "coding_sessions",
            "List the coding sessions Station knows, most recently used first: id, title, backend, backend id, workspace, last use. Continue one with coding_open{session}.",
            json!({"type": "object", "properties": {
                "limit": {"type": "integer", "minimum": 1, "description": "At most this many (default 50)."}
            }}),
        ),
        def(
            "coding_status",
            "Status of a coding task started with code{wait:false}: running, succeeded, failed or cancelled, the latest events, and the result once it ended. Returns at once.",
            json!({"type": "object", "required": ["task_id"], "properties": {"task_id": task_id}}),
        ),
        def(
            "coding_wait",
            "Wait for a coding task started with code{wait:false}, up to timeout_secs (default 50, at most 55, so the call ends before a 60 s client timeout). Returns the task's result when it ended, or status running: then call coding_wait again.",
            json!({"type": "object", "required": ["task_id"], "properties": {
                "task_id": task_id,
                "timeout_secs": {"type": "integer", "minimum": 1, "maximum": MAX_WAIT_SECS, "description": "How long to wait (default 50, at most 55)."}
            }}),
        ),
        ToolDef {
            read_only: false,
            ..def(
                "coding_cancel",
                "Cancel a running coding task started with code{wait:false}; the backend stops the work.",
                json!({"type": "object", "required": ["task_id"], "properties": {"task_id": task_id}}),
            )
        },
    ]);
    defs
}

fn add_wait(def: &mut ToolDef) {
    def.description.push_str(
        " Progress notifications are sent while it runs. With wait=false it returns at once with a task_id: follow it with coding_wait (or coding_status) and stop it with coding_cancel.",
    );
    if let Some(props) = def
        .schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    {
        props.insert(
            "wait".into(),
            json!({"type": "boolean", "description": "Wait for the task to finish (default true). false: return a task_id at once; use it for clients whose request timeout is shorter than the task."}),
        );
    }
}

/// Bad arguments, said so that the caller can fix them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgError {
    pub(crate) error: String,
    pub(crate) fix: String,
}

/// Check `args` against `def`'s schema: an object, required keys present (a blank string is
/// missing), no unknown keys, and each value of the declared type and range. `null` counts as
/// absent.
pub(crate) fn check_args(def: &ToolDef, args: &Map<String, Value>) -> Result<(), ArgError> {
    let empty = Map::new();
    let props = def
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let known = || {
        let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.join(", ")
    };
    for (key, value) in args {
        if value.is_null() {
            continue;
        }
        let Some(prop) = props.get(key) else {
            return Err(ArgError {
                error: format!("`{}` takes no argument `{key}`", def.name),
                fix: format!("use only these arguments: {}", known()),
            });
        };
        check_value(key, prop, value)?;
    }
    let required = def
        .schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for key in required {
        let missing = match args.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        };
        if missing {
            return Err(ArgError {
                error: format!("`{key}` is required by `{}`", def.name),
                fix: format!("call `{}` again with `{key}` set", def.name),
            });
        }
    }
    Ok(())
}

fn check_value(key: &str, prop: &Value, value: &Value) -> Result<(), ArgError> {
    let wanted = prop.get("type").and_then(Value::as_str).unwrap_or("any");
    let wrong = || ArgError {
        error: format!(
            "`{key}` must be {}, not {}",
            type_phrase(wanted),
            value_phrase(value)
        ),
        fix: format!("pass `{key}` as {}", type_phrase(wanted)),
    };
    match wanted {
        "string" if !value.is_string() => return Err(wrong()),
        "boolean" if !value.is_boolean() => return Err(wrong()),
        "number" if !value.is_number() => return Err(wrong()),
        "integer" => {
            let Some(n) = value.as_i64() else {
                return Err(wrong());
            };
            let min = prop.get("minimum").and_then(Value::as_i64);
            let max = prop.get("maximum").and_then(Value::as_i64);
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                let range = match (min, max) {
                    (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                    (Some(lo), None) => format!("at least {lo}"),
                    (None, Some(hi)) => format!("at most {hi}"),
                    (None, None) => unreachable!("a bound was checked"),
                };
                return Err(ArgError {
                    error: format!("`{key}` must be {range}, not {n}"),
                    fix: format!("pass a `{key}` {range}"),
                });
            }
        }
        "array" => {
            let Some(items) = value.as_array() else {
                return Err(wrong());
            };
            let item_type = prop
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str);
            if item_type == Some("string") && !items.iter().all(Value::is_string) {
                return Err(ArgError {
                    error: format!("`{key}` must be a list of strings"),
                    fix: format!("pass `{key}` as a list of strings, e.g. [\"src/main.rs\"]"),
                });
            }
        }
        _ => {}
    }
    Ok(())
}

fn type_phrase(t: &str) -> &'static str {
    match t {
        "string" => "a string",
        "boolean" => "true or false",
        "integer" => "a whole number",
        "number" => "a number",
        "array" => "a list",
        "object" => "an object",
        _ => "a value",
    }
}

fn value_phrase(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> ToolDef {
        tool_defs().into_iter().find(|d| d.name == name).unwrap()
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn coding_tool_schemas_are_the_agent_ones_plus_wait() {
        let defs = tool_defs();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "coding_open",
                "code",
                "coding_close",
                "coding_commit",
                "coding_push",
                "coding_branch",
                "coding_sessions",
                "coding_status",
                "coding_wait",
                "coding_cancel"
            ]
        );
        for spec in CodingTools::specs() {
            let ours = def(&spec.name);
            if spec.name == "code" {
                let mut schema = ours.schema.clone();
                schema["properties"].as_object_mut().unwrap().remove("wait");
                assert_eq!(schema, spec.schema);
                assert_eq!(ours.schema["properties"]["wait"]["type"], "boolean");
            } else {
                assert_eq!(ours.schema, spec.schema, "{}", spec.name);
            }
        }
    }

    #[test]
    fn arguments_are_checked_with_clear_messages() {
        let code = def("code");
        assert_eq!(
            check_args(&code, &args(json!({"session_id": "s"}))),
            Err(ArgError {
                error: "`instruction` is required by `code`".into(),
                fix: "call `code` again with `instruction` set".into()
            })
        );
        let blank = check_args(
            &code,
            &args(json!({"session_id": "s", "instruction": "  "})),
        );
        assert!(
            blank
                .unwrap_err()
                .error
                .contains("`instruction` is required")
        );
        let wrong = check_args(
            &code,
            &args(json!({"session_id": "s", "instruction": "x", "wait": "no"})),
        )
        .unwrap_err();
        assert_eq!(wrong.error, "`wait` must be true or false, not a string");
        let unknown = check_args(
            &code,
            &args(json!({"session_id": "s", "instructions": "x"})),
        )
        .unwrap_err();
        assert_eq!(unknown.error, "`code` takes no argument `instructions`");
        assert!(
            unknown.fix.contains("instruction, session_id"),
            "{}",
            unknown.fix
        );
        let files = check_args(
            &code,
            &args(json!({"session_id": "s", "instruction": "x", "files": [1]})),
        )
        .unwrap_err();
        assert_eq!(files.error, "`files` must be a list of strings");
        assert_eq!(
            check_args(
                &code,
                &args(
                    json!({"session_id": "s", "instruction": "x", "files": ["a"], "timeout_secs": 5, "wait": false, "context": null})
                )
            ),
            Ok(())
        );
    }

    #[test]
    fn wait_bounds_are_enforced() {
        let wait = def("coding_wait");
        let too_long =
            check_args(&wait, &args(json!({"task_id": "t", "timeout_secs": 60}))).unwrap_err();
        assert_eq!(
            too_long.error,
            "`timeout_secs` must be between 1 and 55, not 60"
        );
        assert_eq!(
            check_args(&wait, &args(json!({"task_id": "t", "timeout_secs": 55}))),
            Ok(())
        );
        let not_int =
            check_args(&wait, &args(json!({"task_id": "t", "timeout_secs": 1.5}))).unwrap_err();
        assert_eq!(
            not_int.error,
            "`timeout_secs` must be a whole number, not a number"
        );
    }
}
