//! Integration tests of the `claudecode` backend: the stream-json parser over recorded
//! transcripts, the backend against fake `claude` scripts, and the real CLI against the scripted
//! model server.

mod fake_cli;
mod fake_control;
mod parser;
mod policy;
mod real_claude;
mod support;
