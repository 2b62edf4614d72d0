//! The token, the user name sent with it, and remote URLs (which must never carry either).

use std::collections::BTreeMap;
use std::fmt;

use station_core::config::GitConfig;
use station_core::{Error, InputError, Secret};
use url::Url;

use crate::policy::{HostEntry, RemotePolicy};

/// User name GitHub (github.com, Enterprise, App installation tokens) expects with a token.
pub const GITHUB_USERNAME: &str = "x-access-token";
/// User name GitLab expects with a personal or project access token.
pub const GITLAB_USERNAME: &str = "oauth2";

/// The token, the user name to send it with per host, and the hosts remotes may name.
///
/// The token reaches libgit2 only through its credential callback, and only for the host of the
/// remote being used when that host is allowed, over `https` (or plain `http` to a loopback
/// address when explicitly allowed).
#[derive(Clone, Default)]
pub struct GitCredentials {
    token: Option<Secret>,
    /// Lower-case `host` or `host:port` -> user name.
    usernames: BTreeMap<String, String>,
    policy: RemotePolicy,
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCredentials")
            .field(
                "token",
                &self.token.as_ref().map(|_| station_core::redact::REDACTED),
            )
            .field("usernames", &self.usernames)
            .field("policy", &self.policy)
            .finish()
    }
}

impl GitCredentials {
    /// Credentials with this token (an empty token counts as none) and the default user names.
    pub fn new(token: Option<Secret>) -> Self {
        GitCredentials {
            token: token.filter(|t| !t.is_empty()),
            usernames: BTreeMap::new(),
            policy: RemotePolicy::default(),
        }
    }

    /// From `coding.git` and the resolved token (`LoadedConfig::git_token`; `GitConfig::token` is
    /// not read here because it may still hold an unexpanded `${VAR}`).
    pub fn from_config(git: &GitConfig, token: Option<Secret>) -> Self {
        let mut creds = Self::new(token);
        for (host, user) in &git.usernames {
            creds = creds.with_username(host, user);
        }
        for host in &git.allowed_hosts {
            creds = creds.allow_host(host);
        }
        creds.allow_http_loopback(git.allow_http_loopback)
    }

    /// Allow remotes on `host` (any port) or `host:port` (`coding.git.allowed_hosts`). Once any
    /// host is allowed this way, the defaults (the hosts of the user names, `github.com`) no
    /// longer apply.
    pub fn allow_host(mut self, host: impl AsRef<str>) -> Self {
        self.policy
            .allowed_hosts
            .push(HostEntry::parse(host.as_ref()));
        self
    }

    /// Allow plain `http://` remotes on loopback addresses (`coding.git.allow_http_loopback`).
    pub fn allow_http_loopback(mut self, allow: bool) -> Self {
        self.policy.allow_http_loopback = allow;
        self
    }

    pub(crate) fn policy(&self) -> &RemotePolicy {
        &self.policy
    }

    /// The hosts user names are configured for (`host` or `host:port`).
    pub(crate) fn username_hosts(&self) -> Vec<&str> {
        self.usernames.keys().map(String::as_str).collect()
    }

    /// Send `username` with the token to `host` (`host` or `host:port`).
    pub fn with_username(mut self, host: impl AsRef<str>, username: impl Into<String>) -> Self {
        self.usernames
            .insert(host.as_ref().trim().to_ascii_lowercase(), username.into());
        self
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// The user name sent with the token to `host` (with an optional `port`): a configured one,
    /// else `oauth2` for GitLab hosts, else `x-access-token` (GitHub and everything else).
    pub fn username_for(&self, host: &str, port: Option<u16>) -> &str {
        let host = host.to_ascii_lowercase();
        if let Some(port) = port
            && let Some(user) = self.usernames.get(&format!("{host}:{port}"))
        {
            return user;
        }
        if let Some(user) = self.usernames.get(&host) {
            return user;
        }
        if is_gitlab_host(&host) {
            GITLAB_USERNAME
        } else {
            GITHUB_USERNAME
        }
    }

    /// Every user name the token may be sent with (for registering basic-auth forms).
    pub(crate) fn all_usernames(&self) -> Vec<&str> {
        let mut names: Vec<&str> = vec![GITHUB_USERNAME, GITLAB_USERNAME];
        names.extend(self.usernames.values().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        names
    }
}

fn is_gitlab_host(host: &str) -> bool {
    host == "gitlab.com" || host.ends_with(".gitlab.com") || host.starts_with("gitlab.")
}

/// A remote as we accept it: never with credentials inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteUrl {
    /// `http://` or `https://`.
    Http {
        url: String,
        https: bool,
        host: String,
        port: Option<u16>,
    },
    /// A local path or `file://` URL.
    Local { url: String },
}

impl RemoteUrl {
    /// Check `raw`: refuse embedded credentials and unsupported transports.
    pub(crate) fn parse(raw: &str) -> Result<RemoteUrl, Error> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(InputError::new("the remote URL is empty").into());
        }
        if let Some(scheme_end) = raw.find("://") {
            let scheme = raw[..scheme_end].to_ascii_lowercase();
            let parsed = Url::parse(raw).map_err(|e| {
                Error::from(InputError::new(format!(
                    "invalid remote URL `{}`: {e}",
                    strip_credentials(raw)
                )))
            })?;
            if !matches!(scheme.as_str(), "https" | "http" | "file") {
                return Err(unsupported_transport(raw));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(InputError::new(format!(
                    "the remote URL embeds credentials; use `{}` and put the token in the environment variable named by `coding.git.token_env`",
                    strip_credentials(raw)
                ))
                .field("url")
                .into());
            }
            return match scheme.as_str() {
                "https" | "http" => {
                    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
                    if host.is_empty() {
                        return Err(
                            InputError::new(format!("the remote URL `{raw}` has no host")).into(),
                        );
                    }
                    Ok(RemoteUrl::Http {
                        url: parsed.to_string(),
                        https: scheme == "https",
                        host,
                        port: parsed.port(),
                    })
                }
                _ => Ok(RemoteUrl::Local {
                    url: raw.to_string(),
                }),
            };
        }
        if looks_like_scp(raw) {
            return Err(unsupported_transport(raw));
        }
        Ok(RemoteUrl::Local {
            url: raw.to_string(),
        })
    }

    /// The URL handed to libgit2 and shown to users (no credentials).
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RemoteUrl::Http { url, .. } | RemoteUrl::Local { url } => url,
        }
    }

    /// `(host, port)` to relay an `https` remote through.
    pub(crate) fn relay_target(&self) -> Option<(String, u16)> {
        match self {
            RemoteUrl::Http {
                https: true,
                host,
                port,
                ..
            } => {
                // IPv6 literals are bracketed in URLs, not in socket addresses.
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((host.to_string(), port.unwrap_or(443)))
            }
            _ => None,
        }
    }

    /// Whether the credential callback may answer a request for `url` with our token: same
    /// host and port as this remote, and a transport that does not expose the token.
    pub(crate) fn may_receive_token(
        &self,
        url: &str,
    ) -> Result<(&str, Option<u16>), CredentialRefusal> {
        let RemoteUrl::Http {
            https, host, port, ..
        } = self
        else {
            return Err(CredentialRefusal::NotHttp);
        };
        let asked = Url::parse(url).map_err(|_| CredentialRefusal::OtherHost)?;
        let asked_host = asked.host_str().unwrap_or_default().to_ascii_lowercase();
        let asked_https = asked.scheme().eq_ignore_ascii_case("https");
        let default_port = |h: bool| if h { 443 } else { 80 };
        if asked_host != *host
            || asked.port().unwrap_or(default_port(asked_https))
                != port.unwrap_or(default_port(*https))
        {
            return Err(CredentialRefusal::OtherHost);
        }
        if !asked_https && !is_loopback(host) {
            return Err(CredentialRefusal::PlainHttp);
        }
        Ok((host, *port))
    }

    pub(crate) fn host(&self) -> Option<&str> {
        match self {
            RemoteUrl::Http { host, .. } => Some(host),
            RemoteUrl::Local { .. } => None,
        }
    }
}

/// Why the credential callback did not hand out the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialRefusal {
    NotHttp,
    OtherHost,
    PlainHttp,
    /// The host is not in `coding.git.allowed_hosts` (or its defaults).
    NotAllowed,
}

fn unsupported_transport(raw: &str) -> Error {
    InputError::new(format!("`{}` is not supported: only https:// remotes are", strip_credentials(raw)))
        .hint("use the https URL of the repository and set `coding.git.token_env` for private repositories")
        .into()
}

/// `user@host:path` (scp-style ssh), as opposed to a local path.
fn looks_like_scp(raw: &str) -> bool {
    match raw.find(':') {
        Some(colon) => {
            let before = &raw[..colon];
            !before.is_empty()
                && !before.contains('/')
                && !before.contains('\\')
                && !std::path::Path::new(raw).exists()
        }
        None => false,
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `url` without any `user[:password]@` part. Text that is not a URL is returned unchanged.
pub fn strip_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..rest_start], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_host() {
        let creds = GitCredentials::new(Some(Secret::new("t0ken-value")))
            .with_username("git.example.com", "bot")
            .with_username("127.0.0.1:8080", "local");
        assert_eq!(creds.username_for("github.com", None), GITHUB_USERNAME);
        assert_eq!(
            creds.username_for("github.mycorp.net", None),
            GITHUB_USERNAME
        );
        assert_eq!(creds.username_for("gitlab.com", None), GITLAB_USERNAME);
        assert_eq!(
            creds.username_for("gitlab.mycorp.net", None),
            GITLAB_USERNAME
        );
        assert_eq!(creds.username_for("Git.Example.com", Some(443)), "bot");
        assert_eq!(creds.username_for("127.0.0.1", Some(8080)), "local");
        assert_eq!(creds.username_for("127.0.0.1", Some(9090)), GITHUB_USERNAME);
        assert_eq!(creds.username_for("bitbucket.org", None), GITHUB_USERNAME);
    }

    #[test]
    fn config_usernames_and_empty_tokens() {
        let mut git = GitConfig::default();
        git.usernames
            .insert("code.example.org".into(), "oauth2".into());
        let creds = GitCredentials::from_config(&git, Some(Secret::new("")));
        assert!(!creds.has_token());
        assert_eq!(creds.username_for("code.example.org", None), "oauth2");
        assert!(
            !format!("{:?}", GitCredentials::new(Some(Secret::new("s3cret-tok"))))
                .contains("s3cret")
        );
    }

    #[test]
    fn credentials_in_urls_are_refused_without_echoing_them() {
        for raw in [
            "https://x-access-token:s3cretvalue@github.com/o/r.git",
            "https://s3cretvalue@github.com/o/r.git",
        ] {
            let err = RemoteUrl::parse(raw).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cretvalue"), "{text}");
            assert!(
                text.contains("https://github.com/o/r.git") && text.contains("token_env"),
                "{text}"
            );
        }
    }

    #[test]
    fn transports() {
        assert!(matches!(
            RemoteUrl::parse("https://github.com/o/r.git").unwrap(),
            RemoteUrl::Http { https: true, .. }
        ));
        assert_eq!(
            RemoteUrl::parse("https://GitHub.com:8443/o/r")
                .unwrap()
                .relay_target(),
            Some(("github.com".to_string(), 8443))
        );
        assert_eq!(
            RemoteUrl::parse("https://[::1]:8443/r")
                .unwrap()
                .relay_target(),
            Some(("::1".to_string(), 8443))
        );
        assert_eq!(
            RemoteUrl::parse("http://127.0.0.1:9/r")
                .unwrap()
                .relay_target(),
            None
        );
        assert!(matches!(
            RemoteUrl::parse("/srv/git/r.git").unwrap(),
            RemoteUrl::Local { .. }
        ));
        assert!(matches!(
            RemoteUrl::parse("file:///srv/git/r.git").unwrap(),
            RemoteUrl::Local { .. }
        ));
        for ssh in [
            "git@github.com:o/r.git",
            "ssh://git@github.com/o/r.git",
            "git://github.com/o/r.git",
        ] {
            let err = RemoteUrl::parse(ssh).unwrap_err();
            assert!(err.to_string().contains("only https://"), "{err}");
        }
    }

    #[test]
    fn the_token_goes_only_to_the_remote_host_over_a_safe_transport() {
        let remote = RemoteUrl::parse("https://github.com/o/r.git").unwrap();
        assert!(
            remote
                .may_receive_token("https://github.com/o/r.git/info/refs")
                .is_ok()
        );
        assert_eq!(
            remote.may_receive_token("https://evil.example/o/r.git"),
            Err(CredentialRefusal::OtherHost)
        );
        assert_eq!(
            remote.may_receive_token("https://github.com:444/o/r.git"),
            Err(CredentialRefusal::OtherHost)
        );
        let plain = RemoteUrl::parse("http://git.example.com/r.git").unwrap();
        assert_eq!(
            plain.may_receive_token("http://git.example.com/r.git"),
            Err(CredentialRefusal::PlainHttp)
        );
        let local = RemoteUrl::parse("http://127.0.0.1:8080/r.git").unwrap();
        assert!(
            local
                .may_receive_token("http://127.0.0.1:8080/r.git")
                .is_ok()
        );
    }

    #[test]
    fn strip_credentials_removes_userinfo_only() {
        assert_eq!(
            strip_credentials("https://u:p@h.example/a@b"),
            "https://h.example/a@b"
        );
        assert_eq!(
            strip_credentials("https://h.example/x"),
            "https://h.example/x"
        );
        assert_eq!(strip_credentials("not a url"), "not a url");
    }
}
