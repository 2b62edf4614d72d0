//! `stn code --isolation worktree`: several sessions on one repository at once, each in a git
//! worktree on its own branch, with the main checkout untouched; the real `opencode run`
//! (backend `opencode-cli`) driven by the scripted model.

use std::path::{Path, PathBuf};

use serde_json::Value;
use station_testkit::git_server::{Seed, git};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers;

use crate::e2e::{Env, bin};

fn script() -> Script {
    Script::new()
        .on(
            "create alpha.txt",
            vec![
                Step::write("alpha.txt", "alpha\n"),
                Step::text("Created alpha.txt."),
            ],
        )
        .on(
            "create beta.txt",
            vec![
                Step::write("beta.txt", "beta\n"),
                Step::text("Created beta.txt."),
            ],
        )
        .on(
            "extend alpha.txt",
            vec![
                Step::edit("alpha.txt", "alpha\n", "alpha\nmore\n"),
                Step::text("Extended alpha.txt."),
            ],
        )
}

fn cli_yaml() -> String {
    format!(
        "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: {}\n",
        bin(peers::opencode_bin()),
        peers::OPENCODE_MODEL
    )
}

/// `stn code ARGS --json` in `cwd`: exit status, the JSON on stdout (if any) and stderr.
fn stn_code(env: &Env, cwd: &Path, args: &[&str]) -> (bool, Value, String) {
    let out = env
        .stn()
        .current_dir(cwd)
        .arg("code")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

/// The main checkout as a user sees it: HEAD (ref and commit), the index file, every file.
async fn main_checkout(repo: &Path) -> (String, String, Vec<u8>, Vec<(String, String)>) {
    let head_ref = std::fs::read_to_string(repo.join(".git/HEAD")).unwrap();
    let head = git(repo, &["rev-parse", "HEAD"]).await;
    let index = std::fs::read(repo.join(".git/index")).unwrap();
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    (head_ref, head, index, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_work_on_one_repository_at_once_in_their_own_worktrees() {
    let model = ScriptedModel::start(script()).await.unwrap();
    let env = Env::new(&model, &cli_yaml());
    let seed = Seed::new(env.home.path().join("project")).await;
    seed.write("README.md", "project\n");
    seed.commit("base").await;
    // Work in progress in the main checkout, which no session may touch.
    seed.write("README.md", "project\nlocal edit\n")
        .write("staged.txt", "staged\n")
        .write("scratch.txt", "mine\n");
    git(&seed.dir, &["add", "staged.txt"]).await;
    let before = main_checkout(&seed.dir).await;

    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            stn_code(
                &env,
                &seed.dir,
                &["--isolation", "worktree", "Please create alpha.txt"],
            )
        });
        let b = s.spawn(|| {
            stn_code(
                &env,
                &seed.dir,
                &["--isolation", "worktree", "Please create beta.txt"],
            )
        });
        (a.join().unwrap(), b.join().unwrap())
    });

    let mut sessions = Vec::new();
    for ((ok, out, stderr), (mine, other)) in [
        (a, ("alpha.txt", "beta.txt")),
        (b, ("beta.txt", "alpha.txt")),
    ] {
        assert!(ok, "stn code failed:\n{stderr}");
        assert_eq!(out["success"], true, "{out:#}");
        let id = out["session"]["id"].as_str().unwrap().to_string();
        let worktree = &out["session"]["worktree"];
        let branch = format!("stn/{id}");
        assert_eq!(worktree["branch"], branch.as_str(), "{out:#}");
        assert_eq!(worktree["repository"].as_str(), seed.dir.to_str());
        assert_eq!(out["session"]["workspace"], worktree["path"]);
        let path = PathBuf::from(worktree["path"].as_str().unwrap());
        assert!(
            path.starts_with(env.home.path().join("workspaces")),
            "{out:#}"
        );
        assert!(stderr.contains(&format!("on branch {branch}")), "{stderr}");
        assert!(
            path.join(mine).is_file() && !path.join(other).exists(),
            "{out:#}"
        );
        assert_eq!(
            git(&path, &["status", "--porcelain"]).await,
            format!("?? {mine}\n"),
            "only its own file"
        );
        assert_eq!(
            git(&path, &["rev-parse", "--abbrev-ref", "HEAD"])
                .await
                .trim(),
            branch
        );
        let changed: Vec<&str> = out["files_changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(changed, vec![mine], "{out:#}");
        sessions.push((id, branch, path));
    }
    assert_ne!(sessions[0].2, sessions[1].2);
    assert_eq!(
        main_checkout(&seed.dir).await,
        before,
        "the main checkout is untouched"
    );
    let branches = git(&seed.dir, &["branch", "--list", "stn/*"]).await;
    assert!(
        branches.contains(&sessions[0].1) && branches.contains(&sessions[1].1),
        "{branches}"
    );

    // `stn session list` shows each session's branch.
    let out = env.stn().args(["session", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("BRANCH"), "{listed}");
    for (id, branch, _) in &sessions {
        let row = listed.lines().find(|l| l.starts_with(id.as_str())).unwrap();
        assert!(row.contains(branch.as_str()), "{listed}");
    }

    // Continuing a session by id works in its worktree again.
    let (id, _, path) = &sessions[0];
    let (ok, out, stderr) = stn_code(&env, &seed.dir, &["--session", id, "Now extend alpha.txt"]);
    assert!(ok && out["success"] == true, "{stderr}\n{out:#}");
    assert_eq!(out["session"]["workspace"].as_str(), path.to_str());
    assert_eq!(
        std::fs::read_to_string(path.join("alpha.txt")).unwrap(),
        "alpha\nmore\n"
    );
    assert_eq!(main_checkout(&seed.dir).await, before, "still untouched");
}

#[tokio::test]
async fn isolation_errors_name_the_problem_and_the_fix() {
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let env = Env::new(&model, &cli_yaml());
    let plain = env.home.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();

    let (ok, _, stderr) = stn_code(&env, &plain, &["--isolation", "worktree", "x"]);
    assert!(!ok);
    assert!(
        stderr.contains("is not a git repository's top directory")
            && stderr.contains("--isolation none"),
        "{stderr}"
    );
    let (ok, _, stderr) = stn_code(&env, &plain, &["--isolation", "branch", "x"]);
    assert!(!ok);
    assert!(stderr.contains("use one of: none, worktree"), "{stderr}");

    let bad = Env::new(&model, &format!("  isolation: worktrees\n{}", cli_yaml()));
    let (ok, _, stderr) = stn_code(&bad, &plain, &["x"]);
    assert!(!ok);
    assert!(
        stderr.contains("coding.isolation") && stderr.contains("did you mean `worktree`"),
        "{stderr}"
    );
    assert!(model.requests().is_empty(), "nothing ran");
}
