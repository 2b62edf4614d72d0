//! Integration tests of the `acp` backend: the real `opencode acp` and `claude-agent-acp`
//! against a scripted model, and a scripted fake ACP agent for the corner cases.

mod fake;
mod policy;
mod real;
mod support;
