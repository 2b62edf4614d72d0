use std::sync::Arc;
use std::time::Duration;

use station_core::{
    Capabilities, CodingBackend, Error, EventKind, ExecContext, Health, OpenRequest, Outcome,
    RunOptions, Session, SessionIndex, SessionService, StopReason, Task, start_task,
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
    assert!(err.to_string().contains("--backend claudecode"), "{err}");
    // Closing is idempotent, also for unknown ids.
    service.close(&session.id).await.unwrap();
    service.close(&session.id).await.unwrap();
    service.close(&"stn_unknown".into()).await.unwrap();
}
