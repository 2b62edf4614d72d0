//! The `claudecode` coding backend: drives the Claude Code CLI (`claude -p`) as a
//! [`CodingBackend`](station_core::CodingBackend).
//!
//! Each task is one `claude` process, started in the session's workspace in its own process
//! group:
//!
//! ```text
//! claude -p --input-format=stream-json --output-format=stream-json --verbose --include-partial-messages \
//!        --permission-mode=default --permission-prompt-tool=stdio --max-turns=N [--model=M] \
//!        [--resume=<session uuid>] [--allowed-tools=a,b] [--disallowed-tools=x,y]
//!        < initialize, one stream-json user message, then answers to control requests
//! ```
//!
//! * **The prompt** goes in on stdin as a stream-json user message. It is never an argument, so
//!   a prompt that starts with `-` is just text, and it does not show up in `ps`. Stdin stays
//!   open for the turn (the policy is answered there) and is closed once the `result` line came,
//!   so the CLI exits.
//! * **Output** is parsed line by line, without a line-length limit, by [`parser::StreamParser`]:
//!   events are emitted as they arrive; the outcome's final text, usage, cost, turn count and
//!   error come from the CLI's `result` line; tool outputs are paired with their calls by
//!   `tool_use_id`. A line that is not JSON becomes a `Notice` and parsing goes on.
//! * **Stop.** The process runs through core's
//!   [`AgentProcess`](station_core::agent_process::AgentProcess) lifecycle. Cancel, and the
//!   runner's task deadline (the only one; `stn` makes `coding.claudecode.timeout_sec` its
//!   default), end the whole process group (SIGTERM, then SIGKILL); when `claude` exits,
//!   anything it left running in its group is killed too. A `claude` that prints its `result`
//!   but does not exit within 5 s is stopped the same way, and its result kept.
//! * **Files changed** are recorded by the runner for every local workspace
//!   ([`station_core::workspace`], `Capabilities::local_workspace`).
//!
//! # Permissions: `coding.policy`
//!
//! The policy ([`with_policy`](ClaudeBackend::with_policy), from `coding.policy`; a task's own
//! [`Task::policy`](station_core::Task::policy) wins) is enforced by Claude Code itself, through
//! its stream-json control protocol, never by telling the model:
//!
//! * the first stdin line is an `initialize` control request registering one `PreToolUse` hook
//!   for every tool (`matcher: "*"`). Each tool call — including read-only commands and tools
//!   Claude's own permission prompt lets through unasked — arrives as a `hook_callback` before
//!   it runs, and is answered `permissionDecision: allow | deny`;
//! * `--permission-prompt-tool=stdio` sends Claude's own permission prompts (`can_use_tool`)
//!   to us as well; they get the same decision (judged once per `tool_use_id`).
//!
//! Each request becomes [`Action::of_tool_call`](station_core::policy::Action::of_tool_call)
//! and is decided by [`Policy::judge`](station_core::policy::Policy::judge): the decision is
//! an audit event (listed in the outcome), `ask` goes to the caller's permission handler
//! (nobody to ask = deny), and a deny tells the model the rule. Without a policy everything
//! inside the workspace is allowed and anything outside it denied. The CLI's
//! `--dangerously-skip-permissions` is no longer used, so running as root needs no
//! `IS_SANDBOX`.
//!
//! # Authentication
//!
//! Claude Code keeps its own credentials: its `claude login`, or `ANTHROPIC_API_KEY` (or
//! `ANTHROPIC_AUTH_TOKEN`, `CLAUDE_CODE_OAUTH_TOKEN`, Bedrock/Vertex settings) in the environment
//! Station was started with, which the child inherits. Station never hands it credentials of
//! its own configuration. [`health`](station_core::CodingBackend::health) says which source it
//! found, never a value.
//!
//! # Sessions and continuation
//!
//! A Claude session id (a UUID) exists only after the first task, so [`open`] leaves
//! `backend_session_id` empty and the task's outcome reports it. Later tasks pass it to
//! `--resume`. Claude keeps transcripts per working directory
//! (`<CLAUDE_CONFIG_DIR or ~/.claude>/projects/<cwd, non-alphanumerics as '-'>/<id>.jsonl`) and
//! resumes a session only from the directory it was created in, so:
//!
//! * `open` with `resume` finds the transcript, takes the session's directory from it as the
//!   workspace, and refuses a different `workspace` with a message that names both;
//! * a resume the CLI itself cannot find (`No conversation found`) is
//!   [`Error::NotFound`](station_core::Error::NotFound).
//!
//! [`list_sessions`](station_core::CodingBackend::list_sessions) reads the same transcripts.
//! `open` creates the workspace directory (under the workspace base when none is given); it
//! records `repo` but does not clone it.
//!
//! [`open`]: station_core::CodingBackend::open
#![warn(missing_docs)]

mod backend;
mod config;
mod control;
pub mod parser;
mod transcripts;

pub use backend::{ClaudeBackend, NAME};
pub use config::{ClaudeConfig, ClaudeFactory};
