//! The HTTP transport's gate: `Origin` (a web page must not drive the coding tools), `Host`
//! (DNS rebinding) and the bearer token. Every request passes it before reaching MCP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, uri::Authority};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;
use station_core::redact::Secret;
use subtle::ConstantTimeEq as _;

/// Shortest accepted bearer token: shorter ones are guessable (and too short to redact).
pub const MIN_TOKEN_LEN: usize = 16;

/// A new bearer token: 32 random bytes from the operating system, base64url.
pub fn generate_token() -> Result<Secret, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

/// A browser origin: scheme, host, port (default port filled in), or the opaque `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The opaque origin of sandboxed pages and files.
    Null,
    /// A site.
    Site {
        /// `http` or `https`.
        scheme: String,
        /// Lower-case host, without IPv6 brackets.
        host: String,
        /// Port, the scheme's default when not given.
        port: u16,
    },
}

/// Parse an origin (`https://app.example`, `http://localhost:3000`, `null`); the error says why
/// it is not one.
pub fn parse_origin(value: &str) -> Result<Origin, String> {
    let value = value.trim();
    if value == "null" {
        return Ok(Origin::Null);
    }
    let trimmed = value.strip_suffix('/').unwrap_or(value);
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err("an origin is scheme://host[:port], e.g. http://localhost:3000".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("its scheme `{scheme}` is not http or https")),
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err("an origin is scheme://host[:port], without a path, query or user".into());
    }
    let authority: Authority = rest
        .parse()
        .map_err(|e| format!("`{rest}` is not a host[:port]: {e}"))?;
    Ok(Origin::Site {
        scheme,
        host: bare_host(authority.host()),
        port: authority.port_u16().unwrap_or(default_port),
    })
}

fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// How the gate names the server in its refusals: the MCP server by default; `stn ui` has its own.
#[derive(Debug, Clone, Copy)]
pub struct GuardWording {
    /// What is being refused, e.g. `this MCP server`.
    pub server: &'static str,
    /// The path clients connect to, e.g. `/mcp`.
    pub path: &'static str,
    /// The command that allows another origin, e.g. `stn mcp --http ADDR`.
    pub command: &'static str,
    /// Where the bearer token comes from.
    pub token_fix: &'static str,
    /// A request in log lines, e.g. `an MCP request`.
    pub request: &'static str,
}

impl GuardWording {
    /// The wording of `stn mcp --http`.
    pub const MCP: GuardWording = GuardWording {
        server: "this MCP server",
        path: crate::server::HTTP_PATH,
        command: "stn mcp --http ADDR",
        token_fix: "send `Authorization: Bearer <token>` with the token `stn mcp` printed at start (or the value of STN_MCP_TOKEN / the --token-env variable)",
        request: "an MCP request",
    };
}

/// What the gate lets through.
#[derive(Debug)]
pub struct HttpGuard {
    /// The server's own origins and the configured ones.
    origins: Vec<Origin>,
    /// Host names the server answers to; `None`: any (remote access was allowed).
    hosts: Option<Vec<String>>,
    port: u16,
    token: Option<Secret>,
    wording: GuardWording,
}

const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl HttpGuard {
    /// The gate of a server listening on `local_addr`: its own origins plus `allowed_origins`;
    /// any Host when `allow_remote`; the bearer `token` when set.
    pub fn new(
        local_addr: SocketAddr,
        allowed_origins: Vec<Origin>,
        allow_remote: bool,
        token: Option<Secret>,
    ) -> Self {
        let port = local_addr.port();
        let listen_host = bare_host(&local_addr.ip().to_string());
        let mut hosts: Vec<String> = LOCAL_NAMES.iter().map(|h| h.to_string()).collect();
        if !hosts.contains(&listen_host) {
            hosts.push(listen_host);
        }
        let mut origins: Vec<Origin> = hosts
            .iter()
            .map(|host| Origin::Site {
                scheme: "http".into(),
                host: host.clone(),
                port,
            })
            .collect();
        origins.extend(allowed_origins);
        HttpGuard {
            origins,
            hosts: (!allow_remote).then_some(hosts),
            port,
            token,
            wording: GuardWording::MCP,
        }
    }

    /// Name another server in refusals.
    pub fn with_wording(mut self, wording: GuardWording) -> Self {
        self.wording = wording;
        self
    }

    /// `Err`: the response that refuses the request.
    fn check(&self, headers: &HeaderMap, uri_authority: Option<&Authority>) -> Result<(), Refusal> {
        self.check_host(headers, uri_authority)?;
        self.check_origin(headers)?;
        self.check_token(headers)
    }

    /// Check Host and Origin, and the bearer token when `with_token` (a page shell that holds
    /// no data can be fetched without it); `Some` is the refusal to send.
    pub fn refusal(
        &self,
        headers: &HeaderMap,
        uri_authority: Option<&Authority>,
        with_token: bool,
    ) -> Option<Response> {
        let checked = if with_token {
            self.check(headers, uri_authority)
        } else {
            self.check_host(headers, uri_authority)
                .and_then(|()| self.check_origin(headers))
        };
        checked.err().map(Refusal::response)
    }

    fn check_host(
        &self,
        headers: &HeaderMap,
        uri_authority: Option<&Authority>,
    ) -> Result<(), Refusal> {
        let Some(hosts) = &self.hosts else {
            return Ok(());
        };
        let host = match headers.get(header::HOST) {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|h| h.parse::<Authority>().ok()),
            None => uri_authority.cloned(),
        };
        let allowed = host.as_ref().is_some_and(|a| {
            hosts.contains(&bare_host(a.host())) && a.port_u16().unwrap_or(80) == self.port
        });
        if allowed {
            return Ok(());
        }
        let shown = host.map_or_else(|| "(none)".to_string(), |a| a.to_string());
        tracing::warn!(host = %shown, "refused {} for another host (DNS rebinding?)", self.wording.request);
        Err(refusal(
            StatusCode::FORBIDDEN,
            format!(
                "Host `{shown}` is not {}'s (a DNS rebinding attempt, or the wrong address)",
                self.wording.server
            ),
            format!(
                "connect to http://127.0.0.1:{}{} or http://localhost:{0}{1}; to be reached under other names, serve with remote access allowed (and a token)",
                self.port, self.wording.path
            ),
        ))
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        // Clients other than browsers send no Origin; browsers always do on cross-origin calls.
        let Some(value) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if parse_origin(&shown).is_ok_and(|origin| self.origins.contains(&origin)) {
            return Ok(());
        }
        tracing::warn!(origin = %shown, "refused {} from a foreign origin", self.wording.request);
        Err(refusal(
            StatusCode::FORBIDDEN,
            format!(
                "origin `{shown}` is not allowed to use {}",
                self.wording.server
            ),
            format!(
                "if a web page at `{shown}` should use the coding tools, allow it: `{} --allow-origin {shown}`",
                self.wording.command
            ),
        ))
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let fix = self.wording.token_fix;
        let Some(presented) = presented else {
            tracing::warn!("refused {} without a bearer token", self.wording.request);
            return Err(unauthorized(
                &format!("{} needs a bearer token", self.wording.server),
                fix,
                "Bearer",
            ));
        };
        // Constant time: how much of a guess matches must not show in the response time.
        if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
            return Ok(());
        }
        tracing::warn!("refused {} with a wrong bearer token", self.wording.request);
        Err(unauthorized(
            "the bearer token is wrong",
            fix,
            "Bearer error=\"invalid_token\"",
        ))
    }
}

/// Why a request is refused; [`Refusal::response`] tells the client.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: String,
    fix: String,
    /// `WWW-Authenticate` for 401s.
    challenge: Option<&'static str>,
}

fn refusal(status: StatusCode, error: String, fix: String) -> Refusal {
    Refusal {
        status,
        error,
        fix,
        challenge: None,
    }
}

fn unauthorized(error: &str, fix: &str, challenge: &'static str) -> Refusal {
    Refusal {
        challenge: Some(challenge),
        ..refusal(StatusCode::UNAUTHORIZED, error.into(), fix.into())
    }
}

impl Refusal {
    fn response(self) -> Response {
        let body = json!({ "error": self.error, "fix": self.fix }).to_string();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(challenge) = self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The axum middleware: refuse, or pass the request on without its `Authorization` header
/// (nothing after the gate needs the token, so nothing after it can leak it).
pub(crate) async fn guard_requests(
    State(guard): State<Arc<HttpGuard>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(refused) = guard.check(request.headers(), request.uri().authority()) {
        return refused.response();
    }
    request.headers_mut().remove(header::AUTHORIZATION);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_their_default_ports() {
        assert_eq!(
            parse_origin("https://App.example/").unwrap(),
            Origin::Site {
                scheme: "https".into(),
                host: "app.example".into(),
                port: 443
            }
        );
        assert_eq!(
            parse_origin("http://[::1]:8080").unwrap(),
            Origin::Site {
                scheme: "http".into(),
                host: "::1".into(),
                port: 8080
            }
        );
        assert_eq!(parse_origin("null").unwrap(), Origin::Null);
        for bad in ["app.example", "ftp://x", "https://x/path", "https://"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_tokens_are_long_and_differ() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
    }
}
