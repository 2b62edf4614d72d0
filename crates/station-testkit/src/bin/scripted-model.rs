//! `scripted-model --port N --script FILE.json [--log FILE.jsonl]`: run the scripted model
//! server by hand. Prints `listening on http://127.0.0.1:PORT`, serves until Ctrl-C.
//!
//! Script file example:
//!
//! ```json
//! {"rules": [{"on": "hello.py", "steps": [
//!     {"write": {"path": "hello.py", "content": "print('Hello World')\n"}, "text_before": "Creating it."},
//!     {"text": "Created hello.py."}]}],
//!  "fallback": [{"text": "I only know hello.py."}],
//!  "final_text": "Done."}
//! ```
#![allow(clippy::print_stdout)] // printing the address is the point

use std::process::ExitCode;

use station_testkit::model_server::{Script, ScriptedModel, ServerOptions};

const USAGE: &str = "usage: scripted-model [--port N] [--script FILE.json] [--log FILE.jsonl]";

#[derive(Debug, Default)]
struct Args {
    port: u16,
    script: Option<String>,
    log: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                parsed.port = v
                    .parse()
                    .map_err(|_| format!("--port: `{v}` is not a port"))?;
            }
            "--script" => parsed.script = Some(value()?),
            "--log" => parsed.log = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("scripted-model: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let script = match &args.script {
        None => Script::new(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Script::from_json(&text).map_err(|e| e.to_string()))
        {
            Ok(script) => script,
            Err(problem) => {
                eprintln!("scripted-model: cannot load script {path}: {problem}");
                return ExitCode::from(2);
            }
        },
    };
    let mut options = ServerOptions::new().port(args.port);
    if let Some(log) = &args.log {
        options = options.request_log(log);
    }
    let model = match ScriptedModel::start_with(script, options).await {
        Ok(model) => model,
        Err(error) => {
            eprintln!(
                "scripted-model: cannot listen on 127.0.0.1:{}: {error}",
                args.port
            );
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", model.base_url());
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("scripted-model: {error}");
    }
    ExitCode::SUCCESS
}
