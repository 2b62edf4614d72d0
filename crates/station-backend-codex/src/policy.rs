//! `coding.policy` for Codex. `codex exec` asks nobody per tool call, so the policy is
//! rendered into Codex's own settings before the run:
//!
//! * `outside_workspace: deny` → a `workspace-write` sandbox at most (a configured
//!   `read-only` stays), without `/tmp` and `$TMPDIR` as writable roots;
//! * `network: deny` → no network in the sandbox and no web search tool;
//! * `bash.deny` patterns → exec policy prefix rules with decision `forbidden`, in a
//!   Station-owned `$CODEX_HOME/rules/station-*.rules` file that lives for one run.
//!
//! What Codex cannot express is a gap ([`gaps`]), listed in every outcome; the audit trail
//! ([`CodexAudit`]) records such a rule as not enforced rather than as a denial.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use station_core::EventKind;
use station_core::agent_process::StdoutParser;
use station_core::policy::{Action, Pattern, PermissionRecord, Policy, PolicyConfig, Verdict};

use crate::Sandbox;
use crate::parser::ExecParser;

/// What the policy becomes on `codex`'s command line and in its rules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// The sandbox to run with.
    pub(crate) sandbox: Sandbox,
    /// `-c key=value` overrides, after the configured ones (later ones win).
    pub(crate) overrides: Vec<String>,
    /// The exec policy rules file's text, when any command is forbidden.
    pub(crate) rules: Option<String>,
}

/// Whether a verdict keeps the agent from doing it (`ask` is a deny: nobody can answer).
fn refuses(verdict: Verdict) -> bool {
    verdict != Verdict::Allow
}

/// Render `policy` for Codex, the configured `sandbox` being the loosest allowed.
pub(crate) fn render(policy: &PolicyConfig, sandbox: Sandbox) -> Rendered {
    let mut overrides = Vec::new();
    let mut sandbox = sandbox;
    if refuses(policy.outside_workspace) {
        if sandbox == Sandbox::DangerFullAccess {
            sandbox = Sandbox::WorkspaceWrite;
        }
        overrides.push("sandbox_workspace_write.exclude_slash_tmp=true".to_string());
        overrides.push("sandbox_workspace_write.exclude_tmpdir_env_var=true".to_string());
    }
    if refuses(policy.network) {
        overrides.push("sandbox_workspace_write.network_access=false".to_string());
        overrides.push("web_search=\"disabled\"".to_string());
    }
    let rules: Vec<String> = policy
        .bash
        .deny
        .iter()
        .filter_map(|p| {
            let (prefix, _) = command_prefix(p)?;
            let words: Vec<String> = prefix.iter().map(|w| starlark_string(w)).collect();
            Some(format!(
                "prefix_rule(pattern = [{}], decision = \"forbidden\", justification = {})\n",
                words.join(", "),
                starlark_string(&format!("Station policy bash.deny \"{}\"", p.as_str()))
            ))
        })
        .collect();
    Rendered {
        sandbox,
        overrides,
        rules: (!rules.is_empty()).then(|| rules.concat()),
    }
}

/// The command prefix (as words) an exec policy rule can match for a `bash` glob, and
/// whether that is exact (`false`: it misses some commands the glob matches). `None` when
/// no prefix rule can stand for it.
fn command_prefix(pattern: &Pattern) -> Option<(Vec<String>, bool)> {
    let is_glob = |w: &str| w.contains(['*', '?', '[', ']', '{', '}', '\\']);
    let mut words: Vec<&str> = pattern.as_str().split_whitespace().collect();
    let mut exact = true;
    match words.last().copied() {
        Some("*") => {
            words.pop();
        }
        Some(last) if last.ends_with('*') && !is_glob(last.trim_end_matches('*')) => {
            // `git push*`: Codex matches whole words, so `git pushx` slips through.
            let stem = last.trim_end_matches('*');
            words.pop();
            words.push(stem);
            exact = false;
        }
        _ => {}
    }
    if words.is_empty() || words.iter().any(|w| is_glob(w)) {
        return None;
    }
    Some((words.iter().map(|w| w.to_string()).collect(), exact))
}

/// A string literal in Codex's rules language (Starlark accepts JSON's escapes).
fn starlark_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// Rules of `policy` Codex cannot enforce, each with why.
pub(crate) fn gaps(policy: &PolicyConfig) -> Vec<String> {
    unenforced(policy).into_iter().map(|(_, why)| why).collect()
}

/// The rules Codex cannot enforce: (the rule as decisions name it, why).
fn unenforced(policy: &PolicyConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &policy.edit.deny {
        out.push((
            format!("edit.deny \"{}\"", p.as_str()),
            format!(
                "edit.deny \"{}\": codex's sandbox knows writable directories only, not path patterns; the file can still be written",
                p.as_str()
            ),
        ));
    }
    for p in &policy.bash.deny {
        match command_prefix(p) {
            None => out.push((
                format!("bash.deny \"{}\"", p.as_str()),
                format!(
                    "bash.deny \"{}\": codex's exec policy matches command prefixes only (write it as `cmd args *`)",
                    p.as_str()
                ),
            )),
            Some((prefix, false)) => out.push((
                String::new(),
                format!(
                    "bash.deny \"{}\": enforced as the command prefix `{}`; longer words that start the same are not caught",
                    p.as_str(),
                    prefix.join(" ")
                ),
            )),
            Some((_, true)) => {}
        }
    }
    if refuses(policy.unmatched) {
        out.push((
            "unmatched".into(),
            format!(
                "unmatched: {}: codex runs every command and edit no rule forbids (inside its sandbox); it has no default-deny",
                verdict_word(policy.unmatched)
            ),
        ));
    }
    if refuses(policy.outside_workspace) {
        out.push((
            "outside_workspace".into(),
            "outside_workspace (reads): codex's sandbox confines writes to the workspace but lets commands read anywhere".into(),
        ));
    }
    out
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
        Verdict::Ask => "ask",
    }
}

/// A rules file under `$CODEX_HOME/rules/` for one run, removed when dropped. Codex reads its
/// rules when it starts; a concurrent run may see another run's file too, which only makes
/// it stricter.
#[derive(Debug)]
pub(crate) struct RulesFile {
    path: PathBuf,
}

impl RulesFile {
    /// Write `text` into a new Station-owned file in `<codex_home>/rules`.
    pub(crate) fn write(codex_home: &Path, text: &str) -> std::io::Result<RulesFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = codex_home.join("rules");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "station-{}-{}.rules",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text)?;
        Ok(RulesFile { path })
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RulesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Codex's parser plus the audit trail: a `Permission` event before each tool call it
/// reports, with what the policy says of it. A rule Codex cannot enforce is recorded as
/// allowed ("not enforced by codex"), because the call went ahead.
#[derive(Debug)]
pub(crate) struct CodexAudit {
    pub(crate) inner: ExecParser,
    policy: Policy,
    unenforced: Vec<String>,
}

impl CodexAudit {
    pub(crate) fn new(inner: ExecParser, policy: Policy) -> CodexAudit {
        let unenforced = unenforced(policy.config())
            .into_iter()
            .map(|(rule, _)| rule)
            .filter(|rule| !rule.is_empty())
            .collect();
        CodexAudit {
            inner,
            policy,
            unenforced,
        }
    }

    fn record(&self, tool: &str, action: Action) -> EventKind {
        let decision = self.policy.decide(&action);
        let (verdict, rule) = if !refuses(decision.verdict) {
            (Verdict::Allow, decision.rule)
        } else if self.unenforced.contains(&decision.rule) {
            (
                Verdict::Allow,
                format!("{} (not enforced by codex: a policy gap)", decision.rule),
            )
        } else {
            (Verdict::Deny, decision.rule)
        };
        EventKind::Permission {
            record: PermissionRecord {
                tool: tool.to_string(),
                action,
                verdict,
                rule,
            },
        }
    }
}

/// What a Codex tool call asks for: each changed file of a patch, the script of a
/// `bash -lc '…'` command.
fn actions_of(name: &str, input: &serde_json::Value) -> Vec<Action> {
    if let Some(changes) = input.get("changes").and_then(|c| c.as_array()) {
        return changes
            .iter()
            .filter_map(|c| c.get("path").and_then(|p| p.as_str()))
            .map(|path| Action::Edit {
                path: path.to_string(),
            })
            .collect();
    }
    match Action::of_tool_call(name, input) {
        Action::Bash { command } => vec![Action::Bash {
            command: shell_script(&command),
        }],
        other => vec![other],
    }
}

/// The script of `/bin/bash -lc '<script>'` (how Codex reports commands), else `command`.
fn shell_script(command: &str) -> String {
    let mut words = command.splitn(3, ' ');
    let (Some(shell), Some(flag), Some(rest)) = (words.next(), words.next(), words.next()) else {
        return command.to_string();
    };
    let shell_name = shell.rsplit('/').next().unwrap_or(shell);
    if !matches!(shell_name, "bash" | "sh" | "zsh") || !matches!(flag, "-lc" | "-c") {
        return command.to_string();
    }
    let rest = rest.trim();
    if rest.len() >= 2 && rest.starts_with('\'') && rest.ends_with('\'') {
        rest[1..rest.len() - 1].replace("'\\''", "'")
    } else if rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"') {
        rest[1..rest.len() - 1].replace("\\\"", "\"")
    } else {
        rest.to_string()
    }
}

/// The commands Codex refused in `rollout` (its session file: the lines of this run), by
/// Station's exec rules or its own guards (it refuses `rm -rf` by itself). `codex exec
/// --json` reports no item for them, so the audit reads them from the rollout: each
/// `exec_command` call whose output says it was rejected.
pub(crate) fn refused_commands(rollout: &str) -> Vec<String> {
    let mut commands: Vec<(String, String)> = Vec::new();
    let mut refused = Vec::new();
    for line in rollout.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(item) = entry.get("payload") else {
            continue;
        };
        let text = |key: &str| item.get(key).and_then(|v| v.as_str()).unwrap_or_default();
        match text("type") {
            "function_call" => {
                let args: serde_json::Value =
                    serde_json::from_str(text("arguments")).unwrap_or_default();
                if let Action::Bash { command } = Action::of_tool_call(text("name"), &args) {
                    commands.push((text("call_id").to_string(), command));
                }
            }
            "function_call_output" if text("output").contains("` rejected: ") => {
                if let Some((_, command)) = commands.iter().find(|(id, _)| id == text("call_id")) {
                    refused.push(command.clone());
                }
            }
            _ => {}
        }
    }
    refused
}

impl CodexAudit {
    /// The `Permission` events for commands Codex's exec policy refused (see
    /// [`refused_commands`]).
    pub(crate) fn refused(&self, rollout: &str) -> Vec<EventKind> {
        // Only what the policy refuses: Codex's own refusals of allowed commands are not
        // Station's decisions.
        refused_commands(rollout)
            .into_iter()
            .map(|command| Action::Bash { command })
            .filter(|action| refuses(self.policy.decide(action).verdict))
            .map(|action| self.record("exec_command", action))
            .collect()
    }
}

impl StdoutParser for CodexAudit {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let events = self.inner.push_line(line);
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            if let EventKind::ToolStarted { name, input, .. } = &event {
                for action in actions_of(name, input) {
                    out.push(self.record(name, action));
                }
            }
            out.push(event);
        }
        out
    }

    fn finished(&self) -> bool {
        self.inner.turn_ended()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PolicyConfig {
        serde_json::from_value(serde_json::json!({
            "edit": {"deny": ["secrets/**", "**/.env"]},
            "bash": {"allow": ["*"], "deny": ["rm -rf *", "git push*", "curl *", "echo * | sh"]},
            "outside_workspace": "deny",
            "network": "deny",
            "unmatched": "allow"
        }))
        .unwrap()
    }

    #[test]
    fn the_example_policy_becomes_a_confined_sandbox_and_prefix_rules() {
        let rendered = render(&example(), Sandbox::DangerFullAccess);
        assert_eq!(rendered.sandbox, Sandbox::WorkspaceWrite);
        assert!(
            rendered
                .overrides
                .contains(&"sandbox_workspace_write.network_access=false".to_string())
        );
        assert!(
            rendered
                .overrides
                .contains(&"web_search=\"disabled\"".to_string())
        );
        let rules = rendered.rules.unwrap();
        assert!(
            rules.contains("pattern = [\"rm\", \"-rf\"], decision = \"forbidden\""),
            "{rules}"
        );
        assert!(rules.contains("pattern = [\"git\", \"push\"]"), "{rules}");
        assert!(rules.contains("pattern = [\"curl\"]"), "{rules}");
        assert!(!rules.contains("\"echo\""), "{rules}");
        assert_eq!(
            render(&example(), Sandbox::ReadOnly).sandbox,
            Sandbox::ReadOnly,
            "the configured sandbox may only make it stricter"
        );
        let open = PolicyConfig {
            outside_workspace: Verdict::Allow,
            ..PolicyConfig::default()
        };
        assert_eq!(
            render(&open, Sandbox::DangerFullAccess).sandbox,
            Sandbox::DangerFullAccess
        );
    }

    #[test]
    fn what_codex_cannot_express_is_a_gap() {
        let gaps = gaps(&example());
        for needle in [
            "edit.deny \"secrets/**\"",
            "edit.deny \"**/.env\"",
            "bash.deny \"git push*\": enforced as the command prefix `git push`",
            "bash.deny \"echo * | sh\"",
            "outside_workspace (reads)",
        ] {
            assert!(
                gaps.iter().any(|g| g.contains(needle)),
                "{needle}: {gaps:#?}"
            );
        }
        assert!(!gaps.iter().any(|g| g.contains("rm -rf")), "{gaps:#?}");
    }

    #[test]
    fn the_audit_reads_patches_and_shell_scripts() {
        let policy = Policy::new(example(), "/w");
        let mut audit = CodexAudit::new(ExecParser::new(), policy);
        let mut events = audit.push_line(
            r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc 'rm -rf data'","aggregated_output":"","exit_code":1,"status":"failed"}}"#,
        );
        events.extend(audit.push_line(
            r#"{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"/w/secrets/key.txt","kind":"add"}],"status":"completed"}}"#,
        ));
        let records: Vec<(Verdict, String)> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::Permission { record } => Some((record.verdict, record.rule.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            records,
            [
                (Verdict::Deny, "bash.deny \"rm -rf *\"".to_string()),
                (
                    Verdict::Allow,
                    "edit.deny \"secrets/**\" (not enforced by codex: a policy gap)".to_string()
                ),
            ]
        );
        let rollout = [
            r#"{"type":"response_item","payload":{"type":"function_call","name":"exec_command","arguments":"{\"cmd\":\"rm -rf data\"}","call_id":"c2"}}"#,
            r#"{"type":"response_item","payload":{"type":"function_call","name":"exec_command","arguments":"{\"cmd\":\"ls\"}","call_id":"c3"}}"#,
            r#"{"type":"response_item","payload":{"type":"function_call_output","call_id":"c2","output":"exec_command failed: Rejected(`/bin/bash -lc 'rm -rf data'` rejected: rm -f style commands are not permitted)"}}"#,
            r#"{"type":"response_item","payload":{"type":"function_call_output","call_id":"c3","output":"ok"}}"#,
        ]
        .join("\n");
        assert_eq!(refused_commands(&rollout), ["rm -rf data"]);
        assert_eq!(
            shell_script("/bin/bash -lc 'echo '\\''hi'\\'''"),
            "echo 'hi'"
        );
        assert_eq!(shell_script("ls -la"), "ls -la");
    }
}
