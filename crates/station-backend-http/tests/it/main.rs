//! Integration tests of the OpenCode HTTP backend: a mocked server (wiremock), a scripted
//! streaming server (axum), the captured real event stream, and the real `opencode serve`.

mod events;
mod fake;
mod mock;
mod policy;
mod real;
mod streaming;
mod support;
