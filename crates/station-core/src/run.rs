//! The task runner: ordering, deadline and cancel semantics shared by every backend.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{CodingBackend, ExecContext};
use crate::budget::{self, Tally, TaskBudget};
use crate::claim::SessionLocks;
use crate::error::{Error, Result};
use crate::event::{Event, EventKind, EventSink};
use crate::model::{Outcome, Session, StopReason, Task};
use crate::policy::{NobodyToAsk, PermissionHandler};
use crate::pricing::PriceTable;
use crate::workspace::{Checkpoints, Tracker};

/// A cancellation that remembers why it fired (cancel or timeout).
#[derive(Debug, Clone, Default)]
pub struct CancelSignal {
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl CancelSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }
    /// Fire as a caller cancel.
    pub fn cancel(&self) {
        self.cancel_with(StopReason::Cancelled);
    }
    /// Fire with a reason; the first reason wins.
    pub fn cancel_with(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }
    /// Whether it fired.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
    /// Why it fired.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }
    /// Resolves when it fires.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
    /// The underlying token, for APIs that take one.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// Hook called with the session and the outcome when a task finishes (used to update the index).
pub type OutcomeHook = Arc<dyn Fn(&Session, &Task, &Outcome) + Send + Sync>;

/// How tasks are run.
#[derive(Clone)]
pub struct RunOptions {
    /// Deadline of a task that sets none.
    pub default_timeout: Duration,
    /// How long a backend may take to stop after cancel or timeout before it is dropped.
    pub grace: Duration,
    /// Called once with the final outcome.
    pub on_outcome: Option<OutcomeHook>,
    /// What the task may spend; passing a cap stops it with `budget_exceeded`.
    pub budget: TaskBudget,
    /// Prices that estimate the cost of an outcome whose backend reported none.
    pub pricing: PriceTable,
    /// Answers the policy's `ask` decisions; nobody (deny at once) by default.
    pub permissions: Arc<dyn PermissionHandler>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("default_timeout", &self.default_timeout)
            .field("grace", &self.grace)
            .field("on_outcome", &self.on_outcome.is_some())
            .field("budget", &self.budget)
            .field("permissions", &self.permissions)
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            default_timeout: Duration::from_secs(600),
            grace: Duration::from_secs(10),
            on_outcome: None,
            budget: TaskBudget::default(),
            pricing: PriceTable::default(),
            permissions: Arc::new(NobodyToAsk),
        }
    }
}

/// A running task: its live events, its outcome, and its cancel switch. Dropping it cancels the
/// task.
#[derive(Debug)]
pub struct TaskRun {
    events: mpsc::UnboundedReceiver<Event>,
    handle: Option<JoinHandle<Result<Outcome>>>,
    cancel: CancelSignal,
}

impl TaskRun {
    /// The next event; `None` after the terminal event.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
    /// Stop the task; its outcome will say `cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
    /// A handle that can cancel the task from elsewhere.
    pub fn cancel_signal(&self) -> CancelSignal {
        self.cancel.clone()
    }
    /// Wait for the outcome (events not yet read stay unread).
    pub async fn outcome(mut self) -> Result<Outcome> {
        let handle = self.handle.take().expect("outcome is taken once");
        match handle.await {
            Ok(r) => r,
            Err(e) => Err(Error::backend(
                "runner",
                format!("task runner panicked: {e}"),
            )),
        }
    }
    /// Read every event (passing each to `on_event`), then return the outcome.
    pub async fn follow(mut self, mut on_event: impl FnMut(&Event)) -> Result<Outcome> {
        while let Some(ev) = self.events.recv().await {
            on_event(&ev);
        }
        self.outcome().await
    }
}

impl Drop for TaskRun {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.cancel.cancel();
        }
    }
}

/// Start `task` in `session` on `backend`. See [`CodingBackend`] for the contract this enforces:
/// `Started` first, exactly one terminal event last, the deadline, and cancel with a grace
/// period after which the backend's future is dropped.
pub fn start_task(
    backend: Arc<dyn CodingBackend>,
    session: Session,
    task: Task,
    opts: &RunOptions,
) -> TaskRun {
    start_claimed_task(backend, session, task, opts, None, None, None)
}

/// [`start_task`], first claiming the session in `locks` (see [`crate::claim`]; the deadline
/// starts once the claim is held), and tracked by `tracker` until it has fully stopped. With
/// `checkpoints`, a local workspace's changes are recorded there (else in a throwaway store).
pub(crate) fn start_claimed_task(
    backend: Arc<dyn CodingBackend>,
    session: Session,
    task: Task,
    opts: &RunOptions,
    locks: Option<SessionLocks>,
    tracker: Option<&TaskTracker>,
    checkpoints: Option<Checkpoints>,
) -> TaskRun {
    let (sink, rx) = EventSink::channel();
    let cancel = CancelSignal::new();
    let opts = opts.clone();
    let runner_cancel = cancel.clone();
    // Created here, so it is a child of the caller's span (a worker's, an agent step's).
    let span = crate::telemetry::task_span(backend.name(), &session);
    sink.trace_tools(span.clone());
    let task_span = span.clone();
    let run = async move {
        let places = Places { locks, checkpoints };
        let result = run_to_end(backend, session, task, opts, places, sink, runner_cancel).await;
        crate::telemetry::record_result(&task_span, &result);
        result
    };
    let run = tracing::Instrument::instrument(run, span);
    let handle = match tracker {
        Some(tracker) => tracker.spawn(run),
        None => tokio::spawn(run),
    };
    TaskRun {
        events: rx,
        handle: Some(handle),
        cancel,
    }
}

/// Where a task's claim and change records live.
struct Places {
    locks: Option<SessionLocks>,
    checkpoints: Option<Checkpoints>,
}

/// Start tracking the changes of a backend whose workspace is on this machine.
async fn track(backend: &dyn CodingBackend, session: &Session, places: &Places) -> Tracker {
    let dir = match &session.workspace {
        Some(dir) if backend.capabilities().local_workspace => dir,
        _ => return Tracker::none(),
    };
    match &places.checkpoints {
        Some(checkpoints) => Tracker::start_checkpoint(checkpoints, &session.id, dir).await,
        None => Tracker::start(dir).await,
    }
}

/// A backend whose workspace is elsewhere sends the task's patch back in its outcome: with
/// `checkpoints`, it is recorded as the task's checkpoint so `stn session diff` shows it.
async fn record_remote_patch(
    backend: &dyn CodingBackend,
    session: &Session,
    places: &Places,
    started: Instant,
    mut outcome: Outcome,
) -> Outcome {
    let (Some(checkpoints), Some(patch)) = (&places.checkpoints, outcome.patch.take()) else {
        return outcome;
    };
    if backend.capabilities().local_workspace {
        outcome.patch = Some(patch);
        return outcome;
    }
    let started_at =
        chrono::Utc::now() - chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let (checkpoints, id, workspace, files) = (
        checkpoints.clone(),
        session.id.clone(),
        session.workspace.clone(),
        outcome.files_changed.clone(),
    );
    let sent = patch.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        checkpoints.record_remote(&id, workspace.as_deref(), sent, &files, started_at)
    })
    .await;
    outcome.patch = Some(match recorded {
        Ok(Ok(stored)) => stored,
        Ok(Err(e)) => {
            tracing::warn!(session = %session.id, "cannot record the remote task's patch as a checkpoint: {e}");
            patch
        }
        Err(e) => {
            tracing::warn!("recording the remote task's patch failed: {e}");
            patch
        }
    });
    outcome
}

async fn run_to_end(
    backend: Arc<dyn CodingBackend>,
    session: Session,
    task: Task,
    opts: RunOptions,
    places: Places,
    sink: EventSink,
    cancel: CancelSignal,
) -> Result<Outcome> {
    let locks = &places.locks;
    sink.emit(EventKind::Started {
        session_id: session.id.clone(),
        backend: backend.name().to_string(),
    });
    let _claim = match &locks {
        Some(locks) => match locks.claim(&session.id, &cancel).await {
            Ok(claim) => Some(claim),
            Err(e) => {
                let result = match e {
                    Error::Cancelled => {
                        Ok(Outcome::failed(StopReason::Cancelled, "task cancelled"))
                    }
                    e => Err(e),
                };
                return finish(&session, &task, &opts, &sink, result);
            }
        },
        None => None,
    };
    if let Some(why) = opts.budget.used_up() {
        let outcome = Outcome::failed(
            StopReason::BudgetExceeded,
            format!("budget exceeded: {why}"),
        );
        return finish(&session, &task, &opts, &sink, Ok(outcome));
    }
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    sink.set_observer(budget::observer(
        tally.clone(),
        opts.budget.clone(),
        cancel.clone(),
    ));
    let started = Instant::now();
    let deadline = task.timeout().unwrap_or(opts.default_timeout);
    let ctx = ExecContext {
        events: sink.clone(),
        cancel: cancel.clone(),
        permissions: opts.permissions.clone(),
    };
    let policy_gaps = backend.policy_gaps_for(&task);
    for gap in &policy_gaps {
        sink.emit(EventKind::Notice {
            message: format!("policy not enforced: {gap}"),
        });
    }
    let tracker = track(backend.as_ref(), &session, &places).await;
    let result = {
        let fut = backend.execute(&session, &task, ctx);
        tokio::pin!(fut);
        let stopped = tokio::select! {
            r = &mut fut => Some(r),
            _ = tokio::time::sleep(deadline) => { cancel.cancel_with(StopReason::Timeout); None }
            _ = cancel.cancelled() => None,
        };
        match stopped {
            Some(r) => r,
            None => match tokio::time::timeout(opts.grace, &mut fut).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        backend = backend.name(),
                        "backend did not stop within the grace period; dropping it"
                    );
                    Err(Error::Cancelled)
                }
            },
        }
    };
    let reason = cancel.reason();
    let result = match (result, reason) {
        (Ok(outcome), _) => Ok(outcome),
        (Err(_), Some(StopReason::Timeout)) | (Err(Error::Timeout { .. }), None) => {
            Ok(Outcome::failed(
                StopReason::Timeout,
                format!("task timed out after {}s", deadline.as_secs()),
            ))
        }
        (Err(_), Some(reason)) => Ok(Outcome::failed(reason, "task cancelled")),
        (Err(Error::Cancelled), None) => {
            Ok(Outcome::failed(StopReason::Cancelled, "task cancelled"))
        }
        (Err(e), None) => Err(e),
    };
    let changes = tracker.finish_with_patch().await;
    let result = match result {
        Ok(outcome) => {
            Ok(record_remote_patch(backend.as_ref(), &session, &places, started, outcome).await)
        }
        Err(e) => Err(e),
    };
    let result = result.map(|mut outcome| {
        if let Some(changes) = changes {
            outcome.files_changed = changes.files;
            outcome.patch = Some(changes.patch);
        }
        // A task stopped by the deadline or the caller says so, whatever the backend wrote.
        if let Some(reason) = reason.filter(|_| !outcome.success) {
            let why = match reason {
                StopReason::Timeout => format!("task timed out after {}s", deadline.as_secs()),
                _ => "task cancelled".to_string(),
            };
            outcome.error = Some(match outcome.error.take() {
                Some(detail) if !detail.is_empty() && detail != why => format!("{why} ({detail})"),
                _ => why,
            });
            outcome.stop_reason = reason;
        }
        if outcome.duration_ms == 0 {
            outcome.duration_ms = started.elapsed().as_millis() as u64;
        }
        tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .complete(&mut outcome);
        opts.pricing.apply(&mut outcome);
        // The backend's own gaps first, then those only the task found (a remote executor's).
        let found = std::mem::replace(&mut outcome.policy_gaps, policy_gaps);
        for gap in found {
            if !outcome.policy_gaps.contains(&gap) {
                outcome.policy_gaps.push(gap);
            }
        }
        outcome
    });
    finish(&session, &task, &opts, &sink, result)
}

/// Report the end: the outcome hook, then exactly one terminal event.
fn finish(
    session: &Session,
    task: &Task,
    opts: &RunOptions,
    sink: &EventSink,
    result: Result<Outcome>,
) -> Result<Outcome> {
    match &result {
        Ok(outcome) => {
            if let Some(hook) = &opts.on_outcome {
                hook(session, task, outcome);
            }
            sink.emit_terminal(EventKind::Finished {
                outcome: Box::new(outcome.clone()),
            });
        }
        Err(e) => {
            sink.emit_terminal(EventKind::Failed {
                kind: e.kind(),
                message: e.to_string(),
            });
        }
    }
    sink.close();
    result
}
