//! The conformance suite: checks every [`CodingBackend`] runs against itself, with the real
//! coding agent behind it driven by a [`ScriptedModel`]. Not a stable API.
//!
//! Call [`run_all`] from a test of your backend crate:
//!
//! ```ignore
//! let model = ScriptedModel::start(Script::new()).await?;
//! let backend: Arc<dyn CodingBackend> = Arc::new(MyBackend::new(/* pointed at the model */));
//! conformance::run_all(&Target { backend, model: &model, workspace_root: tmp.path().into() }).await;
//! ```
//!
//! Each check sets the model's script itself. Capabilities decide which checks apply: a backend
//! without `resume` must refuse to continue a session (with `NotSupported` or `NotFound`), not
//! fake it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_core::service::OpenSpec;
use station_core::{
    CodingBackend, Error, Event, EventKind, FileAction, OpenRequest, Outcome, RunOptions, Session,
    SessionIndex, SessionService, StopReason, Task,
};

use crate::model_server::{Fault, Script, ScriptedModel, Step};

/// What the suite runs against.
#[derive(Debug)]
pub struct Target<'a> {
    /// The backend under test, already pointed at `model`.
    pub backend: Arc<dyn CodingBackend>,
    /// The scripted model behind the coding agent.
    pub model: &'a ScriptedModel,
    /// A directory in which the suite creates one workspace per check (must be visible to the
    /// coding agent at the same path).
    pub workspace_root: PathBuf,
}

/// The first task of the suite.
pub const HELLO_INSTRUCTION: &str = "Create hello.py printing Hello World";
/// What the scripted model writes for it.
pub const HELLO_CONTENT: &str = "print('Hello World')\n";

/// Deadline of one ordinary task (real agents start in seconds; the model answers at once).
const TASK_DEADLINE: Duration = Duration::from_secs(180);
/// How long a cancel may take to produce its outcome.
const CANCEL_DEADLINE: Duration = Duration::from_secs(30);

/// Run every check that applies to the backend's capabilities. Panics with a message naming the
/// check on the first failure.
pub async fn run_all(target: &Target<'_>) {
    let index_dir = tempfile::tempdir().expect("temp dir for the session index");
    let service = service(target, index_dir.path());
    let caps = target.backend.capabilities();
    let first = create_hello(target, &service).await;
    if caps.resume {
        continue_by_id_and_title(target, &service, &first).await;
    } else {
        resume_is_refused(target).await;
    }
    if caps.cancel {
        cancel_is_prompt(target, &service).await;
    }
    close_is_idempotent(target, &first).await;
    unknown_session_is_not_found(target, &service).await;
    failing_model_is_a_clear_error(target, &service).await;
    target.model.set_fault(None);
}

fn service(target: &Target<'_>, index_dir: &Path) -> SessionService {
    let index = SessionIndex::open(index_dir).expect("session index");
    SessionService::new(
        target.backend.clone(),
        index,
        RunOptions {
            default_timeout: TASK_DEADLINE,
            ..RunOptions::default()
        },
    )
}

/// A fresh, empty workspace for one check.
pub fn workspace(target: &Target<'_>, name: &str) -> PathBuf {
    let dir = target.workspace_root.join(format!("ws-{name}"));
    std::fs::create_dir_all(&dir).expect("create workspace");
    dir
}

/// Run a task to its end, collecting every event; panics if it does not end in time.
pub async fn run_task(
    service: &SessionService,
    session: &Session,
    task: Task,
    check: &str,
) -> (Vec<Event>, station_core::Result<Outcome>) {
    let mut run = service.execute(session, task);
    let collect = async {
        let mut events = Vec::new();
        while let Some(e) = run.next_event().await {
            events.push(e);
        }
        events
    };
    let events = tokio::time::timeout(TASK_DEADLINE + Duration::from_secs(30), collect)
        .await
        .unwrap_or_else(|_| {
            panic!("[{check}] the task's event stream did not end within {TASK_DEADLINE:?}")
        });
    (events, run.outcome().await)
}

/// Run `instruction` on `session` through the bare runner (`start_task`, no session index)
/// with `options`; its outcome and every event. Panics if the task does not end within the
/// options' default timeout plus 30 s, or cannot run.
pub async fn start_to_end(
    backend: &Arc<dyn CodingBackend>,
    session: &Session,
    instruction: &str,
    options: &RunOptions,
) -> (Outcome, Vec<Event>) {
    let run = station_core::start_task(
        backend.clone(),
        session.clone(),
        Task::new(instruction),
        options,
    );
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        options.default_timeout + Duration::from_secs(30),
        run.follow(|e| events.push(e.clone())),
    )
    .await
    .expect("the task ends in time")
    .expect("the task runs");
    (outcome, events)
}

/// Events start with `Started`, carry seq 1..n, and end with exactly one terminal event.
pub fn assert_event_contract(events: &[Event], check: &str) {
    assert!(
        matches!(
            events.first().map(|e| &e.kind),
            Some(EventKind::Started { .. })
        ),
        "[{check}] first event is Started: {events:#?}"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "[{check}] events arrive in sequence order without gaps"
        );
    }
    assert_eq!(
        events.iter().filter(|e| e.kind.is_terminal()).count(),
        1,
        "[{check}] exactly one terminal event: {events:#?}"
    );
    assert!(
        events.last().is_some_and(|e| e.kind.is_terminal()),
        "[{check}] the terminal event is the last one"
    );
}

fn hello_script() -> Script {
    Script::new()
        .on(
            "hello.py",
            vec![
                Step::write("hello.py", HELLO_CONTENT).with_text_before("I'll create hello.py."),
                Step::text("Created hello.py; it prints Hello World."),
            ],
        )
        .on(
            "what did you just create",
            vec![Step::text("Earlier I created hello.py.")],
        )
        .on(
            "slow task",
            vec![Step::slow_text(
                SLOW_TEXT.repeat(4),
                Duration::from_millis(250),
            )],
        )
}

/// What the agents call their file-writing tool (OpenCode/Claude `write`, Gemini `write_file`).
const WRITE_TOOLS: &[&str] = &["write", "write_file"];

const SLOW_TEXT: &str =
    "This answer streams very slowly so that the task can be cancelled while it is still running. ";

/// open → execute "create hello.py" → the file exists, events obey the contract, the outcome
/// lists hello.py as created with one line.
pub async fn create_hello(target: &Target<'_>, service: &SessionService) -> Session {
    const CHECK: &str = "create hello.py";
    target.model.set_fault(None);
    target.model.set_script(hello_script());
    let ws = workspace(target, "hello");
    let session = service
        .open(OpenSpec {
            workspace: Some(ws.clone()),
            title: None,
            ..OpenSpec::default()
        })
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] open failed: {e}"));
    assert_eq!(
        session.backend,
        target.backend.name(),
        "[{CHECK}] the session names its backend"
    );
    let (events, outcome) = run_task(service, &session, Task::new(HELLO_INSTRUCTION), CHECK).await;
    assert_event_contract(&events, CHECK);
    let outcome = outcome.unwrap_or_else(|e| panic!("[{CHECK}] the task could not run: {e}"));
    assert!(outcome.success, "[{CHECK}] the task succeeds: {outcome:#?}");
    assert_eq!(outcome.stop_reason, StopReason::Completed, "[{CHECK}]");
    let written = std::fs::read_to_string(ws.join("hello.py")).unwrap_or_else(|e| {
        panic!(
            "[{CHECK}] hello.py is in the workspace {}: {e}",
            ws.display()
        )
    });
    assert_eq!(
        written, HELLO_CONTENT,
        "[{CHECK}] hello.py has the scripted content"
    );
    let change = outcome
        .files_changed
        .iter()
        .find(|f| f.path.ends_with("hello.py"))
        .unwrap_or_else(|| {
            panic!(
                "[{CHECK}] files_changed lists hello.py: {:#?}",
                outcome.files_changed
            )
        });
    assert_eq!(
        (change.action, change.lines_added),
        (FileAction::Created, 1),
        "[{CHECK}] hello.py is created with 1 line"
    );
    assert!(
        outcome.summary.contains("Created hello.py"),
        "[{CHECK}] the summary is the final answer: {:?}",
        outcome.summary
    );
    assert!(
        outcome
            .tool_calls
            .iter()
            .any(|t| WRITE_TOOLS.iter().any(|w| t.name.eq_ignore_ascii_case(w))),
        "[{CHECK}] the write tool call is recorded: {:#?}",
        outcome.tool_calls
    );
    if target.backend.capabilities().streaming {
        assert!(
            events.iter().any(|e| matches!(
                e.kind,
                EventKind::ToolStarted { .. } | EventKind::ToolFinished { .. }
            )),
            "[{CHECK}] tool events stream live: {events:#?}"
        );
    }
    if target.backend.capabilities().usage {
        assert!(
            outcome.usage.input_tokens > 0 && outcome.usage.output_tokens > 0,
            "[{CHECK}] token usage is reported: {:?}",
            outcome.usage
        );
    }
    let stored = service
        .get(session.id.as_str())
        .unwrap_or_else(|e| panic!("[{CHECK}] the session is in the index: {e}"));
    assert!(
        stored.backend_session_id.is_some(),
        "[{CHECK}] the backend's session id is recorded: {stored:#?}"
    );
    assert_eq!(
        stored.title.as_deref(),
        Some(HELLO_INSTRUCTION),
        "[{CHECK}] the title defaults to the first instruction"
    );
    stored
}

/// Continue the first session by station id, by backend id and by part of its title; the
/// second task's model request carries the first task's conversation.
pub async fn continue_by_id_and_title(
    target: &Target<'_>,
    service: &SessionService,
    first: &Session,
) {
    const CHECK: &str = "continue a session";
    let backend_id = first
        .backend_session_id
        .clone()
        .expect("recorded by create_hello");
    for query in [
        first.id.to_string(),
        backend_id.clone(),
        "printing hello".to_string(),
    ] {
        let again = service
            .open(OpenSpec {
                session: Some(query.clone()),
                ..OpenSpec::default()
            })
            .await
            .unwrap_or_else(|e| panic!("[{CHECK}] continuing by {query:?} failed: {e}"));
        assert_eq!(
            again.id, first.id,
            "[{CHECK}] {query:?} finds the same station session"
        );
        assert_eq!(
            again.backend_session_id.as_deref(),
            Some(backend_id.as_str()),
            "[{CHECK}] {query:?} keeps the backend session"
        );
    }
    let session = service.get(first.id.as_str()).expect("stored");
    let before = target.model.requests().len();
    let (events, outcome) = run_task(
        service,
        &session,
        Task::new("What did you just create?"),
        CHECK,
    )
    .await;
    assert_event_contract(&events, CHECK);
    let outcome =
        outcome.unwrap_or_else(|e| panic!("[{CHECK}] the second task could not run: {e}"));
    assert!(
        outcome.success,
        "[{CHECK}] the second task succeeds: {outcome:#?}"
    );
    let requests = target.model.requests();
    let second = requests[before..]
        .iter()
        .rev()
        .find(|r| {
            r.prompt
                .as_deref()
                .is_some_and(|p| p.to_lowercase().contains("what did you just create"))
        })
        .unwrap_or_else(|| panic!("[{CHECK}] the model saw the second task"));
    let conversation = second.conversation_text();
    assert!(
        conversation.contains("hello.py") && conversation.to_lowercase().contains("hello world"),
        "[{CHECK}] the second task sees the first one's context: {conversation}"
    );
    let after = service.get(first.id.as_str()).expect("stored");
    assert_eq!(
        after.backend_session_id.as_deref(),
        Some(backend_id.as_str()),
        "[{CHECK}] continuing does not fork a new backend session"
    );
    assert!(
        after.last_used_at >= first.last_used_at,
        "[{CHECK}] last use is recorded"
    );
}

/// A backend without `resume` says so.
pub async fn resume_is_refused(target: &Target<'_>) {
    const CHECK: &str = "resume not supported";
    let ws = workspace(target, "no-resume");
    let result = target
        .backend
        .open(OpenRequest {
            workspace: Some(ws),
            resume: Some("ses_not_supported".into()),
            ..OpenRequest::default()
        })
        .await;
    assert!(
        matches!(
            result,
            Err(Error::NotSupported { .. } | Error::NotFound { .. })
        ),
        "[{CHECK}] resume is refused, not faked: {result:?}"
    );
}

/// Cancelling an in-flight task ends it promptly with a `cancelled` outcome.
pub async fn cancel_is_prompt(target: &Target<'_>, service: &SessionService) {
    const CHECK: &str = "cancel";
    target.model.set_script(hello_script());
    let ws = workspace(target, "cancel");
    let session = service
        .open(OpenSpec {
            workspace: Some(ws),
            ..OpenSpec::default()
        })
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] open failed: {e}"));
    let before = target.model.requests().len();
    let mut run = service.execute(&session, Task::new("Run the slow task"));
    // Wait until the model is streaming the slow answer, then cancel.
    let deadline = Instant::now() + TASK_DEADLINE;
    loop {
        let started = target.model.requests()[before..]
            .iter()
            .any(|r| r.prompt.as_deref().is_some_and(|p| p.contains("slow task")) && !r.side_call);
        if started {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[{CHECK}] the model never received the slow task"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled_at = Instant::now();
    run.cancel();
    let collect = async {
        let mut events = Vec::new();
        while let Some(e) = run.next_event().await {
            events.push(e);
        }
        events
    };
    let events = tokio::time::timeout(CANCEL_DEADLINE, collect)
        .await
        .unwrap_or_else(|_| {
            panic!("[{CHECK}] the task did not end within {CANCEL_DEADLINE:?} of cancel")
        });
    assert_event_contract(&events, CHECK);
    let outcome = run
        .outcome()
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] cancel gives an outcome, not an error: {e}"));
    assert_eq!(
        (outcome.success, outcome.stop_reason),
        (false, StopReason::Cancelled),
        "[{CHECK}] {outcome:#?}"
    );
    assert!(
        cancelled_at.elapsed() < CANCEL_DEADLINE,
        "[{CHECK}] cancel is prompt"
    );
}

/// Closing twice is fine.
pub async fn close_is_idempotent(target: &Target<'_>, session: &Session) {
    const CHECK: &str = "close";
    target
        .backend
        .close(session)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] first close failed: {e}"));
    target
        .backend
        .close(session)
        .await
        .unwrap_or_else(|e| panic!("[{CHECK}] second close failed: {e}"));
}

/// Continuing a session that exists nowhere is `NotFound`.
pub async fn unknown_session_is_not_found(target: &Target<'_>, service: &SessionService) {
    const CHECK: &str = "unknown session";
    let result = service
        .open(OpenSpec {
            session: Some("no-such-session-anywhere-7f3a".into()),
            ..OpenSpec::default()
        })
        .await;
    assert!(
        matches!(
            result,
            Err(Error::NotFound { .. }) | Err(Error::NotSupported { .. })
        ),
        "[{CHECK}] an unknown title is NotFound: {result:?}"
    );
    if target.backend.capabilities().resume {
        let ws = workspace(target, "unknown");
        let bogus = "ses_00000000000000000000000000";
        let result = target
            .backend
            .open(OpenRequest {
                workspace: Some(ws.clone()),
                resume: Some(bogus.into()),
                ..OpenRequest::default()
            })
            .await;
        match result {
            Err(Error::NotFound { .. }) => {}
            // Backends whose sessions can only be checked by running (Claude) must fail the
            // first task clearly instead.
            Ok(session) => {
                let (events, outcome) =
                    run_task(service, &session, Task::new("hello?"), CHECK).await;
                assert_event_contract(&events, CHECK);
                match outcome {
                    Err(Error::NotFound { .. }) => {}
                    Ok(o) => assert!(
                        !o.success && o.error.as_deref().is_some_and(|e| !e.is_empty()),
                        "[{CHECK}] a bogus backend id fails clearly: {o:#?}"
                    ),
                    Err(e) => panic!(
                        "[{CHECK}] a bogus backend id should be NotFound or a failed outcome, got {e}"
                    ),
                }
            }
            Err(e) => panic!("[{CHECK}] a bogus backend id should be NotFound, got {e}"),
        }
    }
}

/// A model that answers with errors gives a clear failure, not a hang.
pub async fn failing_model_is_a_clear_error(target: &Target<'_>, service: &SessionService) {
    const CHECK: &str = "failing model";
    target.model.set_script(hello_script());
    target.model.set_fault(Some(Fault::Status(400)));
    let ws = workspace(target, "failing");
    let started = Instant::now();
    let session = match service
        .open(OpenSpec {
            workspace: Some(ws),
            ..OpenSpec::default()
        })
        .await
    {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "[{CHECK}] a clear error");
            target.model.set_fault(None);
            return;
        }
    };
    let mut task = Task::new(HELLO_INSTRUCTION);
    task.timeout_secs = Some(TASK_DEADLINE.as_secs());
    let (events, outcome) = run_task(service, &session, task, CHECK).await;
    target.model.set_fault(None);
    assert_event_contract(&events, CHECK);
    match outcome {
        Ok(o) => {
            assert!(
                !o.success,
                "[{CHECK}] a failing model is not a success: {o:#?}"
            );
            assert_ne!(
                o.stop_reason,
                StopReason::Timeout,
                "[{CHECK}] it fails by itself, not by the deadline: {o:#?}"
            );
            assert!(
                o.error.as_deref().is_some_and(|e| !e.trim().is_empty()),
                "[{CHECK}] the outcome says what went wrong: {o:#?}"
            );
        }
        Err(e) => assert!(!e.to_string().trim().is_empty(), "[{CHECK}] a clear error"),
    }
    assert!(started.elapsed() < TASK_DEADLINE, "[{CHECK}] no hang");
}
