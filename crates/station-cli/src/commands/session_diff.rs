//! `stn session diff` and `stn session rewind`: a session's recorded changes and the way back.

use std::process::ExitCode;

use serde_json::json;
use station_core::SessionIndex;
use station_core::workspace::Checkpoints;

use crate::cli::{SessionDiffArgs, SessionRewindArgs};
use crate::output;

/// The patch of one task (`--task N`) or of the whole session, and the files it changes.
pub(crate) fn diff(args: &SessionDiffArgs) -> anyhow::Result<ExitCode> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let session = index.resolve(&args.session)?;
    let checkpoints = Checkpoints::new(index.dir());
    let mut patch = Vec::new();
    let records = checkpoints.write_patch(&session.id, args.task, &mut patch)?;
    let files = checkpoints.files_changed(&session.id, args.task)?;
    let patch = String::from_utf8_lossy(&patch);
    // A remote workspace's patch is what the worker sent back, cut at its size cap.
    let cut: Vec<u32> = records
        .iter()
        .filter(|r| r.patch_truncated)
        .map(|r| r.task)
        .collect();
    if args.json {
        let stored: Vec<_> = records.iter().map(|r| &r.patch).collect();
        output::json(&json!({
            "session": session.id,
            "workspace": session.workspace,
            "tasks": records.iter().map(|r| r.task).collect::<Vec<_>>(),
            "files_changed": files,
            "patch": patch,
            "patch_files": stored,
            "remote": records.iter().any(|r| r.remote),
            "truncated_tasks": cut,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let tasks = match (records.first(), records.last()) {
        (Some(a), Some(b)) if a.task != b.task => format!("tasks {}-{}", a.task, b.task),
        (Some(a), _) => format!("task {}", a.task),
        _ => "no tasks".to_string(),
    };
    output::progress(&format!(
        "session {} · {tasks} · {} file(s) changed",
        session.id,
        files.len()
    ));
    if !cut.is_empty() {
        output::progress(&format!(
            "the remote workspace sent only the start of the patch of task(s) {:?} (size cap); the whole change is in that workspace (`git diff` there)",
            cut
        ));
    }
    if !patch.is_empty() {
        output::line(patch.trim_end_matches('\n'));
    }
    Ok(ExitCode::SUCCESS)
}

/// Restore the workspace to the state before task `--to-task N` (default: the last task).
pub(crate) async fn rewind(
    args: &SessionRewindArgs,
    busy_wait: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let index = SessionIndex::open(SessionIndex::default_dir()?)?;
    let session = index.resolve(&args.session)?;
    let rewound =
        station_core::service::rewind(&index, &session, args.to_task, args.force, busy_wait)
            .await?;
    if args.json {
        output::json(&rewound);
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&format!(
        "restored {} to its state before task {} ({} file(s) written or removed)",
        rewound.workspace.display(),
        rewound.to_task,
        rewound.files.len()
    ));
    for f in &rewound.files {
        output::progress(&format!("  {f}"));
    }
    Ok(ExitCode::SUCCESS)
}
