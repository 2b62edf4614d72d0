//! Test kit for Station backends. Not a stable API.
//!
//! * [`model_server`]: a scripted model server (OpenAI Chat Completions, Anthropic Messages and Gemini)
//!   on 127.0.0.1, so real coding agents run offline and deterministically.
//! * [`peers`]: locate the pinned real peers (`opencode`, `claude`, `nats-server`) and build the
//!   isolated environment each one runs in.
//! * [`git_server`]: a git smart-HTTP server on 127.0.0.1 that demands basic auth (the system
//!   `git http-backend` behind axum), plus git fixtures.
//! * [`otlp`]: an OTLP/HTTP receiver on 127.0.0.1 that records spans and metrics.
//! * [`process`]: whether any process of a group is still alive.
//! * [`conformance`]: checks every [`CodingBackend`](station_core::CodingBackend) runs against itself.
#![warn(missing_docs)]

pub mod conformance;
pub mod fake_acp;
pub mod git_server;
pub mod model_server;
pub mod nats_cluster;
pub mod otlp;
pub mod peers;
pub mod policy_scenario;
pub mod process;
