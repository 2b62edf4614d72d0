//! Everything this crate can emit is scanned for the token.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use station_core::Secret;
use station_core::config::CodingConfig;
use station_git::{
    CloneOptions, GITHUB_USERNAME, GITLAB_USERNAME, Git, GitReply, GitRequest, PushOptions,
};

use crate::channel::serve_one;
use crate::support::{GitServer, StallServer, basic_header, fake_token, read_tree, seeded_repo};

/// Every tracing event of this crate, at TRACE level, as text.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("station_git=trace"))
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the only global subscriber of this test binary");
        logs
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The forms a token can take on the wire: itself, base64 alone, and basic-auth headers.
fn forms(token: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut forms = vec![token.to_string(), b64(token)];
    for user in [GITHUB_USERNAME, GITLAB_USERNAME, "ci-bot"] {
        forms.push(b64(&format!("{user}:{token}")));
        forms.push(basic_header(user, token));
    }
    forms
}

#[tokio::test]
async fn the_token_never_appears_in_anything_the_crate_emits() {
    let logs = captured_logs();
    let tmp = tempfile::tempdir().unwrap();
    let (token, wrong) = (fake_token(), fake_token());
    seeded_repo(tmp.path(), "repo").await;
    let server = GitServer::start(tmp.path(), GITHUB_USERNAME, &token).await;
    let mut coding = CodingConfig::default();
    coding.git.user_name = Some("Agent".into());
    coding
        .git
        .usernames
        .insert("ci.example.com".into(), "ci-bot".into());
    coding.git.allowed_hosts = vec!["127.0.0.1".into()];
    coding.git.allow_http_loopback = true;
    let git = Git::from_config(&coding, Some(Secret::new(token.clone())));
    let wrong_git = Git::from_config(&coding, Some(Secret::new(wrong.clone())));
    let mut emitted: Vec<String> = vec![
        format!("{git:?}"),
        format!("{:?}", git.credentials()),
        format!("{:?}", git.redactor()),
    ];
    let record_err = |emitted: &mut Vec<String>, e: station_core::Error| {
        emitted.push(format!("{e}"));
        emitted.push(format!("{e:?}"));
        emitted.push(serde_json::to_string(&GitReply::from_result(Err(e))).unwrap());
    };

    // Successes.
    let work = tmp.path().join("work");
    let cloned = git
        .clone_repo(&server.url("repo"), &work, CloneOptions::default())
        .await
        .unwrap();
    let stale = tmp.path().join("stale");
    git.clone_repo(&server.url("repo"), &stale, CloneOptions::default())
        .await
        .unwrap();
    let shallow = git
        .clone_repo(
            &server.url("repo"),
            &tmp.path().join("shallow"),
            CloneOptions::default().shallow(true),
        )
        .await
        .unwrap();
    std::fs::write(work.join("x.txt"), "x\n").unwrap();
    let status = git.status(&work).await.unwrap();
    let commit = git.commit(&work, "x", true).await.unwrap();
    let pushed = git
        .push(&work, PushOptions::default().set_upstream(true))
        .await
        .unwrap();
    let mut replies = Vec::new();
    for request in [
        r#"{"op":"branch","branch":"leak-check"}"#,
        r#"{"op":"status"}"#,
    ] {
        replies.push(serve_one(&git, &work, request).await);
    }
    std::fs::write(work.join("y.txt"), "y\n").unwrap();
    replies.push(serve_one(&git, &work, r#"{"op":"commit","message":"y"}"#).await);
    replies.push(serve_one(&git, &work, r#"{"op":"push"}"#).await);
    let results = serde_json::json!({
        "clone": cloned, "shallow": shallow, "status": status, "commit": commit, "push": pushed,
        "request": GitRequest::Push { remote: None, branch: None, set_upstream: true },
    });
    emitted.push(results.to_string());
    emitted.extend(replies);

    // Failures.
    record_err(
        &mut emitted,
        wrong_git
            .clone_repo(
                &server.url("repo"),
                &tmp.path().join("w1"),
                CloneOptions::default(),
            )
            .await
            .unwrap_err(),
    );
    record_err(
        &mut emitted,
        wrong_git
            .push(&work, PushOptions::default())
            .await
            .unwrap_err(),
    );
    let in_url =
        server
            .url("repo")
            .replacen("http://", &format!("http://x-access-token:{token}@"), 1);
    record_err(
        &mut emitted,
        git.clone_repo(&in_url, &tmp.path().join("w2"), CloneOptions::default())
            .await
            .unwrap_err(),
    );
    let bare_token_url = server
        .url("repo")
        .replacen("http://", &format!("http://{token}@"), 1);
    record_err(
        &mut emitted,
        git.clone_repo(
            &bare_token_url,
            &tmp.path().join("w3"),
            CloneOptions::default(),
        )
        .await
        .unwrap_err(),
    );
    let stall = StallServer::start().await;
    let quick = CloneOptions::default().timeout(Duration::from_millis(500));
    record_err(
        &mut emitted,
        git.clone_repo(&stall.https_url(), &tmp.path().join("w4"), quick)
            .await
            .unwrap_err(),
    );
    std::fs::write(stale.join("z.txt"), "z\n").unwrap();
    git.commit(&stale, "z", true).await.unwrap();
    record_err(
        &mut emitted,
        git.push(&stale, PushOptions::default()).await.unwrap_err(),
    );
    git2::Repository::open(&stale)
        .unwrap()
        .remote_set_url("origin", &in_url)
        .unwrap();
    record_err(
        &mut emitted,
        git.push(&stale, PushOptions::default()).await.unwrap_err(),
    );

    // What is on disk: every uncompressed file of every clone's .git.
    for dir in [&work, &tmp.path().join("shallow")] {
        for (path, text) in read_tree(&dir.join(".git")) {
            emitted.push(format!("{}: {text}", path.display()));
        }
    }
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("git clone") && logs.contains("git push"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("TRACE"), "TRACE events were captured");
    assert!(
        logs.contains("answering the server's credential request"),
        "the credential path was logged: {logs}"
    );
    emitted.push(logs);

    let secrets: Vec<String> = forms(&token).into_iter().chain(forms(&wrong)).collect();
    for text in &emitted {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a form of the token leaked into: {text}"
            );
        }
    }
    let config = std::fs::read_to_string(work.join(".git/config")).unwrap();
    assert!(
        config.contains(&server.url("repo")),
        "the scan covered the config: {config}"
    );
}
