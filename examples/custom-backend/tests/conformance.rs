//! The `command` backend passes the conformance suite, driving the real `opencode run` in
//! plain-text mode (no `--format json`) as "any command-line agent".

use std::sync::Arc;

use regex::Regex;
use station_core::CodingBackend;
use station_example_custom_backend::{CommandBackend, CommandConfig};
use station_testkit::conformance::{self, Target};
use station_testkit::model_server::{Script, ScriptedModel};
use station_testkit::peers::{OPENCODE_ENV_REMOVE, OPENCODE_MODEL, opencode_bin, opencode_env};

/// `opencode run` with the prompt on stdin. Its plain output prints tool calls and errors on
/// stderr, so a shell merges stderr into stdout, where the backend reads lines.
fn opencode_plain(root: &std::path::Path, model: &ScriptedModel) -> CommandConfig {
    CommandConfig {
        argv: vec![
            "sh".into(),
            "-c".into(),
            r#"exec "$0" run --model "$1" 2>&1"#.into(),
            opencode_bin().to_string_lossy().into_owned(),
            OPENCODE_MODEL.into(),
        ],
        env: opencode_env(&root.join("home"), model),
        env_remove: OPENCODE_ENV_REMOVE.iter().map(|s| s.to_string()).collect(),
        // OpenCode marks a tool call with `← Write hello.py`; a model error exits 1.
        tool_line: Some(Regex::new(r"^\s*← (?P<tool>\S+)").unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn command_backend_driving_plain_opencode_passes_conformance() {
    let root = tempfile::tempdir().unwrap();
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let backend: Arc<dyn CodingBackend> = Arc::new(
        CommandBackend::new(opencode_plain(root.path(), &model))
            .unwrap()
            .with_workspace_base(root.path().join("workspaces")),
    );
    conformance::run_all(&Target {
        backend,
        model: &model,
        workspace_root: root.path().join("conformance"),
    })
    .await;
}
