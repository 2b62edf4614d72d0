//! Building blocks every backend pays for, measured alone so that the added time of the
//! end-to-end benchmarks can be explained: the task runner (`start_task`), and a workspace
//! snapshot of an empty directory on the blocking pool.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use station_core::workspace::Tracker;
use station_core::{
    Capabilities, CodingBackend, ExecContext, Health, OpenRequest, Outcome, RunOptions, Session,
    StopReason, Task, start_task,
};

use crate::report::BenchResult;
use crate::stats::{Case, compare};

/// A backend whose tasks succeed at once, with one progress event. Its sessions get an id
/// (`instant_N`) and can be continued by it.
#[derive(Debug, Default)]
pub(crate) struct InstantBackend {
    next_id: AtomicU64,
}

#[async_trait::async_trait]
impl CodingBackend for InstantBackend {
    fn name(&self) -> &str {
        "instant"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "instant".into(),
        })
    }
    async fn open(&self, req: OpenRequest) -> station_core::Result<Session> {
        let mut s = Session::new("instant");
        s.backend_session_id = Some(req.resume.unwrap_or_else(|| {
            format!("instant_{}", self.next_id.fetch_add(1, Ordering::Relaxed))
        }));
        s.workspace = req.workspace;
        Ok(s)
    }
    async fn execute(
        &self,
        session: &Session,
        task: &Task,
        ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        ctx.events.emit(station_core::EventKind::Text {
            text: task.instruction.clone(),
        });
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.summary = "done".into();
        outcome.backend_session_id = session.backend_session_id.clone();
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

struct DirectExecute {
    backend: Arc<dyn CodingBackend>,
    session: Session,
}

impl Case for DirectExecute {
    async fn run(&mut self) -> anyhow::Result<()> {
        let (sink, mut rx) = station_core::EventSink::channel();
        let ctx = ExecContext::new(sink, station_core::CancelSignal::new());
        let outcome = self
            .backend
            .execute(&self.session, &Task::new("hello"), ctx)
            .await?;
        anyhow::ensure!(outcome.success);
        while let Ok(ev) = rx.try_recv() {
            std::hint::black_box(ev);
        }
        Ok(())
    }
}

struct ThroughRunner {
    backend: Arc<dyn CodingBackend>,
    session: Session,
    opts: RunOptions,
}

impl Case for ThroughRunner {
    async fn run(&mut self) -> anyhow::Result<()> {
        let outcome = start_task(
            self.backend.clone(),
            self.session.clone(),
            Task::new("hello"),
            &self.opts,
        )
        .follow(|ev| {
            std::hint::black_box(ev);
        })
        .await?;
        anyhow::ensure!(outcome.success);
        Ok(())
    }
}

/// The baseline: a round trip to tokio's blocking pool doing nothing.
struct BlockingRoundTrip;

impl Case for BlockingRoundTrip {
    async fn run(&mut self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(|| std::hint::black_box(0)).await?;
        Ok(())
    }
}

/// Change tracking of one task on an empty directory: before and after trees, diff, patch.
struct TrackEmpty(PathBuf);

impl Case for TrackEmpty {
    async fn run(&mut self) -> anyhow::Result<()> {
        let tracker = Tracker::start(&self.0).await;
        std::hint::black_box(tracker.finish_with_patch().await);
        Ok(())
    }
}

pub(crate) async fn run(warmup: usize, iterations: usize) -> anyhow::Result<Vec<BenchResult>> {
    let group = "Building blocks";
    let backend: Arc<dyn CodingBackend> = Arc::new(InstantBackend::default());
    let session = backend.open(OpenRequest::default()).await?;
    let mut direct = DirectExecute {
        backend: backend.clone(),
        session: session.clone(),
    };
    let mut runner = ThroughRunner {
        backend,
        session,
        opts: RunOptions::default(),
    };
    let paired = compare(warmup, iterations, &mut direct, &mut runner).await?;
    let runner_row = BenchResult::timed(
        "blocks.runner",
        group,
        "`start_task` + `follow` on an instant backend",
        &paired,
        "the same backend's `execute` awaited directly, events drained",
    )
    .note(
        "What the runner adds to every task: a spawned task, the event channel, Started and \
         Finished events, the deadline timer, the outcome hook.",
    );
    let ws = tempfile::tempdir()?;
    let mut baseline = BlockingRoundTrip;
    let mut tracked = TrackEmpty(ws.path().to_path_buf());
    let paired = compare(warmup, iterations, &mut baseline, &mut tracked).await?;
    let snapshot_row = BenchResult::timed(
        "blocks.snapshot_empty",
        group,
        "change tracking of one task on an empty directory (`Tracker::start` + `finish_with_patch`)",
        &paired,
        "an empty round trip to tokio's blocking pool",
    )
    .note(
        "The runner records every local workspace before and after each task as git trees in a \
         private object store; this is the fixed cost (a throwaway store is created, locked \
         and removed, two trees written, diffed and printed as a patch).",
    );
    Ok(vec![runner_row, snapshot_row])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_rows_are_measured() {
        let rows = run(1, 3).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.suite.unwrap().n == 3));
    }
}
