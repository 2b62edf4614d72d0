//! The outcome lists a policy's gaps: the backend's own and those only its task found (a
//! remote executor's, reported in its result), each once.

use std::sync::Arc;

use station_core::{
    Capabilities, CodingBackend, ExecContext, Health, OpenRequest, Outcome, RunOptions, Session,
    StopReason, Task, start_task,
};

/// Knows one gap up front; its task finds that one again and another.
#[derive(Debug)]
struct RemoteExecutorGaps;

#[async_trait::async_trait]
impl CodingBackend for RemoteExecutorGaps {
    fn name(&self) -> &str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    fn policy_gaps(&self) -> Vec<String> {
        vec!["edit.deny \"a\": known".into()]
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "fake".into(),
        })
    }
    async fn open(&self, _req: OpenRequest) -> station_core::Result<Session> {
        Ok(Session::new("fake"))
    }
    async fn execute(
        &self,
        _session: &Session,
        _task: &Task,
        _ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.policy_gaps = vec![
            "bash.deny \"b\": found by the executor".into(),
            "edit.deny \"a\": known".into(),
        ];
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn gaps_found_by_the_task_are_kept_after_the_backends_own() {
    let run = start_task(
        Arc::new(RemoteExecutorGaps),
        Session::new("fake"),
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
