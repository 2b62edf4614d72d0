//! The one way the suite spawns a child process.
//!
//! Every child gets: an explicit working directory, stdin closed (or fed bytes then closed),
//! stdout and stderr piped, its own process group, and a guard that kills the **whole group**
//! when the handle is dropped. [`ChildProcess::terminate`] sends SIGTERM to the group, waits a
//! grace period, then SIGKILLs it; [`ChildProcess::wait`] also clears out any grandchildren the
//! child left behind. Lines are read without a length limit. A child also dies when this
//! process dies (a parent-death signal), and inherits none of Station's secrets ([`ChildEnv`]).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::redact;
use crate::run::CancelSignal;

mod child_env;
mod keeper;

pub use child_env::ChildEnv;

/// How much of stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// What to feed the child on stdin.
#[derive(Debug, Clone, Default)]
enum StdinMode {
    #[default]
    Closed,
    Bytes(Vec<u8>),
    Piped,
}

/// A command to spawn. Its `Debug` names the environment variables it sets, never their values
/// (a backend may hand its child a credential).
#[derive(Clone)]
pub struct CommandSpec {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    stdin: StdinMode,
    install_hint: Option<String>,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| match v {
                Some(_) => format!("{}=…", k.to_string_lossy()),
                None => format!("-{}", k.to_string_lossy()),
            })
            .collect();
        f.debug_struct("CommandSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &env)
            .field("clear_env", &self.clear_env)
            .field("stdin", &self.stdin)
            .field("install_hint", &self.install_hint)
            .finish()
    }
}

impl CommandSpec {
    /// `program` (a path, or a name looked up on PATH) run in `cwd`.
    pub fn new(program: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Self {
        CommandSpec {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: Vec::new(),
            clear_env: false,
            stdin: StdinMode::Closed,
            install_hint: None,
        }
    }
    /// Add an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }
    /// Add arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// Set an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }
    /// Remove an inherited environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }
    /// Start from an empty environment instead of inheriting this process's.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }
    /// Write these bytes to stdin, then close it.
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = StdinMode::Bytes(bytes.into());
        self
    }
    /// Keep stdin open as a pipe ([`ChildProcess::take_stdin`]); the caller must close it.
    pub fn stdin_piped(mut self) -> Self {
        self.stdin = StdinMode::Piped;
        self
    }
    /// What to tell the user when the program is not installed (e.g. `npm i -g opencode-ai`).
    pub fn install_hint(mut self, hint: impl Into<String>) -> Self {
        self.install_hint = Some(hint.into());
        self
    }
    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }
    /// The arguments.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }
    /// The working directory.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    fn display_name(&self) -> String {
        self.program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    fn not_installed(&self, detail: impl std::fmt::Display) -> Error {
        let hint = self
            .install_hint
            .as_deref()
            .map(|h| format!("; install it with `{h}` or set its path in config"))
            .unwrap_or_default();
        Error::Unavailable {
            backend: self.display_name(),
            message: format!("`{}` {detail}{hint}", self.program.display()),
        }
    }

    /// Resolve the program to a path, with a clear error when it is missing.
    pub fn resolve_program(&self) -> Result<PathBuf> {
        if self.program.components().count() > 1 {
            if self.program.is_file() {
                return Ok(self.program.clone());
            }
            return Err(self.not_installed("does not exist"));
        }
        which::which(&self.program).map_err(|_| self.not_installed("was not found on PATH"))
    }

    /// Spawn it.
    pub fn spawn(&self) -> Result<ChildProcess> {
        let program = self.resolve_program()?;
        if !self.cwd.is_dir() {
            return Err(Error::config(format!(
                "working directory {} does not exist",
                self.cwd.display()
            )));
        }
        #[allow(clippy::disallowed_methods)] // this is the one place allowed to build a Command
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(match self.stdin {
                StdinMode::Closed => Stdio::null(),
                StdinMode::Bytes(_) | StdinMode::Piped => Stdio::piped(),
            })
            .process_group(0)
            .kill_on_drop(true);
        if self.clear_env {
            cmd.env_clear();
        } else {
            for name in ChildEnv::withheld_among(std::env::vars_os()) {
                cmd.env_remove(name);
            }
        }
        // Some children (OpenCode) take their directory from $PWD, not from the real cwd.
        cmd.env("PWD", &self.cwd);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = keeper::spawn(cmd).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => self.not_installed("could not be started"),
            _ => Error::io(format!("starting `{}`", program.display()), e),
        })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let mut stdin = child.stdin.take();
        if let StdinMode::Bytes(bytes) = &self.stdin
            && let Some(mut pipe) = stdin.take()
        {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            });
        }
        let stderr = child.stderr.take().expect("stderr is piped");
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_BYTES)));
        let stderr_task = tokio::spawn(collect_tail(stderr, tail.clone()));
        Ok(ChildProcess {
            program: self.display_name(),
            pid,
            stdout: child.stdout.take(),
            stdin,
            child,
            stderr_tail: tail,
            stderr_task: Some(stderr_task),
            reaped: false,
        })
    }

    /// Run to the end, collecting stdout, within `deadline`; the group is killed on timeout or
    /// cancel. A non-zero exit is [`Error::ProcessFailed`].
    pub async fn output(
        &self,
        deadline: Duration,
        cancel: Option<&CancelSignal>,
    ) -> Result<String> {
        let mut child = self.spawn()?;
        let mut stdout = child.take_stdout().expect("stdout is piped");
        let read = async {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).await.map(|_| out)
        };
        let never = CancelSignal::new();
        let cancel = cancel.unwrap_or(&never);
        let out = tokio::select! {
            r = tokio::time::timeout(deadline, read) => r,
            _ = cancel.cancelled() => { child.terminate(Duration::from_secs(2)).await; return Err(Error::Cancelled) }
        };
        let out = match out {
            Ok(r) => {
                r.map_err(|e| Error::io(format!("reading `{}` output", self.display_name()), e))?
            }
            Err(_) => {
                child.terminate(Duration::from_secs(2)).await;
                return Err(Error::Timeout {
                    operation: format!("`{}`", self.display_name()),
                    after: deadline,
                });
            }
        };
        let status = match tokio::time::timeout(deadline, child.wait()).await {
            Ok(s) => s?,
            Err(_) => {
                child.terminate(Duration::from_secs(2)).await;
                return Err(Error::Timeout {
                    operation: format!("`{}`", self.display_name()),
                    after: deadline,
                });
            }
        };
        if !status.success() {
            return Err(child.failure(status).await);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

async fn collect_tail(mut stderr: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buf = [0u8; 8192];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.extend(&buf[..n]);
                let excess = t.len().saturating_sub(STDERR_TAIL_BYTES);
                t.drain(..excess);
            }
        }
    }
}

/// A running child in its own process group. Dropping it kills the group.
#[derive(Debug)]
pub struct ChildProcess {
    program: String,
    pid: u32,
    child: Child,
    stdout: Option<ChildStdout>,
    stdin: Option<ChildStdin>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
    reaped: bool,
}

impl ChildProcess {
    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Take stdout as a reader.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Take stdout as a line reader without a line-length limit.
    pub fn take_stdout_lines(&mut self) -> Option<LineReader<ChildStdout>> {
        self.stdout.take().map(LineReader::new)
    }

    /// Take stdin (only with [`CommandSpec::stdin_piped`]).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Send `signal` to the whole group; errors (the group is gone) are ignored.
    pub fn signal_group(&self, signal: Signal) {
        if let Ok(pgid) = i32::try_from(self.pid) {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }

    /// Wait for the child to exit, then kill whatever it left behind in its group.
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| Error::io(format!("waiting for `{}`", self.program), e))?;
        self.reaped = true;
        self.signal_group(Signal::SIGKILL);
        Ok(status)
    }

    /// SIGTERM the group, wait up to `grace`, then SIGKILL the group and reap the child.
    pub async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal_group(Signal::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                self.signal_group(Signal::SIGKILL);
                let _ = self.child.start_kill();
                tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                    .await
                    .ok()
                    .and_then(|r| r.ok())
            }
        };
        self.reaped = status.is_some();
        // Grandchildren that ignored SIGTERM may outlive the child.
        self.signal_group(Signal::SIGKILL);
        status
    }

    /// The last part of stderr, redacted.
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = t.as_slices();
        let mut bytes = Vec::with_capacity(t.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        redact::redact(String::from_utf8_lossy(&bytes).trim())
    }

    /// Wait (briefly) until stderr is fully read, then return its redacted tail.
    pub async fn final_stderr_tail(&mut self) -> String {
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        self.stderr_tail()
    }

    /// An [`Error::ProcessFailed`] for this child's exit.
    pub async fn failure(&mut self, status: ExitStatus) -> Error {
        Error::ProcessFailed {
            program: self.program.clone(),
            status: describe_status(status),
            stderr_tail: self.final_stderr_tail().await,
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Always: even a reaped child may have left grandchildren in its group.
        self.signal_group(Signal::SIGKILL);
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
    }
}

/// `exit code N` or `killed by signal N`.
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Reads lines of any length (invalid UTF-8 is replaced, `\r\n` and `\n` are stripped).
#[derive(Debug)]
pub struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wrap a reader.
    pub fn new(reader: R) -> Self {
        LineReader {
            reader: BufReader::with_capacity(64 * 1024, reader),
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end.
    ///
    /// Cancel-safe: when the future is dropped mid-line (in `select!`), the bytes read so far
    /// are kept and the next call continues the same line.
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        self.reader.read_until(b'\n', &mut self.buf).await?;
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(Some(
            match String::from_utf8(std::mem::take(&mut self.buf)) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
        ))
    }
}

/// Live (non-zombie) processes whose process group is `pgid` (Linux `/proc`; empty elsewhere).
/// Core's own tests use it to prove no child outlives its task; other crates' tests use
/// `station_testkit::process::live_group_members`.
#[cfg(test)]
pub(crate) fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may contain spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        if *state != "Z" && *state != "X" && pgrp.parse::<u32>().ok() == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandSpec {
        CommandSpec::new("sh", std::env::temp_dir())
            .arg("-c")
            .arg(script)
    }

    async fn settle(pgid: u32) -> Vec<u32> {
        for _ in 0..50 {
            let left = live_group_members(pgid);
            if left.is_empty() {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        live_group_members(pgid)
    }

    #[tokio::test]
    async fn terminate_kills_a_child_that_ignores_sigterm_and_its_grandchild() {
        let mut child = sh("trap '' TERM; sleep 300 & sleep 300; wait")
            .spawn()
            .unwrap();
        let pgid = child.pid();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            live_group_members(pgid).len() >= 2,
            "child and grandchild are running"
        );
        child.terminate(Duration::from_millis(200)).await;
        assert_eq!(settle(pgid).await, Vec::<u32>::new());
    }

    #[tokio::test]
    async fn drop_kills_the_group() {
        let child = sh("sleep 300 & sleep 300").spawn().unwrap();
        let pgid = child.pid();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(child);
        assert_eq!(settle(pgid).await, Vec::<u32>::new());
    }

    #[tokio::test]
    async fn wait_clears_leftover_grandchildren() {
        let mut child = sh("sleep 300 & exit 0").spawn().unwrap();
        let pgid = child.pid();
        assert!(child.wait().await.unwrap().success());
        assert_eq!(settle(pgid).await, Vec::<u32>::new());
    }

    #[tokio::test]
    async fn stdin_is_closed_and_long_lines_are_whole() {
        // `cat` would hang forever on an open stdin.
        let out = CommandSpec::new("cat", std::env::temp_dir())
            .output(Duration::from_secs(10), None)
            .await
            .unwrap();
        assert_eq!(out, "");
        let mut child = sh("head -c 3000000 /dev/zero | tr '\\0' 'x'; echo; echo second")
            .spawn()
            .unwrap();
        let mut lines = child.take_stdout_lines().unwrap();
        assert_eq!(lines.next_line().await.unwrap().unwrap().len(), 3_000_000);
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("second"));
        assert_eq!(lines.next_line().await.unwrap(), None);
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn piped_stdin_is_handed_to_the_caller() {
        let mut child = CommandSpec::new("cat", std::env::temp_dir())
            .stdin_piped()
            .spawn()
            .unwrap();
        let mut stdin = child.take_stdin().expect("stdin is piped");
        let mut lines = child.take_stdout_lines().unwrap();
        stdin.write_all(b"ping\n").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ping"));
        drop(stdin);
        assert_eq!(lines.next_line().await.unwrap(), None);
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn failures_carry_status_and_redacted_stderr() {
        let err = sh("echo 'auth failed for password=hunter2hunter2' >&2; exit 3")
            .output(Duration::from_secs(10), None)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exit code 3"), "{msg}");
        assert!(msg.contains("auth failed"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[tokio::test]
    async fn missing_program_says_how_to_install() {
        let err = CommandSpec::new("definitely-not-installed-stn", std::env::temp_dir())
            .install_hint("npm i -g something")
            .spawn()
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }));
        assert!(err.to_string().contains("npm i -g something"), "{err}");
    }

    #[test]
    fn debug_names_variables_but_never_their_values() {
        let secret = format!("pw-{}", "s3cr".repeat(5));
        let spec = CommandSpec::new("opencode", "/").env("OPENCODE_SERVER_PASSWORD", &secret);
        let shown = format!("{spec:?}");
        assert!(shown.contains("OPENCODE_SERVER_PASSWORD"), "{shown}");
        assert!(!shown.contains("s3cr"), "{shown}");
    }

    #[tokio::test]
    async fn output_times_out_and_kills() {
        let spec = sh("sleep 300");
        let err = spec
            .output(Duration::from_millis(200), None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
}
