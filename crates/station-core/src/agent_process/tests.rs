use std::time::Duration;

use super::*;
use crate::event::{Event, EventSink};
use crate::process::live_group_members;
use crate::run::CancelSignal;

/// Each line becomes a notice with its text; the agent is finished after a `done` line.
#[derive(Debug, Default)]
struct Lines {
    finished: bool,
}

impl StdoutParser for Lines {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        self.finished |= line == "done";
        vec![EventKind::Notice {
            message: line.to_string(),
        }]
    }
    fn finished(&self) -> bool {
        self.finished
    }
}

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new("sh", std::env::temp_dir())
        .arg("-c")
        .arg(script)
}

fn context() -> (ExecContext, mpsc::UnboundedReceiver<Event>) {
    let (events, rx) = EventSink::channel();
    let ctx = ExecContext::new(events, CancelSignal::new());
    (ctx, rx)
}

fn texts(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let EventKind::Notice { message } = event.kind {
            out.push(message);
        }
    }
    out
}

/// Waits (bounded) until no live process is left in group `pgid`.
async fn group_gone(pgid: u32) -> Vec<u32> {
    for _ in 0..250 {
        if live_group_members(pgid).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    live_group_members(pgid)
}

#[tokio::test]
async fn stdin_is_fed_lines_become_events_and_the_exit_and_stderr_are_kept() {
    let agent = AgentProcess::new(
        "fake",
        sh("cat; echo 'bad password=hunter2hunter2' >&2; exit 3").stdin_bytes("first\nsecond\n"),
    );
    let (ctx, mut rx) = context();
    let run = agent.run(Lines::default(), &ctx).await.unwrap();
    assert_eq!(texts(&mut rx), ["first", "second"]);
    let AgentEnd::Exited(status) = run.end else {
        panic!("{:?}", run.end)
    };
    assert_eq!(status.code(), Some(3));
    assert!(run.stderr_tail.contains("bad"), "{}", run.stderr_tail);
    assert!(!run.stderr_tail.contains("hunter2"), "{}", run.stderr_tail);
    assert_eq!(group_gone(run.pid).await, Vec::<u32>::new());
}

#[tokio::test]
async fn an_agent_that_lingers_after_its_result_is_stopped_with_its_group() {
    let agent = AgentProcess::new(
        "fake",
        sh("trap '' TERM; sleep 300 & echo done; while :; do sleep 1; done"),
    )
    .linger(Duration::from_millis(100))
    .kill_grace(Duration::from_millis(100));
    let (ctx, mut rx) = context();
    let run = agent.run(Lines::default(), &ctx).await.unwrap();
    assert_eq!(run.end, AgentEnd::Lingered);
    assert!(run.parser.finished());
    assert_eq!(texts(&mut rx), ["done"]);
    assert_eq!(group_gone(run.pid).await, Vec::<u32>::new());
}

#[tokio::test]
async fn cancel_stops_a_group_that_ignores_sigterm_and_keeps_the_reason() {
    let agent = AgentProcess::new(
        "fake",
        sh("trap '' TERM; sh -c 'trap \"\" TERM; sleep 300' & echo started; while :; do sleep 1; done"),
    )
    .kill_grace(Duration::from_millis(100));
    let (ctx, mut rx) = context();
    let cancel = ctx.cancel.clone();
    let running = tokio::spawn(async move { agent.run(Lines::default(), &ctx).await });
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the agent printed a line in time")
        .expect("events are open");
    assert!(matches!(first.kind, EventKind::Notice { ref message } if message == "started"));
    cancel.cancel_with(StopReason::Timeout);
    let run = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the run ends after cancel")
        .unwrap()
        .unwrap();
    assert_eq!(run.end, AgentEnd::Stopped(StopReason::Timeout));
    assert_eq!(group_gone(run.pid).await, Vec::<u32>::new());
}

#[tokio::test]
async fn a_grandchild_holding_stdout_does_not_hold_up_the_end() {
    let agent = AgentProcess::new("fake", sh("sleep 300 & echo hello; exit 0"));
    let (ctx, mut rx) = context();
    let run = tokio::time::timeout(Duration::from_secs(30), agent.run(Lines::default(), &ctx))
        .await
        .expect("the run ends when the agent exits")
        .unwrap();
    assert!(
        matches!(run.end, AgentEnd::Exited(s) if s.success()),
        "{:?}",
        run.end
    );
    assert_eq!(texts(&mut rx), ["hello"]);
    assert_eq!(group_gone(run.pid).await, Vec::<u32>::new());
}

#[tokio::test]
async fn a_missing_program_is_an_error_that_says_how_to_install() {
    let agent = AgentProcess::new(
        "fake",
        CommandSpec::new("definitely-not-installed-stn", std::env::temp_dir())
            .install_hint("npm i -g something"),
    );
    let (ctx, _rx) = context();
    let err = agent.run(Lines::default(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("npm i -g something"), "{err}");
}

#[tokio::test]
async fn a_piped_stdin_is_handed_over_and_closing_it_lets_the_agent_exit() {
    // `cat` echoes what it is sent and exits only when its stdin closes.
    let agent = AgentProcess::new("fake", sh("cat").stdin_piped());
    let (ctx, mut rx) = context();
    let (tx, stdin) = tokio::sync::oneshot::channel();
    let talk = async {
        use tokio::io::AsyncWriteExt;
        let mut stdin: tokio::process::ChildStdin = stdin.await.expect("stdin is handed over");
        stdin.write_all(b"question\ndone\n").await.unwrap();
        // Dropping the pipe closes it.
    };
    let (run, ()) = tokio::join!(
        agent.run_with_stdin(Lines::default(), &ctx, |stdin| {
            let _ = tx.send(stdin);
        }),
        talk
    );
    let run = run.unwrap();
    assert!(matches!(run.end, AgentEnd::Exited(_)), "{:?}", run.end);
    assert_eq!(texts(&mut rx), ["question", "done"]);
}
