//! The `opencode-cli` coding backend: no server, one `opencode run --format json` process per
//! task, for CI/CD.
//!
//! * [`CliBackend`] implements [`station_core::CodingBackend`]. Each task spawns a fresh child in
//!   the session's workspace (own process group, prompt on stdin, stdin then closed), parses its
//!   JSON event lines live ([`stream`]) through core's
//!   [`AgentProcess`](station_core::agent_process::AgentProcess) lifecycle, which kills the whole
//!   group on cancel (the runner's deadline is a cancel too) or drop.
//! * Sessions continue with `--session ses_…`; a title (or a unique part of one) is resolved
//!   through `opencode session list --format json` ([`sessions`]).
//! * Files changed are computed from workspace snapshots taken before and after the run.
#![warn(missing_docs)]

mod backend;
mod config;
mod first_run;
mod permission;
pub mod sessions;
pub mod stream;

pub use backend::{CliBackend, INSTALL_HINT, NAME};
pub use config::{CliConfig, CliFactory};
