//! An example backend crate outside the built-in set: [`CommandBackend`] drives ANY
//! command-line coding agent through core's process lifecycle
//! ([`AgentProcess`](station_core::agent_process::AgentProcess)).
//!
//! * Selectable by name through [`CommandFactory`] (section `coding.command`, [`CommandSection`]).
//! * Configured by [`CommandConfig`]: the argv (program and arguments), extra environment, and
//!   optionally how the agent's plain-text output marks a tool call.
//! * The prompt goes to the agent's stdin; each stdout line becomes a `TextDelta` event
//!   ([`PlainTextParser`]).
//! * Exit 0 is success; any other exit is a failed outcome quoting the end of stderr.
//! * Files changed come from workspace snapshots taken before and after the run.
//! * It can cancel (the process group is killed) but not continue a session: every task is a
//!   fresh process, so asking to resume is `NotSupported`.
#![warn(missing_docs)]

mod backend;
mod factory;
mod parser;

pub use backend::{CommandBackend, CommandConfig, NAME};
pub use factory::{CommandFactory, CommandSection};
pub use parser::PlainTextParser;
