//! Station's default coding backend: an OpenCode server (`opencode serve`) over HTTP.
//!
//! [`HttpBackend`] implements [`CodingBackend`](station_core::CodingBackend) against the server's
//! v1 API:
//!
//! * every session call carries the workspace as the `directory` query parameter
//!   (percent-encoded), so the agent works in the session's workspace, not the server's cwd;
//! * a task subscribes to `GET /event?directory=…` **before** it sends the prompt
//!   (`POST /session/{id}/prompt_async`), streams text, tool calls, file edits and token usage as
//!   they happen, and ends when the session goes idle; the transcript
//!   (`GET /session/{id}/message`) is then re-read so the outcome covers every model call of the
//!   task (tokens including nested cache counts, cost, tool calls with outputs, errors);
//! * a dropped event stream is re-opened (bounded, with backoff) and reconciled with
//!   `GET /session/status`; a vanished server is a clear [`Error::Unavailable`](station_core::Error);
//!   every request has a deadline;
//! * cancel and timeout send `POST /session/{id}/abort`;
//! * only idempotent calls (GET, DELETE, abort) are retried; creating a session and sending a
//!   prompt never are;
//! * `coding.policy` is enforced through the server's permission API: each `permission.asked`
//!   of the task's session is decided by the policy and answered (`once` / `reject`); a managed
//!   server is started with `ask` for every request the policy decides, and a user's own server
//!   whose config lets requests through unasked is reported in `policy_gaps`;
//! * managed mode starts a private `opencode serve` on 127.0.0.1 when asked to (or when the
//!   configured URL is unreachable and `opencode` is installed), and stops its whole process
//!   group when the backend is dropped.
#![warn(missing_docs)]

mod backend;
mod client;
mod config;
mod git;
mod managed;
mod mapper;
mod outcome;
mod permission;
mod text;
pub mod wire;

use std::time::Duration;

pub use backend::HttpBackend;
pub use config::{HttpFactory, ManagedServer, OpencodeConfig, PASSWORD_ENV, URL_ENV};
pub use mapper::{EventMapper, Progress};

/// How to install OpenCode.
pub const INSTALL_HINT: &str = "npm i -g opencode-ai";

/// Deadlines and bounds. The defaults suit a real server; tests shorten them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpTuning {
    /// Deadline for a TCP connection.
    pub connect_timeout: Duration,
    /// Deadline for one ordinary request (each attempt), and for the event stream's headers.
    pub request_timeout: Duration,
    /// Deadline for the health check.
    pub health_timeout: Duration,
    /// How long to wait for the first frame of a new event stream before sending anything.
    pub first_frame: Duration,
    /// A task whose event stream is silent this long asks the server for the session's status.
    pub stream_idle: Duration,
    /// Failed reconnects of the event stream in a row before the task fails.
    pub reconnect_attempts: u32,
    /// First delay between attempts; it doubles, up to 5 s.
    pub backoff_base: Duration,
    /// After the session goes idle, frames are still read until the stream is quiet this long
    /// (late parts arrive after idle).
    pub drain_quiet: Duration,
    /// Longest time spent reading late frames.
    pub drain_max: Duration,
    /// Longest time spent stopping a cancelled task (abort, late frames, transcript).
    pub stop_budget: Duration,
    /// Deadline for a private server to start and become healthy.
    pub server_start_timeout: Duration,
}

impl Default for HttpTuning {
    fn default() -> Self {
        HttpTuning {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            health_timeout: Duration::from_secs(5),
            first_frame: Duration::from_secs(5),
            stream_idle: Duration::from_secs(15),
            reconnect_attempts: 5,
            backoff_base: Duration::from_millis(250),
            drain_quiet: Duration::from_millis(300),
            drain_max: Duration::from_secs(2),
            stop_budget: Duration::from_secs(8),
            server_start_timeout: Duration::from_secs(60),
        }
    }
}
