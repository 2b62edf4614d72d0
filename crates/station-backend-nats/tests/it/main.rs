//! Integration tests: a real nats-server, real workers, fake executors.

mod compat;
mod faults;
mod flow;
mod support;
mod tls;
