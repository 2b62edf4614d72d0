//! `stn config show`

use std::process::ExitCode;

use serde_json::json;
use station_core::config::LoadedConfig;

use crate::output;

pub(crate) fn show(loaded: &LoadedConfig, as_json: bool) -> anyhow::Result<ExitCode> {
    let git = &loaded.config.coding.git;
    let token_source = match (&loaded.git_token, &git.token_env, &git.token) {
        (None, _, _) => "not set".to_string(),
        (Some(_), Some(var), _) => format!("set (from ${var})"),
        (Some(_), None, _) => "set (from coding.git.token)".to_string(),
    };
    let resolved = json!({
        "config_file": loaded.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none: defaults)".into()),
        "config_dir": loaded.dir.display().to_string(),
        "git_access": token_source,
        "opencode_password": if loaded.config.coding.opencode.password.is_some() { "set" } else { "not set" },
    });
    if as_json {
        output::json(&json!({"config": loaded.config, "resolved": resolved}));
    } else {
        let yaml = serde_saphyr::to_string(&loaded.config)
            .map_err(|e| anyhow::anyhow!("cannot print the config: {e}"))?;
        output::line(&format!(
            "# config file: {}",
            resolved["config_file"].as_str().unwrap_or_default()
        ));
        output::line(&format!(
            "# git access: {}",
            resolved["git_access"].as_str().unwrap_or_default()
        ));
        output::line(yaml.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
