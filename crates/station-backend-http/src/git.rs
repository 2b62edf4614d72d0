//! Git on the server's workspace through OpenCode's shell endpoint
//! (`POST /session/{id}/shell`): the command runs directly in the session's directory, with no
//! model involved, and the server's own git credentials. Only the command text and its output
//! cross the wire; no token ever does.

use serde_json::Value;
use station_core::git::{BranchResult, CommitResult, GitRequest, GitResponse, PushResult};
use station_core::{Error, FileAction, FileChange, Result};

use crate::client::NAME as BACKEND;

/// Marks success or failure at the end of the output. (OpenCode's shell expands every `$(...)`
/// and `$?` of a command line before running it, so the script uses neither.)
const OK_MARK: &str = "__STN_GIT_OK__";
const FAILED_MARK: &str = "__STN_GIT_FAILED__";
/// Separates `git status` from `git diff --numstat` in a status script's output.
const NUMSTAT_MARK: &str = "__STN_GIT_NUMSTAT__";

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

/// A git request as one shell script whose output ends with the exit mark.
pub(crate) fn script(
    request: &GitRequest,
    identity: (Option<&str>, Option<&str>),
) -> Result<String> {
    let body = match request {
        GitRequest::Commit { message, add_all } => {
            let message = message.trim();
            if message.is_empty() {
                return Err(Error::config(
                    "a git commit needs a `message`; pass the commit message",
                ));
            }
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
            let add = if *add_all { "git add -A && " } else { "" };
            format!(
                "{add}printf %s {} | base64 -d | git{who} commit --quiet -F - && printf 'hash=' && git rev-parse HEAD && printf 'branch=' && git rev-parse --abbrev-ref HEAD && git show --shortstat --format= HEAD",
                encoded(message)
            )
        }
        GitRequest::Push {
            remote,
            branch,
            set_upstream,
        } => {
            let remote = safe_name("remote", non_blank(remote.as_deref()).unwrap_or("origin"))?;
            let branch = safe_name("branch", non_blank(branch.as_deref()).unwrap_or("HEAD"))?;
            let upstream = if *set_upstream { " -u" } else { "" };
            format!(
                "git push --porcelain{upstream} {remote} {branch} && printf 'branch=' && git rev-parse --abbrev-ref {branch} && printf 'commit=' && git rev-parse {branch}"
            )
        }
        GitRequest::Branch { branch, create } => {
            let branch = safe_name("branch", branch.trim())?;
            let switch = if *create {
                format!(
                    "if git rev-parse --verify --quiet refs/heads/{branch} >/dev/null; then printf 'created=false\\n' && git checkout --quiet {branch}; else printf 'created=true\\n' && git checkout --quiet -b {branch}; fi"
                )
            } else {
                format!("printf 'created=false\\n' && git checkout --quiet {branch}")
            };
            format!(
                "printf 'previous=' && git rev-parse --abbrev-ref HEAD && {switch} && printf 'branch=' && git rev-parse --abbrev-ref HEAD"
            )
        }
        GitRequest::Status => format!(
            "git status --porcelain --untracked-files=all && echo {NUMSTAT_MARK} && (git diff HEAD --numstat 2>/dev/null || true)"
        ),
        other => {
            return Err(Error::not_supported(
                BACKEND,
                format!("the git operation `{}`", other.op()),
            ));
        }
    };
    Ok(format!(
        "{{ {body} ; }} 2>&1 && echo {OK_MARK} || echo {FAILED_MARK}"
    ))
}

fn non_blank(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The shell tool's output from the endpoint's answer.
pub(crate) fn output_of(answer: &Value) -> Option<String> {
    answer.get("parts")?.as_array()?.iter().find_map(|p| {
        p.pointer("/state/output")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

/// Turn the script's output into the request's result, or an error with git's words.
pub(crate) fn parse(request: &GitRequest, output: &str) -> Result<GitResponse> {
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
    let op = request.op();
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
                Error::backend(BACKEND, message)
            },
        );
    }
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let required = |key: &str| {
        value(key).ok_or_else(|| {
            Error::Protocol(format!("git {op} on the server printed no `{key}`: {text}"))
        })
    };
    Ok(match request {
        GitRequest::Commit { .. } => {
            let stat = text.lines().find(|l| l.contains("changed")).unwrap_or("");
            let number_before = |word: &str| {
                stat.split(',')
                    .find(|part| part.contains(word))
                    .and_then(|part| part.split_whitespace().next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            GitResponse::Commit(CommitResult {
                hash: required("hash")?,
                branch: value("branch").filter(|b| b != "HEAD"),
                files_changed: number_before("changed"),
                insertions: number_before("insertion"),
                deletions: number_before("deletion"),
            })
        }
        GitRequest::Push {
            remote,
            set_upstream,
            ..
        } => GitResponse::Push(PushResult {
            remote: non_blank(remote.as_deref()).unwrap_or("origin").to_string(),
            branch: required("branch")?,
            commit: required("commit")?,
            upstream_set: *set_upstream,
        }),
        GitRequest::Branch { .. } => GitResponse::Branch(BranchResult {
            branch: required("branch")?,
            created: value("created").as_deref() == Some("true"),
            previous_branch: value("previous").filter(|b| b != "HEAD"),
        }),
        _ => GitResponse::Status {
            files: status_files(&text),
        },
    })
}

/// `git status --porcelain` lines, then the numstat mark and `git diff HEAD --numstat` lines.
fn status_files(text: &str) -> Vec<FileChange> {
    let (status, numstat) = text.split_once(NUMSTAT_MARK).unwrap_or((text, ""));
    let counts: Vec<(u64, u64, &str)> = numstat
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let added = parts.next()?.parse().unwrap_or(0);
            let removed = parts.next()?.parse().unwrap_or(0);
            Some((added, removed, parts.next()?))
        })
        .collect();
    let mut files: Vec<FileChange> = status
        .lines()
        .filter(|l| l.len() > 3)
        .map(|l| {
            let (code, path) = l.split_at(2);
            let path = path.trim();
            let path = path.rsplit_once(" -> ").map_or(path, |(_, new)| new);
            let action = match code {
                "??" => FileAction::Created,
                c if c.contains('A') => FileAction::Created,
                c if c.contains('D') => FileAction::Deleted,
                _ => FileAction::Modified,
            };
            let (lines_added, lines_removed) = counts
                .iter()
                .find(|(_, _, p)| *p == path)
                .map_or((0, 0), |(a, r, _)| (*a, *r));
            FileChange {
                path: path.to_string(),
                action,
                lines_added,
                lines_removed,
                ..Default::default()
            }
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(name: &str) -> GitRequest {
        GitRequest::Branch {
            branch: name.into(),
            create: true,
        }
    }

    fn push_to(remote: &str) -> GitRequest {
        GitRequest::Push {
            remote: Some(remote.into()),
            branch: None,
            set_upstream: false,
        }
    }

    #[test]
    fn request_text_never_becomes_shell_syntax() {
        let commit = GitRequest::Commit {
            message: "it's $(rm -rf /) `x`".into(),
            add_all: true,
        };
        let s = script(&commit, (Some("A $(b)"), None)).unwrap();
        assert!(
            !s.contains("rm -rf") && !s.contains('`') && !s.contains("$(b)"),
            "{s}"
        );
        for bad in ["x;rm", "$(x)", "-f", "a..b", "a b", "a`b`"] {
            assert!(script(&branch(bad), (None, None)).is_err(), "{bad}");
            assert!(script(&push_to(bad), (None, None)).is_err(), "{bad}");
        }
        assert!(script(&branch("feature/x-1.2"), (None, None)).is_ok());
    }

    #[test]
    fn results_and_failures() {
        let commit = GitRequest::Commit {
            message: "m".into(),
            add_all: true,
        };
        let out =
            format!("hash=abc123\nbranch=docs\n 1 file changed, 3 insertions(+)\n{OK_MARK}\n");
        assert_eq!(
            parse(&commit, &out).unwrap(),
            GitResponse::Commit(CommitResult {
                hash: "abc123".into(),
                branch: Some("docs".into()),
                files_changed: 1,
                insertions: 3,
                deletions: 0,
            })
        );
        let push = push_to("origin");
        let err = parse(&push, &format!("fatal: Authentication failed for 'https://x-access-token:tok123456@h/r'\n{FAILED_MARK}")).unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err}");
        assert!(!err.to_string().contains("tok123456"), "{err}");
        let pushed =
            format!("To h/r\n=\tHEAD:refs/heads/docs\nDone\nbranch=docs\ncommit=abc123\n{OK_MARK}");
        assert_eq!(
            parse(&push, &pushed).unwrap(),
            GitResponse::Push(PushResult {
                remote: "origin".into(),
                branch: "docs".into(),
                commit: "abc123".into(),
                upstream_set: false,
            })
        );
        let switched = format!("previous=main\ncreated=true\nbranch=notes\n{OK_MARK}");
        assert_eq!(
            parse(&branch("notes"), &switched).unwrap(),
            GitResponse::Branch(BranchResult {
                branch: "notes".into(),
                created: true,
                previous_branch: Some("main".into()),
            })
        );
        let status = format!(
            "?? new.txt\n M src/lib.rs\n D old.txt\n{NUMSTAT_MARK}\n2\t1\tsrc/lib.rs\n0\t4\told.txt\n{OK_MARK}"
        );
        let GitResponse::Status { files } = parse(&GitRequest::Status, &status).unwrap() else {
            panic!("not a status");
        };
        let summary: Vec<(&str, FileAction, u64, u64)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.action, f.lines_added, f.lines_removed))
            .collect();
        assert_eq!(
            summary,
            [
                ("new.txt", FileAction::Created, 0, 0),
                ("old.txt", FileAction::Deleted, 0, 4),
                ("src/lib.rs", FileAction::Modified, 2, 1),
            ]
        );
        let no_hash = parse(&commit, &format!("branch=docs\n{OK_MARK}")).unwrap_err();
        assert!(no_hash.to_string().contains("no `hash`"), "{no_hash}");
    }
}
