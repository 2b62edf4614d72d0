//! Test support lives in the test kit so other crates' tests can use the same git server.

pub(crate) use station_testkit::git_server::*;
