//! The `station://coding/tools` resource: the tools and the configured backend, in markdown.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use station_core::CodingBackend;

use crate::schema::{MAX_WAIT_SECS, ToolDef};
use crate::server::ServerDescription;

pub(crate) fn tools_markdown(
    backend: &dyn CodingBackend,
    defs: &[ToolDef],
    description: &ServerDescription,
    heartbeat: Duration,
) -> String {
    let mut md = String::new();
    let caps = backend.capabilities();
    let _ = writeln!(md, "# Station coding tools\n");
    let _ = writeln!(md, "## Backend\n");
    let _ = writeln!(md, "- name: `{}`", backend.name());
    let on: Vec<&str> = [
        ("streaming", caps.streaming),
        ("resume", caps.resume),
        ("resume by title", caps.resume_by_title),
        ("cancel", caps.cancel),
        ("list sessions", caps.list_sessions),
        ("remote workspace", caps.remote_workspace),
        ("usage", caps.usage),
        ("cost", caps.cost),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect();
    let _ = writeln!(
        md,
        "- capabilities: {}",
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(", ")
        }
    );
    for line in &description.backend_details {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(
        md,
        "\n## Workflow\n\n\
         1. `coding_open` a workspace directory or a repository (or continue a session from `coding_sessions`).\n\
         2. `code` with the `session_id` and an `instruction`. The result lists the files changed.\n\
         3. Optionally `coding_branch`, `coding_commit`, `coding_push`; `coding_rewind` undoes \
         `code` tasks on a local workspace.\n\
         4. `coding_close` when done; the session can be continued later by id or title.\n\n\
         ## Long tasks\n\n\
         Coding tasks often take minutes. While `code` runs, the server sends a progress \
         notification for every coding event and at least every {}s, and a log message \
         (`notifications/message`, logger `station.coding`) per event. Clients that reset their \
         request timeout on progress just wait.\n\n\
         For clients with a fixed request timeout (often 60 s): call `code` with `wait: false`; it \
         returns a `task_id` at once. Then call `coding_wait` (it waits up to {MAX_WAIT_SECS}s) until \
         `status` is no longer `running`; `coding_status` shows the latest events; \
         `coding_cancel` stops the task. Cancelling a waiting `code` request stops the task too.\n",
        heartbeat.as_secs().max(1)
    );
    let _ = writeln!(md, "## Tools\n");
    for def in defs {
        let _ = writeln!(md, "### `{}`\n\n{}\n", def.name, def.description);
        let required: Vec<&str> = def
            .schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let Some(props) = def.schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let ty = prop.get("type").and_then(Value::as_str).unwrap_or("any");
                let need = if required.contains(&name.as_str()) {
                    "required"
                } else {
                    "optional"
                };
                let what = prop
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let _ = writeln!(md, "- `{name}` ({ty}, {need}) {what}");
            }
            let _ = writeln!(md);
        }
    }
    let _ = writeln!(
        md,
        "Results are JSON. A result with `\"success\": false` is a tool error and carries `error` and `fix`."
    );
    md
}
