//! `coding.policy` for the Gemini CLI: rendered into a policy file of its own policy engine
//! (TOML rules per tool name and argument pattern), passed with `--policy` for one run. In
//! headless mode nobody can answer `ask_user`, so `ask` is rendered as `deny`.
//!
//! `outside_workspace` needs no rule: the CLI's file tools refuse paths outside the workspace
//! themselves (checked before the policy); its shell commands are a gap.
//!
//! Rules sit in the user tier at priorities 900–999 (Gemini's YOLO allow-all is in the
//! default tier, below). Allow rules are written only to carve exceptions out of Station's own
//! denies, so they never loosen a stricter configured approval mode.

use std::path::Path;

use station_core::policy::{Pattern, PolicyConfig, Verdict};

/// Gemini's tools that write files.
const EDIT_TOOLS: &[&str] = &["write_file", "replace"];
/// Gemini's shell tool.
const SHELL_TOOL: &str = "run_shell_command";
/// Gemini's tools that reach the web.
const NETWORK_TOOLS: &[&str] = &["web_fetch", "google_web_search"];
/// Gemini's tools that only read (allowed inside the workspace whatever `unmatched` says).
const READ_TOOLS: &[&str] = &[
    "read_file",
    "read_many_files",
    "list_directory",
    "glob",
    "grep_search",
];

/// Priorities within the user tier; a later kind wins over an earlier one.
const UNMATCHED: u32 = 910;
const READS: u32 = 920;
const KIND_DEFAULT: u32 = 930;
const KIND_ALLOW: u32 = 940;
const KIND_DENY: u32 = 990;
const NETWORK: u32 = 991;

fn refuses(verdict: Verdict) -> bool {
    verdict != Verdict::Allow
}

/// A TOML basic string (its escapes are JSON's).
fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn tool_names(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| toml_string(n)).collect();
    format!("[{}]", quoted.join(", "))
}

/// One `[[rule]]`; `matcher` is an extra `key = value` line (argsPattern, commandRegex).
fn rule(tools: &[&str], matcher: Option<(&str, String)>, allow: bool, priority: u32) -> String {
    let mut text = format!("[[rule]]\ntoolName = {}\n", tool_names(tools));
    if let Some((key, pattern)) = matcher {
        text.push_str(&format!("{key} = {}\n", toml_string(&pattern)));
    }
    let decision = if allow { "allow" } else { "deny" };
    text.push_str(&format!(
        "decision = \"{decision}\"\npriority = {priority}\n"
    ));
    if allow && tools.contains(&SHELL_TOOL) {
        // Station's rules do not single out redirections; without this Gemini asks (= deny).
        text.push_str("allowRedirection = true\n");
    }
    if !allow {
        text.push_str("denyMessage = \"Station's coding.policy does not allow this\"\n");
    }
    text.push('\n');
    text
}

/// Regex-escape `text` (JavaScript syntax, as Gemini compiles it).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Literal text as it appears inside a JSON string, regex-escaped.
fn json_literal(text: &str) -> String {
    let encoded = serde_json::Value::String(text.to_string()).to_string();
    escape(&encoded[1..encoded.len() - 1])
}

/// Whether a glob uses what the rendering does not translate (classes, alternatives).
fn untranslatable(pattern: &Pattern) -> bool {
    pattern.as_str().contains(['[', ']', '{', '}', '\\'])
}

/// A path glob (relative to the workspace) as a regex over the JSON-encoded path.
fn path_regex(glob: &str) -> String {
    let mut out = String::new();
    let mut rest = glob;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**/") {
            // No quantifier after a group: Gemini refuses nested quantifiers as unsafe.
            out.push_str("(?:|[^\"]*/)");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("**") {
            out.push_str("[^\"]*");
            rest = after;
        } else if let Some(after) = rest.strip_prefix('*') {
            out.push_str("[^/\"]*");
            rest = after;
        } else if let Some(after) = rest.strip_prefix('?') {
            out.push_str("[^/\"]");
            rest = after;
        } else {
            let end = rest.find(['*', '?']).unwrap_or(rest.len());
            out.push_str(&json_literal(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

/// A command glob as Gemini's `commandRegex` (matched from the start of the command).
fn command_regex(glob: &str) -> String {
    let mut out = String::new();
    for (i, piece) in glob.split('*').enumerate() {
        if i > 0 {
            out.push_str(".*");
        }
        let parts: Vec<String> = piece.split('?').map(json_literal).collect();
        out.push_str(&parts.join("."));
    }
    if !glob.ends_with('*') {
        out.push('"');
    }
    out
}

/// The argsPattern for the edit tools' `file_path` matching `glob` under `workspace`.
fn edit_args_pattern(glob: &str, workspace: &str) -> String {
    format!(
        "\"file_path\":\"(?:{}/|\\./|){}\"",
        json_literal(workspace),
        path_regex(glob)
    )
}

/// Gemini's policy file for `policy` in `workspace`.
pub(crate) fn render(policy: &PolicyConfig, workspace: &Path) -> String {
    let ws = workspace
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let mut text = String::from("# Written by Station from coding.policy for one run.\n\n");
    let unmatched_refuses = refuses(policy.unmatched);
    if unmatched_refuses {
        text.push_str(&rule(&["*"], None, false, UNMATCHED));
        text.push_str(&rule(READ_TOOLS, None, true, READS));
    }
    for (tools, rules, is_edit) in [
        (EDIT_TOOLS, &policy.edit, true),
        (&[SHELL_TOOL][..], &policy.bash, false),
    ] {
        let matcher = |p: &Pattern| {
            if is_edit {
                ("argsPattern", edit_args_pattern(p.as_str(), &ws))
            } else {
                ("commandRegex", command_regex(p.as_str()))
            }
        };
        if unmatched_refuses {
            text.push_str(&rule(tools, None, false, KIND_DEFAULT));
            for p in rules.allow.iter().filter(|p| !untranslatable(p)) {
                text.push_str(&rule(tools, Some(matcher(p)), true, KIND_ALLOW));
            }
        }
        for p in rules.deny.iter().filter(|p| !untranslatable(p)) {
            text.push_str(&rule(tools, Some(matcher(p)), false, KIND_DENY));
        }
    }
    if refuses(policy.network) {
        text.push_str(&rule(NETWORK_TOOLS, None, false, NETWORK));
    }
    text
}

/// Rules of `policy` the Gemini CLI cannot enforce, each with why.
pub(crate) fn gaps(policy: &PolicyConfig) -> Vec<String> {
    let mut out = Vec::new();
    let kinds = [("edit", &policy.edit), ("bash", &policy.bash)];
    for (kind, rules) in kinds {
        for (list, patterns) in [("allow", &rules.allow), ("deny", &rules.deny)] {
            for p in patterns.iter().filter(|p| untranslatable(p)) {
                if list == "allow" && !refuses(policy.unmatched) {
                    continue;
                }
                out.push(format!(
                    "{kind}.{list} \"{}\": character classes, alternatives and escapes are not rendered into Gemini's policy; write the pattern with * and ? only",
                    p.as_str()
                ));
            }
        }
    }
    if refuses(policy.outside_workspace) {
        out.push("outside_workspace (shell): Gemini's file tools stay in the workspace, but its shell commands are not confined to it (the CLI runs them unsandboxed)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PolicyConfig {
        serde_json::from_value(serde_json::json!({
            "edit": {"deny": ["secrets/**", "**/.env", "[ab].txt"]},
            "bash": {"allow": ["*"], "deny": ["rm -rf *", "git push*", "curl *"]},
            "outside_workspace": "deny",
            "network": "deny",
            "unmatched": "allow"
        }))
        .unwrap()
    }

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn edit_globs_match_the_json_encoded_file_path() {
        let secrets = edit_args_pattern("secrets/**", "/w/s");
        for path in ["/w/s/secrets/key.txt", "secrets/a/b", "./secrets/x"] {
            let args = format!("{{\"content\":\"x\",\"file_path\":\"{path}\"}}");
            assert!(matches(&secrets, &args), "{path}");
        }
        let ok = "{\"content\":\"x\",\"file_path\":\"/w/s/ok.py\"}";
        assert!(!matches(&secrets, ok));
        let env = edit_args_pattern("**/.env", "/w/s");
        assert!(matches(&env, "{\"file_path\":\"/w/s/.env\"}"));
        assert!(matches(&env, "{\"file_path\":\"/w/s/a/b/.env\"}"));
        assert!(!matches(&env, "{\"file_path\":\"/w/s/a/.envrc\"}"));
    }

    #[test]
    fn command_globs_become_anchored_regexes() {
        let rm = format!("\"command\":\"{}", command_regex("rm -rf *"));
        assert!(matches(&rm, "{\"command\":\"rm -rf data\"}"));
        assert!(!matches(&rm, "{\"command\":\"echo rm -rf data\"}"));
        let status = format!("\"command\":\"{}", command_regex("git status"));
        assert!(matches(&status, "{\"command\":\"git status\"}"));
        assert!(!matches(&status, "{\"command\":\"git status --short\"}"));
    }

    #[test]
    fn the_example_policy_renders_denies_only_and_lists_what_it_cannot_say() {
        let text = render(&example(), Path::new("/w/s"));
        assert!(!text.contains("decision = \"allow\""), "{text}");
        assert!(text.contains("commandRegex = \"rm -rf .*\""), "{text}");
        assert!(text.contains("toolName = [\"web_fetch\", \"google_web_search\"]"));
        assert!(!text.contains("[ab]"), "{text}");
        let strict = PolicyConfig {
            unmatched: Verdict::Ask,
            ..example()
        };
        let text = render(&strict, Path::new("/w/s"));
        assert!(
            text.contains("toolName = [\"*\"]\ndecision = \"deny\""),
            "{text}"
        );
        assert!(text.contains("allowRedirection = true"), "{text}");
        let gaps = gaps(&example());
        assert!(gaps.iter().any(|g| g.starts_with("edit.deny \"[ab].txt\"")));
        assert!(
            gaps.iter()
                .any(|g| g.starts_with("outside_workspace (shell)"))
        );
    }
}
