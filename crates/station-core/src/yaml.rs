//! YAML parsing with located, helpful errors (shared by config and agent files).

use std::path::Path;

use regex::Regex;
use serde::de::DeserializeOwned;
use std::sync::LazyLock;

use crate::error::InputError;

static KEY_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(\s*)(?:-\s+)?["']?([A-Za-z0-9_.\-]+)["']?\s*:(?:\s|$)"#)
        .expect("regex compiles")
});
static UNKNOWN_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"unknown field `([^`]*)`, expected (?:one of )?(.*)").expect("regex compiles")
});
static UNKNOWN_VARIANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"unknown variant `([^`]*)`, expected (?:one of )?(.*)").expect("regex compiles")
});
static AT_SUFFIX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s+at line \d+, column \d+\s*$").expect("regex compiles"));

/// Parse `text` (which starts at `first_line` of `file`) into `T`, mapping errors to
/// [`InputError`]s with file, line, column, the dotted field path and a suggestion.
#[allow(
    clippy::result_large_err,
    reason = "crate-private; every caller boxes it into Error::Config"
)]
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    file: Option<&Path>,
    first_line: usize,
    path_prefix: &str,
) -> Result<T, InputError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let raw = e.without_snippet().to_string();
        let message = AT_SUFFIX.replace(&raw, "").into_owned();
        let mut err = InputError::new(message.clone());
        if let Some(file) = file {
            err = err.in_file(file);
        }
        let yaml_line = e.location().map(|l| l.line() as usize);
        if let Some(loc) = e.location() {
            err = err.at(loc.line() as usize + first_line - 1, loc.column() as usize);
        }
        let mut field = yaml_line.and_then(|l| field_path_at(text, l));
        if let Some(caps) = UNKNOWN_FIELD.captures(&message) {
            let unknown = caps[1].to_string();
            let expected = split_expected(&caps[2]);
            err.message = format!("unknown key `{unknown}`");
            err.hint = Some(match suggest(&unknown, &expected) {
                Some(s) => format!(
                    "did you mean `{s}`? valid keys here: {}",
                    expected.join(", ")
                ),
                None => format!("valid keys here: {}", expected.join(", ")),
            });
        } else if let Some(caps) = UNKNOWN_VARIANT.captures(&message) {
            let unknown = caps[1].to_string();
            let expected = split_expected(&caps[2]);
            err.message = format!("`{unknown}` is not a valid value");
            err.hint = Some(match suggest(&unknown, &expected) {
                Some(s) => format!("did you mean `{s}`? valid values: {}", expected.join(", ")),
                None => format!("valid values: {}", expected.join(", ")),
            });
        } else if message.starts_with("invalid") || message.contains("expected") {
            err.hint = Some("check the value's type".to_string());
        }
        if let Some(f) = field.take() {
            let full = if path_prefix.is_empty() {
                f
            } else {
                format!("{path_prefix}.{f}")
            };
            err = err.field(full);
        }
        err
    })
}

fn split_expected(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().trim_matches('`').trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The closest candidate, when it is close enough to be a likely typo.
pub(crate) fn suggest(word: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}

/// The dotted key path of the mapping entry on `line` (1-based), found from indentation.
pub(crate) fn field_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = line.checked_sub(1)?;
    let caps = KEY_LINE.captures(lines.get(idx)?)?;
    let mut indent = caps[1].len();
    let mut path = vec![caps[2].to_string()];
    for l in lines[..idx].iter().rev() {
        if indent == 0 {
            break;
        }
        if let Some(c) = KEY_LINE.captures(l)
            && c[1].len() < indent
        {
            indent = c[1].len();
            path.push(c[2].to_string());
        }
    }
    path.reverse();
    Some(path.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_follow_indentation() {
        let text = "model: x\ncoding:\n  enabled: true\n  git:\n    token: y\nmax_steps: 3\n";
        assert_eq!(field_path_at(text, 1).as_deref(), Some("model"));
        assert_eq!(field_path_at(text, 3).as_deref(), Some("coding.enabled"));
        assert_eq!(field_path_at(text, 5).as_deref(), Some("coding.git.token"));
        assert_eq!(field_path_at(text, 6).as_deref(), Some("max_steps"));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let keys = vec![
            "enabled".to_string(),
            "backend".to_string(),
            "workspace_path".to_string(),
        ];
        assert_eq!(suggest("enabeld", &keys).as_deref(), Some("enabled"));
        assert_eq!(
            suggest("workspace", &keys).as_deref(),
            Some("workspace_path")
        );
        assert_eq!(suggest("zzz", &keys), None);
    }
}
