//! One configured MCP server: how it is launched, its shared pool or its
//! per-user pools, and its tool list (fetched once per server definition, not
//! per instance).

use std::collections::HashMap;
use std::sync::Arc;

use std::path::Path;

use parking_lot::{Mutex, RwLock};
use rmcp::model::Tool;
use tokio_util::sync::CancellationToken;

use super::McpError;
use super::endpoint::Endpoint;
use super::instance::{Events, ToolsChanged};
use super::pool::{Pool, PoolLimits, TotalCap};
use crate::config::{McpScope, McpServerConfig};

/// One configured server.
pub(super) struct Server {
    pub(super) name: String,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) config: McpServerConfig,
    /// The pool of a shared server.
    pub(super) shared: Option<Arc<Pool>>,
    /// Pools of a per-user server, by user id.
    pub(super) per_user: Mutex<HashMap<String, Arc<Pool>>>,
    /// Live per-user instances across all users (`max_total_instances`).
    pub(super) total: TotalCap,
    /// The tool list, once fetched (per server definition, not per instance).
    pub(super) tools: RwLock<Option<Vec<Tool>>>,
    pub(super) tools_changed: Arc<ToolsChanged>,
    /// Cancelled when the server is retired (removed or replaced by a
    /// reload, or the daemon stops): its upkeep task ends.
    pub(super) retired: CancellationToken,
}

impl Server {
    /// Server `name` as `config` defines it; nothing starts yet.
    pub(super) fn new(name: &str, config: &McpServerConfig, base_dir: &Path) -> Arc<Server> {
        let mut server = Server {
            name: name.to_owned(),
            endpoint: Arc::new(Endpoint::from_config(name, config, base_dir)),
            config: config.clone(),
            shared: None,
            per_user: Mutex::new(HashMap::new()),
            total: TotalCap::new(config.max_total_instances),
            tools: RwLock::new(None),
            tools_changed: Arc::new(ToolsChanged::default()),
            retired: CancellationToken::new(),
        };
        if config.scope == McpScope::Shared {
            server.shared = Some(Pool::new(
                server.endpoint.clone(),
                server.limits(false),
                None,
                server.events(),
            ));
        }
        Arc::new(server)
    }

    /// Every pool of the server: its shared one, or its users' ones.
    pub(super) fn pools(&self) -> Vec<Arc<Pool>> {
        let mut pools: Vec<Arc<Pool>> = self.shared.iter().cloned().collect();
        pools.extend(self.per_user.lock().values().cloned());
        pools
    }

    /// Takes the server out of service: its upkeep ends, idle instances
    /// stop now, and instances serving a call stop when their call ends.
    pub(super) async fn retire(&self) {
        self.retired.cancel();
        let pools: Vec<Arc<Pool>> = {
            let mut per_user = self.per_user.lock();
            let mut pools: Vec<Arc<Pool>> = per_user.drain().map(|(_, p)| p).collect();
            pools.extend(self.shared.clone());
            pools
        };
        futures::future::join_all(pools.iter().map(|p| p.shutdown())).await;
    }

    pub(super) fn limits(&self, per_user: bool) -> PoolLimits {
        PoolLimits {
            // Per-user pools start on demand; keeping idle ones per user
            // would multiply processes by users.
            min_idle: if per_user { 0 } else { self.config.min_idle },
            max_instances: self.config.max_instances,
            startup_timeout: self.config.startup_timeout,
            idle_timeout: self.config.idle_timeout,
            total: per_user.then(|| self.total.clone()),
        }
    }

    pub(super) fn events(&self) -> Events {
        Events {
            server: self.name.clone(),
            tools_changed: self.tools_changed.clone(),
            progress: Default::default(),
            asking: Default::default(),
        }
    }

    pub(super) fn pool_for(&self, user: &str) -> Arc<Pool> {
        if let Some(pool) = &self.shared {
            return pool.clone();
        }
        let mut pools = self.per_user.lock();
        pools
            .entry(user.to_owned())
            .or_insert_with(|| {
                Pool::new(
                    self.endpoint.clone(),
                    self.limits(true),
                    Some(user.to_owned()),
                    self.events(),
                )
            })
            .clone()
    }

    /// When every place under `max_total_instances` is taken and `user` has
    /// no idle instance, stops the idle instance of another user that was
    /// unused the longest, so that a call of `user` need not wait for idle
    /// instances to time out. Busy instances are never taken.
    pub(super) async fn make_room(&self, user: &str) {
        if self.shared.is_some() || self.total.slots.available_permits() > 0 {
            return;
        }
        let victim = {
            let pools = self.per_user.lock();
            if pools.get(user).is_some_and(|p| p.oldest_idle().is_some()) {
                return;
            }
            pools
                .iter()
                .filter(|(other, _)| other.as_str() != user)
                .filter_map(|(_, pool)| pool.oldest_idle().map(|at| (at, pool.clone())))
                .min_by_key(|(at, _)| *at)
                .map(|(_, pool)| pool)
        };
        if let Some(instance) = victim.and_then(|pool| pool.take_oldest_idle()) {
            tracing::info!(server = %self.name, max_total_instances = self.total.max, "stopping another user's idle instance to make room");
            instance.stop().await;
        }
    }

    pub(super) fn offered(&self, tool: &Tool) -> bool {
        let name = tool.name.as_ref();
        let enabled = self
            .config
            .enabled_tools
            .as_ref()
            .is_none_or(|enabled| enabled.iter().any(|e| e == name));
        enabled && !self.config.disabled_tools.iter().any(|d| d == name)
    }

    /// Fetches the tool list through an instance of `user`'s pool.
    pub(super) async fn fetch_tools(&self, user: &str) -> Result<(), McpError> {
        let deadline = tokio::time::Instant::now() + self.config.startup_timeout;
        let lease = self.pool_for(user).lease(deadline).await?;
        let tools = lease.list_tools(self.config.call_timeout).await?;
        tracing::info!(server = %self.name, tools = tools.len(), "tool list fetched");
        *self.tools.write() = Some(tools);
        Ok(())
    }

    pub(super) fn has_tools(&self) -> bool {
        self.tools.read().is_some()
    }
}
