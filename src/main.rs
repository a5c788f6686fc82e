//! The `chatkitd` command line: `serve`, `migrate`, and the operator's
//! terminal commands `chat`, `tools` and `check` (see [`chatkitd::cli`]).
//!
//! This is the binary's edge: errors become `anyhow` reports and exit codes here.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chatkitd::app::{App, connect_store};
use chatkitd::cli::{self, chat::ChatEnd};
use chatkitd::config::Config;

mod allocator;

#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

/// Log filter of `serve` and `migrate` when `CHATKITD_LOG` is unset.
const SERVER_LOG: &str = "info,sqlx=warn,rmcp=warn";
/// Log filter of the terminal commands: warnings only, so the terminal
/// shows the conversation, not the daemon's bookkeeping.
const TERMINAL_LOG: &str = "warn,sqlx=warn,rmcp=warn";

/// A ChatKit backend: one endpoint, an LLM agent, threads in Postgres or SQLite.
#[derive(Debug, Parser)]
#[command(name = "chatkitd", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "agent.toml",
        env = "CHATKITD_CONFIG"
    )]
    config: PathBuf,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the ChatKit endpoint.
    Serve {
        /// Listen here instead of `[server] listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Chat with the agent in the terminal: same agent, store and tool
    /// servers as `serve`. Reads one message per line; piped input is
    /// answered line by line.
    Chat {
        /// Resume this thread (its last messages are shown first).
        #[arg(long, value_name = "ID")]
        thread: Option<String>,
        /// Act as this user (default: `[auth] dev_user`).
        #[arg(long, value_name = "ID")]
        user: Option<String>,
        /// Start a new thread (the default unless --thread is given).
        #[arg(long, conflicts_with = "thread")]
        new: bool,
    },
    /// List the tools the model is offered, or call one.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Check the configuration, the store, every tool server and the model
    /// endpoint; exit non-zero if any check fails (a deploy gate).
    Check,
    /// Check the configuration file as a reload would, then ask the running
    /// daemon to apply it (SIGHUP): tool servers are diffed, prompts and
    /// model settings apply to the next run.
    Reload {
        /// The daemon's process id (default: read from `[server] pid_file`).
        #[arg(long)]
        pid: Option<i32>,
    },
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Every tool as the model sees it: name, server/tool, description, schema.
    List {
        /// List for this user (matters for per-user servers; default: `[auth] dev_user`).
        #[arg(long, value_name = "ID")]
        user: Option<String>,
    },
    /// Run one tool call through the pool, injection applied; exit 1 if the
    /// result is an error.
    Call {
        /// The server's name (`[mcp_servers.NAME]`).
        server: String,
        /// The tool's own name on that server.
        tool: String,
        /// The arguments, a JSON object.
        #[arg(long, value_name = "JSON", default_value = "{}")]
        args: String,
        /// Call as this user (default: `[auth] dev_user`).
        #[arg(long, value_name = "ID")]
        user: Option<String>,
    },
}

impl Command {
    fn default_log(&self) -> &'static str {
        match self {
            Command::Serve { .. } | Command::Migrate => SERVER_LOG,
            Command::Chat { .. }
            | Command::Tools { .. }
            | Command::Check
            | Command::Reload { .. } => TERMINAL_LOG,
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    allocator::tune();
    let cli = Cli::parse();
    init_logging(cli.log_json, cli.command.default_log());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::collect_when_idle)
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(run(cli));
    // Do not wait for the thread blocked reading a terminal line.
    runtime.shutdown_background();
    match code {
        // `chatkitd tools list | head`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::from(141)),
        other => other,
    }
}

/// Whether writing to a closed pipe caused `error`.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Check = cli.command {
        let passed = cli::check::run(&cli.config, &mut std::io::stdout()).await?;
        return Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if let Command::Reload { pid } = cli.command {
        return reload(&cli.config, pid);
    }
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve { listen } => {
            // Caught before anything slow starts: SIGHUP's default action
            // would end a daemon still starting its tool servers. One that
            // comes during start-up is applied once the daemon serves.
            let hangups = hangup_signal();
            let pid_file = config
                .server
                .pid_file
                .as_ref()
                .map(|file| config.base_dir.join(file));
            let app = App::build(config).await?;
            let listener = app.bind(listen).await?;
            let _pid_file = pid_file.map(PidFile::write).transpose()?;
            let reloads = tokio::spawn(reload_on_hangup(hangups, app.reloader(&cli.config)));
            app.serve(listener, shutdown_signal()).await?;
            reloads.abort();
            tracing::info!("stopped");
        }
        Command::Migrate => {
            let store = connect_store(&config).await?;
            store.migrate().await?;
            store.close().await;
            let mut out = std::io::stdout().lock();
            writeln!(out, "migrations applied to {}", config.store.url)?;
        }
        Command::Chat { thread, user, .. } => {
            let app = App::build(config).await?;
            let ended = cli::chat::run(&app, cli::chat::ChatOptions { thread, user }).await;
            app.shutdown().await;
            if ended? == ChatEnd::Interrupted {
                return Ok(ExitCode::from(130));
            }
        }
        Command::Tools { command } => return tools(&config, command).await,
        Command::Check | Command::Reload { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn tools(config: &Config, command: ToolsCommand) -> anyhow::Result<ExitCode> {
    let user_or_default =
        |user: Option<String>| user.unwrap_or_else(|| config.auth.dev_user.clone());
    match command {
        ToolsCommand::List { user } => {
            let user = user_or_default(user);
            let count = cli::tools::list(config, &user, &mut std::io::stdout()).await?;
            eprintln!("{count} tools offered to {user:?}");
            Ok(ExitCode::SUCCESS)
        }
        ToolsCommand::Call {
            server,
            tool,
            args,
            user,
        } => {
            let user = user_or_default(user);
            let outcome = cli::tools::call(config, &user, &server, &tool, &args).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", outcome.output).and_then(|()| out.flush())?;
            if outcome.is_error {
                eprintln!(
                    "{server}/{tool}: the call failed ({:.1}s)",
                    outcome.elapsed.as_secs_f64()
                );
                Ok(ExitCode::FAILURE)
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// `chatkitd reload`: refuses a file a reload would refuse (so the operator
/// sees why here, not only in the daemon's log), then sends SIGHUP.
fn reload(path: &std::path::Path, pid: Option<i32>) -> anyhow::Result<ExitCode> {
    let config = chatkitd::reload::check(path)
        .with_context(|| format!("{} would not be applied", path.display()))?;
    let pid = match pid {
        Some(pid) => pid,
        None => {
            let Some(file) = &config.server.pid_file else {
                anyhow::bail!(
                    "no daemon to signal: pass --pid, or set [server] pid_file so `serve` writes its process id"
                );
            };
            let file = config.base_dir.join(file);
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!("cannot read {} (is the daemon running?)", file.display())
            })?;
            text.trim()
                .parse()
                .with_context(|| format!("{} does not hold a process id", file.display()))?
        }
    };
    anyhow::ensure!(pid > 0, "{pid} is not a daemon's process id");
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let error = std::io::Error::last_os_error();
        anyhow::bail!("cannot signal process {pid}: {error}");
    }
    eprintln!(
        "{} is valid; asked the daemon (pid {pid}) to reload it. Its log says what changed.",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP as a stream; `None` (logged) if it cannot be caught.
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; configuration reloads are off");
            None
        }
    }
}

/// Reloads the configuration on every SIGHUP (a failed reload is logged by
/// the reloader and changes nothing).
async fn reload_on_hangup(
    hangups: Option<tokio::signal::unix::Signal>,
    reloader: std::sync::Arc<chatkitd::reload::Reloader>,
) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received; reloading the configuration");
        let _ = reloader.reload().await;
    }
}

/// The daemon's process id in a file, removed when dropped.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: PathBuf) -> anyhow::Result<PidFile> {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn init_logging(json: bool, default: &str) {
    let filter =
        EnvFilter::try_from_env("CHATKITD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes only for a terminal: a journal or a log file gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let Some(first) = next_signal().await else {
        return std::future::pending().await;
    };
    tracing::info!("{first} received; shutting down (send it again to exit at once)");
    // A second signal means: stop waiting. Exiting skips the drain; MCP
    // servers still die through their parent-death signal.
    tokio::spawn(async {
        if let Some(second) = next_signal().await {
            tracing::warn!("{second} received again; exiting at once");
            std::process::exit(130);
        }
    });
}

/// Waits for SIGINT or SIGTERM and names it; `None` if neither can be caught.
async fn next_signal() -> Option<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut interrupt, mut terminate) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGINT/SIGTERM");
                return None;
            }
        };
        tokio::select! {
            _ = interrupt.recv() => Some("SIGINT"),
            _ = terminate.recv() => Some("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok().map(|()| "Ctrl-C")
    }
}
