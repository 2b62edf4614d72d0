use std::path::{Path, PathBuf};

use station_core::config::CodingConfig;
use station_core::{Error, ErrorKind, Secret};
use station_git::{CloneOptions, GITHUB_USERNAME, Git, PushOptions};

use crate::support::{GitServer, bare_head, fake_token, seeded_repo};

fn configured_git(token: &str) -> Git {
    let mut coding = CodingConfig::default();
    coding.git.user_name = Some("Coding Agent".into());
    coding.git.user_email = Some("agent@example.com".into());
    coding.git.allowed_hosts = vec!["127.0.0.1".into()];
    coding.git.allow_http_loopback = true;
    Git::from_config(&coding, Some(Secret::new(token)))
}

async fn clone_into(git: &Git, server: &GitServer, name: &str, dest: &Path) -> PathBuf {
    git.clone_repo(&server.url(name), dest, CloneOptions::default())
        .await
        .unwrap();
    dest.to_path_buf()
}

#[tokio::test]
async fn commit_and_push_land_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, _) = seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = configured_git(&token);
    let work = clone_into(&git, &server, "repo", &tmp.path().join("work")).await;

    std::fs::write(work.join("hello.py"), "print('Hello World')\n").unwrap();
    let commit = git
        .commit(&work, "Add hello.py\n\nPrints a greeting.", true)
        .await
        .unwrap();
    assert_eq!(
        (commit.files_changed, commit.insertions, commit.deletions),
        (1, 1, 0)
    );
    assert_eq!(commit.branch.as_deref(), Some("main"));

    let pushed = git
        .push(&work, PushOptions::default().set_upstream(true))
        .await
        .unwrap();
    assert_eq!(
        (pushed.remote.as_str(), pushed.branch.as_str()),
        ("origin", "main")
    );
    assert_eq!(pushed.commit, commit.hash);
    assert!(pushed.upstream_set);
    assert_eq!(bare_head(&bare, "main").await, commit.hash);
    let config = std::fs::read_to_string(work.join(".git/config")).unwrap();
    assert!(
        config.contains("[branch \"main\"]") && config.contains("merge = refs/heads/main"),
        "{config}"
    );
    assert!(!config.contains(&token));

    // A fresh clone sees the file, the message and the configured identity.
    let again = clone_into(&git, &server, "repo", &tmp.path().join("again")).await;
    assert_eq!(
        std::fs::read_to_string(again.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    let repo = git2::Repository::open(&again).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(head.id().to_string(), commit.hash);
    assert_eq!(
        head.message().unwrap(),
        "Add hello.py\n\nPrints a greeting.\n"
    );
    assert_eq!(head.author().name().unwrap(), "Coding Agent");
    assert_eq!(head.author().email().unwrap(), "agent@example.com");
    assert_eq!(head.committer().name().unwrap(), "Coding Agent");
}

#[tokio::test]
async fn a_new_branch_is_pushed_with_its_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, _) = seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = configured_git(&token);
    let work = clone_into(&git, &server, "repo", &tmp.path().join("work")).await;

    git.branch(&work, "agent/fix-1", true).await.unwrap();
    std::fs::write(work.join("README.md"), "# demo\n\nFixed.\n").unwrap();
    let commit = git.commit(&work, "Fix the readme", true).await.unwrap();
    let pushed = git
        .push(&work, PushOptions::default().set_upstream(true))
        .await
        .unwrap();

    assert_eq!(pushed.branch, "agent/fix-1");
    assert_eq!(bare_head(&bare, "agent/fix-1").await, commit.hash);
    assert_ne!(
        bare_head(&bare, "main").await,
        commit.hash,
        "main is untouched"
    );
    let upstream = git2::Repository::open(&work)
        .unwrap()
        .config()
        .unwrap()
        .get_string("branch.agent/fix-1.remote")
        .unwrap();
    assert_eq!(upstream, "origin");
}

#[tokio::test]
async fn a_non_fast_forward_push_is_rejected_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, _) = seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = configured_git(&token);
    let first = clone_into(&git, &server, "repo", &tmp.path().join("first")).await;
    let second = clone_into(&git, &server, "repo", &tmp.path().join("second")).await;

    std::fs::write(first.join("a.txt"), "from first\n").unwrap();
    let landed = git.commit(&first, "first", true).await.unwrap();
    git.push(&first, PushOptions::default()).await.unwrap();
    std::fs::write(second.join("b.txt"), "from second\n").unwrap();
    git.commit(&second, "second", true).await.unwrap();

    let err = git.push(&second, PushOptions::default()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Backend, "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("rejected") && text.contains("non-fast-forward"),
        "{text}"
    );
    assert!(text.contains("fetch and merge or rebase"), "{text}");
    assert_eq!(
        bare_head(&bare, "main").await,
        landed.hash,
        "the server kept the first push"
    );
}

#[tokio::test]
async fn a_server_hook_rejection_is_reported_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    let (bare, before) = seeded_repo(tmp.path(), "repo").await;
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'policy: main is frozen' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = configured_git(&token);
    let work = clone_into(&git, &server, "repo", &tmp.path().join("work")).await;
    std::fs::write(work.join("c.txt"), "blocked\n").unwrap();
    git.commit(&work, "blocked change", true).await.unwrap();

    let err = git.push(&work, PushOptions::default()).await.unwrap_err();

    let text = err.to_string();
    assert!(
        text.contains("rejected by the remote") && text.contains("refs/heads/main"),
        "{text}"
    );
    assert!(text.contains("pre-receive hook declined"), "{text}");
    assert!(
        text.contains("policy: main is frozen"),
        "the hook's own message is passed on: {text}"
    );
    assert_eq!(bare_head(&bare, "main").await, before);
}

#[tokio::test]
async fn push_errors_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let git = configured_git(&token);
    let work = clone_into(&git, &server, "repo", &tmp.path().join("work")).await;

    let err = git
        .push(&work, PushOptions::default().remote("upstream"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "remote", id } if id == "upstream"),
        "{err:?}"
    );
    let err = git
        .push(&work, PushOptions::default().branch("ghost"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what: "branch", id } if id == "ghost"),
        "{err:?}"
    );

    let wrong = fake_token();
    std::fs::write(work.join("d.txt"), "d\n").unwrap();
    git.commit(&work, "d", true).await.unwrap();
    let err = configured_git(&wrong)
        .push(&work, PushOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
    assert!(!format!("{err} {err:?}").contains(&wrong));

    // A remote URL that carries a token is refused, and the token is not echoed.
    let leaky =
        server
            .url("repo")
            .replacen("http://", &format!("http://x-access-token:{token}@"), 1);
    git2::Repository::open(&work)
        .unwrap()
        .remote_set_url("origin", &leaky)
        .unwrap();
    let err = git.push(&work, PushOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("remote `origin`") && text.contains("embeds credentials"),
        "{text}"
    );
    assert!(!text.contains(&token), "{text}");
}
