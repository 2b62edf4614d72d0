//! Test support lives in the test kit so other crates' tests can use the same git server.

pub(crate) use station_testkit::git_server::*;

use station_core::Secret;
use station_git::GitCredentials;

/// Credentials for the testkit's servers: plain http on 127.0.0.1, which must be allowed.
pub(crate) fn loopback_creds(token: Option<&str>) -> GitCredentials {
    GitCredentials::new(token.map(Secret::new))
        .allow_host("127.0.0.1")
        .allow_http_loopback(true)
}
