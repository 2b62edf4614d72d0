//! Real git for coding sessions, through libgit2: clone, branch, status, commit and push, run
//! deterministically instead of asking a model to run git and scraping its prose.
//!
//! Tokens never leak. The token is handed to libgit2 only through its credential callback
//! ([`GitCredentials`]), so it never appears in a remote URL, `.git/config`, argv, a prompt, an
//! event or a log line. URLs that embed credentials are refused. Every error message passes
//! through a [`station_core::Redactor`] that knows the token and its basic-auth forms.
//!
//! Nothing hangs. Each operation runs on a blocking thread with a deadline. Network operations
//! also abort from libgit2's progress callbacks when the deadline or a cancel signal trips, and
//! `https` traffic goes through a local relay ([`relay`](crate#relay)) that is cut at the
//! deadline, so even a server that stops sending mid-stream releases the thread.
//!
//! * [`Git`]: the operations ([`Git::clone_repo`], [`Git::clone_or_reuse`], [`Git::branch`], [`Git::status`],
//!   [`Git::commit`], [`Git::push`], [`Git::add_worktree`], [`Git::remove_worktree`]) and [`Git::execute`] for the command channel;
//! * [`GitRequest`] / [`GitResponse`] / [`GitReply`] (from `station_core::git`): serde types that
//!   carry a git operation over NATS or another remote channel.
//!
//! # Relay
//!
//! libgit2 has no safe per-operation socket timeout, and a blocked `recv` never reaches a
//! progress callback. For `https` remotes the operation therefore talks to the server through a
//! `CONNECT` relay on 127.0.0.1 that this crate owns for the length of the operation (libgit2
//! sees it as a proxy; TLS stays end to end). When the deadline passes, the relay drops both
//! sockets and libgit2 returns at once. Plain `http` (loopback test servers) cannot be relayed
//! this way, because libgit2 connects to plain-http servers directly even with a proxy set: a
//! stall there still returns [`station_core::Error::Timeout`] on time, and the worker thread
//! finishes when the server closes the connection.
#![warn(missing_docs)]

mod channel;
mod credentials;
mod errors;
mod git;
mod local;
mod network;
mod policy;
mod relay;
mod reuse;
mod worktree;

pub use credentials::{GITHUB_USERNAME, GITLAB_USERNAME, GitCredentials, strip_credentials};
pub use git::{
    CloneOptions, CloneResult, DEFAULT_IDENTITY_EMAIL, DEFAULT_IDENTITY_NAME, Git, PushOptions,
};
/// The request and result types live in core (they cross [`station_core::CodingBackend::git`]);
/// re-exported here for callers that only use this crate.
pub use station_core::git::{
    BranchResult, CommitResult, GitReply, GitRequest, GitResponse, PushResult,
};
