//! Running a claimed task on the executor and turning its outcome into a plugin-shaped result.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use station_core::{
    CancelSignal, EventKind, Outcome, RunOptions, Session, StopReason, Task, model::TaskPatch,
    start_task,
};

use super::session::{StoredSession, put_session};
use super::shared::Shared;
use super::stream::TaskStream;
use crate::wire::{
    self, Metrics, ResultMessage, ResultSession, ResultWorkspace, SessionState, StreamEvent,
    TaskMessage,
};

impl Shared {
    /// Everything from the workspace to the executor's outcome, as a plugin-shaped result.
    pub(super) async fn run_task(
        &self,
        task: &TaskMessage,
        stored_session: StoredSession,
        stream: &TaskStream,
        signal: CancelSignal,
        session_put: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> ResultMessage {
        let fail = |msg: String| {
            let mut r = ResultMessage::failure(
                &task.task_id,
                &task.session.name,
                &task.workspace.name,
                &msg,
            );
            r.worker = Some(self.id.clone());
            r
        };
        if !wire::is_valid_key(&task.session.name) {
            return fail(format!(
                "invalid session name `{}`: it must be a NATS KV key (letters, digits, `-_=/.`)",
                task.session.name
            ));
        }
        // Workspace.
        let (dir, git) = match self.prepare_workspace(task, stream).await {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        // Session.
        let (session, mut state, first_put) = match self
            .resolve_session(task, stored_session, &dir, stream)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                let mut r = fail(e);
                r.workspace.path = dir.display().to_string();
                return r;
            }
        };
        stream
            .publish(StreamEvent {
                kind: "prompt_sent".into(),
                content: Some(station_core::redact::redact(&task.prompt)),
                ..stream.blank()
            })
            .await;
        // Run.
        let mut core_task = task
            .task
            .clone()
            .unwrap_or_else(|| Task::new(task.prompt.clone()));
        core_task.timeout_secs = None;
        // The client's policy, not the worker's own, decides what the executor may do.
        if let Some(policy) = &task.policy {
            core_task.policy = Some(policy.clone());
        }
        let deadline = task
            .timeout
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(self.options.task_timeout);
        let run_options = RunOptions {
            default_timeout: deadline,
            grace: self.options.cancel_grace,
            ..RunOptions::default()
        };
        let mut run = start_task(
            self.executor.clone(),
            session.clone(),
            core_task,
            &run_options,
        );
        let run_signal = run.cancel_signal();
        let mut forwarded = false;
        loop {
            tokio::select! {
                ev = run.next_event() => match ev {
                    Some(ev) => {
                        if matches!(ev.kind, EventKind::Started { .. } | EventKind::Finished { .. }) {
                            continue;
                        }
                        stream.publish_core(&ev.kind).await;
                    }
                    None => break,
                },
                _ = signal.cancelled(), if !forwarded => {
                    forwarded = true;
                    run_signal.cancel_with(signal.reason().unwrap_or(StopReason::Cancelled));
                }
            }
        }
        let outcome = run.outcome().await;
        let shutting_down = self.shutting_down.load(Ordering::SeqCst);
        let mut result = match outcome {
            Ok(outcome) => {
                self.result_from_outcome(task, &dir, &session, &state, outcome, shutting_down)
            }
            Err(e) => {
                let mut r = fail(e.to_string());
                r.error_type = serde_json::to_value(e.kind())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
                r
            }
        };
        result.workspace.path = dir.display().to_string();
        if let Some(g) = git {
            result.workspace.git = Some(wire::WorkspaceGit {
                branch: g.branch.unwrap_or_default(),
                commit: g.commit.unwrap_or_default(),
                dirty: false,
            });
        }
        // Remember the executor's session so the next task (on any worker) continues it.
        if !result.session.opencode_id.is_empty() {
            state.opencode_id = result.session.opencode_id.clone();
        }
        state.message_count += 1;
        state.last_used = wire::now_iso();
        result.session.message_count = state.message_count;
        result.session.opencode_id = state.opencode_id.clone();
        let (sessions, worker) = (self.sessions.clone(), self.id.clone());
        *session_put = Some(tokio::spawn(async move {
            // In order: the state stored before the run must not overwrite this one.
            let _ = first_put.await;
            put_session(sessions, worker, state).await;
        }));
        result
    }

    pub(super) fn result_from_outcome(
        &self,
        task: &TaskMessage,
        dir: &Path,
        session: &Session,
        state: &SessionState,
        mut outcome: Outcome,
        shutting_down: bool,
    ) -> ResultMessage {
        if shutting_down && !outcome.success {
            outcome.stop_reason = StopReason::Error;
            outcome.error = Some(format!(
                "worker `{}` shut down before the task finished (cancelled after the {}s grace period)",
                self.id,
                self.options.shutdown_grace.as_secs()
            ));
        }
        let opencode_id = outcome
            .backend_session_id
            .clone()
            .or_else(|| session.backend_session_id.clone())
            .unwrap_or_else(|| state.opencode_id.clone());
        ResultMessage {
            task_id: task.task_id.clone(),
            status: ResultMessage::status_of(&outcome).into(),
            result: Some(outcome.summary.clone()),
            error: outcome.error.clone().filter(|_| !outcome.success),
            error_type: (!outcome.success).then(|| "Error".to_string()),
            session: ResultSession {
                name: task.session.name.clone(),
                opencode_id,
                message_count: state.message_count,
            },
            workspace: ResultWorkspace {
                name: task.workspace.name.clone(),
                path: dir.display().to_string(),
                git: None,
            },
            metrics: Metrics {
                duration: outcome.duration_ms,
                prompt_tokens: Some(outcome.usage.input_tokens),
                completion_tokens: Some(outcome.usage.output_tokens),
                tool_calls: outcome.tool_calls.len() as u64,
                stream_events: 0,
            },
            worker: Some(self.id.clone()),
            stop_reason: Some(outcome.stop_reason),
            files_changed: Some(outcome.files_changed),
            usage: Some(outcome.usage),
            cost: outcome.cost_usd,
            tool_calls: Some(outcome.tool_calls),
            model: outcome.model,
            // Where the patch is stored means nothing on the client's machine.
            patch: outcome.patch.map(|p| TaskPatch { path: None, ..p }),
            permissions: Some(outcome.permissions).filter(|p| !p.is_empty()),
            policy_gaps: Some(outcome.policy_gaps).filter(|g| !g.is_empty()),
        }
    }
}
