//! The main job end to end: `stn agent create` then `stn agent run`, with the orchestrating
//! model scripted (OpenAI API) to call coding_open → code → coding_close, on a real coding
//! agent (OpenCode or Claude Code) that the same scripted server drives (its own API), and a
//! second run that continues the coding session by a fragment of its title.

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::{Value, json};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers;

/// What the orchestrator hands the coding agent; also the session title.
const FIRST_INSTRUCTION: &str = "Write the file hello.py that prints Hello World";
const SECOND_INSTRUCTION: &str = "Edit hello.py so it greets Station";

pub(crate) fn script() -> Script {
    Script::new()
        // The coding agent (OpenCode or Claude), matched by the instruction it receives.
        .on(
            FIRST_INSTRUCTION,
            vec![
                Step::write("hello.py", "print('Hello World')\n"),
                Step::text("Created hello.py."),
            ],
        )
        .on(
            SECOND_INSTRUCTION,
            vec![
                Step::edit("hello.py", "Hello World", "Hello Station"),
                Step::text("hello.py now greets Station."),
            ],
        )
        // The orchestrating model, matched by the user's task.
        .on(
            "create a hello.py",
            vec![
                Step::tool("coding_open", json!({})),
                Step::tool("code", json!({"instruction": FIRST_INSTRUCTION})),
                Step::tool("coding_close", json!({})),
                Step::text("hello.py is in the workspace."),
            ],
        )
        .on(
            "greet station",
            vec![
                Step::tool("coding_open", json!({})),
                Step::tool("code", json!({"instruction": SECOND_INSTRUCTION})),
                Step::tool("coding_close", json!({})),
                Step::text("Done: it greets Station."),
            ],
        )
}

pub(crate) struct Env {
    pub(crate) home: tempfile::TempDir,
    pub(crate) vars: Vec<(String, String)>,
}

impl Env {
    pub(crate) fn new(model: &ScriptedModel, coding_yaml: &str) -> Env {
        let home = tempfile::tempdir().unwrap();
        let mut vars = peers::opencode_env(home.path(), model);
        vars.extend(peers::claude_env(home.path(), model));
        vars.push((
            "STN_DATA_DIR".into(),
            home.path().join("station-data").display().to_string(),
        ));
        vars.push(("STN_AI_BASE_URL".into(), model.base_url()));
        let config_dir = home.path().join(".config/station");
        std::fs::create_dir_all(&config_dir).unwrap();
        let yaml = format!(
            "ai_model: openai/gpt-4o\ncoding:\n  workspace_base_path: {}\n{coding_yaml}",
            home.path().join("workspaces").display()
        );
        std::fs::write(config_dir.join("config.yaml"), yaml).unwrap();
        Env { home, vars }
    }

    pub(crate) fn stn(&self) -> Command {
        let mut cmd = Command::cargo_bin("stn").unwrap();
        cmd.env_clear().current_dir(self.home.path());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        for k in peers::CLAUDE_ENV_REMOVE
            .iter()
            .chain(peers::OPENCODE_ENV_REMOVE)
        {
            cmd.env_remove(k);
        }
        cmd.timeout(std::time::Duration::from_secs(300));
        cmd
    }

    fn run_agent(&self, task: &str, extra: &[&str]) -> Value {
        let out = self
            .stn()
            .args(["agent", "run", "coder", task, "--tail", "--json"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "stn agent run failed:\n{stderr}");
        assert!(
            stderr.contains("→ coding_open") && stderr.contains("→ code"),
            "--tail streams tool calls:\n{stderr}"
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "--json stdout is one JSON object ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

fn workspace_of(env: &Env, session_id: &str) -> PathBuf {
    let out = env
        .stn()
        .args(["session", "list", "--json"])
        .output()
        .unwrap();
    let sessions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == session_id)
        .unwrap_or_else(|| panic!("{session_id} in {sessions}"));
    PathBuf::from(s["workspace"].as_str().unwrap())
}

async fn create_run_and_continue(coding_yaml: &str) {
    let model = ScriptedModel::start(script()).await.unwrap();
    let env = Env::new(&model, coding_yaml);
    run_scenario(&model, &env);
}

pub(crate) fn run_scenario(model: &ScriptedModel, env: &Env) {
    env.stn()
        .args([
            "agent",
            "create",
            "coder",
            "--description",
            "Coding assistant",
            "--prompt",
            "You are a coding assistant. Use the coding tools.",
            "--coding",
            r#"{"enabled":true}"#,
            "--max-steps",
            "10",
        ])
        .assert()
        .success();
    let first = env.run_agent("Create a hello.py that prints Hello World", &[]);
    assert_eq!(first["success"], true, "{first:#}");
    let session = first["sessions"][0].as_str().unwrap().to_string();
    let ws = workspace_of(env, &session);
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    assert!(
        first["files_changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("hello.py") && f["action"] == "created"),
        "{first:#}"
    );

    let second = env.run_agent(
        "Now make it greet Station",
        &["--coding-session", "file hello.py"],
    );
    assert_eq!(second["success"], true, "{second:#}");
    assert_eq!(
        second["sessions"][0],
        session.as_str(),
        "the same coding session continues"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello Station')\n"
    );
    // The coding agent saw the first task in the continued conversation.
    let continued = model
        .requests()
        .into_iter()
        .rev()
        .find(|r| {
            r.prompt
                .as_deref()
                .is_some_and(|p| p.contains(SECOND_INSTRUCTION))
                && !r.side_call
        })
        .expect("the coding agent got the second instruction");
    assert!(
        continued.conversation_text().contains(FIRST_INSTRUCTION),
        "the backend sees the earlier context"
    );
}

pub(crate) fn bin(p: PathBuf) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_codes_with_opencode_cli() {
    create_run_and_continue(&format!(
        "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: {}\n",
        bin(peers::opencode_bin()),
        peers::OPENCODE_MODEL
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_codes_with_claude_code() {
    create_run_and_continue(&format!(
        "  backend: claudecode\n  claudecode:\n    binary: {}\n",
        bin(peers::claude_bin())
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_codes_through_nats_with_stn_worker() {
    let nats = peers::NatsServer::start().await;
    let model = ScriptedModel::start(script()).await.unwrap();
    let env = Env::new(
        &model,
        &format!(
            "  backend: opencode-nats\n  nats:\n    url: {}\n  opencode:\n    managed: always\n    binary: {}\n    model: {}\n",
            nats.url,
            bin(peers::opencode_bin()),
            peers::OPENCODE_MODEL
        ),
    );
    // `stn worker` runs next to a private `opencode serve`, in the same isolated home.
    let stn = assert_cmd::cargo::cargo_bin("stn");
    let mut spec = station_core::process::CommandSpec::new(stn, env.home.path())
        .arg("worker")
        .env_clear();
    for (k, v) in &env.vars {
        spec = spec.env(k, v);
    }
    let mut worker = spec.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !worker.stderr_tail().contains("serving") {
        assert!(
            std::time::Instant::now() < deadline,
            "stn worker did not start: {}",
            worker.stderr_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let scenario = tokio::task::spawn_blocking(move || {
        run_scenario(&model, &env);
        env
    });
    let env = scenario.await.unwrap();
    // SIGTERM: the worker shuts down gracefully.
    worker.signal_group(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(std::time::Duration::from_secs(40), worker.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{}", worker.stderr_tail());
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_codes_with_opencode_http_managed_server() {
    create_run_and_continue(&format!(
        "  backend: opencode\n  opencode:\n    url: http://127.0.0.1:9\n    managed: always\n    binary: {}\n    model: {}\n",
        bin(peers::opencode_bin()),
        peers::OPENCODE_MODEL
    ))
    .await;
}

mod private_repo {
    use serde_json::{Value, json};
    use station_testkit::git_server::{GitServer, fake_token, git, seeded_repo};
    use station_testkit::model_server::{Script, ScriptedModel, Step};
    use station_testkit::peers;

    use super::{Env, bin};

    fn opencode_cli_with_token() -> String {
        format!(
            "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: {}\n  git:\n    token_env: STN_TEST_GIT_TOKEN\n    user_name: Station Test\n    user_email: test@station.invalid\n    allowed_hosts: [\"127.0.0.1\"]\n    allow_http_loopback: true\n",
            bin(peers::opencode_bin()),
            peers::OPENCODE_MODEL
        )
    }

    fn assert_no_token(token: &str, texts: &[&str]) {
        for t in texts {
            assert!(!t.contains(token), "the token leaked into: {t}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stn_code_clones_a_private_repo_and_works_in_the_clone() {
        let model = ScriptedModel::start(Script::new().on(
            "add notes.md",
            vec![
                Step::write("notes.md", "# Notes\n"),
                Step::text("Added notes.md."),
            ],
        ))
        .await
        .unwrap();
        let repos = tempfile::tempdir().unwrap();
        let token = fake_token();
        seeded_repo(repos.path(), "private").await;
        let server = GitServer::start(repos.path(), "x-access-token", &token).await;
        let mut env = Env::new(&model, &opencode_cli_with_token());
        env.vars.push(("STN_TEST_GIT_TOKEN".into(), token.clone()));
        let ws = env.home.path().join("clone");
        let out = env
            .stn()
            .args(["code", "--repo", &server.url("private"), "--workspace"])
            .arg(&ws)
            .args(["--json", "Add notes.md with a heading"])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["success"], true, "{v:#}");
        assert!(
            ws.join("README.md").is_file(),
            "the repository was cloned into the workspace"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("notes.md")).unwrap(),
            "# Notes\n",
            "the task ran in the clone"
        );
        assert!(
            v["files_changed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["path"] == "notes.md"),
            "{v:#}"
        );
        let git_config = std::fs::read_to_string(ws.join(".git/config")).unwrap();
        assert_no_token(&token, &[&stdout, &stderr, &git_config]);
        assert!(server.unauthorized() >= 1 || server.requests() > 0);

        // The wrong token fails clearly, without printing either token.
        let mut wrong = Env::new(&model, &opencode_cli_with_token());
        let bad = fake_token();
        wrong.vars.push(("STN_TEST_GIT_TOKEN".into(), bad.clone()));
        let out = wrong
            .stn()
            .args(["code", "--repo", &server.url("private"), "x"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success());
        assert!(stderr.to_lowercase().contains("auth"), "{stderr}");
        assert_no_token(&bad, &[&stderr, &String::from_utf8_lossy(&out.stdout)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_agent_clones_commits_and_pushes() {
        let repos = tempfile::tempdir().unwrap();
        let token = fake_token();
        seeded_repo(repos.path(), "private").await;
        let server = GitServer::start(repos.path(), "x-access-token", &token).await;
        let script = Script::new()
            .on(
                "write the readme section",
                vec![
                    Step::write("USAGE.md", "# Usage\n\nRun it.\n"),
                    Step::text("Wrote USAGE.md."),
                ],
            )
            .on(
                "document the repo",
                vec![
                    Step::tool("coding_open", json!({"repo_url": server.url("private")})),
                    Step::tool(
                        "code",
                        json!({"instruction": "Write the readme section USAGE.md"}),
                    ),
                    Step::tool("coding_branch", json!({"branch": "docs"})),
                    Step::tool("coding_commit", json!({"message": "Add USAGE.md"})),
                    Step::tool("coding_push", json!({})),
                    Step::tool("coding_close", json!({})),
                    Step::text("Pushed USAGE.md on branch docs."),
                ],
            );
        let model = ScriptedModel::start(script).await.unwrap();
        let mut env = Env::new(&model, &opencode_cli_with_token());
        env.vars.push(("STN_TEST_GIT_TOKEN".into(), token.clone()));
        env.stn()
            .args([
                "agent",
                "create",
                "coder",
                "-d",
                "Coder",
                "-p",
                "You code.",
                "--coding",
                r#"{"enabled":true}"#,
                "--max-steps",
                "10",
            ])
            .assert()
            .success();
        let out = env
            .stn()
            .args([
                "agent",
                "run",
                "coder",
                "Document the repo",
                "--json",
                "--tail",
            ])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let calls: Vec<(&str, bool)> = report["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["success"].as_bool().unwrap()))
            .collect();
        assert!(calls.iter().all(|(_, ok)| *ok), "{stderr}\n{report:#}");
        assert_eq!(calls.len(), 6);
        assert_no_token(&token, &[&stdout, &stderr]);
        // The push landed: clone the server's repository again with the git CLI.
        let check = repos.path().join("check");
        git(
            repos.path(),
            &[
                "clone",
                "--quiet",
                "--branch",
                "docs",
                repos.path().join("private.git").to_str().unwrap(),
                check.to_str().unwrap(),
            ],
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(check.join("USAGE.md")).unwrap(),
            "# Usage\n\nRun it.\n"
        );
        let log = git(&check, &["log", "-1", "--format=%s|%an|%ae"]).await;
        assert_eq!(log.trim(), "Add USAGE.md|Station Test|test@station.invalid");
    }

    /// An interrupted clone (an empty `.git` in the workspace) is not taken for a clone: `stn
    /// code --repo` does not run the agent in an empty directory and report success.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stn_code_does_not_reuse_an_interrupted_clone() {
        let model = ScriptedModel::start(Script::new().on(
            "add notes.md",
            vec![
                Step::write("notes.md", "# Notes\n"),
                Step::text("Added notes.md."),
            ],
        ))
        .await
        .unwrap();
        let repos = tempfile::tempdir().unwrap();
        let token = fake_token();
        seeded_repo(repos.path(), "private").await;
        let server = GitServer::start(repos.path(), "x-access-token", &token).await;
        let mut env = Env::new(&model, &opencode_cli_with_token());
        env.vars.push(("STN_TEST_GIT_TOKEN".into(), token.clone()));
        let ws = env.home.path().join("clone");
        std::fs::create_dir_all(ws.join(".git")).unwrap();
        let out = env
            .stn()
            .args(["code", "--repo", &server.url("private"), "--workspace"])
            .arg(&ws)
            .args(["--json", "Add notes.md with a heading"])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            !out.status.success(),
            "stn reported success on an empty clone: {stdout} {stderr}"
        );
        assert!(!stderr.contains("using the existing clone"), "{stderr}");
        assert!(
            stderr.contains("not a complete git repository") && stderr.contains("remove"),
            "says what is there and what to do: {stderr}"
        );
        assert!(!ws.join("notes.md").exists(), "the agent did not run");
        assert_no_token(&token, &[&stdout, &stderr]);
    }
}

pub(crate) mod stn_code {
    use serde_json::Value;
    use station_testkit::model_server::{Script, ScriptedModel, Step};
    use station_testkit::peers;

    use super::{Env, bin};

    fn script() -> Script {
        Script::new()
            .on(
                "create hello.py",
                vec![
                    Step::write("hello.py", "print('Hello World')\n"),
                    Step::text("Created hello.py."),
                ],
            )
            .on(
                "add a second line",
                vec![
                    Step::edit(
                        "hello.py",
                        "print('Hello World')\n",
                        "print('Hello World')\nprint('again')\n",
                    ),
                    Step::text("Added a line."),
                ],
            )
    }

    fn code(env: &Env, args: &[&str]) -> Value {
        let out = env
            .stn()
            .arg("code")
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "stn code {args:?} failed:\n{stderr}");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// `stn code --workspace W` writes in W and reports it; `--session <title part>` continues.
    async fn create_and_continue(
        backend: &str,
        coding_yaml: &str,
        expect_cost: bool,
    ) -> (Env, ScriptedModel, String) {
        create_and_continue_in(Env::new, backend, coding_yaml, expect_cost).await
    }

    /// [`create_and_continue`] in the environment `make_env` builds.
    pub(crate) async fn create_and_continue_in(
        make_env: fn(&ScriptedModel, &str) -> Env,
        backend: &str,
        coding_yaml: &str,
        expect_cost: bool,
    ) -> (Env, ScriptedModel, String) {
        let model = ScriptedModel::start(script()).await.unwrap();
        let env = make_env(&model, coding_yaml);
        let ws = env.home.path().join("project");
        std::fs::create_dir_all(&ws).unwrap();
        let ws_arg = ws.display().to_string();
        let first = code(
            &env,
            &[
                "--backend",
                backend,
                "--workspace",
                &ws_arg,
                "Create hello.py printing Hello World",
            ],
        );
        assert_eq!(first["success"], true, "{first:#}");
        assert_eq!(
            std::fs::read_to_string(ws.join("hello.py")).unwrap(),
            "print('Hello World')\n",
            "written in W"
        );
        let change = first["files_changed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with("hello.py"))
            .expect("hello.py reported");
        assert_eq!(
            (change["action"].as_str(), change["lines_added"].as_u64()),
            (Some("created"), Some(1))
        );
        assert!(
            first["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "{first:#}"
        );
        if expect_cost {
            assert!(
                first["cost_usd"].as_f64().unwrap() > 0.0,
                "the CLI's cost is reported: {first:#}"
            );
        }
        let backend_id = first["session"]["backend_session_id"]
            .as_str()
            .unwrap()
            .to_string();
        let second = code(
            &env,
            &[
                "--backend",
                backend,
                "--session",
                "printing hello",
                "Add a second line",
            ],
        );
        assert_eq!(second["success"], true, "{second:#}");
        assert_eq!(
            second["session"]["id"], first["session"]["id"],
            "the same station session"
        );
        assert_eq!(
            second["session"]["backend_session_id"].as_str(),
            Some(backend_id.as_str()),
            "the same backend session"
        );
        assert_eq!(
            std::fs::read_to_string(ws.join("hello.py")).unwrap(),
            "print('Hello World')\nprint('again')\n"
        );
        let continued = model
            .requests()
            .into_iter()
            .rev()
            .find(|r| {
                r.prompt
                    .as_deref()
                    .is_some_and(|p| p.contains("Add a second line"))
                    && !r.side_call
            })
            .unwrap();
        assert!(
            continued
                .conversation_text()
                .contains("Create hello.py printing Hello World"),
            "the backend saw the first task"
        );
        (env, model, backend_id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_opencode_cli() {
        create_and_continue(
            "opencode-cli",
            &format!(
                "  cli:\n    binary: {}\n    model: {}\n",
                bin(peers::opencode_bin()),
                peers::OPENCODE_MODEL
            ),
            false,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_claude_code() {
        create_and_continue(
            "claudecode",
            &format!("  claudecode:\n    binary: {}\n", bin(peers::claude_bin())),
            true,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_opencode_http() {
        create_and_continue(
            "opencode",
            &format!("  opencode:\n    url: http://127.0.0.1:9\n    managed: always\n    binary: {}\n    model: {}\n", bin(peers::opencode_bin()), peers::OPENCODE_MODEL),
            false,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_acp_opencode() {
        let (env, _model, backend_id) = create_and_continue(
            "acp",
            &format!(
                "  acp:\n    agent: opencode\n    binary: {}\n",
                bin(peers::opencode_bin())
            ),
            false,
        )
        .await;
        // The agent's own session/list has the session.
        let out = env
            .stn()
            .args([
                "session",
                "list",
                "--from-backend",
                "--backend",
                "acp",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == backend_id.as_str()),
            "{listed:#}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_acp_claude_agent() {
        create_and_continue(
            "acp",
            &format!(
                "  acp:\n    agent: claude\n    binary: {}\n    claude_binary: {}\n",
                bin(peers::claude_agent_acp_bin()),
                bin(peers::claude_bin())
            ),
            true,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backend_that_is_down_is_a_clear_error() {
        let model = ScriptedModel::start(Script::new()).await.unwrap();
        let env = Env::new(
            &model,
            "  backend: opencode\n  opencode:\n    url: http://127.0.0.1:9\n    managed: never\n",
        );
        let out = env.stn().args(["code", "hello"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "backend unavailable: {stderr}");
        assert!(
            stderr.contains("opencode serve"),
            "says how to start the server: {stderr}"
        );
        env.stn()
            .args([
                "agent",
                "create",
                "coder",
                "-d",
                "x",
                "-p",
                "y",
                "--coding",
                r#"{"enabled":true}"#,
            ])
            .assert()
            .success();
        let out = env
            .stn()
            .args(["agent", "run", "coder", "do it"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "backend unavailable: {stderr}");
        assert!(
            stderr.contains("not usable") && stderr.contains("stn doctor"),
            "{stderr}"
        );
        assert!(
            model.requests().is_empty(),
            "no model tokens spent on a dead backend"
        );
    }
}
