use station_core::{
    Event, EventKind, FileAction, FileChange, Outcome, RepoSpec, Session, SessionId, StopReason,
    Task, ToolCall, Usage,
};

fn fixed_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn sample_outcome() -> Outcome {
    Outcome {
        success: true,
        summary: "Created hello.py".into(),
        stop_reason: StopReason::Completed,
        error: None,
        files_changed: vec![FileChange {
            path: "hello.py".into(),
            action: FileAction::Created,
            lines_added: 1,
            lines_removed: 0,
            ..Default::default()
        }],
        usage: Usage {
            input_tokens: 100,
            output_tokens: 20,
            reasoning_tokens: 0,
            cache_read_tokens: 50,
            cache_write_tokens: 5,
        },
        cost_usd: Some(0.0125),
        cost_estimated: false,
        tool_calls: vec![ToolCall {
            id: Some("call_1".into()),
            name: "write".into(),
            input: serde_json::json!({"filePath": "hello.py", "content": "print('Hello World')\n"}),
            output: Some("Wrote file successfully.".into()),
            error: None,
            duration_ms: Some(3),
        }],
        duration_ms: 1234,
        backend_session_id: Some("ses_abc".into()),
        model: Some("fake/fake-model".into()),
        permissions: Vec::new(),
        policy_gaps: Vec::new(),
        patch: None,
    }
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
) -> serde_json::Value {
    let json = serde_json::to_value(value).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, value);
    json
}

#[test]
fn session_wire_shape() {
    let mut s = Session::new("opencode");
    s.id = SessionId("stn_0001".into());
    s.created_at = fixed_time();
    s.last_used_at = fixed_time();
    s.backend_session_id = Some("ses_abc".into());
    s.title = Some("Create hello.py".into());
    s.workspace = Some("/work/ws".into());
    s.repo = Some(RepoSpec {
        url: "https://github.com/org/repo.git".into(),
        branch: Some("main".into()),
    });
    s.metadata.insert("k".into(), "v".into());
    insta::assert_json_snapshot!(round_trip(&s));
}

#[test]
fn task_and_outcome_wire_shape() {
    let task = Task {
        instruction: "create hello.py".into(),
        context: Some("python 3".into()),
        files: vec!["a.py".into()],
        timeout_secs: Some(60),
        policy: None,
    };
    insta::assert_json_snapshot!(round_trip(&task));
    insta::assert_json_snapshot!(round_trip(&sample_outcome()));
    assert_eq!(sample_outcome().usage.total(), 120);
    assert_eq!(
        task.prompt(),
        "Context:\npython 3\n\nTask:\ncreate hello.py\n\nFocus on these files:\n- a.py\n"
    );
}

#[test]
fn event_wire_shape() {
    let events = vec![
        EventKind::Started {
            session_id: "stn_1".into(),
            backend: "opencode".into(),
        },
        EventKind::TextDelta { text: "Hel".into() },
        EventKind::ToolStarted {
            call_id: Some("call_1".into()),
            name: "write".into(),
            input: serde_json::json!({"filePath": "hello.py"}),
        },
        EventKind::ToolFinished {
            call_id: Some("call_1".into()),
            name: "write".into(),
            output: Some("ok".into()),
            error: None,
        },
        EventKind::FileEdited {
            path: "hello.py".into(),
        },
        EventKind::StepFinished {
            usage: Usage {
                input_tokens: 10,
                output_tokens: 2,
                ..Usage::default()
            },
            cost_usd: None,
        },
        EventKind::Finished {
            outcome: Box::new(sample_outcome()),
        },
    ];
    let events: Vec<Event> = events
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event {
            seq: i as u64 + 1,
            at: fixed_time(),
            kind,
        })
        .collect();
    insta::assert_json_snapshot!(round_trip(&events));
}
