//! The `acp` coding backend: any agent that speaks the Agent Client Protocol over stdio
//! (`opencode acp`, `claude-agent-acp`, `gemini --acp`, `codex-acp`, `goose acp`, or any
//! `coding.acp.command`).
//!
//! * **One process, many sessions.** The agent is started on first use (through
//!   `station_core::process`: own process group, Station's secrets withheld from its
//!   environment), answers `initialize` within `coding.acp.startup_timeout_sec`, and serves
//!   every session after that. An agent that dies fails the running task with its exit status
//!   and stderr, and is started again for the next task.
//! * **Sessions.** `open` runs `session/new` with the absolute workspace; continuing a session
//!   uses `session/resume` or `session/load`, whichever the agent advertises (refused clearly
//!   otherwise). Each task is one `session/prompt`; its `session/update`s become events
//!   (text, thoughts, tool calls, `diff` → file edited, `plan` → [`EventKind::Plan`], cost
//!   from `usage_update`).
//! * **Client side.** `fs/read_text_file` / `fs/write_text_file` inside the session's
//!   workspace only; `terminal/*` through `station_core::process` with output limits;
//!   permission requests and file writes decided by `coding.policy` (the task's own policy
//!   if it brings one; `ask` goes to the run's permission handler; every decision is an audit
//!   event), answered with a once-only option so the agent asks again next time.
//! * **Cancel.** `session/cancel`, permission requests answered `cancelled`, and after
//!   `coding.acp.cancel_grace_sec` the agent's process group is killed. After a cancel the
//!   idle agent is restarted before the next prompt: claude-agent-acp answers the prompt after
//!   a cancel out of step.
//! * **Transport.** Messages are the `agent-client-protocol` crate's schema types; the
//!   line transport is Station's own, so each line is capped (`coding.acp.max_message_mb`)
//!   and lines that are not JSON-RPC are skipped instead of ending the connection.
//!
//! [`EventKind::Plan`]: station_core::EventKind::Plan
#![warn(missing_docs)]

mod backend;
mod client;
mod config;
mod permission;
mod rpc;
mod turn;

pub use backend::{AcpBackend, NAME};
pub use client::inside_workspace;
pub use config::{AcpConfig, AcpFactory, PRESETS, Preset};
pub use permission::actions_of_tool_call;
