//! The HTTP layer: URLs with the workspace directory, basic auth, per-request deadlines,
//! retries for idempotent calls only, the `/event` subscription, and error mapping.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use station_core::{Error, Result, Secret};

use crate::HttpTuning;
use crate::text::{body_for_error, redact};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The backend name used in errors.
pub(crate) const NAME: &str = "opencode";

/// Whether a call may be repeated after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Idempotent: retried on transport errors, 5xx and 429.
    Idempotent,
    /// Sent once (creating a session, sending a prompt).
    Once,
}

/// A client bound to one OpenCode server.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    shown_base: String,
    auth: Option<(String, Secret)>,
    attempts: u32,
    tuning: HttpTuning,
}

/// One request.
struct Call<'a> {
    method: Method,
    segments: &'a [&'a str],
    directory: Option<&'a str>,
    query: &'a [(&'a str, &'a str)],
    body: Option<&'a Value>,
    retry: Retry,
    timeout: Duration,
}

impl Call<'_> {
    fn describe(&self) -> String {
        format!("{} /{}", self.method, self.segments.join("/"))
    }
}

impl Client {
    pub(crate) fn new(
        base: Url,
        auth: Option<(String, Secret)>,
        attempts: u32,
        tuning: HttpTuning,
    ) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(tuning.connect_timeout)
            .user_agent(concat!("station/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&base) {
            // A proxy from the environment cannot reach this machine's loopback.
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| Error::backend(NAME, format!("cannot build the HTTP client: {e}")))?;
        let mut shown = base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let shown_base = shown.as_str().trim_end_matches('/').to_string();
        Ok(Client {
            http,
            base,
            shown_base,
            auth,
            attempts: attempts.max(1),
            tuning,
        })
    }

    /// The server URL without credentials, for messages.
    pub(crate) fn shown_base(&self) -> &str {
        &self.shown_base
    }

    /// `base/segments...?directory=...&extra...`, every part percent-encoded.
    pub(crate) fn url(
        &self,
        segments: &[&str],
        directory: Option<&str>,
        query: &[(&str, &str)],
    ) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let pairs: Vec<String> = directory
            .map(|d| ("directory", d))
            .into_iter()
            .chain(query.iter().copied())
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        let query = pairs.join("&");
        url.set_query(if query.is_empty() { None } else { Some(&query) });
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.auth {
            Some((user, password)) => req.basic_auth(user, Some(password.expose())),
            None => req,
        }
    }

    /// Send a call, with retries when it is idempotent; the body of a 2xx answer.
    async fn exchange(&self, call: Call<'_>) -> Result<Bytes> {
        let url = self.url(call.segments, call.directory, call.query);
        let attempts = if call.retry == Retry::Idempotent {
            self.attempts
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .request(call.method.clone(), url.clone())
                .timeout(call.timeout);
            if let Some(body) = call.body {
                req = req.json(body);
            }
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.bytes().await.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            let retryable = match &result {
                Ok((status, _)) => {
                    status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
            };
            match result {
                Ok((status, body)) if status.is_success() => return Ok(body),
                _ if retryable && attempt < attempts => {
                    tracing::debug!(op = %call.describe(), attempt, "OpenCode call failed; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Ok((status, body)) => return Err(self.status_error(&call, status, &body, attempt)),
                Err(e) => {
                    return Err(self.transport_error(&call.describe(), &e, call.timeout, attempt));
                }
            }
        }
    }

    /// Delay before attempt `failed + 1`.
    pub(crate) fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32 << failed.saturating_sub(1).min(10);
        (self.tuning.backoff_base * factor).min(MAX_BACKOFF)
    }

    fn status_error(
        &self,
        call: &Call<'_>,
        status: StatusCode,
        body: &[u8],
        attempts: u32,
    ) -> Error {
        let op = call.describe();
        let code = status.as_u16();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Auth {
                message: self.auth_hint(code),
            },
            StatusCode::NOT_FOUND => match call.segments {
                ["session", id, ..] => Error::session_not_found(*id),
                _ => Error::Backend {
                    backend: NAME.into(),
                    message: format!(
                        "{op} is not served by {} (HTTP 404): {}; is it an OpenCode server?",
                        self.shown_base,
                        body_for_error(body)
                    ),
                },
            },
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                let tries = if attempts > 1 {
                    format!(" after {attempts} attempts")
                } else {
                    String::new()
                };
                Error::backend(
                    NAME,
                    format!(
                        "{op} failed with HTTP {code}{tries}: {}",
                        body_for_error(body)
                    ),
                )
            }
            _ => Error::backend(
                NAME,
                format!(
                    "{op} was rejected with HTTP {code}: {}",
                    body_for_error(body)
                ),
            ),
        }
    }

    fn auth_hint(&self, code: u16) -> String {
        let how = "set the password in coding.opencode.password or OPENCODE_SERVER_PASSWORD (user: coding.opencode.username, default `opencode`)";
        match &self.auth {
            Some((user, _)) => format!(
                "the OpenCode server at {} rejected the password for user `{user}` (HTTP {code}); {how}",
                self.shown_base
            ),
            None => format!(
                "the OpenCode server at {} requires a password (HTTP {code}); {how}",
                self.shown_base
            ),
        }
    }

    pub(crate) fn transport_error(
        &self,
        op: &str,
        e: &reqwest::Error,
        timeout: Duration,
        attempts: u32,
    ) -> Error {
        let tries = if attempts > 1 {
            format!(" ({attempts} attempts)")
        } else {
            String::new()
        };
        if e.is_timeout() {
            return Error::Timeout {
                operation: format!("{op} on the OpenCode server at {}{tries}", self.shown_base),
                after: timeout,
            };
        }
        let detail = error_chain(e);
        if e.is_connect() {
            return Error::Unavailable {
                backend: NAME.into(),
                message: self.unreachable_message(&format!("{detail}{tries}")),
            };
        }
        Error::Unavailable {
            backend: NAME.into(),
            message: format!(
                "lost the connection to the OpenCode server at {} during {op}{tries}: {detail}",
                self.shown_base
            ),
        }
    }

    /// The error of a task whose server vanished while it ran (killed, crashed, unplugged).
    pub(crate) fn went_away(&self, cause: &str) -> Error {
        Error::Unavailable {
            backend: NAME.into(),
            message: format!(
                "the OpenCode server at {} went away ({cause}); the task did not finish. Check that \
                 the server runs (or restart it), then continue the session",
                self.shown_base
            ),
        }
    }

    /// What to tell the user when nothing answers at the URL.
    pub(crate) fn unreachable_message(&self, detail: &str) -> String {
        let port = self.base.port_or_known_default().unwrap_or(4096);
        let container = if running_in_container() {
            "; Station runs in a container, where localhost is the container itself: start the server with \
             `--hostname 0.0.0.0` and point coding.opencode.url at the host it runs on"
                .to_string()
        } else {
            format!(
                " (with `--hostname 0.0.0.0 --port {port}` when Station runs in a container and must reach it)"
            )
        };
        format!(
            "cannot connect to the OpenCode server at {} ({detail}). Start it with `opencode serve --port {port}`{container}, \
             or set coding.opencode.url to where it runs",
            self.shown_base
        )
    }

    /// `GET`, retried; the JSON answer.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        directory: Option<&str>,
        query: &[(&str, &str)],
    ) -> Result<T> {
        self.get_json_within(segments, directory, query, self.tuning.request_timeout)
            .await
    }

    /// `GET` with its own deadline per attempt.
    pub(crate) async fn get_json_within<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        directory: Option<&str>,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<T> {
        let call = Call {
            method: Method::GET,
            segments,
            directory,
            query,
            body: None,
            retry: Retry::Idempotent,
            timeout,
        };
        let op = call.describe();
        let body = self.exchange(call).await?;
        parse_json(&op, &body)
    }

    /// `POST` with a JSON body; the JSON answer.
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        directory: Option<&str>,
        body: &Value,
        retry: Retry,
    ) -> Result<T> {
        let call = Call {
            method: Method::POST,
            segments,
            directory,
            query: &[],
            body: Some(body),
            retry,
            timeout: self.tuning.request_timeout,
        };
        let op = call.describe();
        let body = self.exchange(call).await?;
        parse_json(&op, &body)
    }

    /// `POST` whose answer is ignored (`prompt_async` answers 204).
    pub(crate) async fn post_unit(
        &self,
        segments: &[&str],
        directory: Option<&str>,
        body: Option<&Value>,
        retry: Retry,
        timeout: Duration,
    ) -> Result<()> {
        let call = Call {
            method: Method::POST,
            segments,
            directory,
            query: &[],
            body,
            retry,
            timeout,
        };
        self.exchange(call).await.map(|_| ())
    }

    /// `DELETE`, retried.
    pub(crate) async fn delete(&self, segments: &[&str], directory: Option<&str>) -> Result<()> {
        let call = Call {
            method: Method::DELETE,
            segments,
            directory,
            query: &[],
            body: None,
            retry: Retry::Idempotent,
            timeout: self.tuning.request_timeout,
        };
        self.exchange(call).await.map(|_| ())
    }

    /// Open `GET /event?directory=...` and wait (briefly) for its first frame, so that the
    /// subscription is live before anything is sent.
    pub(crate) async fn subscribe(&self, directory: Option<&str>) -> Result<Subscription> {
        let op = "GET /event";
        let url = self.url(&["event"], directory, &[]);
        let send = self
            .request(Method::GET, url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send();
        let timeout = self.tuning.request_timeout;
        let resp = match tokio::time::timeout(timeout, send).await {
            Err(_) => {
                return Err(Error::Timeout {
                    operation: format!("{op} on the OpenCode server at {}", self.shown_base),
                    after: timeout,
                });
            }
            Ok(Err(e)) => return Err(self.transport_error(op, &e, timeout, 1)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(Duration::from_secs(2), resp.bytes())
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            let call = Call {
                method: Method::GET,
                segments: &["event"],
                directory,
                query: &[],
                body: None,
                retry: Retry::Once,
                timeout,
            };
            return Err(self.status_error(&call, status, &body, 1));
        }
        let stream: EventStream = Box::pin(
            resp.bytes_stream()
                .eventsource()
                .map(|r| r.map(|e| e.data).map_err(|e| e.to_string())),
        );
        let mut sub = Subscription {
            stream,
            first: None,
        };
        match tokio::time::timeout(self.tuning.first_frame, sub.stream.next()).await {
            Ok(Some(Ok(data))) => sub.first = Some(data),
            Ok(Some(Err(e))) => {
                return Err(Error::Unavailable {
                    backend: NAME.into(),
                    message: format!(
                        "the event stream of {} failed right away: {}",
                        self.shown_base,
                        redact(&e)
                    ),
                });
            }
            Ok(None) => {
                return Err(Error::Unavailable {
                    backend: NAME.into(),
                    message: format!("the event stream of {} closed right away", self.shown_base),
                });
            }
            // Some servers send nothing until something happens; the subscription is open.
            Err(_) => {}
        }
        Ok(sub)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = std::result::Result<String, String>> + Send>>;

/// A live `/event` stream.
pub(crate) struct Subscription {
    stream: EventStream,
    first: Option<String>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The `data` of the next frame; `None` when the stream ended; `Err` when it broke.
    pub(crate) async fn next(&mut self) -> Option<std::result::Result<String, String>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        self.stream.next().await
    }
}

fn parse_json<T: DeserializeOwned>(op: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        let start: String = text.chars().take(120).collect();
        Error::Protocol(format!("{op}: the OpenCode server sent a response that is not the expected JSON ({e}); it starts with: {}", redact(start.trim())))
    })
}

/// The error and its sources, as one line, redacted.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    redact(&parts.join(": "))
}

/// Percent-encode everything but unreserved characters and `/` (so `+`, `&`, `#`, `%`, spaces and
/// non-ASCII in a directory survive any query decoder).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn running_in_container() -> bool {
    std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(Url::parse(base).unwrap(), None, 3, HttpTuning::default()).unwrap()
    }

    #[test]
    fn urls_encode_directory_and_segments() {
        let c = client("http://127.0.0.1:4096");
        let url = c.url(
            &["session", "ses_1", "message"],
            Some("/tmp/my ws/a+b&c#d/ü"),
            &[("limit", "5")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:4096/session/ses_1/message?directory=/tmp/my%20ws/a%2Bb%26c%23d/%C3%BC&limit=5"
        );
        let decoded: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            decoded[0],
            ("directory".to_string(), "/tmp/my ws/a+b&c#d/ü".to_string())
        );
        let prefixed = client("http://127.0.0.1:4096/opencode/");
        assert_eq!(
            prefixed.url(&["session", "a/b"], None, &[]).as_str(),
            "http://127.0.0.1:4096/opencode/session/a%2Fb"
        );
    }

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        let c = client("http://user:hunter2hunter2@127.0.0.1:4096/");
        assert_eq!(c.shown_base(), "http://127.0.0.1:4096");
        assert!(!c.unreachable_message("refused").contains("hunter2"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = client("http://127.0.0.1:1");
        let base = HttpTuning::default().backoff_base;
        assert_eq!(c.backoff(1), base);
        assert_eq!(c.backoff(2), base * 2);
        assert_eq!(c.backoff(30), MAX_BACKOFF);
    }
}
