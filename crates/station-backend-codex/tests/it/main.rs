//! Integration tests of the `codex` backend: the `--json` parser over recorded and hand-made
//! outputs, and the real `codex` CLI against the scripted model server.

mod parser;
mod policy;
mod real_codex;
