//! The conventions CLI users expect: shell completions, instructions from stdin or a file with
//! a size cap, documented exit codes, and the session commands.

use std::time::Duration;

use serde_json::Value;
use station_core::process::CommandSpec;
use station_testkit::model_server::{Fault, Script, ScriptedModel, Step};
use station_testkit::peers;

use crate::e2e::{Env, bin};
use crate::support::stn;

fn opencode_cli() -> String {
    format!(
        "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: {}\n",
        bin(peers::opencode_bin()),
        peers::OPENCODE_MODEL
    )
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

mod completions {
    use super::*;

    /// The bash script sources without a word on stderr and completes subcommands at both
    /// levels, as bash's completion machinery would call it.
    #[tokio::test]
    async fn bash_completion_sources_cleanly_and_completes_subcommands() {
        let home = tempfile::tempdir().unwrap();
        let out = stn(home.path())
            .args(["completions", "bash"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = home.path().join("stn.bash");
        std::fs::write(&script, &out.stdout).unwrap();
        let driver = format!(
            r#"source '{}' 2>&1
echo "--- top"
COMP_WORDS=(stn ''); COMP_CWORD=1; COMP_LINE='stn '; COMP_POINT=4
_stn stn '' stn; printf '%s\n' "${{COMPREPLY[@]}}"
echo "--- session"
COMP_WORDS=(stn session ''); COMP_CWORD=2; COMP_LINE='stn session '; COMP_POINT=12
_stn stn '' session; printf '%s\n' "${{COMPREPLY[@]}}"
"#,
            script.display()
        );
        let text = CommandSpec::new("bash", home.path())
            .args(["--norc", "--noprofile", "-c", &driver])
            .output(Duration::from_secs(60), None)
            .await
            .unwrap();
        let (sourced, rest) = text.split_once("--- top\n").expect("the driver ran");
        assert_eq!(sourced, "", "sourcing printed something: {sourced}");
        let (top, session) = rest.split_once("--- session\n").unwrap();
        let top: Vec<&str> = top.lines().collect();
        for word in ["code", "session", "agent", "doctor", "completions", "mcp"] {
            assert!(top.contains(&word), "`stn <TAB>` offers {word}: {top:?}");
        }
        let session: Vec<&str> = session.lines().collect();
        for word in ["list", "show", "delete", "prune"] {
            assert!(
                session.contains(&word),
                "`stn session <TAB>` offers {word}: {session:?}"
            );
        }
    }

    #[test]
    fn every_shell_gets_a_script() {
        let home = tempfile::tempdir().unwrap();
        for shell in ["bash", "zsh", "fish", "powershell"] {
            let out = stn(home.path())
                .args(["completions", shell])
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}");
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(text.contains("session"), "{shell}: {text}");
        }
        let out = stn(home.path())
            .args(["completions", "tcsh"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "an unknown shell is a usage error"
        );
    }

    #[test]
    fn help_documents_the_exit_codes() {
        let home = tempfile::tempdir().unwrap();
        let out = stn(home.path()).arg("--help").output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        for line in ["Exit status:", "  2 ", "  3 ", "  4 ", "  130 "] {
            assert!(text.contains(line), "--help says `{line}`: {text}");
        }
    }
}

mod instructions {
    use super::*;

    fn home_with_cap(cap: Option<u64>) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".config/station");
        std::fs::create_dir_all(&dir).unwrap();
        let cap = cap
            .map(|c| format!("  max_instruction_bytes: {c}\n"))
            .unwrap_or_default();
        // A backend that cannot start: the cap must refuse the input before any backend runs.
        std::fs::write(
            dir.join("config.yaml"),
            format!(
                "coding:\n{cap}  backend: opencode-cli\n  cli:\n    binary: /nonexistent/opencode\n"
            ),
        )
        .unwrap();
        home
    }

    fn assert_over_cap(out: &std::process::Output, cap: u64) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("limit of {cap} bytes"))
                && stderr.contains("coding.max_instruction_bytes"),
            "names the cap and its key: {stderr}"
        );
    }

    #[test]
    fn an_instruction_over_the_cap_is_a_usage_error() {
        let home = home_with_cap(Some(1000));
        let over = "x".repeat(1001);
        let out = stn(home.path())
            .args(["code", "-"])
            .write_stdin(over.clone())
            .output()
            .unwrap();
        assert_over_cap(&out, 1000);
        let file = home.path().join("task.txt");
        std::fs::write(&file, &over).unwrap();
        let out = stn(home.path())
            .args(["code", "--file"])
            .arg(&file)
            .output()
            .unwrap();
        assert_over_cap(&out, 1000);
        let out = stn(home.path())
            .args(["agent", "run", "coder", "-"])
            .write_stdin(over)
            .output()
            .unwrap();
        assert_over_cap(&out, 1000);
    }

    #[test]
    fn the_default_cap_is_4_mib() {
        let home = home_with_cap(None);
        let out = stn(home.path())
            .args(["code", "-"])
            .write_stdin("x".repeat(4 * 1024 * 1024 + 1))
            .output()
            .unwrap();
        assert_over_cap(&out, 4 * 1024 * 1024);
    }

    #[test]
    fn an_empty_or_doubled_instruction_is_a_usage_error() {
        let home = home_with_cap(None);
        let out = stn(home.path())
            .args(["code", "-"])
            .write_stdin("  \n")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("from stdin is empty"), "{stderr}");
        let out = stn(home.path())
            .args(["code", "do it", "--file", "x.txt"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "an argument and --file conflict"
        );
    }

    /// 1 MB through `stn code -` reaches the real agent's model whole, exit 0, and the task is
    /// in the session's history (instruction cut to a few KiB).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_1_mb_instruction_from_stdin_reaches_the_agent_whole() {
        let marker = "Create big.txt as this long instruction says";
        let model = ScriptedModel::start(Script::new().on(
            marker,
            vec![Step::write("big.txt", "ok\n"), Step::text("Wrote big.txt.")],
        ))
        .await
        .unwrap();
        let env = Env::new(&model, &opencode_cli());
        let ws = env.home.path().join("project");
        std::fs::create_dir_all(&ws).unwrap();
        let mut instruction = format!("{marker}.\n");
        let mut n = 0;
        while instruction.len() < 1_000_000 {
            n += 1;
            instruction.push_str(&format!("Line {n:06} of the long instruction.\n"));
        }
        let out = env
            .stn()
            .args(["code", "--json", "--workspace"])
            .arg(&ws)
            .arg("-")
            .write_stdin(instruction.clone())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome = json_of(&out);
        assert_eq!(outcome["success"], true, "{outcome:#}");
        assert_eq!(outcome["schema_version"], 1);
        let prompt = model
            .requests()
            .into_iter()
            .filter(|r| !r.side_call)
            .find_map(|r| r.prompt.filter(|p| p.contains(marker)))
            .expect("the model got the instruction");
        assert_eq!(prompt.len(), instruction.trim().len());
        assert!(prompt == instruction.trim(), "the model got it whole");

        let id = outcome["session"]["id"].as_str().unwrap();
        let out = env
            .stn()
            .args(["session", "show", id, "--json"])
            .output()
            .unwrap();
        let shown = json_of(&out);
        let tasks = shown["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 1, "{shown:#}");
        let task = &tasks[0];
        assert_eq!(
            (task["number"].as_u64(), task["success"].as_bool()),
            (Some(1), Some(true))
        );
        let kept = task["instruction"].as_str().unwrap();
        assert!(
            kept.starts_with(marker) && kept.len() <= 4096,
            "{}",
            kept.len()
        );
        assert!(
            task["files_changed"].to_string().contains("big.txt"),
            "{task:#}"
        );
        assert!(shown["totals"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
}

mod exit_codes {
    use super::*;

    /// The task ran, but its deadline passed: exit 1.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_that_ran_and_failed_exits_1() {
        let model =
            ScriptedModel::start(Script::new().on("stall here", vec![Step::fault(Fault::Stall)]))
                .await
                .unwrap();
        let env = Env::new(&model, &opencode_cli());
        let ws = env.home.path().join("project");
        std::fs::create_dir_all(&ws).unwrap();
        let out = env
            .stn()
            .args(["code", "--json", "--timeout", "3", "--workspace"])
            .arg(&ws)
            .arg("Stall here please")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome = json_of(&out);
        assert_eq!(
            (
                outcome["success"].as_bool(),
                outcome["stop_reason"].as_str()
            ),
            (Some(false), Some("timeout"))
        );
    }

    /// Claude Code's turn limit (`coding.claudecode.max_turns`) is a budget: exit 4.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_stopped_by_its_turn_limit_exits_4() {
        let model = ScriptedModel::start(Script::new().on(
            "keep working",
            vec![
                Step::bash("echo one"),
                Step::bash("echo two"),
                Step::bash("echo three"),
                Step::text("Done."),
            ],
        ))
        .await
        .unwrap();
        let env = Env::new(
            &model,
            &format!(
                "  backend: claudecode\n  claudecode:\n    binary: {}\n    max_turns: 1\n",
                bin(peers::claude_bin())
            ),
        );
        let ws = env.home.path().join("project");
        std::fs::create_dir_all(&ws).unwrap();
        let out = env
            .stn()
            .args(["code", "--json", "--workspace"])
            .arg(&ws)
            .arg("Keep working")
            .output()
            .unwrap();
        let outcome = json_of(&out);
        assert_eq!(outcome["stop_reason"], "max_turns", "{outcome:#}");
        assert_eq!(out.status.code(), Some(4));
    }

    #[test]
    fn an_unknown_session_is_a_usage_error() {
        let home = tempfile::tempdir().unwrap();
        let out = stn(home.path())
            .args(["session", "show", "no such session"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("not found"), "{stderr}");
    }
}
