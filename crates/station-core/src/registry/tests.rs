use super::*;
use crate::config::tests::load_text;
use crate::config::{ConfigSection, deadline_secs};
use crate::{ErrorKind, Secret};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CliLike {
    #[serde(deserialize_with = "deadline_secs")]
    timeout_sec: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<Secret>,
}

impl ConfigSection for CliLike {
    const KEY: &'static str = "cli";
}

struct CliLikeFactory;

#[async_trait]
impl BackendFactory for CliLikeFactory {
    fn name(&self) -> &'static str {
        "opencode-cli"
    }
    fn section(&self) -> &'static str {
        CliLike::KEY
    }
    async fn build(&self, _config: &LoadedConfig) -> Result<Arc<dyn CodingBackend>> {
        Err(Error::backend(self.name(), "not buildable in this test"))
    }
    fn default_timeout(&self, config: &LoadedConfig) -> Result<Duration> {
        Ok(Duration::from_secs(
            config.section::<CliLike>()?.timeout_sec.max(1),
        ))
    }
    fn show(&self, config: &LoadedConfig) -> Result<serde_json::Value> {
        section_json(&config.section::<CliLike>()?)
    }
}

fn registry() -> BackendRegistry {
    BackendRegistry::new()
        .with(CliLikeFactory)
        .compiled_out("claudecode", "claudecode", "claude")
}

#[test]
fn names_resolve_and_unknown_names_list_the_available_ones() {
    let r = registry();
    assert_eq!(r.names(), vec!["opencode-cli"]);
    assert_eq!(r.factory(" OpenCode-CLI ").unwrap().name(), "opencode-cli");
    let err = r.factory("opencode-clj").err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = err.to_string();
    assert!(
        err.contains("unknown coding backend `opencode-clj`")
            && err.contains("did you mean `opencode-cli`")
            && err.contains("opencode-cli, claudecode"),
        "{err}"
    );
    let err = r.factory("claudecode").err().unwrap();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains("not compiled into this build") && err.contains("--features claude"),
        "{err}"
    );
}

#[test]
fn default_timeouts_come_from_the_section() {
    let loaded = load_text("coding:\n  cli:\n    timeout_sec: 42\n", &[]).unwrap();
    assert_eq!(
        registry().default_timeout("opencode-cli", &loaded).unwrap(),
        Duration::from_secs(42)
    );
}

#[test]
fn unknown_keys_under_coding_are_located_with_a_suggestion() {
    let r = registry();
    let loaded = load_text("coding:\n  backnd: opencode-cli\n", &[]).unwrap();
    let err = r.check_config(&loaded).unwrap_err().to_string();
    assert!(err.contains(":2:3"), "{err}");
    assert!(
        err.contains("coding.backnd") && err.contains("did you mean `backend`"),
        "{err}"
    );
    let loaded = load_text(
        "coding:\n  backend: opencode-cli\n  clii:\n    timeout_sec: 1\n",
        &[],
    )
    .unwrap();
    let err = r.check_config(&loaded).unwrap_err().to_string();
    assert!(
        err.contains(":3:3") && err.contains("did you mean `cli`"),
        "{err}"
    );
    // A compiled-out backend's section is still a valid key.
    let loaded = load_text(
        "coding:\n  backend: opencode-cli\n  claudecode:\n    max_turns: 3\n",
        &[],
    )
    .unwrap();
    r.check_config(&loaded).unwrap();
}

#[test]
fn the_configured_name_and_every_section_are_checked() {
    let r = registry();
    let loaded = load_text("coding:\n  backend: opencode-http\n", &[]).unwrap();
    let err = r.check_config(&loaded).unwrap_err().to_string();
    assert!(
        err.contains(":2:") && err.contains("available backends"),
        "{err}"
    );
    let loaded = load_text(
        "coding:\n  backend: opencode-cli\n",
        &[("STN_CODING_BACKEND", "claud")],
    )
    .unwrap();
    let err = r.check_config(&loaded).unwrap_err().to_string();
    assert!(
        err.contains("STN_CODING_BACKEND") && err.contains("claudecode"),
        "{err}"
    );
    let loaded = load_text(
        "coding:\n  backend: opencode-cli\n  cli:\n    timout_sec: 5\n",
        &[],
    )
    .unwrap();
    let err = r.check_config(&loaded).unwrap_err().to_string();
    assert!(
        err.contains("config.yaml:4:5") && err.contains("did you mean `timeout_sec`"),
        "{err}"
    );
    // Compiled out is not an error until that backend is built.
    let loaded = load_text("coding:\n  backend: claudecode\n", &[]).unwrap();
    r.check_config(&loaded).unwrap();
}

#[test]
fn show_lists_every_section_redacted() {
    let password = format!("pw-{}", "Q7r".repeat(6));
    let loaded = load_text(&format!("coding:\n  cli:\n    password: {password}\n"), &[]).unwrap();
    let shown = registry().show(&loaded).unwrap();
    assert_eq!(shown["cli"]["timeout_sec"], 0);
    let text = serde_json::to_string(&shown).unwrap();
    assert!(!text.contains("Q7r"), "{text}");
}
