//! End-to-end tests of the `stn` binary.

mod agent;
mod config;
mod support;
