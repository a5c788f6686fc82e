//! Reloading `agent.toml` in a running daemon (SIGHUP, `chatkitd reload`).
//!
//! The new file is read and validated whole first, widget templates and
//! the model client included: a file that fails anywhere changes nothing,
//! and the log says why. Then:
//! - tool servers are diffed ([`McpManager::reconfigure`]): unchanged ones
//!   keep their warm instances, changed ones are started anew and the old
//!   ones drained, removed ones stop once their calls end;
//! - the agent is rebuilt (system prompt, `[agent]`, `[llm]`, widgets,
//!   actions, client tools): new runs use it, runs in flight finish with
//!   the one they started with.
//!
//! `[server]`, `[store]`, `[auth]`, `[limits]` and `[attachments]` are read
//! at start only: a reload that changes them says that they need a restart
//! and keeps the running values.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::agent::{Agent, AgentError, AgentSpec, Services};
use crate::chatkit::ChatKit;
use crate::config::{Config, ConfigError};
use crate::mcp::{OutputLimits, Reconfigured};

/// Why a reload changed nothing.
#[derive(Debug, Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub servers: Reconfigured,
    /// Sections that changed but are read at start only.
    pub need_restart: Vec<&'static str>,
}

/// Everything a reload replaces or reconfigures.
pub struct Reloader {
    path: PathBuf,
    /// The configuration in force; a reload holds it for its whole length,
    /// so two reloads never interleave.
    current: tokio::sync::Mutex<Config>,
    chatkit: Arc<ChatKit>,
    /// The services every agent uses; a reload reconfigures the tool
    /// servers in place.
    services: Services,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader of the daemon built from `current`, read from `path`.
    pub fn new(
        path: &Path,
        current: Config,
        chatkit: Arc<ChatKit>,
        services: Services,
    ) -> Reloader {
        Reloader {
            path: path.to_path_buf(),
            current: tokio::sync::Mutex::new(current),
            chatkit,
            services,
        }
    }

    /// Reads the file again and applies it; on error nothing changed. Logs
    /// what it did either way.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let mut current = self.current.lock().await;
        let prepared = match prepare(&self.path) {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "configuration not reloaded; nothing changed");
                return Err(e);
            }
        };
        let Prepared { config, agent } = prepared;
        let need_restart = restart_only_changes(&current, &config);
        for section in &need_restart {
            tracing::warn!(
                section,
                "[{section}] changed, but is read at start only: restart the daemon to apply it"
            );
        }
        let servers = self
            .services
            .mcp
            .reconfigure(
                &config.mcp_servers,
                OutputLimits {
                    text_bytes: config.agent.max_tool_output_bytes,
                    image_bytes: config.agent.max_tool_image_bytes,
                },
            )
            .await;
        let agent = Agent::from_spec(agent, &self.services);
        self.chatkit.replace_agent(Arc::new(agent));
        tracing::info!(
            path = %self.path.display(),
            added = ?servers.added,
            changed = ?servers.changed,
            removed = ?servers.removed,
            unchanged = ?servers.unchanged,
            "configuration reloaded; new runs use it"
        );
        // Keep what is in force: sections read at start only stay as
        // they were, so the next reload compares against the running ones.
        let kept = Config {
            server: current.server.clone(),
            store: current.store.clone(),
            auth: current.auth.clone(),
            limits: current.limits.clone(),
            attachments: current.attachments.clone(),
            ..config
        };
        *current = kept;
        Ok(Reloaded {
            servers,
            need_restart,
        })
    }
}

/// A new configuration, checked whole, with what it builds.
struct Prepared {
    config: Config,
    agent: AgentSpec,
}

/// Checks the file at `path` as a reload would, without applying it: for
/// `chatkitd reload`, before it signals the daemon.
pub fn check(path: &Path) -> Result<Config, ReloadError> {
    prepare(path).map(|prepared| prepared.config)
}

fn prepare(path: &Path) -> Result<Prepared, ReloadError> {
    let config = Config::load(path)?;
    let agent = AgentSpec::from_config(&config)?;
    Ok(Prepared { config, agent })
}

/// The sections read at start only that differ between `old` and `new`.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    [
        ("server", old.server != new.server),
        ("store", old.store != new.store),
        ("auth", old.auth != new.auth),
        ("limits", old.limits != new.limits),
        ("attachments", old.attachments != new.attachments),
    ]
    .into_iter()
    .filter_map(|(section, changed)| changed.then_some(section))
    .collect()
}
