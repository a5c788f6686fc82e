//! Where a configured server is and how a session with it is opened: a
//! program spawned with its stdio as the transport ([`Launch`]), or a server
//! reached over MCP's streamable HTTP transport ([`Remote`], rmcp's client
//! transport on reqwest).
//!
//! A remote "instance" is one MCP session: the pool leases sessions exactly
//! as it leases processes, one call at a time each. A session the server
//! forgot (it restarted: HTTP 404) is re-initialized by rmcp's transport; a
//! server that cannot be reached fails the call, which breaks the instance,
//! and the pool's back-off makes the next calls fail at once instead of
//! waiting on a dead server.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::ExponentialBackoff;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::McpError;
use super::process::{Launch, ProcessLimits};
use crate::config::McpServerConfig;

/// How to reach one configured server.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A child process speaking MCP on its stdio.
    Process(Launch),
    /// A streamable HTTP server.
    Remote(Remote),
}

/// A streamable HTTP server's address and the headers every request carries.
#[derive(Clone)]
pub struct Remote {
    /// Server name, for logs.
    pub server: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for Remote {
    /// Header values stay out of logs: they are usually credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("server", &self.server)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Largest JSON answer or SSE event accepted from a remote server. A tool
/// result the model may read is far smaller (`max_tool_output_bytes`, images
/// within `max_tool_image_bytes`); this bounds what one hostile answer costs.
const MAX_REMOTE_MESSAGE: usize = 16 << 20;

/// Attempts to reconnect a call's broken event stream before the call fails.
const STREAM_RECONNECTS: usize = 2;

impl Endpoint {
    /// The endpoint of server `name` as configured; relative paths are
    /// relative to `base_dir`.
    pub fn from_config(name: &str, config: &McpServerConfig, base_dir: &Path) -> Endpoint {
        if let (Some(url), None) = (&config.url, &config.command) {
            return Endpoint::Remote(Remote {
                server: name.to_owned(),
                url: url.clone(),
                headers: config.headers.clone(),
            });
        }
        let command = config.command.as_deref().unwrap_or_default();
        let cwd = config
            .cwd
            .as_ref()
            .map_or_else(|| base_dir.to_path_buf(), |cwd| base_dir.join(cwd));
        Endpoint::Process(Launch {
            server: name.to_owned(),
            program: resolve_program(command, base_dir),
            args: config.args.clone(),
            env: config.env.clone(),
            cwd,
            limits: ProcessLimits {
                memory: config.max_memory,
                cpu_seconds: config.max_cpu_seconds,
                open_files: config.max_open_files,
            },
        })
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        match self {
            Endpoint::Process(launch) => &launch.server,
            Endpoint::Remote(remote) => &remote.server,
        }
    }
}

impl Remote {
    /// rmcp's streamable HTTP transport to this server, on a client whose
    /// connection attempts give up after `connect_timeout`.
    pub fn transport(
        &self,
        connect_timeout: Duration,
    ) -> Result<StreamableHttpClientTransport<reqwest::Client>, McpError> {
        let failed = |message: String| McpError::Spawn {
            server: self.server.clone(),
            message,
        };
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            // A redirect would replay the session and the headers (often a
            // bearer) to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| failed(format!("HTTP client: {e}")))?;
        let mut headers = HashMap::new();
        for (name, value) in &self.headers {
            // Validated at load; a failure here names the header, not its value.
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|_| failed(format!("{name:?} is not a header name")))?;
            let mut value = http::HeaderValue::try_from(value.as_str())
                .map_err(|_| failed(format!("the value of {name} is not a header value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url.as_str())
            .custom_headers(headers)
            .max_json_response_size(MAX_REMOTE_MESSAGE)
            .max_sse_event_size(MAX_REMOTE_MESSAGE)
            .session_recovery_timeout(connect_timeout)
            .reinit_on_expired_session(true);
        // rmcp reconnects a broken event stream forever by default, so a
        // call to a server that died would wait for its whole timeout. A
        // blip is retried; a dead server fails the call within a second.
        let mut retry = ExponentialBackoff::default();
        retry.max_times = Some(STREAM_RECONNECTS);
        retry.base_duration = Duration::from_millis(200);
        retry.max_delay = Some(Duration::from_secs(1));
        config.retry_config = Arc::new(retry);
        Ok(StreamableHttpClientTransport::with_client(client, config))
    }
}

/// Where a server's program is: a path with a `/` is relative to the config
/// file; a bare name is looked up beside the daemon's own executable first
/// (so servers built with it, like `tasks-mcp`, are found without being
/// installed), then on `PATH`.
fn resolve_program(command: &str, base_dir: &Path) -> PathBuf {
    if command.contains('/') {
        return base_dir.join(command);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(command)))
        .filter(|candidate| candidate.is_file());
    beside.unwrap_or_else(|| command.into())
}
