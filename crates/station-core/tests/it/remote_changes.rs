//! A backend whose workspace is on another machine sends each task's patch back in its
//! outcome; through a `SessionService` it becomes the task's checkpoint, so the session's diff
//! shows it like a local one, and a rewind refuses with what to do instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use station_core::model::TaskPatch;
use station_core::workspace::Checkpoints;
use station_core::{
    Capabilities, CodingBackend, ExecContext, FileAction, FileChange, Health, OpenRequest, Outcome,
    RunOptions, Session, SessionIndex, SessionService, StopReason, Task,
};

/// Stands in for a NATS worker: the files changed and the patch come back in the outcome.
#[derive(Debug, Default)]
struct RemoteBackend {
    tasks: AtomicU32,
}

fn patch_of(task: u32) -> String {
    format!(
        "diff --git a/notes.md b/notes.md\n--- a/notes.md\n+++ b/notes.md\n@@ -{task} +{task},2 @@\n line {task}\n+added by task {task}\n"
    )
}

#[async_trait::async_trait]
impl CodingBackend for RemoteBackend {
    fn name(&self) -> &str {
        "remote"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            remote_workspace: true,
            ..Capabilities::NONE
        }
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "remote".into(),
        })
    }
    async fn open(&self, req: OpenRequest) -> station_core::Result<Session> {
        let mut s = Session::new("remote");
        s.workspace = req.workspace;
        s.backend_session_id = Some("remote_1".into());
        Ok(s)
    }
    async fn execute(
        &self,
        _session: &Session,
        _task: &Task,
        _ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        let n = self.tasks.fetch_add(1, Ordering::Relaxed) + 1;
        let text = patch_of(n);
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.files_changed = vec![FileChange {
            path: "notes.md".into(),
            action: FileAction::Modified,
            lines_added: 1,
            ..FileChange::default()
        }];
        outcome.patch = Some(TaskPatch {
            bytes: text.len() as u64 + 100,
            truncated: n == 2,
            text,
            path: None,
            task: None,
        });
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_remote_tasks_patch_is_recorded_as_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let index = SessionIndex::open(dir.path()).unwrap();
    let service = SessionService::new(
        Arc::new(RemoteBackend::default()),
        index,
        RunOptions::default(),
    );
    let session = service.open(Default::default()).await.unwrap();
    for n in 1..=2u32 {
        let outcome = service
            .execute(&session, Task::new("add a line"))
            .outcome()
            .await
            .unwrap();
        let patch = outcome.patch.unwrap();
        assert_eq!(patch.task, Some(n), "the local task number");
        let stored = patch.path.expect("where the patch is stored here");
        assert_eq!(std::fs::read_to_string(stored).unwrap(), patch_of(n));
    }

    let checkpoints = Checkpoints::new(dir.path());
    let mut one = Vec::new();
    let records = checkpoints
        .write_patch(&session.id, Some(1), &mut one)
        .unwrap();
    assert_eq!(String::from_utf8(one).unwrap(), patch_of(1));
    assert!(records[0].remote && !records[0].patch_truncated);
    let mut all = Vec::new();
    let records = checkpoints
        .write_patch(&session.id, None, &mut all)
        .unwrap();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        format!("{}{}", patch_of(1), patch_of(2))
    );
    assert!(records[1].patch_truncated, "the sender cut task 2's patch");
    let files = checkpoints.files_changed(&session.id, None).unwrap();
    assert_eq!(
        (files.len(), files[0].lines_added),
        (1, 2),
        "one file, both tasks' lines: {files:?}"
    );

    let err = service
        .rewind(&session, Some(1), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("on another machine") && err.contains("git apply -R"),
        "{err}"
    );
}
