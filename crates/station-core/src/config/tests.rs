use super::*;
use std::collections::HashMap;

pub(crate) fn env_of(
    pairs: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

pub(crate) fn load_text(text: &str, env: &[(&str, &str)]) -> Result<LoadedConfig> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path), env_of(env))
}

/// A backend section as a backend crate defines one.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Probe {
    binary: Option<String>,
    #[serde(deserialize_with = "deadline_secs")]
    timeout_sec: u64,
    max_turns: u32,
}

impl ConfigSection for Probe {
    const KEY: &'static str = "probe";
}

#[test]
fn defaults_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_string();
    let loaded = Config::load(None, env_of(&[("HOME", &home)])).unwrap();
    assert_eq!(loaded.path, None);
    assert_eq!(loaded.dir, dir.path().join(".config/station"));
    let c = &loaded.config.coding;
    assert_eq!(c.backend, "opencode");
    assert_eq!((c.task_timeout_min, c.max_attempts), (10, 3));
    assert_eq!(loaded.section::<Probe>().unwrap(), Probe::default());
}

#[test]
fn lookup_order() {
    let (p, req) = Config::locate(
        None,
        &env_of(&[
            ("STN_CONFIG", "/a.yaml"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]),
    )
    .unwrap();
    assert_eq!((p, req), (PathBuf::from("/a.yaml"), true));
    let (p, req) =
        Config::locate(None, &env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])).unwrap();
    assert_eq!((p, req), (PathBuf::from("/x/station/config.yaml"), false));
    let (p, _) = Config::locate(None, &env_of(&[("HOME", "/h")])).unwrap();
    assert_eq!(p, PathBuf::from("/h/.config/station/config.yaml"));
    let (p, _) = Config::locate(
        Some(Path::new("/c.yaml")),
        &env_of(&[("STN_CONFIG", "/a.yaml")]),
    )
    .unwrap();
    assert_eq!(p, PathBuf::from("/c.yaml"));
}

#[test]
fn full_file_and_env_overrides() {
    let text = "coding:\n  backend: probe-backend\n  probe:\n    timeout_sec: 60\n    max_turns: 4\n  other:\n    anything: [1, 2]\n  git:\n    token_env: GH\n    user_name: Bot\n  task_timeout_min: 20\nai_model: gpt-4o\n";
    let loaded = load_text(
        text,
        &[
            ("GH", "tok-123456789"),
            ("STN_AI_BASE_URL", "http://127.0.0.1:1/v1"),
        ],
    )
    .unwrap();
    let c = &loaded.config.coding;
    assert_eq!(loaded.backend_name(), "probe-backend");
    assert_eq!(c.task_timeout(), Duration::from_secs(1200));
    let probe: Probe = loaded.section().unwrap();
    assert_eq!((probe.timeout_sec, probe.max_turns), (60, 4));
    assert_eq!(
        loaded.git_token.as_ref().map(Secret::expose),
        Some("tok-123456789")
    );
    assert_eq!(
        loaded.config.ai_base_url.as_deref(),
        Some("http://127.0.0.1:1/v1")
    );
    assert_eq!(loaded.env_var("GH").as_deref(), Some("tok-123456789"));
    let backend_env = load_text(text, &[("STN_CODING_BACKEND", "opencode-cli")]).unwrap();
    assert_eq!(backend_env.backend_name(), "opencode-cli");
}

#[test]
fn coding_keys_are_listed_with_their_positions() {
    let loaded = load_text(
        "ai_model: x\ncoding:\n  backend: b\n  probe:\n    max_turns: 1\n  \"quoted\": 1\n",
        &[],
    )
    .unwrap();
    let keys = loaded.coding_keys().unwrap();
    let found: Vec<(&str, Option<(usize, usize)>)> =
        keys.iter().map(|k| (k.key.as_str(), k.position)).collect();
    assert_eq!(
        found,
        vec![
            ("backend", Some((3, 3))),
            ("probe", Some((4, 3))),
            ("quoted", Some((6, 3)))
        ]
    );
    let flow = load_text("coding: {backend: b, probe: {}}\n", &[]).unwrap();
    let keys: Vec<String> = flow
        .coding_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(keys, vec!["backend", "probe"]);
}

#[test]
fn token_expansion_and_redaction() {
    let token = format!("ghp_{}", "Z9y8".repeat(9));
    let loaded = load_text(
        "coding:\n  git:\n    token: ${GITHUB_TOKEN}\n",
        &[("GITHUB_TOKEN", &token)],
    )
    .unwrap();
    assert_eq!(loaded.git_token.as_ref().unwrap().expose(), token);
    let shown = serde_json::to_string(&loaded).unwrap();
    assert!(
        !shown.contains(&token) && !shown.contains("Z9y8"),
        "{shown}"
    );
    assert!(!format!("{loaded:?}").contains("Z9y8"));
    let err = load_text("coding:\n  git:\n    token: ${NOPE_TOKEN}\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("NOPE_TOKEN") && err.contains("coding.git.token"),
        "{err}"
    );
}

#[test]
fn section_errors_are_located() {
    let loaded = load_text("coding:\n  probe:\n    max_turns: many\n", &[]).unwrap();
    let err = loaded.section::<Probe>().unwrap_err().to_string();
    assert!(
        err.contains("config.yaml:3:") && err.contains("coding.probe.max_turns"),
        "{err}"
    );
    let loaded = load_text("coding:\n  backend: x\n  probe:\n    max_trns: 2\n", &[]).unwrap();
    let err = loaded.section::<Probe>().unwrap_err().to_string();
    assert!(
        err.contains("config.yaml:4:5")
            && err.contains("coding.probe.max_trns")
            && err.contains("did you mean `max_turns`"),
        "{err}"
    );
    let err = load_text("api_port: 8080\n", &[]).unwrap_err().to_string();
    assert!(err.contains("unknown key `api_port`"), "{err}");
}

#[test]
fn deadlines_are_bounded_with_the_field_and_line() {
    let loaded = load_text(
        "coding:\n  probe:\n    timeout_sec: 9223372036854775807\n",
        &[],
    )
    .unwrap();
    let err = loaded.section::<Probe>().unwrap_err().to_string();
    assert!(
        err.contains(":3:") && err.contains("coding.probe.timeout_sec") && err.contains("7 days"),
        "{err}"
    );
    let err = load_text("coding:\n  task_timeout_min: 18446744073709551615\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("coding.task_timeout_min") && err.contains("minutes"),
        "{err}"
    );
    let ok = load_text(
        "coding:\n  task_timeout_min: 10080\n  probe:\n    timeout_sec: 604800\n",
        &[],
    )
    .unwrap();
    assert_eq!(ok.config.coding.task_timeout(), MAX_DEADLINE);
    assert_eq!(ok.section::<Probe>().unwrap().timeout_sec, 604800);
}

#[test]
fn config_files_must_be_small_regular_files() {
    let err = Config::load(Some(Path::new("/dev/zero")), env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/dev/zero") && err.contains("device"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
    let err = Config::load(Some(&big), env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than 1 MiB"), "{err}");
}

#[test]
fn policy_and_budget_errors_name_file_line_and_field() {
    let text = "coding:\n  policy:\n    edit: { deny: [\"secrets/**\"] }\n    bash:\n      deny: [\"rm -rf *\", \"a[\"]\n";
    let err = load_text(text, &[]).unwrap_err().to_string();
    assert!(
        err.contains("config.yaml:5:")
            && err.contains("coding.policy.bash.deny")
            && err.contains("`a[` is not a valid glob"),
        "{err}"
    );
    let err = load_text("coding:\n  policy:\n    unmatched: perhaps\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.yaml:3:") && err.contains("perhaps"),
        "{err}"
    );
    let err = load_text("coding:\n  budget:\n    max_tokns: 5\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("coding.budget.max_tokns") && err.contains("max_tokens"),
        "{err}"
    );
    let ok = load_text(
        "coding:\n  policy:\n    edit: { deny: [\"secrets/**\"] }\n    unmatched: ask\n  budget: { max_tokens: 500000, max_cost_usd: 5.0 }\n",
        &[],
    )
    .unwrap();
    let policy = ok.config.coding.policy.clone().unwrap();
    assert_eq!(policy.unmatched, crate::policy::Verdict::Ask);
    assert_eq!(policy.edit.deny[0].as_str(), "secrets/**");
    assert_eq!(ok.config.coding.budget.max_tokens, Some(500_000));
}

#[test]
fn isolation_and_worktree_on_close_are_read_and_checked() {
    let c = load_text("", &[]).unwrap().config.coding;
    assert_eq!(
        (c.isolation, c.worktree_on_close),
        (Isolation::None, WorktreeOnClose::Keep)
    );
    let c = load_text(
        "coding:\n  isolation: worktree\n  worktree_on_close: remove\n",
        &[],
    )
    .unwrap()
    .config
    .coding;
    assert_eq!(
        (c.isolation, c.worktree_on_close),
        (Isolation::Worktree, WorktreeOnClose::Remove)
    );
    let err = load_text("coding:\n  isolation: worktre\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.yaml:2:")
            && err.contains("coding.isolation")
            && err.contains("`worktre` is not a valid value")
            && err.contains("did you mean `worktree`")
            && err.contains("none, worktree"),
        "{err}"
    );
    let err = load_text("coding:\n  worktree_on_close: delete\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("coding.worktree_on_close") && err.contains("keep, remove"),
        "{err}"
    );
    assert_eq!("worktree".parse::<Isolation>(), Ok(Isolation::Worktree));
    assert_eq!(
        "wt".parse::<Isolation>(),
        Err("`wt` is not an isolation mode; use one of: none, worktree".to_string())
    );
}

#[test]
fn pricing_is_read_and_its_errors_are_located() {
    let ok = load_text(
        "coding:\n  pricing:\n    gpt-5.5: {input: 1.5, cached_input: 0.15, output: 12}\n",
        &[],
    )
    .unwrap();
    let table = ok.config.coding.price_table();
    assert_eq!(table.price("gpt-5.5").unwrap().output, 12.0);
    assert!(table.price("gpt-5").is_some(), "built-in prices stay");
    for (text, needle) in [
        (
            "coding:\n  pricing:\n    gpt-5:\n      input: -1\n      output: 2\n",
            "-1 is not a price",
        ),
        (
            "coding:\n  pricing:\n    gpt-5:\n      input: 1\n      outptu: 2\n",
            "outptu",
        ),
        (
            "coding:\n  pricing:\n    \"bad name\": {input: 1, output: 2}\n",
            "not a model name",
        ),
    ] {
        let err = load_text(text, &[]).unwrap_err().to_string();
        assert!(
            err.contains("config.yaml:") && err.contains("coding.pricing") && err.contains(needle),
            "{err}"
        );
    }
}
