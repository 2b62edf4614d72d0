use std::sync::Arc;
use std::time::Duration;

use station_core::budget::{Cap, TaskBudget};
use station_core::policy::{Action, BudgetConfig, PermissionRecord, Verdict};
use station_core::{
    Capabilities, CodingBackend, Error, EventKind, ExecContext, Health, OpenRequest, Outcome,
    RunOptions, Session, SessionIndex, SessionService, StopReason, Task, Usage, start_task,
};

/// A backend whose behaviour each test picks.
#[derive(Debug)]
enum Behaviour {
    /// Emit a few events and succeed.
    Succeed,
    /// Ignore cancel until dropped (a misbehaving backend).
    Hang,
    /// Wait for cancel, then return cleanly.
    StopOnCancel,
    /// Fail to run.
    Fail,
    /// Try to send a terminal event itself.
    SendTerminal,
    /// One permission decision, then this many model steps of 1,000 tokens each, stopping
    /// early on cancel.
    Spend(u32),
    /// Succeed with tokens of this model but no cost (as Codex and Gemini report).
    TokensOnly(&'static str),
}

#[derive(Debug)]
struct FakeBackend(Behaviour);

#[async_trait::async_trait]
impl CodingBackend for FakeBackend {
    fn name(&self) -> &str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            cancel: true,
            ..Capabilities::NONE
        }
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "fake".into(),
        })
    }
    async fn open(&self, req: OpenRequest) -> station_core::Result<Session> {
        let mut s = Session::new("fake");
        s.workspace = req.workspace;
        s.title = req.title;
        s.backend_session_id = req.resume;
        Ok(s)
    }
    async fn execute(
        &self,
        _session: &Session,
        task: &Task,
        ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        match self.0 {
            Behaviour::Succeed => {
                ctx.events.emit(EventKind::BackendSession {
                    backend_session_id: "fake_1".into(),
                });
                for word in task.instruction.split_whitespace() {
                    ctx.events.emit(EventKind::TextDelta {
                        text: format!("{word} "),
                    });
                }
                let mut o = Outcome::new(true, StopReason::Completed);
                o.summary = "done".into();
                o.backend_session_id = Some("fake_1".into());
                Ok(o)
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                unreachable!("the runner drops a hanging backend")
            }
            Behaviour::StopOnCancel => {
                ctx.cancel.cancelled().await;
                Ok(Outcome::failed(
                    ctx.cancel.reason().unwrap_or(StopReason::Cancelled),
                    "stopped",
                ))
            }
            Behaviour::Fail => Err(Error::Unavailable {
                backend: "fake".into(),
                message: "not running".into(),
            }),
            Behaviour::Spend(steps) => {
                ctx.events.emit(EventKind::Permission {
                    record: PermissionRecord {
                        tool: "bash".into(),
                        action: Action::Bash {
                            command: "rm -rf data".into(),
                        },
                        verdict: Verdict::Deny,
                        rule: "bash.deny \"rm -rf *\"".into(),
                    },
                });
                for _ in 0..steps {
                    if ctx.cancel.is_cancelled() {
                        return Ok(Outcome::failed(
                            ctx.cancel.reason().unwrap_or(StopReason::Cancelled),
                            "stopped",
                        ));
                    }
                    ctx.events.emit(EventKind::StepFinished {
                        usage: Usage {
                            input_tokens: 1000,
                            ..Usage::default()
                        },
                        cost_usd: None,
                    });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(Outcome::new(true, StopReason::Completed))
            }
            Behaviour::TokensOnly(model) => {
                let mut o = Outcome::new(true, StopReason::Completed);
                o.model = Some(model.into());
                o.usage.input_tokens = 1_000_000;
                o.usage.output_tokens = 100_000;
                Ok(o)
            }
            Behaviour::SendTerminal => {
                ctx.events.emit(EventKind::Finished {
                    outcome: Box::new(Outcome::new(true, StopReason::Completed)),
                });
                Ok(Outcome::new(true, StopReason::Completed))
            }
        }
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

fn backend(b: Behaviour) -> Arc<dyn CodingBackend> {
    Arc::new(FakeBackend(b))
}

async fn collect(
    mut run: station_core::TaskRun,
) -> (Vec<station_core::Event>, station_core::Result<Outcome>) {
    let mut events = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(30), run.next_event())
        .await
        .expect("events never stall")
    {
        events.push(e);
    }
    (events, run.outcome().await)
}

fn assert_well_formed(events: &[station_core::Event]) {
    assert!(
        matches!(
            events.first().map(|e| &e.kind),
            Some(EventKind::Started { .. })
        ),
        "Started comes first: {events:?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "sequence numbers are 1..n without gaps");
    let terminals = events.iter().filter(|e| e.kind.is_terminal()).count();
    assert_eq!(terminals, 1, "exactly one terminal event");
    assert!(
        events.last().unwrap().kind.is_terminal(),
        "the terminal event is last"
    );
}

#[tokio::test]
async fn success_is_started_progress_finished() {
    let run = start_task(
        backend(Behaviour::Succeed),
        Session::new("fake"),
        Task::new("one two three"),
        &RunOptions::default(),
    );
    let (events, outcome) = collect(run).await;
    assert_well_formed(&events);
    let outcome = outcome.unwrap();
    assert!(outcome.success);
    assert_eq!(events.len(), 1 + 1 + 3 + 1);
    match &events.last().unwrap().kind {
        EventKind::Finished { outcome: o } => assert_eq!(**o, outcome),
        other => panic!("unexpected terminal {other:?}"),
    }
}

#[tokio::test]
async fn an_error_is_one_failed_event_and_err() {
    let run = start_task(
        backend(Behaviour::Fail),
        Session::new("fake"),
        Task::new("x"),
        &RunOptions::default(),
    );
    let (events, outcome) = collect(run).await;
    assert_well_formed(&events);
    assert!(matches!(outcome, Err(Error::Unavailable { .. })));
    assert!(
        matches!(&events.last().unwrap().kind, EventKind::Failed { message, .. } if message.contains("not running"))
    );
}

#[tokio::test]
async fn cancel_gives_a_cancelled_outcome() {
    let run = start_task(
        backend(Behaviour::StopOnCancel),
        Session::new("fake"),
        Task::new("x"),
        &RunOptions::default(),
    );
    run.cancel();
    let (events, outcome) = collect(run).await;
    assert_well_formed(&events);
    let outcome = outcome.unwrap();
    assert_eq!(
        (outcome.success, outcome.stop_reason),
        (false, StopReason::Cancelled)
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_gives_a_timeout_outcome() {
    let mut task = Task::new("x");
    task.timeout_secs = Some(5);
    let run = start_task(
        backend(Behaviour::StopOnCancel),
        Session::new("fake"),
        task,
        &RunOptions::default(),
    );
    let (events, outcome) = collect(run).await;
    assert_well_formed(&events);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.stop_reason, StopReason::Timeout);
    assert!(outcome.error.unwrap().contains("5s"));
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_ignores_cancel_is_dropped_after_the_grace_period() {
    let opts = RunOptions {
        grace: Duration::from_secs(2),
        ..RunOptions::default()
    };
    let run = start_task(
        backend(Behaviour::Hang),
        Session::new("fake"),
        Task::new("x"),
        &opts,
    );
    run.cancel();
    let (events, outcome) = collect(run).await;
    assert_well_formed(&events);
    assert_eq!(outcome.unwrap().stop_reason, StopReason::Cancelled);
}

#[tokio::test]
async fn backends_cannot_send_terminal_events() {
    let run = start_task(
        backend(Behaviour::SendTerminal),
        Session::new("fake"),
        Task::new("x"),
        &RunOptions::default(),
    );
    let (events, _) = collect(run).await;
    assert_well_formed(&events);
}

#[tokio::test]
async fn dropping_the_run_cancels_the_task() {
    let run = start_task(
        backend(Behaviour::StopOnCancel),
        Session::new("fake"),
        Task::new("x"),
        &RunOptions::default(),
    );
    let signal = run.cancel_signal();
    drop(run);
    assert_eq!(signal.reason(), Some(StopReason::Cancelled));
}

#[tokio::test]
async fn the_service_records_title_and_backend_id_and_continues_by_title() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path()).unwrap();
    let service = SessionService::new(
        backend(Behaviour::Succeed),
        index.clone(),
        RunOptions::default(),
    );
    let session = service.open(Default::default()).await.unwrap();
    assert_eq!(session.title, None);
    let outcome = service
        .execute(
            &session,
            Task::new("Create a new feature branch for user-auth\nmore"),
        )
        .outcome()
        .await
        .unwrap();
    assert!(outcome.success);
    let stored = index.resolve(session.id.as_str()).unwrap();
    assert_eq!(
        stored.title.as_deref(),
        Some("Create a new feature branch for user-auth")
    );
    assert_eq!(stored.backend_session_id.as_deref(), Some("fake_1"));
    let again = service
        .open(station_core::service::OpenSpec {
            session: Some("user-auth".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.id, session.id);
    assert_eq!(again.backend_session_id.as_deref(), Some("fake_1"));
    // A session of another backend is refused with the fix.
    let mut other = Session::new("claudecode");
    other.title = Some("claude work".into());
    index.upsert(&other).unwrap();
    let err = service
        .open(station_core::service::OpenSpec {
            session: Some("claude work".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("continue it on the `claudecode` backend"),
        "{err}"
    );
    // Closing is idempotent, also for unknown ids.
    service.close(&session.id).await.unwrap();
    service.close(&session.id).await.unwrap();
    service.close(&"stn_unknown".into()).await.unwrap();
}

#[tokio::test]
async fn tasks_on_one_session_run_one_at_a_time_and_a_busy_session_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path()).unwrap();
    // Two services over one data dir stand for two `stn` processes.
    let first = SessionService::new(
        backend(Behaviour::StopOnCancel),
        index.clone(),
        RunOptions::default(),
    );
    let second = SessionService::new(
        backend(Behaviour::Succeed),
        index.clone(),
        RunOptions::default(),
    )
    .with_busy_wait(Duration::from_millis(300));
    let session = first.open(Default::default()).await.unwrap();
    let mut running = first.execute(&session, Task::new("long task"));
    // Started is sent before the claim; the backend runs once the claim is held.
    assert!(matches!(
        running.next_event().await.unwrap().kind,
        EventKind::Started { .. }
    ));
    let busy = second.execute(&session, Task::new("second task"));
    let err = busy.outcome().await.unwrap_err();
    assert_eq!(err.kind(), station_core::ErrorKind::SessionBusy);
    let message = err.to_string();
    assert!(
        message.contains(session.id.as_str()) && message.contains("busy"),
        "{message}"
    );
    // Once the first task ends, the session is free again.
    running.cancel();
    running.outcome().await.unwrap();
    let outcome = second
        .execute(&session, Task::new("third task"))
        .outcome()
        .await
        .unwrap();
    assert!(outcome.success);
}

#[tokio::test]
async fn a_waiting_task_runs_when_the_session_frees_up() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path()).unwrap();
    let slow = SessionService::new(
        backend(Behaviour::StopOnCancel),
        index.clone(),
        RunOptions::default(),
    );
    let patient = SessionService::new(backend(Behaviour::Succeed), index, RunOptions::default())
        .with_busy_wait(Duration::from_secs(60));
    let session = slow.open(Default::default()).await.unwrap();
    let running = slow.execute(&session, Task::new("long task"));
    let mut waiting = patient.execute(&session, Task::new("next task"));
    assert!(matches!(
        waiting.next_event().await.unwrap().kind,
        EventKind::Started { .. }
    ));
    running.cancel();
    assert!(waiting.outcome().await.unwrap().success);
}

#[tokio::test]
async fn the_session_is_recorded_before_its_task_ends_and_titles_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path()).unwrap();
    let service = SessionService::new(
        backend(Behaviour::StopOnCancel),
        index.clone(),
        RunOptions::default(),
    );
    let session = service.open(Default::default()).await.unwrap();
    let token = format!("ghp_{}", "k3J9".repeat(9));
    let mut run = service.execute(&session, Task::new(format!("use {token} to push")));
    run.next_event().await.unwrap();
    // An interrupted run can be continued: the session is in the index, titled, already.
    let stored = index.resolve(session.id.as_str()).unwrap();
    let title = stored.title.unwrap();
    assert!(
        title.starts_with("use ") && !title.contains("k3J9"),
        "{title}"
    );
    run.cancel();
    run.outcome().await.unwrap();
    // A title given by the user is redacted too.
    let titled = service
        .open(station_core::service::OpenSpec {
            title: Some(format!("deploy with {token}")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!titled.title.unwrap().contains("k3J9"));
}

#[tokio::test]
async fn wait_stopped_waits_for_cancelled_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path()).unwrap();
    let service = SessionService::new(
        backend(Behaviour::StopOnCancel),
        index,
        RunOptions::default(),
    );
    let session = service.open(Default::default()).await.unwrap();
    let run = service.execute(&session, Task::new("work"));
    assert!(!service.wait_stopped(Duration::from_millis(100)).await);
    drop(run);
    assert!(service.wait_stopped(Duration::from_secs(30)).await);
}

#[test]
fn huge_task_deadlines_are_bounded() {
    let task = Task {
        timeout_secs: Some(u64::MAX),
        ..Task::new("x")
    };
    assert_eq!(task.timeout(), Some(station_core::config::MAX_DEADLINE));
}

#[tokio::test]
async fn a_task_that_passes_its_token_cap_stops_with_budget_exceeded_and_keeps_its_audit_trail() {
    let opts = RunOptions {
        budget: TaskBudget {
            max_tokens: Some(Cap {
                limit: 3500,
                setting: "coding.budget.max_tokens".into(),
            }),
            max_cost_usd: None,
        },
        ..RunOptions::default()
    };
    let run = start_task(
        backend(Behaviour::Spend(1000)),
        Session::new("fake"),
        Task::new("spend"),
        &opts,
    );
    let (events, outcome) = collect(run).await;
    assert_well_formed(&events);
    let outcome = outcome.unwrap();
    assert_eq!(
        outcome.stop_reason,
        StopReason::BudgetExceeded,
        "{outcome:?}"
    );
    assert!(!outcome.success);
    let error = outcome.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("4000 tokens") && error.contains("coding.budget.max_tokens"),
        "{error}"
    );
    assert_eq!(
        outcome.usage.input_tokens, 4000,
        "stopped at the first step over the cap"
    );
    assert_eq!(outcome.permissions.len(), 1, "{:?}", outcome.permissions);
    assert_eq!(outcome.permissions[0].verdict, Verdict::Deny);
}

#[tokio::test]
async fn a_session_budget_spans_tasks_and_refuses_a_task_once_used_up() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path()).unwrap();
    let service = |steps| {
        SessionService::new(
            backend(Behaviour::Spend(steps)),
            index.clone(),
            RunOptions::default(),
        )
        .with_budget(BudgetConfig {
            session_max_tokens: Some(2500),
            ..BudgetConfig::default()
        })
    };
    let session = service(2).open(Default::default()).await.unwrap();
    let first = service(2)
        .execute(&session, Task::new("two steps"))
        .outcome()
        .await
        .unwrap();
    assert!(first.success, "{first:?}");
    let second = service(5)
        .execute(&session, Task::new("five steps"))
        .outcome()
        .await
        .unwrap();
    assert_eq!(second.stop_reason, StopReason::BudgetExceeded, "{second:?}");
    assert_eq!(
        second.usage.input_tokens, 1000,
        "500 were left: the first step passes them"
    );
    let stored = index.resolve(session.id.as_str()).unwrap();
    assert_eq!(stored.usage_total.input_tokens, 3000);
    let third = service(1)
        .execute(&session, Task::new("one step"))
        .outcome()
        .await
        .unwrap();
    assert_eq!(third.stop_reason, StopReason::BudgetExceeded);
    assert_eq!(third.usage.total(), 0, "the task never started");
    assert!(third.error.unwrap().contains("session_max_tokens"));
}

#[tokio::test]
async fn a_session_in_a_worktree_keeps_it_when_continued_and_says_when_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path().join("data")).unwrap();
    let service = SessionService::new(
        backend(Behaviour::Succeed),
        index.clone(),
        RunOptions::default(),
    );
    let id = station_core::SessionId::generate();
    let worktree = station_core::SessionWorktree {
        repository: dir.path().join("repo"),
        path: dir.path().join("base/repo-wt"),
        branch: station_core::SessionWorktree::branch_for(&id),
    };
    std::fs::create_dir_all(&worktree.path).unwrap();
    let session = service
        .open_in_worktree(
            station_core::service::OpenSpec {
                title: Some("isolated work".into()),
                workspace: Some(dir.path().join("ignored")),
                ..Default::default()
            },
            id.clone(),
            worktree.clone(),
        )
        .await
        .unwrap();
    assert_eq!(session.id, id);
    assert_eq!(worktree.branch, format!("stn/{id}"));
    assert_eq!(session.workspace.as_ref(), Some(&worktree.path));
    assert_eq!(
        index.resolve(id.as_str()).unwrap().worktree.as_ref(),
        Some(&worktree)
    );
    let outcome = service.execute(&session, Task::new("work")).outcome().await;
    assert!(outcome.unwrap().success);

    let again = service
        .open(station_core::service::OpenSpec {
            session: Some("isolated work".into()),
            workspace: Some(dir.path().join("elsewhere")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (&again.id, again.workspace.as_ref()),
        (&id, Some(&worktree.path))
    );
    assert_eq!(again.worktree.as_ref(), Some(&worktree));
    assert_eq!(
        index.resolve(id.as_str()).unwrap().worktree,
        Some(worktree.clone())
    );

    std::fs::remove_dir(&worktree.path).unwrap();
    let err = service
        .open(station_core::service::OpenSpec {
            session: Some(id.to_string()),
            ..Default::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no longer exists")
            && err.contains(worktree.path.to_str().unwrap())
            && err.contains(&worktree.branch),
        "{err}"
    );
}

async fn outcome_of(model: &'static str, opts: &RunOptions) -> Outcome {
    let run = start_task(
        backend(Behaviour::TokensOnly(model)),
        Session::new("fake"),
        Task::new("x"),
        opts,
    );
    let (events, outcome) = collect(run).await;
    let outcome = outcome.unwrap();
    match &events.last().unwrap().kind {
        EventKind::Finished { outcome: o } => assert_eq!(**o, outcome, "the event says the same"),
        other => panic!("unexpected terminal {other:?}"),
    }
    outcome
}

#[tokio::test]
async fn the_runner_estimates_a_missing_cost_from_the_price_table() {
    let builtin = outcome_of("gpt-5", &RunOptions::default()).await;
    // 1M input at $1.25 + 100k output at $10 per million.
    assert_eq!(builtin.cost_usd, Some(2.25));
    assert!(builtin.cost_estimated);

    let config = station_core::config::Config::parse(
        "coding:\n  pricing:\n    gpt-5: {input: 2, output: 20}\n",
        None,
    )
    .unwrap();
    let opts = RunOptions {
        pricing: config.coding.price_table(),
        ..RunOptions::default()
    };
    let overridden = outcome_of("gpt-5", &opts).await;
    assert_eq!(overridden.cost_usd, Some(4.0));
    assert!(overridden.cost_estimated);

    let unknown = outcome_of("fake-model", &RunOptions::default()).await;
    assert_eq!((unknown.cost_usd, unknown.cost_estimated), (None, false));
}
