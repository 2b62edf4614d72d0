use predicates::prelude::*;

use crate::support::stn;

fn fake_token() -> String {
    format!("ghp_{}", "T0k3n".repeat(7) + "x")
}

#[test]
fn config_show_never_prints_the_token() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config.yaml");
    std::fs::write(&cfg, "coding:\n  backend: opencode-cli\n  git:\n    token: ${GITHUB_TOKEN}\n    user_name: Bot\n").unwrap();
    let token = fake_token();
    for json in [false, true] {
        let mut cmd = stn(home.path());
        cmd.arg("--config")
            .arg(&cfg)
            .args(["config", "show"])
            .env("GITHUB_TOKEN", &token)
            .env("RUST_LOG", "trace");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(&token) && !all.contains("T0k3nT0k3n"),
            "token leaked: {all}"
        );
        assert!(all.contains("[REDACTED]"), "{all}");
        assert!(all.contains("opencode-cli"), "{all}");
        if json {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["resolved"]["git_access"], "set (from coding.git.token)");
        }
    }
}

#[test]
fn config_lookup_and_env_overrides() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config/station");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        "coding:\n  claudecode:\n    max_turns: 7\n",
    )
    .unwrap();
    let out = stn(home.path())
        .args(["config", "show", "--json"])
        .env("STN_CODING_BACKEND", "claudecode")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"]["coding"]["backend"], "claudecode");
    assert_eq!(v["config"]["coding"]["claudecode"]["max_turns"], 7);
    assert!(
        v["resolved"]["config_file"]
            .as_str()
            .unwrap()
            .ends_with(".config/station/config.yaml")
    );
}

#[test]
fn bad_config_is_located() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "coding:\n  backend: opencode\n  cli:\n    timout_sec: 5\n",
    )
    .unwrap();
    stn(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("config.yaml:4:5")
                .and(predicate::str::contains("did you mean `timeout_sec`")),
        );
    stn(home.path())
        .args(["--config", "/nonexistent/c.yaml", "config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
}

#[test]
fn empty_session_list() {
    let home = tempfile::tempdir().unwrap();
    stn(home.path())
        .args(["session", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no coding sessions yet"));
    stn(home.path())
        .args(["session", "list", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::diff("[]\n"));
}

#[test]
fn backends_are_selected_by_name_with_suggestions() {
    let home = tempfile::tempdir().unwrap();
    let out = stn(home.path())
        .args(["code", "--backend", "opencode-clj", "say hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown coding backend `opencode-clj`")
            && err.contains("--backend")
            && err.contains("did you mean `opencode-cli`")
            && err.contains("opencode, opencode-nats, opencode-cli, claudecode"),
        "{err}"
    );
    let out = stn(home.path())
        .args(["config", "show"])
        .env("STN_CODING_BACKEND", "claud")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STN_CODING_BACKEND") && err.contains("did you mean `claudecode`"),
        "{err}"
    );
}

#[test]
fn configured_names_are_matched_as_the_factory_spells_them() {
    let home = tempfile::tempdir().unwrap();
    let out = stn(home.path())
        .args(["doctor", "--json"])
        .env("STN_CODING_BACKEND", " OpenCode-CLI ")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "opencode-cli", "{v}");
}

#[test]
fn unknown_keys_under_coding_are_located() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "coding:\n  backend: opencode\n  opencod:\n    url: http://127.0.0.1:1\n",
    )
    .unwrap();
    stn(home.path())
        .arg("--config")
        .arg(&cfg)
        .args(["config", "show"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("config.yaml:3:3")
                .and(predicate::str::contains("coding.opencod"))
                .and(predicate::str::contains("did you mean `opencode`")),
        );
}

#[test]
fn transport_overrides_apply_to_their_sections() {
    let home = tempfile::tempdir().unwrap();
    let out = stn(home.path())
        .args(["config", "show", "--json"])
        .env("STN_CODING_OPENCODE_URL", "http://127.0.0.1:9")
        .env("STN_NATS_URL", "nats://127.0.0.1:8")
        .env("STN_NATS_TLS_CA", "/etc/ca.pem")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let coding = &v["config"]["coding"];
    assert_eq!(coding["backend"], "opencode");
    assert_eq!(coding["opencode"]["url"], "http://127.0.0.1:9");
    assert_eq!(coding["nats"]["url"], "nats://127.0.0.1:8");
    assert_eq!(coding["nats"]["tls"]["ca_file"], "/etc/ca.pem");
    assert_eq!(coding["cli"]["timeout_sec"], 300);
    assert_eq!(coding["claudecode"]["max_turns"], 10);
}
