//! The Station agent runtime: an orchestrating model (OpenAI or Anthropic, through our
//! [`LlmClient`] trait) runs an agent definition in a tool-calling loop; coding agents get the
//! coding tools ([`CodingTools`]), bound to the one station-level coding backend.
#![warn(missing_docs)]

pub mod args;
pub mod git;
pub mod llm;
pub mod runtime;
mod tool_args;
pub mod tools;
pub mod worktree;

pub use git::{GitOps, LocalGit};
pub use llm::{GenaiClient, LlmClient, LlmSettings, ModelRef};
pub use runtime::{AgentEvent, AgentReport, Runtime};
pub use tools::CodingTools;
