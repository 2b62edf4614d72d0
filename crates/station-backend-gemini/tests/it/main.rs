//! Integration tests of the `gemini` backend: the stream-json parser over captured output, and
//! the real Gemini CLI against the scripted model server.

mod parser;
mod policy;
mod real_gemini;
