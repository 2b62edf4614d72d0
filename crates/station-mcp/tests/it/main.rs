//! Integration tests of the MCP server: an rmcp client over stdio (a child process, and an
//! in-process pipe with the same framing) and over streamable HTTP, against an in-process
//! backend and the real `opencode`.

#![allow(deprecated)] // MCP logging notifications are deprecated (SEP-2577) but still used.

mod ask;
mod fake;
mod http;
mod real;
mod stdio;
mod support;
