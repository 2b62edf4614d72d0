//! Integration tests of the `opencode-cli` backend: fake `opencode` scripts, parser snapshots,
//! and the real `opencode` against a scripted model.

mod fake;
mod parser;
mod policy;
mod real;
mod support;
