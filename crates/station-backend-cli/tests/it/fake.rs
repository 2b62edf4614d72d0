//! The backend against fake `opencode` scripts: argv, stdin, parsing, and every way a run can
//! end badly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_cli::CliConfig;
use station_backend_cli::{CliBackend, INSTALL_HINT};
use station_core::{
    CodingBackend, Error, EventKind, FileAction, FileChange, OpenRequest, RunOptions, StopReason,
    Task,
};

use crate::support::{Fake, alive, assert_group_gone, kinds, notices, run_task, run_task_with};

/// A two-step run that writes hello.py, like the real one.
const HAPPY: &str = r#"
cat <<'EOF'
{"type":"step_start","timestamp":1,"sessionID":"ses_fake1","part":{"id":"p1","type":"step-start"}}
{"type":"text","timestamp":1,"sessionID":"ses_fake1","part":{"id":"t1","type":"text","text":"I'll create hello.py."}}
EOF
printf 'print("hello")\nprint("world")\n' > hello.py
cat <<'EOF'
{"type":"tool_use","timestamp":2,"sessionID":"ses_fake1","part":{"type":"tool","tool":"write","callID":"call_1","state":{"status":"completed","input":{"filePath":"hello.py","content":"print(1)\n"},"output":"Wrote file successfully.","time":{"start":10,"end":15}}}}
{"type":"step_finish","timestamp":2,"sessionID":"ses_fake1","part":{"reason":"tool-calls","type":"step-finish","tokens":{"total":110,"input":100,"output":10,"reasoning":0,"cache":{"read":7,"write":3}},"cost":0.01}}
{"type":"step_start","timestamp":3,"sessionID":"ses_fake1","part":{"id":"p2","type":"step-start"}}
{"type":"text","timestamp":3,"sessionID":"ses_fake1","part":{"id":"t2","type":"text","text":"Created hello.py."}}
{"type":"step_finish","timestamp":3,"sessionID":"ses_fake1","part":{"reason":"stop","type":"step-finish","tokens":{"total":125,"input":120,"output":5,"reasoning":2,"cache":{"read":1,"write":0}},"cost":0.02}}
EOF
"#;

#[tokio::test]
async fn happy_run_streams_events_and_builds_the_outcome() {
    let fake = Fake::new(HAPPY).await;
    let backend = Arc::new(fake.backend_with(CliConfig {
        model: Some("fake/fake-model".into()),
        ..fake.config()
    }));
    let task = Task {
        context: Some("the repo is empty".into()),
        ..Task::new("-n \"create\" hello.py  (two  spaces)")
    };
    let (events, outcome) = run_task(backend, fake.session(), task.clone()).await;
    let outcome = outcome.unwrap();

    assert_eq!(
        kinds(&events),
        [
            "started",
            "session",
            "text",
            "permission",
            "tool_started",
            "tool_finished",
            "file_edited",
            "step_finished",
            "text",
            "step_finished",
            "finished"
        ]
    );
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.stop_reason, StopReason::Completed);
    assert_eq!(outcome.summary, "Created hello.py.");
    assert_eq!(
        (
            outcome.usage.input_tokens,
            outcome.usage.output_tokens,
            outcome.usage.reasoning_tokens
        ),
        (220, 15, 2)
    );
    assert_eq!(
        (
            outcome.usage.cache_read_tokens,
            outcome.usage.cache_write_tokens
        ),
        (8, 3)
    );
    assert!((outcome.cost_usd.unwrap() - 0.03).abs() < 1e-9);
    assert_eq!(outcome.tool_calls.len(), 1);
    assert_eq!(
        outcome.tool_calls[0].output.as_deref(),
        Some("Wrote file successfully.")
    );
    assert_eq!(
        outcome.files_changed,
        [FileChange {
            path: "hello.py".into(),
            action: FileAction::Created,
            lines_added: 2,
            lines_removed: 0,
            ..Default::default()
        }]
    );
    assert_eq!(outcome.backend_session_id.as_deref(), Some("ses_fake1"));
    assert_eq!(outcome.model.as_deref(), Some("fake/fake-model"));

    // OpenCode trusts $PWD over the real cwd, so it must name the workspace.
    assert_eq!(
        fake.record("pwd").trim(),
        format!("PWD={}", fake.ws.display())
    );
    // The prompt arrives on stdin byte for byte; argv has no prompt at all.
    assert_eq!(fake.record("stdin"), task.prompt());
    assert_eq!(
        fake.args(),
        [
            "run",
            "--format",
            "json",
            "--auto",
            "--model=fake/fake-model",
            "--title=-n \"create\" hello.py  (two  spaces)"
        ]
    );
}

#[tokio::test]
async fn continuation_passes_the_session_and_a_learned_id_is_reused() {
    let fake = Fake::new(HAPPY).await;
    let backend = Arc::new(fake.backend());
    let session = backend
        .open(OpenRequest {
            workspace: Some(fake.ws.clone()),
            resume: Some("ses_given".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(session.backend_session_id.as_deref(), Some("ses_given"));
    assert_eq!(session.workspace.as_deref(), Some(fake.ws.as_path()));
    let (_, outcome) = run_task(backend.clone(), session, Task::new("go on")).await;
    assert!(outcome.unwrap().success);
    assert!(
        fake.args().contains(&"--session=ses_given".to_string()),
        "{:?}",
        fake.args()
    );

    // A copy of a fresh session taken before its first task still continues what that task made.
    let fresh = fake.session();
    let (_, first) = run_task(backend.clone(), fresh.clone(), Task::new("first")).await;
    assert_eq!(
        first.unwrap().backend_session_id.as_deref(),
        Some("ses_fake1")
    );
    assert!(fake.args().iter().any(|a| a == "--title=first"));
    let (_, second) = run_task(backend, fresh, Task::new("second")).await;
    assert!(second.unwrap().success);
    assert!(
        fake.args().contains(&"--session=ses_fake1".to_string()),
        "{:?}",
        fake.args()
    );
}

#[tokio::test]
async fn a_huge_single_line_is_parsed() {
    // An 11 MB tool output on one line, then the final answer.
    let body = r#"
printf '{"type":"step_start","sessionID":"ses_big","part":{}}\n'
printf '{"type":"tool_use","sessionID":"ses_big","part":{"tool":"bash","callID":"c1","state":{"status":"completed","input":{"command":"cat big"},"output":"'
head -c 11000000 /dev/zero | tr '\0' 'x'
printf '"}}}\n'
printf '{"type":"step_finish","sessionID":"ses_big","part":{"reason":"tool-calls","tokens":{"input":1,"output":1}}}\n'
printf '{"type":"step_start","sessionID":"ses_big","part":{}}\n'
printf '{"type":"text","sessionID":"ses_big","part":{"id":"t","text":"It is big."}}\n'
printf '{"type":"step_finish","sessionID":"ses_big","part":{"reason":"stop","tokens":{"input":2,"output":3}}}\n'
"#;
    let fake = Fake::new(body).await;
    let (events, outcome) = run_task(
        Arc::new(fake.backend()),
        fake.session(),
        Task::new("cat big"),
    )
    .await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.summary, "It is big.");
    assert_eq!(outcome.usage.input_tokens, 3);
    let output = outcome.tool_calls[0].output.as_deref().unwrap();
    assert!(
        output.len() < 70 * 1024 && output.contains("bytes cut") && output.starts_with("xxx"),
        "output is cut to a bounded size"
    );
    assert!(notices(&events).is_empty(), "{:?}", notices(&events));
}

#[tokio::test]
async fn a_crash_mid_stream_fails_with_what_was_seen() {
    let body = r#"
cat <<'EOF'
{"type":"step_start","sessionID":"ses_crash","part":{}}
{"type":"text","sessionID":"ses_crash","part":{"id":"t","text":"Working on it"}}
EOF
echo "segfault-ish trouble" >&2
kill -9 $$
"#;
    let fake = Fake::new(body).await;
    let (events, outcome) =
        run_task(Arc::new(fake.backend()), fake.session(), Task::new("crash")).await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Error);
    let error = outcome.error.unwrap();
    assert!(
        error.contains("killed by signal 9") && error.contains("segfault-ish trouble"),
        "{error}"
    );
    assert_eq!(outcome.summary, "Working on it");
    assert_eq!(outcome.backend_session_id.as_deref(), Some("ses_crash"));
    assert_eq!(kinds(&events).last(), Some(&"finished"));
}

#[tokio::test]
async fn timeout_kills_a_child_that_ignores_sigterm_and_its_grandchild() {
    let body = r#"
trap '' TERM
sh -c 'trap "" TERM; echo $$ > "$FAKE_DIR/grandchild"; while :; do sleep 1; done' &
printf '{"type":"step_start","sessionID":"ses_slow","part":{}}\n'
while :; do sleep 1; done
"#;
    let fake = Fake::new(body).await;
    let config = CliConfig {
        timeout_sec: 1,
        ..fake.config()
    };
    // As `stn` does: the configured `timeout_sec` is the runner's default deadline.
    let opts = RunOptions {
        default_timeout: Duration::from_secs(config.timeout_sec),
        ..RunOptions::default()
    };
    let backend = Arc::new(fake.backend_with(config));
    let started = Instant::now();
    let (_, outcome) = run_task_with(backend, fake.session(), Task::new("hang"), &opts).await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.stop_reason, StopReason::Timeout);
    assert!(!outcome.success);
    let error = outcome.error.as_deref().unwrap();
    assert!(
        error.starts_with("task timed out after 1s")
            && error.contains("process group were stopped"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly: {:?}",
        started.elapsed()
    );
    let (pid, grandchild) = (
        fake.pid(),
        fake.record("grandchild").trim().parse::<u32>().unwrap(),
    );
    assert_group_gone(pid).await;
    assert!(
        !alive(pid) && !alive(grandchild),
        "child {pid} or grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn cancel_stops_the_run_and_its_group() {
    let body = r#"
sh -c 'while :; do sleep 1; done' &
printf '{"type":"step_start","sessionID":"ses_cancel","part":{}}\n'
while :; do sleep 1; done
"#;
    let fake = Fake::new(body).await;
    let backend: Arc<dyn CodingBackend> = Arc::new(fake.backend());
    let mut run = station_core::start_task(
        backend,
        fake.session(),
        Task::new("wait"),
        &station_core::RunOptions::default(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(until.into(), run.next_event())
            .await
            .expect("the session event arrives")
            .expect("stream open");
        if matches!(event.kind, EventKind::BackendSession { .. }) {
            break;
        }
    }
    run.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(15), run.outcome())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);
    assert_eq!(outcome.backend_session_id.as_deref(), Some("ses_cancel"));
    assert_group_gone(fake.pid()).await;
}

#[tokio::test]
async fn garbage_output_is_noticed_and_fails() {
    let body = r#"
echo "this is not json"
echo "{broken"
echo '[1,2,3]'
"#;
    let fake = Fake::new(body).await;
    let (events, outcome) =
        run_task(Arc::new(fake.backend()), fake.session(), Task::new("x")).await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Error);
    let error = outcome.error.unwrap();
    assert!(
        error.contains("without finishing a model call") && error.contains("3 output lines"),
        "{error}"
    );
    let notices = notices(&events);
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert!(notices[0].contains("this is not json"));
}

#[tokio::test]
async fn nonzero_exit_reports_the_redacted_stderr() {
    let token = format!("ghp_{}", "Zq7x".repeat(9));
    let body = format!("echo 'provider exploded with token {token}' >&2\nexit 3\n");
    let fake = Fake::new(&body).await;
    let (_, outcome) = run_task(Arc::new(fake.backend()), fake.session(), Task::new("x")).await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Error);
    let error = outcome.error.unwrap();
    assert!(
        error.contains("exit code 3") && error.contains("provider exploded"),
        "{error}"
    );
    assert!(!error.contains("Zq7xZq7x"), "the token leaked: {error}");
}

#[tokio::test]
async fn an_error_event_with_exit_zero_fails() {
    let body = r#"
cat <<'EOF'
{"type":"step_start","sessionID":"ses_err","part":{}}
{"type":"error","sessionID":"ses_err","error":{"name":"APIError","data":{"message":"Cannot connect to API","isRetryable":true}}}
EOF
exit 0
"#;
    let fake = Fake::new(body).await;
    let (events, outcome) =
        run_task(Arc::new(fake.backend()), fake.session(), Task::new("x")).await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Error);
    assert_eq!(
        outcome.error.as_deref(),
        Some("opencode reported an error: APIError: Cannot connect to API")
    );
    assert!(
        notices(&events)
            .iter()
            .any(|n| n.contains("Cannot connect to API"))
    );
}

#[tokio::test]
async fn a_run_that_lingers_after_its_turn_is_stopped_and_succeeds() {
    let body = r#"
cat <<'EOF'
{"type":"step_start","sessionID":"ses_linger","part":{}}
{"type":"text","sessionID":"ses_linger","part":{"id":"t","text":"All done."}}
{"type":"step_finish","sessionID":"ses_linger","part":{"reason":"stop","tokens":{"input":1,"output":1}}}
EOF
while :; do sleep 1; done
"#;
    let fake = Fake::new(body).await;
    let backend = Arc::new(fake.backend().with_exit_grace(Duration::from_millis(300)));
    let started = Instant::now();
    let (events, outcome) = run_task(backend, fake.session(), Task::new("x")).await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.summary, "All done.");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(notices(&events).iter().any(|n| n.contains("did not exit")));
    assert_group_gone(fake.pid()).await;
}

#[tokio::test]
async fn an_unknown_session_is_not_found() {
    let fake =
        Fake::new("printf '\\033[91mError: \\033[0mSession not found\\n' >&2\nexit 1\n").await;
    let backend = Arc::new(fake.backend());
    let mut session = fake.session();
    session.backend_session_id = Some("ses_gone".into());
    let (events, outcome) = run_task(backend, session, Task::new("x")).await;
    match outcome {
        Err(Error::NotFound { id, .. }) => assert_eq!(id, "ses_gone"),
        other => panic!("expected not found, got {other:?}"),
    }
    assert_eq!(kinds(&events).last(), Some(&"failed"));
}

#[tokio::test]
async fn a_missing_binary_says_how_to_install() {
    let backend = CliBackend::new(CliConfig {
        binary: "/nonexistent/dir/opencode".into(),
        ..CliConfig::default()
    });
    let health = backend.health().await.unwrap();
    assert!(
        !health.ok && health.detail.contains(INSTALL_HINT),
        "{health:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(backend.with_workspace_base(dir.path().to_path_buf()));
    let session = backend.open(OpenRequest::default()).await.unwrap();
    assert!(
        session
            .workspace
            .as_deref()
            .unwrap()
            .starts_with(dir.path().canonicalize().unwrap())
    );
    let (_, outcome) = run_task(backend, session, Task::new("x")).await;
    match outcome {
        Err(e @ Error::Unavailable { .. }) => assert!(e.to_string().contains(INSTALL_HINT), "{e}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    let on_path = CliBackend::new(CliConfig {
        binary: "opencode-surely-not-installed".into(),
        ..CliConfig::default()
    });
    let health = on_path.health().await.unwrap();
    assert!(
        !health.ok && health.detail.contains("PATH") && health.detail.contains(INSTALL_HINT),
        "{health:?}"
    );
}

/// A fake that answers `--version` and `session list` as the real one does.
const SESSIONS: &str = r#"
case "$1" in
--version) echo "1.18.33" ;;
session) cat "$FAKE_DIR/list.json" ;;
*) exit 9 ;;
esac
"#;

#[tokio::test]
async fn health_titles_and_listing() {
    let fake = Fake::new(SESSIONS).await;
    let list = include_str!("../fixtures/opencode-session-list.json")
        .replace("/WORKDIR/oc/ws_run", &fake.ws.to_string_lossy());
    std::fs::write(fake.state.join("list.json"), list).unwrap();
    let backend = fake.backend();

    let health = backend.health().await.unwrap();
    assert!(health.ok, "{health:?}");
    assert_eq!(health.version.as_deref(), Some("1.18.33"));

    let listed = backend.list_sessions().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].id, "ses_df5175ff4ffelu5fzSfjSvJu3x");
    assert_eq!(fake.args(), ["session", "list", "--format", "json"]);

    // Part of a title, case-insensitive; the session's directory becomes the workspace.
    let session = backend
        .open(OpenRequest {
            resume: Some("FIZZBUZZ".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        session.backend_session_id.as_deref(),
        Some("ses_df5175ff4ffelu5fzSfjSvJu3x")
    );
    assert_eq!(
        session.title.as_deref(),
        Some("Implement fizzbuzz in fizz_oc py")
    );
    assert_eq!(session.workspace.as_deref(), Some(fake.ws.as_path()));
    // An exact title beats parts of others.
    let exact = backend
        .open(OpenRequest {
            resume: Some("e2e json".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        exact.backend_session_id.as_deref(),
        Some("ses_df517854dffe0WmmlN3SQxUxSJ")
    );
    match backend
        .open(OpenRequest {
            resume: Some("py".into()),
            ..Default::default()
        })
        .await
    {
        Err(Error::AmbiguousSession { candidates, .. }) => {
            assert_eq!(candidates.len(), 2, "{candidates:?}")
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    assert!(matches!(
        backend
            .open(OpenRequest {
                resume: Some("no such".into()),
                ..Default::default()
            })
            .await,
        Err(Error::NotFound { .. })
    ));
    // A bare id without a workspace is found in the list and continues in its directory.
    let by_id = backend
        .open(OpenRequest {
            resume: Some("ses_df517854dffe0WmmlN3SQxUxSJ".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (by_id.workspace.as_deref(), by_id.title.as_deref()),
        (Some(fake.ws.as_path()), Some("e2e json"))
    );
    backend.close(&by_id).await.unwrap();
    backend.close(&by_id).await.unwrap();
}

#[tokio::test]
async fn a_secret_in_the_instruction_never_reaches_the_title_in_argv() {
    let fake = Fake::new(HAPPY).await;
    let backend = Arc::new(fake.backend());
    let token = format!("ghp_{}", "Rt5w".repeat(9));
    let task = Task::new(format!("push with {token} please"));
    let (_, outcome) = run_task(backend, fake.session(), task).await;
    assert!(outcome.unwrap().success);
    let title = fake
        .args()
        .into_iter()
        .find(|a| a.starts_with("--title="))
        .expect("a title is passed");
    assert!(title.starts_with("--title=push with "), "{title}");
    assert!(!title.contains("Rt5w"), "the token is in argv: {title}");
}

#[tokio::test]
async fn a_huge_deadline_is_bounded_instead_of_overflowing() {
    let fake = Fake::new(HAPPY).await;
    let backend = Arc::new(fake.backend_with(CliConfig {
        timeout_sec: u64::MAX,
        ..fake.config()
    }));
    let task = Task {
        timeout_secs: Some(u64::MAX),
        ..Task::new("create hello.py")
    };
    let (_, outcome) = run_task(backend.clone(), fake.session(), task).await;
    assert!(outcome.unwrap().success);
    let (_, outcome) = run_task(backend, fake.session(), Task::new("again")).await;
    assert!(outcome.unwrap().success);
}

#[tokio::test]
async fn the_configured_timeout_is_not_a_second_deadline_under_the_runners() {
    // The runner's deadline is the only one; `timeout_sec` is only its default (set by `stn`).
    let fake = Fake::new(&format!("sleep 2\n{HAPPY}")).await;
    let backend = Arc::new(fake.backend_with(CliConfig {
        timeout_sec: 1,
        ..fake.config()
    }));
    let (_, outcome) = run_task(backend, fake.session(), Task::new("take your time")).await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.summary, "Created hello.py.");
}

#[tokio::test]
async fn debug_shows_environment_names_but_never_values() {
    let secret = format!("ghp_{}", "Dq3v".repeat(9));
    let backend = CliBackend::new(CliConfig::default())
        .with_env(vec![("GITHUB_TOKEN".into(), secret.clone())])
        .with_env_remove(vec!["OPENAI_API_KEY".into()]);
    let shown = format!("{backend:?}");
    assert!(!shown.contains(&secret), "a value leaked: {shown}");
    assert!(
        shown.contains("GITHUB_TOKEN") && shown.contains("OPENAI_API_KEY"),
        "{shown}"
    );
}
