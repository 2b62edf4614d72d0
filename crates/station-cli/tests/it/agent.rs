use predicates::prelude::*;

use crate::support::{agents_testdata, stn};

#[test]
fn version_and_help() {
    let home = tempfile::tempdir().unwrap();
    stn(home.path())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    stn(home.path()).arg("--help").assert().success().stdout(
        predicate::str::contains("agent")
            .and(predicate::str::contains("config"))
            .and(predicate::str::contains("code")),
    );
}

#[test]
fn documented_agents_validate() {
    let home = tempfile::tempdir().unwrap();
    for file in agents_testdata("good") {
        stn(home.path())
            .args(["agent", "validate"])
            .arg(&file)
            .assert()
            .success()
            .stdout(predicate::str::contains("valid agent"));
        let out = stn(home.path())
            .args(["agent", "validate", "--json"])
            .arg(&file)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .expect("--json stdout is only JSON, even with trace logs");
        assert_eq!(v["valid"], true);
        assert!(v["agent"]["name"].is_string());
    }
}

#[test]
fn malformed_agents_fail_precisely_without_panicking() {
    let home = tempfile::tempdir().unwrap();
    let bad = agents_testdata("bad");
    assert!(bad.len() >= 12, "a dozen malformed files");
    for file in bad {
        let out = stn(home.path())
            .args(["agent", "validate"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: exit 1, not a panic",
            file.display()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(stderr.contains(name.as_ref()), "names the file: {stderr}");
        assert!(
            regex_like_line_col(&stderr),
            "names line and column: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        let out = stn(home.path())
            .args(["agent", "validate", "--json"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["valid"], false);
        assert!(v["error"]["detail"]["line"].is_u64(), "{v}");
    }
}

fn regex_like_line_col(s: &str) -> bool {
    s.split(':')
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0].trim().parse::<u32>().is_ok() && w[1].trim().parse::<u32>().is_ok())
}

#[test]
fn a_missing_agent_file_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    stn(home.path())
        .args(["agent", "validate", "nope.prompt"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "agent file not found: nope.prompt",
        ));
}

#[test]
fn backend_mismatch_is_a_warning() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("c.yaml");
    std::fs::write(&cfg, "coding:\n  backend: claudecode\n").unwrap();
    let file = agents_testdata("good")
        .into_iter()
        .find(|p| p.ends_with("code-assistant-doc.prompt"))
        .unwrap();
    stn(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["agent", "validate"])
        .arg(&file)
        .assert()
        .success()
        .stderr(predicate::str::contains("station config wins"));
}
