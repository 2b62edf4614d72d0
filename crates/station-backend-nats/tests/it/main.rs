//! Integration tests: a real nats-server, real workers, fake executors (and one real `opencode run`).

mod capacity;
mod cluster;
mod compat;
mod creds;
mod faults;
mod flow;
mod git;
mod support;
mod tls;
