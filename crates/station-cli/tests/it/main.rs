//! End-to-end tests of the `stn` binary.

mod acp;
mod agent;
mod agent_run;
mod ask;
mod codex;
mod config;
mod conventions;
mod e2e;
mod gemini;
mod hardening;
mod mcp;
mod nats;
mod nats_cluster;
mod nats_policy;
mod session_diff;
mod sessions;
mod support;
mod telemetry;
#[cfg(feature = "ui")]
mod ui_browser;
#[cfg(feature = "ui")]
mod webdriver;
mod worktree;
