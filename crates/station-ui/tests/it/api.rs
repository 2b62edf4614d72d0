use serde_json::{Value, json};
use station_core::Session;
use station_ui::UiOptions;

use crate::support::Fixture;

fn stored(backend: &str, title: &str) -> Session {
    let mut s = Session::new(backend);
    s.title = Some(title.into());
    s
}

#[tokio::test]
async fn the_session_list_shows_every_backend_and_filters_by_backend_and_title() {
    let ui = Fixture::start(UiOptions::default()).await;
    for s in [
        stored("opencode-cli", "Fix the parser"),
        stored("claudecode", "Write the README"),
        stored("codex", "fix the LEXER"),
    ] {
        ui.index.upsert(&s).unwrap();
    }
    let (status, all) = ui.get("/api/sessions").await;
    assert_eq!(status, 200, "{all:#}");
    assert_eq!(all["sessions"].as_array().unwrap().len(), 3);
    assert_eq!(
        all["backends"],
        json!(["claudecode", "codex", "opencode-cli"])
    );

    let (_, fixes) = ui.get("/api/sessions?q=FIX").await;
    let titles: Vec<&str> = fixes["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    let (_, codex) = ui.get("/api/sessions?backend=codex&state=idle").await;
    assert_eq!(codex["sessions"][0]["title"], "fix the LEXER");
    assert_eq!(codex["sessions"].as_array().unwrap().len(), 1);
    let (_, running) = ui.get("/api/sessions?state=running").await;
    assert_eq!(running["sessions"], json!([]));
}

#[tokio::test]
async fn an_unknown_session_is_a_404_that_says_what_to_do() {
    let ui = Fixture::start(UiOptions::default()).await;
    let (status, body) = ui.get("/api/sessions/no-such-session").await;
    assert_eq!(status, 404, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("no-such-session"),
        "{body:#}"
    );
    assert!(body["fix"].as_str().is_some(), "{body:#}");
}

#[tokio::test]
async fn a_task_started_from_the_page_streams_live_and_a_cancel_stops_it() {
    let ui = Fixture::start(UiOptions::default()).await;
    let id = ui.start_session("block until cancelled").await;
    // The text arrives while the task still runs (the last word may be held back for redaction).
    let early = ui.events(&id, |e| e["type"] == "text_delta").await;
    assert_eq!(early[0]["type"], "started", "{early:#?}");
    assert!(
        early.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .starts_with("Working"),
        "{early:#?}"
    );
    let (_, listed) = ui.get("/api/sessions?state=running").await;
    assert_eq!(listed["sessions"][0]["id"], id.as_str(), "{listed:#}");

    let (status, body) = ui
        .post(&format!("/api/sessions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{body:#}");
    let all = ui.events(&id, |_| false).await;
    let last = all.last().unwrap();
    assert_eq!(last["type"], "finished", "{all:#?}");
    assert_eq!(last["outcome"]["stop_reason"], "cancelled", "{last:#}");

    let (_, shown) = ui.get(&format!("/api/sessions/{id}")).await;
    assert_eq!(shown["state"], "idle", "{shown:#}");
    assert_eq!(shown["tasks"][0]["stop_reason"], "cancelled", "{shown:#}");
    // Nothing left to cancel.
    let (status, body) = ui
        .post(&format!("/api/sessions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409, "{body:#}");
}

#[tokio::test]
async fn a_tasks_patch_is_served_and_rewind_restores_the_workspace() {
    let ui = Fixture::start(UiOptions::default()).await;
    let id = ui.start_session("write main.rs").await;
    let events = ui.events(&id, |_| false).await;
    assert_eq!(
        events.last().unwrap()["outcome"]["success"],
        true,
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "file_edited" && e["path"] == "main.rs")
    );

    let (status, patch) = ui.get(&format!("/api/sessions/{id}/tasks/1/patch")).await;
    assert_eq!(status, 200, "{patch:#}");
    assert!(
        patch["patch"].as_str().unwrap().contains("+fn main() {}"),
        "{patch:#}"
    );
    assert_eq!(patch["files_changed"][0]["path"], "main.rs");

    let (_, shown) = ui.get(&format!("/api/sessions/{id}")).await;
    assert_eq!(shown["checkpoints"], json!([1]), "{shown:#}");
    let ws = ui.workspace();
    assert!(ws.join("main.rs").exists());
    let (status, rewound) = ui
        .post(&format!("/api/sessions/{id}/rewind"), json!({"to_task": 1}))
        .await;
    assert_eq!(status, 200, "{rewound:#}");
    assert_eq!(rewound["files"], json!(["main.rs"]), "{rewound:#}");
    assert!(!ws.join("main.rs").exists());
}

#[tokio::test]
async fn a_second_task_on_the_same_session_runs_after_the_first() {
    let ui = Fixture::start(UiOptions::default()).await;
    let id = ui.start_session("write a.rs").await;
    ui.events(&id, |_| false).await;
    let (status, body) = ui
        .post(
            &format!("/api/sessions/{id}/tasks"),
            json!({"instruction": "write b.rs"}),
        )
        .await;
    assert_eq!(status, 202, "{body:#}");
    let events = ui.events(&id, |_| false).await;
    assert!(events.iter().any(|e| e["path"] == "b.rs"), "{events:#?}");
    let (_, shown) = ui.get(&format!("/api/sessions/{id}")).await;
    let numbers: Vec<&Value> = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["number"])
        .collect();
    assert_eq!(numbers, [&json!(1), &json!(2)], "{shown:#}");
}

#[tokio::test]
async fn bad_start_requests_say_which_field_to_fix() {
    let ui = Fixture::start(UiOptions::default()).await;
    let (status, body) = ui
        .post(
            "/api/sessions",
            json!({"workspace": "relative/dir", "instruction": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("workspace"),
        "{body:#}"
    );
    let ws = ui.workspace();
    let (status, body) = ui
        .post(
            "/api/sessions",
            json!({"workspace": ws, "instruction": "  "}),
        )
        .await;
    assert_eq!(status, 400, "{body:#}");
    assert!(
        body["error"].as_str().unwrap().contains("instruction"),
        "{body:#}"
    );
}
