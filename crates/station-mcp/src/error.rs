//! [`McpServeError`]: why serving MCP failed.

use std::net::SocketAddr;

use crate::guard::MIN_TOKEN_LEN;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpServeError {
    /// The address is not loopback and remote access was not allowed.
    #[error(
        "refusing to serve MCP on {addr}: it is not a loopback address, and the coding tools change files and run commands on this machine; use 127.0.0.1 or [::1], or allow remote access explicitly"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Remote access without a bearer token.
    #[error(
        "refusing to serve MCP on {addr} for remote clients without a bearer token: anyone who reaches it could run coding tasks; set a token (STN_MCP_TOKEN, --token-env VAR) or let `stn mcp` generate one"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The bearer token is too short to be safe.
    #[error(
        "the MCP bearer token is too short ({len} characters); use at least {MIN_TOKEN_LEN} random characters, or let `stn mcp` generate one"
    )]
    WeakToken {
        /// Its length.
        len: usize,
    },
    /// An allowed origin is not an origin.
    #[error("allowed origin `{origin}` is not usable: {reason}")]
    BadOrigin {
        /// The value given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Could not listen.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The MCP session could not start (the client did not initialize).
    #[error("the MCP session did not start: {0}")]
    Start(String),
    /// The transport failed.
    #[error("the MCP server failed: {0}")]
    Transport(String),
}
