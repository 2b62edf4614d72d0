//! Managed mode: a private `opencode serve` on 127.0.0.1, started on first use and stopped
//! (its whole process group) when the backend is dropped.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Url;
use station_core::process::{ChildProcess, CommandSpec};
use station_core::{Error, Result, Secret};
use tokio::task::JoinHandle;

use crate::client::{Client, NAME};
use crate::wire::HealthInfo;
use crate::{HttpTuning, INSTALL_HINT};

/// A running private server.
#[derive(Debug)]
pub(crate) struct ManagedServer {
    child: ChildProcess,
    url: Url,
    stdout_drain: JoinHandle<()>,
}

impl ManagedServer {
    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        // Dropping the child kills its process group.
        self.stdout_drain.abort();
    }
}

/// Whether `binary` can be started (a path that exists, or a name on PATH).
pub(crate) fn installed(binary: &str) -> bool {
    CommandSpec::new(binary, std::env::temp_dir())
        .resolve_program()
        .is_ok()
}

/// A password for a private server, so other local users cannot drive it.
pub(crate) fn random_password() -> Option<Secret> {
    use std::io::Read;
    let mut buf = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ok()?;
    Some(Secret::new(
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// Start `binary serve --hostname 127.0.0.1 --port 0` in `cwd`, read the URL from its
/// "listening on" line, and wait until `/global/health` answers.
pub(crate) async fn start(
    binary: &str,
    cwd: &Path,
    env: &[(String, String)],
    auth: &(String, Secret),
    attempts: u32,
    tuning: &HttpTuning,
) -> Result<(ManagedServer, Client)> {
    std::fs::create_dir_all(cwd)
        .map_err(|e| Error::io(format!("creating {}", cwd.display()), e))?;
    let cwd = &cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    // OpenCode takes its directory from $PWD, not from the process cwd.
    let mut spec = CommandSpec::new(binary, cwd)
        .args(["serve", "--hostname", "127.0.0.1", "--port", "0"])
        .env("PWD", cwd)
        .install_hint(INSTALL_HINT);
    for (k, v) in env {
        spec = spec.env(k, v);
    }
    spec = spec
        .env("OPENCODE_SERVER_USERNAME", &auth.0)
        .env("OPENCODE_SERVER_PASSWORD", auth.1.expose());
    let mut child = spec.spawn()?;
    let mut lines = child.take_stdout_lines().expect("stdout is piped");
    let deadline = Instant::now() + tuning.server_start_timeout;
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, lines.next_line()).await {
            Err(_) => {
                child.terminate(Duration::from_secs(2)).await;
                return Err(Error::Timeout {
                    operation: format!("starting `{binary} serve` (no \"listening on\" line)"),
                    after: tuning.server_start_timeout,
                });
            }
            Ok(Ok(Some(line))) => {
                tracing::debug!(target: "opencode_serve", "{line}");
                if let Some(url) = listening_url(&line) {
                    break url;
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                return Err(match status {
                    Ok(Ok(status)) => child.failure(status).await,
                    _ => Error::backend(
                        NAME,
                        format!(
                            "`{binary} serve` closed its output without saying where it listens"
                        ),
                    ),
                });
            }
        }
    };
    let stdout_drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target: "opencode_serve", "{line}");
        }
    });
    let client = Client::new(url.clone(), Some(auth.clone()), attempts, tuning.clone())?;
    let server = ManagedServer {
        child,
        url,
        stdout_drain,
    };
    // The first request right after start-up can hang: short per-request deadlines, polled.
    loop {
        match client
            .get_json_within::<HealthInfo>(&["global", "health"], None, &[], Duration::from_secs(2))
            .await
        {
            Ok(h) if h.healthy => break,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok(_) => {
                return Err(Error::backend(
                    NAME,
                    format!(
                        "the private OpenCode server at {} says it is unhealthy",
                        server.url
                    ),
                ));
            }
            Err(e) => {
                return Err(Error::backend(
                    NAME,
                    format!(
                        "the private OpenCode server at {} never became healthy: {e}",
                        server.url
                    ),
                ));
            }
        }
    }
    tracing::info!(url = %server.url, pid = server.pid(), "started a private OpenCode server");
    Ok((server, client))
}

/// The URL in `opencode server listening on http://127.0.0.1:PORT`.
fn listening_url(line: &str) -> Option<Url> {
    let rest = &line[line.find("listening on")? + "listening on".len()..];
    let token = rest.split_whitespace().next()?;
    Url::parse(token)
        .ok()
        .filter(|u| u.scheme() == "http" && u.port().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        let url = listening_url("opencode server listening on http://127.0.0.1:40123").unwrap();
        assert_eq!(url.port(), Some(40123));
        assert_eq!(
            listening_url("Warning: OPENCODE_SERVER_PASSWORD is not set"),
            None
        );
        assert_eq!(listening_url("listening on somewhere"), None);
    }

    #[test]
    fn passwords_are_random() {
        let (a, b) = (random_password().unwrap(), random_password().unwrap());
        assert_eq!(a.expose().len(), 48);
        assert_ne!(a, b);
    }
}
