//! [`McpManager`]: every configured tool server, the tools offered to the
//! model from them, and their shutdown. The call path is in `call.rs`, the
//! background upkeep in `upkeep.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use super::media::OutputLimits;
use super::server::Server;
use super::tools::{self, ModelTool};
use super::{McpError, PoolCounts};
use crate::config::McpServerConfig;

/// All configured tool servers.
pub struct McpManager {
    /// The configured servers, by name; replaced as a whole by
    /// [`McpManager::reconfigure`] (read it through [`McpManager::servers`]).
    pub(super) servers: RwLock<Arc<BTreeMap<String, Arc<Server>>>>,
    /// Where relative paths of the configuration are relative to.
    pub(super) base_dir: std::path::PathBuf,
    /// The tools as the model sees them, rebuilt when a tool list changes.
    pub(super) model_tools: RwLock<Arc<Vec<ModelTool>>>,
    /// What the model may read of a result.
    pub(super) output_limits: RwLock<OutputLimits>,
    pub(super) stop: CancellationToken,
    /// Whether background upkeep runs (set by [`McpManager::start`]): then
    /// a shared server missing its tools is left to it, and runs never wait
    /// for that server to start.
    pub(super) upkeep: AtomicBool,
}

impl std::fmt::Debug for McpManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpManager")
            .field("servers", &self.server_names())
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
        output_limits: impl Into<OutputLimits>,
    ) -> Arc<McpManager> {
        let manager = McpManager::configure(configs, base_dir, output_limits);
        let servers: Vec<Arc<Server>> = manager.servers().values().cloned().collect();
        start_shared(&servers).await;
        manager.rebuild_names();
        manager.upkeep.store(true, Ordering::Relaxed);
        manager.spawn_maintenance();
        manager
    }

    /// The configured servers now.
    pub(super) fn servers(&self) -> Arc<BTreeMap<String, Arc<Server>>> {
        self.servers.read().clone()
    }

    /// Sets up the servers without starting any: each starts on first use
    /// ([`McpManager::tools_for`], [`McpManager::probe`], a call) and no
    /// background upkeep runs. For short-lived uses (the terminal commands),
    /// which must not start idle instances nor retry behind their back.
    pub fn configure(
        configs: &BTreeMap<String, McpServerConfig>,
        base_dir: &Path,
        output_limits: impl Into<OutputLimits>,
    ) -> Arc<McpManager> {
        let servers = configs
            .iter()
            .map(|(name, config)| (name.clone(), Server::new(name, config, base_dir)))
            .collect();
        Arc::new(McpManager {
            servers: RwLock::new(Arc::new(servers)),
            base_dir: base_dir.to_path_buf(),
            model_tools: RwLock::new(Arc::new(Vec::new())),
            output_limits: RwLock::new(output_limits.into()),
            stop: CancellationToken::new(),
            upkeep: AtomicBool::new(false),
        })
    }

    /// The tools the model is offered for `user`. It never waits on a
    /// server that failed: a shared server whose tool list is missing is
    /// left to background upkeep (when it runs), and a server in its
    /// back-off fails at once; the run goes on without its tools, and the log
    /// says so. Per-user servers whose tool list is not known yet are started
    /// for this user to learn it (all missing servers at once).
    pub async fn tools_for(&self, user: &str) -> Arc<Vec<ModelTool>> {
        let upkeep = self.upkeep.load(Ordering::Relaxed);
        let servers = self.servers();
        let fetches = servers
            .values()
            .filter(|server| !server.has_tools())
            .map(|server| async move {
                if upkeep && server.shared.is_some() {
                    tracing::warn!(server = %server.name, "tools unavailable for this run: the server is not started; retrying in the background");
                    return false;
                }
                match server.fetch_tools(user).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(server = %server.name, error = %e, "tools unavailable for this run");
                        false
                    }
                }
            });
        let learned = futures::future::join_all(fetches).await;
        if learned.into_iter().any(|l| l) {
            self.rebuild_names();
        }
        self.model_tools.read().clone()
    }

    /// The tools currently offered, without starting anything.
    pub fn current_tools(&self) -> Arc<Vec<ModelTool>> {
        self.model_tools.read().clone()
    }

    /// Whether any server is configured.
    pub fn is_empty(&self) -> bool {
        self.servers().is_empty()
    }

    /// The configured servers' names, in order.
    pub fn server_names(&self) -> Vec<String> {
        self.servers().keys().cloned().collect()
    }

    /// Fetches `server`'s tool list afresh through an instance of `user`'s
    /// pool (starting one if needed) and returns the tools the model is
    /// offered from it: for `chatkitd check`, which must see a failure
    /// rather than an empty list.
    pub async fn probe(&self, server: &str, user: &str) -> Result<Vec<ModelTool>, McpError> {
        let Some(configured) = self.servers().get(server).cloned() else {
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

    pub(super) fn rebuild_names(&self) {
        let mut known = BTreeMap::new();
        for (name, server) in self.servers().iter() {
            let tools = server.tools.read();
            let Some(tools) = tools.as_ref() else {
                continue;
            };
            let injected: Vec<String> = server.config.inject.keys().cloned().collect();
            let offered = tools
                .iter()
                .filter(|t| server.offered(t))
                .map(|t| tools::OfferedTool {
                    tool: t.clone(),
                    injected: injected.clone(),
                    approval: server
                        .config
                        .tools
                        .get(t.name.as_ref())
                        .and_then(|settings| settings.approval)
                        .unwrap_or(server.config.approval),
                })
                .collect();
            known.insert(name.clone(), offered);
        }
        let named = tools::name_tools(&known);
        *self.model_tools.write() = Arc::new(named);
    }

    /// Stops every server: idle instances are closed gracefully (stdin
    /// closed, a short wait, then their process group is killed).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let servers = self.servers();
        futures::future::join_all(servers.values().map(|server| server.retire())).await;
    }

    /// The instances of every server's pools, for metrics and checks.
    pub fn pool_counts(&self) -> Vec<PoolCounts> {
        let mut counts = Vec::new();
        for server in self.servers().values() {
            let (mut idle, mut busy, mut replaced) = (0, 0, 0);
            for pool in server.pools() {
                let (i, b, r) = pool.counts();
                idle += i;
                busy += b;
                replaced += r;
            }
            counts.push(PoolCounts {
                server: server.name.clone(),
                idle,
                busy,
                replaced,
            });
        }
        counts
    }
}

/// Fetches the tool lists of the shared servers among `servers` and starts
/// their idle instances, all at once. A server that fails is logged and
/// left to background upkeep.
pub(super) async fn start_shared(servers: &[Arc<Server>]) {
    let startups = servers.iter().filter(|s| s.shared.is_some()).map(|server| async move {
        if let Err(e) = server.fetch_tools("").await {
            tracing::error!(server = %server.name, error = %e, "tool server unavailable at start; retrying in the background");
        }
        if let Some(pool) = &server.shared
            && let Err(e) = pool.warm().await
        {
            tracing::warn!(server = %server.name, error = %e, "could not start the idle instances");
        }
    });
    futures::future::join_all(startups).await;
}
