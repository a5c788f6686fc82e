//! `[mcp_servers.NAME]`: one tool server's definition, its pools and
//! timeouts, and its interactive settings (see [`super::interactive`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::interactive::{Approval, ToolSettings};

/// `[mcp_servers.NAME]`: one stdio MCP server definition. `command`, `args`
/// and `env` mean what they mean in other MCP clients' configuration files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program; a path with a `/` is relative to the config file.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The child's whole environment besides `PATH` and `HOME`: the daemon's
    /// own variables (and secrets) are not inherited.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (relative to the config file); the config file's
    /// directory by default.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub scope: McpScope,
    /// Instances kept started and idle (shared scope; per-user pools start on demand).
    #[serde(default = "default_min_idle")]
    pub min_idle: usize,
    /// Most instances at once (per user for `per_user`); calls beyond wait.
    #[serde(default = "default_max_instances")]
    pub max_instances: usize,
    /// `per_user` scope: most instances at once across all users; a call that
    /// would need one more waits (within its call timeout) for one to stop,
    /// and never spawns beyond it.
    #[serde(default = "default_max_total_instances")]
    pub max_total_instances: usize,
    /// Spawn plus MCP initialize.
    #[serde(default = "default_startup_timeout", with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// One tool call, including the wait for a free instance.
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Idle instances beyond `min_idle` are stopped after this long.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Only these tools are offered to the model (all when unset).
    #[serde(default)]
    pub enabled_tools: Option<Vec<String>>,
    /// These tools are never offered.
    #[serde(default)]
    pub disabled_tools: Vec<String>,
    /// Tool parameters the daemon fills in, hidden from the model:
    /// parameter name → source.
    #[serde(default)]
    pub inject: BTreeMap<String, InjectSource>,
    /// Which calls wait for the user's approval (see [`Approval`]).
    #[serde(default)]
    pub approval: Approval,
    /// `[mcp_servers.NAME.tools.TOOL]`: per-tool widget and approval.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolSettings>,
}

/// Whom one server instance serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpScope {
    /// Instances serve every user.
    #[default]
    Shared,
    /// An instance serves one user, whose id is in its environment as
    /// `CHATKITD_USER_ID`.
    PerUser,
}

/// What the daemon fills an injected tool parameter with. An unknown source
/// is refused at load with the list of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum InjectSource {
    /// `"user.id"`: the authenticated user's id.
    #[serde(rename = "user.id")]
    UserId,
}

fn default_min_idle() -> usize {
    1
}
fn default_max_instances() -> usize {
    4
}
fn default_max_total_instances() -> usize {
    64
}
fn default_startup_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}
