//! `[mcp_servers.NAME]`: one tool server's definition, its pools and
//! timeouts, and its interactive settings (see [`super::interactive`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::interactive::{Approval, ToolSettings};

/// `[mcp_servers.NAME]`: one MCP server definition: a program spawned with
/// its stdio as the transport (`command`), or a server reached over MCP's
/// streamable HTTP transport (`url`). `command`, `args`, `env`, `url` and
/// `headers` mean what they mean in other MCP clients' configuration files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program; a path with a `/` is relative to the config file.
    #[serde(default)]
    pub command: Option<String>,
    /// A streamable HTTP server's endpoint (`https://…/mcp`), instead of a
    /// `command`.
    #[serde(default)]
    pub url: Option<String>,
    /// Headers sent with every request to a `url` server (values are
    /// interpolated like every string: `"Bearer ${TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
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
    /// The child's address space (`RLIMIT_AS`), in bytes or with a unit
    /// (`"512MiB"`, `"2GB"`): past it, allocations fail and the server
    /// usually dies, which fails its call and replaces the instance.
    #[serde(default, deserialize_with = "byte_size")]
    pub max_memory: Option<u64>,
    /// CPU seconds one instance may use in its life (`RLIMIT_CPU`; SIGXCPU,
    /// then SIGKILL a second later).
    #[serde(default)]
    pub max_cpu_seconds: Option<u64>,
    /// Files the child may have open at once (`RLIMIT_NOFILE`).
    #[serde(default)]
    pub max_open_files: Option<u64>,
}

/// A size in bytes: a number, or a string with a unit (`B`, `KB`, `MB`,
/// `GB` in powers of 1000; `KiB`, `MiB`, `GiB` in powers of 1024).
fn byte_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok(Some(bytes)),
        Size::Text(text) => parse_size(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a size like 536870912, \"512MiB\" or \"2GB\""
            ))
        }),
    }
}

/// `"512MiB"` as bytes; `None` when it is not a size.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn process_limits_take_sizes_with_units_and_refuse_what_cannot_start() {
        assert_eq!(parse_size("536870912"), Some(512 << 20));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        for bad in ["", "MiB", "1.5GB", "12 parsecs", "99999999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let load = |extra: &str| {
            Config::from_toml(
                &format!("[mcp_servers.s]\ncommand = \"x\"\n{extra}\n"),
                "agent.toml",
                PathBuf::from("."),
                &|_| None,
            )
        };
        let config = load("max_memory = \"1GiB\"\nmax_cpu_seconds = 60\nmax_open_files = 256")
            .expect("limits");
        let server = &config.mcp_servers["s"];
        assert_eq!(
            (
                server.max_memory,
                server.max_cpu_seconds,
                server.max_open_files
            ),
            (Some(1 << 30), Some(60), Some(256))
        );
        let err = load("max_memory = \"1MiB\"").expect_err("too small");
        assert_eq!(
            err.to_string(),
            "agent.toml:3: `mcp_servers.s.max_memory`: must be at least 16 MiB"
        );
        let err = load("max_memory = \"lots\"").expect_err("not a size");
        assert!(err.to_string().contains("is not a size like"), "{err}");
        let err = load("max_open_files = 3").expect_err("too few");
        assert!(err.to_string().contains("must be at least 16"), "{err}");
    }
}
