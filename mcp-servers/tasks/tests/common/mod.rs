//! Test helpers, also used by the `server_latency` benchmark: spawn the built `tasks-mcp`
//! binary and talk to it through rmcp's client.

#![allow(dead_code)]

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::process::Command;

/// A client connected to one server process.
pub type Client = RunningService<RoleClient, ()>;

/// How long any single step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(20);

/// Where a spawned server keeps its tasks.
#[derive(Debug, Clone)]
pub enum Db {
    /// A SQLite file (`TASKS_DB`).
    File(std::path::PathBuf),
    /// A database URL (`TASKS_DATABASE_URL`).
    Url(String),
}

/// Spawns the server binary and completes the MCP handshake.
pub async fn spawn(db: &Db) -> Client {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tasks-mcp"));
    cmd.env_remove("TASKS_DATABASE_URL").env_remove("TASKS_DB");
    match db {
        Db::File(path) => cmd.env("TASKS_DB", path),
        Db::Url(url) => cmd.env("TASKS_DATABASE_URL", url),
    };
    let transport = TokioChildProcess::new(cmd).expect("spawn tasks-mcp");
    tokio::time::timeout(STEP, ().serve(transport))
        .await
        .expect("initialize timed out")
        .expect("initialize failed")
}

/// Calls a tool with JSON arguments and returns the raw result.
pub async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().expect("arguments are an object");
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
    tokio::time::timeout(STEP, client.call_tool(params))
        .await
        .expect("call timed out")
        .expect("call failed at the protocol level")
}

/// The text of a result's single text content.
pub fn text(result: &CallToolResult) -> String {
    assert_eq!(result.content.len(), 1, "one content block: {result:?}");
    result.content[0]
        .as_text()
        .map(|t| t.text.clone())
        .expect("a text content")
}

/// Calls a tool that must succeed; returns its JSON (parsed from the text content).
pub async fn ok(client: &Client, tool: &str, args: Value) -> Value {
    let result = call(client, tool, args).await;
    assert_eq!(result.is_error, Some(false), "{tool} failed: {result:?}");
    let value: Value = serde_json::from_str(&text(&result)).expect("text is JSON");
    assert_eq!(result.structured_content.as_ref(), Some(&value));
    value
}

/// Calls a tool that must fail with a tool error; returns the error message.
pub async fn err(client: &Client, tool: &str, args: Value) -> String {
    let result = call(client, tool, args).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {result:?}"
    );
    text(&result)
}

/// Closes the client, which makes the server exit.
pub async fn close(mut client: Client) {
    let _ = client.close_with_timeout(STEP).await;
}

/// A fresh temporary directory and the SQLite file inside it.
pub fn temp_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tasks.db");
    (dir, Db::File(path))
}

/// A user id unique to this process and call.
pub fn unique_user(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
