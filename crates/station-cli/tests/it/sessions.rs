//! `stn session list|show|delete|prune` on an index and task history set up through core.

use std::path::Path;

use serde_json::Value;
use station_core::history::TaskHistory;
use station_core::{FileAction, FileChange, Outcome, Session, SessionIndex, StopReason, Task};

use crate::support::stn;

fn session(backend: &str, title: &str, workspace: &Path, days_ago: i64) -> Session {
    let mut s = Session::new(backend);
    s.title = Some(title.into());
    s.workspace = Some(workspace.to_path_buf());
    s.last_used_at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    s
}

fn outcome(success: bool, file: &str) -> Outcome {
    let mut o = if success {
        Outcome::new(true, StopReason::Completed)
    } else {
        Outcome::failed(StopReason::Error, "the model failed")
    };
    o.usage.input_tokens = 100;
    o.usage.output_tokens = 20;
    o.cost_usd = Some(0.25);
    o.files_changed = vec![FileChange {
        path: file.into(),
        action: FileAction::Modified,
        lines_added: 2,
        lines_removed: 1,
        ..Default::default()
    }];
    o
}

struct Fixture {
    home: tempfile::TempDir,
    index: SessionIndex,
    fresh: Session,
    old: Session,
    other: Session,
}

fn fixture() -> Fixture {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let index = SessionIndex::open(&data).unwrap();
    let ws_a = home.path().join("ws-a");
    let ws_b = home.path().join("ws-b");
    for w in [&ws_a, &ws_b] {
        std::fs::create_dir_all(w).unwrap();
        std::fs::write(w.join("keep.txt"), "mine\n").unwrap();
    }
    let fresh = session("opencode-cli", "fix the parser", &ws_a, 1);
    let old = session("opencode-cli", "old refactor", &ws_b, 40);
    let other = session("claudecode", "write docs", &ws_a, 2);
    let history = TaskHistory::new(&data);
    for s in [&fresh, &old, &other] {
        index.upsert(s).unwrap();
        history
            .append(
                &s.id,
                &Task::new("first task"),
                &outcome(true, "src/lib.rs"),
            )
            .unwrap();
    }
    history
        .append(
            &fresh.id,
            &Task::new("second task"),
            &outcome(false, "src/parse.rs"),
        )
        .unwrap();
    std::fs::create_dir_all(data.join("checkpoints").join(old.id.as_str())).unwrap();
    Fixture {
        home,
        index,
        fresh,
        old,
        other,
    }
}

fn ids(out: &std::process::Output) -> Vec<String> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn list_filters_by_backend_and_workspace() {
    let f = fixture();
    let out = stn(f.home.path())
        .args(["session", "list", "--json", "--backend", "claudecode"])
        .output()
        .unwrap();
    assert_eq!(ids(&out), [f.other.id.to_string()]);
    // A relative path names the same workspace as the stored absolute one.
    let out = stn(f.home.path())
        .args(["session", "list", "--json", "--workspace", "ws-a"])
        .output()
        .unwrap();
    assert_eq!(ids(&out), [f.fresh.id.to_string(), f.other.id.to_string()]);
    let out = stn(f.home.path())
        .args([
            "session",
            "list",
            "--backend",
            "opencode-cli",
            "--workspace",
            "ws-b",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(ids(&out), [f.old.id.to_string()]);
}

#[test]
fn show_lists_tasks_outcomes_tokens_cost_and_files() {
    let f = fixture();
    let out = stn(f.home.path())
        .args(["session", "show", "parser", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["session"]["id"], f.fresh.id.to_string());
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["number"], 2);
    assert_eq!(tasks[1]["success"], false);
    assert_eq!(tasks[1]["error"], "the model failed");
    assert_eq!(tasks[1]["files_changed"][0]["path"], "src/parse.rs");
    assert_eq!(v["totals"]["usage"]["input_tokens"], 200);
    assert_eq!(v["totals"]["cost_usd"], 0.5);

    let out = stn(f.home.path())
        .args(["session", "show", f.fresh.id.as_str()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for part in [
        "#1",
        "#2",
        "failed",
        "src/parse.rs (+2 -1)",
        "200 in / 40 out",
        "$0.5000",
    ] {
        assert!(text.contains(part), "shows {part}: {text}");
    }
}

#[test]
fn show_skips_a_corrupt_history_line_with_a_warning() {
    let f = fixture();
    let path = TaskHistory::new(f.index.dir()).path(&f.old.id).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{ cut off\n");
    std::fs::write(&path, text).unwrap();
    let out = stn(f.home.path())
        .args(["session", "show", f.old.id.as_str(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(v["skipped_lines"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not be read"), "{stderr}");
}

#[test]
fn delete_forgets_the_session_but_keeps_its_workspace() {
    let f = fixture();
    let out = stn(f.home.path())
        .args(["session", "delete", "old refactor"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("was left as it is"),
        "says the workspace stays: {stderr}"
    );
    let history = TaskHistory::new(f.index.dir());
    assert!(!history.path(&f.old.id).unwrap().exists());
    assert!(
        !f.index
            .dir()
            .join("checkpoints")
            .join(f.old.id.as_str())
            .exists()
    );
    assert!(f.index.resolve(f.old.id.as_str()).is_err());
    assert_eq!(
        std::fs::read_to_string(f.home.path().join("ws-b/keep.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(f.index.list().unwrap().len(), 2);
    let out = stn(f.home.path())
        .args(["session", "delete", "old refactor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a second delete finds nothing");
}

#[test]
fn prune_removes_sessions_older_than_the_age_and_dry_run_only_lists() {
    let f = fixture();
    let out = stn(f.home.path())
        .args(["session", "prune", "--older-than", "30d", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("would delete") && text.contains(f.old.id.as_str()),
        "{text}"
    );
    assert!(!text.contains(f.fresh.id.as_str()), "{text}");
    assert_eq!(
        f.index.list().unwrap().len(),
        3,
        "a dry run removes nothing"
    );
    let out = stn(f.home.path())
        .args(["session", "prune", "--older-than", "4w"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let left: Vec<_> = f.index.list().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, [f.fresh.id.clone(), f.other.id.clone()]);
    assert!(
        !TaskHistory::new(f.index.dir())
            .path(&f.old.id)
            .unwrap()
            .exists()
    );
    assert!(f.home.path().join("ws-b/keep.txt").exists());
    let out = stn(f.home.path())
        .args(["session", "prune", "--older-than", "30"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("12h, 30d, 2w"), "{stderr}");
}
