//! Command-line surface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The longest `--timeout` (core's limit on every deadline).
const MAX_DEADLINE_SECS: u64 = station_core::config::MAX_DEADLINE.as_secs();

/// Hand coding work to coding agents: OpenCode (HTTP, NATS, CLI) and Claude Code.
#[derive(Debug, Parser)]
#[command(name = "stn", version, about, long_about = None, propagate_version = true, after_help = crate::exit::HELP)]
pub(crate) struct Cli {
    /// Config file (default: $STN_CONFIG, else ~/.config/station/config.yaml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Work with agent definitions (.prompt files).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run one coding task on a backend, without an orchestrating model.
    Code(CodeArgs),
    /// Coding sessions Station knows about.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Check that the configured backend is reachable and usable.
    Doctor(DoctorArgs),
    /// Serve coding tasks from NATS on a local OpenCode server (the `opencode-nats` backend's worker).
    Worker(WorkerArgs),
    /// Serve the coding tools over MCP (stdio by default) for Claude Desktop, Cursor, Zed, agents.
    Mcp(McpArgs),
    /// Watch, review and steer coding sessions in the browser (a local web page).
    #[cfg(feature = "ui")]
    Ui(UiArgs),
    /// Print a shell completion script, e.g. `source <(stn completions bash)`.
    Completions(CompletionsArgs),
    /// Write man pages or the JSON Schema of `stn code --json` (for packagers; `cargo xtask man`).
    #[command(subcommand)]
    Generate(GenerateCommand),
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GenerateCommand {
    /// Write man pages (stn.1, stn-code.1, ...) into DIR.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Write the JSON Schema of `stn code --json` to FILE.
    OutcomeSchema {
        /// Output file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Check an agent file and print what it defines.
    Validate(ValidateArgs),
    /// Write a new agent definition.
    Create(CreateAgentArgs),
    /// List the agents of an environment.
    List(ListAgentsArgs),
    /// Show an agent's definition.
    Show(AgentRefArgs),
    /// Delete an agent definition.
    Delete(AgentRefArgs),
    /// Run an agent on a task.
    Run(RunAgentArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateAgentArgs {
    /// Agent name (also the file name).
    pub(crate) name: String,
    /// What the agent is for.
    #[arg(short, long)]
    pub(crate) description: String,
    /// The system prompt.
    #[arg(short, long)]
    pub(crate) prompt: String,
    /// Coding settings as JSON, e.g. '{"enabled":true}'.
    #[arg(long, value_name = "JSON")]
    pub(crate) coding: Option<String>,
    /// Limit of model steps.
    #[arg(long, default_value_t = 5)]
    pub(crate) max_steps: u32,
    /// The orchestrating model, e.g. openai/gpt-4o (default: the config's ai_model).
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// Environment.
    #[arg(short, long = "env", default_value = "default")]
    pub(crate) env: String,
    /// Replace an existing agent of that name.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListAgentsArgs {
    /// Environment.
    #[arg(short, long = "env", default_value = "default")]
    pub(crate) env: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AgentRefArgs {
    /// Agent name (file name or metadata.name), or a path to a .prompt file.
    pub(crate) name: String,
    /// Environment.
    #[arg(short, long = "env", default_value = "default")]
    pub(crate) env: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunAgentArgs {
    /// Agent name (file name or metadata.name), or a path to a .prompt file.
    pub(crate) name: String,
    /// The task, given to the agent as {{userInput}}; `-` reads it from stdin.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub(crate) task: Option<String>,
    /// Read the task from this file.
    #[arg(long, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    /// Environment.
    #[arg(short, long = "env", default_value = "default")]
    pub(crate) env: String,
    /// Stream model steps, tool calls and coding progress on stderr.
    #[arg(long)]
    pub(crate) tail: bool,
    /// Make coding_open continue this coding session (id, title, or unique part of the title).
    #[arg(long, value_name = "NAME|ID")]
    pub(crate) coding_session: Option<String>,
    /// Template variables for the agent body, NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub(crate) vars: Vec<String>,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The .prompt file.
    pub(crate) file: PathBuf,
    /// Print the parsed definition as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective config (file + environment overrides + defaults), secrets redacted.
    Show(JsonFlag),
}

#[derive(Debug, Args)]
pub(crate) struct JsonFlag {
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CodeArgs {
    /// What the coding agent should do; `-` reads it from stdin.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub(crate) instruction: Option<String>,
    /// Read the instruction from this file.
    #[arg(long, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    /// Backend to use instead of the configured one: a name as in `coding.backend` (`stn doctor` lists them).
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
    /// Workspace directory (default: the current directory; with --repo: a new directory under workspace_base_path).
    #[arg(long, value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// Repository to clone into the workspace first (credentials come from coding.git in config).
    #[arg(long, value_name = "URL")]
    pub(crate) repo: Option<String>,
    /// Branch to check out with --repo.
    #[arg(long, value_name = "BRANCH", requires = "repo")]
    pub(crate) branch: Option<String>,
    /// Continue a session: its id, backend id, title, or a unique part of its title.
    #[arg(long, value_name = "NAME|ID")]
    pub(crate) session: Option<String>,
    /// Title of a new session (default: the instruction).
    #[arg(long, value_name = "TITLE", conflicts_with = "session")]
    pub(crate) title: Option<String>,
    /// Where a new session works: `none`, the workspace itself, or `worktree`, a new git
    /// worktree of the workspace's repository on branch `stn/<session id>` under
    /// workspace_base_path, so several sessions can work on one repository at once (default:
    /// coding.isolation, else none).
    #[arg(long, value_name = "none|worktree", conflicts_with = "session")]
    pub(crate) isolation: Option<station_core::config::Isolation>,
    /// Deadline in seconds, at most 604800 (7 days) (default: the backend's configured timeout).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_DEADLINE_SECS))]
    pub(crate) timeout: Option<u64>,
    /// Show live events on stderr.
    #[arg(long)]
    pub(crate) tail: bool,
    /// Print the outcome as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// List coding sessions, most recently used first.
    List(ListSessionsArgs),
    /// Show a session and its tasks: outcomes, tokens, cost, files.
    Show(ShowSessionArgs),
    /// Show what a session's tasks changed in its workspace, as a patch.
    Diff(SessionDiffArgs),
    /// Restore a session's workspace files to their state before a task.
    Rewind(SessionRewindArgs),
    /// Forget a session: its index entry, task history and checkpoints (not its workspace).
    Delete(DeleteSessionArgs),
    /// Forget sessions not used for a while (like `delete`, workspaces are kept).
    Prune(PruneSessionsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListSessionsArgs {
    /// Only sessions of this backend.
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
    /// Only sessions in this workspace directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// List the sessions the backend itself keeps (e.g. an ACP agent's `session/list`) instead
    /// of Station's index: the `--backend` one, else the configured one.
    #[arg(long)]
    pub(crate) from_backend: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowSessionArgs {
    /// The session: id, backend id, title, or a unique part of the title.
    pub(crate) session: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SessionDiffArgs {
    /// The session: its id, backend id, title, or a unique part of its title.
    pub(crate) session: String,
    /// Only this task (1 is the session's first; default: all its tasks together).
    #[arg(long, value_name = "N")]
    pub(crate) task: Option<u32>,
    /// Print the files changed and the patch as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SessionRewindArgs {
    /// The session: its id, backend id, title, or a unique part of its title.
    pub(crate) session: String,
    /// Restore the state before this task (default: the session's last task).
    #[arg(long, value_name = "N")]
    pub(crate) to_task: Option<u32>,
    /// Rewind even though the workspace changed since the session's last task ended (those
    /// changes are lost; ignored files are never touched).
    #[arg(long)]
    pub(crate) force: bool,
    /// Print what was restored as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteSessionArgs {
    /// The session: id, backend id, title, or a unique part of the title.
    pub(crate) session: String,
}

#[derive(Debug, Args)]
pub(crate) struct PruneSessionsArgs {
    /// Remove sessions last used longer ago than this: a number with s, m, h, d or w (e.g. 30d).
    #[arg(long, value_name = "AGE", value_parser = crate::commands::parse_age)]
    pub(crate) older_than: std::time::Duration,
    /// List what would be removed without removing it.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Backend to check instead of the configured one.
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// NATS server URL (default: coding.nats.url).
    #[arg(long, value_name = "URL")]
    pub(crate) nats_url: Option<String>,
    /// NATS credentials file (default: coding.nats.creds_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) creds_file: Option<PathBuf>,
    /// PEM CA certificates to trust for the NATS server's TLS certificate (default:
    /// coding.nats.tls.ca_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS, with --tls-key (default: coding.nats.tls.cert_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (default: coding.nats.tls.key_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Directory the workspaces live under (default: coding.workspace_base_path).
    #[arg(long, value_name = "DIR")]
    pub(crate) workspace_base: Option<PathBuf>,
    /// OpenCode server to run tasks on (default: coding.opencode.url, or a private server).
    #[arg(long, value_name = "URL")]
    pub(crate) opencode_url: Option<String>,
    /// This worker's identity in acks, heartbeats and results.
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Most tasks this worker runs at once; others go to workers with free capacity
    /// (default: coding.nats.worker.max_tasks, else no limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_tasks: Option<u64>,
}

#[cfg(feature = "ui")]
#[derive(Debug, Args)]
pub(crate) struct UiArgs {
    /// Address to serve the page on; port 0 picks a free port (the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8780")]
    pub(crate) listen: std::net::SocketAddr,
    /// Allow a non-loopback --listen address and any Host name; API calls then need the bearer
    /// token (from --token-env or STN_UI_TOKEN, else generated and printed at start).
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// Let web pages at this origin (e.g. https://app.example) call the API; repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub(crate) allow_origin: Vec<String>,
    /// Read the bearer token from this environment variable (default: STN_UI_TOKEN).
    #[arg(long, value_name = "VAR")]
    pub(crate) token_env: Option<String>,
    /// Backend for new sessions started from the page (default: the configured one).
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// Serve streamable HTTP on this address (e.g. 127.0.0.1:8765) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// Allow a non-loopback --http address and any Host name; requests then need the bearer
    /// token (from --token-env or STN_MCP_TOKEN, else generated and printed at start).
    #[arg(long, requires = "http")]
    pub(crate) allow_remote: bool,
    /// Let web pages at this origin (e.g. https://app.example) call the --http server; repeatable.
    /// Requests from other origins are refused.
    #[arg(long = "allow-origin", value_name = "ORIGIN", requires = "http")]
    pub(crate) allow_origin: Vec<String>,
    /// Read the --http bearer token from this environment variable (default: STN_MCP_TOKEN).
    /// With a token, every request needs `Authorization: Bearer <token>`, on loopback too.
    #[arg(long, value_name = "VAR", requires = "http")]
    pub(crate) token_env: Option<String>,
    /// Backend to use instead of the configured one.
    #[arg(long, value_name = "NAME")]
    pub(crate) backend: Option<String>,
}
