//! The UI server's API on an in-process backend: list, show, start, stream, cancel, patch,
//! rewind, and the gate.

mod api;
mod gate;
mod support;
