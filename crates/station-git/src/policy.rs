//! Which remotes a clone or push may talk to: checked before any network traffic, and again by
//! the credential callback (redirects), so the token only ever goes to hosts the operator allows.

use station_core::{Error, InputError};

use crate::credentials::{GitCredentials, RemoteUrl, is_loopback};

/// Default host when a token is configured without `coding.git.usernames`.
const DEFAULT_TOKEN_HOST: &str = "github.com";

/// `coding.git.allowed_hosts` and `coding.git.allow_http_loopback`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RemotePolicy {
    /// Lower-case `host` (any port) or `host:port`, IPv6 literals without brackets.
    pub(crate) allowed_hosts: Vec<HostEntry>,
    pub(crate) allow_http_loopback: bool,
}

/// One allowed host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostEntry {
    host: String,
    port: Option<u16>,
}

impl HostEntry {
    /// `host`, `host:port`, `[v6]:port` or `v6`; a `scheme://` prefix and a trailing `/` are
    /// tolerated.
    pub(crate) fn parse(raw: &str) -> HostEntry {
        let raw = raw.trim().to_ascii_lowercase();
        let raw = raw.split_once("://").map_or(raw.as_str(), |(_, rest)| rest);
        let raw = raw.trim_end_matches('/');
        if let Some(rest) = raw.strip_prefix('[') {
            let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return HostEntry {
                host: host.to_string(),
                port,
            };
        }
        match raw.split_once(':') {
            Some((host, port)) if !port.contains(':') => HostEntry {
                host: host.to_string(),
                port: port.parse().ok(),
            },
            _ => HostEntry {
                host: raw.to_string(),
                port: None,
            },
        }
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

/// `host` without IPv6 brackets, lower case.
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl GitCredentials {
    /// The hosts remotes may name; `None` means any host (no token configured, nothing to leak).
    fn effective_hosts(&self) -> Option<Vec<HostEntry>> {
        let policy = self.policy();
        if !policy.allowed_hosts.is_empty() {
            return Some(policy.allowed_hosts.clone());
        }
        if !self.has_token() {
            return None;
        }
        let configured = self.username_hosts();
        if configured.is_empty() {
            return Some(vec![HostEntry::parse(DEFAULT_TOKEN_HOST)]);
        }
        Some(configured.iter().map(|h| HostEntry::parse(h)).collect())
    }

    /// Whether `host` on `port` (the effective port) is an allowed remote host.
    pub(crate) fn host_allowed(&self, host: &str, port: u16) -> bool {
        let host = bare_host(host);
        match self.effective_hosts() {
            None => true,
            Some(hosts) => hosts.iter().any(|entry| entry.matches(&host, port)),
        }
    }

    /// Refuse a remote the operator does not allow: anything but `https://` (plain `http://`
    /// only to loopback with `allow_http_loopback`), and hosts outside the allowed list.
    pub(crate) fn check_remote(&self, remote: &RemoteUrl) -> Result<(), Error> {
        let RemoteUrl::Http {
            url,
            https,
            host,
            port,
        } = remote
        else {
            return Err(InputError::new(format!(
                "refusing the remote `{}`: local paths and file:// URLs are not allowed, only https:// remotes",
                remote.as_str()
            ))
            .field("url")
            .hint("use the https URL of the repository")
            .into());
        };
        if !https {
            if !is_loopback(host) {
                return Err(InputError::new(format!(
                    "refusing the remote `{url}`: plain http:// is not allowed (it would expose the token and the code); only https:// remotes are"
                ))
                .field("url")
                .hint("use the https URL of the repository")
                .into());
            }
            if !self.policy().allow_http_loopback {
                return Err(InputError::new(format!(
                    "refusing the remote `{url}`: plain http:// to a loopback address is off by default"
                ))
                .field("coding.git.allow_http_loopback")
                .hint("set `coding.git.allow_http_loopback: true` to allow http:// remotes on 127.0.0.1, ::1 or localhost")
                .into());
            }
        }
        let effective_port = port.unwrap_or(if *https { 443 } else { 80 });
        if !self.host_allowed(host, effective_port) {
            let allowed: Vec<String> = self
                .effective_hosts()
                .unwrap_or_default()
                .iter()
                .map(|e| match e.port {
                    Some(p) => format!("{}:{p}", e.host),
                    None => e.host.clone(),
                })
                .collect();
            let shown = match port {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            return Err(InputError::new(format!(
                "refusing the remote `{url}`: host `{shown}` is not an allowed git host (allowed: {}), so the git token is not sent there",
                allowed.join(", ")
            ))
            .field("coding.git.allowed_hosts")
            .hint(format!(
                "add `{shown}` to `coding.git.allowed_hosts` if the token may be sent to it"
            ))
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use station_core::Secret;

    use super::*;

    fn token() -> Option<Secret> {
        Some(Secret::new(format!("ghp_{}", "x".repeat(36))))
    }

    fn check(creds: &GitCredentials, url: &str) -> Result<(), Error> {
        creds.check_remote(&RemoteUrl::parse(url).unwrap())
    }

    #[test]
    fn host_entries() {
        let e = HostEntry::parse(" Git.Example.com:8443 ");
        assert!(e.matches("git.example.com", 8443) && !e.matches("git.example.com", 443));
        let any_port = HostEntry::parse("https://github.com/");
        assert!(any_port.matches("github.com", 443) && any_port.matches("github.com", 8443));
        assert!(HostEntry::parse("[::1]:8080").matches("::1", 8080));
        assert!(HostEntry::parse("::1").matches("::1", 9));
    }

    #[test]
    fn defaults_follow_the_configured_credentials() {
        let github_only = GitCredentials::new(token());
        assert!(check(&github_only, "https://github.com/o/r.git").is_ok());
        let err = check(&github_only, "https://evil.example/o/r.git").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("evil.example") && text.contains("coding.git.allowed_hosts"),
            "{text}"
        );

        let with_users = GitCredentials::new(token()).with_username("git.corp.example:8443", "bot");
        assert!(check(&with_users, "https://git.corp.example:8443/r").is_ok());
        assert!(check(&with_users, "https://git.corp.example/r").is_err());
        assert!(check(&with_users, "https://github.com/o/r").is_err());

        let tokenless = GitCredentials::new(None);
        assert!(check(&tokenless, "https://anything.example/r").is_ok());
        assert!(check(&tokenless, "http://anything.example/r").is_err());
        assert!(check(&tokenless, "file:///srv/r.git").is_err());

        let explicit = GitCredentials::new(token()).allow_host("code.example.org");
        assert!(check(&explicit, "https://code.example.org/r").is_ok());
        assert!(check(&explicit, "https://github.com/o/r").is_err());
    }

    #[test]
    fn schemes() {
        let creds = GitCredentials::new(None);
        for local in ["file:///srv/git/r.git", "/srv/git/r.git", "../r.git"] {
            let err = check(&creds, local).unwrap_err();
            assert!(err.to_string().contains("only https://"), "{err}");
        }
        let err = check(&creds, "http://127.0.0.1:9/r.git").unwrap_err();
        assert!(
            err.to_string().contains("coding.git.allow_http_loopback"),
            "{err}"
        );
        let loopback = GitCredentials::new(None).allow_http_loopback(true);
        for ok in [
            "http://127.0.0.1:9/r.git",
            "http://127.3.4.5/r.git",
            "http://[::1]:9/r.git",
            "http://localhost:9/r.git",
        ] {
            assert!(check(&loopback, ok).is_ok(), "{ok}");
        }
        assert!(check(&loopback, "http://10.0.0.1/r.git").is_err());
        assert!(check(&loopback, "http://git.example.com/r.git").is_err());
    }
}
