//! Turning libgit2 failures into `station_core::Error` kinds, every message redacted.

use station_core::{Error, InputError, Redactor};

use crate::credentials::CredentialRefusal;

/// The backend name used in [`Error::Backend`].
pub(crate) const BACKEND: &str = "git";

/// What the credential callback saw, to explain an authentication failure precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// The server asked for credentials and none are configured.
    NoToken,
    /// The server rejected the token we sent.
    Rejected,
    /// The server asked for credentials for another host (a redirect).
    Refused(CredentialRefusal),
    /// The server offered no authentication scheme we can answer with a token.
    UnsupportedScheme,
}

impl AuthFailure {
    pub(crate) fn into_error(self, host: &str) -> Error {
        let message = match self {
            AuthFailure::NoToken => format!(
                "{host} asked for credentials and no git token is configured; set `coding.git.token_env` to the name of an environment variable that holds a token with access to the repository"
            ),
            AuthFailure::Rejected => format!(
                "{host} rejected the git token (HTTP 401); check that it is valid, not expired, and has access to the repository (and the user name in `coding.git.usernames` if the host needs one)"
            ),
            AuthFailure::Refused(CredentialRefusal::OtherHost) => format!(
                "the server for {host} redirected to another host that asked for credentials; the token is only sent to {host}"
            ),
            AuthFailure::Refused(CredentialRefusal::PlainHttp) => {
                format!(
                    "refusing to send the git token to {host} over plain http; use the https URL"
                )
            }
            AuthFailure::Refused(CredentialRefusal::NotAllowed) => format!(
                "{host} asked for credentials but is not an allowed git host, so the token was not sent; add it to `coding.git.allowed_hosts` if it may receive the token"
            ),
            AuthFailure::Refused(CredentialRefusal::NotHttp) => {
                format!("{host} asked for credentials this transport cannot provide")
            }
            AuthFailure::UnsupportedScheme => {
                format!(
                    "{host} asked for credentials in a form other than user name and password (token)"
                )
            }
        };
        Error::Auth { message }
    }
}

/// Context of a failed operation, for mapping its error.
#[derive(Debug)]
pub(crate) struct Failure<'a> {
    /// `git clone`, `git push`, ...
    pub(crate) operation: &'a str,
    /// The remote, for network operations (already free of credentials).
    pub(crate) remote: Option<&'a str>,
    /// The remote's host, for auth messages.
    pub(crate) host: Option<&'a str>,
    /// What the credential callback recorded.
    pub(crate) auth: Option<AuthFailure>,
    /// Text the server sent on the sideband (`remote: ...`), if any.
    pub(crate) remote_said: &'a str,
}

impl<'a> Failure<'a> {
    pub(crate) fn local(operation: &'a str) -> Self {
        Failure {
            operation,
            remote: None,
            host: None,
            auth: None,
            remote_said: "",
        }
    }

    /// Map a libgit2 error. The caller redacts the result with [`sanitize`].
    pub(crate) fn map(&self, e: &git2::Error) -> Error {
        let host = self.host.unwrap_or("the server");
        if let Some(auth) = self.auth {
            return auth.into_error(host);
        }
        let msg = e.message().trim_end_matches('.');
        let with_remote = |text: String| {
            let said = self.remote_said.trim();
            if said.is_empty() {
                text
            } else {
                format!("{text}; the server said: {said}")
            }
        };
        match e.code() {
            git2::ErrorCode::Auth => {
                return Error::Auth {
                    message: format!("{host} rejected the credentials ({msg})"),
                };
            }
            git2::ErrorCode::Certificate => {
                return Error::backend(
                    BACKEND,
                    format!(
                        "{}: the TLS certificate of {host} is not trusted: {msg}",
                        self.operation
                    ),
                );
            }
            git2::ErrorCode::NotFastForward => {
                return Error::backend(
                    BACKEND,
                    with_remote(format!(
                        "{} rejected: non-fast-forward (the remote branch has commits that the local branch does not have; fetch and merge or rebase first)",
                        self.operation
                    )),
                );
            }
            _ => {}
        }
        if msg.contains("status code: 401") {
            return AuthFailure::Rejected.into_error(host);
        }
        if msg.contains("status code: 403") {
            return Error::Auth {
                message: format!(
                    "{host} denied access (HTTP 403): the token does not have the permission this operation needs"
                ),
            };
        }
        if msg.contains("status code: 404")
            && let Some(remote) = self.remote
        {
            return Error::NotFound {
                what: "repository",
                id: remote.to_string(),
            };
        }
        Error::backend(
            BACKEND,
            with_remote(format!("{} failed: {msg}", self.operation)),
        )
    }
}

/// Shorthand for an [`Error::Config`] with a hint.
pub(crate) fn input(message: impl Into<String>, hint: impl Into<String>) -> Error {
    InputError::new(message).hint(hint).into()
}

/// The same error with every string passed through `redactor` (and the global redactor).
pub(crate) fn sanitize(e: Error, redactor: &Redactor) -> Error {
    let r = |s: String| station_core::redact::redact(&redactor.redact_string(&s));
    match e {
        Error::NotFound { what, id } => Error::NotFound { what, id: r(id) },
        Error::Timeout { operation, after } => Error::Timeout {
            operation: r(operation),
            after,
        },
        Error::Auth { message } => Error::Auth {
            message: r(message),
        },
        Error::Backend { backend, message } => Error::Backend {
            backend,
            message: r(message),
        },
        Error::Unavailable { backend, message } => Error::Unavailable {
            backend,
            message: r(message),
        },
        Error::Protocol(message) => Error::Protocol(r(message)),
        Error::Config(input) => {
            let mut input = *input;
            input.message = r(input.message);
            input.hint = input.hint.map(r);
            Error::Config(Box::new(input))
        }
        Error::Io { context, source } => {
            let text = r(source.to_string());
            Error::Io {
                context: r(context),
                source: std::io::Error::new(source.kind(), text),
            }
        }
        Error::NotSupported {
            backend,
            operation,
            hint,
        } => Error::NotSupported {
            backend,
            operation: r(operation),
            hint: hint.map(r),
        },
        Error::ProcessFailed {
            program,
            status,
            stderr_tail,
        } => Error::ProcessFailed {
            program,
            status,
            stderr_tail: r(stderr_tail),
        },
        other => other,
    }
}
