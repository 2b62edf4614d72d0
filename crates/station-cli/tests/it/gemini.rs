//! `stn` on the real Gemini CLI (`backend: gemini`) driven by the scripted model: `stn code`
//! create then continue by a title fragment, `stn agent run`, and `stn doctor`.

use station_testkit::model_server::{Script, ScriptedModel};
use station_testkit::peers;

use crate::e2e::{Env, bin, run_scenario, stn_code};

/// `coding:` lines selecting gemini (`with_backend`) or only configuring it.
fn gemini_yaml(with_backend: bool) -> String {
    let backend = if with_backend {
        "  backend: gemini\n"
    } else {
        ""
    };
    format!(
        "{backend}  gemini:\n    binary: {}\n",
        bin(peers::gemini_bin())
    )
}

/// The e2e environment plus the Gemini CLI's: its settings under the same HOME, its base URL
/// and a dummy key.
fn gemini_env(model: &ScriptedModel, coding_yaml: &str) -> Env {
    let mut env = Env::new(model, coding_yaml);
    let vars = peers::gemini_env(env.home.path(), model);
    env.vars.extend(vars);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_code_creates_and_continues_on_gemini() {
    stn_code::create_and_continue_in(gemini_env, "gemini", &gemini_yaml(false), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_codes_with_gemini() {
    let model = ScriptedModel::start(crate::e2e::script()).await.unwrap();
    let env = gemini_env(&model, &gemini_yaml(true));
    run_scenario(&model, &env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_gemini() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let env = gemini_env(&model, &gemini_yaml(true));
    let out = env.stn().args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["backend"], "gemini");
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "backend gemini")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["version"], peers::GEMINI_VERSION);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("GEMINI_API_KEY is set"),
        "{check}"
    );
    // Without a key or login the check fails and says what to do.
    let mut bare = gemini_env(&model, &gemini_yaml(true));
    bare.vars.retain(|(k, _)| k != "GEMINI_API_KEY");
    let out = bare.stn().args(["doctor", "--json"]).output().unwrap();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let detail = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "backend gemini")
        .map(|c| c["detail"].to_string())
        .unwrap_or_default();
    assert!(detail.contains("export GEMINI_API_KEY"), "{detail}");
}

/// The Gemini CLI reports tokens only; with the models it uses in the price table, the outcome
/// has a cost marked estimated, and the table's numbers are the ones used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_outcomes_get_an_estimated_cost_from_the_configured_prices() {
    let model = ScriptedModel::start(crate::e2e::script()).await.unwrap();
    let pricing = "  pricing:\n    gemini-3.8-flash: {input: 1000, cached_input: 100, output: 1000}\n    gemini-3.5-flash-lite: {input: 1000, cached_input: 100, output: 1000}\n";
    let env = gemini_env(&model, &format!("{}{pricing}", gemini_yaml(true)));
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let out = env
        .stn()
        .args(["code", "--json", "--workspace"])
        .arg(&ws)
        .arg("Create hello.py printing Hello World")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report:#}");
    let tokens = report["usage"]["input_tokens"].as_u64().unwrap()
        + report["usage"]["output_tokens"].as_u64().unwrap();
    assert!(tokens > 0, "{report:#}");
    assert_eq!(report["cost_estimated"], true, "{report:#}");
    let cost = report["cost_usd"].as_f64().unwrap();
    // 1000 USD per million tokens: at least 0.0001 USD per uncached token.
    assert!(
        cost >= tokens as f64 * 0.0001 * 0.9,
        "{cost} for {tokens} tokens: {report:#}"
    );
}
