//! End-to-end tests of the `stn` binary.

mod acp;
mod agent;
mod agent_run;
mod config;
mod e2e;
mod hardening;
mod mcp;
mod nats;
mod support;
