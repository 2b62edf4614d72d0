//! The `codex` coding backend: drives the OpenAI Codex CLI (`codex exec --json`) as a
//! [`CodingBackend`](station_core::CodingBackend).
//!
//! Each task is one `codex` process, started in the session's workspace in its own process
//! group:
//!
//! ```text
//! codex exec --json --skip-git-repo-check --sandbox=<sandbox> [--model=M] [--config=k=v]... -
//! codex exec resume --json --skip-git-repo-check --config=sandbox_mode="<sandbox>" \
//!       [--model=M] [--config=k=v]... <thread id> -
//! ```
//!
//! * **Policy** (`coding.policy`, or the task's own): Codex asks nobody headless, so the
//!   policy is rendered before the run — the sandbox (never looser than the policy allows),
//!   `--config` overrides after the configured ones, and exec policy rules for `bash.deny` in
//!   a Station-owned `$CODEX_HOME/rules/station-*.rules` removed after the run (a concurrent
//!   run may see it too, which is only stricter). Decisions are audited from the reported
//!   items and, for refused commands (which get no item), from the thread's rollout; what
//!   Codex cannot express is listed by `policy_gaps` and audited as "not enforced".
//!
//! * **The prompt** goes in on stdin (`-`), then stdin is closed: it is never an argument (a
//!   prompt starting with `-` is just text, and it does not show in `ps`), and Codex never waits
//!   for more input. `exec resume` refuses `-s`, so there the sandbox is a config override.
//! * **Output** is parsed line by line by [`parser::ExecParser`]: `thread.started` gives the
//!   thread id, `item.*` events become text, reasoning, tool and file events as they arrive,
//!   `turn.completed` carries the tokens (Codex reports no cost: the runner estimates one from
//!   `coding.pricing`), and `turn.failed`/`error` give a failed outcome that says why.
//! * **Stop.** The process runs through core's
//!   [`AgentProcess`](station_core::agent_process::AgentProcess) lifecycle. Cancel and the
//!   runner's task deadline (`stn` makes `coding.codex.timeout_sec` its default) end the whole
//!   process group (SIGTERM, then SIGKILL). Codex prints no final event when stopped; the
//!   outcome is still complete (tokens of the turns that ended, tool calls so far, files
//!   changed) and says `cancelled` or `timeout`.
//! * **Files changed** are found by snapshotting the workspace before and after the task.
//!
//! # Authentication and `CODEX_HOME`
//!
//! Codex keeps its own login and config in `CODEX_HOME` (default `~/.codex`;
//! `coding.codex.codex_home` sets it for the child): `codex login`, or `OPENAI_API_KEY` /
//! `CODEX_API_KEY`, or a model provider in its `config.toml` with its own key variable. Station
//! never hands it credentials of its own configuration (core's `ChildEnv` withholds them).
//! [`health`](station_core::CodingBackend::health) says which source it found, never a value.
//!
//! # Sessions
//!
//! A Codex thread id (a UUID) exists only after the first task, so `open` leaves
//! `backend_session_id` empty and the task's outcome reports it. Continuing a thread looks up
//! its rollout (`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*-<id>.jsonl`) first: an id that is not
//! a UUID or has no rollout is `NotFound` (Codex itself would silently start a new thread for
//! an unknown name); the workspace defaults to the directory the thread started in.
#![warn(missing_docs)]

mod backend;
mod config;
mod home;
pub mod parser;
mod policy;

pub use backend::{CodexBackend, NAME};
pub use config::{CodexConfig, CodexFactory, Sandbox};
