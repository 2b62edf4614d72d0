//! A backend's policy gaps (rules its agent cannot enforce) reach the caller: as notices while
//! the task runs, and in the outcome.

use std::sync::Arc;
use std::time::Duration;

use station_core::{
    Capabilities, CodingBackend, EventKind, ExecContext, Health, OpenRequest, Outcome, RunOptions,
    Session, StopReason, Task, start_task,
};

const GAP: &str = "edit.deny patterns: the agent's sandbox knows only the workspace";

#[derive(Debug)]
struct GappyBackend;

#[async_trait::async_trait]
impl CodingBackend for GappyBackend {
    fn name(&self) -> &str {
        "gappy"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    fn policy_gaps(&self) -> Vec<String> {
        vec![GAP.to_string()]
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "gappy".into(),
        })
    }
    async fn open(&self, _req: OpenRequest) -> station_core::Result<Session> {
        Ok(Session::new("gappy"))
    }
    async fn execute(
        &self,
        _session: &Session,
        _task: &Task,
        _ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        Ok(Outcome::new(true, StopReason::Completed))
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_backends_policy_gaps_are_notices_and_in_the_outcome() {
    let mut run = start_task(
        Arc::new(GappyBackend),
        Session::new("gappy"),
        Task::new("anything"),
        &RunOptions::default(),
    );
    let mut notices = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(30), run.next_event())
        .await
        .expect("events never stall")
    {
        if let EventKind::Notice { message } = e.kind {
            notices.push(message);
        }
    }
    let outcome = run.outcome().await.unwrap();
    assert_eq!(outcome.policy_gaps, [GAP]);
    assert_eq!(notices, [format!("policy not enforced: {GAP}")]);
}
