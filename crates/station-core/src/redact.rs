//! Secret redaction: one [`Redactor`] used by every crate, and [`Secret`], a string that never
//! shows itself.
//!
//! The redactor removes well-known token shapes (GitHub, GitLab, Anthropic, OpenAI), credentials
//! in URLs, `Bearer`/`Basic` values, `token=`/`password=`-style pairs, and every secret value that
//! was registered with it verbatim (and URL-encoded). [`Redactor::global`] is the process-wide
//! instance that config loading registers secrets with and that `stn`'s log writer uses.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use regex::{Regex, RegexSet};
use secrecy::{ExposeSecret, SecretString};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string. `Debug`, `Display` and `Serialize` print [`REDACTED`]; only
/// [`Secret::expose`] gives the value, and it should be called only where the value is handed
/// to its consumer (a credential callback, an HTTP header, a child's environment).
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }
    /// The value itself.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

struct Rule {
    pattern: Regex,
    replacement: &'static str,
}

// ASCII word boundaries: every shape here is ASCII, and a Unicode `\b` makes the regex engine
// fall back to a slow path on any non-ASCII text (measured 11x slower on an em dash).
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |p: &str, replacement: &'static str| Rule {
        pattern: Regex::new(p).expect("redaction pattern compiles"),
        replacement,
    };
    vec![
        // Credentials in URLs: scheme://user:pass@host or scheme://token@host.
        rule(
            r"(?i)(?-u:\b)([a-z][a-z0-9+.\-]*://)[^/\s@]+@",
            "${1}[REDACTED]@",
        ),
        // Provider token shapes.
        rule(r"(?-u:\b)github_pat_[A-Za-z0-9_]{10,}", REDACTED),
        rule(r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{10,}", REDACTED),
        rule(r"(?-u:\b)glpat-[A-Za-z0-9_\-]{10,}", REDACTED),
        rule(r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{8,}", REDACTED),
        rule(
            r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}",
            REDACTED,
        ),
        // Authorization header values.
        rule(
            r"(?i)(?-u:\b)(bearer\s+)[A-Za-z0-9._~+/=\-]{6,}",
            "${1}[REDACTED]",
        ),
        rule(
            r"(?i)(authorization:\s*basic\s+)[A-Za-z0-9+/=]+",
            "${1}[REDACTED]",
        ),
        // key=value / key: value / "key": "value" pairs whose key names a secret.
        rule(
            r#"(?i)("?(?-u:\b)[a-z0-9_\-]*(?:token|password|passwd|secret|api[_\-]?key|apikey|credential|private[_\-]?key|x-api-key|authorization)"?\s*[=:]\s*"?)([^\s"'&,;}]+)"#,
            "${1}[REDACTED]",
        ),
    ]
});

/// All rules in one automaton: one pass tells whether any rule can match. Most text matches
/// none, and then the rules (one search each) are skipped.
static ANY_RULE: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(RULES.iter().map(|rule| rule.pattern.as_str()))
        .expect("redaction patterns compile as a set")
});

/// Removes secrets from text. Cheap to clone (the secret list is shared).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Redactor")
            .field("registered_secrets", &n)
            .finish()
    }
}

static GLOBAL: LazyLock<Redactor> = LazyLock::new(Redactor::default);

/// Shortest registered secret that is replaced verbatim; shorter values would mangle ordinary text.
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    /// A redactor with the built-in patterns and no registered secrets.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide redactor. Config loading registers configured secrets here.
    pub fn global() -> &'static Redactor {
        &GLOBAL
    }

    /// Redact this value verbatim wherever it appears (also URL-encoded).
    pub fn register(&self, secret: &Secret) {
        let value = secret.expose();
        if value.len() < MIN_SECRET_LEN {
            return;
        }
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        let mut add = |v: String| {
            if !secrets.contains(&v) {
                secrets.push(v);
            }
        };
        add(value.to_string());
        let encoded = percent_encode(value);
        if encoded != value {
            add(encoded);
        }
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Builder form of [`Redactor::register`].
    pub fn with_secret(self, secret: &Secret) -> Self {
        self.register(secret);
        self
    }

    /// The text with every secret replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        {
            let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
            for secret in secrets.iter() {
                if out.contains(secret.as_str()) {
                    out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
                }
            }
        }
        if !ANY_RULE.is_match(&out) {
            return out;
        }
        for rule in RULES.iter() {
            if let Cow::Owned(s) = rule.pattern.replace_all(&out, rule.replacement) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// [`Redactor::redact`] into an owned `String`.
    pub fn redact_string(&self, text: &str) -> String {
        self.redact(text).into_owned()
    }
}

/// Redact with the global redactor.
pub fn redact(text: &str) -> String {
    Redactor::global().redact_string(text)
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(text: &str) -> String {
        Redactor::new().redact_string(text)
    }

    #[test]
    fn known_shapes_are_redacted() {
        let gh = format!("ghp_{}", "a1B2".repeat(9));
        let cases = [
            format!("token is {gh} ok"),
            format!("https://x-access-token:{gh}@github.com/o/r.git"),
            format!("https://{gh}@github.com/o/r.git"),
            format!("github_pat_{}", "A1_b".repeat(12)),
            format!("glpat-{}", "abcD1".repeat(4)),
            format!("sk-ant-api03-{}", "Zz9_".repeat(10)),
            format!("sk-proj-{}", "Qq1".repeat(10)),
            "Authorization: Bearer abc.def-ghi".to_string(),
            "curl -H 'x-api-key: hunter2hunter2'".to_string(),
            "password=hunter2&user=bob".to_string(),
            r#"{"token": "s3cr3tvalue"}"#.to_string(),
            "GITHUB_TOKEN=abcdef123456".to_string(),
        ];
        for case in cases {
            let out = r(&case);
            assert!(out.contains(REDACTED), "not redacted: {case} -> {out}");
            for secret in [
                "a1B2a1B2",
                "A1_bA1_b",
                "abcD1abcD1",
                "Zz9_Zz9_",
                "Qq1Qq1Qq1",
                "abc.def-ghi",
                "hunter2",
                "s3cr3tvalue",
                "abcdef123456",
            ] {
                assert!(!out.contains(secret), "{secret} survived in {out}");
            }
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for text in [
            "create hello.py printing Hello World",
            "https://github.com/org/repo.git",
            "the token budget is low",
            "git push origin main",
        ] {
            assert_eq!(r(text), text);
        }
    }

    #[test]
    fn secret_type_never_shows_itself() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), REDACTED);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    proptest! {
        #[test]
        fn registered_secrets_never_survive(
            secret in "[A-Za-z0-9!@#%/+=]{6,40}",
            before in "[ -~]{0,40}",
            after in "[ -~]{0,40}",
        ) {
            let red = Redactor::new().with_secret(&Secret::new(secret.clone()));
            let text = format!("{before}{secret}{after}");
            let out = red.redact_string(&text);
            prop_assert!(!out.contains(&secret), "{} in {}", secret, out);
            let encoded = format!("{before}{}{after}", percent_encode(&secret));
            prop_assert!(!red.redact_string(&encoded).contains(&percent_encode(&secret)));
        }

        #[test]
        fn github_tokens_never_survive(
            body in "[A-Za-z0-9]{36}",
            kind in "[pousr]",
            before in "[ -~]{0,30}",
            after in "[ -~]{0,30}",
        ) {
            let token = format!("gh{kind}_{body}");
            let text = format!("{before} {token} {after}");
            prop_assert!(!r(&text).contains(&body));
        }

        /// The one-pass gate skips the rules only when none of them would change the text.
        #[test]
        fn the_any_rule_gate_changes_nothing(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("https://"), Just("u:p@"), Just("ghp_"), Just("github_pat_"),
                    Just("glpat-"), Just("sk-ant-"), Just("sk-proj-"), Just("Bearer "),
                    Just("Authorization: Basic "), Just("TOKEN"), Just("api_key"), Just("\"="),
                    Just(": "), Just("\""), Just(" "), Just("é"), Just("—"), Just("aB3_xY9-"),
                    Just("0123456789"),
                ],
                0..12,
            ),
        ) {
            let text = parts.concat();
            let mut every_rule = text.clone();
            for rule in RULES.iter() {
                every_rule = rule.pattern.replace_all(&every_rule, rule.replacement).into_owned();
            }
            prop_assert_eq!(r(&text), every_rule);
        }

        #[test]
        fn url_credentials_never_survive(user in "[a-z][a-z0-9\\-]{2,20}", pass in "[A-Za-z0-9]{8,30}", host in "[a-z]{3,12}") {
            let text = format!("fatal: could not read from https://{user}:{pass}@{host}.example/repo.git");
            prop_assert!(!r(&text).contains(&pass));
        }
    }
}
