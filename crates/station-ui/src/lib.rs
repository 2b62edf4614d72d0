//! `stn ui`: a small local web app to watch, review and steer coding sessions.
//!
//! One page (HTML, CSS and vanilla JS embedded in the binary, no build step), a JSON API under
//! `/api` and a server-sent event stream per running task. Sessions come from the
//! [`SessionIndex`]; tasks started from the page run in this process through a
//! [`SessionService`] per backend (from a [`ServiceSource`]) so they can be streamed and
//! cancelled. The gate in front is station-mcp's [`HttpGuard`] (Host, Origin, bearer token).

mod api;
mod assets;
mod live;
mod server;

pub use api::{SessionRow, sessions_page};
pub use server::{BoundUi, UiOptions, UiServeError, UiServer};

use station_core::{Result, SessionService};

/// Where tasks started from the page run: one [`SessionService`] per backend name, built the
/// way the embedding program builds them (`stn` uses its backend registry and config).
#[async_trait::async_trait]
pub trait ServiceSource: Send + Sync + std::fmt::Debug + 'static {
    /// The backend a new session uses when the page names none.
    fn default_backend(&self) -> String;
    /// The service for `backend` (built on first use, then reused).
    async fn service(&self, backend: &str) -> Result<SessionService>;
    /// Stop what the built services started (called once when the server stops).
    async fn shutdown(&self) {}
}
