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
