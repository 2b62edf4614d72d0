//! The tools this server offers: the coding tools exactly as [`CodingTools::specs`] describes
//! them (plus `wait` on `code`), and the tools for sessions and background tasks, their schemas
//! generated from their argument types. Arguments are checked against these schemas before
//! anything runs.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use station_agent::CodingTools;
pub(crate) use station_agent::args::ArgError;
use station_agent::args::schema_for;

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

// coding_sessions
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionsArgs {
    /// At most this many (default 50).
    #[schemars(range(min = 1))]
    pub(crate) limit: Option<u64>,
}

// coding_status and coding_cancel
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskArgs {
    /// From code with wait=false.
    pub(crate) task_id: String,
}

// coding_wait
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitArgs {
    /// From code with wait=false.
    pub(crate) task_id: String,
    /// How long to wait (default 50, at most 55).
    #[schemars(range(min = 1, max = MAX_WAIT_SECS))]
    pub(crate) timeout_secs: Option<u64>,
}

// What `code` takes here besides the agent's arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeWaitArg {
    /// Wait for the task to finish (default true). false: return a task_id at once; use it for clients whose request timeout is shorter than the task.
    pub(crate) wait: Option<bool>,
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
    defs.extend([
        def(
            "coding_sessions",
            "List the coding sessions Station knows, most recently used first: id, title, backend, backend id, workspace, last use. Continue one with coding_open{session}.",
            schema_for::<SessionsArgs>(),
        ),
        def(
            "coding_status",
            "Status of a coding task started with code{wait:false}: running, succeeded, failed or cancelled, the latest events, and the result once it ended. Returns at once.",
            schema_for::<TaskArgs>(),
        ),
        def(
            "coding_wait",
            "Wait for a coding task started with code{wait:false}, up to timeout_secs (default 50, at most 55, so the call ends before a 60 s client timeout). Returns the task's result when it ended, or status running: then call coding_wait again.",
            schema_for::<WaitArgs>(),
        ),
        ToolDef {
            read_only: false,
            ..def(
                "coding_cancel",
                "Cancel a running coding task started with code{wait:false}; the backend stops the work.",
                schema_for::<TaskArgs>(),
            )
        },
    ]);
    defs
}

/// `code` here also takes `wait` ([`CodeWaitArg`]).
fn add_wait(def: &mut ToolDef) {
    def.description.push_str(
        " Progress notifications are sent while it runs. With wait=false it returns at once with a task_id: follow it with coding_wait (or coding_status) and stop it with coding_cancel.",
    );
    let wait = schema_for::<CodeWaitArg>();
    if let (Some(props), Some(extra)) = (
        def.schema
            .get_mut("properties")
            .and_then(Value::as_object_mut),
        wait.get("properties").and_then(Value::as_object),
    ) {
        props.extend(extra.clone());
    }
}

/// Check `args` against `def`'s schema, with the same rules and words as the agent runtime
/// ([`station_agent::args::check_args`]).
pub(crate) fn check_args(def: &ToolDef, args: &Map<String, Value>) -> Result<(), ArgError> {
    station_agent::args::check_args(&def.name, &def.schema, args)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
                "coding_rewind",
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

    #[test]
    fn own_tool_schemas_are_generated_from_their_argument_types() {
        assert_eq!(def("coding_sessions").schema, schema_for::<SessionsArgs>());
        assert_eq!(def("coding_status").schema, schema_for::<TaskArgs>());
        assert_eq!(def("coding_cancel").schema, schema_for::<TaskArgs>());
        assert_eq!(def("coding_wait").schema, schema_for::<WaitArgs>());
        assert_eq!(
            def("coding_wait").schema["properties"]["timeout_secs"],
            json!({"type": "integer", "description": "How long to wait (default 50, at most 55).", "minimum": 1, "maximum": 55})
        );
        assert_eq!(
            def("code").schema["properties"]["wait"],
            schema_for::<CodeWaitArg>()["properties"]["wait"]
        );
        let read = |name: &str, v: Value| {
            station_agent::args::parse_args::<WaitArgs>(name, &v)
                .map(|a| (a.task_id, a.timeout_secs))
        };
        assert_eq!(
            read("coding_wait", json!({"task_id": "t1", "timeout_secs": 55})),
            Ok(("t1".to_string(), Some(55)))
        );
        let unknown = read("coding_wait", json!({"task_id": "t1", "timeout": 5})).unwrap_err();
        assert_eq!(
            unknown,
            ArgError {
                error: "`coding_wait` takes no argument `timeout`".into(),
                fix: "use only these arguments: task_id, timeout_secs".into(),
            }
        );
        let sessions = station_agent::args::parse_args::<SessionsArgs>(
            "coding_sessions",
            &json!({"limit": 0}),
        )
        .unwrap_err();
        assert_eq!(sessions.error, "`limit` must be at least 1, not 0");
    }
}
