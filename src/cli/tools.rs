//! `chatkitd tools list` and `chatkitd tools call`: the configured MCP
//! servers' tools as the model sees them (names, descriptions, schemas with
//! the injected parameters removed), and one call through the same pool the
//! agent uses, injection applied.
//!
//! Servers start on first use and stop when the command ends; nothing else
//! (store, model) is touched.

use std::io::Write;
use std::sync::Arc;

use serde_json::Value;

use super::CliError;
use crate::config::Config;
use crate::mcp::{McpManager, ToolOutcome};

/// The tool servers of `config`, none started yet.
fn manager(config: &Config) -> Result<Arc<McpManager>, CliError> {
    if config.mcp_servers.is_empty() {
        return Err(CliError::Usage(
            "no tool servers are configured ([mcp_servers.NAME] in the configuration)".to_owned(),
        ));
    }
    Ok(McpManager::configure(
        &config.mcp_servers,
        &config.base_dir,
        config.agent.max_tool_output_bytes,
    ))
}

/// Writes every tool offered to `user` to `out`: model name, `server/tool`,
/// description, and the schema the model sees. Returns how many there were.
pub async fn list(config: &Config, user: &str, out: &mut impl Write) -> Result<usize, CliError> {
    let mcp = manager(config)?;
    let tools = mcp.tools_for(user).await;
    let mut written = Ok(());
    for tool in tools.iter() {
        written = write_tool(out, tool);
        if written.is_err() {
            break;
        }
    }
    let missing: Vec<String> = mcp
        .server_names()
        .into_iter()
        .filter(|server| !tools.iter().any(|t| &t.server == server))
        .collect();
    mcp.shutdown().await;
    written?;
    out.flush()?;
    if !missing.is_empty() {
        eprintln!(
            "no tools from: {} (see the log above, or run `chatkitd check`)",
            missing.join(", ")
        );
    }
    Ok(tools.len())
}

fn write_tool(out: &mut impl Write, tool: &crate::mcp::ModelTool) -> std::io::Result<()> {
    let approval = if tool.needs_approval {
        "  [asks the user's approval]"
    } else {
        ""
    };
    writeln!(
        out,
        "{}  ({}/{}){approval}",
        tool.name, tool.server, tool.tool
    )?;
    if !tool.description.trim().is_empty() {
        for line in tool.description.trim().lines() {
            writeln!(out, "    {line}")?;
        }
    }
    let schema = serde_json::to_string_pretty(&tool.parameters)
        .unwrap_or_else(|_| tool.parameters.to_string());
    for line in schema.lines() {
        writeln!(out, "    {line}")?;
    }
    writeln!(out)
}

/// Runs `server`'s tool `tool` once for `user` with `arguments` (a JSON
/// object), as a model's call would run.
pub async fn call(
    config: &Config,
    user: &str,
    server: &str,
    tool: &str,
    arguments: &str,
) -> Result<ToolOutcome, CliError> {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(_)) => {}
        Ok(_) => {
            return Err(CliError::Usage(
                "--args must be a JSON object, e.g. '{\"text\":\"hi\"}'".to_owned(),
            ));
        }
        Err(e) => {
            return Err(CliError::Usage(format!(
                "--args is not valid JSON ({e}); pass an object, e.g. '{{\"text\":\"hi\"}}'"
            )));
        }
    }
    let mcp = manager(config)?;
    let outcome = mcp.call_tool(user, server, tool, arguments).await;
    mcp.shutdown().await;
    Ok(outcome)
}
