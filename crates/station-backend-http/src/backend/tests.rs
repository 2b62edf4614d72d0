use super::*;

fn info(id: &str, title: &str) -> SessionInfo {
    SessionInfo {
        id: id.into(),
        title: Some(title.into()),
        ..Default::default()
    }
}

#[test]
fn title_search() {
    let all = vec![
        info("ses_1", "Fix the parser"),
        info("ses_2", "fix the parser tests"),
        info("ses_3", "Docs"),
    ];
    assert_eq!(
        find_by_title(all.clone(), "fix THE parser").unwrap().id,
        "ses_1"
    );
    assert_eq!(find_by_title(all.clone(), "docs").unwrap().id, "ses_3");
    let err = find_by_title(all.clone(), "parser").unwrap_err();
    assert!(
        matches!(&err, Error::AmbiguousSession { candidates, .. } if candidates.len() == 2),
        "{err}"
    );
    assert!(matches!(
        find_by_title(all, "nothing").unwrap_err(),
        Error::NotFound { .. }
    ));
}

#[test]
fn config_is_validated() {
    let mut c = OpencodeConfig {
        url: "localhost:4096".into(),
        ..Default::default()
    };
    assert!(
        HttpBackend::from_opencode(c.clone(), 3, Duration::from_secs(60))
            .unwrap_err()
            .to_string()
            .contains("coding.opencode.url")
    );
    c.url = "http://127.0.0.1:4096".into();
    c.model = Some("just-a-model".into());
    assert!(
        HttpBackend::from_opencode(c.clone(), 3, Duration::from_secs(60))
            .unwrap_err()
            .to_string()
            .contains("provider/model")
    );
    c.model = Some("fake/fake-model".into());
    let b = HttpBackend::from_opencode(c, 3, Duration::from_secs(60)).unwrap();
    assert_eq!(
        b.prompt_body(&Task::new("hi"))["model"],
        json!({"providerID": "fake", "modelID": "fake-model"})
    );
    assert!(!b.capabilities().remote_workspace);
}

#[test]
fn debug_shows_no_secrets() {
    let c = OpencodeConfig {
        password: Some(Secret::new("pw-hunter2hunter2")),
        ..Default::default()
    };
    let b = HttpBackend::from_opencode(c, 3, Duration::from_secs(60))
        .unwrap()
        .with_env([("ANTHROPIC_API_KEY", "key-hunter3hunter3")]);
    let shown = format!("{b:?}");
    assert!(shown.contains("ANTHROPIC_API_KEY"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("hunter3"),
        "{shown}"
    );
}

#[test]
fn remote_urls_are_remote() {
    let c = OpencodeConfig {
        url: "http://build-box:4096".into(),
        managed: ManagedMode::Never,
        ..Default::default()
    };
    let b = HttpBackend::from_opencode(c, 3, Duration::from_secs(60)).unwrap();
    assert!(b.capabilities().remote_workspace);
    let err = b
        .prepare_workspace(Some(PathBuf::from("rel/dir")), &SessionId::generate())
        .unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
}
