//! `stn agent ...`

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use station_core::agent::AgentDefinition;
use station_core::config::{Config, process_env};

use crate::cli::ValidateArgs;
use crate::output;

pub(crate) fn validate(
    config_path: Option<&Path>,
    args: &ValidateArgs,
) -> anyhow::Result<ExitCode> {
    let def = match AgentDefinition::from_file(&args.file) {
        Ok(def) => def,
        Err(e) => {
            if args.json {
                output::json(
                    &json!({"valid": false, "file": args.file, "error": {"kind": e.kind(), "message": e.to_string(), "detail": error_detail(&e)}}),
                );
            }
            output::error_line(&e.to_string());
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut warnings = def.warnings.clone();
    // The backend warning needs the station config; an unreadable config does not make the agent invalid.
    if let Ok(loaded) = Config::load(config_path, &process_env)
        && let Some(w) = def.backend_warning(loaded.config.coding.backend.as_str())
    {
        warnings.push(w);
    }
    if args.json {
        output::json(&json!({"valid": true, "agent": def, "warnings": warnings}));
    } else {
        output::line(&format!(
            "{}: valid agent `{}`",
            args.file.display(),
            def.name
        ));
        if let Some(d) = &def.description {
            output::line(&format!("  description: {d}"));
        }
        output::line(&format!(
            "  model:       {}",
            def.model.as_deref().unwrap_or("(station default)")
        ));
        output::line(&format!(
            "  max_steps:   {}",
            def.max_steps
                .map(|m| m.to_string())
                .unwrap_or_else(|| "(default)".into())
        ));
        output::line(&format!(
            "  coding:      {}",
            if def.coding.enabled {
                "enabled (coding_open, code, coding_close, coding_commit, coding_push, coding_branch)"
            } else {
                "disabled"
            }
        ));
        if let Some(ws) = &def.coding.workspace_path {
            output::line(&format!("  workspace:   {ws}"));
        }
        if !def.variables.is_empty() {
            output::line(&format!("  variables:   {}", def.variables.join(", ")));
        }
    }
    for w in &warnings {
        output::warn_line(w);
    }
    Ok(ExitCode::SUCCESS)
}

fn error_detail(e: &station_core::Error) -> serde_json::Value {
    match e {
        station_core::Error::Config(input) => serde_json::to_value(input).unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}
