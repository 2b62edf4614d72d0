//! The `gemini` coding backend: drives Google's Gemini CLI headless as a
//! [`CodingBackend`](station_core::CodingBackend).
//!
//! Each task is one `gemini` process, started in the session's workspace in its own process
//! group:
//!
//! ```text
//! gemini --output-format=stream-json --approval-mode=yolo --skip-trust [--model=M] [--resume=<session uuid>]
//!        --policy=<per-run policy file> [--policy=<home>/.gemini/policies] < the instruction
//! ```
//!
//! * **Policy** (`coding.policy`, or the task's own): rendered into a TOML file of the CLI's
//!   policy engine in a Station-owned temporary directory for one run. `--policy` replaces the
//!   user's own policies directory, so that is passed as well. Decisions are audited from the
//!   reported tool calls; what the CLI cannot express is listed by `policy_gaps`.
//!
//! * **The instruction** goes in on stdin, after which stdin is closed: a piped stdin makes the
//!   CLI headless, and the text is never an argument (no argv limit, never read as a flag, not
//!   in `ps`).
//! * **Output** is parsed line by line by [`parser::StreamParser`]: `init` (the session id),
//!   assistant `message` deltas, `tool_use`/`tool_result`, `error` and the final `result`, whose
//!   `stats` give the tokens and the model. The CLI reports no cost; `coding.pricing` prices
//!   the tokens of an outcome without one.
//! * **Exit codes** without a `result`: 53 (session turn limit) is `max_turns`; 41 (auth), 42
//!   (input; an unknown `--resume` id is [`Error::NotFound`](station_core::Error::NotFound)), 52
//!   (config) and others are errors that say what to fix.
//! * **Stop.** Through core's [`AgentProcess`](station_core::agent_process::AgentProcess):
//!   cancel and the runner's deadline (`coding.gemini.timeout_sec` is `stn`'s default) end the
//!   whole process group. The CLI prints no `result` when stopped; the outcome still says
//!   `cancelled` (or `timeout`) with what was seen so far.
//! * **Files changed** come from a before/after snapshot of the workspace.
//!
//! # Authentication and settings
//!
//! The CLI keeps its own settings, login and sessions under `<home>/.gemini` (`home` is
//! `coding.gemini.home`, passed as `GEMINI_CLI_HOME`, else the user's home): `GEMINI_API_KEY`
//! in Station's environment, or the auth type selected in its `settings.json`. Station never
//! hands it credentials of its own configuration (the child environment is stripped of them).
//!
//! # Sessions and continuation
//!
//! The session id (a UUID) comes with the first task's `init` line. Later tasks pass it to
//! `--resume`. The CLI keeps sessions per project directory
//! (`<home>/.gemini/tmp/<project>/chats/session-*-<id8>.jsonl`, the directory in
//! `.project_root`) and resumes only from that directory, so `open` with `resume` finds the
//! session, takes its directory as the workspace, and refuses another.
#![warn(missing_docs)]

mod backend;
mod config;
pub mod parser;
mod policy;
mod sessions;

pub use backend::{GeminiBackend, NAME};
pub use config::{ApprovalMode, GeminiConfig, GeminiFactory};
