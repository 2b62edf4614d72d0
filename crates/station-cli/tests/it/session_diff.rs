//! `stn code --backend opencode-cli` on a real agent (scripted model), then `stn session diff`
//! shows exactly what it changed and `stn session rewind` undoes it.

use serde_json::Value;
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers;

use crate::e2e::{Env, bin};

fn script() -> Script {
    Script::new().on(
        "greet station",
        vec![
            Step::edit(
                "hello.py",
                "print('Hello World')\n",
                "print('Hello Station')\n",
            ),
            Step::write("notes/added.md", "# Notes\nfirst\nsecond\n"),
            Step::text("Greeted Station."),
        ],
    )
}

fn stn_json(env: &Env, args: &[&str]) -> Value {
    let out = env.stn().args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stn {args:?} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_then_diff_shows_the_change_and_rewind_undoes_it() {
    let model = ScriptedModel::start(script()).await.unwrap();
    let env = Env::new(
        &model,
        &format!(
            "  cli:\n    binary: {}\n    model: {}\n",
            bin(peers::opencode_bin()),
            peers::OPENCODE_MODEL
        ),
    );
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("hello.py"), "print('Hello World')\n").unwrap();
    std::fs::write(ws.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(ws.join("run.log"), "ignored\n").unwrap();
    let ws_arg = ws.display().to_string();

    let done = stn_json(
        &env,
        &[
            "code",
            "--backend",
            "opencode-cli",
            "--workspace",
            &ws_arg,
            "Greet Station in hello.py",
        ],
    );
    assert_eq!(done["success"], true, "{done:#}");
    let expected_files = serde_json::json!([
        {"path": "hello.py", "action": "modified", "lines_added": 1, "lines_removed": 1},
        {"path": "notes/added.md", "action": "created", "lines_added": 3, "lines_removed": 0},
    ]);
    assert_eq!(done["files_changed"], expected_files, "{done:#}");
    assert_eq!(done["patch"]["task"], 1, "{done:#}");
    let session = done["session"]["id"].as_str().unwrap().to_string();

    let diff = stn_json(&env, &["session", "diff", &session, "--task", "1"]);
    assert_eq!(diff["files_changed"], expected_files, "{diff:#}");
    let patch = diff["patch"].as_str().unwrap();
    assert!(
        patch.contains("-print('Hello World')\n+print('Hello Station')\n")
            && patch.contains("+++ b/notes/added.md\n@@ -0,0 +1,3 @@\n+# Notes\n+first\n+second\n"),
        "{patch}"
    );
    assert_eq!(patch, done["patch"]["text"].as_str().unwrap());

    let out = env
        .stn()
        .args(["session", "diff", &session])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("+print('Hello Station')"));

    // An edit after the task: rewind refuses, then --force discards it.
    std::fs::write(ws.join("hello.py"), "print('mine')\n").unwrap();
    let out = env
        .stn()
        .args(["session", "rewind", &session])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("changed since task 1") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('mine')\n"
    );

    let rewound = stn_json(&env, &["session", "rewind", &session, "--force"]);
    assert_eq!(rewound["to_task"], 1, "{rewound:#}");
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    assert!(
        !ws.join("notes").exists(),
        "the created file and its directory are gone"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("run.log")).unwrap(),
        "ignored\n"
    );
}

/// A task through `opencode-nats`: the worker (`stn worker`, a real OpenCode behind it) makes
/// the diff where the files are and sends the patch back; the client records it, so
/// `stn session diff` shows it the same way, and `stn session rewind` refuses with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_shows_the_patch_a_nats_worker_sent_back_and_rewind_refuses() {
    let nats = peers::NatsServer::start().await;
    let script = Script::new().on(
        "usage notes",
        vec![
            Step::write("USAGE.md", "# Usage\nrun it\n"),
            Step::text("Wrote USAGE.md."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let env = Env::new(
        &model,
        &format!(
            "  nats:\n    url: {}\n  opencode:\n    managed: always\n    binary: {}\n    model: {}\n",
            nats.url,
            bin(peers::opencode_bin()),
            peers::OPENCODE_MODEL
        ),
    );
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
    let env = tokio::task::spawn_blocking(move || {
        let done = stn_json(
            &env,
            &["code", "--backend", "opencode-nats", "Write the usage notes"],
        );
        assert_eq!(done["success"], true, "{done:#}");
        assert_eq!(done["patch"]["task"], 1, "recorded as task 1: {done:#}");
        let session = done["session"]["id"].as_str().unwrap().to_string();

        let diff = stn_json(&env, &["session", "diff", &session, "--task", "1"]);
        assert_eq!(
            diff["files_changed"],
            serde_json::json!([{"path": "USAGE.md", "action": "created", "lines_added": 2, "lines_removed": 0}]),
            "{diff:#}"
        );
        let patch = diff["patch"].as_str().unwrap();
        assert!(
            patch.contains("+++ b/USAGE.md\n@@ -0,0 +1,2 @@\n+# Usage\n+run it\n"),
            "{patch}"
        );
        assert_eq!(diff["remote"], true, "{diff:#}");
        let out = env
            .stn()
            .args(["session", "diff", &session])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("+run it"));

        let out = env
            .stn()
            .args(["session", "rewind", &session, "--force"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("on another machine") && stderr.contains("git apply -R"),
            "{stderr}"
        );
        env
    })
    .await
    .unwrap();
    worker.signal_group(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(std::time::Duration::from_secs(40), worker.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{}", worker.stderr_tail());
    drop(env);
}
