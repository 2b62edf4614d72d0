use super::*;

fn testdata(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/agents")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn relative(p: &Path) -> PathBuf {
    p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .to_path_buf()
}

#[test]
fn documented_agents_parse() {
    for path in testdata("good") {
        let mut def =
            AgentDefinition::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        def.source = Some(relative(&path));
        insta::assert_yaml_snapshot!(
            format!("good-{}", path.file_stem().unwrap().to_string_lossy()),
            def
        );
    }
}

#[test]
fn malformed_agents_give_precise_errors() {
    let mut report = String::new();
    for path in testdata("bad") {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = relative(&path);
        match AgentDefinition::parse(&text, Some(&rel)) {
            Ok(_) => panic!("{} parsed but should not", rel.display()),
            Err(e) => {
                assert!(matches!(e, Error::Config(_)), "{}: {e:?}", rel.display());
                let msg = e.to_string();
                assert!(
                    msg.starts_with(&rel.display().to_string()),
                    "error names the file: {msg}"
                );
                report.push_str(&msg);
                report.push('\n');
            }
        }
    }
    insta::assert_snapshot!(report);
}

#[test]
fn render_splits_roles_and_fills_user_input() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/agents/good/feature-developer.prompt"),
    )
    .unwrap();
    let def = AgentDefinition::parse(&text, None).unwrap();
    let msgs = def
        .render("Add <login> & logout", &BTreeMap::new())
        .unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].role, Role::System);
    assert!(msgs[0].text.starts_with("You are a senior developer."));
    assert_eq!(
        msgs[1],
        PromptMessage {
            role: Role::User,
            text: "Add <login> & logout".into()
        }
    );
}

#[test]
fn render_without_roles_is_one_user_message_and_missing_variables_are_named() {
    let def = AgentDefinition::parse(
        "---\nmetadata:\n  name: t\nmodel: openai/gpt-4o\n---\nrun {{trace_id}}: {{userInput}}\n",
        None,
    )
    .unwrap();
    assert_eq!(def.variables, vec!["trace_id".to_string()]);
    let err = def.render("x", &BTreeMap::new()).unwrap_err().to_string();
    assert!(err.contains("trace_id"), "{err}");
    let vars = BTreeMap::from([("trace_id".to_string(), serde_json::json!("t-1"))]);
    let msgs = def.render("do it", &vars).unwrap();
    assert_eq!(
        msgs,
        vec![PromptMessage {
            role: Role::User,
            text: "run t-1: do it".into()
        }]
    );
}

#[test]
fn backend_in_agent_is_only_a_warning() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/agents/good/code-assistant-doc.prompt"),
    )
    .unwrap();
    let def = AgentDefinition::parse(&text, None).unwrap();
    assert_eq!(def.backend_warning("opencode"), None);
    assert!(
        def.backend_warning("claudecode")
            .unwrap()
            .contains("station config wins")
    );
}

#[test]
fn created_agents_read_back() {
    let text = new_agent_text(
        "coder",
        "Coding assistant",
        "You are a coding assistant.",
        Some("openai/gpt-4o"),
        10,
        Some(&serde_json::json!({"enabled": true})),
    )
    .unwrap();
    let def = AgentDefinition::parse(&text, None).unwrap();
    assert_eq!(def.name, "coder");
    assert!(def.coding.enabled);
    assert_eq!(def.max_steps, Some(10));
    assert_eq!(def.model.as_deref(), Some("openai/gpt-4o"));
}

#[test]
fn frontmatter_split_handles_bom_crlf_and_dashes_in_body() {
    let text = "\u{feff}---\r\nmodel: openai/gpt-4o\r\nmetadata:\r\n  name: crlf\r\n---\r\nbody with --- inside\n---\nand more {{userInput}}\n";
    let def = AgentDefinition::parse(text, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(def.body.contains("body with --- inside"));
    assert!(def.body.contains("and more"));
}
