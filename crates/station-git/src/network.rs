//! Running a libgit2 network operation on a blocking thread with a deadline, a cancel signal,
//! the relay, and the credential callback.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use git2::{Cred, CredentialType, RemoteCallbacks};
use station_core::{CancelSignal, Error, Result};
use tokio_util::sync::CancellationToken;

use crate::credentials::{CredentialRefusal, GitCredentials, RemoteUrl};
use crate::errors::{AuthFailure, BACKEND};
use crate::relay::Relay;

/// How long an aborted worker gets to notice and clean up before we return anyway.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// Most sideband text (`remote: ...`) kept for error messages.
const MAX_REMOTE_TEXT: usize = 4 * 1024;

/// Handed to the blocking worker.
#[derive(Debug, Clone)]
pub(crate) struct NetCtx {
    abort: Arc<AtomicBool>,
    /// Proxy URL of the relay, for `https` remotes.
    pub(crate) proxy_url: Option<String>,
}

impl NetCtx {
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// Proxy options pointing libgit2 at the relay (none otherwise).
    pub(crate) fn proxy_options(&self) -> git2::ProxyOptions<'static> {
        let mut opts = git2::ProxyOptions::new();
        if let Some(url) = &self.proxy_url {
            opts.url(url);
        }
        opts
    }
}

/// Trips the abort flag when the operation's future is dropped, so an abandoned worker stops at
/// its next callback.
struct AbortOnDrop(Arc<AtomicBool>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Run `work` on a blocking thread. At `timeout` or on `cancel`, trip the abort flag, cut the
/// relay, give the worker [`ABORT_GRACE`] to finish, and return [`Error::Timeout`] /
/// [`Error::Cancelled`] (or the worker's success, if it completed regardless).
pub(crate) async fn run<T, F>(
    operation: String,
    remote: &RemoteUrl,
    timeout: Duration,
    cancel: Option<&CancelSignal>,
    work: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(NetCtx) -> Result<T> + Send + 'static,
{
    let abort = Arc::new(AtomicBool::new(false));
    let _abort_on_drop = AbortOnDrop(abort.clone());
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let proxy_url = match remote.relay_target() {
        Some(target) => Some(
            Relay::start(target, stop.clone())
                .await
                .map_err(|e| Error::io("starting the local git relay", e))?
                .proxy_url(),
        ),
        None => None,
    };
    let ctx = NetCtx {
        abort: abort.clone(),
        proxy_url,
    };
    let mut worker = tokio::task::spawn_blocking(move || work(ctx));
    let never = CancelSignal::new();
    let cancel = cancel.unwrap_or(&never);
    let stopped_by_timeout = tokio::select! {
        joined = &mut worker => return joined_result(joined),
        _ = tokio::time::sleep(timeout) => true,
        _ = cancel.cancelled() => false,
    };
    abort.store(true, Ordering::SeqCst);
    stop.cancel();
    tracing::debug!(operation = %operation, timed_out = stopped_by_timeout, "git: aborting");
    if let Ok(Ok(Ok(value))) = tokio::time::timeout(ABORT_GRACE, &mut worker).await {
        return Ok(value);
    }
    if stopped_by_timeout {
        Err(Error::Timeout {
            operation,
            after: timeout,
        })
    } else {
        Err(Error::Cancelled)
    }
}

/// The worker's result, or a backend error if it panicked.
pub(crate) fn joined_result<T>(
    joined: std::result::Result<Result<T>, tokio::task::JoinError>,
) -> Result<T> {
    joined.unwrap_or_else(|e| Err(Error::backend(BACKEND, format!("git worker failed: {e}"))))
}

/// What the callbacks record during one operation.
#[derive(Debug, Default)]
pub(crate) struct CallbackState {
    credential_calls: Cell<u32>,
    pub(crate) auth_failure: Cell<Option<AuthFailure>>,
    remote_text: RefCell<String>,
}

impl CallbackState {
    /// The server's messages (`remote: ...` lines) without its progress meters, joined by `; `.
    pub(crate) fn remote_text(&self) -> String {
        let text = self.remote_text.borrow();
        let is_progress = |line: &str| {
            line.contains("% (") || line.ends_with(", done.") || line.starts_with("Total ")
        };
        text.split(['\n', '\r'])
            .map(str::trim)
            .filter(|line| !line.is_empty() && !is_progress(line))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Callbacks shared by clone and push: credentials (only through here), abort checks, and the
/// server's sideband text.
pub(crate) fn callbacks<'a>(
    ctx: &'a NetCtx,
    creds: &'a GitCredentials,
    remote: &'a RemoteUrl,
    state: &'a CallbackState,
) -> RemoteCallbacks<'a> {
    let mut cbs = RemoteCallbacks::new();
    cbs.credentials(move |url, _username_from_url, allowed| {
        if ctx.aborted() {
            return Err(git2::Error::from_str("aborted"));
        }
        let calls = state.credential_calls.get() + 1;
        state.credential_calls.set(calls);
        let fail = |failure: AuthFailure| {
            state.auth_failure.set(Some(failure));
            Err(git2::Error::from_str("authentication failed"))
        };
        // libgit2 asks again only after the server refused what we sent.
        if calls > 1 {
            return fail(AuthFailure::Rejected);
        }
        let (host, port) = match remote.may_receive_token(url) {
            Ok(target) => target,
            Err(refusal) => return fail(AuthFailure::Refused(refusal)),
        };
        // Checked before the operation too; again here for whatever URL libgit2 ends up at.
        let asked_port = url::Url::parse(url)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or_default();
        if !creds.host_allowed(host, asked_port) {
            return fail(AuthFailure::Refused(CredentialRefusal::NotAllowed));
        }
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return fail(AuthFailure::UnsupportedScheme);
        }
        let Some(token) = creds.token() else {
            return fail(AuthFailure::NoToken);
        };
        tracing::debug!(
            host,
            "git: answering the server's credential request with the configured token"
        );
        Cred::userpass_plaintext(creds.username_for(host, port), token.expose())
    });
    cbs.sideband_progress(move |bytes| {
        let mut text = state.remote_text.borrow_mut();
        if text.len() < MAX_REMOTE_TEXT {
            text.push_str(&String::from_utf8_lossy(bytes));
        }
        !ctx.aborted()
    });
    cbs
}
