//! `coding.policy` for ACP agents: every `session/request_permission` and `fs/write_text_file`
//! is decided by the task's policy (and, for `ask`, the task's permission handler), and each
//! decision is an audit event.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;
use station_core::ExecContext;
use station_core::policy::{Action, Policy, PolicyConfig, Verdict};

/// Decides the requests of one running turn.
#[derive(Debug)]
pub(crate) struct TurnJudge {
    policy: Policy,
    workspace: PathBuf,
    ctx: ExecContext,
    /// Files a permission answer already allowed: the agent's `fs/write_text_file` that
    /// follows is the same decision, not a second question.
    approved_writes: Mutex<HashSet<PathBuf>>,
}

impl TurnJudge {
    pub(crate) fn new(policy: &PolicyConfig, workspace: &Path, ctx: ExecContext) -> TurnJudge {
        TurnJudge {
            policy: Policy::new(policy.clone(), workspace),
            workspace: workspace.to_path_buf(),
            ctx,
            approved_writes: Mutex::default(),
        }
    }
}

/// What the agent's tool call asks for: the tool's name for the audit trail, and one action
/// per path it touches (or one action without a path).
pub fn actions_of_tool_call(tool_call: &Value) -> (String, Vec<Action>) {
    let kind = tool_call["kind"].as_str().unwrap_or("other");
    let input = &tool_call["rawInput"];
    let title = tool_call["title"].as_str().unwrap_or_default();
    let tool = tool_call["_meta"]["claudeCode"]["toolName"]
        .as_str()
        .unwrap_or(kind)
        .to_string();
    let paths = tool_paths(tool_call);
    let actions = match kind {
        "edit" | "delete" | "move" if !paths.is_empty() => paths
            .into_iter()
            .map(|path| Action::Edit { path })
            .collect(),
        "read" | "search" if !paths.is_empty() => paths
            .into_iter()
            .map(|path| Action::Read { path })
            .collect(),
        "read" | "search" => vec![Action::Read {
            path: String::new(),
        }],
        "execute" => {
            let command = match input.get("command").or_else(|| input.get("cmd")) {
                Some(Value::Array(argv)) => argv
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(Value::String(c)) => c.clone(),
                // The agents title a shell call with its command line.
                _ => title.trim_matches('`').to_string(),
            };
            vec![Action::Bash { command }]
        }
        "fetch" => {
            let target = ["url", "query", "prompt"]
                .iter()
                .find_map(|k| input.get(*k).and_then(Value::as_str))
                .unwrap_or(title)
                .to_string();
            vec![Action::Network { target }]
        }
        _ => {
            let by_name = Action::of_tool_call(&tool, input);
            match by_name {
                Action::Tool { .. } if !paths.is_empty() => {
                    // Unknown kind that names files: treat as an edit, the stricter reading.
                    paths
                        .into_iter()
                        .map(|path| Action::Edit { path })
                        .collect()
                }
                other => vec![other],
            }
        }
    };
    (tool, actions)
}

/// Paths a tool call names: its locations, diff paths and path-like raw input fields.
fn tool_paths(tool_call: &Value) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(p) = v.and_then(Value::as_str).filter(|p| !p.is_empty())
            && !paths.iter().any(|known| known == p)
        {
            paths.push(p.to_string());
        }
    };
    for loc in tool_call["locations"].as_array().into_iter().flatten() {
        push(loc.get("path"));
    }
    for content in tool_call["content"].as_array().into_iter().flatten() {
        if content["type"] == "diff" {
            push(content.get("path"));
        }
    }
    if let Some(input) = tool_call["rawInput"].as_object() {
        for key in [
            "filePath",
            "file_path",
            "filepath",
            "path",
            "absolute_path",
            "notebook_path",
            "destination",
            "new_path",
        ] {
            push(input.get(key));
        }
    }
    paths
}

/// The one action to decide a tool call by: the first the policy denies, else the first it
/// leaves to a person, else the first.
fn deciding_action(policy: &Policy, actions: Vec<Action>) -> Action {
    let verdicts: Vec<Verdict> = actions.iter().map(|a| policy.decide(a).verdict).collect();
    let pick = verdicts
        .iter()
        .position(|v| *v == Verdict::Deny)
        .or_else(|| verdicts.iter().position(|v| *v == Verdict::Ask))
        .unwrap_or(0);
    actions.into_iter().nth(pick).unwrap_or(Action::Tool {
        name: "unknown".into(),
    })
}

/// Whether the tool call may run. In a turn the decision is judged (asked, audited); outside
/// one (an agent still busy after its turn ended) the configured policy decides and `ask`
/// is a deny, since nobody waits for an answer.
pub(crate) async fn allow_tool_call(
    judge: Option<&TurnJudge>,
    idle: &Policy,
    tool_call: &Value,
) -> bool {
    let (tool, actions) = actions_of_tool_call(tool_call);
    let Some(judge) = judge else {
        let action = deciding_action(idle, actions);
        return idle.decide(&action).verdict == Verdict::Allow;
    };
    let action = deciding_action(&judge.policy, actions);
    let record = judge.policy.judge(&tool, action, &judge.ctx).await;
    let allowed = record.verdict == Verdict::Allow;
    if allowed && let Action::Edit { path } = &record.action {
        judge
            .approved_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(absolute(judge.policy_workspace(), path));
    }
    allowed
}

/// Whether the agent may write `path` through `fs/write_text_file`: `Err` names the rule that
/// refused it.
pub(crate) async fn allow_write(
    judge: Option<&TurnJudge>,
    idle: &Policy,
    path: &Path,
) -> Result<(), String> {
    let action = Action::Edit {
        path: path.to_string_lossy().into_owned(),
    };
    let (verdict, rule) = match judge {
        Some(judge) => {
            let approved = judge
                .approved_writes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&absolute(judge.policy_workspace(), &action_path(&action)));
            if approved {
                return Ok(());
            }
            let record = judge
                .policy
                .judge("fs/write_text_file", action, &judge.ctx)
                .await;
            (record.verdict, record.rule)
        }
        None => {
            let d = idle.decide(&action);
            (d.verdict, d.rule)
        }
    };
    match verdict {
        Verdict::Allow => Ok(()),
        _ => Err(format!(
            "writing {} refused by coding.policy (rule: {rule})",
            path.display()
        )),
    }
}

fn action_path(action: &Action) -> String {
    action.target().to_string()
}

impl TurnJudge {
    fn policy_workspace(&self) -> &Path {
        &self.workspace
    }
}

/// `path` made absolute against `workspace`, with `.` and `..` resolved lexically.
fn absolute(workspace: &Path, path: &str) -> PathBuf {
    let joined = workspace.join(path);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The option that carries `allowed` out: a once-only answer, so the agent asks again next
/// time; `None` when the agent offered none (the request is then answered `cancelled`).
pub(crate) fn option_for(options: &[Value], allowed: bool) -> Option<Value> {
    let wanted: &[&str] = if allowed {
        &["allow_once", "allow_always"]
    } else {
        &["reject_once", "reject_always"]
    };
    wanted.iter().find_map(|kind| {
        options
            .iter()
            .find(|o| o["kind"] == *kind)
            .map(|o| o["optionId"].clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_calls_as_the_agents_send_them_become_actions() {
        // claude-agent-acp's Write (captured), opencode's edit (filepath), a shell call.
        let claude = json!({"toolCallId": "t", "rawInput": {"file_path": "/w/a.py", "content": "x"},
            "title": "Write a.py", "kind": "edit",
            "content": [{"type": "diff", "path": "/w/a.py", "oldText": null, "newText": "x"}],
            "locations": [{"path": "/w/a.py"}]});
        assert_eq!(
            actions_of_tool_call(&claude),
            (
                "edit".into(),
                vec![Action::Edit {
                    path: "/w/a.py".into()
                }]
            )
        );
        let opencode = json!({"kind": "edit", "title": "/w/b.py", "locations": [],
            "rawInput": {"filepath": "/w/b.py", "diff": "..."}});
        assert_eq!(
            actions_of_tool_call(&opencode).1,
            vec![Action::Edit {
                path: "/w/b.py".into()
            }]
        );
        let bash = json!({"kind": "execute", "title": "rm -rf data",
            "rawInput": {"command": "rm -rf data", "description": "clean"}});
        assert_eq!(
            actions_of_tool_call(&bash).1,
            vec![Action::Bash {
                command: "rm -rf data".into()
            }]
        );
        let titled = json!({"kind": "execute", "title": "`ls -la`"});
        assert_eq!(
            actions_of_tool_call(&titled).1,
            vec![Action::Bash {
                command: "ls -la".into()
            }]
        );
        let argv = json!({"kind": "execute", "rawInput": {"command": ["git", "push"]}});
        assert_eq!(
            actions_of_tool_call(&argv).1,
            vec![Action::Bash {
                command: "git push".into()
            }]
        );
        let fetch = json!({"kind": "fetch", "rawInput": {"url": "https://example.com"}});
        assert_eq!(
            actions_of_tool_call(&fetch).1,
            vec![Action::Network {
                target: "https://example.com".into()
            }]
        );
        let moved =
            json!({"kind": "move", "locations": [{"path": "/w/a"}, {"path": "/w/secrets/a"}]});
        assert_eq!(actions_of_tool_call(&moved).1.len(), 2);
        let meta = json!({"_meta": {"claudeCode": {"toolName": "mcp__x__y"}}, "kind": "other"});
        assert_eq!(
            actions_of_tool_call(&meta),
            (
                "mcp__x__y".into(),
                vec![Action::Tool {
                    name: "mcp__x__y".into()
                }]
            )
        );
        let no_kind = json!({"title": "something", "locations": [{"path": "/w/c"}]});
        assert_eq!(
            actions_of_tool_call(&no_kind).1,
            vec![Action::Edit {
                path: "/w/c".into()
            }]
        );
    }

    #[test]
    fn a_move_into_a_denied_path_is_decided_by_the_denied_one() {
        let policy: PolicyConfig =
            serde_json::from_value(json!({"edit": {"deny": ["secrets/**"]}})).unwrap();
        let policy = Policy::new(policy, "/w");
        let moved =
            json!({"kind": "move", "locations": [{"path": "/w/a"}, {"path": "/w/secrets/a"}]});
        let action = deciding_action(&policy, actions_of_tool_call(&moved).1);
        assert_eq!(
            action,
            Action::Edit {
                path: "/w/secrets/a".into()
            }
        );
    }

    #[test]
    fn once_only_options_are_preferred() {
        let options = vec![
            json!({"optionId": "always", "kind": "allow_always"}),
            json!({"optionId": "once", "kind": "allow_once"}),
            json!({"optionId": "no", "kind": "reject_once"}),
        ];
        assert_eq!(option_for(&options, true), Some(json!("once")));
        assert_eq!(option_for(&options, false), Some(json!("no")));
        assert_eq!(option_for(&options[..1], false), None);
        assert_eq!(option_for(&options[..1], true), Some(json!("always")));
    }
}
