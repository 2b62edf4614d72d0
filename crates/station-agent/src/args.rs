//! Typed tool arguments: a tool's JSON schema is generated from its argument struct
//! ([`schema_for`]), and one checker ([`check_args`], [`parse_args`]) turns a bad or missing
//! argument into one message that names it and says what to pass. The agent runtime and the
//! MCP server both use it, so a model sees the same words either way.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Bad arguments, said so that the caller can fix them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// What is wrong, naming the argument.
    pub error: String,
    /// What to pass instead.
    pub fix: String,
}

/// The JSON schema of `T` as a tool offers it: an object schema whose properties are `T`'s
/// fields (doc comments become descriptions), with plain types (an optional argument is its
/// type, not "type or null"; no `format`, `title` or `$schema`), which every model API accepts.
pub fn schema_for<T: JsonSchema>() -> Value {
    let schema = SchemaSettings::draft2020_12()
        .with(|s| s.meta_schema = None)
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(root) = value.as_object_mut() {
        root.remove("title");
    }
    simplify(&mut value);
    value
}

/// Drop `format`, and `null` from type and value lists (null already counts as absent).
fn simplify(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.remove("format");
    if let Some(Value::Array(types)) = obj.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let single = match kept.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(kept),
        };
        obj.insert("type".into(), single);
    }
    if let Some(Value::Array(values)) = obj.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(simplify);
    }
    if let Some(items) = obj.get_mut("items") {
        simplify(items);
    }
}

/// Mark `key` required in `schema` (first), for an argument the tool can do without but a model
/// should pass.
pub fn advertise_required(schema: &mut Value, key: &str) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let required = obj
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = required.as_array_mut()
        && !list.iter().any(|k| k == key)
    {
        list.insert(0, Value::String(key.into()));
    }
}

/// Check and read the arguments of `tool` into `T`. `null` and blank strings count as absent,
/// strings are trimmed; then the arguments are checked against `T`'s schema ([`check_args`]).
pub fn parse_args<T: JsonSchema + DeserializeOwned>(
    tool: &str,
    args: &Value,
) -> Result<T, ArgError> {
    let args = match args {
        Value::Object(map) => map,
        Value::Null => &Map::new(),
        other => {
            return Err(ArgError {
                error: format!(
                    "the arguments of `{tool}` must be an object, not {}",
                    value_phrase(other)
                ),
                fix: format!("call `{tool}` again with its arguments as a JSON object"),
            });
        }
    };
    let normalized: Map<String, Value> = args
        .iter()
        .filter_map(|(key, value)| match value {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some((key.clone(), Value::String(s.trim().to_string()))),
            other => Some((key.clone(), other.clone())),
        })
        .collect();
    check_args(tool, &schema_for::<T>(), &normalized)?;
    serde_json::from_value(Value::Object(normalized)).map_err(|e| ArgError {
        error: format!("the arguments of `{tool}` are not valid: {e}"),
        fix: format!("call `{tool}` again with the arguments its schema lists"),
    })
}

/// Check `args` of `tool` against its `schema`: required keys present (a blank string is
/// missing), no unknown keys, and each value of the declared type and range. `null` counts as
/// absent.
pub fn check_args(tool: &str, schema: &Value, args: &Map<String, Value>) -> Result<(), ArgError> {
    let empty = Map::new();
    let props = schema
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
                error: format!("`{tool}` takes no argument `{key}`"),
                fix: format!("use only these arguments: {}", known()),
            });
        };
        check_value(key, prop, value)?;
    }
    let required = schema
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
                error: format!("`{key}` is required by `{tool}`"),
                fix: format!("call `{tool}` again with `{key}` set"),
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
    if let Some(allowed) = prop.get("enum").and_then(Value::as_array)
        && value.is_string()
        && !allowed.contains(value)
    {
        let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
        return Err(ArgError {
            error: format!(
                "`{key}` must be one of {}, not `{}`",
                names.join(", "),
                value.as_str().unwrap_or_default()
            ),
            fix: format!("pass `{key}` as one of: {}", names.join(", ")),
        });
    }
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
