use std::time::{Duration, Instant};

use station_core::{CancelSignal, Error, ErrorKind};
use station_git::{CloneOptions, GITHUB_USERNAME, Git};

use crate::support::{
    GitServer, StallServer, bare_head, eventually, fake_token, loopback_creds, seeded_repo,
};

fn git_with(token: &str) -> Git {
    Git::new(loopback_creds(Some(token)))
}

#[tokio::test]
async fn clones_a_private_repo_with_the_token_and_keeps_it_out_of_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, main_head) = seeded_repo(tmp.path(), "private").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let dest = tmp.path().join("work");

    let cloned = git_with(&token)
        .clone_repo(&server.url("private"), &dest, CloneOptions::default())
        .await
        .unwrap();

    assert_eq!(cloned.branch.as_deref(), Some("main"));
    assert_eq!(cloned.head.as_deref(), Some(main_head.as_str()));
    assert_eq!(
        cloned.head.as_deref(),
        Some(bare_head(&bare, "main").await.as_str())
    );
    assert!(!cloned.shallow);
    assert_eq!(cloned.url, server.url("private"));
    assert_eq!(
        std::fs::read_to_string(dest.join("src/lib.rs")).unwrap(),
        "pub fn answer() -> u32 {\n    42\n}\n"
    );
    let config = std::fs::read_to_string(dest.join(".git/config")).unwrap();
    assert!(
        config.contains(&format!("url = {}", server.url("private"))),
        "{config}"
    );
    assert!(!config.contains(&token), "{config}");
    // The server demanded auth, and got the default user name for a non-GitLab host.
    assert!(server.unauthorized() >= 1);
    assert!(
        server.users_seen().iter().all(|u| u == GITHUB_USERNAME),
        "{:?}",
        server.users_seen()
    );
}

#[tokio::test]
async fn clones_a_branch_shallowly() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, _) = seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let dest = tmp.path().join("work");

    let opts = CloneOptions::default().branch("feature").shallow(true);
    let cloned = git_with(&token)
        .clone_repo(&server.url("repo"), &dest, opts)
        .await
        .unwrap();

    assert_eq!(cloned.branch.as_deref(), Some("feature"));
    assert_eq!(
        cloned.head.as_deref(),
        Some(bare_head(&bare, "feature").await.as_str())
    );
    assert!(cloned.shallow);
    assert_eq!(
        std::fs::read_to_string(dest.join("feature.txt")).unwrap(),
        "feature work\n"
    );
    let repo = git2::Repository::open(&dest).unwrap();
    assert!(repo.is_shallow());
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    assert_eq!(
        walk.count(),
        1,
        "a shallow clone has only the tip commit (the server has 3)"
    );
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_auth_error_without_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, wrong) = (fake_token(), fake_token());
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &good).await;
    let dest = tmp.path().join("work");

    let err = git_with(&wrong)
        .clone_repo(&server.url("repo"), &dest, CloneOptions::default())
        .await
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let text = format!("{err} | {err:?}");
    assert!(text.contains("rejected the git token"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains(&wrong) && !text.contains(&good), "{text}");
    assert!(!dest.exists(), "a failed clone leaves nothing behind");
}

#[tokio::test]
async fn no_token_says_how_to_configure_one() {
    let tmp = tempfile::tempdir().unwrap();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &fake_token()).await;
    let dest = tmp.path().join("work");
    std::fs::create_dir(&dest).unwrap();

    let err = Git::new(loopback_creds(None))
        .clone_repo(&server.url("repo"), &dest, CloneOptions::default())
        .await
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("token_env"), "{err}");
    assert!(
        dest.is_dir() && std::fs::read_dir(&dest).unwrap().next().is_none(),
        "an empty destination is left empty"
    );
}

#[tokio::test]
async fn per_host_user_names_are_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), "oauth2", &token).await;
    let creds = loopback_creds(Some(&token)).with_username("127.0.0.1", "oauth2");

    Git::new(creds)
        .clone_repo(
            &server.url("repo"),
            &tmp.path().join("work"),
            CloneOptions::default(),
        )
        .await
        .unwrap();

    assert!(
        server.users_seen().iter().all(|u| u == "oauth2"),
        "{:?}",
        server.users_seen()
    );
}

#[tokio::test]
async fn missing_repos_and_branches_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = git_with(&token);

    let err = git
        .clone_repo(
            &server.url("nope"),
            &tmp.path().join("a"),
            CloneOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "repository",
                ..
            }
        ),
        "{err:?}"
    );

    let opts = CloneOptions::default().branch("no-such-branch");
    let err = git
        .clone_repo(&server.url("repo"), &tmp.path().join("b"), opts)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "branch", id } if id.contains("no-such-branch")),
        "{err:?}"
    );
    assert!(!tmp.path().join("b").exists());
}

#[tokio::test]
async fn urls_with_credentials_and_busy_destinations_are_refused_before_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = git_with(&token);
    let with_creds =
        server
            .url("repo")
            .replacen("http://", &format!("http://x-access-token:{token}@"), 1);

    let err = git
        .clone_repo(&with_creds, &tmp.path().join("a"), CloneOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("embeds credentials") && text.contains("token_env"),
        "{text}"
    );
    assert!(
        text.contains(&server.url("repo")),
        "the message shows the clean URL: {text}"
    );
    assert!(!text.contains(&token), "{text}");

    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let err = git
        .clone_repo(&server.url("repo"), &busy, CloneOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(busy.join("keep.txt")).unwrap(),
        "mine"
    );

    let err = git
        .clone_repo(
            "git@github.com:o/r.git",
            &tmp.path().join("c"),
            CloneOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only https://"), "{err}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_stalled_http_server_hits_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let stall = StallServer::start().await;
    let dest = tmp.path().join("work");
    let started = Instant::now();

    let opts = CloneOptions::default().timeout(Duration::from_secs(1));
    let err = git_with(&fake_token())
        .clone_repo(&stall.http_url(), &dest, opts)
        .await
        .unwrap_err();

    let elapsed = started.elapsed();
    assert!(
        matches!(&err, Error::Timeout { after, .. } if *after == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("git clone of http://127.0.0.1"),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    assert_eq!(stall.accepted(), 1);
    assert_eq!(
        stall.first_bytes(),
        vec![b'G'],
        "libgit2 sent its GET straight to the server"
    );
    // libgit2 connects to plain-http servers directly, so its thread waits for the socket;
    // once the server closes it, the worker ends and removes the half-made clone.
    drop(stall);
    assert!(
        eventually(Duration::from_secs(10), || !dest.exists()).await,
        "the worker cleaned up"
    );
}

#[tokio::test]
async fn a_stalled_https_server_is_cut_at_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let stall = StallServer::start().await;
    let dest = tmp.path().join("work");
    let started = Instant::now();

    let opts = CloneOptions::default().timeout(Duration::from_secs(1));
    let err = git_with(&fake_token())
        .clone_repo(&stall.https_url(), &dest, opts)
        .await
        .unwrap_err();

    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert_eq!(stall.accepted(), 1);
    assert_eq!(
        stall.first_bytes(),
        vec![0x16],
        "libgit2 started TLS through the relay's tunnel"
    );
    // The relay cut the tunnel, so the worker is already done and has cleaned up.
    assert!(!dest.exists());
}

#[tokio::test]
async fn cancelling_stops_a_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let stall = StallServer::start().await;
    let cancel = CancelSignal::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = Instant::now();

    let opts = CloneOptions::default()
        .cancel(cancel)
        .timeout(Duration::from_secs(60));
    let err = git_with(&fake_token())
        .clone_repo(&stall.https_url(), &tmp.path().join("w"), opts)
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
}
