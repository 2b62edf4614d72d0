//! The conformance suite through NATS: the `opencode-nats` client, a worker composed as
//! `stn worker` composes it (the OpenCode HTTP backend as executor) in front of a real
//! `opencode serve`, a real `nats-server -js`, and the scripted model.

use std::sync::Arc;

use station_backend_http::{HttpBackend, ManagedServer, OpencodeConfig};
use station_backend_nats::{NatsBackend, NatsBackendOptions, NatsConfig, Worker, WorkerOptions};
use station_core::CodingBackend;
use station_core::config::CodingConfig;
use station_testkit::conformance::{Target, run_all};
use station_testkit::model_server::{Script, ScriptedModel};
use station_testkit::peers::{self, NatsServer, OpencodeServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_nats_worker_and_real_opencode() {
    let nats = NatsServer::start().await;
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = peers::opencode_env(home.path(), &model);
    let opencode = OpencodeServer::start(&env, home.path()).await;
    let workspaces = home.path().join("workspaces");
    std::fs::create_dir_all(&workspaces).unwrap();

    let section = OpencodeConfig {
        url: opencode.url.clone(),
        managed: ManagedServer::Never,
        model: Some(peers::OPENCODE_MODEL.into()),
        ..OpencodeConfig::default()
    };
    let executor: Arc<dyn CodingBackend> = Arc::new(
        HttpBackend::new(section, &CodingConfig::default())
            .unwrap()
            .with_workspace_base(workspaces.clone()),
    );
    let nats_config = NatsConfig {
        url: nats.url.clone(),
        heartbeat_sec: 2,
        ..NatsConfig::default()
    };
    let worker = Worker::new(
        nats_config.clone(),
        executor,
        workspaces.clone(),
        WorkerOptions::default(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Bound first, so the client's first task finds a subscriber.
    let worker_task = tokio::spawn(worker.bind().await.unwrap().run(shutdown.clone()));

    let backend: Arc<dyn CodingBackend> = Arc::new(
        NatsBackend::connect(&nats_config, NatsBackendOptions::default())
            .await
            .unwrap(),
    );
    run_all(&Target {
        backend,
        model: &model,
        workspace_root: workspaces,
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(40), worker_task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
}

/// Writes `USAGE.md` in the worker's workspace, standing in for OpenCode.
#[derive(Debug)]
struct WritingExecutor;

#[async_trait::async_trait]
impl CodingBackend for WritingExecutor {
    fn name(&self) -> &str {
        "opencode"
    }
    fn capabilities(&self) -> station_core::Capabilities {
        station_core::Capabilities {
            resume: true,
            cancel: true,
            ..station_core::Capabilities::NONE
        }
    }
    async fn health(&self) -> station_core::Result<station_core::Health> {
        Ok(station_core::Health {
            ok: true,
            version: None,
            detail: "test".into(),
        })
    }
    async fn open(
        &self,
        req: station_core::OpenRequest,
    ) -> station_core::Result<station_core::Session> {
        let mut s = station_core::Session::new("opencode");
        s.workspace = req.workspace;
        s.backend_session_id = Some(req.resume.unwrap_or_else(|| "ses_test".into()));
        Ok(s)
    }
    async fn execute(
        &self,
        session: &station_core::Session,
        _task: &station_core::Task,
        _ctx: station_core::ExecContext,
    ) -> station_core::Result<station_core::Outcome> {
        let ws = session.workspace.clone().unwrap();
        assert!(
            ws.join(".git").is_dir(),
            "the worker cloned the repository before the task"
        );
        std::fs::write(ws.join("USAGE.md"), "# Usage\n").unwrap();
        Ok(station_core::Outcome {
            summary: "wrote USAGE.md".into(),
            ..station_core::Outcome::new(true, station_core::StopReason::Completed)
        })
    }
    async fn close(&self, _session: &station_core::Session) -> station_core::Result<()> {
        Ok(())
    }
}

/// The coding tools on a remote workspace: the worker clones the private repository with its
/// own token, and branch/commit/push run on the worker through the git command channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_runs_where_the_remote_workspace_is() {
    use serde_json::json;
    use station_testkit::git_server::{GitServer, fake_token, git, seeded_repo};

    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(dir.path(), "private").await;
    let server = GitServer::start(dir.path(), "x-access-token", &token).await;
    let worker_base = dir.path().join("worker-workspaces");
    std::fs::create_dir_all(&worker_base).unwrap();
    let mut coding = CodingConfig::default();
    coding.git.user_name = Some("Worker Bot".into());
    coding.git.user_email = Some("worker@station.invalid".into());
    coding.git.allowed_hosts = vec!["127.0.0.1".into()];
    coding.git.allow_http_loopback = true;
    let worker_git =
        station_git::Git::from_config(&coding, Some(station_core::Secret::new(token.clone())));
    let nats_config = NatsConfig {
        url: nats.url.clone(),
        ..NatsConfig::default()
    };
    let options = WorkerOptions {
        git: Some(Arc::new(station_backend_nats::git::StationGit(worker_git))),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(
        nats_config.clone(),
        Arc::new(WritingExecutor),
        worker_base.clone(),
        options,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Bound first, so the client's first task finds a subscriber.
    let worker_task = tokio::spawn(worker.bind().await.unwrap().run(shutdown.clone()));

    // The client side has no token and no copy of the workspace.
    let backend: Arc<dyn CodingBackend> = Arc::new(
        NatsBackend::connect(&nats_config, NatsBackendOptions::default())
            .await
            .unwrap(),
    );
    let index = station_core::SessionIndex::open(dir.path().join("index")).unwrap();
    let service =
        station_core::SessionService::new(backend, index, station_core::RunOptions::default());
    let tools = station_agent::CodingTools::new(service, dir.path().join("client-workspaces"));
    let call = |name: &'static str, args: serde_json::Value| {
        let tools = &tools;
        async move {
            let result = tools.call(name, &args, None).await;
            assert_eq!(result["success"], true, "{name}: {result:#}");
            result
        }
    };
    call("coding_open", json!({"repo_url": server.url("private")})).await;
    call("code", json!({"instruction": "Write USAGE.md"})).await;
    let branch = call("coding_branch", json!({"branch": "docs"})).await;
    assert_eq!(branch["previous_branch"], "main", "{branch:#}");
    let commit = call("coding_commit", json!({"message": "Add USAGE.md"})).await;
    assert_eq!(commit["files_changed"], 1, "{commit:#}");
    call("coding_push", json!({})).await;
    assert!(
        !dir.path().join("client-workspaces").exists(),
        "nothing was cloned on the client side"
    );

    let check = dir.path().join("check");
    git(
        dir.path(),
        &[
            "clone",
            "--quiet",
            "--branch",
            "docs",
            dir.path().join("private.git").to_str().unwrap(),
            check.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(check.join("USAGE.md")).unwrap(),
        "# Usage\n"
    );
    let log = git(&check, &["log", "-1", "--format=%s|%an"]).await;
    assert_eq!(log.trim(), "Add USAGE.md|Worker Bot");
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(40), worker_task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
}

/// A task whose `workspace.git.url` names a host the worker does not allow fails with a clear
/// task error, and the worker sends nothing (no token) to that host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_naming_a_host_the_worker_does_not_allow_fails_clearly() {
    use serde_json::json;
    use station_testkit::git_server::{GitServer, fake_token, seeded_repo};

    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = fake_token();
    seeded_repo(dir.path(), "private").await;
    let allowed = GitServer::start(dir.path(), "x-access-token", &token).await;
    let stranger = GitServer::start(dir.path(), "x-access-token", &token).await;
    let allowed_host = allowed
        .url("x")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let worker_base = dir.path().join("worker-workspaces");
    std::fs::create_dir_all(&worker_base).unwrap();
    let mut coding = CodingConfig::default();
    coding.git.allowed_hosts = vec![allowed_host];
    coding.git.allow_http_loopback = true;
    let worker_git =
        station_git::Git::from_config(&coding, Some(station_core::Secret::new(token.clone())));
    let nats_config = NatsConfig {
        url: nats.url.clone(),
        ..NatsConfig::default()
    };
    let options = WorkerOptions {
        git: Some(Arc::new(station_backend_nats::git::StationGit(worker_git))),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(
        nats_config.clone(),
        Arc::new(WritingExecutor),
        worker_base.clone(),
        options,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker_task = tokio::spawn(worker.bind().await.unwrap().run(shutdown.clone()));

    let backend: Arc<dyn CodingBackend> = Arc::new(
        NatsBackend::connect(&nats_config, NatsBackendOptions::default())
            .await
            .unwrap(),
    );
    let index = station_core::SessionIndex::open(dir.path().join("index")).unwrap();
    let service =
        station_core::SessionService::new(backend, index, station_core::RunOptions::default());
    let tools = station_agent::CodingTools::new(service, dir.path().join("client-workspaces"));
    let opened = tools
        .call(
            "coding_open",
            &json!({"repo_url": stranger.url("private")}),
            None,
        )
        .await;
    assert_eq!(opened["success"], true, "{opened:#}");
    let result = tools
        .call("code", &json!({"instruction": "Write USAGE.md"}), None)
        .await;
    assert_ne!(result["success"], true, "{result:#}");
    let text = result.to_string();
    assert!(
        text.contains("coding.git.allowed_hosts") && text.contains(&stranger.url("private")),
        "the task error names the URL and the setting: {result:#}"
    );
    assert!(!text.contains(&token), "{result:#}");
    assert_eq!(stranger.requests(), 0, "nothing reached the other host");
    assert!(stranger.users_seen().is_empty());

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(40), worker_task)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
}
