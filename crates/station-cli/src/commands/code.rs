//! `stn code`: one coding task on a backend, no orchestrating model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use station_core::config::{Isolation, LoadedConfig};
use station_core::service::OpenSpec;
use station_core::{Event, EventKind, Outcome, RepoSpec, Session, Task};

use crate::cli::CodeArgs;
use crate::{ask, backends, output, signals};

pub(crate) async fn run(loaded: &LoadedConfig, args: CodeArgs) -> anyhow::Result<ExitCode> {
    // Read the instruction first: a bad one is a usage error before any backend starts.
    let instruction = crate::instruction::read(
        args.instruction.as_deref(),
        args.file.as_deref(),
        loaded.config.coding.max_instruction_bytes,
        "instruction",
    )?;
    let kind = backends::selected(args.backend.as_deref(), loaded)?;
    let backend = backends::build(&kind, loaded).await?;
    let service =
        backends::service(backend, &kind, loaded)?.with_permissions(ask::permission_handler());
    let workspace = match (&args.workspace, &args.repo, &args.session) {
        (Some(w), _, _) => Some(absolute(w)?),
        // A continued session keeps its own workspace; a clone gets a fresh directory.
        (None, _, Some(_)) | (None, Some(_), None) => None,
        (None, None, None) => {
            Some(std::env::current_dir().context("cannot read the current directory")?)
        }
    };
    let repo = args.repo.as_ref().map(|url| RepoSpec {
        url: url.clone(),
        branch: args.branch.clone(),
    });
    let workspace = match (&repo, &args.session) {
        (Some(repo), None) => Some(clone_into_workspace(loaded, repo, workspace).await?),
        _ => workspace,
    };
    let isolation = args.isolation.unwrap_or(loaded.config.coding.isolation);
    let spec = OpenSpec {
        workspace: workspace.clone(),
        repo,
        title: args.title.clone(),
        session: args.session.clone(),
    };
    let session = match (isolation, &args.session, &workspace) {
        (Isolation::Worktree, None, Some(repo_dir)) => {
            let git = station_agent::LocalGit::new(station_git::Git::from_loaded(loaded));
            let base = loaded.config.coding.workspace_base();
            let session =
                station_agent::worktree::open_in_worktree(&service, &git, repo_dir, &base, spec)
                    .await?;
            if let Some(wt) = &session.worktree {
                output::progress(&format!(
                    "working in the worktree {} on branch {}",
                    wt.path.display(),
                    wt.branch
                ));
            }
            session
        }
        _ => service.open(spec).await?,
    };
    let task = Task {
        instruction,
        timeout_secs: args.timeout,
        ..Task::default()
    };
    let mut run = service.execute(&session, task);
    let cancel = run.cancel_signal();
    let cancelled = cancel.clone();
    let stop_requested = signals::stop_requested();
    let stop_watch = tokio::spawn(async move {
        let stop = stop_requested.await;
        output::progress(&format!("stn: cancelling the task ({})", stop.name()));
        cancel.cancel();
        signals::exit_on_second_signal();
        stop
    });
    let mut tail = TailPrinter::default();
    if args.tail {
        output::spinner_start("starting");
    }
    while let Some(event) = run.next_event().await {
        if args.tail {
            tail.print(&event);
        }
    }
    tail.flush();
    output::spinner_stop();
    let outcome = run.outcome().await;
    // Let agent processes save the session before stn exits (the next task resumes it).
    service.backend().shutdown().await;
    // Only the signal watcher cancels with this reason (the deadline says Timeout).
    let stopped_by = if cancelled.reason() == Some(station_core::StopReason::Cancelled) {
        stop_watch.await.ok()
    } else {
        stop_watch.abort();
        None
    };
    let outcome = outcome?;
    let session = service.get(session.id.as_str()).unwrap_or(session);
    if args.json {
        output::json(&crate::report::OutcomeReport::new(&session, &outcome));
    } else {
        print_human(&session, &outcome);
    }
    Ok(ExitCode::from(match stopped_by {
        Some(stop) => stop.exit_code(),
        None => crate::exit::for_outcome(&outcome),
    }))
}

/// Clone `repo` (credentials from config) into `workspace`, or a new directory under
/// `workspace_base_path`; an existing complete clone of the same URL and branch is reused, and
/// anything else already there is a clear error (see `Git::clone_or_reuse`).
async fn clone_into_workspace(
    loaded: &LoadedConfig,
    repo: &RepoSpec,
    workspace: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let dir = match workspace {
        Some(w) => w,
        None => station_agent::tools::managed_workspace_dir(
            &loaded.config.coding.workspace_base(),
            Some(&repo.url),
        ),
    };
    let git = station_git::Git::from_loaded(loaded);
    let opts = station_git::CloneOptions {
        branch: repo.branch.clone(),
        ..Default::default()
    };
    if !dir.join(".git").exists() {
        output::progress(&format!("cloning {} into {}", repo.url, dir.display()));
    }
    let cloned = git.clone_or_reuse(&repo.url, &dir, opts).await?;
    if cloned.reused {
        output::progress(&format!("using the existing clone in {}", dir.display()));
    }
    Ok(dir)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Ok(p)
}

fn print_human(session: &Session, outcome: &Outcome) {
    if !outcome.summary.trim().is_empty() {
        output::line(outcome.summary.trim());
    }
    for f in &outcome.files_changed {
        let from = f
            .from
            .as_ref()
            .map(|from| format!(" (from {from})"))
            .unwrap_or_default();
        let binary = if f.binary { " binary" } else { "" };
        output::progress(&format!(
            "  {} {}{from}{binary} (+{} -{})",
            format!("{:?}", f.action).to_lowercase(),
            f.path,
            f.lines_added,
            f.lines_removed
        ));
    }
    let cost = outcome
        .cost_usd
        .map(|c| {
            let estimated = if outcome.cost_estimated {
                " (estimated)"
            } else {
                ""
            };
            format!(", ${c:.4}{estimated}")
        })
        .unwrap_or_default();
    output::progress(&format!(
        "session {} [{}{}] · {:?} · {} in / {} out tokens{cost} · {:.1}s",
        session.id,
        session.backend,
        outcome
            .backend_session_id
            .as_ref()
            .or(session.backend_session_id.as_ref())
            .map(|b| format!(" {b}"))
            .unwrap_or_default(),
        outcome.stop_reason,
        outcome.usage.input_tokens,
        outcome.usage.output_tokens,
        outcome.duration_ms as f64 / 1000.0
    ));
    if let Some(e) = &outcome.error {
        output::error_line(e);
    }
}

/// Live events as lines on stderr; streamed text is gathered into lines.
#[derive(Default)]
pub(crate) struct TailPrinter {
    pending: String,
}

impl TailPrinter {
    pub(crate) fn print(&mut self, event: &Event) {
        match &event.kind {
            EventKind::TextDelta { text } => {
                self.pending.push_str(text);
                while let Some(i) = self.pending.find('\n') {
                    let line: String = self.pending.drain(..=i).collect();
                    output::progress(&format!("  │ {}", line.trim_end()));
                }
                return;
            }
            EventKind::Text { text }
                if !self.pending.is_empty() && text.contains(self.pending.trim()) =>
            {
                // The complete text repeats what was streamed.
                self.pending.clear();
                output::progress(&format!("  │ {}", text.trim()));
                return;
            }
            _ => {}
        }
        self.flush();
        match &event.kind {
            EventKind::Started { backend, .. } => {
                output::spinner_message(&format!("{backend} is working"))
            }
            EventKind::ToolStarted { name, .. } => {
                output::spinner_message(&format!("running {name}"))
            }
            EventKind::ToolFinished { .. } | EventKind::StepFinished { .. } => {
                output::spinner_message("thinking")
            }
            _ => {}
        }
        let line = match &event.kind {
            EventKind::Started {
                session_id,
                backend,
            } => format!("▶ task started on {backend} (session {session_id})"),
            EventKind::BackendSession { backend_session_id } => {
                format!("  backend session {backend_session_id}")
            }
            EventKind::Text { text } => format!("  │ {}", text.trim()),
            EventKind::Reasoning { text } => format!("  … {}", text.trim()),
            EventKind::ToolStarted { name, input, .. } => format!("  ⚙ {name} {}", brief(input)),
            EventKind::ToolFinished {
                name,
                error: Some(e),
                ..
            } => format!("  ✗ {name}: {e}"),
            EventKind::ToolFinished { name, .. } => format!("  ✓ {name}"),
            EventKind::FileEdited { path } => format!("  ✎ {path}"),
            EventKind::StepFinished { usage, cost_usd } => format!(
                "  · step: {} in / {} out tokens{}",
                usage.input_tokens,
                usage.output_tokens,
                cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default()
            ),
            EventKind::Notice { message } => format!("  ! {message}"),
            EventKind::Finished { outcome } => format!(
                "■ finished: {:?}{}",
                outcome.stop_reason,
                if outcome.success { "" } else { " (failed)" }
            ),
            EventKind::Failed { message, .. } => format!("■ failed: {message}"),
            _ => return,
        };
        output::progress(&line);
    }

    pub(crate) fn flush(&mut self) {
        if !self.pending.trim().is_empty() {
            output::progress(&format!("  │ {}", self.pending.trim_end()));
        }
        self.pending.clear();
    }
}

fn brief(input: &serde_json::Value) -> String {
    let text = input.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(119).collect::<String>())
    } else {
        text
    }
}
