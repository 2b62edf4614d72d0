//! Integration tests: a real git smart-HTTP server with basic auth on 127.0.0.1.

mod allowed_hosts;
mod channel;
mod clone;
mod leaks;
mod local_ops;
mod push;
mod reuse;
mod support;
mod worktree;
