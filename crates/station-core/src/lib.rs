//! Core of the Station coding suite.
//!
//! `station-core` knows no transport. It holds what every backend and every front end shares:
//!
//! * [`CodingBackend`]: the one trait a backend implements (dyn-compatible, `Arc<dyn CodingBackend>`);
//! * the data model ([`Session`], [`Task`], [`Outcome`], [`Event`]) and [`Error`];
//! * [`SessionIndex`]: the persistent index that resolves `--session` values;
//! * [`run`]: the task runner that gives every backend the same event ordering, timeout and
//!   cancel semantics, and [`SessionService`], which ties a backend to the index;
//! * [`agent`]: the `.prompt` agent-definition parser; [`config`]: the `config.yaml` model;
//! * [`git`]: git requests and results as data, what [`CodingBackend::git`] carries;
//! * [`redact`]: secret redaction and the [`Secret`] type; [`process`]: the only way to spawn a
//!   child, and [`agent_process`]: the one lifecycle of a coding agent run as a subprocess.
#![warn(missing_docs)]

pub mod agent;
pub mod agent_process;
pub mod backend;
pub mod budget;
mod claim;
pub mod config;
mod error;
pub mod event;
pub mod fsutil;
pub mod git;
pub mod history;
pub mod model;
pub mod policy;
pub mod pricing;
pub mod process;
pub mod redact;
pub mod registry;
pub mod run;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod title;
pub mod workspace;
mod yaml;

pub use backend::{BackendSession, Capabilities, CodingBackend, ExecContext, Health};
pub use claim::{FileLock, SessionClaim};
pub use error::{Error, ErrorKind, InputError, Result};
pub use event::{Event, EventKind, EventSink, PlanEntry};
pub use model::{
    FileAction, FileChange, OpenRequest, Outcome, RepoSpec, Session, SessionId, SessionWorktree,
    StopReason, Task, ToolCall, Usage,
};
pub use redact::{Redactor, Secret};
pub use registry::{BackendFactory, BackendRegistry};
pub use run::{CancelSignal, RunOptions, TaskRun, start_task};
pub use service::SessionService;
pub use store::SessionIndex;
