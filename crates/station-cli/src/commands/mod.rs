//! One module per command.

mod agent;
mod code;
mod config;
mod doctor;
mod mcp;
mod session;
mod session_diff;
mod worker;

use std::process::ExitCode;

use station_core::Error;
use station_core::config::{Config, LoadedConfig, process_env};

use crate::cli::{AgentCommand, Cli, Command, ConfigCommand, SessionCommand};

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = cli.config.clone();
    match cli.command {
        Command::Agent(AgentCommand::Validate(args)) => {
            agent::validate(config_path.as_deref(), &args)
        }
        Command::Agent(AgentCommand::Create(args)) => {
            agent::create(&load_config(config_path.as_deref())?, &args)
        }
        Command::Agent(AgentCommand::List(args)) => {
            agent::list(&load_config(config_path.as_deref())?, &args)
        }
        Command::Agent(AgentCommand::Show(args)) => {
            agent::show(&load_config(config_path.as_deref())?, &args)
        }
        Command::Agent(AgentCommand::Delete(args)) => {
            agent::delete(&load_config(config_path.as_deref())?, &args)
        }
        Command::Agent(AgentCommand::Run(args)) => {
            agent::run(&load_config(config_path.as_deref())?, args).await
        }
        Command::Config(ConfigCommand::Show(args)) => {
            config::show(&load_config(config_path.as_deref())?, args.json)
        }
        Command::Code(args) => code::run(&load_config(config_path.as_deref())?, args).await,
        Command::Session(SessionCommand::List(args)) => match args.backend.as_deref() {
            Some(name) => {
                session::list_backend(&load_config(config_path.as_deref())?, name, args.json).await
            }
            None => session::list(args.json),
        },
        Command::Session(SessionCommand::Diff(args)) => session_diff::diff(&args),
        Command::Session(SessionCommand::Rewind(args)) => {
            let config = load_config(config_path.as_deref())?;
            let busy_wait = config.config.coding.session_busy_wait();
            session_diff::rewind(&args, busy_wait).await
        }
        Command::Doctor(args) => doctor::run(&load_config(config_path.as_deref())?, args).await,
        Command::Worker(args) => worker::run(load_config(config_path.as_deref())?, args).await,
        Command::Mcp(args) => mcp::run(&load_config(config_path.as_deref())?, args).await,
    }
}

/// Load the config and check it against the backends compiled in, printing its warnings.
pub(crate) fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<LoadedConfig> {
    let loaded = Config::load(path, process_env).map_err(with_cli_hint)?;
    crate::backends::registry().check_config(&loaded)?;
    for w in &loaded.warnings {
        crate::output::warn_line(w);
    }
    Ok(loaded)
}

/// Core states what is wrong with finding the config file; stn says which flag fixes it.
fn with_cli_hint(err: Error) -> Error {
    match err {
        Error::Config(mut e) if e.line.is_none() && e.field.is_none() && e.hint.is_none() => {
            e.hint = Some(match e.file {
                Some(_) => "check the path given with --config or STN_CONFIG".into(),
                None => "pass --config FILE or set STN_CONFIG".into(),
            });
            Error::Config(e)
        }
        other => other,
    }
}
