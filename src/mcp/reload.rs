//! Applying a new `[mcp_servers]` to running pools (a configuration
//! reload): servers whose definition is unchanged keep their instances, warm
//! and busy alike; new and changed ones are started before they replace
//! anything, so a changed server has no gap; removed and replaced ones are
//! retired, their idle instances stopped at once and their busy ones when
//! their call ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::manager::{McpManager, start_shared};
use super::media::OutputLimits;
use super::server::Server;
use crate::config::McpServerConfig;

/// What a reload did to the tool servers, by server name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Reconfigured {
    /// Whether any server was added, changed or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl McpManager {
    /// Makes `configs` the configured servers (relative paths still relative
    /// to the directory the manager was built with), and `limits` what the
    /// model reads of a result from now on. Returns what changed.
    pub async fn reconfigure(
        self: &Arc<Self>,
        configs: &BTreeMap<String, McpServerConfig>,
        limits: impl Into<OutputLimits>,
    ) -> Reconfigured {
        *self.output_limits.write() = limits.into();
        let current = self.servers();
        let mut outcome = Reconfigured::default();
        let mut next = BTreeMap::new();
        let mut fresh = Vec::new();
        for (name, config) in configs {
            match current.get(name) {
                Some(server) if server.config == *config => {
                    outcome.unchanged.push(name.clone());
                    next.insert(name.clone(), server.clone());
                }
                old => {
                    let server = Server::new(name, config, &self.base_dir);
                    if old.is_some() {
                        outcome.changed.push(name.clone());
                    } else {
                        outcome.added.push(name.clone());
                    }
                    fresh.push(server.clone());
                    next.insert(name.clone(), server);
                }
            }
        }
        let retiring: Vec<Arc<Server>> = current
            .iter()
            .filter(|(name, server)| {
                next.get(*name)
                    .is_none_or(|kept| !Arc::ptr_eq(kept, server))
            })
            .map(|(_, server)| server.clone())
            .collect();
        outcome.removed = current
            .keys()
            .filter(|name| !configs.contains_key(*name))
            .cloned()
            .collect();
        if self.upkeep.load(std::sync::atomic::Ordering::Relaxed) {
            start_shared(&fresh).await;
            for server in &fresh {
                self.watch_tool_list(server);
            }
        }
        *self.servers.write() = Arc::new(next);
        self.rebuild_names();
        futures::future::join_all(retiring.iter().map(|server| server.retire())).await;
        outcome
    }
}

impl McpManager {
    /// What the model may read of a result now.
    pub(super) fn output_limits(&self) -> OutputLimits {
        *self.output_limits.read()
    }
}
