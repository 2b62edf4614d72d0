//! Shared helpers: fake `opencode` scripts and running a task to its end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_backend_cli::CliConfig;
use station_backend_cli::{CliBackend, NAME};
use station_core::process::CommandSpec;
use station_core::{
    CodingBackend, Event, EventKind, Outcome, Result, RunOptions, Session, Task, start_task,
};
use station_testkit::process::live_group_members;
use tempfile::TempDir;

/// Lines every fake script starts with: record pid, argv, stdin and the `PWD` it was given
/// under `$FAKE_DIR`.
const PREAMBLE: &str = r#"#!/bin/sh
echo $$ > "$FAKE_DIR/pid"
printf '%s\n' "$@" > "$FAKE_DIR/args"
cat > "$FAKE_DIR/stdin"
tr '\0' '\n' < /proc/$$/environ | grep '^PWD=' > "$FAKE_DIR/pwd"
"#;

/// A temp dir holding a fake `opencode` script, a workspace and the script's records.
#[derive(Debug)]
pub(crate) struct Fake {
    _dir: TempDir,
    pub(crate) bin: PathBuf,
    pub(crate) ws: PathBuf,
    pub(crate) state: PathBuf,
}

impl Fake {
    /// A fake whose body (after the preamble) is `body`.
    pub(crate) async fn new(body: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let (bin, ws, state) = (
            dir.path().join("bin/opencode"),
            dir.path().join("ws"),
            dir.path().join("state"),
        );
        for d in [dir.path().join("bin"), ws.clone(), state.clone()] {
            std::fs::create_dir_all(d).unwrap();
        }
        write_executable(&bin, &format!("{PREAMBLE}{body}")).await;
        Fake {
            _dir: dir,
            bin,
            ws: ws.canonicalize().unwrap(),
            state,
        }
    }

    pub(crate) fn config(&self) -> CliConfig {
        CliConfig {
            binary: self.bin.to_string_lossy().into_owned(),
            ..CliConfig::default()
        }
    }

    pub(crate) fn backend_with(&self, config: CliConfig) -> CliBackend {
        CliBackend::new(config)
            .with_env(vec![
                ("FAKE_DIR".into(), self.state.to_string_lossy().into_owned()),
                // OpenCode's data dir (first-start lock) is the fake's own.
                (
                    "XDG_DATA_HOME".into(),
                    self.state.join("data").to_string_lossy().into_owned(),
                ),
            ])
            .with_workspace_base(self.state.join("workspaces"))
    }

    pub(crate) fn backend(&self) -> CliBackend {
        self.backend_with(self.config())
    }

    /// A session in this fake's workspace.
    pub(crate) fn session(&self) -> Session {
        let mut s = Session::new(NAME);
        s.workspace = Some(self.ws.clone());
        s
    }

    /// A file the script wrote under `$FAKE_DIR`.
    pub(crate) fn record(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join(name))
            .unwrap_or_else(|e| panic!("the fake did not write {name}: {e}"))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.record("pid").trim().parse().unwrap()
    }

    pub(crate) fn args(&self) -> Vec<String> {
        self.record("args").lines().map(str::to_string).collect()
    }
}

/// Write `body` to `path` as an executable from a child process, so no writable descriptor of
/// the file is ever open in this (multi-threaded, forking) test process: exec'ing it would
/// otherwise race into ETXTBSY.
pub(crate) async fn write_executable(path: &Path, body: &str) {
    let spec = CommandSpec::new("sh", path.parent().unwrap())
        .args(["-c", r#"cat > "$1" && chmod 755 "$1""#, "sh"])
        .arg(path)
        .stdin_bytes(body.as_bytes().to_vec());
    spec.output(Duration::from_secs(20), None)
        .await
        .expect("writing a fake script");
}

/// Run `task` through the core runner; all events and the outcome.
pub(crate) async fn run_task(
    backend: Arc<dyn CodingBackend>,
    session: Session,
    task: Task,
) -> (Vec<Event>, Result<Outcome>) {
    run_task_with(backend, session, task, &RunOptions::default()).await
}

/// [`run_task`] with `opts`.
pub(crate) async fn run_task_with(
    backend: Arc<dyn CodingBackend>,
    session: Session,
    task: Task,
    opts: &RunOptions,
) -> (Vec<Event>, Result<Outcome>) {
    let run = start_task(backend, session, task, opts);
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        run.follow(|e| events.push(e.clone())),
    )
    .await
    .expect("a task ends within 120 s");
    (events, outcome)
}

/// Short names of event kinds, for order assertions.
pub(crate) fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Started { .. } => "started",
            EventKind::BackendSession { .. } => "session",
            EventKind::TextDelta { .. } => "delta",
            EventKind::Text { .. } => "text",
            EventKind::Reasoning { .. } => "reasoning",
            EventKind::Permission { .. } => "permission",
            EventKind::ToolStarted { .. } => "tool_started",
            EventKind::ToolFinished { .. } => "tool_finished",
            EventKind::FileEdited { .. } => "file_edited",
            EventKind::StepFinished { .. } => "step_finished",
            EventKind::Notice { .. } => "notice",
            EventKind::Finished { .. } => "finished",
            EventKind::Failed { .. } => "failed",
            _ => "other",
        })
        .collect()
}

pub(crate) fn notices(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notice { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Wait (bounded) until no live process is left in process group `pgid`.
pub(crate) async fn assert_group_gone(pgid: u32) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = live_group_members(pgid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "processes of group {pgid} survived: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a process is alive (not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}
