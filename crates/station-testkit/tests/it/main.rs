//! Integration tests of the test kit: the scripted model server over HTTP, its binary, and
//! the real peers (`opencode`, `claude`, `nats-server`) driven against it.

mod binary;
mod gemini_api;
mod model_server;
mod real_peers;
mod responses;
mod support;
