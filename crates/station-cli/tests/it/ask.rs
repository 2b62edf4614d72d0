//! The policy's `ask` on a terminal: `stn code` in a tmux pane asks the person and obeys the
//! answer; without a terminal it denies at once. The fake ACP agent asks permission for
//! `rm -rf data`, which `unmatched: ask` leaves to the person.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use station_core::process::CommandSpec;
use station_testkit::fake_acp::fake_acp_agent_bin;
use station_testkit::model_server::{Script, ScriptedModel};

use crate::e2e::{Env, bin};

/// Every wait of these tests ends within this.
const DEADLINE: Duration = Duration::from_secs(120);

fn env() -> Env {
    let yaml = format!(
        "  backend: acp\n  acp:\n    command: [{}]\n    startup_timeout_sec: 10\n    env:\n      FAKE_ACP_MODE: permission\n  policy:\n    unmatched: ask\n",
        bin(fake_acp_agent_bin())
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(ScriptedModel::start(Script::new())).unwrap();
    let env = Env::new(&model, &yaml);
    std::fs::create_dir_all(env.home.path().join("ws")).unwrap();
    env
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A tmux server of its own (its socket in a temp dir), killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Run tmux with `args` on this server; its stdout, or the error.
    fn run(&self, args: &[&str]) -> station_core::Result<String> {
        let spec = CommandSpec::new("tmux", self.socket.parent().unwrap())
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(spec.output(Duration::from_secs(20), None))
    }

    fn pane(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "ask"])
            .unwrap_or_default()
    }

    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let pane = self.pane();
            if done(&pane) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; the pane:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Run `stn code` in a tmux pane, answer its question with `answer`, and return the outcome
/// it printed (`--json`, to a file: the pane is the terminal for stdin and stderr).
fn stn_code_answering(answer: &str) -> Value {
    let env = env();
    let dir = env.home.path();
    let out = dir.join("out.json");
    let rc = dir.join("rc.txt");
    let mut vars: Vec<String> = env
        .vars
        .iter()
        .map(|(k, v)| format!("{k}={}", quoted(v)))
        .collect();
    vars.push("TERM=xterm".into());
    let script = format!(
        "cd {}\nenv -i {} {} code --backend acp --json --workspace ws 'clean up the data' > {}\necho $? > {}\n",
        quoted(&dir.display().to_string()),
        vars.join(" "),
        quoted(&assert_cmd::cargo::cargo_bin("stn").display().to_string()),
        quoted(&out.display().to_string()),
        quoted(&rc.display().to_string()),
    );
    let script_path = dir.join("run.sh");
    std::fs::write(&script_path, script).unwrap();
    let tmux = Tmux {
        socket: dir.join("tmux.sock"),
    };
    let script_arg = script_path.display().to_string();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "ask",
        "-x",
        "200",
        "-y",
        "50",
        "sh",
        &script_arg,
    ])
    .expect("tmux starts");
    let pane = tmux.wait_for("the question", |p| p.contains("[y/N]"));
    assert!(
        pane.contains("Allow execute: rm -rf data? rule: unmatched [y/N]"),
        "{pane}"
    );
    tmux.run(&["send-keys", "-t", "ask", answer, "Enter"])
        .expect("tmux sends the answer");
    wait_for_file(&rc);
    assert_eq!(std::fs::read_to_string(&rc).unwrap().trim(), "0");
    let text = std::fs::read_to_string(&out).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + DEADLINE;
    while !path.exists() || std::fs::read_to_string(path).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "{} never came", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn permission(report: &Value) -> (&str, &str) {
    let p = &report["permissions"][0];
    (
        p["verdict"].as_str().unwrap_or_default(),
        p["rule"].as_str().unwrap_or_default(),
    )
}

#[test]
fn ask_on_a_terminal_prompts_and_obeys_the_answer() {
    let report = stn_code_answering("y");
    assert_eq!(report["summary"], "selected yes", "{report:#}");
    assert_eq!(permission(&report), ("allow", "unmatched (asked)"));
    let report = stn_code_answering("n");
    assert_eq!(report["summary"], "selected no", "{report:#}");
    assert_eq!(permission(&report), ("deny", "unmatched (asked)"));
}

#[test]
fn ask_without_a_terminal_denies_at_once() {
    let env = env();
    let out = env
        .stn()
        .args([
            "code",
            "--backend",
            "acp",
            "--json",
            "--workspace",
            "ws",
            "clean up the data",
        ])
        .timeout(DEADLINE)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("[y/N]"), "nobody is asked: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"], "selected no", "{report:#}");
    assert_eq!(permission(&report), ("deny", "unmatched (asked)"));
}
