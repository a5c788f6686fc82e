//! The rules of the interactive keys (`[actions]`, `[client_tools]`, each
//! server's `tools` tables), which read the whole file: an action names a
//! server, a widget path is relative to the file.

use serde_json::Value;

use crate::config::ConfigError;
use crate::config::document::Document;
use crate::config::interactive::{ActionTarget, RESERVED_ACTIONS};
use crate::config::schema::Config;

/// Checks `[actions]`, `[client_tools]` and each server's `tools` tables.
pub(in crate::config) fn validate(
    config: &Config,
    document: &Document<'_>,
) -> Result<(), ConfigError> {
    let invalid = |keys: &[&str], message: String| super::invalid_at(document, keys, message);
    for (name, server) in &config.mcp_servers {
        for (tool, settings) in &server.tools {
            if let Some(widget) = &settings.widget {
                let path = config.base_dir.join(widget);
                if !path.is_file() {
                    return Err(invalid(
                        &["mcp_servers", name, "tools", tool, "widget"],
                        format!("{} is not a file", path.display()),
                    ));
                }
            }
        }
    }
    for (kind, action) in &config.actions {
        let keys = |key: &'static str| ["actions", kind.as_str(), key];
        if RESERVED_ACTIONS.contains(&kind.as_str()) {
            return Err(invalid(
                &["actions", kind],
                "this action type belongs to the approval card and cannot be bound".to_owned(),
            ));
        }
        match action.target() {
            Some(ActionTarget::Tool { server, tool }) => {
                if !config.mcp_servers.contains_key(server) {
                    return Err(invalid(
                        &keys("server"),
                        format!("no tool server named {server:?} is configured"),
                    ));
                }
                if tool.trim().is_empty() {
                    return Err(invalid(&keys("tool"), "must not be empty".to_owned()));
                }
            }
            Some(ActionTarget::Agent { message }) => {
                if message.trim().is_empty() {
                    return Err(invalid(&keys("message"), "must not be empty".to_owned()));
                }
            }
            None => {
                return Err(invalid(
                    &["actions", kind],
                    "give either `server` and `tool` (the action calls that tool) or `message` (the agent answers it)".to_owned(),
                ));
            }
        }
    }
    for (name, tool) in &config.client_tools {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid(
                &["client_tools", name],
                "client tool names use 1 to 64 letters, digits, `_` and `-`".to_owned(),
            ));
        }
        if tool.description.trim().is_empty() {
            return Err(invalid(
                &["client_tools", name, "description"],
                "must not be empty".to_owned(),
            ));
        }
        if tool.parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid(
                &["client_tools", name, "parameters"],
                "must be a JSON schema with `type = \"object\"`".to_owned(),
            ));
        }
    }
    Ok(())
}
