//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Strings longer than this are shortened in snapshots.
const SNAPSHOT_STRING_CHARS: usize = 400;

/// A fixture from `tests/fixtures`.
pub(crate) fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub(crate) fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Long strings cut to a readable prefix plus their length, so snapshots stay reviewable.
pub(crate) fn shorten(value: Value) -> Value {
    match value {
        Value::String(s) if s.chars().count() > SNAPSHOT_STRING_CHARS => {
            let head: String = s.chars().take(120).collect();
            Value::String(format!("{head}… [{} chars]", s.chars().count()))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(shorten).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, shorten(v))).collect())
        }
        other => other,
    }
}

/// A fake `claude`: a fixed wrapper that runs the shell script named by `$FAKE_CLAUDE_BODY`.
/// The wrapper is written once per test process and then only executed, so no test execs a
/// file another thread may still hold open for writing (ETXTBSY); each test writes only its
/// script body, which `sh` reads.
pub(crate) async fn fake_claude_wrapper() -> &'static Path {
    static WRAPPER: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    WRAPPER
        .get_or_init(|| async {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("fake-claude-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("claude");
            std::fs::write(
                &path,
                "#!/bin/sh\nexec /bin/sh \"$FAKE_CLAUDE_BODY\" \"$@\"\n",
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            // Another thread's fork may briefly hold the file open for writing; wait that out.
            let probe = station_core::process::CommandSpec::new(&path, &dir)
                .env("FAKE_CLAUDE_BODY", "/dev/null");
            let mut last = None;
            for _ in 0..100 {
                match probe.output(std::time::Duration::from_secs(10), None).await {
                    Ok(_) => return path,
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("the fake claude wrapper never ran: {last:?}");
        })
        .await
}

/// One fake-`claude` setup: a temp dir with the script body, a workspace, an isolated Claude
/// config dir, and files the script writes (`$FAKE_DIR/...`).
#[derive(Debug)]
pub(crate) struct Fake {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) workspace: PathBuf,
    wrapper: PathBuf,
}

impl Fake {
    /// A fake whose `claude` runs `body` (POSIX sh). The body sees `$FAKE_DIR` and `$FIXTURES`.
    pub(crate) async fn new(body: &str) -> Fake {
        let wrapper = fake_claude_wrapper().await.to_path_buf();
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::create_dir_all(dir.path().join("claude-config")).unwrap();
        std::fs::write(dir.path().join("body.sh"), body).unwrap();
        let workspace = std::fs::canonicalize(workspace).unwrap();
        Fake {
            dir,
            workspace,
            wrapper,
        }
    }

    pub(crate) fn claude_config_dir(&self) -> PathBuf {
        self.dir.path().join("claude-config")
    }

    /// A backend that runs this fake, with `config` (its binary replaced).
    pub(crate) fn backend(
        &self,
        config: station_backend_claude::ClaudeConfig,
    ) -> station_backend_claude::ClaudeBackend {
        let config = station_backend_claude::ClaudeConfig {
            binary: self.wrapper.to_string_lossy().into_owned(),
            ..config
        };
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        station_backend_claude::ClaudeBackend::new(config)
            .with_env(vec![
                (
                    "FAKE_CLAUDE_BODY".into(),
                    path(self.dir.path().join("body.sh")),
                ),
                ("FAKE_DIR".into(), path(self.dir.path().to_path_buf())),
                ("FIXTURES".into(), path(fixture_path(""))),
                ("CLAUDE_CONFIG_DIR".into(), path(self.claude_config_dir())),
            ])
            .with_workspace_base(self.dir.path().join("managed"))
            .with_kill_grace(std::time::Duration::from_millis(300))
    }

    /// A session in this fake's workspace.
    pub(crate) fn session(&self) -> station_core::Session {
        let mut session = station_core::Session::new(station_backend_claude::NAME);
        session.workspace = Some(self.workspace.clone());
        session
    }

    /// A file the script wrote under `$FAKE_DIR`.
    pub(crate) fn record(&self, name: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the fake did not write {}: {e}", path.display()))
    }
}

/// Waits (polling, with a deadline) until no live process is left in group `pgid`.
pub(crate) async fn group_gone(pgid: u32) -> Vec<u32> {
    for _ in 0..100 {
        let left = station_testkit::process::live_group_members(pgid);
        if left.is_empty() {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    station_testkit::process::live_group_members(pgid)
}

/// Whether `pid` is a live (non-zombie) process.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
