//! One permission policy for every backend (`coding.policy`) and the budget (`coding.budget`).
//!
//! The policy decides what a coding agent may do — edit a path, run a command, reach the
//! network, step outside its workspace — and every backend enforces it through its agent's own
//! mechanism (a permission API, a rendered config, a permission callback), never by asking the
//! model. Each decision names the rule that made it, for the audit trail in events and outcome.
//!
//! Order: `deny` patterns win over `allow` patterns; a request no pattern matches gets
//! `unmatched`. Paths are relative to the workspace; a path outside it gets
//! `outside_workspace` whatever the patterns say.

use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::{Deserialize, Deserializer, Serialize};

/// What the policy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Let the agent do it.
    Allow,
    /// Refuse.
    Deny,
    /// Ask a person ([`PermissionHandler`]); without one, deny.
    Ask,
}

/// Patterns for one kind of request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Allowed when one matches (and no `deny` does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Pattern>,
    /// Refused when one matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Pattern>,
}

/// A glob: for paths `*` stays within a directory and `**` crosses them; for commands `*`
/// matches anything, spaces and slashes included.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    as_path: GlobMatcher,
    as_command: GlobMatcher,
}

impl Pattern {
    /// Compile `text`; the error says what is wrong with it.
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.trim().is_empty() {
            return Err("an empty pattern matches nothing; remove it".into());
        }
        let path = GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("`{text}` is not a valid glob: {}", e.kind()))?;
        let command =
            Glob::new(text).map_err(|e| format!("`{text}` is not a valid glob: {}", e.kind()))?;
        Ok(Pattern {
            text: text.to_string(),
            as_path: path.compile_matcher(),
            as_command: command.compile_matcher(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.text == other.text
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::new(&text).map_err(serde::de::Error::custom)
    }
}

/// `coding.policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Writes, edits, patches and deletions, by path relative to the workspace.
    pub edit: Rules,
    /// Shell commands (each part of `a && b`, `a; b`, `a | b` on its own).
    pub bash: Rules,
    /// Reads and writes outside the workspace.
    pub outside_workspace: Verdict,
    /// Web fetch and search tools.
    pub network: Verdict,
    /// Anything no rule above decides.
    pub unmatched: Verdict,
}

impl Default for PolicyConfig {
    /// No policy: everything inside the workspace is allowed, writes outside it are denied.
    fn default() -> Self {
        PolicyConfig {
            edit: Rules::default(),
            bash: Rules::default(),
            outside_workspace: Verdict::Deny,
            network: Verdict::Allow,
            unmatched: Verdict::Allow,
        }
    }
}

/// `coding.budget`: caps per task and per session; a task passing one is stopped with
/// [`StopReason::BudgetExceeded`](crate::StopReason::BudgetExceeded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Tokens (input + output + reasoning) one task may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// USD one task may cost (reported or estimated).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "non_negative"
    )]
    pub max_cost_usd: Option<f64>,
    /// Tokens all tasks of one session may use together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_max_tokens: Option<u64>,
    /// USD all tasks of one session may cost together.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "non_negative"
    )]
    pub session_max_cost_usd: Option<f64>,
}

impl BudgetConfig {
    /// Whether any cap is set.
    pub fn is_set(&self) -> bool {
        self.max_tokens.is_some()
            || self.max_cost_usd.is_some()
            || self.session_max_tokens.is_some()
            || self.session_max_cost_usd.is_some()
    }
}

fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        Some(v) if !v.is_finite() || v < 0.0 => Err(serde::de::Error::custom(format!(
            "{v} is not a usable amount of USD; use a number ≥ 0"
        ))),
        v => Ok(v),
    }
}

/// Something an agent asks to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Create, change or delete a file.
    Edit {
        /// As the agent gave it (absolute, or relative to the workspace).
        path: String,
    },
    /// Read a file.
    Read {
        /// As the agent gave it.
        path: String,
    },
    /// Run a shell command.
    Bash {
        /// The command line.
        command: String,
    },
    /// Fetch or search the web.
    Network {
        /// URL or query.
        target: String,
    },
    /// Any other tool (an MCP tool, a sub-agent, ...).
    Tool {
        /// Its name.
        name: String,
    },
}

impl Action {
    /// What it touches, for the audit trail.
    pub fn target(&self) -> &str {
        match self {
            Action::Edit { path } | Action::Read { path } => path,
            Action::Bash { command } => command,
            Action::Network { target } => target,
            Action::Tool { name } => name,
        }
    }
}

impl Action {
    /// What an agent's tool call asks for, from the tool's name and input, for the tool names
    /// the supported agents use (OpenCode, Claude Code, Codex, Gemini CLI, ACP agents; any
    /// case). A tool this does not know is [`Action::Tool`].
    pub fn of_tool_call(name: &str, input: &serde_json::Value) -> Action {
        let field = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| input.get(*k).and_then(|v| v.as_str()))
                .unwrap_or_default()
                .to_string()
        };
        const PATH: &[&str] = &[
            "filePath",
            "file_path",
            "path",
            "absolute_path",
            "notebook_path",
        ];
        match name.to_ascii_lowercase().as_str() {
            "write"
            | "edit"
            | "multiedit"
            | "patch"
            | "notebookedit"
            | "write_file"
            | "replace"
            | "create_file"
            | "str_replace_based_edit_tool" => Action::Edit { path: field(PATH) },
            "read" | "read_file" | "read_many_files" | "view" => Action::Read { path: field(PATH) },
            "bash" | "shell" | "run_shell_command" | "exec_command" | "local_shell" => {
                let command = match input.get("command").or_else(|| input.get("cmd")) {
                    Some(serde_json::Value::Array(argv)) => argv
                        .iter()
                        .filter_map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                    Some(v) => v.as_str().unwrap_or_default().to_string(),
                    None => String::new(),
                };
                Action::Bash { command }
            }
            "webfetch" | "web_fetch" | "websearch" | "web_search" | "google_web_search" => {
                Action::Network {
                    target: field(&["url", "query", "prompt"]),
                }
            }
            _ => Action::Tool {
                name: name.to_string(),
            },
        }
    }
}

/// The policy's answer and the rule that gave it (`edit.deny "secrets/**"`,
/// `outside_workspace`, `unmatched`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// The rule that decided.
    pub rule: String,
}

impl Decision {
    fn new(verdict: Verdict, rule: impl Into<String>) -> Decision {
        Decision {
            verdict,
            rule: rule.into(),
        }
    }
}

/// One decision in the audit trail: which tool asked for what, the answer, the rule behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PermissionRecord {
    /// The agent's tool (as the agent names it).
    pub tool: String,
    /// What it asked for.
    pub action: Action,
    /// The final answer (an `ask` resolved by a person or, with nobody to ask, to deny).
    pub verdict: Verdict,
    /// The rule that decided (`edit.deny "secrets/**"`, `outside_workspace`, `asked`, ...).
    pub rule: String,
}

/// A compiled policy for one workspace.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    workspace: PathBuf,
}

impl Policy {
    /// `config` applied to `workspace` (an absolute path).
    pub fn new(config: PolicyConfig, workspace: impl Into<PathBuf>) -> Policy {
        Policy {
            config,
            workspace: normalize(&workspace.into()),
        }
    }

    /// The configuration it was made from.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Decide `action`.
    pub fn decide(&self, action: &Action) -> Decision {
        match action {
            Action::Edit { path } => match self.relative(path) {
                None => Decision::new(self.config.outside_workspace, "outside_workspace"),
                Some(rel) => self.by_rules("edit", &self.config.edit, |p| p.as_path.is_match(&rel)),
            },
            Action::Read { path } => match self.relative(path) {
                None => Decision::new(self.config.outside_workspace, "outside_workspace"),
                Some(_) => Decision::new(Verdict::Allow, "read inside the workspace"),
            },
            Action::Bash { command } => self.decide_command(command),
            Action::Network { .. } => Decision::new(self.config.network, "network"),
            Action::Tool { .. } => Decision::new(self.config.unmatched, "unmatched"),
        }
    }

    /// Every part of a compound command must be allowed; one denied part denies it all.
    fn decide_command(&self, command: &str) -> Decision {
        let parts = command_parts(command);
        if parts.is_empty() {
            return Decision::new(self.config.unmatched, "unmatched");
        }
        let mut weakest: Option<Decision> = None;
        for part in parts {
            let decision =
                self.by_rules("bash", &self.config.bash, |p| p.as_command.is_match(&part));
            match decision.verdict {
                Verdict::Deny => return decision,
                Verdict::Ask => weakest = Some(decision),
                Verdict::Allow => {
                    if weakest.is_none() {
                        weakest = Some(decision);
                    }
                }
            }
        }
        weakest.unwrap_or_else(|| Decision::new(self.config.unmatched, "unmatched"))
    }

    fn by_rules(&self, kind: &str, rules: &Rules, matches: impl Fn(&Pattern) -> bool) -> Decision {
        if let Some(p) = rules.deny.iter().find(|p| matches(p)) {
            return Decision::new(Verdict::Deny, format!("{kind}.deny \"{}\"", p.as_str()));
        }
        if let Some(p) = rules.allow.iter().find(|p| matches(p)) {
            return Decision::new(Verdict::Allow, format!("{kind}.allow \"{}\"", p.as_str()));
        }
        Decision::new(self.config.unmatched, "unmatched")
    }

    /// `path` relative to the workspace (`/`-separated), or `None` when it is outside.
    fn relative(&self, path: &str) -> Option<String> {
        let given = Path::new(path);
        let absolute = if given.is_absolute() {
            normalize(given)
        } else {
            normalize(&self.workspace.join(given))
        };
        let rel = absolute.strip_prefix(&self.workspace).ok()?;
        Some(rel.to_string_lossy().replace('\\', "/"))
    }
}

/// `path` with `.` and `..` resolved lexically (a symlink is not followed: the agent's tool
/// resolves it, and the workspace holds no links out unless the user made them).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The simple commands of a command line: split at `&&`, `||`, `;`, `|`, `&` and newlines,
/// each trimmed, with leading `VAR=value` assignments dropped, whitespace collapsed.
fn command_parts(command: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ';' | '\n' | '|' | '&' => {
                if matches!(chars.peek(), Some('|') | Some('&')) {
                    chars.next();
                }
                parts.push(std::mem::take(&mut current));
            }
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| {
            let words: Vec<&str> = p
                .split_whitespace()
                .skip_while(|w| is_assignment(w))
                .collect();
            words.join(" ")
        })
        .filter(|p| !p.is_empty())
        .collect()
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// A stream parser that also records, for the audit trail, what `policy` says of each tool
/// call the agent starts — for agents that enforce the policy themselves (from a rendered
/// config) and report tool calls but not the decisions. `ask` is recorded as the deny it
/// becomes where nobody can be asked mid-run.
#[derive(Debug)]
pub struct AuditedParser<P> {
    /// The agent's own parser.
    pub inner: P,
    policy: Policy,
}

impl<P> AuditedParser<P> {
    /// Wrap `inner`.
    pub fn new(inner: P, policy: Policy) -> Self {
        AuditedParser { inner, policy }
    }
}

impl<P: crate::agent_process::StdoutParser> crate::agent_process::StdoutParser
    for AuditedParser<P>
{
    fn push_line(&mut self, line: &str) -> Vec<crate::EventKind> {
        let events = self.inner.push_line(line);
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            if let crate::EventKind::ToolStarted { name, input, .. } = &event {
                let action = Action::of_tool_call(name, input);
                let decision = self.policy.decide(&action);
                let verdict = match decision.verdict {
                    Verdict::Ask => Verdict::Deny,
                    v => v,
                };
                out.push(crate::EventKind::Permission {
                    record: PermissionRecord {
                        tool: name.clone(),
                        action,
                        verdict,
                        rule: decision.rule,
                    },
                });
            }
            out.push(event);
        }
        out
    }

    fn finished(&self) -> bool {
        self.inner.finished()
    }
}

/// How long a person has to answer an `ask` before it is a deny.
pub const ASK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

impl Policy {
    /// Decide a request at run time, for backends whose agent asks before each tool call
    /// (a permission API or callback): the policy, then for `ask` the context's
    /// [`PermissionHandler`] (bounded by [`ASK_DEADLINE`] and the task's cancel; no answer is a
    /// deny). Emits the decision as an [`EventKind::Permission`](crate::EventKind) event and
    /// returns it; the runner lists it in the outcome.
    pub async fn judge(
        &self,
        tool: &str,
        action: Action,
        ctx: &crate::ExecContext,
    ) -> PermissionRecord {
        let decision = self.decide(&action);
        let (verdict, rule) = match decision.verdict {
            Verdict::Ask => {
                let asked = ctx.permissions.ask_about(tool, &action, &decision.rule);
                let allowed = tokio::select! {
                    a = tokio::time::timeout(ASK_DEADLINE, asked) => a.unwrap_or(false),
                    _ = ctx.cancel.cancelled() => false,
                };
                let verdict = if allowed {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                };
                (verdict, format!("{} (asked)", decision.rule))
            }
            v => (v, decision.rule),
        };
        let record = PermissionRecord {
            tool: tool.to_string(),
            action,
            verdict,
            rule,
        };
        ctx.events.emit(crate::EventKind::Permission {
            record: record.clone(),
        });
        record
    }
}

/// Asks a person about an [`Action`] the policy left to them (`ask`). Embedders implement
/// it; `stn` prompts on a terminal. An answer must come within the handler's own bound.
#[async_trait::async_trait]
pub trait PermissionHandler: Send + Sync + std::fmt::Debug {
    /// Allow (`true`) or deny (`false`) `action`, asked for by `tool`.
    async fn ask(&self, tool: &str, action: &Action) -> bool;

    /// [`ask`](Self::ask), told which rule left the decision to a person (`unmatched`,
    /// `bash.allow "*"`, ...) so the question can name it. Defaults to `ask`.
    async fn ask_about(&self, tool: &str, action: &Action, rule: &str) -> bool {
        let _ = rule;
        self.ask(tool, action).await
    }
}

/// The handler when nobody can be asked: every `ask` is a deny, at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct NobodyToAsk;

#[async_trait::async_trait]
impl PermissionHandler for NobodyToAsk {
    async fn ask(&self, _tool: &str, _action: &Action) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
