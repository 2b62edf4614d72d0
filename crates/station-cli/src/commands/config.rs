//! `stn config show`

use std::process::ExitCode;

use serde_json::json;
use station_core::config::LoadedConfig;

use crate::{backends, output};

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
    });
    // The station-wide settings, with each compiled-in backend's section under `coding`.
    let mut config = serde_json::to_value(&loaded.config)?;
    if let Some(coding) = config.get_mut("coding").and_then(|c| c.as_object_mut()) {
        coding.extend(backends::registry().show(loaded)?);
    }
    if as_json {
        output::json(&json!({"config": config, "resolved": resolved}));
    } else {
        let yaml = serde_saphyr::to_string(&config)
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
