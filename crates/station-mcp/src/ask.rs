//! The policy's `ask` over MCP: put to the client as an elicitation (a yes/no form) when the
//! client declared the elicitation capability; otherwise, or when it is unclear whose task
//! asks, a deny.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema};
use rmcp::{Peer, RoleServer};
use station_core::policy::{Action, PermissionHandler};

use crate::tasks::TaskEntry;

/// Answers `ask` decisions by asking the MCP client whose `code` task is running. Give it to
/// the service (`SessionService::with_permissions`) and to the server
/// ([`CodingMcpServer::with_client_permissions`](crate::CodingMcpServer::with_client_permissions)).
///
/// A question goes to a client only when the running tasks all belong to one connection
/// (always so on stdio): with tasks of several HTTP clients running, nobody can tell whose task
/// asks, so the answer is a deny rather than a question to the wrong person.
#[derive(Debug, Default)]
pub struct ClientPermissions {
    running: Mutex<Vec<Asker>>,
}

#[derive(Debug)]
struct Asker {
    connection: u64,
    task: Weak<TaskEntry>,
    peer: Peer<RoleServer>,
}

/// Connection ids: one per [`CodingMcpServer`](crate::CodingMcpServer) connection.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_connection() -> u64 {
    NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed)
}

impl ClientPermissions {
    /// Remember that `peer` (on `connection`) runs `task`, until it ends.
    pub(crate) fn track(
        &self,
        connection: u64,
        task: &std::sync::Arc<TaskEntry>,
        peer: Peer<RoleServer>,
    ) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(is_running);
        running.push(Asker {
            connection,
            task: std::sync::Arc::downgrade(task),
            peer,
        });
    }

    /// The client to ask: the one connection with running tasks, if it can answer forms.
    fn client(&self) -> Option<Peer<RoleServer>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(is_running);
        let first = running.first()?;
        if running.iter().any(|a| a.connection != first.connection) {
            tracing::info!("an ask was denied: tasks of several MCP clients are running");
            return None;
        }
        let declared = first
            .peer
            .peer_info()
            .is_some_and(|info| info.capabilities.elicitation.is_some());
        declared.then(|| first.peer.clone())
    }
}

fn is_running(asker: &Asker) -> bool {
    asker.task.upgrade().is_some_and(|t| t.result().is_none())
}

/// The yes/no question.
fn form(tool: &str, action: &Action, rule: &str) -> Option<ElicitRequestParams> {
    let schema = ElicitationSchema::builder()
        .required_bool("allow")
        .description("true allows it once; false denies it")
        .build()
        .ok()?;
    Some(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: format!(
            "The coding agent asks to run {tool}: {}. Policy rule: {rule}. Allow it?",
            action.target()
        ),
        requested_schema: schema,
    })
}

#[async_trait::async_trait]
impl PermissionHandler for ClientPermissions {
    async fn ask(&self, tool: &str, action: &Action) -> bool {
        self.ask_about(tool, action, "ask").await
    }

    async fn ask_about(&self, tool: &str, action: &Action, rule: &str) -> bool {
        let Some(peer) = self.client() else {
            return false;
        };
        let Some(params) = form(tool, action, rule) else {
            return false;
        };
        match peer.create_elicitation(params).await {
            Ok(answer) => {
                answer.action == ElicitationAction::Accept
                    && answer
                        .content
                        .as_ref()
                        .and_then(|c| c.get("allow"))
                        .and_then(serde_json::Value::as_bool)
                        == Some(true)
            }
            Err(e) => {
                tracing::info!("an ask was denied: the MCP client did not answer: {e}");
                false
            }
        }
    }
}
