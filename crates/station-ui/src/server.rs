//! The server: options, binding (with the loopback/token rules of `stn mcp --http`), routes and
//! the gate in front of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use station_core::redact::{Redactor, Secret};
use station_core::{Session, SessionIndex, SessionService, Task};
use station_mcp::{GuardWording, HttpGuard, MIN_TOKEN_LEN, parse_origin};

use crate::ServiceSource;
use crate::live::Live;
use crate::{api, assets};

/// How `stn ui` serves.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// Serve on an address other than loopback, under any host name; needs a
    /// [`token`](Self::token).
    pub allow_remote: bool,
    /// Browser origins allowed besides the server's own.
    pub allowed_origins: Vec<String>,
    /// Every API call must carry `Authorization: Bearer <token>`; the page reads it from the
    /// `#token=` part of its address (never sent to the server) and sends it.
    pub token: Option<Secret>,
    /// How long a rewind waits for a busy session (`coding.session_busy_wait_sec`).
    pub busy_wait: Duration,
}

/// Why the UI could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiServeError {
    /// Not loopback, and remote access was not allowed.
    #[error(
        "refusing to serve the UI on {addr}: it is not a loopback address, and the page starts coding tasks on this machine; use 127.0.0.1 or [::1], or pass --allow-remote (a token is then required)"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Remote access without a token.
    #[error(
        "refusing to serve the UI on {addr} for remote browsers without a bearer token; set STN_UI_TOKEN (or --token-env VAR), or let `stn ui` generate one"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token is too short to be safe.
    #[error(
        "the UI bearer token is too short ({len} characters); use at least {MIN_TOKEN_LEN} random characters, or let `stn ui` generate one"
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
    #[error(
        "could not listen on {addr}: {source}; pick another port with --listen 127.0.0.1:PORT (0: any free port)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed.
    #[error("the UI server failed: {0}")]
    Serve(std::io::Error),
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Ui {
    pub(crate) index: SessionIndex,
    pub(crate) services: Arc<dyn ServiceSource>,
    pub(crate) live: Live,
    pub(crate) busy_wait: Duration,
}

impl Ui {
    /// Run `task` on `session` through `service`, streamed to the page.
    pub(crate) fn start(&self, service: &SessionService, session: &Session, task: Task) {
        let run = service.execute(session, task);
        self.live.track(session.id.clone(), run, || {});
    }
}

/// The UI over a session index, starting tasks through `services`.
#[derive(Debug)]
pub struct UiServer {
    index: SessionIndex,
    services: Arc<dyn ServiceSource>,
}

impl UiServer {
    /// A UI over `index`.
    pub fn new(index: SessionIndex, services: Arc<dyn ServiceSource>) -> Self {
        UiServer { index, services }
    }

    /// Listen on `addr` (port 0 picks one). The same rules as `stn mcp --http`: loopback
    /// unless `allow_remote`, which needs a token of at least [`MIN_TOKEN_LEN`] characters.
    pub async fn bind(self, addr: SocketAddr, options: UiOptions) -> Result<BoundUi, UiServeError> {
        if !addr.ip().is_loopback() && !options.allow_remote {
            return Err(UiServeError::NotLoopback { addr });
        }
        match &options.token {
            None if options.allow_remote => return Err(UiServeError::TokenRequired { addr }),
            Some(token) if token.expose().chars().count() < MIN_TOKEN_LEN => {
                return Err(UiServeError::WeakToken {
                    len: token.expose().chars().count(),
                });
            }
            Some(token) => Redactor::global().register(token),
            None => {}
        }
        let origins = options
            .allowed_origins
            .iter()
            .map(|origin| {
                parse_origin(origin).map_err(|reason| UiServeError::BadOrigin {
                    origin: origin.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| UiServeError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| UiServeError::Bind { addr, source })?;
        let guard = HttpGuard::new(local_addr, origins, options.allow_remote, options.token)
            .with_wording(WORDING);
        let ui = Arc::new(Ui {
            index: self.index,
            services: self.services,
            live: Live::default(),
            busy_wait: options.busy_wait,
        });
        Ok(BoundUi {
            ui,
            listener,
            local_addr,
            guard: Arc::new(guard),
        })
    }
}

const WORDING: GuardWording = GuardWording {
    server: "this `stn ui` server",
    path: "/",
    command: "stn ui --listen ADDR",
    token_fix: "open the address `stn ui` printed at start (it ends in #token=...), or add #token=<token> to the address (the value of STN_UI_TOKEN / the --token-env variable)",
    request: "a UI request",
};

/// A UI listening, not yet serving.
#[derive(Debug)]
pub struct BoundUi {
    ui: Arc<Ui>,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    guard: Arc<HttpGuard>,
}

impl BoundUi {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// The routes behind the gate.
    fn router(&self) -> Router {
        let api = Router::new()
            .route(
                "/api/sessions",
                get(api::list_sessions).post(api::new_session),
            )
            .route("/api/sessions/{id}", get(api::show_session))
            .route("/api/sessions/{id}/tasks", post(api::start_task))
            .route(
                "/api/sessions/{id}/tasks/{task}/patch",
                get(api::task_patch),
            )
            .route("/api/sessions/{id}/cancel", post(api::cancel_task))
            .route("/api/sessions/{id}/rewind", post(api::rewind))
            .route("/api/sessions/{id}/events", get(api::events))
            .with_state(self.ui.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.guard.clone(),
                guard_api,
            ));
        let page = Router::new()
            .route("/", get(assets::index))
            .route("/app.js", get(assets::script))
            .route("/app.css", get(assets::style))
            .layer(axum::middleware::from_fn_with_state(
                self.guard.clone(),
                guard_page,
            ));
        api.merge(page)
    }

    /// Serve until `shutdown` resolves; then cancel the tasks started from the page and let
    /// the services stop them.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), UiServeError> {
        let router = self.router();
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(UiServeError::Serve);
        self.ui.live.cancel_all();
        self.ui.services.shutdown().await;
        served
    }
}

/// API calls: Host, Origin and the bearer token; the token header is dropped after the check.
async fn guard_api(
    State(guard): State<Arc<HttpGuard>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = guard.refusal(request.headers(), request.uri().authority(), true) {
        return refused;
    }
    request
        .headers_mut()
        .remove(axum::http::header::AUTHORIZATION);
    next.run(request).await
}

/// The page and its assets hold no data: Host and Origin only (a browser cannot send a header
/// when it opens an address).
async fn guard_page(State(guard): State<Arc<HttpGuard>>, request: Request, next: Next) -> Response {
    if let Some(refused) = guard.refusal(request.headers(), request.uri().authority(), false) {
        return refused;
    }
    next.run(request).await
}
