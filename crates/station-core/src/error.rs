//! The error kinds a caller can act on.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error of the suite. Variants are kinds a caller can branch on; messages are already
/// redacted by whoever built them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session, agent or other named thing does not exist.
    #[error("{what} not found: {id}")]
    NotFound {
        /// What was looked up ("session", "agent", ...).
        what: &'static str,
        /// The id or name that was asked for.
        id: String,
    },
    /// A session name matched more than one session.
    #[error("session `{query}` is ambiguous; it matches: {}. Use an id or a longer part of the title", candidates.join("; "))]
    AmbiguousSession {
        /// What the user typed.
        query: String,
        /// `id (title)` of each match.
        candidates: Vec<String>,
    },
    /// A deadline passed.
    #[error("{operation} timed out after {}s", after.as_secs())]
    Timeout {
        /// What was being waited for.
        operation: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The operation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// Another task is running on the session (in this or another process).
    #[error("session {session} is busy: another task is running on it{}; waited {}s for it. Wait for that task to finish or cancel it (the wait is coding.session_busy_wait_sec)", holder.map(|p| format!(" (process {p})")).unwrap_or_default(), waited.as_secs())]
    SessionBusy {
        /// The session.
        session: String,
        /// The pid of the process that holds it, when known.
        holder: Option<u32>,
        /// How long this task waited.
        waited: Duration,
    },
    /// The backend cannot do this (a missing capability, or a backend compiled out).
    #[error("{operation} is not supported by the `{backend}` backend{}", hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    NotSupported {
        /// The backend's name.
        backend: String,
        /// The operation that was asked for.
        operation: String,
        /// What to do instead.
        hint: Option<String>,
    },
    /// Credentials were missing or rejected.
    #[error("authentication failed: {message}")]
    Auth {
        /// What failed, and how to fix it.
        message: String,
    },
    /// The backend service or binary cannot be reached.
    #[error("{backend} is unavailable: {message}")]
    Unavailable {
        /// The backend's name.
        backend: String,
        /// What failed, and how to fix it.
        message: String,
    },
    /// A child process failed.
    #[error("`{program}` failed ({status}){}", if stderr_tail.is_empty() { String::new() } else { format!(": {stderr_tail}") })]
    ProcessFailed {
        /// The program that ran.
        program: String,
        /// Its exit status, as text.
        status: String,
        /// The last lines it wrote to stderr (redacted).
        stderr_tail: String,
    },
    /// The peer sent something we cannot understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Bad input: a config file, an agent file, a flag.
    #[error("{0}")]
    Config(Box<InputError>),
    /// Any other backend failure.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What failed.
        message: String,
    },
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A stable, serializable name for each [`Error`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::NotFound`]
    NotFound,
    /// [`Error::AmbiguousSession`]
    AmbiguousSession,
    /// [`Error::Timeout`]
    Timeout,
    /// [`Error::Cancelled`]
    Cancelled,
    /// [`Error::SessionBusy`]
    SessionBusy,
    /// [`Error::NotSupported`]
    NotSupported,
    /// [`Error::Auth`]
    Auth,
    /// [`Error::Unavailable`]
    Unavailable,
    /// [`Error::ProcessFailed`]
    ProcessFailed,
    /// [`Error::Protocol`]
    Protocol,
    /// [`Error::Config`]
    Config,
    /// [`Error::Backend`]
    Backend,
    /// [`Error::Io`]
    Io,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AmbiguousSession { .. } => ErrorKind::AmbiguousSession,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::SessionBusy { .. } => ErrorKind::SessionBusy,
            Error::NotSupported { .. } => ErrorKind::NotSupported,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::ProcessFailed { .. } => ErrorKind::ProcessFailed,
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::Config(_) => ErrorKind::Config,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// Shorthand for [`Error::Backend`].
    pub fn backend(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for a session that does not exist.
    pub fn session_not_found(id: impl Into<String>) -> Self {
        Error::NotFound {
            what: "session",
            id: id.into(),
        }
    }

    /// Shorthand for [`Error::NotSupported`] without a hint.
    pub fn not_supported(backend: impl Into<String>, operation: impl Into<String>) -> Self {
        Error::NotSupported {
            backend: backend.into(),
            operation: operation.into(),
            hint: None,
        }
    }

    /// Shorthand for a config error with only a message.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(Box::new(InputError::new(message)))
    }
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Config(Box::new(e))
    }
}

/// Bad input, located as precisely as we can: file, line, column, field, and what to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InputError {
    /// The file the input came from.
    pub file: Option<PathBuf>,
    /// 1-based line in that file.
    pub line: Option<usize>,
    /// 1-based column in that file.
    pub column: Option<usize>,
    /// Dotted path of the field, e.g. `coding.enabled`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl InputError {
    /// An error with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        InputError {
            message: message.into(),
            ..Default::default()
        }
    }
    /// Set the file.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }
    /// Set line and column.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
    /// Set the field path.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    /// Set the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote_place = false;
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            wrote_place = true;
        }
        if let Some(line) = self.line {
            if wrote_place {
                write!(f, ":")?;
            } else {
                write!(f, "line ")?;
            }
            write!(f, "{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
            wrote_place = true;
        }
        if wrote_place {
            write!(f, ": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}
