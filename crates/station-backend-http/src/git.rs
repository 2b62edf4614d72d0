//! Git on the server's workspace through OpenCode's shell endpoint
//! (`POST /session/{id}/shell`): the command runs directly in the session's directory, with no
//! model involved, and the server's own git credentials. Only the command text and its output
//! cross the wire; no token ever does.

use serde_json::{Value, json};
use station_core::{Error, Result};

/// Marks success or failure at the end of the output. (OpenCode's shell expands every `$(...)`
/// and `$?` of a command line before running it, so the script uses neither.)
const OK_MARK: &str = "__STN_GIT_OK__";
const FAILED_MARK: &str = "__STN_GIT_FAILED__";

/// A ref or remote name, refused unless it is plainly safe: OpenCode's shell expands `$(...)`
/// even inside quotes, so nothing from a request reaches the command line as shell text.
fn safe_name(kind: &str, s: &str) -> Result<String> {
    let ok = !s.is_empty()
        && !s.starts_with('-')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::config(format!(
            "{kind} `{s}` may only use letters, digits and . _ - /"
        )))
    }
}

/// Free text (a commit message) as base64, decoded by the shell: no character of it is shell syntax.
fn encoded(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn field<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn flag(request: &Value, key: &str, default: bool) -> bool {
    request.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// A git request (`{"op":"commit",...}`) as one shell script whose output ends with the exit mark.
pub(crate) fn script(request: &Value, identity: (Option<&str>, Option<&str>)) -> Result<String> {
    let op = field(request, "op").ok_or_else(|| Error::config("a git request needs an `op`"))?;
    let body = match op {
        "commit" => {
            let message = field(request, "message")
                .ok_or_else(|| Error::config("commit needs a `message`"))?;
            let mut who = String::new();
            if let Some(name) = identity.0 {
                who.push_str(&format!(
                    " -c user.name=\"$(printf %s {} | base64 -d)\"",
                    encoded(name)
                ));
            }
            if let Some(email) = identity.1 {
                who.push_str(&format!(
                    " -c user.email=\"$(printf %s {} | base64 -d)\"",
                    encoded(email)
                ));
            }
            let add = if flag(request, "add_all", true) {
                "git add -A && "
            } else {
                ""
            };
            format!(
                "{add}printf %s {} | base64 -d | git{who} commit --quiet -F - && printf 'hash=' && git rev-parse HEAD && printf 'branch=' && git rev-parse --abbrev-ref HEAD && git show --shortstat --format= HEAD",
                encoded(message)
            )
        }
        "push" => {
            let remote = safe_name("remote", field(request, "remote").unwrap_or("origin"))?;
            let branch = safe_name("branch", field(request, "branch").unwrap_or("HEAD"))?;
            let upstream = if flag(request, "set_upstream", false) {
                " -u"
            } else {
                ""
            };
            format!(
                "git push --porcelain{upstream} {remote} {branch} && printf 'branch=' && git rev-parse --abbrev-ref HEAD"
            )
        }
        "branch" => {
            let branch = safe_name(
                "branch",
                field(request, "branch").ok_or_else(|| Error::config("branch needs a `branch`"))?,
            )?;
            let switch = if flag(request, "create", true) {
                format!(
                    "(git checkout --quiet {branch} 2>/dev/null || git checkout --quiet -b {branch})"
                )
            } else {
                format!("git checkout --quiet {branch}")
            };
            format!(
                "printf 'previous=' && git rev-parse --abbrev-ref HEAD && {switch} && printf 'branch=' && git rev-parse --abbrev-ref HEAD"
            )
        }
        "status" => "git status --porcelain".to_string(),
        other => {
            return Err(Error::config(format!(
                "unknown git op `{other}`; use commit, push, branch or status"
            )));
        }
    };
    Ok(format!(
        "{{ {body} ; }} 2>&1 && echo {OK_MARK} || echo {FAILED_MARK}"
    ))
}

/// The shell tool's output from the endpoint's answer.
pub(crate) fn output_of(answer: &Value) -> Option<String> {
    answer.get("parts")?.as_array()?.iter().find_map(|p| {
        p.pointer("/state/output")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

/// Turn the script's output into the request's result JSON, or an error with git's words.
pub(crate) fn parse(request: &Value, output: &str) -> Result<Value> {
    let (text, ok) = match (output.rfind(OK_MARK), output.rfind(FAILED_MARK)) {
        (Some(i), _) => (&output[..i], true),
        (None, Some(i)) => (&output[..i], false),
        (None, None) => {
            return Err(Error::Protocol(
                "the server's shell output has no exit status".into(),
            ));
        }
    };
    let text = station_core::redact::redact(text.trim());
    let op = field(request, "op").unwrap_or_default();
    if !ok {
        let lower = text.to_lowercase();
        let message = format!("git {op} failed on the server: {text}");
        return Err(
            if lower.contains("authentication")
                || lower.contains("could not read username")
                || lower.contains("403")
            {
                Error::Auth { message }
            } else {
                Error::backend("opencode", message)
            },
        );
    }
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
    };
    let stat = text.lines().find(|l| l.contains("changed")).unwrap_or("");
    let number_before = |word: &str| {
        stat.split(',')
            .find(|part| part.contains(word))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(match op {
        "commit" => json!({
            "op": "commit",
            "hash": value("hash"),
            "branch": value("branch"),
            "files_changed": number_before("changed"),
            "insertions": number_before("insertion"),
            "deletions": number_before("deletion"),
        }),
        "push" => json!({
            "op": "push",
            "remote": field(request, "remote").unwrap_or("origin"),
            "branch": value("branch"),
            "output": text,
        }),
        "branch" => json!({
            "op": "branch",
            "branch": value("branch"),
            "previous_branch": value("previous"),
        }),
        _ => json!({"op": op, "output": text}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_text_never_becomes_shell_syntax() {
        let s = script(
            &json!({"op": "commit", "message": "it's $(rm -rf /) `x`"}),
            (Some("A $(b)"), None),
        )
        .unwrap();
        assert!(
            !s.contains("rm -rf") && !s.contains('`') && !s.contains("$(b)"),
            "{s}"
        );
        for bad in ["x;rm", "$(x)", "-f", "a..b", "a b", "a`b`"] {
            assert!(
                script(&json!({"op": "branch", "branch": bad}), (None, None)).is_err(),
                "{bad}"
            );
            assert!(
                script(&json!({"op": "push", "remote": bad}), (None, None)).is_err(),
                "{bad}"
            );
        }
        assert!(
            script(
                &json!({"op": "branch", "branch": "feature/x-1.2"}),
                (None, None)
            )
            .is_ok()
        );
    }

    #[test]
    fn results_and_failures() {
        let out =
            format!("hash=abc123\nbranch=docs\n 1 file changed, 3 insertions(+)\n{OK_MARK}\n");
        let v = parse(&json!({"op": "commit", "message": "m"}), &out).unwrap();
        assert_eq!(
            (
                v["hash"].as_str(),
                v["files_changed"].as_u64(),
                v["insertions"].as_u64(),
                v["deletions"].as_u64()
            ),
            (Some("abc123"), Some(1), Some(3), Some(0))
        );
        let err = parse(&json!({"op": "push"}), &format!("fatal: Authentication failed for 'https://x-access-token:tok123456@h/r'\n{FAILED_MARK}")).unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err}");
        assert!(!err.to_string().contains("tok123456"), "{err}");
        assert!(script(&json!({"op": "rebase"}), (None, None)).is_err());
    }
}
