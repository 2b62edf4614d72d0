//! `stn` on the `codex` backend with the real Codex CLI, driven by the scripted model (Codex
//! through `/v1/responses`, the orchestrating model through chat completions): `stn code`
//! create then continue by a title fragment, `stn agent run`, and `stn doctor`.

use serde_json::Value;
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers;

use crate::e2e::{Env, bin, run_scenario, script};

/// An `Env` whose config selects `codex` (with `pricing_yaml` under `coding`) and whose
/// variables give Codex an isolated `CODEX_HOME` pointed at `model`.
fn codex_env(model: &ScriptedModel, pricing_yaml: &str) -> Env {
    let mut env = Env::new(
        model,
        &format!(
            "  backend: codex\n  codex:\n    binary: {}\n{pricing_yaml}",
            bin(peers::codex_bin())
        ),
    );
    let home = env.home.path().to_path_buf();
    env.vars.extend(peers::codex_env(&home, model));
    env
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_code_creates_then_continues_by_title_with_an_estimated_cost() {
    let script = Script::new()
        .on(
            "printing Hello World",
            vec![
                Step::write("hello.py", "print('Hello World')\n"),
                Step::text("Created hello.py."),
            ],
        )
        .on(
            "Add a second line",
            vec![
                Step::edit(
                    "hello.py",
                    "print('Hello World')",
                    "print('Hello World')\nprint('again')",
                ),
                Step::text("Added a line."),
            ],
        );
    let model = ScriptedModel::start(script).await.unwrap();
    let pricing = format!(
        "  pricing:\n    {}: {{input: 2, cached_input: 0.5, output: 8}}\n",
        peers::CODEX_MODEL
    );
    let env = codex_env(&model, &pricing);
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let ws_arg = ws.display().to_string();
    let first = code(
        &env,
        &[
            "--workspace",
            &ws_arg,
            "Create hello.py printing Hello World",
        ],
    );
    assert_eq!(first["success"], true, "{first:#}");
    assert_eq!(first["session"]["backend"], "codex");
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.py")).unwrap(),
        "print('Hello World')\n"
    );
    assert!(
        first["usage"]["input_tokens"].as_u64().unwrap() > 0
            && first["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{first:#}"
    );
    assert!(
        first["cost_usd"].as_f64().unwrap() > 0.0 && first["cost_estimated"] == true,
        "the cost is estimated from coding.pricing: {first:#}"
    );
    let thread = first["session"]["backend_session_id"]
        .as_str()
        .expect("the Codex thread id is recorded")
        .to_string();
    let second = code(
        &env,
        &[
            "--backend",
            "codex",
            "--session",
            "printing hello",
            "Add a second line",
        ],
    );
    assert_eq!(second["success"], true, "{second:#}");
    assert_eq!(second["session"]["id"], first["session"]["id"]);
    assert_eq!(
        second["session"]["backend_session_id"].as_str(),
        Some(thread.as_str()),
        "the same Codex thread"
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
        })
        .expect("codex asked the model about the second task");
    assert!(
        continued
            .conversation_text()
            .contains("Create hello.py printing Hello World"),
        "codex saw the first task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_agent_run_codes_with_codex_and_continues_its_session() {
    let model = ScriptedModel::start(script()).await.unwrap();
    let env = codex_env(&model, "");
    tokio::task::spawn_blocking(move || {
        run_scenario(&model, &env);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_doctor_finds_codex_and_its_provider() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let env = codex_env(&model, "");
    let out = env.stn().args(["doctor", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["backend"], "codex", "{report:#}");
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "backend codex")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(check["ok"], true, "{check:#}");
    assert_eq!(check["version"], peers::CODEX_VERSION, "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("model provider `fake`"), "{detail}");
    // Without any credential doctor says what to do.
    let bare = tempfile::tempdir().unwrap();
    let mut vars: Vec<(String, String)> = env
        .vars
        .iter()
        .filter(|(k, _)| k != "CODEX_HOME" && k != peers::CODEX_KEY_VAR)
        .cloned()
        .collect();
    vars.push(("CODEX_HOME".into(), bare.path().display().to_string()));
    let mut cmd = env.stn();
    cmd.env_clear();
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    let out = cmd.args(["doctor", "--json"]).output().unwrap();
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "backend codex")
        .unwrap();
    assert_eq!(check["ok"], false);
    assert!(
        check["detail"].as_str().unwrap().contains("codex login"),
        "{check:#}"
    );
}
