//! Tools on MCP servers: spawned as child processes, pooled, and called for
//! the agent with the caller's identity injected.
//!
//! - [`process`]: spawning a server that cannot outlive the daemon.
//! - [`instance`]: one server and its rmcp client session, with timeouts.
//! - [`pool`]: leasing instances per server (and per user), replacing broken
//!   ones with back-off, stopping idle ones.
//! - [`tools`]: the names, schemas and results the model sees.
//!
//! [`McpManager`] ties them together. Identity never comes from the model: a
//! parameter named in a server's `inject` is hidden from the model's schema
//! and overwritten with the authenticated user on every call.

pub mod instance;
pub mod pool;
pub mod process;
pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::Tool;
use serde_json::{Map, Value};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::config::{InjectSource, McpScope, McpServerConfig};
use instance::{CallFailure, Events, ToolsChanged};
use pool::{Pool, PoolLimits};
use process::Launch;
pub use tools::ModelTool;

/// Failures of the tool layer. During a run they become tool errors the
/// model reads; the conversation goes on.
#[derive(Debug, Error)]
pub enum McpError {
    #[error("the {server} tool server could not be started: {message}")]
    Spawn { server: String, message: String },
    #[error("the {server} tool server failed: {message}")]
    Call { server: String, message: String },
    #[error("every instance of the {server} tool server stayed busy for the whole call timeout")]
    Busy { server: String },
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// What a tool call produced, as the model will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The result text (or the error message), already truncated.
    pub output: String,
    pub is_error: bool,
    /// Which server and tool ran it (empty for an unknown tool).
    pub server: String,
    pub tool: String,
    pub elapsed: Duration,
}

/// One configured server.
struct Server {
    name: String,
    launch: Arc<Launch>,
    config: McpServerConfig,
    /// The pool of a shared server.
    shared: Option<Arc<Pool>>,
    /// Pools of a per-user server, by user id.
    per_user: Mutex<HashMap<String, Arc<Pool>>>,
    /// The tool list, once fetched (per server definition, not per instance).
    tools: RwLock<Option<Vec<Tool>>>,
    tools_changed: Arc<ToolsChanged>,
}

impl Server {
    fn limits(&self, per_user: bool) -> PoolLimits {
        PoolLimits {
            // Per-user pools start on demand; keeping idle ones per user
            // would multiply processes by users.
            min_idle: if per_user { 0 } else { self.config.min_idle },
            max_instances: self.config.max_instances,
            startup_timeout: self.config.startup_timeout,
            idle_timeout: self.config.idle_timeout,
        }
    }

    fn events(&self) -> Events {
        Events {
            server: self.name.clone(),
            tools_changed: self.tools_changed.clone(),
        }
    }

    fn pool_for(&self, user: &str) -> Arc<Pool> {
        if let Some(pool) = &self.shared {
            return pool.clone();
        }
        let mut pools = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(user.to_owned())
            .or_insert_with(|| {
                Pool::new(
                    self.launch.clone(),
                    self.limits(true),
                    Some(user.to_owned()),
                    self.events(),
                )
            })
            .clone()
    }

    fn offered(&self, tool: &Tool) -> bool {
        let name = tool.name.as_ref();
        let enabled = self
            .config
            .enabled_tools
            .as_ref()
            .is_none_or(|enabled| enabled.iter().any(|e| e == name));
        enabled && !self.config.disabled_tools.iter().any(|d| d == name)
    }

    /// Fetches the tool list through an instance of `user`'s pool.
    async fn fetch_tools(&self, user: &str) -> Result<(), McpError> {
        let deadline = tokio::time::Instant::now() + self.config.startup_timeout;
        let lease = self.pool_for(user).lease(deadline).await?;
        let tools = lease.list_tools(self.config.call_timeout).await?;
        tracing::info!(server = %self.name, tools = tools.len(), "tool list fetched");
        *self.tools.write().unwrap_or_else(|p| p.into_inner()) = Some(tools);
        Ok(())
    }

    fn has_tools(&self) -> bool {
        self.tools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// All configured tool servers.
pub struct McpManager {
    servers: BTreeMap<String, Arc<Server>>,
    /// The tools as the model sees them, rebuilt when a tool list changes.
    model_tools: RwLock<Arc<Vec<ModelTool>>>,
    max_output_bytes: usize,
    stop: CancellationToken,
}

impl std::fmt::Debug for McpManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpManager")
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl McpManager {
    /// Sets up the servers, starts the shared ones (`min_idle`) and fetches
    /// their tool lists. A server that fails to start is logged and tried
    /// again in the background; the daemon starts without its tools.
    pub async fn start(
        configs: &BTreeMap<String, McpServerConfig>,
        base_dir: &Path,
        max_output_bytes: usize,
    ) -> Arc<McpManager> {
        let manager = McpManager::configure(configs, base_dir, max_output_bytes);
        let startups = manager.servers.values().filter(|s| s.shared.is_some()).map(|server| {
            let server = server.clone();
            async move {
                if let Err(e) = server.fetch_tools("").await {
                    tracing::error!(server = %server.name, error = %e, "tool server unavailable at start; retrying in the background");
                }
                if let Some(pool) = &server.shared
                    && let Err(e) = pool.warm().await
                {
                    tracing::warn!(server = %server.name, error = %e, "could not start the idle instances");
                }
            }
        });
        futures::future::join_all(startups).await;
        manager.rebuild_names();
        manager.spawn_maintenance();
        manager
    }

    /// Sets up the servers without starting any: each starts on first use
    /// ([`McpManager::tools_for`], [`McpManager::probe`], a call) and no
    /// background upkeep runs. For short-lived uses (the terminal commands),
    /// which must not start idle instances nor retry behind their back.
    pub fn configure(
        configs: &BTreeMap<String, McpServerConfig>,
        base_dir: &Path,
        max_output_bytes: usize,
    ) -> Arc<McpManager> {
        let mut servers = BTreeMap::new();
        for (name, config) in configs {
            let program = resolve_program(&config.command, base_dir);
            let cwd = config
                .cwd
                .as_ref()
                .map_or_else(|| base_dir.to_path_buf(), |cwd| base_dir.join(cwd));
            let launch = Arc::new(Launch {
                server: name.clone(),
                program,
                args: config.args.clone(),
                env: config.env.clone(),
                cwd,
            });
            let mut server = Server {
                name: name.clone(),
                launch,
                config: config.clone(),
                shared: None,
                per_user: Mutex::new(HashMap::new()),
                tools: RwLock::new(None),
                tools_changed: Arc::new(ToolsChanged::default()),
            };
            if config.scope == McpScope::Shared {
                server.shared = Some(Pool::new(
                    server.launch.clone(),
                    server.limits(false),
                    None,
                    server.events(),
                ));
            }
            servers.insert(name.clone(), Arc::new(server));
        }
        Arc::new(McpManager {
            servers,
            model_tools: RwLock::new(Arc::new(Vec::new())),
            max_output_bytes,
            stop: CancellationToken::new(),
        })
    }

    /// The tools the model is offered for `user`. Per-user servers whose
    /// tool list is not known yet are started for this user to learn it.
    pub async fn tools_for(&self, user: &str) -> Arc<Vec<ModelTool>> {
        let mut learned = false;
        for server in self.servers.values() {
            if !server.has_tools() {
                match server.fetch_tools(user).await {
                    Ok(()) => learned = true,
                    Err(e) => {
                        tracing::warn!(server = %server.name, error = %e, "tools unavailable for this run")
                    }
                }
            }
        }
        if learned {
            self.rebuild_names();
        }
        self.model_tools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tools currently offered, without starting anything.
    pub fn current_tools(&self) -> Arc<Vec<ModelTool>> {
        self.model_tools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any server is configured.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The configured servers' names, in order.
    pub fn server_names(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    /// Fetches `server`'s tool list afresh through an instance of `user`'s
    /// pool (starting one if needed) and returns the tools the model is
    /// offered from it: for `chatkitd check`, which must see a failure
    /// rather than an empty list.
    pub async fn probe(&self, server: &str, user: &str) -> Result<Vec<ModelTool>, McpError> {
        let Some(configured) = self.servers.get(server) else {
            return Err(McpError::Call {
                server: server.to_owned(),
                message: "no such server is configured".to_owned(),
            });
        };
        configured.fetch_tools(user).await?;
        self.rebuild_names();
        Ok(self
            .current_tools()
            .iter()
            .filter(|t| t.server == server)
            .cloned()
            .collect())
    }

    /// Runs one call of `server`'s tool `tool` (its own name, not the
    /// model's) for `user`, exactly as a model's call would run: injected
    /// parameters are overwritten, only offered tools can be called. Never
    /// fails: problems become error results.
    pub async fn call_tool(
        &self,
        user: &str,
        server: &str,
        tool: &str,
        arguments: &str,
    ) -> ToolOutcome {
        let started = Instant::now();
        let tools = self.tools_for(user).await;
        match tools.iter().find(|t| t.server == server && t.tool == tool) {
            Some(found) => self.call(user, &found.name, arguments).await,
            None => ToolOutcome {
                output: if self.servers.contains_key(server) {
                    format!("Error: the {server} tool server offers no tool named {tool:?}.")
                } else {
                    format!("Error: no tool server named {server:?} is configured.")
                },
                is_error: true,
                server: server.to_owned(),
                tool: tool.to_owned(),
                elapsed: started.elapsed(),
            },
        }
    }

    fn rebuild_names(&self) {
        let mut known = BTreeMap::new();
        for (name, server) in &self.servers {
            let tools = server.tools.read().unwrap_or_else(|p| p.into_inner());
            let Some(tools) = tools.as_ref() else {
                continue;
            };
            let injected: Vec<String> = server.config.inject.keys().cloned().collect();
            let offered = tools
                .iter()
                .filter(|t| server.offered(t))
                .map(|t| (t.clone(), injected.clone()))
                .collect();
            known.insert(name.clone(), offered);
        }
        let named = tools::name_tools(&known);
        *self.model_tools.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(named);
    }

    /// Runs one tool call for `user`. Never fails: every problem becomes an
    /// error result the model reads.
    pub async fn call(&self, user: &str, name: &str, arguments: &str) -> ToolOutcome {
        let outcome = self.call_inner(user, name, arguments).await;
        crate::metrics::get().tool_call(
            &outcome.server,
            &outcome.tool,
            outcome.is_error,
            outcome.elapsed,
        );
        outcome
    }

    async fn call_inner(&self, user: &str, name: &str, arguments: &str) -> ToolOutcome {
        let started = Instant::now();
        let tools = self.current_tools();
        let Some(tool) = tools.iter().find(|t| t.name == name) else {
            return ToolOutcome {
                output: format!("Error: there is no tool named {name:?}."),
                is_error: true,
                server: String::new(),
                tool: name.to_owned(),
                elapsed: started.elapsed(),
            };
        };
        let outcome = |output: String, is_error: bool| ToolOutcome {
            output,
            is_error,
            server: tool.server.clone(),
            tool: tool.tool.clone(),
            elapsed: started.elapsed(),
        };
        let Some(server) = self.servers.get(&tool.server) else {
            return outcome(
                format!("Error: the {} tool server is not configured.", tool.server),
                true,
            );
        };
        let mut arguments = match parse_arguments(arguments) {
            Ok(arguments) => arguments,
            Err(message) => return outcome(format!("Error: {message}"), true),
        };
        for (parameter, source) in &server.config.inject {
            let value = match source {
                InjectSource::UserId => Value::String(user.to_owned()),
            };
            arguments.insert(parameter.clone(), value);
        }
        let deadline = tokio::time::Instant::now() + server.config.call_timeout;
        let lease = match server.pool_for(user).lease(deadline).await {
            Ok(lease) => lease,
            Err(e) => return outcome(format!("Error: {e}."), true),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match lease.call(&tool.tool, arguments, remaining).await {
            Ok(result) => {
                let is_error = result.is_error.unwrap_or(false);
                let text = tools::result_text(&result, self.max_output_bytes);
                outcome(text, is_error)
            }
            Err(CallFailure::Timeout(after)) => outcome(
                format!(
                    "Error: the {} tool server did not answer within {}s; the call was cancelled.",
                    tool.server,
                    server
                        .config
                        .call_timeout
                        .as_secs_f64()
                        .max(after.as_secs_f64())
                        .round()
                ),
                true,
            ),
            Err(CallFailure::Closed) => outcome(
                format!(
                    "Error: the {} tool server stopped during the call (it will be restarted); the tool may or may not have run.",
                    tool.server
                ),
                true,
            ),
            Err(CallFailure::Protocol(message)) => outcome(format!("Error: {message}"), true),
        }
    }

    /// Background upkeep: refresh tool lists on `list_changed`, stop idle
    /// instances, keep `min_idle` started.
    fn spawn_maintenance(self: &Arc<Self>) {
        for server in self.servers.values() {
            let manager = Arc::downgrade(self);
            let server = server.clone();
            let stop = self.stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = server.tools_changed.notify.notified() => {}
                    }
                    if let Some(peer) = server.tools_changed.take_peer() {
                        match tokio::time::timeout(
                            server.config.call_timeout,
                            peer.list_all_tools(),
                        )
                        .await
                        {
                            Ok(Ok(tools)) => {
                                tracing::info!(server = %server.name, tools = tools.len(), "tool list refreshed");
                                *server.tools.write().unwrap_or_else(|p| p.into_inner()) =
                                    Some(tools);
                                let Some(manager) = manager.upgrade() else {
                                    return;
                                };
                                manager.rebuild_names();
                                continue;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(server = %server.name, error = %e, "could not read the changed tool list")
                            }
                            Err(_) => {
                                tracing::warn!(server = %server.name, "the changed tool list did not come in time")
                            }
                        }
                    }
                    let user = server
                        .per_user
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .keys()
                        .next()
                        .cloned()
                        .unwrap_or_default();
                    if let Err(e) = server.fetch_tools(&user).await {
                        tracing::warn!(server = %server.name, error = %e, "could not refresh the tool list");
                    }
                    let Some(manager) = manager.upgrade() else {
                        return;
                    };
                    manager.rebuild_names();
                }
            });
        }
        let manager = Arc::downgrade(self);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                manager.upkeep().await;
            }
        });
    }

    async fn upkeep(&self) {
        let mut learned = false;
        for server in self.servers.values() {
            if let Some(pool) = &server.shared {
                pool.reap().await;
                if !server.has_tools() {
                    learned |= server.fetch_tools("").await.is_ok();
                }
                if let Err(e) = pool.warm().await {
                    tracing::debug!(server = %server.name, error = %e, "idle instances not restored yet");
                }
            }
            let pools: Vec<(String, Arc<Pool>)> = server
                .per_user
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(u, p)| (u.clone(), p.clone()))
                .collect();
            for (user, pool) in pools {
                if pool.reap().await {
                    let mut map = server.per_user.lock().unwrap_or_else(|p| p.into_inner());
                    // Only if no call took it up again meanwhile.
                    if map.get(&user).is_some_and(|p| Arc::strong_count(p) == 2) {
                        map.remove(&user);
                    }
                }
            }
        }
        if learned {
            self.rebuild_names();
        }
    }

    /// Stops every server: idle instances are closed gracefully (stdin
    /// closed, a short wait, then their process group is killed).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let mut pools = Vec::new();
        for server in self.servers.values() {
            pools.extend(server.shared.clone());
            pools.extend(
                server
                    .per_user
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain()
                    .map(|(_, p)| p),
            );
        }
        futures::future::join_all(pools.iter().map(|p| p.shutdown())).await;
    }

    /// `(server, idle, busy, replaced)` for every pool, for metrics and checks.
    pub fn pool_counts(&self) -> Vec<(String, usize, usize, u64)> {
        let mut counts = Vec::new();
        for server in self.servers.values() {
            let mut pools: Vec<Arc<Pool>> = server.shared.iter().cloned().collect();
            pools.extend(
                server
                    .per_user
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned(),
            );
            let (mut idle, mut busy, mut replaced) = (0, 0, 0);
            for pool in pools {
                let (i, b, r) = pool.counts();
                idle += i;
                busy += b;
                replaced += r;
            }
            counts.push((server.name.clone(), idle, busy, replaced));
        }
        counts
    }
}

/// Where a server's program is: a path with a `/` is relative to the config
/// file; a bare name is looked up beside the daemon's own executable first
/// (so servers built with it, like `tasks-mcp`, are found without being
/// installed), then on `PATH`.
fn resolve_program(command: &str, base_dir: &Path) -> std::path::PathBuf {
    if command.contains('/') {
        return base_dir.join(command);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(command)))
        .filter(|candidate| candidate.is_file());
    beside.unwrap_or_else(|| command.into())
}

/// The model's arguments as a JSON object (`""` counts as `{}`).
fn parse_arguments(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "the arguments must be a JSON object, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!(
            "the arguments are not valid JSON ({e}); send a JSON object"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_arguments;

    #[test]
    fn arguments_must_be_an_object() {
        assert!(parse_arguments("").expect("empty is {}").is_empty());
        assert_eq!(parse_arguments(r#"{"a":1}"#).expect("object").len(), 1);
        assert!(
            parse_arguments("[1]")
                .expect_err("array")
                .contains("an array")
        );
        assert!(
            parse_arguments("{oops")
                .expect_err("invalid")
                .contains("not valid JSON")
        );
    }
}
