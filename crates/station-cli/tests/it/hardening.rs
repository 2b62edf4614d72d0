//! `stn` under abuse, against the real agents with a scripted model: Station's secrets never
//! reach the agent or the model, signals stop everything (and the session can be continued),
//! one task per session, and bad input is a clear error instead of a hang.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use station_core::process::{ChildProcess, CommandSpec};
use station_testkit::model_server::{Fault, Script, ScriptedModel, Step};
use station_testkit::peers;
use station_testkit::process::{is_alive, live_children_of};

use crate::e2e::{Env, bin};

fn opencode_cli() -> String {
    format!(
        "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: {}\n",
        bin(peers::opencode_bin()),
        peers::OPENCODE_MODEL
    )
}

fn claude_code() -> String {
    format!(
        "  backend: claudecode\n  claudecode:\n    binary: {}\n",
        bin(peers::claude_bin())
    )
}

fn opencode_managed() -> String {
    format!(
        "  backend: opencode\n  opencode:\n    url: http://127.0.0.1:9\n    managed: always\n    binary: {}\n    model: {}\n",
        bin(peers::opencode_bin()),
        peers::OPENCODE_MODEL
    )
}

/// Every request body the model received, as text.
fn everything_the_model_saw(model: &ScriptedModel) -> String {
    model
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A task runs `printenv` through the agent's shell tool; the git token (in the variable named
/// by `coding.git.token_env`) and a password that a `${VAR}` expanded never reach the agent's
/// environment, so the model never sees them.
async fn secrets_stay_out_of_the_agent(coding_yaml: &str) {
    let token = format!("ghp_{}", "Hx7q".repeat(9));
    let password = format!("pw-{}", "Zk4m".repeat(6));
    let model = ScriptedModel::start(Script::new().on(
        "show the environment",
        vec![
            Step::bash("echo token=[$STN_TEST_GIT_TOKEN] pw=[$STN_TEST_SERVER_PW]; env | sort"),
            Step::text("Shown."),
        ],
    ))
    .await
    .unwrap();
    let mut env = Env::new(
        &model,
        &format!(
            "{coding_yaml}  git:\n    token_env: STN_TEST_GIT_TOKEN\n    token: ${{STN_TEST_SERVER_PW}}\n"
        ),
    );
    env.vars.push(("STN_TEST_GIT_TOKEN".into(), token.clone()));
    env.vars
        .push(("STN_TEST_SERVER_PW".into(), password.clone()));
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let out = env
        .stn()
        .args(["code", "--json", "--workspace"])
        .arg(&ws)
        .arg("Show the environment")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stn code failed:\n{stderr}");
    let seen = everything_the_model_saw(&model);
    // The command ran and its output went back to the model, with both variables empty.
    assert!(
        seen.contains("token=[] pw=[]"),
        "the tool output reached the model ({} requests); stn said:\n{stderr}",
        model.requests().len()
    );
    assert!(!seen.contains("Hx7q"), "the git token reached the model");
    assert!(!seen.contains("Zk4m"), "the secret reached the model");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Hx7q"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_opencode_run() {
    secrets_stay_out_of_the_agent(&opencode_cli()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_claude_code() {
    secrets_stay_out_of_the_agent(&claude_code()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_a_managed_opencode_server() {
    secrets_stay_out_of_the_agent(&opencode_managed()).await;
}

/// `stn` itself, started like a user's shell would, in its own process group.
fn spawn_stn(env: &Env, args: &[&str]) -> ChildProcess {
    let mut spec = CommandSpec::new(assert_cmd::cargo::cargo_bin("stn"), env.home.path())
        .args(args)
        .env_clear();
    for (k, v) in &env.vars {
        spec = spec.env(k, v);
    }
    spec.spawn().unwrap()
}

/// Wait (bounded) until the agent has asked the scripted model for the stalled step, so it is
/// mid-task; the agent processes stn started then.
async fn wait_until_agent_is_working(model: &ScriptedModel, stn: &ChildProcess) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let stalled = |m: &ScriptedModel| {
        m.scripted_requests().iter().any(|r| {
            r.prompt
                .as_deref()
                .is_some_and(|p| p.contains("Stall here"))
        })
    };
    while !stalled(model) {
        assert!(
            Instant::now() < deadline,
            "the agent never asked the model: {}",
            stn.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agents = live_children_of(stn.pid());
    assert!(!agents.is_empty(), "stn runs the agent as its child");
    agents
}

async fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|p| is_alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "agent processes outlived stn: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sessions(env: &Env) -> Vec<Value> {
    let out = env
        .stn()
        .args(["session", "list", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A signal to `stn code` mid-task stops the agent, exits with 128+N, and leaves the session in
/// the index with its title so it can be continued.
async fn a_signal_stops_the_agent(coding_yaml: &str, signal: Signal, status: i32) {
    let model =
        ScriptedModel::start(Script::new().on("stall here", vec![Step::fault(Fault::Stall)]))
            .await
            .unwrap();
    let env = Env::new(&model, coding_yaml);
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let ws_arg = ws.display().to_string();
    let mut stn = spawn_stn(&env, &["code", "--workspace", &ws_arg, "Stall here please"]);
    let agents = wait_until_agent_is_working(&model, &stn).await;
    kill(Pid::from_raw(stn.pid() as i32), signal).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), stn.wait())
        .await
        .expect("stn stops after the signal")
        .unwrap();
    let stderr = stn.final_stderr_tail().await;
    assert_eq!(exit.code(), Some(status), "{stderr}");
    assert!(stderr.contains("cancelling"), "{stderr}");
    assert_all_gone(&agents).await;
    let listed = sessions(&env);
    assert!(
        listed.iter().any(|s| s["title"] == "Stall here please"),
        "the interrupted session is in the index with its title: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_opencode_run_with_status_130() {
    a_signal_stops_the_agent(&opencode_cli(), Signal::SIGINT, 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_opencode_run() {
    a_signal_stops_the_agent(&opencode_cli(), Signal::SIGTERM, 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_claude_code() {
    a_signal_stops_the_agent(&claude_code(), Signal::SIGHUP, 129).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_claude_code() {
    a_signal_stops_the_agent(&claude_code(), Signal::SIGTERM, 143).await;
}

/// `kill -9 stn`: nothing in stn runs, yet the agent dies with it (parent-death signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_dies_with_a_killed_stn() {
    let model =
        ScriptedModel::start(Script::new().on("stall here", vec![Step::fault(Fault::Stall)]))
            .await
            .unwrap();
    let env = Env::new(&model, &opencode_cli());
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let ws_arg = ws.display().to_string();
    let mut stn = spawn_stn(&env, &["code", "--workspace", &ws_arg, "Stall here please"]);
    let agents = wait_until_agent_is_working(&model, &stn).await;
    kill(Pid::from_raw(stn.pid() as i32), Signal::SIGKILL).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), stn.wait()).await;
    assert_all_gone(&agents).await;
}

/// A second run on a session that is busy waits `coding.session_busy_wait_sec`, then fails
/// clearly; it never drives the same agent session at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_session_is_refused_clearly() {
    let model = ScriptedModel::start(
        Script::new()
            .on("first task", vec![Step::text("First done.")])
            .on("stall here", vec![Step::fault(Fault::Stall)]),
    )
    .await
    .unwrap();
    let env = Env::new(
        &model,
        &format!("{}  session_busy_wait_sec: 1\n", opencode_cli()),
    );
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let ws_arg = ws.display().to_string();
    let first = env
        .stn()
        .args([
            "code",
            "--json",
            "--workspace",
            &ws_arg,
            "--title",
            "shared work",
            "First task",
        ])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut busy = spawn_stn(
        &env,
        &["code", "--session", "shared work", "Stall here please"],
    );
    wait_until_agent_is_working(&model, &busy).await;
    let requests_before = model.scripted_requests().len();
    let refused = env
        .stn()
        .args(["code", "--session", "shared work", "First task again"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is busy") && stderr.contains("session_busy_wait_sec"),
        "{stderr}"
    );
    assert_eq!(
        model.scripted_requests().len(),
        requests_before,
        "the refused run never reached the agent"
    );
    kill(Pid::from_raw(busy.pid() as i32), Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(60), busy.wait())
        .await
        .expect("stn stops")
        .unwrap();
}

#[test]
fn devices_fifos_and_huge_values_are_clear_errors_not_hangs() {
    let home = tempfile::tempdir().unwrap();
    let stn = |args: &[&str]| {
        let mut cmd = crate::support::stn(home.path());
        cmd.args(args).timeout(Duration::from_secs(60));
        cmd.output().unwrap()
    };
    let out = stn(&["agent", "validate", "/dev/zero"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/dev/zero") && stderr.contains("device"),
        "{stderr}"
    );
    let out = stn(&["--config", "/dev/zero", "config", "show"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a config error: {stderr}");
    assert!(stderr.contains("device"), "{stderr}");
    let fifo = home.path().join("agent.prompt");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let out = stn(&["agent", "validate", fifo.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("named pipe"), "{stderr}");
    let out = stn(&["code", "--timeout", "9223372036854775807", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("604800"), "{stderr}");
}

/// `stn agent run` on SIGTERM: the orchestrating loop stops, its coding task is cancelled and
/// the agent process stops before stn exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_agent_run_and_its_coding_task() {
    let model = ScriptedModel::start(
        Script::new()
            .on("stall here", vec![Step::fault(Fault::Stall)])
            .on(
                "delegate the stall",
                vec![
                    Step::tool("coding_open", serde_json::json!({})),
                    Step::tool(
                        "code",
                        serde_json::json!({"instruction": "Stall here please"}),
                    ),
                ],
            ),
    )
    .await
    .unwrap();
    let env = Env::new(&model, &opencode_cli());
    env.stn()
        .args(["agent", "create", "coder", "-d", "x", "-p", "You code."])
        .args(["--coding", r#"{"enabled":true}"#])
        .assert()
        .success();
    let mut stn = spawn_stn(&env, &["agent", "run", "coder", "Delegate the stall"]);
    let agents = wait_until_agent_is_working(&model, &stn).await;
    kill(Pid::from_raw(stn.pid() as i32), Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), stn.wait())
        .await
        .expect("stn stops after the signal")
        .unwrap();
    let stderr = stn.final_stderr_tail().await;
    assert_eq!(exit.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stopping the agent (SIGTERM)"), "{stderr}");
    assert_all_gone(&agents).await;
}
