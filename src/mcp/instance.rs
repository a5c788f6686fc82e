//! One running MCP server: the rmcp client session, on a child process's
//! stdio or over streamable HTTP (one session of a remote server).
//!
//! rmcp sets no timeouts: the initialize handshake and every call are bounded
//! here. A call that times out or finds the transport closed marks the
//! instance broken, and the pool replaces it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// MCP's logging is deprecated (SEP-2577), and rmcp marks it so, but servers
// in use still send it; their messages belong in the daemon's log.
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientConfig, ClientRequest,
    Implementation, NumberOrString, ProgressNotificationParam, ProgressToken, ServerResult, Tool,
};
use rmcp::model::{ElicitRequestParams, ElicitResult};
#[allow(deprecated)]
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};
use rmcp::service::PeerRequestOptions;
use rmcp::service::RequestContext;
use rmcp::service::{NotificationContext, Peer, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::{Map, Value};
use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::endpoint::{Endpoint, Remote};
use super::process::{self, Launch, ProcessGuard};
use super::user_questions::{Asking, capabilities};
use super::{Elicitor, McpError, ProgressReporter, ToolProgress};

/// Receives the server's notifications: a changed tool list wakes the
/// registry's refresher with the session that announced it; a log message
/// goes to the daemon's log.
#[derive(Clone)]
pub struct Events {
    pub server: String,
    pub tools_changed: Arc<ToolsChanged>,
    /// Calls in flight that asked for progress, by their progress token.
    pub progress: Arc<parking_lot::Mutex<HashMap<String, ProgressReporter>>>,
    /// Who answers this instance's questions to the user: set for the
    /// length of a call (an instance serves one call at a time); without
    /// one, a question is declined.
    pub asking: Arc<Asking>,
}

/// A tool list change waiting to be fetched. The list is read back through
/// the instance that announced it: instances of one server may differ, and
/// the one that changed is the one that knows.
#[derive(Default)]
pub struct ToolsChanged {
    pub notify: Notify,
    peer: parking_lot::Mutex<Option<Peer<RoleClient>>>,
}

impl ToolsChanged {
    /// The session that announced the latest change, if not taken yet.
    pub fn take_peer(&self) -> Option<Peer<RoleClient>> {
        self.peer.lock().take()
    }
}

impl ClientHandler for Events {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            capabilities(),
            Implementation::new("chatkitd", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        tracing::info!(server = %self.server, "the server's tool list changed");
        *self.tools_changed.peer.lock() = Some(context.peer);
        self.tools_changed.notify.notify_one();
    }

    /// An `elicitation/create` goes to the call running on this instance
    /// (`user_questions.rs`).
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        Ok(self.asking.ask(&self.server, request).await)
    }

    /// A `notifications/progress` goes to the call that asked for it (one
    /// whose token is unknown, such as a finished call's, is dropped).
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let token = token_key(&params.progress_token);
        let reporter = self.progress.lock().get(&token).cloned();
        if let Some(report) = reporter {
            report(ToolProgress {
                progress: params.progress,
                total: params.total,
                message: params
                    .message
                    .map(|m| crate::text::cut_bytes_marked(&m, MAX_LOG_BYTES).into_owned()),
            });
        }
    }

    /// A `notifications/message` goes to the daemon's log at its level,
    /// tagged like the server's stderr, its data cut to a log line.
    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let data = match &params.data {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let data = crate::text::cut_bytes_marked(&data, MAX_LOG_BYTES);
        let logger = params.logger.as_deref().unwrap_or("");
        let server = &self.server;
        match params.level {
            LoggingLevel::Debug => {
                tracing::debug!(target: "chatkitd::mcp::server", server, logger, "{data}")
            }
            LoggingLevel::Info | LoggingLevel::Notice => {
                tracing::info!(target: "chatkitd::mcp::server", server, logger, "{data}")
            }
            LoggingLevel::Warning => {
                tracing::warn!(target: "chatkitd::mcp::server", server, logger, "{data}")
            }
            _ => tracing::error!(target: "chatkitd::mcp::server", server, logger, "{data}"),
        }
    }
}

impl Instance {
    /// Sends one call and waits for its answer. With `progress`, the
    /// call's progress notifications go there while it runs: rmcp gives
    /// every request a progress token of its own, read from the request's
    /// handle (a report the server sends before that is dropped; later
    /// ones supersede it anyway).
    async fn send_call(
        &self,
        params: CallToolRequestParams,
        progress: Option<ProgressReporter>,
    ) -> Result<CallToolResult, ServiceError> {
        let Some(report) = progress else {
            return self.service.call_tool(params).await;
        };
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let handle = self
            .service
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await?;
        let routes = self.service.service().progress.clone();
        let token = token_key(&handle.progress_token);
        routes.lock().insert(token.clone(), report);
        let _route = RouteGuard { routes, token };
        match handle.await_response().await? {
            ServerResult::CallToolResult(result) => Ok(result),
            // A call with no content at all, as rmcp's `call_tool` reads it.
            ServerResult::EmptyResult(_) => Ok(CallToolResult::success(Vec::new())),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }
}

/// A progress token as the key of its route.
fn token_key(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::String(token) => token.to_string(),
        NumberOrString::Number(n) => n.to_string(),
    }
}

/// Removes a call's progress route when the call ends, however it ends.
struct RouteGuard {
    routes: Arc<parking_lot::Mutex<HashMap<String, ProgressReporter>>>,
    token: String,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.token);
    }
}

/// Longest log message of a server logged, in bytes.
const MAX_LOG_BYTES: usize = 4096;

/// A started, initialized server.
pub struct Instance {
    service: RunningService<RoleClient, Events>,
    /// Who answers the server's questions during the current call.
    asking: Arc<Asking>,
    /// The child of a spawned server; `None` for a remote one.
    process: Option<ProcessGuard>,
    broken: AtomicBool,
    /// Whether a tool call got an answer from it: it has proved healthy.
    served: AtomicBool,
    /// Its place under a cap shared across pools, released when it stops.
    slot: Option<OwnedSemaphorePermit>,
    /// When it finished starting.
    pub started: Instant,
    /// When it last finished a call (or started), for idle reaping.
    pub last_used: Instant,
    pub server: String,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("server", &self.server)
            .field("pid", &self.process.as_ref().and_then(ProcessGuard::pid))
            .finish_non_exhaustive()
    }
}

/// How a call ended, short of a result.
#[derive(Debug)]
pub enum CallFailure {
    /// No answer in time; the instance is broken.
    Timeout(Duration),
    /// The server went away (crash, exit); the instance is broken.
    Closed,
    /// The server answered with a protocol error; the instance is fine.
    Protocol(String),
}

impl Instance {
    /// Starts a server (spawns it, or opens a session with a remote one)
    /// and initializes it, all within `timeout`.
    pub async fn start(
        endpoint: &Endpoint,
        user: Option<&str>,
        events: Events,
        timeout: Duration,
    ) -> Result<Instance, McpError> {
        // Questions go to the call running on this instance, so each
        // instance has a slot of its own.
        let events = Events {
            asking: Default::default(),
            ..events
        };
        match endpoint {
            Endpoint::Process(launch) => Instance::spawn(launch, user, events, timeout).await,
            Endpoint::Remote(remote) => Instance::connect(remote, events, timeout).await,
        }
    }

    async fn spawn(
        launch: &Launch,
        user: Option<&str>,
        events: Events,
        timeout: Duration,
    ) -> Result<Instance, McpError> {
        let started = Instant::now();
        let asking = events.asking.clone();
        let spawned = process::spawn(launch, user).map_err(|e| McpError::Spawn {
            server: launch.server.clone(),
            message: format!("{}: {e}", launch.program.display()),
        })?;
        let service = handshake(
            &launch.server,
            events.serve((spawned.stdout, spawned.stdin)),
            timeout,
        )
        .await?;
        tracing::info!(
            server = %launch.server,
            pid = spawned.guard.pid(),
            user = user.unwrap_or("-"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "MCP server started"
        );
        Ok(Instance::new(
            &launch.server,
            service,
            Some(spawned.guard),
            asking,
        ))
    }

    async fn connect(
        remote: &Remote,
        events: Events,
        timeout: Duration,
    ) -> Result<Instance, McpError> {
        let started = Instant::now();
        let asking = events.asking.clone();
        let transport = remote.transport(timeout)?;
        let service = handshake(&remote.server, events.serve(transport), timeout).await?;
        tracing::info!(
            server = %remote.server,
            url = %remote.url,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "MCP session opened"
        );
        Ok(Instance::new(&remote.server, service, None, asking))
    }

    fn new(
        server: &str,
        service: RunningService<RoleClient, Events>,
        process: Option<ProcessGuard>,
        asking: Arc<Asking>,
    ) -> Instance {
        Instance {
            service,
            process,
            asking,
            broken: AtomicBool::new(false),
            served: AtomicBool::new(false),
            slot: None,
            started: Instant::now(),
            last_used: Instant::now(),
            server: server.to_owned(),
        }
    }

    /// The instance, holding `slot` (its place under a shared cap) until it
    /// stops.
    pub fn holding(mut self, slot: Option<OwnedSemaphorePermit>) -> Instance {
        self.slot = slot;
        self
    }

    /// Whether a tool call got an answer (even an error) from it.
    pub fn has_served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Whether the instance can serve another call.
    pub fn is_usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.service.is_transport_closed()
    }

    /// Every tool the server offers (all pages).
    pub async fn list_tools(&self, timeout: Duration) -> Result<Vec<Tool>, McpError> {
        match tokio::time::timeout(timeout, self.service.list_all_tools()).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(e)) => Err(McpError::Call {
                server: self.server.clone(),
                message: format!("tools/list failed: {e}"),
            }),
            Err(_) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(McpError::Call {
                    server: self.server.clone(),
                    message: format!("no answer to tools/list within {timeout:?}"),
                })
            }
        }
    }

    /// Calls a tool. Dropping the future cancels the call on the server
    /// (rmcp sends `notifications/cancelled`).
    pub async fn call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        timeout: Duration,
        progress: Option<ProgressReporter>,
        elicitor: Option<Elicitor>,
    ) -> Result<CallToolResult, CallFailure> {
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let answer = self
            .asking
            .call(elicitor, timeout, self.send_call(params, progress))
            .await;
        match answer {
            Some(Ok(result)) => {
                self.served.store(true, Ordering::Relaxed);
                Ok(result)
            }
            Some(Err(ServiceError::TransportClosed | ServiceError::TransportSend(_))) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(CallFailure::Closed)
            }
            Some(Err(e)) => {
                if self.service.is_transport_closed() {
                    self.broken.store(true, Ordering::Relaxed);
                    return Err(CallFailure::Closed);
                }
                self.served.store(true, Ordering::Relaxed);
                Err(CallFailure::Protocol(e.to_string()))
            }
            None => {
                // A server that stopped answering may never answer again.
                self.broken.store(true, Ordering::Relaxed);
                Err(CallFailure::Timeout(timeout))
            }
        }
    }

    /// Closes the session (a remote one is deleted on the server), waits
    /// briefly for a child to exit, then kills its process group.
    pub async fn stop(self) {
        let Instance {
            mut service,
            process,
            slot,
            ..
        } = self;
        let _ = service.close_with_timeout(Duration::from_secs(1)).await;
        if let Some(process) = process {
            process.stop(Duration::from_secs(1)).await;
        }
        // Only now is its place under the shared cap free.
        drop(slot);
    }
}

/// Waits up to `timeout` for the MCP initialize handshake.
async fn handshake<E: std::fmt::Display>(
    server: &str,
    serving: impl std::future::Future<Output = Result<RunningService<RoleClient, Events>, E>>,
    timeout: Duration,
) -> Result<RunningService<RoleClient, Events>, McpError> {
    match tokio::time::timeout(timeout, serving).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(e)) => Err(McpError::Spawn {
            server: server.to_owned(),
            message: format!("initialize failed: {e}"),
        }),
        Err(_) => Err(McpError::Spawn {
            server: server.to_owned(),
            message: format!("no answer to initialize within {timeout:?}"),
        }),
    }
}
