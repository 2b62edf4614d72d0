//! An in-process backend, a service source over it, and a UI server on a free loopback port.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use station_core::{
    Capabilities, CodingBackend, EventKind, ExecContext, FileAction, FileChange, Health,
    OpenRequest, Outcome, RunOptions, Session, SessionIndex, SessionService, StopReason, Task,
};
use station_ui::{ServiceSource, UiOptions, UiServer};
use tempfile::TempDir;

/// Every wait in these tests ends by this deadline.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// Instruction words: `write NAME` writes NAME in the workspace; `block` runs until cancelled.
#[derive(Debug)]
pub(crate) struct FakeBackend;

#[async_trait::async_trait]
impl CodingBackend for FakeBackend {
    fn name(&self) -> &str {
        "fake"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            cancel: true,
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
        let mut s = Session::new("fake");
        s.workspace = req.workspace;
        s.title = req.title;
        Ok(s)
    }
    async fn execute(
        &self,
        session: &Session,
        task: &Task,
        ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        let words: Vec<&str> = task.instruction.split_whitespace().collect();
        ctx.events.emit(EventKind::TextDelta {
            text: "Working on it".into(),
        });
        if words.contains(&"block") {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Err(station_core::Error::Cancelled),
                _ = tokio::time::sleep(DEADLINE) => return Ok(Outcome::failed(StopReason::Error, "never cancelled")),
            }
        }
        let mut outcome = Outcome::new(true, StopReason::Completed);
        if let Some(name) = words
            .iter()
            .position(|w| *w == "write")
            .and_then(|i| words.get(i + 1))
        {
            let ws = session.workspace.clone().expect("a workspace");
            std::fs::write(ws.join(name), "fn main() {}\n").unwrap();
            ctx.events.emit(EventKind::FileEdited {
                path: name.to_string(),
            });
            outcome.files_changed.push(FileChange {
                path: name.to_string(),
                action: FileAction::Created,
                lines_added: 1,
                lines_removed: 0,
                ..Default::default()
            });
        }
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

/// One service over the fake backend, whatever the backend name.
#[derive(Debug)]
pub(crate) struct FakeServices {
    pub(crate) service: SessionService,
}

#[async_trait::async_trait]
impl ServiceSource for FakeServices {
    fn default_backend(&self) -> String {
        "fake".into()
    }
    async fn service(&self, _backend: &str) -> station_core::Result<SessionService> {
        Ok(self.service.clone())
    }
}

/// A UI server over a fresh data dir; dropped with the test.
pub(crate) struct Fixture {
    pub(crate) dir: TempDir,
    pub(crate) index: SessionIndex,
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Fixture {
    pub(crate) async fn start(options: UiOptions) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let index = SessionIndex::open(dir.path().join("data")).unwrap();
        let service =
            SessionService::new(Arc::new(FakeBackend), index.clone(), RunOptions::default());
        let bound = UiServer::new(index.clone(), Arc::new(FakeServices { service }))
            .bind("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let base = format!("http://{}", bound.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(bound.run(async move {
            let _ = stopped.await;
        }));
        Fixture {
            dir,
            index,
            base,
            client: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .unwrap(),
            _stop: stop,
        }
    }

    pub(crate) fn workspace(&self) -> std::path::PathBuf {
        let ws = self.dir.path().join("project");
        std::fs::create_dir_all(&ws).unwrap();
        ws
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Start a new session with `instruction`; its id.
    pub(crate) async fn start_session(&self, instruction: &str) -> String {
        let ws = self.workspace();
        let (status, body) = self
            .post(
                "/api/sessions",
                json!({"workspace": ws, "instruction": instruction}),
            )
            .await;
        assert_eq!(status, 202, "{body:#}");
        body["session"].as_str().unwrap().to_string()
    }

    /// The task events of `session`'s stream, read until the stream ends (or `until` is seen).
    pub(crate) async fn events(&self, session: &str, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let res = self
            .client
            .get(format!("{}/api/sessions/{session}/events", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.bytes_stream();
        let mut text = String::new();
        let mut events = Vec::new();
        let read = async {
            while let Some(chunk) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                while let Some(cut) = text.find("\n\n") {
                    let block: String = text.drain(..cut + 2).collect();
                    let data: String = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if block.contains("event: task") || block.contains("event:task") {
                        let event: Value = serde_json::from_str(&data).unwrap();
                        let stop = until(&event);
                        events.push(event);
                        if stop {
                            return;
                        }
                    }
                }
            }
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("the event stream ended in time");
        events
    }
}
