//! End-to-end tests of the `stn` binary.

mod agent;
mod agent_run;
mod config;
mod conventions;
mod e2e;
mod hardening;
mod mcp;
mod nats;
mod sessions;
mod support;
