//! `coding.policy` on an OpenCode server: the server asks (`permission.asked` on the event
//! stream), Station decides with [`Policy::judge`] and replies through
//! `POST /permission/{id}/reply`. A managed server is started with `ask` for every kind of
//! request the policy covers, so every decision reaches Station; a user's own server is read
//! (`GET /config`) to say which rules it lets through without asking.

use serde_json::{Value, json};
use station_core::policy::{Action, Policy, PolicyConfig, Verdict};
use station_core::{ExecContext, Result};

use crate::client::{Client, Retry};

/// The environment variable OpenCode reads its permission config from (it wins over the
/// config files).
pub(crate) const PERMISSION_ENV: &str = "OPENCODE_PERMISSION";

/// The OpenCode permission kinds the policy decides.
const DECIDED: [&str; 5] = [
    "edit",
    "bash",
    "webfetch",
    "websearch",
    "external_directory",
];

/// The permission config of a managed server: every request the policy decides is asked.
pub(crate) fn ask_everything() -> Value {
    Value::Object(
        DECIDED
            .iter()
            .map(|k| (k.to_string(), json!("ask")))
            .collect(),
    )
}

/// One `permission.asked` event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PermissionAsk {
    pub(crate) id: String,
    pub(crate) session_id: String,
    /// `edit`, `bash`, `webfetch`, `external_directory`, ...
    pub(crate) permission: String,
    pub(crate) patterns: Vec<String>,
    pub(crate) metadata: Value,
    pub(crate) call_id: Option<String>,
}

impl PermissionAsk {
    /// The request in an event's `properties`, when it is one.
    pub(crate) fn from_event(kind: &str, props: &Value) -> Option<PermissionAsk> {
        if kind != "permission.asked" {
            return None;
        }
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        Some(PermissionAsk {
            id: text(props.get("id")).filter(|id| !id.is_empty())?,
            session_id: text(props.get("sessionID")).unwrap_or_default(),
            permission: text(props.get("permission")).unwrap_or_default(),
            patterns: props
                .get("patterns")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|p| text(Some(p))).collect())
                .unwrap_or_default(),
            metadata: props.get("metadata").cloned().unwrap_or(Value::Null),
            call_id: text(props.get("tool").and_then(|t| t.get("callID"))),
        })
    }

    /// What the agent asks to do, in the policy's terms.
    pub(crate) fn action(&self) -> Action {
        let meta = |key: &str| self.metadata.get(key).and_then(Value::as_str);
        let first = || self.patterns.first().cloned().unwrap_or_default();
        match self.permission.as_str() {
            "edit" => Action::Edit {
                path: meta("filepath").map(str::to_string).unwrap_or_else(first),
            },
            "read" => Action::Read {
                path: meta("filepath").map(str::to_string).unwrap_or_else(first),
            },
            // Asked before a tool reads or writes outside the project; the tool's own request
            // (an edit) is asked again afterwards.
            "external_directory" => Action::Read {
                path: meta("filepath")
                    .or_else(|| meta("parentDir"))
                    .map(str::to_string)
                    .unwrap_or_else(|| first().trim_end_matches("/*").to_string()),
            },
            "bash" => Action::Bash {
                command: meta("command")
                    .map(str::to_string)
                    .unwrap_or_else(|| self.patterns.join(" && ")),
            },
            "webfetch" | "websearch" => Action::Network {
                target: meta("url")
                    .or_else(|| meta("query"))
                    .map(str::to_string)
                    .unwrap_or_else(first),
            },
            other => Action::Tool {
                name: other.to_string(),
            },
        }
    }
}

/// Decide `ask` with `policy` (asking the context's handler for `ask`; audited) and reply to
/// the server: `once` or `reject` with the rule, so the model learns why and carries on.
pub(crate) async fn answer(
    client: &Client,
    dir: Option<&str>,
    ask: &PermissionAsk,
    tool: &str,
    policy: &Policy,
    ctx: &ExecContext,
) -> Result<()> {
    let record = policy.judge(tool, ask.action(), ctx).await;
    let body = match record.verdict {
        Verdict::Allow => json!({ "reply": "once" }),
        Verdict::Deny | Verdict::Ask => json!({
            "reply": "reject",
            "message": format!(
                "Station's policy denies this ({}): do not try it again another way",
                record.rule
            ),
        }),
    };
    client
        .post_unit(
            &["permission", &ask.id, "reply"],
            dir,
            Some(&body),
            Retry::Once,
            std::time::Duration::from_secs(10),
        )
        .await
}

/// Whether OpenCode, configured with `config` (a server's `permission`), can do requests of
/// `kind` without asking, and the setting that says so.
fn allows_unasked(config: &Value, kind: &str) -> Option<String> {
    // OpenCode's own defaults: everything allowed except outside its project.
    let default = if kind == "external_directory" {
        "ask"
    } else {
        "allow"
    };
    let (setting, value) = match config {
        Value::String(_) => ("permission".to_string(), config.clone()),
        Value::Object(map) => match map.get(kind).or_else(|| map.get("*")) {
            Some(v) => (format!("permission.{kind}"), v.clone()),
            None => (
                format!("permission.{kind} (unset, OpenCode's default)"),
                json!(default),
            ),
        },
        _ => (
            format!("permission.{kind} (unset, OpenCode's default)"),
            json!(default),
        ),
    };
    let allows = match &value {
        Value::String(s) => s == "allow",
        Value::Object(patterns) => patterns.values().any(|v| v == "allow"),
        _ => false,
    };
    allows.then(|| format!("{setting} is {value}"))
}

/// The rules of `policy` a server configured with `config` (its `permission`; `Null` when it
/// sets none) applies without asking Station, each with why and what to do.
pub(crate) fn gaps(policy: &PolicyConfig, config: &Value, server: &str) -> Vec<String> {
    let fix = "set it to \"ask\" there, or let Station start its own server (coding.opencode.managed: always)";
    let mut out = Vec::new();
    let mut rule = |rule: String, kind: &str| {
        if let Some(why) = allows_unasked(config, kind) {
            out.push(format!(
                "{rule}: the OpenCode server at {server} does not ask Station ({why}); {fix}"
            ));
        }
    };
    for p in &policy.edit.deny {
        rule(format!("edit.deny \"{}\"", p.as_str()), "edit");
    }
    for p in &policy.bash.deny {
        rule(format!("bash.deny \"{}\"", p.as_str()), "bash");
    }
    if policy.unmatched != Verdict::Allow {
        rule("unmatched (edits)".into(), "edit");
        rule("unmatched (commands)".into(), "bash");
    }
    if policy.network != Verdict::Allow {
        rule("network (web fetch)".into(), "webfetch");
        rule("network (web search)".into(), "websearch");
    }
    if policy.outside_workspace != Verdict::Allow {
        rule("outside_workspace".into(), "external_directory");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PolicyConfig {
        serde_json::from_value(json!({
            "edit": { "deny": ["secrets/**"] },
            "bash": { "allow": ["*"], "deny": ["rm -rf *"] },
            "network": "deny",
        }))
        .unwrap()
    }

    #[test]
    fn a_server_that_allows_edits_and_commands_is_a_gap_for_their_deny_rules() {
        let config = json!({ "edit": "allow", "bash": "allow", "webfetch": "deny" });
        let found = gaps(&example(), &config, "http://h:1");
        let rules: Vec<&str> = found.iter().map(|g| g.split(':').next().unwrap()).collect();
        // websearch is unset: OpenCode's default allows it.
        assert_eq!(
            rules,
            [
                "edit.deny \"secrets/**\"",
                "bash.deny \"rm -rf *\"",
                "network (web search)"
            ],
            "{found:#?}"
        );
        assert!(
            found[0].contains("permission.edit is \"allow\"") && found[0].contains("\"ask\""),
            "{}",
            found[0]
        );
        assert!(gaps(&example(), &ask_everything(), "x").is_empty());
        let patterns = json!({ "edit": "ask", "bash": { "*": "ask", "git *": "allow" },
                               "webfetch": "ask", "websearch": "deny" });
        let found = gaps(&example(), &patterns, "x");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("bash.deny"), "{found:#?}");
    }

    #[test]
    fn requests_become_policy_actions() {
        let ask = |kind: &str, props: Value| PermissionAsk::from_event(kind, &props);
        let edit = ask(
            "permission.asked",
            json!({"id": "per_1", "sessionID": "ses_1", "permission": "edit",
                   "patterns": ["ws/secrets/key.txt"], "metadata": {"filepath": "/ws/secrets/key.txt"},
                   "always": ["*"], "tool": {"messageID": "msg_1", "callID": "call_1"}}),
        )
        .unwrap();
        assert_eq!(
            edit.action(),
            Action::Edit {
                path: "/ws/secrets/key.txt".into()
            }
        );
        assert_eq!(edit.call_id.as_deref(), Some("call_1"));
        let bash = ask(
            "permission.asked",
            json!({"id": "per_2", "sessionID": "ses_1", "permission": "bash",
                   "patterns": ["rm -rf data"], "metadata": {"command": "rm -rf data"}}),
        )
        .unwrap();
        assert_eq!(
            bash.action(),
            Action::Bash {
                command: "rm -rf data".into()
            }
        );
        assert_eq!(ask("permission.replied", json!({"id": "per_3"})), None);
    }
}
