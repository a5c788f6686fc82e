//! `tasks-mcp`: an MCP server over stdio that keeps per-user task lists in SQLite or Postgres.
//!
//! Speaks JSON-RPC on stdin/stdout (the non-blocking pipe transport when both are pipes) and logs
//! to stderr only: anything else on stdout would break the protocol. It exits when the client
//! closes stdin, or on SIGTERM/SIGINT. See README.md for the environment variables and tools.

mod config;
mod store;
mod tools;

use std::process::ExitCode;

use rmcp::ServiceExt;
use tracing_subscriber::EnvFilter;

use crate::config::DbConfig;
use crate::store::Store;
use crate::tools::TasksServer;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_env("TASKS_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("tasks-mcp: {err}");
            eprintln!("tasks-mcp: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the store, serves until the client goes away or a signal arrives, then closes.
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = DbConfig::from_env()?;
    let store = Store::open(&config).await?;
    tracing::info!(backend = ?config.backend, "tasks-mcp ready");

    let service = TasksServer::new(store.clone())
        .serve(rmcp::transport::stdio_pipes())
        .await?;
    let cancel = service.cancellation_token();
    let result = tokio::select! {
        result = service.waiting() => result.map(|_| ()).map_err(Into::into),
        () = shutdown_signal() => {
            cancel.cancel();
            Ok(())
        }
    };
    store.close().await;
    result
}

/// Resolves on SIGTERM or SIGINT (never, if the handlers cannot be installed).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
