//! Secret redaction: one [`Redactor`] used by every crate, and [`Secret`], a string that never
//! shows itself.
//!
//! The redactor removes well-known token shapes (GitHub, GitLab, Anthropic, OpenAI, AWS access
//! keys, Slack, Stripe, JWTs), private-key bodies (PEM, and GCP service-account JSON), Slack
//! webhook paths, credentials in URLs, `Bearer`/`Basic` values, `token=`/`password=`-style pairs
//! (AWS secret keys included), and every secret value that was registered with it verbatim (and
//! URL-encoded). It replaces the value only: the text around it, on its line and the next,
//! stays. [`Redactor::global`] is the process-wide
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

/// The names of `key=value` / `"key": "value"` pairs whose value is a secret.
const SECRET_KEYS: &str = r"[a-z0-9_\-]*(?:token|password|passwd|secret|api[_\-]?key|apikey|credential|private[_\-]?key|access[_\-]?key|x-api-key|authorization)";

// ASCII word boundaries: every shape here is ASCII, and a Unicode `\b` makes the regex engine
// fall back to a slow path on any non-ASCII text (measured 11x slower on an em dash).
// Every rule replaces the value only: separators are `[ \t]`, never `\s`, so that no rule reaches
// into the next line, and a value ends at whitespace or its closing quote.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |p: &str, replacement: &'static str| Rule {
        pattern: Regex::new(p).expect("redaction pattern compiles"),
        replacement,
    };
    vec![
        // Private keys (PEM, or inside JSON with `\n` escapes as in GCP service-account files):
        // the body between the markers. First, so that no other rule cuts a block apart.
        rule(
            r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?:\\[rn]|[\r\n \t]|[A-Za-z0-9+/=:,\-])+?(-----END [A-Z0-9 ]*PRIVATE KEY-----)",
            "${1}[REDACTED]${2}",
        ),
        // A block cut off before its end marker: its base64 lines.
        rule(
            r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?:(?:\\n|\r?\n)[A-Za-z0-9+/=]{40,})+",
            "${1}[REDACTED]",
        ),
        // Credentials in URLs: scheme://user:pass@host or scheme://token@host (userinfo has no
        // `/?#`, so an `@` in a path or query is not one).
        rule(
            r"(?i)(?-u:\b)([a-z][a-z0-9+.\-]*://)[^/?#\s@]+@",
            "${1}[REDACTED]@",
        ),
        // Slack webhooks: the path is the secret.
        rule(
            r"(?i)(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/\-]+",
            "${1}[REDACTED]",
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
        rule(
            r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
            REDACTED,
        ),
        rule(r"(?-u:\b)xox[abeoprs]-[A-Za-z0-9\-]{10,}", REDACTED),
        rule(
            r"(?-u:\b)(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}",
            REDACTED,
        ),
        // JWTs: base64url header (`{"` is `eyJ`), payload, signature.
        rule(
            r"(?-u:\b)eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
            REDACTED,
        ),
        // Authorization header values.
        rule(
            r"(?i)(?-u:\b)(bearer[ \t]+)[A-Za-z0-9._~+/=\-]{6,}",
            "${1}[REDACTED]",
        ),
        rule(
            r"(?i)(authorization:[ \t]*basic[ \t]+)[A-Za-z0-9+/=]+",
            "${1}[REDACTED]",
        ),
        // key=value / key: value / "key": "value" pairs whose key names a secret: a quoted value
        // up to its closing quote, else up to whitespace or a delimiter.
        rule(
            &format!(r#"(?i)("?(?-u:\b){SECRET_KEYS}"?[ \t]*[=:][ \t]*")(?:[^"\\\r\n]|\\.)+""#),
            "${1}[REDACTED]\"",
        ),
        rule(
            &format!(r#"(?i)("?(?-u:\b){SECRET_KEYS}"?[ \t]*[=:][ \t]*"?)([^\s"'&,;}}]+)"#),
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

    /// Fake secrets of every kind, built at run time from `upper` (`[A-Z0-9]{16}`) and `lower`
    /// (`[a-z0-9]{24}`): the text holding each, and the parts of it that must not survive.
    fn fake_secrets(upper: &str, lower: &str) -> Vec<(String, Vec<String>)> {
        let aws_secret = format!("{lower}{upper}");
        let line1 = format!("MIIEv{}{}", upper.repeat(2), lower);
        let line2 = format!("{}+/{}", lower, upper);
        let jwt_header = format!("eyJ{lower}");
        let jwt_payload = format!("eyJ{upper}");
        vec![
            (format!("AKIA{upper}"), vec![upper.to_string()]),
            (format!("ASIA{upper}"), vec![upper.to_string()]),
            (
                format!("AWS_SECRET_ACCESS_KEY={aws_secret}"),
                vec![aws_secret.clone()],
            ),
            (
                format!("aws_secret_access_key = {aws_secret}"),
                vec![aws_secret.clone()],
            ),
            (
                format!(r#""SecretAccessKey": "{aws_secret}","#),
                vec![aws_secret.clone()],
            ),
            (
                format!(
                    r#"{{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\n{line1}\n{line2}\n-----END PRIVATE KEY-----\n", "project_id": "demo"}}"#
                ),
                vec![line1.clone(), line2.clone()],
            ),
            (
                format!(
                    "-----BEGIN RSA PRIVATE KEY-----\n{line1}\n{line2}\n-----END RSA PRIVATE KEY-----"
                ),
                vec![line1.clone(), line2.clone()],
            ),
            (
                format!("xoxb-{}-{lower}", &upper[..10]),
                vec![lower.to_string()],
            ),
            (
                format!("xoxp-{lower}-{upper}"),
                vec![lower.to_string(), upper.to_string()],
            ),
            (
                format!(
                    "https://hooks.slack.com/services/T{}/B{}/{lower}",
                    &upper[..8],
                    &upper[8..]
                ),
                vec![lower.to_string(), upper[8..].to_string()],
            ),
            (format!("sk_live_{lower}"), vec![lower.to_string()]),
            (format!("rk_live_{upper}"), vec![upper.to_string()]),
            (format!("sk_test_{lower}"), vec![lower.to_string()]),
            (format!("pk_live_{lower}"), vec![lower.to_string()]),
            (
                format!("{jwt_header}.{jwt_payload}.{lower}"),
                vec![jwt_header.clone(), jwt_payload.clone(), lower.to_string()],
            ),
        ]
    }

    /// Whether any 8-character window of `part` occurs in `text`.
    fn shows_part_of(text: &str, part: &str) -> bool {
        let bytes = part.as_bytes();
        bytes.len() >= 8
            && bytes
                .windows(8)
                .any(|w| text.contains(std::str::from_utf8(w).unwrap_or("")))
    }

    #[test]
    fn every_secret_kind_is_redacted() {
        let (upper, lower) = ("Q7XZ0PL2M4NB8VC6", "k3j9h2g7f5d1s8a4q6w0e2r4");
        for (text, parts) in fake_secrets(upper, lower) {
            let out = r(&text);
            assert!(out.contains(REDACTED), "not redacted: {text} -> {out}");
            for part in parts {
                assert!(
                    !shows_part_of(&out, &part),
                    "part of {part} survived in {out}"
                );
            }
        }
    }

    #[test]
    fn a_private_key_keeps_its_markers_and_surroundings() {
        let body = "Ab9+".repeat(16);
        let json = format!(
            r#"{{"private_key": "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n", "client_id": "42"}}"#
        );
        assert_eq!(
            r(&json),
            r#"{"private_key": "[REDACTED]", "client_id": "42"}"#
        );
        let pem = format!(
            "key follows\n-----BEGIN EC PRIVATE KEY-----\n{body}\n{body}\n-----END EC PRIVATE KEY-----\nnext line stays\n"
        );
        assert_eq!(
            r(&pem),
            "key follows\n-----BEGIN EC PRIVATE KEY-----[REDACTED]-----END EC PRIVATE KEY-----\nnext line stays\n"
        );
    }

    /// A secret is replaced, not the text after it on its line or on the next lines.
    #[test]
    fn only_the_value_is_redacted() {
        for (text, want) in [
            ("password:\nnext line stays", "password:\nnext line stays"),
            ("Secret:\n\n  Keep this", "Secret:\n\n  Keep this"),
            ("Bearer\n\nabcdefgh line", "Bearer\n\nabcdefgh line"),
            ("api_key:\nabcd next", "api_key:\nabcd next"),
            (
                "token = \"hello world\" tail",
                "token = \"[REDACTED]\" tail",
            ),
            (
                "password: hunter2 and the rest\nline two",
                "password: [REDACTED] and the rest\nline two",
            ),
            (
                "open http://example.com?next=/a@b now",
                "open http://example.com?next=/a@b now",
            ),
        ] {
            assert_eq!(r(text), want, "for {text:?}");
        }
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
                    Just("0123456789"), Just("AKIA"), Just("ABCDEFGH23456789"), Just("xoxb-"),
                    Just("hooks.slack.com/services/"), Just("sk_live_"), Just("pk_test_"),
                    Just("eyJ"), Just("."), Just("-----BEGIN PRIVATE KEY-----"),
                    Just("-----END PRIVATE KEY-----"), Just("\\n"), Just("\n"),
                    Just("aws_secret_access_key"), Just("SecretAccessKey"),
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

        /// Each kind of secret, between random lines of text: nothing of the secret survives,
        /// and the text around it is unchanged.
        #[test]
        fn text_around_a_secret_survives(
            upper in "[A-Z0-9]{16}",
            lower in "[a-z0-9]{24}",
            kind in 0usize..15,
            before in "[a-z ,.()]{0,30}(\n[a-z ,.()]{0,30}){0,3}",
            after in "[a-z ,.()]{0,30}(\n[a-z ,.()]{0,30}){0,3}",
            gap_before in prop_oneof![Just(" "), Just("\n"), Just(" \n ")],
            gap_after in prop_oneof![Just(" "), Just("\n"), Just(" \n ")],
        ) {
            let secrets = fake_secrets(&upper, &lower);
            let (secret, parts) = &secrets[kind % secrets.len()];
            let head = format!("{before}{gap_before}");
            let tail = format!("{gap_after}{after}");
            let out = r(&format!("{head}{secret}{tail}"));
            prop_assert!(out.starts_with(&head), "{:?} lost its start {:?}", out, head);
            prop_assert!(out.ends_with(&tail), "{:?} lost its end {:?}", out, tail);
            let middle = &out[head.len()..out.len() - tail.len()];
            prop_assert!(middle.contains(REDACTED), "{:?}", middle);
            for part in parts {
                prop_assert!(!shows_part_of(middle, part), "{} in {:?}", part, middle);
            }
        }

        #[test]
        fn url_credentials_never_survive(user in "[a-z][a-z0-9\\-]{2,20}", pass in "[A-Za-z0-9]{8,30}", host in "[a-z]{3,12}") {
            let text = format!("fatal: could not read from https://{user}:{pass}@{host}.example/repo.git");
            prop_assert!(!r(&text).contains(&pass));
        }
    }
}
