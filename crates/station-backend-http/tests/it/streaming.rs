//! Live behaviour against a scripted streaming server: long silent tasks, cancel, timeout,
//! a server that stops, and one task at a time per session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use station_core::{Error, EventKind, RunOptions, StopReason, Task, start_task};

use crate::fake::{FakeOpencode, busy, delta, idle, transcript};
use crate::support::{backend, session, until};

const SID: &str = "ses_fake0000000000000000001";

async fn prompted(fake: &FakeOpencode, n: usize) -> bool {
    until(Duration::from_secs(10), async || {
        fake.count("POST", "/prompt_async") >= n
    })
    .await
}

#[tokio::test]
async fn a_long_task_with_silent_stretches_keeps_going_until_idle() {
    let fake = FakeOpencode::start(SID).await;
    let ws = tempfile::tempdir().unwrap();
    let backend = Arc::new(backend(&fake.url));
    let run = start_task(
        backend,
        session(SID, ws.path()),
        Task::new("long"),
        &RunOptions::default(),
    );
    assert!(prompted(&fake, 1).await);
    fake.push(busy(SID));
    fake.push(delta(SID, "working "));
    // Silent for longer than the stream's idle bound (300 ms), twice: the backend asks the
    // server, hears "busy", and keeps waiting.
    tokio::time::sleep(Duration::from_millis(800)).await;
    fake.push(delta(SID, "still "));
    tokio::time::sleep(Duration::from_millis(800)).await;
    fake.set_messages(transcript("working still done", None));
    fake.set_busy(false);
    for f in idle(SID) {
        fake.push(f);
    }
    let mut events = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        run.follow(|e| events.push(e.kind.clone())),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.summary, "working still done");
    assert_eq!(
        (
            outcome.usage.cache_read_tokens,
            outcome.usage.cache_write_tokens
        ),
        (2, 1)
    );
    let deltas: Vec<&EventKind> = events
        .iter()
        .filter(|k| matches!(k, EventKind::TextDelta { .. }))
        .collect();
    assert_eq!(deltas.len(), 2);
    assert!(
        fake.count("GET", "/session/status") >= 2,
        "silence must be checked against the status"
    );
    assert_eq!(fake.count("POST", "/abort"), 0);
    // Every call named the workspace.
    let ws_str = ws.path().to_str().unwrap();
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.directory.as_deref() == Some(ws_str)),
        "{:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn cancel_aborts_the_session_on_the_server() {
    let fake = FakeOpencode::start(SID).await;
    let ws = tempfile::tempdir().unwrap();
    let backend = Arc::new(backend(&fake.url));
    let mut run = start_task(
        backend,
        session(SID, ws.path()),
        Task::new("slow"),
        &RunOptions::default(),
    );
    assert!(prompted(&fake, 1).await);
    fake.set_messages(transcript(
        "tick tick",
        Some(json!({"name": "MessageAbortedError", "data": {"message": "Aborted"}})),
    ));
    fake.push(busy(SID));
    fake.push(delta(SID, "tick "));
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), run.next_event())
            .await
            .unwrap()
            .unwrap();
        if matches!(ev.kind, EventKind::TextDelta { .. }) {
            break;
        }
    }
    let started = Instant::now();
    run.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(20), run.follow(|_| {}))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(!outcome.success);
    assert_eq!(outcome.stop_reason, StopReason::Cancelled);
    assert_eq!(
        outcome.error.as_deref(),
        Some("task cancelled (OpenCode's session was aborted)")
    );
    assert_eq!(outcome.summary, "tick tick");
    assert_eq!(fake.count("POST", "/abort"), 1);
}

#[tokio::test]
async fn the_task_deadline_aborts_and_reports_a_timeout() {
    let fake = FakeOpencode::start(SID).await;
    let ws = tempfile::tempdir().unwrap();
    let backend = Arc::new(backend(&fake.url));
    let task = Task {
        timeout_secs: Some(1),
        ..Task::new("never ends")
    };
    let started = Instant::now();
    let run = start_task(
        backend,
        session(SID, ws.path()),
        task,
        &RunOptions::default(),
    );
    assert!(prompted(&fake, 1).await);
    fake.push(busy(SID));
    let outcome = tokio::time::timeout(Duration::from_secs(20), run.outcome())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.stop_reason, StopReason::Timeout);
    assert_eq!(
        outcome.error.as_deref(),
        Some("task timed out after 1s (OpenCode's session was aborted)")
    );
    assert_eq!(fake.count("POST", "/abort"), 1);
}

#[tokio::test]
async fn a_server_that_stops_mid_task_fails_the_task_quickly() {
    let mut fake = FakeOpencode::start(SID).await;
    let ws = tempfile::tempdir().unwrap();
    let backend = Arc::new(backend(&fake.url));
    let run = start_task(
        backend,
        session(SID, ws.path()),
        Task::new("go"),
        &RunOptions::default(),
    );
    assert!(prompted(&fake, 1).await);
    fake.push(busy(SID));
    fake.push(delta(SID, "half"));
    fake.stop().await;
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), run.outcome())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("went away"), "{err}");
}

#[tokio::test]
async fn tasks_on_one_session_run_one_at_a_time() {
    let fake = FakeOpencode::start(SID).await;
    let ws = tempfile::tempdir().unwrap();
    let backend = Arc::new(backend(&fake.url));
    let first = start_task(
        backend.clone(),
        session(SID, ws.path()),
        Task::new("one"),
        &RunOptions::default(),
    );
    assert!(prompted(&fake, 1).await);
    let second = start_task(
        backend,
        session(SID, ws.path()),
        Task::new("two"),
        &RunOptions::default(),
    );
    fake.push(busy(SID));
    // The second prompt waits for the first task.
    assert!(
        !until(Duration::from_millis(500), async || fake
            .count("POST", "/prompt_async")
            > 1)
        .await
    );
    fake.set_messages(transcript("one done", None));
    fake.set_busy(false);
    for f in idle(SID) {
        fake.push(f);
    }
    let one = tokio::time::timeout(Duration::from_secs(20), first.outcome())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.summary, "one done");
    assert!(prompted(&fake, 2).await);
    fake.push(busy(SID));
    fake.set_busy(false);
    let mut later = transcript("one done", None).as_array().unwrap().clone();
    later.push(json!({"info": {"id": "msg_u2", "role": "user"}, "parts": []}));
    later.push(json!({"info": {"id": "msg_a2", "role": "assistant", "finish": "stop"}, "parts": [{"id": "prt_2", "type": "text", "text": "two done", "time": {"start": 1, "end": 2}}]}));
    fake.set_messages(json!(later));
    for f in idle(SID) {
        fake.push(f);
    }
    let two = tokio::time::timeout(Duration::from_secs(20), second.outcome())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two.summary, "two done");
}
