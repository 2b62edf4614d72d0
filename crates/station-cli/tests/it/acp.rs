//! `stn doctor` on the `acp` backend: the agent starts and answers `initialize`, or the check
//! fails saying why.

use serde_json::Value;
use station_testkit::fake_acp::fake_acp_agent_bin;
use station_testkit::model_server::{Script, ScriptedModel};

use crate::e2e::{Env, bin};

fn doctor(mode: &str) -> (bool, Value) {
    let yaml = format!(
        "  backend: acp\n  acp:\n    command: [{}]\n    startup_timeout_sec: 3\n    env:\n      FAKE_ACP_MODE: {mode}\n",
        bin(fake_acp_agent_bin())
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(ScriptedModel::start(Script::new())).unwrap();
    let env = Env::new(&model, &yaml);
    let out = env.stn().args(["doctor", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "backend acp")
        .cloned()
        .unwrap_or_else(|| panic!("{report:#}"));
    (out.status.success(), check)
}

#[test]
fn doctor_checks_the_acp_agent_answers_initialize() {
    let (ok, check) = doctor("ok");
    assert!(ok, "{check:#}");
    assert_eq!(check["version"], "0.0.1", "{check:#}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("answered `initialize`"),
        "{check:#}"
    );
    let (ok, check) = doctor("garbage");
    assert!(!ok, "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("did not answer `initialize`") && detail.contains("not ACP JSON-RPC"),
        "{detail}"
    );
}

#[test]
fn doctor_lists_the_backends_policy_gaps() {
    // The fake agent is not known to ask before every tool call: a gap, as a warning.
    let (ok, _) = doctor("ok");
    assert!(ok, "a gap is a warning, not a failure");
    let yaml = format!(
        "  backend: acp\n  acp:\n    command: [{}]\n    startup_timeout_sec: 3\n    env:\n      FAKE_ACP_MODE: ok\n",
        bin(fake_acp_agent_bin())
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(ScriptedModel::start(Script::new())).unwrap();
    let env = Env::new(&model, &yaml);
    let out = env.stn().args(["doctor", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gaps = report["policy_gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{report:#}");
    assert!(
        gaps[0].as_str().unwrap().contains("fake-acp-agent"),
        "{report:#}"
    );
    let warning = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "policy")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(warning["warning"], true);
    let text = env.stn().args(["doctor"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("[warn] policy: not enforced:") && l.contains("fake-acp-agent")),
        "{text}"
    );
}
