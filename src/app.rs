//! Wiring: from a [`Config`] to a running server.
//!
//! [`App::build`] connects the store (migrating it if configured), builds the
//! LLM client and the agent; [`App::serve`] listens until a shutdown signal,
//! then lets runs in flight finish within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentError, AgentSpec, Services};
use crate::attachments::Attachments;
use crate::auth::{AuthSetupError, Authenticator};
use crate::chatkit::{ChatKit, SizeLimits};
use crate::config::{Config, ConfigError};
use crate::http::{self, AppState};
use crate::limits::{RateLimiter, RunSlots};
use crate::mcp::{McpManager, OutputLimits};
use crate::metrics::{Exporter, GaugeSet};
use crate::store::{AttachmentRecords, SqlStore, Store, StoreError, sql::SqlStoreOptions};

/// How long the exit waits for the store's connections to close.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Why the daemon could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("auth: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("attachments: {0}")]
    Attachments(String),
    #[error(
        "auth.mode = \"none\" lets anyone act as the development user, so it only listens on loopback; \
         {0} is not. Configure [auth] mode = \"jwt\", or set allow_insecure_none_auth = true if you really mean it"
    )]
    InsecureAuth(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built daemon, ready to serve.
pub struct App {
    config: Config,
    store: Arc<SqlStore>,
    chatkit: Arc<ChatKit>,
    /// The tool servers (none configured: an empty manager a reload may fill).
    mcp: Arc<McpManager>,
    auth: Authenticator,
    attachments: Arc<Attachments>,
}

impl App {
    /// Connects and builds everything the configuration describes.
    pub async fn build(config: Config) -> Result<App, StartError> {
        if let Some(old) = config.store.max_concurrent_runs {
            tracing::warn!(
                value = old,
                "[store] max_concurrent_runs is no longer used: run locks share one connection                  per replica; to cap the answers a replica streams at once, set                  [server] max_concurrent_runs"
            );
        }
        // The agent's own parts first (widget templates, the model client,
        // the system prompt): a broken one is a configuration error, found
        // before anything connects or spawns.
        let spec = AgentSpec::from_config(&config)?;
        let store = Arc::new(connect_store(&config).await?);
        if config.store.migrate_on_start {
            store.migrate().await?;
        }
        // Started even with no server configured: a reload may add some.
        let mcp = McpManager::start(
            &config.mcp_servers,
            &config.base_dir,
            OutputLimits {
                text_bytes: config.agent.max_tool_output_bytes,
                image_bytes: config.agent.max_tool_image_bytes,
            },
        )
        .await;
        let attachments = Arc::new(Attachments::new(
            &config.attachments,
            &config.base_dir,
            &config.server.path,
            store.clone() as Arc<dyn AttachmentRecords>,
        ));
        attachments
            .prepare()
            .await
            .map_err(|e| StartError::Attachments(e.to_string()))?;
        let services = Services {
            store: store.clone() as Arc<dyn Store>,
            mcp: mcp.clone(),
            attachments: attachments.clone(),
        };
        let agent = Arc::new(Agent::from_spec(spec, &services));
        let chatkit = Arc::new(ChatKit::new(
            store.clone() as Arc<dyn Store>,
            agent,
            RunSlots::new(
                config.limits.max_concurrent_runs_per_user,
                config.server.max_concurrent_runs,
            ),
            SizeLimits {
                max_message_chars: config.limits.max_message_chars,
                max_feedback_items: config.limits.max_feedback_items,
            },
            config.server.stream_write_timeout,
        ));
        let auth = Authenticator::from_config(&config.auth, &config.base_dir)?;
        Ok(App {
            config,
            store,
            chatkit,
            mcp,
            auth,
            attachments,
        })
    }

    /// The configuration the daemon was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store, for tools that read threads directly (`chatkitd chat`).
    pub fn store(&self) -> &Arc<SqlStore> {
        &self.store
    }

    /// The request handler, for front ends other than HTTP (`chatkitd chat`).
    pub fn chatkit(&self) -> &Arc<ChatKit> {
        &self.chatkit
    }

    /// The tool servers, when any are configured.
    pub fn mcp(&self) -> Option<&Arc<McpManager>> {
        (!self.mcp.is_empty()).then_some(&self.mcp)
    }

    /// What applies a changed `path` (the file this daemon was built from)
    /// to it while it serves: see [`crate::reload`].
    pub fn reloader(&self, path: &std::path::Path) -> Arc<crate::reload::Reloader> {
        Arc::new(crate::reload::Reloader::new(
            path,
            self.config.clone(),
            self.chatkit.clone(),
            Services {
                store: self.store.clone() as Arc<dyn Store>,
                mcp: self.mcp.clone(),
                attachments: self.attachments.clone(),
            },
        ))
    }

    /// Stops a daemon that was not serving (the terminal commands): lets
    /// runs finish within the shutdown grace (a cancelled run stores its
    /// partial answer here), stops the tool servers, closes the store.
    pub async fn shutdown(self) {
        self.chatkit.drain(self.config.server.shutdown_grace).await;
        self.mcp.shutdown().await;
        self.store.close().await;
    }

    /// Binds the configured address (or `listen` when given). The
    /// development auth mode is refused on a non-loopback address unless
    /// `allow_insecure_none_auth` says otherwise.
    pub async fn bind(&self, listen: Option<SocketAddr>) -> Result<TcpListener, StartError> {
        let addr = listen.unwrap_or(self.config.server.listen);
        if !self.config.auth.permits_listen(addr) {
            return Err(StartError::InsecureAuth(addr));
        }
        crate::http::serve::listen_on(addr, self.config.server.listen_backlog)
            .map_err(|source| StartError::Listen { addr, source })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains runs.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if self.auth.is_development() {
            tracing::warn!(
                user = %self.config.auth.dev_user,
                "auth.mode = \"none\": every request acts as one development user; do not expose this daemon"
            );
        }
        let limits = &self.config.limits;
        let state = AppState {
            chatkit: self.chatkit.clone(),
            metrics: Arc::new(self.exporter()),
            auth: self.auth.clone(),
            rate: RateLimiter::new(limits.requests_per_minute_per_user, limits.burst).map(Arc::new),
            max_body_bytes: self.config.server.max_body_bytes,
            body_read_timeout: self.config.server.body_read_timeout,
            attachments: http::AttachmentLimits::new(
                &self.config.attachments,
                self.config.server.stream_write_timeout,
            ),
        };
        let router = http::router(
            state,
            &self.config.server.path,
            &self.config.server.cors_allowed_origins,
        );
        let addr = listener.local_addr()?;
        tracing::info!(%addr, path = %self.config.server.path, "chatkitd listening");
        let sweeper = self.start_attachments(addr);
        let limits = self.connection_limits(http::serve::raise_open_files_limit());
        // On the signal the listener stops accepting; the runs then get the
        // grace period, and the connections a few seconds after them.
        let stop = CancellationToken::new();
        let signal = {
            let stop = stop.clone();
            tokio::spawn(async move {
                shutdown.await;
                stop.cancel();
            })
        };
        let chatkit = self.chatkit.clone();
        let grace = self.config.server.shutdown_grace;
        http::serve::serve(listener, router, limits, stop, async move {
            chatkit.drain(grace).await;
        })
        .await;
        signal.abort();
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        self.mcp.shutdown().await;
        // A run given up on by the drain may still hold a connection; the
        // exit must not wait on it.
        if tokio::time::timeout(STORE_CLOSE_WAIT, self.store.close())
            .await
            .is_err()
        {
            tracing::warn!("the store did not close in time; exiting anyway");
        }
        Ok(())
    }
}

impl App {
    /// Upload and preview URLs start with `[attachments] public_url`, else
    /// with the address listened on; unused uploads are swept from now on
    /// (by the task returned).
    fn start_attachments(&self, addr: SocketAddr) -> Option<tokio::task::JoinHandle<()>> {
        let attachments = &self.config.attachments;
        if !attachments.enabled {
            return None;
        }
        if attachments.public_url.is_none() {
            let host = if addr.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
            } else {
                addr
            };
            self.attachments.set_public_url(&format!("http://{host}"));
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    "[attachments] public_url is not set: upload and preview URLs name http://{host}, which browsers elsewhere cannot reach"
                );
            }
        }
        if !self.attachments.has_signing_key() && self.store.is_postgres() {
            tracing::warn!(
                "[attachments] signing_key is not set: upload and preview URLs work only on this replica and until it restarts"
            );
        }
        Some(
            self.attachments
                .clone()
                .spawn_sweeper(self.chatkit.shutdown_token()),
        )
    }

    /// `[server]`'s connection limits, the cap lowered to half of
    /// `open_files` (when known): the other half is for the model, the
    /// database and the tool servers.
    fn connection_limits(&self, open_files: Option<u64>) -> http::serve::ConnectionLimits {
        let server = &self.config.server;
        let mut max_connections = server.max_connections;
        if let Some(open_files) = open_files {
            let half = usize::try_from(open_files / 2).unwrap_or(usize::MAX).max(1);
            if half < max_connections {
                tracing::warn!(
                    configured = max_connections,
                    open_files,
                    "max_connections lowered to half the open files limit"
                );
                max_connections = half;
            }
        }
        http::serve::ConnectionLimits {
            max_connections,
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            write_stall_timeout: server.stream_write_timeout,
        }
    }

    /// What `/metrics` serves: the process-wide counters plus gauges read
    /// from this daemon's store pool and tool-server pools at each scrape.
    fn exporter(&self) -> Exporter {
        let mut exporter = Exporter::default();
        let store = self.store.clone();
        exporter.register(GaugeSet::new(
            "store_connections",
            "Store connections by state (idle, in_use).",
            move || {
                let counts = store.connections();
                vec![
                    (vec![("state", "idle".to_owned())], counts.idle as i64),
                    (vec![("state", "in_use".to_owned())], counts.in_use as i64),
                ]
            },
        ));
        // Registered even with no server configured: a reload may add some.
        {
            let mcp = &self.mcp;
            let pools = mcp.clone();
            exporter.register(GaugeSet::new(
                "mcp_instances",
                "MCP server instances by state (idle, busy).",
                move || {
                    pools
                        .pool_counts()
                        .into_iter()
                        .flat_map(|c| {
                            [("idle", c.idle), ("busy", c.busy)].map(|(state, n)| {
                                (
                                    vec![("server", c.server.clone()), ("state", state.to_owned())],
                                    n as i64,
                                )
                            })
                        })
                        .collect()
                },
            ));
            let pools = mcp.clone();
            exporter.register(GaugeSet::new(
                "mcp_instances_replaced",
                "MCP server instances replaced after a crash or hang, since start.",
                move || {
                    pools
                        .pool_counts()
                        .into_iter()
                        .map(|c| (vec![("server", c.server)], c.replaced as i64))
                        .collect()
                },
            ));
        }
        exporter
    }
}

/// Connects to the configured store without migrating it.
pub async fn connect_store(config: &Config) -> Result<SqlStore, StoreError> {
    let options = SqlStoreOptions {
        max_page_bytes: config.limits.max_list_bytes,
        ..SqlStoreOptions::from(&config.store)
    };
    SqlStore::connect(&config.store.url.connect_url(), &options).await
}
