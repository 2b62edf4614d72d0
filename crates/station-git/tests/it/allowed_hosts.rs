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
