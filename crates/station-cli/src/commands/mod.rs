//! One module per command.

mod agent;
mod code;
mod config;
mod doctor;
mod generate;
mod mcp;
mod session;
mod session_diff;
#[cfg(feature = "ui")]
mod ui;
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
        Command::Session(SessionCommand::List(args)) if args.from_backend => {
            let config = load_config(config_path.as_deref())?;
            let name = args
                .backend
                .clone()
                .unwrap_or_else(|| config.backend_name().to_string());
            session::list_backend(&config, &name, args.json).await
        }
        Command::Session(SessionCommand::List(args)) => session::list(&args),
        Command::Session(SessionCommand::Show(args)) => session::show(&args),
        Command::Session(SessionCommand::Delete(args)) => session::delete(&args),
        Command::Session(SessionCommand::Prune(args)) => session::prune(&args),
        Command::Session(SessionCommand::Diff(args)) => session_diff::diff(&args),
        Command::Session(SessionCommand::Rewind(args)) => {
            let config = load_config(config_path.as_deref())?;
            let busy_wait = config.config.coding.session_busy_wait();
            session_diff::rewind(&args, busy_wait).await
        }
        Command::Completions(args) => generate::completions(&args),
        Command::Generate(command) => generate::generate(&command),
        Command::Doctor(args) => doctor::run(&load_config(config_path.as_deref())?, args).await,
        Command::Worker(args) => worker::run(load_config(config_path.as_deref())?, args).await,
        Command::Mcp(args) => mcp::run(&load_config(config_path.as_deref())?, args).await,
        #[cfg(feature = "ui")]
        Command::Ui(args) => ui::run(load_config(config_path.as_deref())?, args).await,
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

/// An age such as `90s`, `45m`, `12h`, `30d` or `2w` (for `--older-than`).
pub(crate) fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not an age; write a number and a unit, e.g. 30d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        "w" => 7 * 24 * 60 * 60,
        _ => {
            return Err(format!(
                "`{text}` has no known unit; use s, m, h, d or w, e.g. 12h, 30d, 2w"
            ));
        }
    };
    number
        .checked_mul(unit_secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long an age"))
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages_take_a_number_and_a_unit() {
        assert_eq!(parse_age("12h").unwrap().as_secs(), 12 * 3600);
        assert_eq!(parse_age("30d").unwrap().as_secs(), 30 * 86400);
        assert_eq!(parse_age("2w").unwrap().as_secs(), 14 * 86400);
        assert!(parse_age("30").unwrap_err().contains("unit"));
        assert!(parse_age("d").is_err());
        assert!(parse_age("99999999999999999999w").is_err());
    }
}
