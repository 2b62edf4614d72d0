//! The policy's `ask` over MCP: an elicitation (a yes/no form) to a client that declared the
//! capability, whose answer decides; a deny at once for a client that did not.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};
use station_agent::CodingTools;
use station_core::policy::{Action, Policy, PolicyConfig, Verdict};
use station_core::{
    Capabilities, CodingBackend, ExecContext, Health, OpenRequest, Outcome, RunOptions, Session,
    SessionIndex, SessionService, StopReason, Task,
};
use station_mcp::{ClientPermissions, CodingMcpServer, ServerDescription};

use crate::support::{DEADLINE, json_of};

/// Asks the policy about `make deploy` with `unmatched: ask`; its summary says the verdict.
#[derive(Debug)]
struct AskingBackend;

#[async_trait::async_trait]
impl CodingBackend for AskingBackend {
    fn name(&self) -> &str {
        "asking"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    async fn health(&self) -> station_core::Result<Health> {
        Ok(Health {
            ok: true,
            version: None,
            detail: "in-process".into(),
        })
    }
    async fn open(&self, req: OpenRequest) -> station_core::Result<Session> {
        let mut s = Session::new("asking");
        if let Some(ws) = &req.workspace {
            std::fs::create_dir_all(ws).unwrap();
        }
        s.workspace = req.workspace;
        Ok(s)
    }
    async fn execute(
        &self,
        session: &Session,
        _task: &Task,
        ctx: ExecContext,
    ) -> station_core::Result<Outcome> {
        let config = PolicyConfig {
            unmatched: Verdict::Ask,
            ..PolicyConfig::default()
        };
        let policy = Policy::new(config, session.workspace.clone().unwrap());
        let action = Action::Bash {
            command: "make deploy".into(),
        };
        let record = policy.judge("bash", action, &ctx).await;
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.summary = format!("{:?}", record.verdict).to_lowercase();
        Ok(outcome)
    }
    async fn close(&self, _session: &Session) -> station_core::Result<()> {
        Ok(())
    }
}

/// A client that declares elicitation when it has an answer, and records the questions.
#[derive(Debug, Clone)]
struct Person {
    answer: Option<bool>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Person {
    fn get_info(&self) -> ClientConfig {
        let capabilities = match self.answer {
            Some(_) => ClientCapabilities::builder().enable_elicitation().build(),
            None => ClientCapabilities::default(),
        };
        ClientConfig::new(capabilities, Implementation::new("person", "1.0"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        {
            let schema = serde_json::to_value(&requested_schema).unwrap();
            assert_eq!(schema["properties"]["allow"]["type"], "boolean", "{schema}");
            self.asked.lock().unwrap().push(message);
        }
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"allow": self.answer.unwrap_or(false)})))
    }
}

async fn call(client: &RunningService<RoleClient, Person>, name: &str, args: Value) -> Value {
    let params = CallToolRequestParams::new(name.to_string())
        .with_arguments(args.as_object().cloned().unwrap());
    let result = tokio::time::timeout(DEADLINE, client.call_tool(params))
        .await
        .expect("the call ends within the deadline")
        .unwrap();
    json_of(&result)
}

/// Run one `code` task for a client answering `answer`; its summary and the questions asked.
async fn code_as(answer: Option<bool>) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let asker = Arc::new(ClientPermissions::default());
    let service = SessionService::new(
        Arc::new(AskingBackend),
        SessionIndex::open(dir.path().join("data")).unwrap(),
        RunOptions::default(),
    )
    .with_permissions(asker.clone());
    let tools = CodingTools::new(service, dir.path().join("managed"));
    let server = CodingMcpServer::new(
        Arc::new(tools),
        ServerDescription {
            backend_details: vec![],
            instructions: None,
        },
    )
    .with_client_permissions(asker);
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let (server_read, server_write) = tokio::io::split(server_end);
    let _server = tokio::spawn(server.serve_io(server_read, server_write));
    let person = Person {
        answer,
        asked: Arc::default(),
    };
    let asked = person.asked.clone();
    let client = person.serve(client_end).await.expect("the MCP handshake");
    let ws = dir.path().join("ws");
    let opened = call(&client, "coding_open", json!({"workspace_path": ws})).await;
    let session = opened["session_id"].as_str().unwrap().to_string();
    let done = call(
        &client,
        "code",
        json!({"session_id": session, "instruction": "deploy it"}),
    )
    .await;
    let summary = done["summary"].as_str().unwrap_or_default().to_string();
    let asked = asked.lock().unwrap().clone();
    (summary, asked)
}

#[tokio::test]
async fn ask_is_an_elicitation_to_a_client_that_can_answer_and_a_deny_otherwise() {
    let (summary, asked) = code_as(Some(true)).await;
    assert_eq!(summary, "allow");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].contains("bash: make deploy") && asked[0].contains("rule: unmatched"),
        "{asked:?}"
    );
    let (summary, asked) = code_as(Some(false)).await;
    assert_eq!(summary, "deny");
    assert_eq!(asked.len(), 1);
    // A client without the capability is never asked: deny at once.
    let (summary, asked) = code_as(None).await;
    assert_eq!(summary, "deny");
    assert!(asked.is_empty());
}
