//! [`Git`]: the operations, their options and results.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::FetchOptions;
use git2::build::RepoBuilder;
use serde::{Deserialize, Serialize};
use station_core::config::{CodingConfig, LoadedConfig};
use station_core::git::{BranchResult, CommitResult, PushResult};
use station_core::{CancelSignal, Error, FileChange, Redactor, Result, Secret};

use crate::credentials::{GitCredentials, RemoteUrl};
use crate::errors::{self, BACKEND, Failure};
use crate::local;
use crate::network::{self, CallbackState, NetCtx};

/// Author name used when neither `coding.git.user_name` nor the repository's git config has one.
pub const DEFAULT_IDENTITY_NAME: &str = "Station Bot";
/// Author email used when neither `coding.git.user_email` nor the repository's git config has one.
pub const DEFAULT_IDENTITY_EMAIL: &str = "station@localhost";

/// Default deadline of local operations (status, commit, branch).
const DEFAULT_LOCAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Git operations with one set of credentials, identity and deadlines. Cheap to clone.
#[derive(Clone)]
pub struct Git {
    creds: GitCredentials,
    user_name: Option<String>,
    user_email: Option<String>,
    clone_timeout: Duration,
    push_timeout: Duration,
    local_timeout: Duration,
    redactor: Redactor,
}

impl fmt::Debug for Git {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Git")
            .field("credentials", &self.creds)
            .field("user_name", &self.user_name)
            .field("user_email", &self.user_email)
            .field("clone_timeout", &self.clone_timeout)
            .field("push_timeout", &self.push_timeout)
            .field("local_timeout", &self.local_timeout)
            .finish()
    }
}

/// Options of [`Git::clone_repo`].
#[derive(Debug, Clone, Default)]
pub struct CloneOptions {
    /// Branch to check out (the remote's default branch when `None`).
    pub branch: Option<String>,
    /// Fetch only the tip commit (`--depth 1`).
    pub shallow: bool,
    /// Deadline; `coding.clone_timeout_sec` (300 s) when `None`.
    pub timeout: Option<Duration>,
    /// Stops the clone early.
    pub cancel: Option<CancelSignal>,
}

impl CloneOptions {
    /// Check out `branch`.
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self
    }
    /// Fetch only the tip commit.
    pub fn shallow(mut self, shallow: bool) -> Self {
        self.shallow = shallow;
        self
    }
    /// Set the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Stop when `cancel` fires.
    pub fn cancel(mut self, cancel: CancelSignal) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

/// Options of [`Git::push`].
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Remote name; `origin` when `None`.
    pub remote: Option<String>,
    /// Local branch to push to the branch of the same name; the current branch when `None`.
    pub branch: Option<String>,
    /// Record the pushed branch as the local branch's upstream (`git push -u`).
    pub set_upstream: bool,
    /// Deadline; `coding.push_timeout_sec` (120 s) when `None`.
    pub timeout: Option<Duration>,
    /// Stops the push early.
    pub cancel: Option<CancelSignal>,
}

impl PushOptions {
    /// Push to `remote`.
    pub fn remote(mut self, remote: impl Into<String>) -> Self {
        self.remote = Some(remote.into());
        self
    }
    /// Push `branch`.
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self
    }
    /// Set the upstream after pushing.
    pub fn set_upstream(mut self, set_upstream: bool) -> Self {
        self.set_upstream = set_upstream;
        self
    }
    /// Set the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Stop when `cancel` fires.
    pub fn cancel(mut self, cancel: CancelSignal) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

/// What a clone produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneResult {
    /// Where the repository is.
    pub path: PathBuf,
    /// The remote URL (never with credentials).
    pub url: String,
    /// The checked-out branch (`None` when HEAD is detached).
    pub branch: Option<String>,
    /// The checked-out commit (`None` for an empty repository).
    pub head: Option<String>,
    /// Whether only the tip commit was fetched.
    pub shallow: bool,
    /// Whether an existing clone was reused ([`Git::clone_or_reuse`]) instead of cloning.
    #[serde(default)]
    pub reused: bool,
}

impl Git {
    /// Operations with these credentials, the default identity chain and default deadlines.
    pub fn new(creds: GitCredentials) -> Self {
        let redactor = Redactor::new();
        if let Some(token) = creds.token() {
            redactor.register(token);
            for user in creds.all_usernames() {
                redactor.register(&Secret::new(basic_auth_value(user, token.expose())));
            }
            redactor.register(&Secret::new(base64_encode(token.expose().as_bytes())));
        }
        Git {
            creds,
            user_name: None,
            user_email: None,
            clone_timeout: Duration::from_secs(300),
            push_timeout: Duration::from_secs(120),
            local_timeout: DEFAULT_LOCAL_TIMEOUT,
            redactor,
        }
    }

    /// From `coding` (git section, clone and push deadlines) and the resolved token.
    pub fn from_config(coding: &CodingConfig, token: Option<Secret>) -> Self {
        let mut git = Git::new(GitCredentials::from_config(&coding.git, token))
            .with_clone_timeout(Duration::from_secs(coding.clone_timeout_sec.max(1)))
            .with_push_timeout(Duration::from_secs(coding.push_timeout_sec.max(1)));
        git.user_name = coding
            .git
            .user_name
            .clone()
            .filter(|s| !s.trim().is_empty());
        git.user_email = coding
            .git
            .user_email
            .clone()
            .filter(|s| !s.trim().is_empty());
        git
    }

    /// From a loaded config (`coding` and `git_token`).
    pub fn from_loaded(loaded: &LoadedConfig) -> Self {
        Self::from_config(&loaded.config.coding, loaded.git_token.clone())
    }

    /// Commit as `name <email>`.
    pub fn with_identity(mut self, name: impl Into<String>, email: impl Into<String>) -> Self {
        self.user_name = Some(name.into());
        self.user_email = Some(email.into());
        self
    }
    /// Default clone deadline.
    pub fn with_clone_timeout(mut self, timeout: Duration) -> Self {
        self.clone_timeout = timeout;
        self
    }
    /// Default push deadline.
    pub fn with_push_timeout(mut self, timeout: Duration) -> Self {
        self.push_timeout = timeout;
        self
    }
    /// Deadline of local operations (status, commit, branch).
    pub fn with_local_timeout(mut self, timeout: Duration) -> Self {
        self.local_timeout = timeout;
        self
    }

    /// The credentials.
    pub fn credentials(&self) -> &GitCredentials {
        &self.creds
    }
    /// The redactor that knows the token; use it on anything derived from git output.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Check `url` as a remote before any network traffic: https only (plain http only to
    /// loopback with `coding.git.allow_http_loopback`), no credentials inside, and a host allowed
    /// by `coding.git.allowed_hosts` (or its defaults).
    pub fn check_remote_url(&self, url: &str) -> Result<()> {
        let remote = RemoteUrl::parse(url)?;
        self.creds.check_remote(&remote)
    }

    /// Clone `url` into `dest` (which must not exist or be empty). On failure `dest` is left as
    /// it was. The remote URL stored in `dest/.git/config` is `url`, without credentials.
    pub async fn clone_repo(
        &self,
        url: &str,
        dest: &Path,
        opts: CloneOptions,
    ) -> Result<CloneResult> {
        let result = self.clone_inner(url, dest, opts).await;
        self.finish("git clone", result)
    }

    async fn clone_inner(&self, url: &str, dest: &Path, opts: CloneOptions) -> Result<CloneResult> {
        let remote = RemoteUrl::parse(url)?;
        self.creds.check_remote(&remote)?;
        if let Some(branch) = &opts.branch {
            local::check_branch_name(branch)?;
        }
        let dest = dest.to_path_buf();
        let created = local::prepare_clone_dest(&dest)?;
        let timeout = opts.timeout.unwrap_or(self.clone_timeout);
        tracing::info!(url = remote.as_str(), dest = %dest.display(), branch = ?opts.branch, shallow = opts.shallow, "git clone");
        let (creds, redactor, remote_in) =
            (self.creds.clone(), self.redactor.clone(), remote.clone());
        let operation = format!("git clone of {}", remote.as_str());
        network::run(
            operation,
            &remote,
            timeout,
            opts.cancel.as_ref(),
            move |ctx| {
                let result = clone_blocking(
                    &ctx,
                    &creds,
                    &remote_in,
                    &dest,
                    opts.branch.as_deref(),
                    opts.shallow,
                );
                if result.is_err() {
                    local::undo_clone_dest(&dest, created);
                }
                result.map_err(|e| errors::sanitize(e, &redactor))
            },
        )
        .await
    }

    /// Check out `name`. With `create`, a missing branch is created at HEAD (uncommitted
    /// changes are kept); an existing one is switched to. Without it the branch must exist
    /// locally or as `origin/<name>` (then a tracking branch is created).
    pub async fn branch(&self, repo: &Path, name: &str, create: bool) -> Result<BranchResult> {
        let (repo, name) = (repo.to_path_buf(), name.to_string());
        tracing::debug!(repo = %repo.display(), branch = %name, create, "git branch");
        let result = self
            .run_local("git branch", move || local::branch(&repo, &name, create))
            .await;
        self.finish("git branch", result)
    }

    /// Files that differ from HEAD (staged or not, untracked included, ignored excluded), with
    /// lines added and removed, sorted by path.
    pub async fn status(&self, repo: &Path) -> Result<Vec<FileChange>> {
        let repo = repo.to_path_buf();
        tracing::debug!(repo = %repo.display(), "git status");
        let result = self
            .run_local("git status", move || local::status(&repo))
            .await;
        self.finish("git status", result)
    }

    /// Commit the index (after staging every change, untracked and deleted files included, when
    /// `add_all`) on the current branch. The author is `coding.git.user_name/user_email`, else the
    /// repository's git config, else [`DEFAULT_IDENTITY_NAME`] / [`DEFAULT_IDENTITY_EMAIL`].
    pub async fn commit(&self, repo: &Path, message: &str, add_all: bool) -> Result<CommitResult> {
        let (repo, message) = (repo.to_path_buf(), message.to_string());
        let identity = local::Identity {
            name: self.user_name.clone(),
            email: self.user_email.clone(),
        };
        tracing::debug!(repo = %repo.display(), add_all, "git commit");
        let result = self
            .run_local("git commit", move || {
                local::commit(&repo, &message, add_all, &identity)
            })
            .await;
        self.finish("git commit", result)
    }

    /// Push a local branch to the branch of the same name on a remote. Rejections (non-fast-
    /// forward, a server hook) are errors that say why.
    pub async fn push(&self, repo: &Path, opts: PushOptions) -> Result<PushResult> {
        let result = self.push_inner(repo, opts).await;
        self.finish("git push", result)
    }

    async fn push_inner(&self, repo: &Path, opts: PushOptions) -> Result<PushResult> {
        let remote_name = opts
            .remote
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "origin".to_string());
        let repo = repo.to_path_buf();
        let target = {
            let (repo, remote_name, branch) =
                (repo.clone(), remote_name.clone(), opts.branch.clone());
            self.run_local("git push", move || {
                local::push_target(&repo, &remote_name, branch.as_deref())
            })
            .await?
        };
        self.creds
            .check_remote(&target.url)
            .map_err(|e| with_remote_name(e, &remote_name))?;
        let timeout = opts.timeout.unwrap_or(self.push_timeout);
        tracing::info!(repo = %repo.display(), remote = %remote_name, url = target.url.as_str(), branch = %target.branch, "git push");
        let (creds, redactor, remote_url) = (
            self.creds.clone(),
            self.redactor.clone(),
            target.url.clone(),
        );
        let operation = format!("git push of `{}` to {}", target.branch, target.url.as_str());
        network::run(
            operation,
            &target.url,
            timeout,
            opts.cancel.as_ref(),
            move |ctx| {
                push_blocking(
                    &ctx,
                    &creds,
                    &repo,
                    &remote_name,
                    &remote_url,
                    &target.branch,
                    opts.set_upstream,
                )
                .map_err(|e| errors::sanitize(e, &redactor))
            },
        )
        .await
    }

    pub(crate) async fn run_local<T, F>(&self, operation: &str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let worker = tokio::task::spawn_blocking(work);
        match tokio::time::timeout(self.local_timeout, worker).await {
            Ok(joined) => network::joined_result(joined),
            Err(_) => Err(Error::Timeout {
                operation: operation.to_string(),
                after: self.local_timeout,
            }),
        }
    }

    /// Redact the error and log the outcome (never the token: messages are redacted first).
    pub(crate) fn finish<T>(&self, operation: &str, result: Result<T>) -> Result<T> {
        result.map_err(|e| {
            let e = errors::sanitize(e, &self.redactor);
            tracing::debug!(operation, error = %e, "git operation failed");
            e
        })
    }
}

fn clone_blocking(
    ctx: &NetCtx,
    creds: &GitCredentials,
    remote: &RemoteUrl,
    dest: &Path,
    branch: Option<&str>,
    shallow: bool,
) -> Result<CloneResult> {
    let state = CallbackState::default();
    let cloned = {
        let mut callbacks = network::callbacks(ctx, creds, remote, &state);
        callbacks.transfer_progress(|progress| {
            tracing::trace!(
                received_objects = progress.received_objects(),
                total_objects = progress.total_objects(),
                received_bytes = progress.received_bytes(),
                "git clone progress"
            );
            !ctx.aborted()
        });
        let mut fetch = FetchOptions::new();
        fetch
            .remote_callbacks(callbacks)
            .proxy_options(ctx.proxy_options())
            .follow_redirects(git2::RemoteRedirect::None);
        if shallow {
            fetch.depth(1);
        }
        let mut builder = RepoBuilder::new();
        builder.fetch_options(fetch);
        if let Some(branch) = branch {
            builder.branch(branch);
        }
        builder.clone(remote.as_str(), dest)
    };
    let repo = cloned.map_err(|e| {
        if let Some(branch) = branch
            && e.code() == git2::ErrorCode::NotFound
            && e.message().contains("refs/remotes/")
        {
            return Error::NotFound {
                what: "branch",
                id: format!("{branch} (in {})", remote.as_str()),
            };
        }
        let remote_said = state.remote_text();
        Failure {
            operation: "git clone",
            remote: Some(remote.as_str()),
            host: remote.host(),
            auth: state.auth_failure.get(),
            remote_said: &remote_said,
        }
        .map(&e)
    })?;
    let head = repo.head().ok();
    Ok(CloneResult {
        path: dest.to_path_buf(),
        url: remote.as_str().to_string(),
        branch: local::current_branch(&repo),
        head: head.and_then(|h| h.target()).map(|oid| oid.to_string()),
        shallow: repo.is_shallow(),
        reused: false,
    })
}

fn push_blocking(
    ctx: &NetCtx,
    creds: &GitCredentials,
    repo_path: &Path,
    remote_name: &str,
    remote_url: &RemoteUrl,
    branch: &str,
    set_upstream: bool,
) -> Result<PushResult> {
    let repo = local::open(repo_path)?;
    let fail = |e: git2::Error| Failure::local("git push").map(&e);
    let mut remote = repo.find_remote(remote_name).map_err(fail)?;
    let commit = repo
        .find_branch(branch, git2::BranchType::Local)
        .map_err(fail)?
        .get()
        .target()
        .map(|o| o.to_string());
    let state = CallbackState::default();
    let rejected = std::cell::RefCell::new(Vec::<(String, String)>::new());
    let pushed = {
        let mut callbacks = network::callbacks(ctx, creds, remote_url, &state);
        callbacks.push_update_reference(|refname, status| {
            if let Some(reason) = status {
                rejected
                    .borrow_mut()
                    .push((refname.to_string(), reason.to_string()));
            }
            Ok(())
        });
        callbacks.push_transfer_progress(|current, total, bytes| {
            tracing::trace!(current, total, bytes, "git push progress");
        });
        callbacks.push_negotiation(|_| {
            if ctx.aborted() {
                Err(git2::Error::from_str("aborted"))
            } else {
                Ok(())
            }
        });
        let mut push = git2::PushOptions::new();
        push.remote_callbacks(callbacks)
            .proxy_options(ctx.proxy_options())
            .follow_redirects(git2::RemoteRedirect::None);
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        remote.push(&[refspec.as_str()], Some(&mut push))
    };
    let remote_said = state.remote_text();
    let operation = format!("git push of `{branch}` to {remote_name}");
    pushed.map_err(|e| {
        Failure {
            operation: &operation,
            remote: Some(remote_url.as_str()),
            host: remote_url.host(),
            auth: state.auth_failure.get(),
            remote_said: &remote_said,
        }
        .map(&e)
    })?;
    let rejected = rejected.into_inner();
    if !rejected.is_empty() {
        let reasons: Vec<String> = rejected
            .iter()
            .map(|(r, why)| format!("{r}: {why}"))
            .collect();
        let said = if remote_said.is_empty() {
            String::new()
        } else {
            format!("; the server said: {remote_said}")
        };
        return Err(Error::backend(
            BACKEND,
            format!(
                "{operation} was rejected by the remote ({}){said}",
                reasons.join(", ")
            ),
        ));
    }
    if set_upstream {
        local::set_upstream(&repo, branch, remote_name)?;
    }
    Ok(PushResult {
        remote: remote_name.to_string(),
        branch: branch.to_string(),
        commit: commit.unwrap_or_default(),
        upstream_set: set_upstream,
    })
}

/// A refused push remote, saying which remote of the repository it was.
fn with_remote_name(e: Error, remote_name: &str) -> Error {
    match e {
        Error::Config(mut input) => {
            input.message = format!("remote `{remote_name}`: {}", input.message);
            Error::Config(input)
        }
        other => other,
    }
}

/// `Basic` credentials as sent in an `Authorization` header, for registering with the redactor.
fn basic_auth_value(user: &str, token: &str) -> String {
    base64_encode(format!("{user}:{token}").as_bytes())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
