//! A policy's gaps (rules the agent cannot enforce) reach the caller: the backend's own as
//! notices while the task runs and in the outcome, plus those only its task found (a remote
//! executor's, reported in its result), each once.

use std::sync::Arc;
use std::time::Duration;

use station_core::{
    Capabilities, CodingBackend, EventKind, ExecContext, Health, OpenRequest, Outcome, RunOptions,
    Session, StopReason, Task, start_task,
};

/// Knows `known` up front; its task reports `found`.
#[derive(Debug)]
struct Gappy {
    known: Vec<&'static str>,
    found: Vec<&'static str>,
}

#[async_trait::async_trait]
impl CodingBackend for Gappy {
    fn name(&self) -> &str {
        "gappy"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    fn policy_gaps(&self) -> Vec<String> {
        self.known.iter().map(|g| g.to_string()).collect()
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
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.policy_gaps = self.found.iter().map(|g| g.to_string()).collect();
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

const GAP: &str = "edit.deny patterns: the agent's sandbox knows only the workspace";

#[tokio::test]
async fn a_backends_policy_gaps_are_notices_and_in_the_outcome() {
    let backend = Gappy {
        known: vec![GAP],
        found: vec![],
    };
    let mut run = start_task(
        Arc::new(backend),
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

#[tokio::test]
async fn gaps_found_by_the_task_are_kept_after_the_backends_own() {
    let backend = Gappy {
        known: vec!["edit.deny \"a\": known"],
        found: vec![
            "bash.deny \"b\": found by the executor",
            "edit.deny \"a\": known",
        ],
    };
    let run = start_task(
        Arc::new(backend),
        Session::new("gappy"),
        Task::new("x"),
        &RunOptions::default(),
    );
    let outcome = run.outcome().await.unwrap();
    assert_eq!(
        outcome.policy_gaps,
        [
            "edit.deny \"a\": known",
            "bash.deny \"b\": found by the executor"
        ]
    );
}
