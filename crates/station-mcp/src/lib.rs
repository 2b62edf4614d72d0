//! Station's coding tools served over MCP (Model Context Protocol), so that MCP clients (Claude
//! Desktop, Cursor, Zed, other agents) can hand coding work to the configured coding backend.
//!
//! The tools are [`station_agent::CodingTools`] (one implementation for the agent runtime and
//! for MCP), plus `coding_sessions` and the tools for background tasks. Coding tasks take
//! minutes while MCP clients time requests out after about 60 s, so:
//!
//! * while `code` runs, the server sends a progress notification for every coding event and at
//!   least every few seconds (clients that reset their timeout on progress just wait), and a
//!   log notification per event;
//! * `code` with `wait: false` returns a `task_id` at once; `coding_wait` (at most 55 s per
//!   call), `coding_status` and `coding_cancel` follow and stop it;
//! * a client's `notifications/cancelled` stops the task on the backend;
//! * the policy's `ask` goes to the client as an elicitation (a yes/no form) when it declared
//!   that capability ([`ClientPermissions`]); otherwise it is a deny.
//!
//! Transports: stdio ([`CodingMcpServer::serve_stdio`]) and streamable HTTP
//! ([`CodingMcpServer::serve_http`], loopback only unless allowed; requests from foreign
//! `Origin`s or for other `Host`s are refused, and a bearer token is required for remote access).
#![warn(missing_docs)]

mod ask;
mod docs;
mod error;
mod guard;
mod progress;
mod schema;
mod server;
mod tasks;

pub use ask::ClientPermissions;
pub use error::McpServeError;
pub use guard::{GuardWording, HttpGuard, MIN_TOKEN_LEN, Origin, generate_token, parse_origin};
pub use server::{
    CodingMcpServer, DEFAULT_HEARTBEAT, HTTP_PATH, HttpOptions, HttpServer, ServerDescription,
    TOOLS_RESOURCE_URI,
};
