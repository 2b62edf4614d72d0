//! The token goes only to hosts the operator allows; other schemes and local paths are refused
//! before any request.

use station_core::config::CodingConfig;
use station_core::{ErrorKind, Secret};
use station_git::{CloneOptions, GITHUB_USERNAME, Git, GitCredentials, PushOptions};

use crate::support::{GitServer, fake_token, loopback_creds, seeded_repo};

/// `127.0.0.1:PORT` of a testkit server.
fn host_port(server: &GitServer) -> String {
    let url = server.url("x");
    let rest = url.strip_prefix("http://").unwrap();
    rest.split('/').next().unwrap().to_string()
}

#[tokio::test]
async fn the_token_is_never_sent_to_a_host_that_is_not_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let allowed = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let stranger = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let mut coding = CodingConfig::default();
    coding.git.allowed_hosts = vec![host_port(&allowed)];
    coding.git.allow_http_loopback = true;
    let git = Git::from_config(&coding, Some(Secret::new(token.clone())));

    let dest = tmp.path().join("w");
    let err = git
        .clone_repo(&stranger.url("repo"), &dest, CloneOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&stranger.url("repo")) && text.contains("coding.git.allowed_hosts"),
        "names the URL and the setting: {text}"
    );
    assert!(!text.contains(&token), "{text}");
    assert_eq!(stranger.requests(), 0, "no request reached the stranger");
    assert!(stranger.users_seen().is_empty(), "no Authorization header");
    assert!(!dest.exists());

    // The allowed host works, and a push to the stranger (origin rewritten) is refused too.
    let work = tmp.path().join("work");
    git.clone_repo(&allowed.url("repo"), &work, CloneOptions::default())
        .await
        .unwrap();
    std::fs::write(work.join("a.txt"), "a\n").unwrap();
    git.commit(&work, "a", true).await.unwrap();
    git2::Repository::open(&work)
        .unwrap()
        .remote_set_url("origin", &stranger.url("repo"))
        .unwrap();
    let err = git.push(&work, PushOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("coding.git.allowed_hosts"),
        "{err}"
    );
    assert_eq!(stranger.requests(), 0);
}

#[tokio::test]
async fn the_default_allows_only_the_hosts_of_the_configured_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    // A token and no user names: github.com only.
    let github_only =
        Git::new(GitCredentials::new(Some(Secret::new(token.clone()))).allow_http_loopback(true));
    let err = github_only
        .clone_repo(
            &server.url("repo"),
            &tmp.path().join("a"),
            CloneOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("github.com"), "{err}");
    assert_eq!(server.requests(), 0);
    // A user name for this server's host makes it an allowed host.
    let by_username = Git::new(
        GitCredentials::new(Some(Secret::new(token.clone())))
            .with_username(host_port(&server), GITHUB_USERNAME)
            .allow_http_loopback(true),
    );
    by_username
        .clone_repo(
            &server.url("repo"),
            &tmp.path().join("b"),
            CloneOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn local_paths_file_urls_and_plain_http_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, _) = seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = Git::new(loopback_creds(Some(&token)));
    let file_url = format!("file://{}", bare.display());
    for (i, url) in [file_url.as_str(), bare.to_str().unwrap()]
        .into_iter()
        .enumerate()
    {
        let dest = tmp.path().join(format!("local{i}"));
        let err = git
            .clone_repo(url, &dest, CloneOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("only https://"), "{url}: {err}");
        assert!(!dest.exists(), "{url}: nothing was cloned");
    }

    // Plain http to loopback needs the explicit flag.
    let no_flag =
        Git::new(GitCredentials::new(Some(Secret::new(token.clone()))).allow_host("127.0.0.1"));
    let err = no_flag
        .clone_repo(
            &server.url("repo"),
            &tmp.path().join("h"),
            CloneOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("coding.git.allow_http_loopback"),
        "{err}"
    );
    assert_eq!(server.requests(), 0);
}

/// Answers every request with a redirect to `location` + the request path, and counts them.
async fn redirector(location: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let reply = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let target = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    // Same server, other host name: `localhost` instead of `127.0.0.1`.
    let elsewhere = format!(
        "http://localhost:{}",
        host_port(&target).rsplit(':').next().unwrap()
    );
    let (allowed_base, hits) = redirector(elsewhere).await;
    let allowed_host = allowed_base.trim_start_matches("http://").to_string();
    let git = Git::new(
        GitCredentials::new(Some(Secret::new(token.clone())))
            .allow_host(&allowed_host)
            .allow_http_loopback(true),
    );

    let err = git
        .clone_repo(
            &format!("{allowed_base}/repo.git"),
            &tmp.path().join("w"),
            CloneOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(!err.to_string().contains(&token), "{err}");
    assert_eq!(target.requests(), 0, "the redirect was not followed: {err}");
    assert!(target.users_seen().is_empty());
}
