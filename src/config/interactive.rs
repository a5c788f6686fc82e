//! The interactive keys of `agent.toml`: per-tool settings of a tool server
//! (`[mcp_servers.NAME.tools.TOOL]`: a widget template, an approval rule),
//! the server's approval rule, widget actions (`[actions."TYPE"]`) and
//! client tools (`[client_tools.NAME]`). Their rules, which need the whole
//! file (an action names a server), are `validate/interactive.rs`.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

/// The action types chatkitd itself answers (the approval card's buttons);
/// `[actions]` may not bind them.
pub const RESERVED_ACTIONS: [&str; 2] = ["tool.approve", "tool.deny"];

/// When a tool call waits for the user's approval before it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Never: the call runs when the model asks.
    Never,
    /// Always.
    Always,
    /// When the server annotates the tool `destructiveHint: true` (tools
    /// without annotations run without asking).
    #[default]
    Destructive,
}

/// `[mcp_servers.NAME.tools.TOOL]`: settings of one tool, by its own name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSettings {
    /// A `.widget` template (relative to the config file) the tool's
    /// structured result is shown with.
    #[serde(default)]
    pub widget: Option<PathBuf>,
    /// Overrides the server's `approval` for this tool.
    #[serde(default)]
    pub approval: Option<Approval>,
}

/// `[actions."TYPE"]`: what a widget action of that type does. Exactly one
/// of `tool` (with `server`) or `message`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The server whose `tool` the action calls.
    #[serde(default)]
    pub server: Option<String>,
    /// The tool (its own name on `server`) called with the action's payload
    /// as arguments; injected parameters are still the daemon's. The widget
    /// that fired it is then rendered again and replaced in place.
    #[serde(default)]
    pub tool: Option<String>,
    /// Hands the action to the agent instead: this template (Jinja, over
    /// `action.type` and `action.payload`) is what the action means, and the
    /// agent answers it as if the user had said it.
    #[serde(default)]
    pub message: Option<String>,
}

/// What an action is bound to, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionTarget<'a> {
    Tool { server: &'a str, tool: &'a str },
    Agent { message: &'a str },
}

impl ActionConfig {
    /// The binding; `None` only for a configuration validation refuses.
    pub fn target(&self) -> Option<ActionTarget<'_>> {
        match (&self.server, &self.tool, &self.message) {
            (Some(server), Some(tool), None) => Some(ActionTarget::Tool { server, tool }),
            (None, None, Some(message)) => Some(ActionTarget::Agent { message }),
            _ => None,
        }
    }
}

/// `[client_tools.NAME]`: a tool the model may call that runs in the
/// browser (the page's `onClientTool`), not on a tool server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientToolConfig {
    /// What the model reads about the tool.
    pub description: String,
    /// The JSON schema of its arguments (an object schema).
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}
