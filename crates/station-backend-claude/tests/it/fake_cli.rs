//! The backend against fake `claude` scripts: argv and stdin, crashes, garbage, stderr, stuck
//! process groups, huge lines, resume, open, health and listing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_claude::ClaudeBackend;
use station_backend_claude::ClaudeConfig;
use station_core::{
    CancelSignal, CodingBackend, Error, EventKind, EventSink, ExecContext, FileAction, OpenRequest,
    Outcome, RunOptions, StopReason, Task, start_task,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::support::{Fake, alive, group_gone};

const SESSION_ID: &str = "e7e8667b-a21f-4a2b-b4ef-4e96df198d78";

/// Run `task` on the fake directly; the outcome and every event it emitted.
async fn run(
    fake: &Fake,
    backend: &ClaudeBackend,
    task: Task,
) -> (station_core::Result<Outcome>, Vec<EventKind>) {
    let (events, rx) = EventSink::channel();
    let ctx = ExecContext::new(events, CancelSignal::new());
    let result = backend.execute(&fake.session(), &task, ctx).await;
    (result, drain(rx))
}

/// Run `task` through the runner, as every caller does (the runner records the workspace's
/// changes); its outcome and the events between `Started` and the terminal event.
async fn run_through_runner(
    fake: &Fake,
    backend: ClaudeBackend,
    task: Task,
) -> (station_core::Result<Outcome>, Vec<EventKind>) {
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        start_task(
            Arc::new(backend),
            fake.session(),
            task,
            &RunOptions::default(),
        )
        .follow(|e| events.push(e.kind.clone())),
    )
    .await
    .expect("the task ends");
    events.retain(|e| !matches!(e, EventKind::Started { .. }) && !e.is_terminal());
    (outcome, events)
}

fn drain(mut rx: UnboundedReceiver<station_core::Event>) -> Vec<EventKind> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        out.push(event.kind);
    }
    out
}

fn notices(events: &[EventKind]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, EventKind::Notice { .. }))
        .count()
}

#[tokio::test]
async fn argv_stdin_cwd_and_env_are_what_the_cli_needs() {
    assert!(
        std::env::var("CARGO_PKG_NAME").is_ok(),
        "cargo sets CARGO_PKG_NAME for tests; the removal check relies on it"
    );
    let fake = Fake::new(
        r#"
printf '%s\n' "$@" > "$FAKE_DIR/argv"
# Stdin stays open until the result: take the two opening lines only.
head -n 2 > "$FAKE_DIR/stdin"
printf '%s' "${IS_SANDBOX-unset}" > "$FAKE_DIR/is_sandbox"
printf '%s' "${CARGO_PKG_NAME-unset}" > "$FAKE_DIR/removed"
pwd > "$FAKE_DIR/cwd"
printf 'print("hi")\n' > hello.py
head -6 "$FIXTURES/claude-stream-create-then-resume.jsonl"
"#,
    )
    .await;
    let config = ClaudeConfig {
        max_turns: 4,
        model: Some("claude-sonnet-4-5".into()),
        disallowed_tools: vec!["WebFetch".into(), "WebSearch".into()],
        ..ClaudeConfig::default()
    };
    let backend = fake
        .backend(config)
        .with_env_remove(vec!["CARGO_PKG_NAME".into()]);
    let prompt = "-rf --version: create hello.py";
    let (outcome, events) = run_through_runner(&fake, backend, Task::new(prompt)).await;
    let outcome = outcome.unwrap();

    let argv: Vec<String> = fake.record("argv").lines().map(str::to_string).collect();
    assert_eq!(
        argv,
        [
            "-p",
            "--input-format=stream-json",
            "--output-format=stream-json",
            "--verbose",
            "--include-partial-messages",
            "--permission-mode=default",
            "--permission-prompt-tool=stdio",
            "--max-turns=4",
            "--model=claude-sonnet-4-5",
            "--disallowed-tools=WebFetch,WebSearch",
        ]
    );
    let stdin: Vec<serde_json::Value> = fake
        .record("stdin")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stdin[0]["request"]["subtype"], "initialize");
    let stdin = &stdin[1];
    assert_eq!(stdin["type"], "user");
    assert_eq!(stdin["message"]["content"][0]["text"], prompt);
    assert_eq!(fake.record("cwd").trim(), fake.workspace.to_string_lossy());
    // No --dangerously-skip-permissions, so no IS_SANDBOX=1 for root either.
    let inherited = std::env::var("IS_SANDBOX").unwrap_or_else(|_| "unset".into());
    assert_eq!(fake.record("is_sandbox"), inherited);
    assert_eq!(fake.record("removed"), "unset");

    assert!(outcome.success, "{outcome:?}");
    assert_eq!(
        outcome.summary,
        "Created cc_hello.py, which prints Hello from claude."
    );
    assert_eq!(outcome.backend_session_id.as_deref(), Some(SESSION_ID));
    assert_eq!(outcome.cost_usd, Some(0.19212));
    assert_eq!(
        (outcome.usage.input_tokens, outcome.usage.output_tokens),
        (38324, 20)
    );
    assert_eq!(
        outcome
            .tool_calls
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["Write"]
    );
    assert_eq!(
        outcome.files_changed.len(),
        1,
        "{:?}",
        outcome.files_changed
    );
    assert_eq!(
        (
            outcome.files_changed[0].path.as_str(),
            outcome.files_changed[0].action
        ),
        ("hello.py", FileAction::Created)
    );
    assert!(
        matches!(events.first(), Some(EventKind::BackendSession { backend_session_id }) if backend_session_id == SESSION_ID),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::FileEdited { path } if path.ends_with("cc_hello.py"))),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_crash_mid_stream_is_a_failed_outcome_with_what_was_seen() {
    let fake = Fake::new("head -3 \"$FIXTURES/claude-fizzbuzz.jsonl\"\nkill -9 $$\n").await;
    let (outcome, events) = run(
        &fake,
        &fake.backend(ClaudeConfig::default()),
        Task::new("fizzbuzz"),
    )
    .await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Error);
    let error = outcome.error.as_deref().unwrap();
    assert!(
        error.contains("killed by signal 9") && error.contains("before reporting a result"),
        "{error}"
    );
    assert_eq!(outcome.tool_calls.len(), 1);
    assert_eq!(outcome.tool_calls[0].output, None);
    assert_eq!(
        outcome.backend_session_id.as_deref(),
        Some("f228dd03-2fcf-4ac5-9b4a-f320d8eae3f7")
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::ToolStarted { name, .. } if name == "Write")),
        "{events:?}"
    );
}

#[tokio::test]
async fn garbage_output_is_noticed_and_fails_without_a_result() {
    let fake = Fake::new(
        "i=0\nwhile [ $i -lt 25 ]; do echo \"garbage line $i {\"; i=$((i+1)); done\nexit 0\n",
    )
    .await;
    let (outcome, events) = run(
        &fake,
        &fake.backend(ClaudeConfig::default()),
        Task::new("x"),
    )
    .await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    assert_eq!(
        outcome.error.as_deref(),
        Some("claude exited without reporting a result")
    );
    // Ten quoted, one saying the rest are skipped silently.
    assert_eq!(notices(&events), 11, "{events:?}");
}

#[tokio::test]
async fn a_non_zero_exit_reports_the_redacted_stderr_tail() {
    let token = format!("sk-ant-api03-{}", "Qx7_".repeat(12));
    let fake = Fake::new("echo 'starting' >&2\necho \"Invalid API key · Please run /login (got $FAKE_KEY)\" >&2\nexit 1\n").await;
    let backend = fake
        .backend(ClaudeConfig::default())
        .with_env(vec![("FAKE_KEY".into(), token.clone())]);
    let (outcome, _) = run(&fake, &backend, Task::new("x")).await;
    let outcome = outcome.unwrap();
    assert!(!outcome.success);
    let error = outcome.error.unwrap();
    assert!(
        error.contains("exit code 1") && error.contains("Invalid API key"),
        "{error}"
    );
    assert!(
        !error.contains(&token) && !error.contains("Qx7_Qx7_"),
        "{error}"
    );
}

/// Ignores SIGTERM, as does the grandchild it leaves behind; records both pids.
const STUCK: &str = r#"
trap '' TERM
echo $$ > "$FAKE_DIR/pid"
sh -c 'trap "" TERM; echo $$ > "$FAKE_DIR/grandchild.tmp"; mv "$FAKE_DIR/grandchild.tmp" "$FAKE_DIR/grandchild"; exec sleep 300' &
while [ ! -f "$FAKE_DIR/grandchild" ]; do sleep 0.01; done
head -1 "$FIXTURES/claude-fizzbuzz.jsonl"
while :; do sleep 300; done
"#;

fn stuck_pids(fake: &Fake) -> (u32, u32) {
    (
        fake.record("pid").trim().parse().unwrap(),
        fake.record("grandchild").trim().parse().unwrap(),
    )
}

#[tokio::test]
async fn timeout_ends_the_whole_group_even_when_sigterm_is_ignored() {
    let fake = Fake::new(STUCK).await;
    let config = ClaudeConfig {
        timeout_sec: 1,
        ..ClaudeConfig::default()
    };
    // As `stn` does: the configured `timeout_sec` is the runner's default deadline.
    let opts = RunOptions {
        default_timeout: Duration::from_secs(config.timeout_sec),
        ..RunOptions::default()
    };
    let backend: Arc<dyn CodingBackend> = Arc::new(fake.backend(config));
    let started = Instant::now();
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        start_task(backend, fake.session(), Task::new("x"), &opts)
            .follow(|e| events.push(e.kind.clone())),
    )
    .await
    .expect("the task ends")
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.stop_reason, StopReason::Timeout);
    assert!(!outcome.success);
    let error = outcome.error.as_deref().unwrap();
    assert!(
        error.starts_with("task timed out after 1s")
            && error.contains("process group were stopped"),
        "{error}"
    );
    // Streaming: the session was announced before the end.
    assert!(
        matches!(events.get(1), Some(EventKind::BackendSession { .. })),
        "{events:?}"
    );
    assert_eq!(
        outcome.backend_session_id.as_deref(),
        Some("f228dd03-2fcf-4ac5-9b4a-f320d8eae3f7")
    );
    let (pid, grandchild) = stuck_pids(&fake);
    assert_eq!(
        group_gone(pid).await,
        Vec::<u32>::new(),
        "processes left in the group"
    );
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn cancel_through_the_runner_ends_the_whole_group() {
    let fake = Fake::new(STUCK).await;
    let backend: Arc<dyn CodingBackend> = Arc::new(fake.backend(ClaudeConfig::default()));
    let mut run = start_task(
        backend,
        fake.session(),
        Task::new("x"),
        &RunOptions::default(),
    );
    let announced = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = run.next_event().await {
            if matches!(event.kind, EventKind::BackendSession { .. }) {
                return true;
            }
        }
        false
    })
    .await
    .expect("the fake announced its session in time");
    assert!(announced);
    let (pid, grandchild) = stuck_pids(&fake);
    assert!(alive(grandchild));
    run.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), run.outcome())
        .await
        .expect("cancel returns promptly")
        .unwrap();
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);
    let error = outcome.error.as_deref().unwrap();
    assert!(
        error.starts_with("task cancelled") && error.contains("process group were stopped"),
        "{error}"
    );
    assert_eq!(
        group_gone(pid).await,
        Vec::<u32>::new(),
        "processes left in the group"
    );
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn a_grandchild_holding_stdout_does_not_hold_up_the_end() {
    let fake = Fake::new("echo $$ > \"$FAKE_DIR/pid\"\nsleep 300 &\ncat \"$FIXTURES/claude-fizzbuzz.jsonl\"\nexit 0\n").await;
    let started = Instant::now();
    let (outcome, _) = run(
        &fake,
        &fake.backend(ClaudeConfig {
            timeout_sec: 60,
            ..ClaudeConfig::default()
        }),
        Task::new("x"),
    )
    .await;
    let outcome = outcome.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.tool_calls.len(), 3);
    let pid: u32 = fake.record("pid").trim().parse().unwrap();
    assert_eq!(group_gone(pid).await, Vec::<u32>::new());
}

#[tokio::test]
async fn a_huge_line_goes_through() {
    let fake = Fake::new(
        r#"
s=e7e8667b-a21f-4a2b-b4ef-4e96df198d78
printf '{"type":"system","subtype":"init","session_id":"%s","model":"m","cwd":"/w"}\n' $s
printf '{"type":"assistant","message":{"id":"m1","model":"m","content":[{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"big"}}]},"session_id":"%s"}\n' $s
printf '{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"'
head -c 10485760 /dev/zero | tr '\0' 'a'
printf '"}]},"session_id":"%s"}\n' $s
printf '{"type":"result","subtype":"success","is_error":false,"result":"read a big file","session_id":"%s","total_cost_usd":0.1,"usage":{"input_tokens":5,"output_tokens":2}}\n' $s
"#,
    )
    .await;
    let (outcome, events) = run(
        &fake,
        &fake.backend(ClaudeConfig::default()),
        Task::new("x"),
    )
    .await;
    let outcome = outcome.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.summary, "read a big file");
    let output = outcome.tool_calls[0].output.as_deref().unwrap();
    assert!(
        output.starts_with("aaaa") && output.ends_with("more bytes cut]"),
        "{}",
        output.len()
    );
    assert!(output.len() < 64 * 1024);
    assert_eq!(notices(&events), 0, "{events:?}");
}

#[tokio::test]
async fn max_turns_with_exit_1_is_max_turns_not_a_crash() {
    let fake = Fake::new("cat \"$FIXTURES/captured-max-turns.jsonl\"\necho 'Error: Reached max turns (2)' >&2\nexit 1\n").await;
    let (outcome, _) = run(
        &fake,
        &fake.backend(ClaudeConfig::default()),
        Task::new("loop"),
    )
    .await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.stop_reason, StopReason::MaxTurns);
    assert!(!outcome.success);
    assert!(
        outcome.error.as_deref().unwrap().contains("turn limit"),
        "{outcome:?}"
    );
    assert_eq!(outcome.tool_calls.len(), 2);
    assert!(
        outcome
            .tool_calls
            .iter()
            .all(|c| c.error.as_deref() == Some("Exit code 3\nhi")),
        "{:?}",
        outcome.tool_calls
    );
}

#[tokio::test]
async fn continuing_passes_resume_and_a_lost_conversation_is_not_found() {
    let fake = Fake::new("printf '%s\\n' \"$@\" > \"$FAKE_DIR/argv\"\ncat \"$FIXTURES/captured-resume-not-found.jsonl\"\necho 'No conversation found with session ID: x' >&2\nexit 1\n").await;
    let backend = fake.backend(ClaudeConfig::default());
    let id = "cf60bb80-4f29-4d4a-91eb-6ad6ca51eb65";
    let mut session = fake.session();
    session.backend_session_id = Some(id.into());
    let (events, _rx) = EventSink::channel();
    let result = backend
        .execute(
            &session,
            &Task::new("more"),
            ExecContext::new(events, CancelSignal::new()),
        )
        .await;
    match result {
        Err(Error::NotFound { id: missing, .. }) => assert_eq!(missing, id),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(
        fake.record("argv")
            .lines()
            .any(|a| a == format!("--resume={id}")),
        "{}",
        fake.record("argv")
    );
    session.backend_session_id = Some("--help".into());
    let (events, _rx) = EventSink::channel();
    let result = backend
        .execute(
            &session,
            &Task::new("more"),
            ExecContext::new(events, CancelSignal::new()),
        )
        .await;
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
}

/// A transcript of session `id` created in `cwd`, in the fake's Claude config dir.
fn store_transcript(fake: &Fake, id: &str, cwd: &Path, prompt: &str) {
    let name: String = cwd
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = fake.claude_config_dir().join("projects").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let line = serde_json::json!({"type":"user","message":{"role":"user","content":[{"type":"text","text":prompt}]},"cwd":cwd,"sessionId":id});
    std::fs::write(
        dir.join(format!("{id}.jsonl")),
        format!("{{\"type\":\"queue-operation\"}}\n{line}\n"),
    )
    .unwrap();
}

#[tokio::test]
async fn open_creates_workspaces_and_checks_where_a_session_lives() {
    let fake = Fake::new("exit 0\n").await;
    let backend = fake.backend(ClaudeConfig::default());

    let fresh = backend
        .open(OpenRequest {
            title: Some("t".into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    let ws = fresh.workspace.clone().unwrap();
    assert!(ws.is_dir() && ws.ends_with(fresh.id.as_str()), "{ws:?}");
    assert_eq!(
        (
            fresh.backend.as_str(),
            fresh.backend_session_id.as_deref(),
            fresh.title.as_deref()
        ),
        ("claudecode", None, Some("t"))
    );

    let file = fake.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = backend
        .open(OpenRequest {
            workspace: Some(file),
            ..OpenRequest::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");

    let id = "0d4e93ca-6348-4594-aaed-66a1b1777afc";
    store_transcript(&fake, id, &fake.workspace, "create hello.py");
    let same = backend
        .open(OpenRequest {
            workspace: Some(fake.workspace.clone()),
            resume: Some(id.into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            same.workspace.as_deref(),
            same.backend_session_id.as_deref()
        ),
        (Some(fake.workspace.as_path()), Some(id))
    );
    let found = backend
        .open(OpenRequest {
            resume: Some(id.into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(found.workspace.as_deref(), Some(fake.workspace.as_path()));

    let elsewhere = fake.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let err = backend
        .open(OpenRequest {
            workspace: Some(elsewhere.clone()),
            resume: Some(id.into()),
            ..OpenRequest::default()
        })
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{message}");
    assert!(
        message.contains("only from the directory it was created in")
            && message.contains(&*fake.workspace.to_string_lossy())
            && message.contains("elsewhere"),
        "{message}"
    );

    for unknown in [
        "00000000-0000-4000-8000-000000000000",
        "ses_abc123",
        "--resume",
    ] {
        let err = backend
            .open(OpenRequest {
                resume: Some(unknown.into()),
                ..OpenRequest::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { id, .. } if id == unknown),
            "{unknown}: {err}"
        );
    }
}

#[tokio::test]
async fn list_sessions_reads_the_transcripts() {
    let fake = Fake::new("exit 0\n").await;
    let backend = fake.backend(ClaudeConfig::default());
    assert!(backend.capabilities().list_sessions);
    assert_eq!(backend.list_sessions().await.unwrap(), Vec::new());
    let older = "0d4e93ca-6348-4594-aaed-66a1b1777afc";
    let newer = "f228dd03-2fcf-4ac5-9b4a-f320d8eae3f7";
    let other = fake.dir.path().join("other.ws");
    store_transcript(&fake, older, &fake.workspace, "create hello.py");
    store_transcript(&fake, newer, &other, "write fizzbuzz");
    let old_file = std::fs::read_dir(fake.claude_config_dir().join("projects"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join(format!("{older}.jsonl")))
        .find(|p| p.is_file())
        .unwrap();
    let file = std::fs::File::options().write(true).open(old_file).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let listed = backend.list_sessions().await.unwrap();
    let summary: Vec<(&str, Option<&str>, Option<&Path>)> = listed
        .iter()
        .map(|s| (s.id.as_str(), s.title.as_deref(), s.workspace.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (newer, Some("write fizzbuzz"), Some(other.as_path())),
            (
                older,
                Some("create hello.py"),
                Some(fake.workspace.as_path())
            )
        ]
    );
}

#[tokio::test]
async fn health_reports_version_and_auth_source_without_values() {
    let fake = Fake::new(
        "if [ \"$1\" = --version ]; then echo '2.1.197 (Claude Code)'; exit 0; fi\nexit 3\n",
    )
    .await;
    let no_auth = [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX",
    ];
    let key = format!("sk-ant-api03-{}", "Hh3-".repeat(12));
    let with_key = fake
        .backend(ClaudeConfig::default())
        .with_env(vec![("ANTHROPIC_API_KEY".into(), key.clone())]);
    let health = with_key.health().await.unwrap();
    assert!(health.ok, "{health:?}");
    assert_eq!(health.version.as_deref(), Some("2.1.197"));
    assert!(
        health.detail.contains("ANTHROPIC_API_KEY is set") && !health.detail.contains(&key),
        "{}",
        health.detail
    );

    let without = fake
        .backend(ClaudeConfig::default())
        .with_env_remove(no_auth.iter().map(|k| k.to_string()).collect());
    let health = without.health().await.unwrap();
    if !cfg!(target_os = "macos") {
        assert!(!health.ok, "{health:?}");
        assert!(
            health.detail.contains("claude login") && health.detail.contains("ANTHROPIC_API_KEY"),
            "{}",
            health.detail
        );
    }
    std::fs::write(
        fake.claude_config_dir().join(".credentials.json"),
        "{\"claudeAiOauth\":{}}",
    )
    .unwrap();
    let health = without.health().await.unwrap();
    assert!(
        health.ok && health.detail.contains("credentials exist"),
        "{health:?}"
    );

    let missing = ClaudeBackend::new(ClaudeConfig {
        binary: fake
            .dir
            .path()
            .join("no-such-claude")
            .to_string_lossy()
            .into_owned(),
        ..ClaudeConfig::default()
    });
    let err = missing.health().await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. })
            && err
                .to_string()
                .contains("npm install -g @anthropic-ai/claude-code"),
        "{err}"
    );

    let broken = Fake::new("echo 'cannot start' >&2\nexit 2\n").await;
    let health = broken
        .backend(ClaudeConfig::default())
        .health()
        .await
        .unwrap();
    assert!(
        !health.ok && health.detail.contains("cannot start"),
        "{health:?}"
    );
}

#[tokio::test]
async fn a_cli_that_lingers_after_its_result_is_stopped_and_the_result_kept() {
    let fake = Fake::new("echo $$ > \"$FAKE_DIR/pid\"\ncat \"$FIXTURES/claude-fizzbuzz.jsonl\"\nwhile :; do sleep 300; done\n").await;
    let started = Instant::now();
    let (outcome, _) = run(
        &fake,
        &fake.backend(ClaudeConfig {
            timeout_sec: 120,
            ..ClaudeConfig::default()
        }),
        Task::new("x"),
    )
    .await;
    let outcome = outcome.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped long before the deadline: {:?}",
        started.elapsed()
    );
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(
        outcome.summary,
        "Implemented FizzBuzz in fizz_cc.py, ran it, and extended it to 30."
    );
    let pid: u32 = fake.record("pid").trim().parse().unwrap();
    assert_eq!(group_gone(pid).await, Vec::<u32>::new());
}

#[tokio::test]
async fn the_configured_timeout_is_not_a_second_deadline_under_the_runners() {
    // The runner's deadline is the only one; `timeout_sec` is only its default (set by `stn`).
    let fake = Fake::new("sleep 2\ncat \"$FIXTURES/claude-fizzbuzz.jsonl\"\n").await;
    let backend: Arc<dyn CodingBackend> = Arc::new(fake.backend(ClaudeConfig {
        timeout_sec: 1,
        ..ClaudeConfig::default()
    }));
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        start_task(
            backend,
            fake.session(),
            Task::new("x"),
            &RunOptions::default(),
        )
        .outcome(),
    )
    .await
    .expect("the task ends")
    .unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(
        outcome.summary,
        "Implemented FizzBuzz in fizz_cc.py, ran it, and extended it to 30."
    );
}
