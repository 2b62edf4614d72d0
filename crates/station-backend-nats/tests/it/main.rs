//! Integration tests: a real nats-server, real workers, fake executors.

mod compat;
mod creds;
mod faults;
mod flow;
mod git;
mod support;
mod tls;
