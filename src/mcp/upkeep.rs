//! Background upkeep of the tool servers: tool lists refreshed on
//! `list_changed`, idle instances stopped, `min_idle` kept started, unused
//! per-user pools dropped.

use std::sync::Arc;
use std::time::Duration;

use super::manager::McpManager;
use super::pool::Pool;
use super::server::Server;

impl McpManager {
    /// Background upkeep: refresh tool lists on `list_changed`, stop idle
    /// instances, keep `min_idle` started.
    pub(super) fn spawn_maintenance(self: &Arc<Self>) {
        for server in self.servers().values() {
            self.watch_tool_list(server);
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

    /// Refreshes `server`'s tool list whenever it announces a change, until
    /// the server is retired.
    pub(super) fn watch_tool_list(self: &Arc<Self>, server: &Arc<Server>) {
        let manager = Arc::downgrade(self);
        let server = server.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = server.retired.cancelled() => return,
                    _ = server.tools_changed.notify.notified() => {}
                }
                if let Some(peer) = server.tools_changed.take_peer() {
                    match tokio::time::timeout(server.config.call_timeout, peer.list_all_tools())
                        .await
                    {
                        Ok(Ok(tools)) => {
                            tracing::info!(server = %server.name, tools = tools.len(), "tool list refreshed");
                            *server.tools.write() = Some(tools);
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

    async fn upkeep(&self) {
        let mut learned = false;
        for server in self.servers().values() {
            if server.retired.is_cancelled() {
                continue;
            }
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
                .iter()
                .map(|(u, p)| (u.clone(), p.clone()))
                .collect();
            for (user, pool) in pools {
                if pool.reap().await {
                    let mut map = server.per_user.lock();
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
}
