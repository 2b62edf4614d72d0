//! `coding_rewind`: a `code` task on a local workspace is recorded, and the tool undoes it.

use std::sync::Arc;

use serde_json::json;
use station_agent::CodingTools;
use station_core::{
    Capabilities, CodingBackend, ExecContext, Health, OpenRequest, Outcome, RunOptions, Session,
    SessionIndex, SessionService, StopReason, Task,
};

/// Edits `app.py` in its local workspace (the runner records what changed).
#[derive(Debug)]
struct LocalEditor;

#[async_trait::async_trait]
impl CodingBackend for LocalEditor {
    fn name(&self) -> &str {
        "local-editor"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            local_workspace: true,
            ..Capabilities::NONE
        }
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "in-process".into(),
        })
    }
    async fn open(&self, req: OpenRequest) -> station_core::Result<Session> {
        let mut s = Session::new("local-editor");
        s.workspace = req.workspace;
        Ok(s)
    }
    async fn execute(
        &self,
        session: &Session,
        task: &Task,
        _ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        let ws = session.workspace.clone().unwrap();
        std::fs::write(ws.join("app.py"), format!("# {}\n", task.instruction)).unwrap();
        Ok(Outcome::new(true, StopReason::Completed))
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn coding_rewind_undoes_a_code_task_and_refuses_over_later_edits() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("app.py"), "print('v1')\n").unwrap();
    let index = SessionIndex::open(dir.path().join("data")).unwrap();
    let service = SessionService::new(Arc::new(LocalEditor), index, RunOptions::default());
    let tools = CodingTools::new(service, dir.path().join("base"));

    let opened = tools
        .call("coding_open", &json!({"workspace_path": ws}), None)
        .await;
    let id = opened["session_id"].as_str().unwrap().to_string();
    let done = tools
        .call(
            "code",
            &json!({"session_id": id, "instruction": "rewrite app"}),
            None,
        )
        .await;
    assert_eq!(done["success"], true, "{done:#}");
    assert_eq!(done["task"], 1, "{done:#}");
    assert_eq!(done["files_changed"][0]["path"], "app.py", "{done:#}");

    std::fs::write(ws.join("app.py"), "print('mine')\n").unwrap();
    let refused = tools
        .call("coding_rewind", &json!({"session_id": id}), None)
        .await;
    assert_eq!(refused["success"], false, "{refused:#}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("changed since task 1")
            && refused["fix"].as_str().unwrap().contains("force"),
        "{refused:#}"
    );

    let rewound = tools
        .call(
            "coding_rewind",
            &json!({"session_id": id, "to_task": 1, "force": true}),
            None,
        )
        .await;
    assert_eq!(rewound["success"], true, "{rewound:#}");
    assert_eq!(rewound["files"], json!(["app.py"]));
    assert_eq!(
        std::fs::read_to_string(ws.join("app.py")).unwrap(),
        "print('v1')\n"
    );
}
