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
    if let Ok(loaded) = Config::load(config_path, process_env)
        && let Some(w) = def.backend_warning(loaded.backend_name())
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
                "enabled (coding_open, code, coding_close, coding_commit, coding_push, coding_branch, coding_rewind)"
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use station_agent::{AgentEvent, CodingTools, GenaiClient, LlmSettings, Runtime};
use station_core::Error;
use station_core::config::LoadedConfig;

use crate::cli::{AgentRefArgs, CreateAgentArgs, ListAgentsArgs, RunAgentArgs};
use crate::commands::code::TailPrinter;
use crate::{backends, signals};

/// How long `stn agent run` waits for the coding backend's health check.
const HEALTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);

/// The agent file for `name`: a path, a file name in the environment, or a `metadata.name`.
fn find_agent(loaded: &LoadedConfig, env: &str, name: &str) -> station_core::Result<PathBuf> {
    let as_path = PathBuf::from(name);
    if name.ends_with(".prompt") && as_path.is_file() {
        return Ok(as_path);
    }
    let dir = loaded.agents_dir(env);
    let direct = dir.join(format!("{name}.prompt"));
    if direct.is_file() {
        return Ok(direct);
    }
    let mut available = Vec::new();
    for (path, def) in agents_in(&dir) {
        if def
            .as_ref()
            .is_ok_and(|d| d.name.eq_ignore_ascii_case(name))
        {
            return Ok(path);
        }
        available.push(
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    let hint = if available.is_empty() {
        format!(
            "no agents in {}; create one with `stn agent create`",
            dir.display()
        )
    } else {
        format!("agents in {}: {}", dir.display(), available.join(", "))
    };
    Err(Error::NotFound {
        what: "agent",
        id: format!("{name} ({hint})"),
    })
}

fn agents_in(dir: &Path) -> Vec<(PathBuf, station_core::Result<AgentDefinition>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "prompt"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let def = AgentDefinition::from_file(&p);
            (p, def)
        })
        .collect()
}

/// A usage error (exit status 2).
fn usage(message: String) -> anyhow::Error {
    station_core::Error::config(message).into()
}

pub(crate) fn create(loaded: &LoadedConfig, args: &CreateAgentArgs) -> anyhow::Result<ExitCode> {
    let valid_name = !args.name.is_empty()
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(usage(format!(
            "agent name `{}` must be letters, digits, `-` or `_` (it becomes the file name)",
            args.name
        )));
    }
    let coding = match &args.coding {
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                usage(format!(
                    "invalid --coding JSON: {e}; example: --coding '{{\"enabled\":true}}'"
                ))
            })?;
            if !v.is_object() {
                return Err(usage(
                    "invalid --coding JSON: it must be an object, e.g. '{\"enabled\":true}'".into(),
                ));
            }
            Some(v)
        }
        None => None,
    };
    let text = station_core::agent::new_agent_text(
        &args.name,
        &args.description,
        &args.prompt,
        args.model.as_deref(),
        args.max_steps,
        coding.as_ref(),
    )?;
    let dir = loaded.agents_dir(&args.env);
    let path = dir.join(format!("{}.prompt", args.name));
    if path.exists() && !args.force {
        return Err(usage(format!(
            "{} already exists; pass --force to replace it",
            path.display()
        )));
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&path, text)?;
    output::line(&format!(
        "created agent `{}` at {}",
        args.name,
        path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn list(loaded: &LoadedConfig, args: &ListAgentsArgs) -> anyhow::Result<ExitCode> {
    let dir = loaded.agents_dir(&args.env);
    let agents = agents_in(&dir);
    if args.json {
        let items: Vec<serde_json::Value> = agents
            .iter()
            .map(|(p, d)| match d {
                Ok(d) => json!({"file": p, "name": d.name, "description": d.description, "model": d.model, "coding": d.coding.enabled, "valid": true}),
                Err(e) => json!({"file": p, "valid": false, "error": e.to_string()}),
            })
            .collect();
        output::json(&items);
        return Ok(ExitCode::SUCCESS);
    }
    if agents.is_empty() {
        output::line(&format!(
            "no agents in {}; create one with `stn agent create NAME -d DESCRIPTION -p PROMPT`",
            dir.display()
        ));
    }
    for (path, def) in agents {
        match def {
            Ok(d) => output::line(&format!(
                "{:<24} {:<8} {:<40} {}",
                d.name,
                if d.coding.enabled { "coding" } else { "" },
                d.model.as_deref().unwrap_or("(default model)"),
                d.description.as_deref().unwrap_or("")
            )),
            Err(e) => output::line(&format!(
                "{:<24} INVALID  {e}",
                path.file_stem().unwrap_or_default().to_string_lossy()
            )),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn show(loaded: &LoadedConfig, args: &AgentRefArgs) -> anyhow::Result<ExitCode> {
    let path = find_agent(loaded, &args.env, &args.name)?;
    let def = AgentDefinition::from_file(&path)?;
    if args.json {
        output::json(&def);
    } else {
        output::line(&format!("# {}", path.display()));
        let text = station_core::fsutil::read_text(
            &path,
            station_core::agent::MAX_AGENT_FILE_BYTES,
            "agent file",
        )?;
        output::line(text.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn delete(loaded: &LoadedConfig, args: &AgentRefArgs) -> anyhow::Result<ExitCode> {
    let path = find_agent(loaded, &args.env, &args.name)?;
    std::fs::remove_file(&path)?;
    output::line(&format!("deleted {}", path.display()));
    Ok(ExitCode::SUCCESS)
}

/// The coding backend cannot be used (exit status 3).
fn unusable(kind: &str, message: String) -> anyhow::Error {
    station_core::Error::Unavailable {
        backend: format!("coding backend `{kind}`"),
        message,
    }
    .into()
}

pub(crate) async fn run(loaded: &LoadedConfig, args: RunAgentArgs) -> anyhow::Result<ExitCode> {
    let task = crate::instruction::read(
        args.task.as_deref(),
        args.file.as_deref(),
        loaded.config.coding.max_instruction_bytes,
        "task",
    )?;
    let path = find_agent(loaded, &args.env, &args.name)?;
    let def = AgentDefinition::from_file(&path)?;
    let kind = backends::selected(None, loaded)?;
    if let Some(w) = def.backend_warning(&kind) {
        output::warn_line(&w);
    }
    let mut variables = BTreeMap::new();
    for var in &args.vars {
        let (k, v) = var.split_once('=').ok_or_else(|| {
            station_core::Error::from(
                station_core::InputError::new(format!("--var `{var}` must be NAME=VALUE"))
                    .field("--var"),
            )
        })?;
        variables.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        );
    }
    let mut coding_service = None;
    let tools = if def.coding.enabled {
        let backend = backends::build(&kind, loaded).await?;
        // Fail before spending model tokens when the backend cannot work. The health check may
        // start a managed `opencode serve` (its own deadline is 60 s), hence the outer bound.
        match tokio::time::timeout(HEALTH_DEADLINE, backend.health()).await {
            Ok(Ok(h)) if h.ok => {}
            Ok(Ok(h)) => {
                return Err(unusable(
                    &kind,
                    format!("not usable: {} (run `stn doctor`)", h.detail),
                ));
            }
            Ok(Err(e)) => {
                return Err(unusable(
                    &kind,
                    format!("not usable: {e} (run `stn doctor`)"),
                ));
            }
            Err(_) => {
                return Err(unusable(
                    &kind,
                    format!(
                        "did not answer its health check within {}s (run `stn doctor`)",
                        HEALTH_DEADLINE.as_secs()
                    ),
                ));
            }
        }
        let service = backends::service(backend, &kind, loaded)?
            .with_permissions(crate::ask::permission_handler());
        coding_service = Some(service.clone());
        let tools = CodingTools::new(service, loaded.config.coding.workspace_base())
            .with_default_workspace(def.coding.workspace_path.as_ref().map(PathBuf::from))
            .with_continue_session(args.coding_session.clone())
            .with_max_instruction_bytes(loaded.config.coding.max_instruction_bytes);
        Some(backends::with_git(tools, loaded))
    } else {
        if args.coding_session.is_some() {
            output::warn_line(&format!(
                "--coding-session is ignored: agent `{}` does not have coding enabled",
                def.name
            ));
        }
        None
    };
    let llm = GenaiClient::new(LlmSettings::from_config(&loaded.config, &process_env))?;
    let runtime = Runtime::new(
        Arc::new(llm),
        loaded.config.ai_model.clone(),
        loaded.config.ai_provider.clone(),
    );
    let tail = args.tail;
    let printer = std::sync::Mutex::new(TailPrinter::default());
    let on_event = Arc::new(move |event: AgentEvent| {
        if !tail {
            return;
        }
        let mut printer = printer.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            AgentEvent::Step { step, max_steps } => {
                printer.flush();
                output::spinner_message(&format!("model step {step}/{max_steps}"));
                output::progress(&format!("── step {step}/{max_steps}"));
            }
            AgentEvent::Text { text } => output::progress(&format!("model: {}", text.trim())),
            AgentEvent::ToolCall { name, arguments } => {
                output::spinner_message(&format!("{name} running"));
                output::progress(&format!("→ {name} {arguments}"))
            }
            AgentEvent::ToolResult { name, result } => {
                printer.flush();
                let ok = result
                    .get("success")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let detail = if ok {
                    result
                        .get("summary")
                        .or_else(|| result.get("session_id"))
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                } else {
                    result
                        .get("error")
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                };
                output::progress(&format!(
                    "← {name}: {} {detail}",
                    if ok { "ok" } else { "failed" }
                ));
            }
            AgentEvent::Coding { event } => printer.print(&event),
        }
    });
    if tail {
        output::spinner_start("starting");
    }
    let stop_requested = signals::stop_requested();
    let report = tokio::select! {
        report = runtime.run(&def, &task, &variables, tools.as_ref(), on_event) => report,
        stop = stop_requested => {
            output::spinner_stop();
            output::progress(&format!("stn: stopping the agent ({})", stop.name()));
            signals::exit_on_second_signal();
            // The agent's run was dropped, which cancels its coding task; let it stop.
            if let Some(service) = &coding_service
                && !service.wait_stopped(signals::STOP_GRACE).await
            {
                output::warn_line("the coding task did not stop in time");
            }
            return Ok(ExitCode::from(stop.exit_code()));
        }
    };
    output::spinner_stop();
    if let Some(service) = &coding_service {
        service.backend().shutdown().await;
    }
    let report = report?;
    let last_code_ok = report
        .tool_calls
        .iter()
        .rev()
        .find(|t| t.name == "code")
        .is_none_or(|t| t.success);
    let success = report.success && last_code_ok;
    let failed_status = if report.max_steps_reached {
        crate::exit::STOPPED_BY_LIMIT
    } else {
        crate::exit::TASK_FAILED
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["success"] = json!(success);
        output::json(&v);
    } else {
        if !report.final_text.trim().is_empty() {
            output::line(report.final_text.trim());
        }
        for f in &report.files_changed {
            output::progress(
                &format!(
                    "  {:?} {} (+{} -{})",
                    f.action, f.path, f.lines_added, f.lines_removed
                )
                .to_lowercase(),
            );
        }
        output::progress(&format!(
            "agent `{}` · {} · {} steps · {} tool calls · sessions: {} · model tokens {} in / {} out",
            report.agent,
            report.model,
            report.steps,
            report.tool_calls.len(),
            if report.sessions.is_empty() {
                "-".to_string()
            } else {
                report
                    .sessions
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            report.usage.input_tokens,
            report.usage.output_tokens
        ));
        if let Some(e) = &report.error {
            output::error_line(e);
        } else if !last_code_ok {
            output::error_line("the last coding task failed; see the tool results above (--tail)");
        }
    }
    Ok(if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(failed_status)
    })
}
